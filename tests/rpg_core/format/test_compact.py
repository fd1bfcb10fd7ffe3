"""Compact .rpg files: round trips, sizes, keyed files, bad input, safetensors compatibility."""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from rpg_core import RPGConfigError, RPGFormatError, RPGKeyError, count_params, materialize, rings
from rpg_core.format import (
    MAX_HEADER_BYTES,
    export_plain,
    inspect_compact,
    load_compact,
    read_header,
    save_compact,
)
from rpg_core.models import create_model

from ..fresh_process import fresh_process_outputs

TINY: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 0.05, "seed": 7},
}
HEADER_LIMIT = 16 * 1024


def _warm(model: nn.Module) -> nn.Module:
    """Non-trivial batchnorm statistics and ring values, as after some training."""
    torch.manual_seed(0)
    with torch.no_grad():
        for r in rings(model).values():
            r.weight.mul_(1.5).add_(0.01)
        model.train()
        model(torch.randn(4, 3, 16, 16))
    return model.eval()


def _model(spec: dict[str, Any] = TINY) -> nn.Module:
    return _warm(create_model(spec))


def _x(channels: int = 3) -> torch.Tensor:
    return torch.randn(2, channels, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _model()


@pytest.fixture(scope="module")
def saved(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rpg") / "tiny.rpg"
    save_compact(model, path)
    return path


# --- round trips -----------------------------------------------------------------------------
def test_float32_round_trip_is_exact(model: nn.Module, saved: Path) -> None:
    loaded = load_compact(saved)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(model(_x()), loaded(_x()))
    assert not loaded.training


@pytest.mark.slow
def test_fresh_process_gives_bit_identical_outputs(
    model: nn.Module, saved: Path, tmp_path: Path
) -> None:
    x = _x()
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.array_equal(fresh_process_outputs(saved, x, tmp_path), expected)


def test_plain_model_round_trip(tmp_path: Path) -> None:
    plain = _model({"model": {"arch": "resnet18", "width": 0.125}})
    save_compact(plain, tmp_path / "plain.rpg")
    loaded = load_compact(tmp_path / "plain.rpg")
    assert not rings(loaded)
    with torch.no_grad():
        assert torch.equal(plain(_x()), loaded(_x()))


def test_stage_rings_round_trip(tmp_path: Path) -> None:
    spec = {**TINY, "rpg": {"ring_size": 0.1, "scope": "stage", "seed": 3}}
    m = _model(spec)
    save_compact(m, tmp_path / "stage.rpg")
    loaded = load_compact(tmp_path / "stage.rpg")
    assert set(rings(loaded)) == {"layer1", "layer2", "layer3", "layer4"}
    with torch.no_grad():
        assert torch.equal(m(_x()), loaded(_x()))


@pytest.mark.parametrize(
    ("ring_dtype", "code", "nbytes"),
    [("float16", "F16", 2), ("bfloat16", "BF16", 2), ("int8", "I8", 1)],
)
def test_reduced_ring_dtypes(
    model: nn.Module, tmp_path: Path, ring_dtype: str, code: str, nbytes: int
) -> None:
    path = tmp_path / f"{ring_dtype}.rpg"
    save_compact(model, path, ring_dtype=ring_dtype)
    h = read_header(path)
    ring = rings(model)["global"]
    entry = h.tensors[h.ring_keys["global"]]
    assert (entry.dtype, entry.nbytes) == (code, nbytes * ring.spec.size)
    loaded = load_compact(path)
    w, w2 = ring.weight.detach(), rings(loaded)["global"].weight.detach()
    peak = w.abs().max().item()
    bound = {"float16": 2**-11 * peak, "bfloat16": 2**-8 * peak, "int8": peak / 127 / 2}
    assert (w - w2).abs().max().item() <= bound[ring_dtype] * 1.0001
    assert not torch.equal(w, w2)  # really reduced
    other = [k for k in model.state_dict() if "rpg_rings" not in k]
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in other)


# --- sizes -----------------------------------------------------------------------------------
def _expected_data_bytes(m: nn.Module, ring_bytes: int) -> int:
    c = count_params(m)
    buffers = {k: v for k, v in m.state_dict().items() if k not in dict(m.named_parameters())}
    buffer_bytes = sum(v.numel() * v.element_size() for v in buffers.values())
    return 4 * (c.total - c.ring) + ring_bytes * c.ring + buffer_bytes


@pytest.mark.parametrize(("ring_dtype", "ring_bytes"), [("float32", 4), ("int8", 1)])
def test_size_is_the_learned_parameters_plus_a_small_header(
    model: nn.Module, tmp_path: Path, ring_dtype: str, ring_bytes: int
) -> None:
    path = tmp_path / "s.rpg"
    save_compact(model, path, ring_dtype=ring_dtype)
    h = read_header(path)
    assert h.header_len <= HEADER_LIMIT
    assert path.stat().st_size == 8 + h.header_len + _expected_data_bytes(model, ring_bytes)


def test_full_width_resnet18_header_is_under_16_kib(tmp_path: Path) -> None:
    m = create_model({"model": {"arch": "resnet18"}, "rpg": {"ring_size": 45_000}})
    save_compact(m, tmp_path / "r18.rpg")
    h = read_header(tmp_path / "r18.rpg")
    assert h.header_len <= HEADER_LIMIT
    assert h.file_size == 8 + h.header_len + _expected_data_bytes(m, 4)
    assert h.file_size < 300_000  # vs >130 MB of index arrays and masks in the reference code


# --- keyed files -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keyed") / "k.rpg"
    key = save_compact(model, path, keyed=True)
    assert isinstance(key, str)
    return path, key


def test_keyed_file_holds_no_seed(model: nn.Module, keyed: tuple[Path, str]) -> None:
    path, _ = keyed
    h = read_header(path)
    assert h.keyed and h.spec["rpg"]["seed"] is None
    assert all(r["seed"] is None for r in h.rings)
    header_text = path.read_bytes()[8 : 8 + h.header_len].decode()
    assert str(rings(model)["global"].spec.seed) not in header_text


def test_keyed_file_loads_with_its_key_only(model: nn.Module, keyed: tuple[Path, str]) -> None:
    path, key = keyed
    with pytest.raises(RPGKeyError, match="keyed"):
        load_compact(path)
    with torch.no_grad():
        assert torch.equal(load_compact(path, key=key)(_x()), model(_x()))


def test_wrong_key_is_told_apart_from_corrupt_file(
    model: nn.Module, keyed: tuple[Path, str], tmp_path: Path
) -> None:
    path, key = keyed
    other = create_model({**TINY, "rpg": {**TINY["rpg"], "seed": 8}})
    wrong = save_compact(other, tmp_path / "other.rpg", keyed=True)
    assert wrong is not None
    with pytest.raises(RPGKeyError, match="wrong key"):
        load_compact(path, key=wrong)
    with pytest.raises(RPGKeyError, match="wrong key"):
        load_compact(path, key="rpgk1.garbage")
    corrupt = tmp_path / "corrupt.rpg"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(RPGFormatError, match="checksum") as err:
        load_compact(corrupt, key=key)
    assert not isinstance(err.value, RPGKeyError)


def test_keyed_needs_an_rpg_model(tmp_path: Path) -> None:
    plain = create_model({"model": {"arch": "resnet18", "width": 0.125}})
    with pytest.raises(RPGConfigError, match="keyed"):
        save_compact(plain, tmp_path / "p.rpg", keyed=True)


# --- library errors ----------------------------------------------------------------------------
def test_model_not_built_by_create_model(tmp_path: Path) -> None:
    with pytest.raises(RPGConfigError, match="create_model"):
        save_compact(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), tmp_path / "x.rpg")


