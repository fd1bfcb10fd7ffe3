"""Compact ``.rpg`` model files: the rings, the ordinary parameters and a few seeds.

A ``.rpg`` file is a safetensors file (8-byte little-endian header length, a JSON header, the raw
tensor bytes). It holds every ring and every ordinary parameter and buffer of the model; the index
arrays and sign masks are not stored, they are rebuilt from the seeds. ``docs/FORMAT.md`` is the
complete specification.

Reading never runs code from the file: the header is parsed and validated here (sizes, offsets,
dtypes, duplicate keys, metadata) before any tensor is read, the architecture is checked on
PyTorch's ``meta`` device (no memory) before the model is built, and no pickle is ever opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from . import generator
from .exceptions import RPGConfigError, RPGError, RPGFormatError, RPGKeyError
from .predict import INFERENCE_ATTR
from .ring import Ring, RingSpec

log = logging.getLogger(__name__)

FORMAT_NAME = "rpg-compact"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a header longer than this is refused unread
MAX_TENSORS = 100_000
MAX_DIMS = 8
DEFAULT_MAX_PARAMS = 500_000_000  # parameters of the plain architecture a file may ask us to build
KEY_PREFIX = "rpgk1."
KEY_SALT_CONTEXT = b"rpg-studio key check v1\x00"

RING_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8"}
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1,
}  # fmt: skip
TORCH_TO_CODE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip
CODE_TO_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
    "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip
_CODE_TO_TORCH = {v: k for k, v in TORCH_TO_CODE.items()}
_TENSOR_KEYS = {"dtype", "shape", "data_offsets"}
_RING_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RING_SUFFIX = "rpg_rings."


# --- the parsed header ---------------------------------------------------------------------
@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the file: its dtype code, shape and byte range in the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class CompactHeader:
    """A validated ``.rpg`` header (nothing built, no tensor read)."""

    path: Path
    file_size: int
    header_len: int
    tensors: dict[str, TensorEntry]
    version: int
    writer: str
    spec: dict[str, Any]
    rings: list[dict[str, Any]]
    ring_dtype: str
    ring_scales: dict[str, float]
    sha256: str
    keyed: bool
    key_salt: str | None = None
    key_check: str | None = None
    ring_keys: dict[str, str] = field(default_factory=dict)  # ring name -> tensor name
    generator_version: int = 1  # the generator that rebuilds the index arrays
    inference: dict[str, Any] | None = None  # optional: what prediction needs (FORMAT.md)

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def data_len(self) -> int:
        return self.file_size - self.data_start


def _fail(path: Path | str, message: str) -> RPGFormatError:
    # The file name only: the API reads uploads from server paths that are nobody's business.
    return RPGFormatError(f"{Path(path).name}: {message}")


# --- reading and validating the header -------------------------------------------------------
def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as err:
        raise _fail(path, f"cannot read it: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory; give the path of a .rpg file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "is not a regular file")
    if st.st_size == 0:
        raise _fail(path, "the file is empty")
    try:
        return open(path, "rb"), st.st_size  # noqa: SIM115 - closed by the caller
    except OSError as err:
        raise _fail(path, f"cannot read it: {err.strerror}") from None


def _sniff_foreign(path: Path, head: bytes) -> None:
    """Name the common wrong files (PyTorch zip or pickle) before parsing."""
    if head.startswith(b"PK\x03\x04"):
        raise _fail(
            path,
            "this is a zip archive (a PyTorch checkpoint saved with torch.save?); "
            "RPG Studio never unpickles files: save the model with save_compact / rpg train",
        )
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise _fail(
            path,
            "this is a PyTorch pickle (pickle protocol byte 0x80); RPG Studio never unpickles "
            "files: save the model with save_compact / rpg train",
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _loads(text: str | bytes, what: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise _fail(path, f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise _fail(path, f"{what} is not UTF-8 text") from None
    except ValueError as err:  # JSONDecodeError and duplicate keys
        raise _fail(path, f"{what} is not valid JSON: {err}") from None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_entry(path: Path, name: str, raw: Any) -> TensorEntry:
    where = f"header: tensor {name[:80]!r}"
    if not isinstance(raw, dict) or set(raw) != _TENSOR_KEYS:
        raise _fail(path, f"{where} must have exactly the keys dtype, shape, data_offsets")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise _fail(
            path, f"{where}: unknown dtype {str(dtype)[:20]!r}; known: {sorted(DTYPE_SIZES)}"
        )
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise _fail(path, f"{where}: shape must be a list of at most {MAX_DIMS} sizes")
    if not all(_is_int(d) and 0 <= d < 2**40 for d in shape):
        raise _fail(path, f"{where}: shape sizes must be non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise _fail(path, f"{where}: data_offsets must be [begin, end] integers")
    start, end = offsets
    if not 0 <= start <= end:
        raise _fail(path, f"{where}: data_offsets [{start}, {end}] are out of order")
    if end - start != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise _fail(path, f"{where}: data_offsets span {end - start} bytes, shape {shape} "
                          f"of {dtype} needs {math.prod(shape) * DTYPE_SIZES[dtype]}")  # fmt: skip
    return TensorEntry(name, dtype, tuple(shape), start, end)


def _check_layout(path: Path, entries: list[TensorEntry], data_len: int) -> None:
    """The tensors tile the data section exactly: no overlap, no gap, nothing past the end."""
    pos = 0
    for e in sorted(entries, key=lambda e: (e.start, e.end)):
        if e.start < pos:
            raise _fail(path, f"header: tensor {e.name!r} overlaps the tensor before it")
        if e.start > pos:
            raise _fail(path, f"header: {e.start - pos} unused bytes before tensor {e.name!r}")
        pos = e.end
    if pos > data_len:
        raise _fail(path, f"the file is truncated: the tensors need {pos} bytes of data, "
                          f"the file has {data_len}")  # fmt: skip
    if pos < data_len:
        raise _fail(path, f"{data_len - pos} bytes after the last tensor (not an .rpg file?)")


def _read_raw_header(f: BinaryIO, path: Path, size: int) -> tuple[int, dict[str, Any]]:
    head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        _sniff_foreign(path, head)
    head = head[:8]
    if len(head) < 8:
        raise _fail(path, f"the file is truncated ({size} bytes; an .rpg file starts with an "
                          "8-byte header length)")  # fmt: skip
    (hlen,) = np.frombuffer(head, dtype="<u8").tolist()
    if hlen > MAX_HEADER_BYTES:
        raise _fail(path, f"header length {hlen} is above the limit of {MAX_HEADER_BYTES} bytes "
                          "(not an .rpg file?)")  # fmt: skip
    if 8 + hlen > size:
        raise _fail(path, f"the file is truncated: the header claims {hlen} bytes, "
                          f"the file has {size - 8} after the length")  # fmt: skip
    f.seek(8)
    raw = f.read(hlen)
    if not raw.lstrip()[:1] == b"{":
        raise _fail(path, "the header is not a JSON object (not an .rpg file?)")
    parsed = _loads(raw, "the header", path)
    if not isinstance(parsed, dict):
        raise _fail(path, "the header is not a JSON object")
    return hlen, parsed


def _metadata_str(path: Path, meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if not isinstance(value, str):
        raise _fail(path, f"metadata: {key!r} is missing or not a string")
    return value


def _check_version(path: Path, meta: dict[str, Any]) -> tuple[int, str]:
    if meta.get("format") != FORMAT_NAME:
        raise _fail(path, "a safetensors file without RPG metadata (format is not "
                          f"{FORMAT_NAME!r}); export RPG models with save_compact")  # fmt: skip
    writer = _metadata_str(path, meta, "writer")[:100]
    text = _metadata_str(path, meta, "format_version")
    if not text.isdigit() or len(text) > 6:
        raise _fail(path, f"metadata: format_version {text[:20]!r} is not a positive integer")
    version = int(text)
    if version > FORMAT_VERSION:
        from . import __version__

        raise _fail(path, f"written by {writer} in format version {version}; this is "
                          f"rpg-studio {__version__}, which reads versions up to "
                          f"{FORMAT_VERSION}: upgrade to read it")  # fmt: skip
    if version < 1:
        raise _fail(path, f"metadata: format_version {version} is invalid")
    return version, writer


def _check_generator(path: Path, meta: dict[str, Any]) -> int:
    gen = _loads(_metadata_str(path, meta, "generator"), "metadata 'generator'", path)
    if not isinstance(gen, dict):
        raise _fail(path, "metadata: 'generator' must be a JSON object")
    version = gen.get("version")
    known = generator.GENERATORS
    if not _is_int(version) or version not in known or gen.get("id") != known[version]:
        have = ", ".join(f"{name!r} version {v}" for v, name in known.items())
        raise _fail(path, f"needs generator {str(gen.get('id'))[:40]!r} version "
                          f"{str(version)[:10]}; this rpg-studio has {have}: "
                          "upgrade to read it")  # fmt: skip
    return int(version)


def _check_slot(path: Path, ring: str, s: Any, offset: int) -> int:
    where = f"metadata: ring {ring!r} layer"
    if not isinstance(s, dict) or set(s) != {"name", "shape", "offset", "std"}:
        raise _fail(path, f"{where}s must have exactly name, shape, offset, std")
    if not isinstance(s["name"], str) or not s["name"] or len(s["name"]) > 512:
        raise _fail(path, f"{where} name must be a non-empty string")
    shape = s["shape"]
    if not (isinstance(shape, list) and 0 < len(shape) <= MAX_DIMS
            and all(_is_int(d) and 0 < d < 2**31 for d in shape)):  # fmt: skip
        raise _fail(path, f"{where} {s['name']!r}: shape must be a list of positive sizes")
    if s["offset"] != offset or not _is_int(s["offset"]):
        raise _fail(path, f"{where} {s['name']!r}: offset {s['offset']!r}, expected {offset}")
    std = s["std"]
    if (
        not isinstance(std, float | int)
        or isinstance(std, bool)
        or not math.isfinite(std)
        or std <= 0
    ):
        raise _fail(path, f"{where} {s['name']!r}: std must be a positive number")
    return offset + math.prod(shape)


def _check_ring(path: Path, r: Any, keyed: bool) -> dict[str, Any]:
    keys = {"name", "size", "seed", "permute", "reflect", "layers"}
    if not isinstance(r, dict) or set(r) != keys:
        raise _fail(path, f"metadata: each ring must have exactly the keys {sorted(keys)}")
    name = r["name"]
    if not isinstance(name, str) or not _RING_NAME.match(name):
        raise _fail(path, f"metadata: ring name {str(name)[:80]!r} is invalid")
    if not _is_int(r["size"]) or not 0 < r["size"] < 2**31:
        raise _fail(path, f"metadata: ring {name!r}: size must be a positive integer")
    if keyed:
        if r["seed"] is not None:
            raise _fail(path, f"metadata: ring {name!r} of a keyed file must not hold a seed")
    elif not _is_int(r["seed"]) or not 0 <= r["seed"] < generator.SEED_LIMIT:
        raise _fail(path, f"metadata: ring {name!r}: seed must be an integer in [0, 2**63)")
    if not isinstance(r["permute"], bool) or not isinstance(r["reflect"], bool):
        raise _fail(path, f"metadata: ring {name!r}: permute and reflect must be booleans")
    if not isinstance(r["layers"], list) or not r["layers"]:
        raise _fail(path, f"metadata: ring {name!r}: layers must be a non-empty list")
    offset = 0
    for s in r["layers"]:
        offset = _check_slot(path, name, s, offset)
    return r


def _check_rings(path: Path, meta: dict[str, Any], keyed: bool) -> list[dict[str, Any]]:
    rings = _loads(_metadata_str(path, meta, "rings"), "metadata 'rings'", path)
    if not isinstance(rings, list):
        raise _fail(path, "metadata: 'rings' must be a JSON list")
    out = [_check_ring(path, r, keyed) for r in rings]
    names = [r["name"] for r in out]
    if len(set(names)) != len(names):
        raise _fail(path, "metadata: two rings have the same name")
    return out


def _check_spec(path: Path, meta: dict[str, Any], rings: list[dict[str, Any]]) -> dict[str, Any]:
    spec = _loads(_metadata_str(path, meta, "spec"), "metadata 'spec'", path)
    if not isinstance(spec, dict) or set(spec) != {"model", "rpg"}:
        raise _fail(path, "metadata: 'spec' must be a JSON object with keys model and rpg")
    if not isinstance(spec["model"], dict):
        raise _fail(path, "metadata: spec.model must be a JSON object")
    if spec["rpg"] is not None and not isinstance(spec["rpg"], dict):
        raise _fail(path, "metadata: spec.rpg must be a JSON object or null")
    if (spec["rpg"] is None) != (not rings):
        raise _fail(path, "metadata: spec.rpg and the rings disagree (one is empty)")
    return spec


def _check_ring_dtype(
    path: Path, meta: dict[str, Any], names: list[str]
) -> tuple[str, dict[str, float]]:
    ring_dtype = _metadata_str(path, meta, "ring_dtype")
    if ring_dtype not in RING_DTYPES:
        raise _fail(
            path, f"metadata: ring_dtype {ring_dtype[:20]!r} is not one of {sorted(RING_DTYPES)}"
        )
    scales: dict[str, float] = {}
    if ring_dtype == "int8":
        raw = _loads(_metadata_str(path, meta, "ring_scales"), "metadata 'ring_scales'", path)
        if not isinstance(raw, dict) or set(raw) != set(names):
            raise _fail(path, "metadata: ring_scales must give one scale per ring")
        for k, v in raw.items():
            if (
                not isinstance(v, float | int)
                or isinstance(v, bool)
                or not math.isfinite(v)
                or v <= 0
            ):
                raise _fail(path, f"metadata: ring_scales[{k!r}] must be a positive number")
            scales[k] = float(v)
    return ring_dtype, scales


def _check_key_fields(path: Path, meta: dict[str, Any]) -> tuple[bool, str | None, str | None]:
    keyed = meta.get("keyed", "false")
    if keyed not in ("true", "false"):
        raise _fail(path, "metadata: 'keyed' must be 'true' or 'false'")
    if keyed == "false":
        return False, None, None
    salt = _metadata_str(path, meta, "key_salt")
    check = _metadata_str(path, meta, "key_check")
    if not re.fullmatch(r"[0-9a-f]{32}", salt) or not _HEX64.match(check):
        raise _fail(path, "metadata: key_salt / key_check are malformed")
    return True, salt, check


def _ring_tensor_names(path: Path, tensors: dict[str, TensorEntry], rings: list[dict[str, Any]],
                       ring_dtype: str) -> dict[str, str]:  # fmt: skip
    out: dict[str, str] = {}
    for r in rings:
        suffix = f"{_RING_SUFFIX}{r['name']}.weight"
        hits = [n for n in tensors if n == suffix or n.endswith("." + suffix)]
        if len(hits) != 1:
            raise _fail(path, f"missing tensor {suffix!r} for ring {r['name']!r}")
        e = tensors[hits[0]]
        if e.shape != (r["size"],) or e.dtype != RING_DTYPES[ring_dtype]:
            raise _fail(path, f"tensor {e.name!r}: expected shape [{r['size']}] of "
                              f"{RING_DTYPES[ring_dtype]}, got {list(e.shape)} of {e.dtype}")  # fmt: skip
        out[r["name"]] = hits[0]
    return out


def read_header(path: str | os.PathLike[str]) -> CompactHeader:
    """Read and validate the header of an ``.rpg`` file; read no tensor, build nothing.

    Raises:
        RPGFormatError: the file is not a valid ``.rpg`` file this version can read.
    """
    p = Path(path)
    f, size = _open_regular(p)
    with f:
        hlen, parsed = _read_raw_header(f, p, size)
    meta = parsed.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(p, "header: __metadata__ is missing or not a map of strings "
                       "(a safetensors file, but not an .rpg file)")  # fmt: skip
    if len(parsed) > MAX_TENSORS:
        raise _fail(p, f"header: more than {MAX_TENSORS} tensors")
    entries = [_parse_entry(p, name, raw) for name, raw in parsed.items()]
    _check_layout(p, entries, size - 8 - hlen)
    version, writer = _check_version(p, meta)
    generator_version = _check_generator(p, meta)
    keyed, salt, check = _check_key_fields(p, meta)
    rings = _check_rings(p, meta, keyed)
    spec = _check_spec(p, meta, rings)
    ring_dtype, scales = _check_ring_dtype(p, meta, [r["name"] for r in rings])
    digest = _metadata_str(p, meta, "sha256")
    if not _HEX64.match(digest):
        raise _fail(p, "metadata: sha256 must be 64 lowercase hex digits")
    tensors = {e.name: e for e in entries}
    return CompactHeader(
        path=p, file_size=size, header_len=hlen, tensors=tensors, version=version,
        writer=writer, spec=spec, rings=rings, ring_dtype=ring_dtype, ring_scales=scales,
        sha256=digest, keyed=keyed, key_salt=salt, key_check=check,
        ring_keys=_ring_tensor_names(p, tensors, rings, ring_dtype),
        generator_version=generator_version,
        inference=_check_inference(p, meta),
    )  # fmt: skip


def _check_inference(path: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The optional ``inference`` metadata (older files have none)."""
    if "inference" not in meta:
        return None
    from .predict import check_inference

    raw = _loads(_metadata_str(path, meta, "inference"), "metadata 'inference'", path)
    try:
        return check_inference(raw)
    except RPGConfigError as err:
        raise _fail(path, f"metadata: {err}") from None


