"""The ``.rpg`` metadata on top of the safetensors container, validated into a
:class:`CompactHeader`: format and generator versions, rings and their layers, the spec, the ring
dtype, the key fields, the optional inference dict, and the checksum of the data. No torch.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog.tasks import list_tasks
from ..exceptions import RPGConfigError
from ..rpg import generator
from .container import (
    MAX_DIMS,
    Container,
    TensorEntry,
    iter_data,
    read_container,
)
from .container import fail as _fail
from .container import is_int as _is_int
from .container import loads as _loads
from .container import read_data as _container_data
from .inference import check_inference

FORMAT_NAME = "rpg-compact"
FORMAT_VERSION = 2  # 2: sparse tensors (written only by files that have them; others stay 1)
SPARSE_FORMAT_VERSION = 2  # the format version a file with sparse tensors declares
SPARSE_PREFIX = "rpg_sparse:"  # a sparse tensor's stored parts: PREFIX + name + ":bitmap"/":values"
SPARSE_DTYPES = ("F64", "F32", "F16", "BF16")
RING_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8"}
RING_SUFFIX = "rpg_rings."
_RING_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SparseEntry:
    """A tensor stored sparse (docs/FORMAT.md section 3b): a bitmap of the positions whose
    value is not all-zero bits, and those values in order."""

    name: str  # the state_dict key it rebuilds
    dtype: str
    shape: tuple[int, ...]
    nnz: int  # values stored (bits set in the bitmap)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bitmap(self) -> str:
        return f"{SPARSE_PREFIX}{self.name}:bitmap"

    @property
    def values(self) -> str:
        return f"{SPARSE_PREFIX}{self.name}:values"


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
    sparse: dict[str, SparseEntry] = field(default_factory=dict)  # name -> its sparse parts

    def logical_tensors(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """The tensors the file rebuilds, name -> (shape, dtype code): the stored ones, with
        each sparse tensor's bitmap and values standing for the dense tensor."""
        out = {n: (e.shape, e.dtype) for n, e in self.tensors.items() if n not in self._parts}
        out.update({n: (e.shape, e.dtype) for n, e in self.sparse.items()})
        return out

    @property
    def _parts(self) -> dict[str, str]:
        """Stored name of a sparse tensor's part -> the tensor it rebuilds."""
        return {p: e.name for e in self.sparse.values() for p in (e.bitmap, e.values)}

    def stored_as(self, stored: str) -> str:
        """The name of the tensor a stored tensor is (or is part of)."""
        return self._parts.get(stored, stored)

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def data_len(self) -> int:
        return self.file_size - self.data_start

    @property
    def container(self) -> Container:
        """The container under this header (its data section; metadata already parsed)."""
        return Container(self.path, self.file_size, self.header_len, {}, self.tensors)


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
        from ..version import __version__

        raise _fail(path, f"written by {writer} in format version {version}; this is "
                          f"rpg-studio {__version__}, which reads versions up to "
                          f"{FORMAT_VERSION}: upgrade to read it")  # fmt: skip
    if version < 1:
        raise _fail(path, f"metadata: format_version {version} is invalid")
    return version, writer


