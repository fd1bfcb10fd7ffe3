"""The safetensors container of an ``.rpg`` file: the strict checks docs/FORMAT.md promises, in
front of the ``safetensors`` library (:mod:`rpg_core.format.safetensors_codec`), which decodes and
encodes the tensors.

Layout: an 8-byte little-endian header length, a JSON header (``__metadata__``, a map of
strings, and one ``{dtype, shape, data_offsets}`` entry per tensor), then the raw little-endian
tensor bytes, which the entries must tile exactly. :func:`read_container` checks all of that
from the header alone (size bounds, strict JSON, dtypes, shapes, offsets; each error names the
tensor) before any tensor is read. Nothing here knows what the tensors mean (:mod:`.header`
does) and nothing imports torch.

Every failure is a :class:`ContainerError` (an :class:`~rpg_core.exceptions.RPGFormatError`) whose
``code`` names it, as safetensors' own core does with its error enum::

    RPGFormatError
    └── ContainerError  .code: ContainerErrorCode
"""

from __future__ import annotations

import enum
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..exceptions import RPGFormatError

MAX_HEADER_BYTES = 16 * 1024 * 1024  # a header longer than this is refused unread
MAX_TENSORS = 100_000
MAX_DIMS = 8
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1,
}  # fmt: skip
CODE_TO_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
    "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip
_TENSOR_KEYS = {"dtype", "shape", "data_offsets"}


class ContainerErrorCode(enum.Enum):
    """Why a file is not a valid safetensors container."""

    NOT_FOUND = "not_found"
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not_a_file"  # a directory, a device, a socket
    EMPTY = "empty"
    FOREIGN = "foreign"  # a zip archive or a pickle (a PyTorch checkpoint)
    TRUNCATED = "truncated"
    HEADER_TOO_LARGE = "header_too_large"
    INVALID_JSON = "invalid_json"  # not JSON, not UTF-8, too deep, or a duplicate key
    HEADER_NOT_OBJECT = "header_not_object"
    METADATA = "metadata"  # __metadata__ missing or not a map of strings
    TOO_MANY_TENSORS = "too_many_tensors"
    INVALID_ENTRY = "invalid_entry"  # a tensor entry's keys, dtype, shape or offsets
    OVERLAP = "overlap"
    GAP = "gap"
    TRAILING_BYTES = "trailing_bytes"
    CHANGED = "changed"  # the file changed while it was read


class ContainerError(RPGFormatError):
    """A file that is not a valid safetensors container; ``code`` says why."""

    def __init__(self, code: ContainerErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def fail(path: Path | str, message: str) -> RPGFormatError:
    """An error about the file's content (not its container), naming the file only."""
    # The file name only: the API reads uploads from server paths that are nobody's business.
    return RPGFormatError(f"{Path(path).name}: {message}")


def _fail(path: Path | str, code: ContainerErrorCode, message: str) -> ContainerError:
    return ContainerError(code, f"{Path(path).name}: {message}")


E = ContainerErrorCode


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
class Container:
    """A validated container: metadata strings and tensor entries (no tensor read)."""

    path: Path
    file_size: int
    header_len: int
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def data_len(self) -> int:
        return self.file_size - self.data_start


# --- reading ---------------------------------------------------------------------------------
def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, E.NOT_FOUND, "no such file") from None
    except OSError as err:
        raise _fail(path, E.UNREADABLE, f"cannot read it: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, E.NOT_A_FILE, "is a directory; give the path of a .rpg file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, E.NOT_A_FILE, "is not a regular file")
    if st.st_size == 0:
        raise _fail(path, E.EMPTY, "the file is empty")
    try:
        return open(path, "rb"), st.st_size  # noqa: SIM115 - closed by the caller
    except OSError as err:
        raise _fail(path, E.UNREADABLE, f"cannot read it: {err.strerror}") from None