# --- checking the file against the architecture, on the meta device --------------------------
@dataclass(frozen=True)
class Plan:
    """What the file's spec builds, worked out on the meta device (no memory, no seeds)."""

    plain: nn.Module  # the plain architecture on the meta device
    parameters: int  # learned parameters of the plain (materialised) architecture
    generated: dict[str, int]  # generated weights per ring
    parts: dict[str, str]  # tensor name -> part (ring, conv, norm, head, other)
    learned: set[str]  # tensor names that are learned parameters (not buffers)


def _build_plain_meta(h: CompactHeader) -> nn.Module:
    from .models import create_model

    model_spec = h.spec["model"]
    arch = model_spec.get("arch")
    from .models import list_models

    if isinstance(arch, str) and arch.startswith(TORCHVISION_PREFIX):
        try:
            with torch.device("meta"):
                return torchvision_model(model_spec)
        except RPGConfigError as err:
            raise _fail(h.path, f"metadata: the model spec is invalid: {err}") from None
    if arch not in list_models():
        raise _fail(h.path, f"unknown model arch {str(arch)[:40]!r}: written by {h.writer}, "
                            f"this rpg-studio knows {', '.join(list_models())}; "
                            "upgrade (or install the plugin registering it) to read it")  # fmt: skip
    try:
        with torch.device("meta"):
            return create_model({"model": model_spec}, plain=True)
    except RPGConfigError as err:
        raise _fail(h.path, f"metadata: the model spec is invalid: {err}") from None