_GENERATOR_KEYS = {"id", "version"}


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
    unknown = sorted(set(gen) - _GENERATOR_KEYS)
    if unknown:  # docs/FORMAT.md section 2: exactly id and version
        raise _fail(path, f"metadata 'generator': unknown key {str(unknown[0])[:40]!r}; the "
                          "generator object has exactly the keys 'id' and 'version' (a file "
                          "from another writer: remove the key, or read it with the rpg-studio "
                          "that wrote it)")  # fmt: skip
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
    if not isinstance(spec, dict) or set(spec) - {"task"} != {"model", "rpg"}:
        raise _fail(path, "metadata: 'spec' must be a JSON object with keys model and rpg "
                          "(and task, for a model of a task other than classification)")  # fmt: skip
    if "task" in spec and spec["task"] not in list_tasks():
        raise _fail(path, f"metadata: spec.task {str(spec['task'])[:40]!r} is not a task this "
                          f"rpg-studio knows ({', '.join(list_tasks())}); upgrade to read it")  # fmt: skip
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
        suffix = f"{RING_SUFFIX}{r['name']}.weight"
        hits = [n for n in tensors if n == suffix or n.endswith("." + suffix)]
        if len(hits) != 1:
            raise _fail(path, f"missing tensor {suffix!r} for ring {r['name']!r}")
        e = tensors[hits[0]]
        if e.shape != (r["size"],) or e.dtype != RING_DTYPES[ring_dtype]:
            raise _fail(path, f"tensor {e.name!r}: expected shape [{r['size']}] of "
                              f"{RING_DTYPES[ring_dtype]}, got {list(e.shape)} of {e.dtype}")  # fmt: skip
        out[r["name"]] = hits[0]
    return out


_REWRITE = "the file is corrupt: write it again with save_compact(..., sparse=True)"


def _check_sparse(
    path: Path, meta: dict[str, Any], tensors: dict[str, TensorEntry], version: int
) -> dict[str, SparseEntry]:
    """The ``sparse`` metadata (docs/FORMAT.md section 3b) against the stored tensors: every
    sparse tensor has its bitmap (U8, one bit per position) and its values (``nnz`` of its
    dtype), is not also stored dense, and no stored part is left over."""
    if "sparse" not in meta:
        leftover = sorted(n for n in tensors if n.startswith(SPARSE_PREFIX))
        if leftover:
            raise _fail(path, f"tensor {leftover[0][:120]!r} is a sparse part but the metadata "
                              f"has no 'sparse' entry for it; {_REWRITE}")  # fmt: skip
        return {}
    if version < SPARSE_FORMAT_VERSION:
        raise _fail(path, f"metadata 'sparse' (sparse tensors) needs format_version "
                          f"{SPARSE_FORMAT_VERSION}, the file says {version}; {_REWRITE}")  # fmt: skip
    raw = _loads(_metadata_str(path, meta, "sparse"), "metadata 'sparse'", path)
    if not isinstance(raw, dict):
        raise _fail(path, "metadata: 'sparse' must be a JSON object (tensor name -> entry)")
    out: dict[str, SparseEntry] = {}
    for name, e in raw.items():
        where = f"metadata 'sparse': tensor {name[:120]!r}"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "nnz"}:
            raise _fail(path, f"{where} must have exactly the keys dtype, shape, nnz")
        shape = e["shape"]
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
                and all(_is_int(d) and 0 <= d < 2**40 for d in shape)):  # fmt: skip
            raise _fail(path, f"{where}: shape must be a list of at most {MAX_DIMS} sizes")
        if e["dtype"] not in SPARSE_DTYPES:
            raise _fail(path, f"{where}: dtype must be one of {list(SPARSE_DTYPES)}")
        entry = SparseEntry(name, e["dtype"], tuple(shape), e["nnz"])
        if not _is_int(entry.nnz) or not 0 <= entry.nnz <= entry.numel:
            raise _fail(path, f"{where}: nnz must be an integer in 0..{entry.numel}")
        if name in tensors:
            raise _fail(path, f"{where} is also stored dense; {_REWRITE}")
        bits = (entry.numel + 7) // 8
        bm = tensors.get(entry.bitmap)
        if bm is None or bm.dtype != "U8" or bm.shape != (bits,):
            got = "missing" if bm is None else f"{list(bm.shape)} of {bm.dtype}"
            raise _fail(path, f"tensor {entry.bitmap[:160]!r}: the bitmap of {name[:120]!r} must "
                              f"be U8 of shape [{bits}] (one bit per position of shape "
                              f"{list(shape)}), got {got}; {_REWRITE}")  # fmt: skip
        vals = tensors.get(entry.values)
        if vals is None or vals.dtype != entry.dtype or vals.shape != (entry.nnz,):
            got = "missing" if vals is None else f"{list(vals.shape)} of {vals.dtype}"
            raise _fail(path, f"tensor {entry.values[:160]!r}: the values of {name[:120]!r} must "
                              f"be {entry.dtype} of shape [{entry.nnz}] (its nnz), got {got}; "
                              f"{_REWRITE}")  # fmt: skip
        out[name] = entry
    parts = {p for e in out.values() for p in (e.bitmap, e.values)}
    leftover = sorted(n for n in tensors if n.startswith(SPARSE_PREFIX) and n not in parts)
    if leftover:
        raise _fail(path, f"tensor {leftover[0][:120]!r} is a sparse part of no tensor in the "
                          f"metadata 'sparse'; {_REWRITE}")  # fmt: skip
    return out