def _sniff_foreign(path: Path, head: bytes) -> None:
    """Name the common wrong files (PyTorch zip or pickle) before parsing."""
    if head.startswith(b"PK\x03\x04"):
        raise _fail(
            path,
            E.FOREIGN,
            "this is a zip archive (a PyTorch checkpoint saved with torch.save?); "
            "RPG Studio never unpickles files: save the model with save_compact / rpg train",
        )
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise _fail(
            path,
            E.FOREIGN,
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


def loads(text: str | bytes, what: str, path: Path) -> Any:
    """Strict JSON: no duplicate keys; every failure a ContainerError INVALID_JSON."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise _fail(path, E.INVALID_JSON, f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise _fail(path, E.INVALID_JSON, f"{what} is not UTF-8 text") from None
    except ValueError as err:  # JSONDecodeError and duplicate keys
        raise _fail(path, E.INVALID_JSON, f"{what} is not valid JSON: {err}") from None


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_entry(path: Path, name: str, raw: Any) -> TensorEntry:
    where = f"header: tensor {name[:80]!r}"
    bad = E.INVALID_ENTRY
    if not isinstance(raw, dict) or set(raw) != _TENSOR_KEYS:
        raise _fail(path, bad, f"{where} must have exactly the keys dtype, shape, data_offsets")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise _fail(
            path, bad, f"{where}: unknown dtype {str(dtype)[:20]!r}; known: {sorted(DTYPE_SIZES)}"
        )
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise _fail(path, bad, f"{where}: shape must be a list of at most {MAX_DIMS} sizes")
    if not all(is_int(d) and 0 <= d < 2**40 for d in shape):
        raise _fail(path, bad, f"{where}: shape sizes must be non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_int, offsets))):
        raise _fail(path, bad, f"{where}: data_offsets must be [begin, end] integers")
    start, end = offsets
    if not 0 <= start <= end:
        raise _fail(path, bad, f"{where}: data_offsets [{start}, {end}] are out of order")
    if end - start != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise _fail(path, bad, f"{where}: data_offsets span {end - start} bytes, shape {shape} "
                               f"of {dtype} needs {math.prod(shape) * DTYPE_SIZES[dtype]}")  # fmt: skip
    return TensorEntry(name, dtype, tuple(shape), start, end)


def _check_layout(path: Path, entries: list[TensorEntry], data_len: int) -> None:
    """The tensors tile the data section exactly: no overlap, no gap, nothing past the end."""
    pos = 0
    for e in sorted(entries, key=lambda e: (e.start, e.end)):
        if e.start < pos:
            raise _fail(path, E.OVERLAP, f"header: tensor {e.name!r} overlaps the tensor before it")
        if e.start > pos:
            raise _fail(
                path, E.GAP, f"header: {e.start - pos} unused bytes before tensor {e.name!r}"
            )
        pos = e.end
    if pos > data_len:
        raise _fail(path, E.TRUNCATED, f"the file is truncated: the tensors need {pos} bytes of "
                                       f"data, the file has {data_len}")  # fmt: skip
    if pos < data_len:
        raise _fail(path, E.TRAILING_BYTES,
                    f"{data_len - pos} bytes after the last tensor (not an .rpg file?)")  # fmt: skip


def _read_raw_header(f: BinaryIO, path: Path, size: int) -> tuple[int, dict[str, Any]]:
    head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        _sniff_foreign(path, head)
    head = head[:8]
    if len(head) < 8:
        raise _fail(path, E.TRUNCATED, f"the file is truncated ({size} bytes; an .rpg file "
                                       "starts with an 8-byte header length)")  # fmt: skip
    hlen = int.from_bytes(head, "little")
    if hlen > MAX_HEADER_BYTES:
        raise _fail(path, E.HEADER_TOO_LARGE, f"header length {hlen} is above the limit of "
                                              f"{MAX_HEADER_BYTES} bytes (not an .rpg file?)")  # fmt: skip
    if 8 + hlen > size:
        raise _fail(path, E.TRUNCATED, f"the file is truncated: the header claims {hlen} bytes, "
                                       f"the file has {size - 8} after the length")  # fmt: skip
    f.seek(8)
    raw = f.read(hlen)
    if not raw.lstrip()[:1] == b"{":
        raise _fail(
            path, E.HEADER_NOT_OBJECT, "the header is not a JSON object (not an .rpg file?)"
        )
    parsed = loads(raw, "the header", path)
    if not isinstance(parsed, dict):
        raise _fail(path, E.HEADER_NOT_OBJECT, "the header is not a JSON object")
    return hlen, parsed


def read_container(path: Path) -> Container:
    """Read and validate the container of ``path`` (the header only; no tensor is read)."""
    f, size = _open_regular(path)
    with f:
        hlen, parsed = _read_raw_header(f, path, size)
    meta = parsed.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, E.METADATA, "header: __metadata__ is missing or not a map of strings "
                                      "(a safetensors file, but not an .rpg file)")  # fmt: skip
    if len(parsed) > MAX_TENSORS:
        raise _fail(path, E.TOO_MANY_TENSORS, f"header: more than {MAX_TENSORS} tensors")
    entries = [_parse_entry(path, name, raw) for name, raw in parsed.items()]
    _check_layout(path, entries, size - 8 - hlen)
    return Container(path, size, hlen, meta, {e.name: e for e in entries})


def read_data(c: Container) -> bytes:
    """The whole data section (checked to be as long as the header says)."""
    with open(c.path, "rb") as f:
        f.seek(c.data_start)
        data = f.read(c.data_len)
    if len(data) != c.data_len:
        raise _fail(c.path, E.CHANGED, "the file changed while it was read (truncated)")
    return data


def iter_data(c: Container, chunk: int = 1 << 20) -> Any:
    """The data section in chunks of ``chunk`` bytes (a generator)."""
    with open(c.path, "rb") as f:
        f.seek(c.data_start)
        left = c.data_len
        while left:
            part = f.read(min(left, chunk))
            if not part:
                raise _fail(c.path, E.CHANGED, "the file changed while it was read (truncated)")
            yield part
            left -= len(part)


def as_safetensors(c: Container, data: bytes) -> bytes:
    """The validated tensors of ``c`` over ``data`` (its data section, read and checksummed
    once) as a safetensors file in memory, for the library to decode (the metadata, already
    parsed, is left out: the data section and its offsets are the file's own)."""
    entries = {
        e.name: {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.start, e.end]}
        for e in c.tensors.values()
    }
    header = header_bytes(entries, {})
    return len(header).to_bytes(8, "little") + header + data


# --- hand-built containers (the writer is the library: rpg_core.format.safetensors_codec) -------------
def layout(
    tensors: dict[str, tuple[str, list[int], bytes]],
) -> tuple[dict[str, Any], list[bytes]]:
    """Header entries and data chunks for ``{name: (dtype code, shape, little-endian bytes)}``;
    larger dtypes first (stable otherwise), so every tensor is aligned."""
    order = sorted(tensors, key=lambda k: -DTYPE_SIZES[tensors[k][0]])
    entries: dict[str, Any] = {}
    chunks: list[bytes] = []
    pos = 0
    for name in order:
        code, shape, raw = tensors[name]
        entries[name] = {"dtype": code, "shape": shape, "data_offsets": [pos, pos + len(raw)]}
        chunks.append(raw)
        pos += len(raw)
    return entries, chunks


def header_bytes(entries: dict[str, Any], meta: dict[str, str]) -> bytes:
    header = json.dumps({"__metadata__": meta, **entries}, separators=(",", ":")).encode()
    return header + b" " * (-len(header) % 8)  # pad to 8 bytes, as safetensors does