def test_unknown_ring_dtype(model: nn.Module, tmp_path: Path) -> None:
    with pytest.raises(RPGConfigError, match="ring_dtype"):
        save_compact(model, tmp_path / "x.rpg", ring_dtype="int4")


# --- compatibility and export ------------------------------------------------------------------
def test_safetensors_reads_the_file(model: nn.Module, saved: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as f:
        meta = f.metadata()
        got = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    state = model.state_dict()
    assert got.keys() == state.keys()
    assert all(torch.equal(got[k], state[k]) for k in got)
    assert meta["format"] == "rpg-compact"
    assert json.loads(meta["spec"])["model"]["arch"] == "resnet18"


def test_inspect_reports_parts_and_ratios(model: nn.Module, saved: Path) -> None:
    info = inspect_compact(saved, build=True)
    c = count_params(model)
    assert info["params"]["ring"] == c.ring and info["params"]["total"] == c.total
    assert info["built"] == c.as_dict()
    assert info["bytes"]["total"] == saved.stat().st_size
    assert sum(v for k, v in info["bytes"].items() if k != "total") == saved.stat().st_size
    assert info["rings"][0]["generated"] == c.generated
    assert info["full_float32_state_dict_bytes"] == sum(
        v.numel() * v.element_size() for v in materialize(model).state_dict().values()
    )
    assert info["ratio_vs_reference"] > info["ratio_vs_full_state_dict"] > 1
    json.dumps(info)  # the API returns it as JSON


@pytest.mark.slow
def test_materialized_model_traces_and_exports_to_onnx(
    model: nn.Module, saved: Path, tmp_path: Path
) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    plain = materialize(load_compact(saved))
    x = _x()[:1]
    traced = torch.jit.trace(plain, x)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(traced(x), expected)
    out = export_plain(saved, tmp_path / "m.onnx", to="onnx", input_size=16)
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)
    (y,) = ReferenceEvaluator(graph).run(None, {"input": x.numpy()})
    np.testing.assert_allclose(np.asarray(y), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_materialized_rpg_model_scripts() -> None:
    from rpg_core import rpgify

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.body = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.body(torch.relu(self.stem(x)))).mean((2, 3)))

    net = rpgify(Net(), 20)
    scripted = torch.jit.script(materialize(net))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(scripted(x), net(x))