def _part_of(plain: nn.Module, name: str) -> str:
    module_name, _, pname = name.rpartition(".")
    module = plain.get_submodule(module_name) if module_name else plain
    from .params import NORM_TYPES

    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and pname == "weight":
        return "conv"
    if isinstance(module, nn.Linear):
        return "head"
    return "other"


def _ring_host_prefix(plain: nn.Module, first_layer: str) -> str:
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return f"{first_layer}." if isinstance(plain, containers) else ""


def _expected_tensors(h: CompactHeader, plain: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype code) that the file must hold exactly."""
    state = plain.state_dict()
    expected = {k: (tuple(v.shape), TORCH_TO_CODE.get(v.dtype, "?")) for k, v in state.items()}
    for r in h.rings:
        for s in r["layers"]:
            key = f"{s['name']}.weight"
            if key not in expected:
                raise _fail(h.path, f"ring {r['name']!r} generates {s['name']!r}, which is not "
                                    "a layer with a weight in this architecture")  # fmt: skip
            if expected[key][0] != tuple(s["shape"]):
                raise _fail(h.path, f"ring {r['name']!r}: layer {s['name']!r} has shape "
                                    f"{list(expected[key][0])}, the file says {s['shape']}")  # fmt: skip
            del expected[key]
    if h.rings:
        prefix = _ring_host_prefix(plain, h.rings[0]["layers"][0]["name"])
        for r in h.rings:
            expected[f"{prefix}{_RING_SUFFIX}{r['name']}.weight"] = (
                (r["size"],),
                RING_DTYPES[h.ring_dtype],
            )
    return expected


def _check_tensors(h: CompactHeader, expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    missing = sorted(set(expected) - set(h.tensors))
    extra = sorted(set(h.tensors) - set(expected))
    if missing or extra:
        raise _fail(h.path, f"the tensors do not match the model: missing {missing[:5]}, "
                            f"unexpected {extra[:5]}")  # fmt: skip
    for name, (shape, dtype) in expected.items():
        e = h.tensors[name]
        if e.shape != shape or e.dtype != dtype:
            raise _fail(h.path, f"tensor {name!r}: expected shape {list(shape)} of {dtype}, "
                                f"got {list(e.shape)} of {e.dtype}")  # fmt: skip


def plan(h: CompactHeader, *, max_params: int = DEFAULT_MAX_PARAMS) -> Plan:
    """Check the header against the architecture its spec names, on the meta device."""
    plain = _build_plain_meta(h)
    parameters = sum(p.numel() for p in plain.parameters())
    if parameters > max_params:
        raise _fail(h.path, f"the model has {parameters:,} parameters, above the limit of "
                            f"{max_params:,} (raise max_params to load it)")  # fmt: skip
    _check_tensors(h, _expected_tensors(h, plain))
    learned = {n for n, _ in plain.named_parameters()} | set(h.ring_keys.values())
    parts = {n: ("ring" if n in h.ring_keys.values() else _part_of(plain, n)) for n in h.tensors}
    generated = {r["name"]: sum(math.prod(s["shape"]) for s in r["layers"]) for r in h.rings}
    return Plan(plain, parameters, generated, parts, learned)


# --- keys ----------------------------------------------------------------------------------
def _key_check(salt: str, key: str) -> str:
    return hashlib.sha256(KEY_SALT_CONTEXT + bytes.fromhex(salt) + key.encode()).hexdigest()


def _encode_key(model_seed: int, ring_seeds: dict[str, int]) -> str:
    payload = json.dumps({"seed": model_seed, "rings": ring_seeds}, separators=(",", ":"))
    return KEY_PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_key(h: CompactHeader, key: str) -> tuple[int, dict[str, int]]:
    if not isinstance(key, str) or len(key) > 64_000:
        raise RPGKeyError(f"{h.path.name}: the key must be the string save_compact returned")
    if not h.key_salt or not h.key_check or _key_check(h.key_salt, key) != h.key_check:
        raise RPGKeyError(f"{h.path.name}: wrong key for this model (the file is intact: its key "
                          "checksum does not match the key given)")  # fmt: skip
    try:
        body = key[len(KEY_PREFIX) :]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        seed = generator.check_seed(data["seed"], "key seed")
        rings = {str(k): generator.check_seed(v, "key ring seed") for k, v in data["rings"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RPGError):
        raise RPGKeyError(f"{h.path.name}: the key matches but cannot be decoded") from None
    return seed, rings


def _seeds_for(h: CompactHeader, key: str | None) -> tuple[int | None, dict[str, int]]:
    """The model seed (None for a plain model) and each ring's seed."""
    if not h.keyed:
        if key is not None:
            log.info("%s is not keyed; the key given is ignored", h.path)
        if h.spec["rpg"] is None:
            return None, {}
        seed = h.spec["rpg"].get("seed")
        if not _is_int(seed) or not 0 <= seed < generator.SEED_LIMIT:
            raise _fail(h.path, "metadata: spec.rpg.seed must be an integer in [0, 2**63)")
        return seed, {r["name"]: r["seed"] for r in h.rings}
    if key is None:
        raise RPGKeyError(f"{h.path.name}: this model is keyed; pass the key it was saved with "
                          "(load_compact(path, key=...) or --key)")  # fmt: skip
    seed, rings = _decode_key(h, key)
    if set(rings) != {r["name"] for r in h.rings}:
        raise RPGKeyError(f"{h.path.name}: the key names other rings than the file")
    return seed, rings


