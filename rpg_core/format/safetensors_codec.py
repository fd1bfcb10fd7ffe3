"""The one safetensors codec of rpg_core: the ``safetensors`` library encodes and decodes, and
:func:`write_atomic` puts a file in place (temp file, fsync, rename, fsync of the directory).

The ``.rpg`` container (:mod:`rpg_core.fileformat.container`) and the training checkpoints
(:mod:`rpg_core.checkpoint`) both read and write through here; the strict pre-checks that
docs/FORMAT.md promises (header size bounds, dtype / shape / offset checks, the tensor named in
each error) stay in ``container.read_container``, in front of the library. Importing this module
does not import torch (the torch functions import it when called).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

if TYPE_CHECKING:
    import torch

__all__ = ["SafetensorError", "data_section", "decode", "encode", "write_atomic"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows, or a directory we may not open
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], content: bytes | Callable[[Path], object]) -> Path:
    """Write ``path`` atomically and durably: ``content`` (bytes, or a function that writes the
    temp path it is given) goes to a temp file beside ``path``, which is fsynced, renamed over
    ``path`` and the directory fsynced. A reader sees the old file or the whole new one; after
    a crash, the new one or none; the temp file never stays behind."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        if isinstance(content, bytes | bytearray | memoryview):
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        else:
            content(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(target.parent)
    return target


def encode(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file of ``tensors`` (copied to CPU, contiguous, unshared) and ``metadata``
    (the library lays them out: larger dtypes first, so every tensor is aligned)."""
    from safetensors.torch import save

    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return save(plain, metadata=dict(metadata))


def data_section(blob: bytes) -> bytes:
    """The tensor bytes of a safetensors file (everything after its header)."""
    return blob[8 + int.from_bytes(blob[:8], "little") :]


def decode(blob: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file in memory (raises :class:`SafetensorError`)."""
    from safetensors.torch import load

    return load(blob)
