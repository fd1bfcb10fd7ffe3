"""An independent decoder of the .rpg format, written from docs/FORMAT.md alone.

The decoder below uses only numpy, json, struct and math: no rpg_core, torch or safetensors.
rpg_core is imported only to build and save models and to produce the weights to compare with.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# --- the decoder (FORMAT.md sections 1-5) ----------------------------------------------------
U64 = np.uint64
GAMMA = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1
SELECT, SHUFFLE, SIGN, HASH = 1, 2, 3, 4
NUMPY_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I8": "i1", "I64": "<i8", "U8": "u1"}


def mix64_scalar(z: int) -> int:
    z &= MASK
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def mix64_array(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> U64(30))
    z = z * U64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> U64(27))
    z = z * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def stream(seed: int, tag: int, n: int) -> np.ndarray:
    s0 = mix64_scalar(seed ^ mix64_scalar(tag))
    i = np.arange(1, n + 1, dtype=U64)
    return mix64_array(U64(s0) + i * U64(GAMMA))


def permutation(seed: int, tag: int, n: int) -> np.ndarray:
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    b = (n - 1).bit_length()
    keys = ((stream(seed, tag, n) >> U64(b)) << U64(b)) | np.arange(n, dtype=U64)
    return (np.sort(keys) & U64((1 << b) - 1)).astype(np.int64)


def bijection_permutation(seed: int, tag: int, n: int) -> np.ndarray:
    """Generator 2 (FORMAT.md 4.2): keyed bijection of b-bit integers, then cycle walking."""
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    b = (n - 1).bit_length()
    mask, shift = U64((1 << b) - 1), U64((b + 1) // 2)
    k = stream(seed, tag, 8)

    def f(x: np.ndarray) -> np.ndarray:
        for r in range(4):
            x = (x * (k[2 * r] | U64(1)) + k[2 * r + 1]) & mask
            x = x ^ (x >> shift)
        return x

    x = f(np.arange(n, dtype=U64))
    while (x >= U64(n)).any():
        x = np.where(x >= U64(n), f(x), x)
    return x.astype(np.int64)


def block_permutation(seed: int, tag: int, n: int) -> np.ndarray:
    """Generator 4 (FORMAT.md 4.4): blocks of 2**16 in shuffled order, affine within a block."""
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    big = 1 << 16
    nb = -(-n // big)
    short = n - (nb - 1) * big
    order = bijection_permutation(seed, tag, nb)
    start = order * big - (big - short) * (order > order[-1])
    k = stream(seed, tag + 16, nb)
    a = ((k % U64(big)) | U64(1)).astype(np.int64)
    c = ((k >> U64(32)) % U64(big)).astype(np.int64)
    i = np.arange(n, dtype=np.int64)
    block, t = i // big, i % big
    g = (a[block] * t + c[block]) % big
    if short < big:
        g[block == nb - 1] = bijection_permutation(seed, tag + 32, short)
    return start[block] + g


def index_array(seed: int, n: int, m: int, permute: bool, version: int) -> np.ndarray:
    if not permute:
        return np.arange(m, dtype=np.int64) % n
    if version == 3:  # HashedNets: the hash of each position, mod n (with replacement)
        return (stream(seed, HASH, m) % U64(n)).astype(np.int64)
    perm = {1: permutation, 2: bijection_permutation, 4: block_permutation}[version]
    q, r = divmod(m, n)
    base = np.concatenate([np.tile(np.arange(n, dtype=np.int64), q), perm(seed, SELECT, n)[:r]])
    return base[perm(seed, SHUFFLE, m)]


def signs(seed: int, m: int, reflect: bool, version: int) -> np.ndarray:
    if not reflect:
        return np.ones(m, dtype=np.float32)
    if version == 4:  # bit j mod 64 of output j // 64
        words = stream(seed, SIGN, -(-m // 64))
        j = np.arange(m, dtype=U64)
        bit = (words[j >> U64(6)] >> (j & U64(63))) & U64(1)
        return np.where(bit == 0, 1.0, -1.0).astype(np.float32)
    top = stream(seed, SIGN, m) >> U64(63)
    return np.where(top == 0, 1.0, -1.0).astype(np.float32)


def read_file(path: Path) -> tuple[dict[str, Any], dict[str, str], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__")
    return header, meta, raw[8 + n :]


def tensor(header: dict[str, Any], data: bytes, name: str) -> np.ndarray:
    entry = header[name]
    begin, end = entry["data_offsets"]
    arr = np.frombuffer(data[begin:end], dtype=NUMPY_DTYPES[entry["dtype"]])
    if entry["dtype"] == "BF16":
        arr = (arr.astype(np.uint32) << np.uint32(16)).view("<f4")
    return arr.reshape(entry["shape"])


def ring_values(
    header: dict[str, Any], meta: dict[str, str], data: bytes, ring: dict[str, Any]
) -> np.ndarray:
    suffix = f"rpg_rings.{ring['name']}.weight"
    (name,) = [k for k in header if k == suffix or k.endswith("." + suffix)]
    values = tensor(header, data, name).astype(np.float32)
    if meta["ring_dtype"] == "int8":
        values = values * np.float32(json.loads(meta["ring_scales"])[ring["name"]])
    return values


def decode(path: Path, ring_seeds: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Every generated layer's weight, by module name."""
    header, meta, data = read_file(path)
    assert meta["format"] == "rpg-compact" and meta["format_version"] == "1"
    generator = json.loads(meta["generator"])
    version = generator["version"]
    ids = {1: "splitmix64-sortperm", 2: "splitmix64-bijection", 3: "splitmix64-hash"}
    ids[4] = "splitmix64-blocks"
    assert generator == {"id": ids[version], "version": version}
    out: dict[str, np.ndarray] = {}
    for ring in json.loads(meta["rings"]):
        seed = ring["seed"] if ring_seeds is None else ring_seeds[ring["name"]]
        layers = ring["layers"]
        m = sum(math.prod(s["shape"]) for s in layers)
        u = index_array(seed, ring["size"], m, ring["permute"], version)
        b = signs(seed, m, ring["reflect"], version)
        init_std = math.exp(sum(math.prod(s["shape"]) * math.log(s["std"]) for s in layers) / m)
        mult = np.repeat(
            np.array([s["std"] / init_std for s in layers], dtype=np.float32),
            [math.prod(s["shape"]) for s in layers],
        )
        flat = ring_values(header, meta, data, ring)[u] * (b * mult)
        for s in layers:
            n = math.prod(s["shape"])
            out[s["name"]] = flat[s["offset"] : s["offset"] + n].reshape(s["shape"])
    return out