# --- data ------------------------------------------------------------------------------------
def _read_data(h: CompactHeader) -> bytes:
    with open(h.path, "rb") as f:
        f.seek(h.data_start)
        data = f.read(h.data_len)
    if len(data) != h.data_len:
        raise _fail(h.path, "the file changed while it was read (truncated)")
    if hashlib.sha256(data).hexdigest() != h.sha256:
        raise _fail(h.path, "checksum mismatch: the tensor data is corrupt (sha256 differs "
                            "from the one recorded when the file was written)")  # fmt: skip
    return data


def verify_checksum(h: CompactHeader) -> None:
    """Stream the data section through sha256 and compare (memory: 1 MiB at a time)."""
    digest = hashlib.sha256()
    with open(h.path, "rb") as f:
        f.seek(h.data_start)
        left = h.data_len
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                raise _fail(h.path, "the file changed while it was read (truncated)")
            digest.update(chunk)
            left -= len(chunk)
    if digest.hexdigest() != h.sha256:
        raise _fail(h.path, "checksum mismatch: the tensor data is corrupt (sha256 differs "
                            "from the one recorded when the file was written)")  # fmt: skip


def _to_tensor(e: TensorEntry, data: bytes) -> torch.Tensor:
    if e.numel == 0:
        return torch.empty(e.shape, dtype=_CODE_TO_TORCH[e.dtype])
    arr = np.frombuffer(data, dtype=CODE_TO_NUMPY[e.dtype], count=e.numel, offset=e.start)
    if e.dtype == "BF16":
        arr = (arr.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True)).reshape(e.shape)


