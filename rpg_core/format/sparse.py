"""Sparse tensors in an ``.rpg`` file (docs/FORMAT.md section 3b): a pruned network's weight
stored as a bitmap of the positions that hold a value and those values, rebuilt bit for bit.

A position holds a value when its bits are not all zero (so ``-0.0`` and NaN payloads are
values and come back as they were; ``+0.0`` is the only thing left out). The bitmap is one bit
per position in row-major order, least significant bit first within each byte (numpy's
``packbits(..., bitorder="little")``), the unused bits of the last byte zero.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .container import fail as _fail
from .header import SparseEntry

__all__ = ["BITS", "SPARSE_ATTR", "decode_sparse", "encode_sparse", "sparse_nbytes"]

SPARSE_ATTR = "rpg_sparse"  # a model whose __dict__ has it True is saved sparse by default
_SAME_SIZE_INT = {8: torch.int64, 4: torch.int32, 2: torch.int16}
BITS = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8)
MIN_SAVING = 256  # bytes a tensor must save to go sparse (its two header entries cost about that)
_SPARSE_TYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def sparse_nbytes(numel: int, nnz: int, itemsize: int) -> int:
    """The bytes a sparse tensor takes: the bitmap and the values."""
    return (numel + 7) // 8 + nnz * itemsize


def _held(flat: torch.Tensor) -> torch.Tensor:
    """The positions whose bits are not all zero."""
    return flat.view(_SAME_SIZE_INT[flat.element_size()]) != 0


def encode_sparse(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(bitmap, values)`` of a floating tensor, or None when that saves fewer than
    :data:`MIN_SAVING` bytes over the dense tensor (or the tensor is not floating)."""
    if t.dtype not in _SPARSE_TYPES or t.numel() == 0:
        return None
    flat = t.detach().to("cpu").contiguous().flatten()
    held = _held(flat)
    nnz = int(held.sum())
    saved = flat.numel() * flat.element_size() - sparse_nbytes(
        flat.numel(), nnz, flat.element_size()
    )
    if saved < MIN_SAVING:
        return None
    pad = -flat.numel() % 8
    bits = torch.cat([held, held.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
    bitmap = (bits * BITS).sum(dim=1, dtype=torch.uint8)
    return bitmap, flat[held].clone()


def decode_sparse(
    path: Path, entry: SparseEntry, bitmap: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """The dense tensor ``entry`` names, from its stored bitmap and values (their shapes and
    dtypes were checked with the header); RPGFormatError naming the tensor when the bitmap
    marks another number of positions than values are stored, or sets unused bits."""
    bits = (bitmap.view(-1, 1) & BITS).ne(0).flatten()
    numel = math.prod(entry.shape)
    if bool(bits[numel:].any()):
        raise _fail(path, f"tensor {entry.bitmap!r}: the bitmap sets bits past the {numel} "
                          "positions of its tensor; the file is corrupt: write it again with "
                          "save_compact(..., sparse=True)")  # fmt: skip
    held = bits[:numel]
    marked = int(held.sum())
    if marked != values.numel():
        raise _fail(path, f"tensor {entry.values!r}: the bitmap of {entry.name!r} marks {marked} "
                          f"positions but {values.numel()} values are stored; the file is "
                          "corrupt: write it again with save_compact(..., sparse=True)")  # fmt: skip
    flat = torch.zeros(numel, dtype=values.dtype)
    flat[held] = values
    return flat.view(entry.shape)