def kaiming_std(shape: list[int]) -> float:
    fan_out = shape[0] * (math.prod(shape[2:]) if len(shape) > 2 else 1)
    return math.sqrt(2.0 / fan_out)


# --- the checks: rpg_core only builds, saves and materialises ----------------------------------
def _rpg_model(rpg: dict[str, Any]) -> Any:
    import torch

    from rpg_core.models import create_model
    from rpg_core.rpg.rpgify import rings

    model = create_model({"model": {"arch": "resnet18", "width": 0.125}, "rpg": rpg})
    with torch.no_grad():
        for r in rings(model).values():  # values unlike the initial ones
            r.weight.add_(torch.linspace(-0.05, 0.05, r.weight.numel()))
    return model


def _expected(model: Any) -> dict[str, np.ndarray]:
    from rpg_core.rpg.rpgify import materialize

    state = materialize(model).state_dict()
    return {k[: -len(".weight")]: v.numpy() for k, v in state.items() if k.endswith(".weight")}


CASES: dict[str, dict[str, Any]] = {
    "global": {"ring_size": 0.05, "seed": 11},
    "stage-rings": {"ring_size": 0.2, "scope": "stage", "seed": 5},
    "no-permute-no-reflect": {"ring_size": 3000, "permute": False, "reflect": False},
    "ring-larger-than-model": {"ring_size": 1.0, "seed": 2**62 + 12345},
    "generator-1": {"ring_size": 0.05, "seed": 11, "generator": 1},
    "generator-1-extra-elements": {"ring_size": 3001, "seed": 3, "generator": 1},
    "generator-2-extra-elements": {"ring_size": 3001, "seed": 3, "generator": 2},
    "generator-4-extra-elements": {"ring_size": 3001, "seed": 3},  # the default
    "generator-4-big-ring": {"ring_size": 70_001, "seed": 9},  # blocks of 2**16, short block
    "generator-3-hashed": {"ring_size": 3001, "seed": 3, "generator": 3},
    "generator-3-hashed-stage-rings": {"ring_size": 0.2, "scope": "stage", "generator": 3},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_independent_decoder_regenerates_every_layer_exactly(case: str, tmp_path: Path) -> None:
    from rpg_core.format import save_compact

    model = _rpg_model(CASES[case])
    save_compact(model, tmp_path / "m.rpg")
    decoded = decode(tmp_path / "m.rpg")
    expected = _expected(model)
    assert decoded, "the file generates no layer"
    for name, weight in decoded.items():
        assert weight.dtype == np.float32
        assert np.array_equal(weight, expected[name]), name


def test_decoder_matches_int8_and_bfloat16_rings(tmp_path: Path) -> None:
    from rpg_core.format import load_compact, save_compact

    model = _rpg_model(CASES["global"])
    for dtype in ("int8", "bfloat16"):
        path = tmp_path / f"{dtype}.rpg"
        save_compact(model, path, ring_dtype=dtype)
        decoded = decode(path)
        expected = _expected(load_compact(path))
        for name, weight in decoded.items():
            np.testing.assert_allclose(weight, expected[name], rtol=2**-23, atol=0)


def test_decoder_with_the_key_of_a_keyed_file(tmp_path: Path) -> None:
    import base64

    from rpg_core.format import save_compact

    model = _rpg_model(CASES["global"])
    key = save_compact(model, tmp_path / "k.rpg", keyed=True)
    assert key is not None and key.startswith("rpgk1.")
    body = key[len("rpgk1.") :]
    seeds = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["rings"]
    decoded = decode(tmp_path / "k.rpg", ring_seeds=seeds)
    expected = _expected(model)
    assert all(np.array_equal(w, expected[n]) for n, w in decoded.items())


def test_stored_stds_and_ring_seeds_follow_the_documented_rules(tmp_path: Path) -> None:
    from rpg_core.format import save_compact

    def fnv1a64(data: bytes) -> int:
        h = 0xCBF29CE484222325
        for byte in data:
            h = ((h ^ byte) * 0x100000001B3) & MASK
        return h

    model = _rpg_model(CASES["stage-rings"])
    save_compact(model, tmp_path / "m.rpg")
    _, meta, _ = read_file(tmp_path / "m.rpg")
    model_seed = json.loads(meta["spec"])["rpg"]["seed"]
    for ring in json.loads(meta["rings"]):
        assert ring["seed"] == mix64_scalar(model_seed ^ fnv1a64(ring["name"].encode())) >> 1
        offset = 0
        for s in ring["layers"]:
            assert s["std"] == kaiming_std(s["shape"]) and s["offset"] == offset
            offset += math.prod(s["shape"])


def test_even_sampling_uses_each_ring_element_q_or_q_plus_1_times() -> None:
    for version in (1, 2, 4):
        u = index_array(seed=3, n=1000, m=4321, permute=True, version=version)
        counts = np.bincount(u, minlength=1000)
        assert set(counts.tolist()) == {4, 5} and counts.sum() == 4321
    assert sorted(permutation(9, SHUFFLE, 777).tolist()) == list(range(777))
    assert sorted(bijection_permutation(9, SHUFFLE, 777).tolist()) == list(range(777))


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_a_file_written_before_generator_2_loads_bit_for_bit() -> None:
    """tests/fixtures/generator1-resnet18.rpg was written by rpg_core before generator 2 (commit
    9c031bc) with its logits on a fixed input; today's rpg_core rebuilds its weights exactly."""
    import torch

    from rpg_core.format import load_compact, read_header
    from rpg_core.rpg.rpgify import rings

    path = FIXTURES / "generator1-resnet18.rpg"
    assert json.loads(read_file(path)[1]["generator"]) == {
        "id": "splitmix64-sortperm",
        "version": 1,
    }
    assert read_header(path).generator_version == 1
    model = load_compact(path)
    assert {r.spec.generator for r in rings(model).values()} == {1}
    x = torch.linspace(-1, 1, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    with torch.no_grad():
        logits = model(x).numpy()
    # the weights must match bit for bit (below); the logits only to float32 rounding, since
    # convolutions sum in another order on another CPU's vector units (2.7e-7 seen)
    np.testing.assert_allclose(
        logits, np.load(FIXTURES / "generator1-resnet18.logits.npy"), rtol=1e-5, atol=1e-6
    )
    decoded = decode(path)
    expected = _expected(model)
    assert all(np.array_equal(w, expected[n]) for n, w in decoded.items())


def sparse_tensors(path: Path) -> dict[str, np.ndarray]:
    """Section 3b from the document alone: each sparse tensor from its bitmap (LSB first) and
    its values, +0.0 elsewhere."""
    header, meta, data = read_file(path)
    assert meta["format_version"] == "2"
    out: dict[str, np.ndarray] = {}
    for name, e in json.loads(meta["sparse"]).items():
        n = math.prod(e["shape"])
        bitmap = tensor(header, data, f"rpg_sparse:{name}:bitmap")
        assert bitmap.dtype == np.uint8 and bitmap.shape == ((n + 7) // 8,)
        held = np.unpackbits(bitmap, bitorder="little")[:n].astype(bool)
        values = tensor(header, data, f"rpg_sparse:{name}:values")
        assert values.shape == (e["nnz"],) == (int(held.sum()),)
        flat = np.zeros(n, dtype=values.dtype)
        flat[held] = values
        out[name] = flat.reshape(e["shape"])
    return out


def test_independent_decoder_reads_sparse_tensors_bit_for_bit(tmp_path: Path) -> None:
    import torch

    from rpg_core.format import save_compact
    from rpg_core.models import create_model
    from rpg_core.training.global_pruning import prune_global

    torch.manual_seed(4)
    model = create_model({"model": {"arch": "resnet18", "width": 0.125, "num_classes": 10}})
    prune_global(model, 10_000, rounds=1)
    with torch.no_grad():
        model.layer3[0].conv1.weight.view(-1)[7] = -0.0  # a value: its sign comes back
    save_compact(model, tmp_path / "p.rpg", sparse=True)
    decoded = sparse_tensors(tmp_path / "p.rpg")
    state = model.state_dict()
    assert "layer3.0.conv1.weight" in decoded and len(decoded) >= 10
    for name, arr in decoded.items():
        assert np.array_equal(arr.view(np.uint32), state[name].numpy().view(np.uint32)), name