def _ring_values(h: CompactHeader, name: str, data: bytes) -> torch.Tensor:
    values = _to_tensor(h.tensors[h.ring_keys[name]], data).to(torch.float32)
    if h.ring_dtype == "int8":
        values = values * torch.tensor(h.ring_scales[name], dtype=torch.float32)
    return values


# --- save --------------------------------------------------------------------------------------
def _ring_keys_of(model: nn.Module) -> dict[str, str]:
    return {m.spec.name: f"{n}.weight" for n, m in model.named_modules() if isinstance(m, Ring)}


def _encode_ring(w: torch.Tensor, ring_dtype: str) -> tuple[torch.Tensor, float | None]:
    w = w.detach().to("cpu", torch.float32)
    if ring_dtype == "int8":
        peak = float(w.abs().max()) if w.numel() else 0.0
        scale = float(np.float32(peak / 127.0)) if peak > 0 else 1.0
        q = torch.round(w / torch.tensor(scale, dtype=torch.float32)).clamp_(-127, 127)
        return q.to(torch.int8), scale
    return w.to(getattr(torch, ring_dtype)), None


def _state_with_rings(
    model: nn.Module, ring_dtype: str
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The state_dict with every ring encoded in ``ring_dtype``, and the int8 scales."""
    tensors = dict(model.state_dict())
    scales: dict[str, float] = {}
    for name, tensor_name in _ring_keys_of(model).items():
        tensors[tensor_name], scale = _encode_ring(tensors[tensor_name], ring_dtype)
        if scale is not None:
            scales[name] = scale
    return tensors, scales


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def _layout(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, Any], list[bytes]]:
    """Header entries and data chunks; larger dtypes first, so every tensor is aligned."""
    order = sorted(tensors, key=lambda k: -tensors[k].element_size())
    entries: dict[str, Any] = {}
    chunks: list[bytes] = []
    pos = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in TORCH_TO_CODE:
            raise RPGConfigError(f"save_compact: tensor {name!r} has unsupported dtype {t.dtype}")
        raw = _tensor_bytes(t)
        entries[name] = {
            "dtype": TORCH_TO_CODE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [pos, pos + len(raw)],
        }
        chunks.append(raw)
        pos += len(raw)
    return entries, chunks


def _writer() -> str:
    from . import __version__

    return f"rpg-studio {__version__}"


def _metadata(spec: dict[str, Any], ring_specs: list[dict[str, Any]], ring_dtype: str,
              scales: dict[str, float], digest: str,
              version: int = generator.GENERATOR_VERSION) -> dict[str, str]:  # fmt: skip
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "writer": _writer(),
        "spec": json.dumps(spec, sort_keys=True, separators=(",", ":")),
        "rings": json.dumps(ring_specs, separators=(",", ":")),
        "generator": json.dumps({"id": generator.GENERATORS[version], "version": version}),
        "ring_dtype": ring_dtype,
        "sha256": digest,
        "keyed": "false",
    }
    if ring_dtype == "int8":
        meta["ring_scales"] = json.dumps(scales)
    return meta


def _write_atomic(path: Path, header: bytes, chunks: list[bytes]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(len(header).to_bytes(8, "little"))
            f.write(header)
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _header_bytes(entries: dict[str, Any], meta: dict[str, str]) -> bytes:
    header = json.dumps({"__metadata__": meta, **entries}, separators=(",", ":")).encode()
    return header + b" " * (-len(header) % 8)  # pad to 8 bytes, as safetensors does


def save_compact(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    ring_dtype: str = "float32",
    keyed: bool = False,
    inference: dict[str, Any] | None = None,
) -> str | None:
    """Write ``model`` as a compact ``.rpg`` file; return the key of a keyed file, else None.

    Args:
        model: a model built by :func:`rpg_core.models.create_model` (plain or RPG), or a
            torchvision classification model converted with :func:`rpg_core.rpgify` (rebuilt
            by its builder's name).
        path: where to write (replaced atomically).
        ring_dtype: ``float32`` (exact), ``float16``, ``bfloat16`` or ``int8`` (symmetric
            per-ring quantisation, one byte per ring element plus one stored scale).
        keyed: leave the seeds out of the file and return them as a key string; the file then
            loads only with that key (see docs/FORMAT.md for what this does and does not protect).
        inference: what prediction needs (input size and channels, normalisation, class names;
            :func:`rpg_core.inference_info` builds it); default: the model's own, when it was
            loaded from a file that has it.
    """
    from .models import model_spec_of
    from .predict import check_inference

    spec = model_spec_of(model) or torchvision_spec(model)
    info = inference if inference is not None else model.__dict__.get(INFERENCE_ATTR)
    info = check_inference(info) if info is not None else None
    if ring_dtype not in RING_DTYPES:
        raise RPGConfigError(f"ring_dtype must be one of {sorted(RING_DTYPES)}, got {ring_dtype!r}")
    ring_mods = {m.spec.name: m for m in model.modules() if isinstance(m, Ring)}
    if keyed and not ring_mods:
        raise RPGConfigError("keyed=True needs an RPG model (a plain model has no seeds to hide)")
    tensors, scales = _state_with_rings(model, ring_dtype)
    entries, chunks = _layout(tensors)
    digest = hashlib.sha256()
    for c in chunks:
        digest.update(c)
    spec = json.loads(json.dumps(spec))
    ring_specs = [r.spec.to_dict() for r in ring_mods.values()]
    versions = {r.spec.generator for r in ring_mods.values()} or {generator.GENERATOR_VERSION}
    if len(versions) > 1:
        raise RPGConfigError(
            f"the model's rings were made by different generators {sorted(versions)}; "
            f"one file holds one generator: rebuild the rings with one generator_version"
        )
    meta = _metadata(spec, ring_specs, ring_dtype, scales, digest.hexdigest(), versions.pop())
    if info is not None:
        meta["inference"] = json.dumps(info, separators=(",", ":"))
    key = _make_keyed(spec, ring_specs, meta) if keyed else None
    _write_atomic(Path(path), _header_bytes(entries, meta), chunks)
    log.info("saved %s (%s rings, %d tensors)", path, ring_dtype, len(entries))
    return key


def _make_keyed(
    spec: dict[str, Any], ring_specs: list[dict[str, Any]], meta: dict[str, str]
) -> str:
    seed = int(spec["rpg"]["seed"])
    if seed < 2**32:
        log.warning("keyed save: the model seed %d is small and can be guessed; a keyed model "
                    "is only as secret as its seed (train it with a random 63-bit seed)", seed)  # fmt: skip
    key = _encode_key(seed, {r["name"]: int(r["seed"]) for r in ring_specs})
    spec["rpg"]["seed"] = None
    for r in ring_specs:
        r["seed"] = None
    salt = secrets.token_hex(16)
    meta.update(
        spec=json.dumps(spec, sort_keys=True, separators=(",", ":")),
        rings=json.dumps(ring_specs, separators=(",", ":")),
        keyed="true",
        key_salt=salt,
        key_check=_key_check(salt, key),
    )
    return key


# --- torchvision models, rebuilt by name ----------------------------------------------------
TORCHVISION_PREFIX = "torchvision:"


def _classification_builders() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(model_spec: dict[str, Any]) -> nn.Module:
    """The plain torchvision classification model ``{"arch": "torchvision:NAME", "num_classes":
    N}`` names (random weights; built on the current default device)."""
    import torchvision

    if set(model_spec) - {"arch", "num_classes"}:
        raise RPGConfigError(
            f"a torchvision model spec holds arch and num_classes only, got {sorted(model_spec)}"
        )
    name = str(model_spec["arch"])[len(TORCHVISION_PREFIX) :]
    n = model_spec.get("num_classes")
    if name not in _classification_builders():
        raise RPGConfigError(f"unknown torchvision classification model {name[:60]!r}")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
        raise RPGConfigError(f"num_classes must be an int in 1..100000, got {n!r}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. googlenet's init-weights notice
        return torchvision.models.get_model(name, weights=None, num_classes=n)


def build_torchvision(spec: dict[str, Any]) -> nn.Module:
    """A torchvision model converted with rpgify as the spec's ``rpg`` says (rings seeded)."""
    from .models import _materialize_ordinary
    from .rpgify import rpgify

    with torch.device("meta"):
        model = torchvision_model(spec["model"])
    if spec["rpg"] is not None:
        kwargs = dict(spec["rpg"])
        kwargs["generator_version"] = kwargs.pop("generator", 1)  # absent: before generator 2
        rpgify(model, **kwargs)
    _materialize_ordinary(model)
    model.rpg_spec = json.loads(json.dumps(spec))
    return model


def _plain_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of the plain network a converted model came from."""
    from .rpgify import RINGS_ATTR

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if f"{RINGS_ATTR}." not in k}
    for ring in (m for m in model.modules() if isinstance(m, Ring)):
        for slot in ring.spec.layers:
            shapes[f"{slot.name}.weight"] = tuple(slot.shape)
    return shapes


def torchvision_spec(model: nn.Module) -> dict[str, Any]:
    """``{"model": {"arch": "torchvision:NAME", "num_classes": N}, "rpg": ...}`` for a
    torchvision classification model (converted with rpgify or plain), found by rebuilding the
    candidate builders on the meta device and comparing every shape. Raises RPGConfigError
    saying what to do for any other model."""
    what = type(model).__name__
    rpg_kwargs = model.__dict__.get("rpg_rpgify")
    module = getattr(type(model), "_rpg_base_class", type(model)).__module__
    candidates: list[str] = []
    if module.startswith("torchvision.models"):
        import torchvision

        builder = torchvision.models.get_model_builder
        candidates = [n for n in _classification_builders() if builder(n).__module__ == module]
    if not candidates or (rpg_kwargs is None and any(isinstance(m, Ring) for m in model.modules())):
        raise RPGConfigError(
            f"save_compact: cannot rebuild a {what} by name. A .rpg file rebuilds its "
            "architecture: build the model with rpg_core.create_model(spec) (registered "
            "architectures: `rpg models`; add yours with rpg_core.register_model), or convert a "
            "torchvision classification model with rpg_core.rpgify. To keep this one, save "
            "rpg_core.materialize(model).state_dict() with safetensors (never torch.save)"
        )
    target = _plain_shapes(model)
    heads = {m.out_features for m in model.modules() if isinstance(m, nn.Linear)} | {
        m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)
    }
    for name in candidates:
        for n in sorted(heads):
            spec = {"arch": f"{TORCHVISION_PREFIX}{name}", "num_classes": n}
            try:
                with torch.device("meta"):
                    plain = torchvision_model(spec)
            except Exception:  # noqa: BLE001, S112 - a builder that rejects n is not the one
                continue
            if {k: tuple(v.shape) for k, v in plain.state_dict().items()} == target:
                return {"model": spec, "rpg": json.loads(json.dumps(rpg_kwargs))}
    raise RPGConfigError(
        f"save_compact: this {what} matches none of torchvision's {', '.join(candidates)} "
        "(a modified architecture cannot be rebuilt by name); register it with "
        "rpg_core.register_model and build it with rpg_core.create_model"
    )


# --- load --------------------------------------------------------------------------------------
@contextmanager
def _as_format_error(h: CompactHeader) -> Iterator[None]:
    try:
        yield
    except RPGFormatError:
        raise
    except RPGConfigError as err:
        raise _fail(h.path, f"the stored spec cannot be built: {err}") from None


def _build(h: CompactHeader, seed: int | None, ring_seeds: dict[str, int]) -> nn.Module:
    from .models import create_model

    spec = json.loads(json.dumps(h.spec))
    if spec["rpg"] is not None:
        spec["rpg"]["seed"] = seed
        spec["rpg"]["generator"] = h.generator_version  # the file's, whatever its spec says
    with _as_format_error(h):
        if str(spec["model"].get("arch", "")).startswith(TORCHVISION_PREFIX):
            model = build_torchvision(spec)
        else:
            model = create_model(spec)
    built = {m.spec.name: m.spec for m in model.modules() if isinstance(m, Ring)}
    if set(built) != {r["name"] for r in h.rings}:
        raise _fail(h.path, f"the stored spec builds the rings {sorted(built)}, the file holds "
                            f"{sorted(r['name'] for r in h.rings)}")  # fmt: skip
    for r in h.rings:
        stored = RingSpec.from_dict({**r, "seed": ring_seeds[r["name"]]}, h.generator_version)
        if built.get(r["name"]) != stored:
            raise _fail(h.path, f"ring {r['name']!r}: the file's ring spec differs from what "
                                f"this rpg-studio builds from the stored spec (written by "
                                f"{h.writer})")  # fmt: skip
    return model


def load_compact(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    key: str | None = None,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> nn.Module:
    """Rebuild the model saved in an ``.rpg`` file (in eval mode).

    The header is validated, the tensor list is checked against the architecture on the meta
    device, the checksum is verified, then the model is rebuilt with ``create_model`` from the
    stored spec (index arrays and signs from the seeds) and the tensors are loaded strictly.

    Raises:
        RPGFormatError: the file is invalid, corrupt, or needs a newer rpg-studio.
        RPGKeyError: a keyed file without its key, or with the wrong key.
    """
    h = read_header(path)
    plan(h, max_params=max_params)
    seed, ring_seeds = _seeds_for(h, key)
    data = _read_data(h)
    model = _build(h, seed, ring_seeds)
    state = {n: _to_tensor(e, data) for n, e in h.tensors.items()}
    for name, tensor_name in h.ring_keys.items():
        state[tensor_name] = _ring_values(h, name, data)
    try:
        with torch.no_grad():
            model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # every name, shape and dtype was checked; this is a last guard
        raise _fail(h.path, f"the tensors do not fit the model: {str(err)[:500]}") from None
    if h.inference is not None:
        model.__dict__[INFERENCE_ATTR] = dict(h.inference)
    return model.to(map_location).eval()


# --- inspect -----------------------------------------------------------------------------------
def _reference_bytes(h: CompactHeader, p: Plan, full_state: int) -> dict[str, int]:
    """Sizes of the reference code's artifacts for the same model (see docs/FORMAT.md)."""
    m = sum(p.generated.values())
    ring = sum(r["size"] for r in h.rings)
    ordinary = full_state - 4 * m  # the materialised state minus the generated weights
    npy_header = 128
    return {
        "checkpoint": ordinary + 4 * ring,
        "index_npy": 8 * m + npy_header if m else 0,
        "masks_npy": 4 * m + npy_header if m else 0,
    }


def _sizes(h: CompactHeader, p: Plan) -> dict[str, Any]:
    by_part: dict[str, int] = {"header": 8 + h.header_len}
    params: dict[str, int] = {}
    buffers = 0
    for name, e in h.tensors.items():
        part = p.parts[name]
        by_part[part] = by_part.get(part, 0) + e.nbytes
        if name in p.learned:
            params[part] = params.get(part, 0) + e.numel
        else:
            buffers += e.numel
    full_state = sum(t.numel() * t.element_size() for t in p.plain.state_dict().values())
    ref = _reference_bytes(h, p, full_state)
    ref_total = sum(ref.values())
    return {
        "params": {**params, "total": sum(params.values())},
        "buffer_elements": buffers,
        "bytes": {**by_part, "total": h.file_size},
        "full_float32_state_dict_bytes": full_state,
        "reference_artifacts_bytes": {**ref, "total": ref_total},
        "ratio_vs_full_state_dict": full_state / h.file_size,
        "ratio_vs_reference": ref_total / h.file_size,
    }


def inspect_compact(
    path: str | os.PathLike[str],
    *,
    build: bool = False,
    key: str | None = None,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> dict[str, Any]:
    """Describe an ``.rpg`` file: spec, rings, parameters and bytes by part, size ratios.

    Safe on hostile input: the header is validated and checked against the architecture on
    the meta device (no memory, nothing executed) and the checksum is streamed. With
    ``build=True`` the model is also rebuilt (needs the key for a keyed file) and checked.
    """
    h = read_header(path)
    p = plan(h, max_params=max_params)
    verify_checksum(h)
    rings = [
        {
            "name": r["name"], "size": r["size"], "generated": p.generated[r["name"]],
            "layers": len(r["layers"]), "permute": r["permute"], "reflect": r["reflect"],
            "seed": r["seed"], "dtype": h.ring_dtype,
            **({"scale": h.ring_scales[r["name"]]} if h.ring_dtype == "int8" else {}),
        }
        for r in h.rings
    ]  # fmt: skip
    out: dict[str, Any] = {
        "path": str(h.path), "format": FORMAT_NAME, "format_version": h.version,
        "writer": h.writer, "spec": h.spec, "keyed": h.keyed, "ring_dtype": h.ring_dtype,
        "rings": rings, "generated": sum(p.generated.values()),
        "plain_parameters": p.parameters, "checksum": "ok", "inference": h.inference,
        **_sizes(h, p),
    }  # fmt: skip
    if build:
        from .params import count_params

        model = load_compact(path, key=key, max_params=max_params)
        out["built"] = count_params(model).as_dict()
    return out


# --- export ------------------------------------------------------------------------------------
def _example_input(h: CompactHeader, input_size: int | None) -> torch.Tensor:
    model = h.spec["model"]
    large = model.get("variant") == "imagenet" or str(model.get("arch")).startswith("torchvision:")
    stored = h.inference["image_size"] if h.inference else None
    size = input_size or stored or (224 if large else 32)
    if not 8 <= size <= 4096:
        raise RPGConfigError(f"input_size must be in [8, 4096], got {size}")
    return torch.zeros(1, int(model.get("in_channels") or 3), size, size)


def _export_onnx(plain: nn.Module, example: torch.Tensor, out: Path) -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise RPGConfigError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'rpg-studio[onnx]'"
        )
    inputs, outputs = ["input"], ["logits"]
    try:
        torch.onnx.export(
            plain, (example,), str(out), dynamo=True, verbose=False,
            input_names=inputs, output_names=outputs,
        )  # fmt: skip
    except Exception as err:  # the dynamo exporter fails in many ways; fall back
        log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", err)
        torch.onnx.export(
            plain, (example,), str(out), dynamo=False, input_names=inputs, output_names=outputs
        )


def export_plain(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    to: str,
    key: str | None = None,
    input_size: int | None = None,
) -> Path:
    """Export the model of an ``.rpg`` file as a plain (materialised) network.

    ``to="onnx"``: an ONNX graph (input ``input``: 1 x C x S x S; output ``logits``).
    ``to="safetensors"``: the plain state_dict, with the plain spec in the metadata (load it
    with ``create_model({"model": spec["model"]})`` and ``load_state_dict``).
    """
    from .rpgify import materialize

    if to not in ("onnx", "safetensors"):
        raise RPGConfigError(f"to must be 'onnx' or 'safetensors', got {to!r}")
    h = read_header(path)
    plain = materialize(load_compact(path, key=key)).eval()
    out = Path(out)
    if to == "onnx":
        _export_onnx(plain, _example_input(h, input_size), out)
    else:
        from safetensors.torch import save_file

        spec = {"model": h.spec["model"], "rpg": None}
        meta = {"format": "rpg-plain", "writer": _writer(), "spec": json.dumps(spec)}
        state = {k: v.contiguous() for k, v in plain.state_dict().items()}
        save_file(state, str(out), metadata=meta)
    log.info("exported %s to %s (%s)", path, out, to)
    return out