def read_header(path: str | os.PathLike[str]) -> CompactHeader:
    """Read and validate the header of an ``.rpg`` file; read no tensor, build nothing.

    Raises:
        RPGFormatError: the file is not a valid ``.rpg`` file this version can read.
    """
    p = Path(path)
    c = read_container(p)
    meta, size, hlen = c.metadata, c.file_size, c.header_len
    version, writer = _check_version(p, meta)
    generator_version = _check_generator(p, meta)
    keyed, salt, check = _check_key_fields(p, meta)
    rings = _check_rings(p, meta, keyed)
    spec = _check_spec(p, meta, rings)
    ring_dtype, scales = _check_ring_dtype(p, meta, [r["name"] for r in rings])
    digest = _metadata_str(p, meta, "sha256")
    if not _HEX64.match(digest):
        raise _fail(p, "metadata: sha256 must be 64 lowercase hex digits")
    tensors = c.tensors
    return CompactHeader(
        path=p, file_size=size, header_len=hlen, tensors=tensors, version=version,
        writer=writer, spec=spec, rings=rings, ring_dtype=ring_dtype, ring_scales=scales,
        sha256=digest, keyed=keyed, key_salt=salt, key_check=check,
        ring_keys=_ring_tensor_names(p, tensors, rings, ring_dtype),
        generator_version=generator_version,
        inference=_check_inference(p, meta, spec),
        sparse=_check_sparse(p, meta, tensors, version),
    )  # fmt: skip


def _check_inference(
    path: Path, meta: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any] | None:
    """The optional ``inference`` metadata (older files have none), in bounds (an input of at
    most MAX_IMAGE_SIZE pixels a side) and agreeing with the spec's input channels: checked
    when the header is read, before any weight or image is allocated."""
    if "inference" not in meta:
        return None
    raw = _loads(_metadata_str(path, meta, "inference"), "metadata 'inference'", path)
    try:
        info = check_inference(raw)
    except RPGConfigError as err:
        raise _fail(path, f"metadata: {err}") from None
    channels = spec["model"].get("in_channels")
    if isinstance(channels, int) and channels != info["in_channels"]:
        raise _fail(
            path,
            f"metadata: inference.in_channels is {info['in_channels']} but spec.model.in_channels "
            f"is {channels}; the two describe one input",
        )
    return info


_CORRUPT = (
    "checksum mismatch: the tensor data is corrupt (sha256 differs "
    "from the one recorded when the file was written)"
)


def read_data(h: CompactHeader) -> bytes:
    """The data section, checked against the header's sha256."""
    data = _container_data(h.container)
    if hashlib.sha256(data).hexdigest() != h.sha256:
        raise _fail(h.path, _CORRUPT)
    return data


def verify_checksum(h: CompactHeader) -> None:
    """Stream the data section through sha256 and compare (memory: 1 MiB at a time)."""
    digest = hashlib.sha256()
    for chunk in iter_data(h.container):
        digest.update(chunk)
    if digest.hexdigest() != h.sha256:
        raise _fail(h.path, _CORRUPT)