def test_export_safetensors_is_the_plain_state(
    model: nn.Module, saved: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    out = export_plain(saved, tmp_path / "plain.safetensors", to="safetensors")
    state = load_file(str(out))
    plain = create_model({"model": read_header(saved).spec["model"]})
    plain.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(_x()), model(_x()), rtol=1e-5, atol=1e-6)


# --- bad input -----------------------------------------------------------------------------------
def _parts(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path: Path, header: dict[str, Any] | bytes, data: bytes) -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return path


def _edit_meta(key: str, value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def edit(h: dict[str, Any]) -> None:
        meta = h["__metadata__"]
        meta[key] = value(meta.get(key))

    return edit


def _edit_json_meta(key: str, fn: Callable[[Any], None]) -> Callable[[dict[str, Any]], None]:
    def edit(h: dict[str, Any]) -> None:
        obj = json.loads(h["__metadata__"][key])
        fn(obj)
        h["__metadata__"][key] = json.dumps(obj)

    return edit


def _first_tensor(h: dict[str, Any]) -> str:
    return next(k for k in h if k != "__metadata__" and h[k]["dtype"] == "F32")


def _set_tensor(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(h: dict[str, Any]) -> None:
        h[_first_tensor(h)][field] = value

    return edit


def _missing_tensor(saved: Path, out: Path) -> Path:
    """Remove the last tensor of the data section and its bytes (the layout stays valid)."""
    h, data = _parts(saved)
    last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
    begin, _ = h.pop(last)["data_offsets"]
    return _write(out, h, data[:begin])


def _transpose(h: dict[str, Any]) -> None:
    entry = next(v for k, v in h.items() if k != "__metadata__" and len(v["shape"]) == 4)
    entry["shape"] = entry["shape"][::-1]


def _overlap(h: dict[str, Any]) -> None:
    names = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
    a, b = h[names[0]], h[names[1]]
    b["data_offsets"] = [
        a["data_offsets"][0],
        a["data_offsets"][0] + b["data_offsets"][1] - b["data_offsets"][0],
    ]


Maker = Callable[[Path, Path], Path]


def _header_case(
    edit: Callable[[dict[str, Any]], None], data_edit: Callable[[bytes], bytes] | None = None
) -> Maker:
    def make(saved: Path, out: Path) -> Path:
        h, data = _parts(saved)
        edit(h)
        return _write(out, h, data_edit(data) if data_edit else data)

    return make


def _raw_case(fn: Callable[[bytes], bytes]) -> Maker:
    def make(saved: Path, out: Path) -> Path:
        out.write_bytes(fn(saved.read_bytes()))
        return out

    return make


def _zip_file(saved: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    return out


def _torch_save(saved: Path, out: Path) -> Path:
    torch.save({"w": torch.zeros(2)}, out)
    return out


def _pickle(saved: Path, out: Path) -> Path:
    out.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=4))
    return out


def _directory(saved: Path, out: Path) -> Path:
    out.mkdir()
    return out


def _extra_tensor(saved: Path, out: Path) -> Path:
    h, data = _parts(saved)
    h["intruder"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
    return _write(out, h, data + b"\0\0\0\0")


def _dup_keys(saved: Path, out: Path) -> Path:
    h, data = _parts(saved)
    name = _first_tensor(h)
    text = json.dumps(h)
    entry = json.dumps({name: h[name]})[1:-1]
    return _write(out, (text[:-1] + ", " + entry + "}").encode(), data)


def _deep(saved: Path, out: Path) -> Path:
    return _write(out, b"{" + b'"a":' * 1 + b"[" * 100_000 + b"]" * 100_000 + b"}", b"")


def _huge_width(h: dict[str, Any]) -> None:
    _edit_json_meta("spec", lambda s: s["model"].update(width=16.0, arch="resnet34"))(h)


BAD: dict[str, tuple[Any, str]] = {
    "empty": (_raw_case(lambda b: b""), "empty"),
    "truncated-length": (_raw_case(lambda b: b[:5]), "truncated"),
    "truncated-header": (_raw_case(lambda b: b[:200]), "truncated"),
    "truncated-data": (_raw_case(lambda b: b[:-10]), "truncated"),
    "trailing-bytes": (_raw_case(lambda b: b + b"\0" * 8), "after the last tensor"),
    "header-beyond-file": (_raw_case(lambda b: (10**6).to_bytes(8, "little") + b[8:]), "truncated"),
    "header-too-large": (
        _raw_case(lambda b: (MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b[8:]),
        "above the limit",
    ),
    "header-2**63": (_raw_case(lambda b: (2**63).to_bytes(8, "little") + b[8:]), "above the limit"),
    "not-json": (_raw_case(lambda b: (4).to_bytes(8, "little") + b"{abc"), "not valid JSON"),
    "deep-json": (_deep, "nested too deeply"),
    "directory": (_directory, "directory"),
    "zip": (_zip_file, "zip"),
    "torch-save": (_torch_save, "never unpickles"),
    "pickle": (_pickle, "pickle"),
    "no-metadata": (_header_case(lambda h: h.pop("__metadata__")), "__metadata__"),
    "other-format": (_header_case(_edit_meta("format", lambda v: "gguf")), "without RPG metadata"),
    "newer-version": (_header_case(_edit_meta("format_version", lambda v: "3")), "upgrade"),
    "bad-version": (_header_case(_edit_meta("format_version", lambda v: "1.5")), "format_version"),
    "generator": (
        _header_case(_edit_json_meta("generator", lambda g: g.update(version=3))),
        "generator",
    ),
    "generator-id-mismatch": (
        _header_case(_edit_json_meta("generator", lambda g: g.update(id="splitmix64-sortperm"))),
        "generator",
    ),
    "generator-extra-key": (  # FORMAT.md section 2: exactly id and version
        _header_case(_edit_json_meta("generator", lambda g: g.update(extra=1))),
        "metadata 'generator': unknown key 'extra'; the generator object has exactly the keys",
    ),
    "unknown-arch": (
        _header_case(_edit_json_meta("spec", lambda s: s["model"].update(arch="vit_h14"))),
        "unknown model arch",
    ),
    "too-many-params": (_header_case(_huge_width), "above the limit"),
    "wrong-shape": (_header_case(_set_tensor("shape", [1, 2])), "data_offsets span"),
    "unknown-dtype": (_header_case(_set_tensor("dtype", "F128")), "unknown dtype"),
    "wrong-dtype": (_header_case(_set_tensor("dtype", "I32")), "expected shape"),
    "offsets-out-of-range": (
        _header_case(_set_tensor("data_offsets", [10**9, 10**9 + 4])),
        "data_offsets span",
    ),
    "overlap": (_header_case(_overlap), "overlap"),
    "missing-tensor": (_missing_tensor, "missing"),
    "transposed-shape": (_header_case(_transpose), "expected shape"),
    "extra-tensor": (_extra_tensor, "unexpected"),
    "duplicate-key": (_dup_keys, "duplicate key"),
    "checksum": (_raw_case(lambda b: b[:-1] + bytes([b[-1] ^ 1])), "checksum"),
    "ring-layer-shape": (
        _header_case(
            _edit_json_meta("rings", lambda r: r[0]["layers"][0].update(shape=[1, 1, 1, 1]))
        ),
        "offset",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_a_clear_error(case: str, saved: Path, tmp_path: Path) -> None:
    make, message = BAD[case]
    path = make(saved, tmp_path / f"{case}.rpg")
    with pytest.raises(RPGFormatError, match=message) as err:
        load_compact(path)
    assert isinstance(err.value, ValueError)
    with pytest.raises(RPGFormatError):
        inspect_compact(path)


def test_the_saved_file_itself_is_valid(saved: Path) -> None:
    """Guards the bad-input cases: each starts from this file, which passes every check."""
    assert inspect_compact(saved)["checksum"] == "ok"


def test_max_params_limits_what_a_file_may_build(saved: Path) -> None:
    with pytest.raises(RPGFormatError, match="max_params"):
        load_compact(saved, max_params=1000)
