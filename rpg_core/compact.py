"""Compact ``.rpg`` model files: the rings, the ordinary parameters and a few seeds.

A ``.rpg`` file is a safetensors file (8-byte little-endian header length, a JSON header, the raw
tensor bytes). It holds every ring and every ordinary parameter and buffer of the model; the index
arrays and sign masks are not stored, they are rebuilt from the seeds. ``docs/FORMAT.md`` is the
complete specification.

Reading never runs code from the file: the header is parsed and validated (sizes, offsets, dtypes,
duplicate keys, metadata) before any tensor is read, the architecture is checked on PyTorch's
``meta`` device (no memory) before the model is built, and no pickle is ever opened.

This module is the public face; the layers live in :mod:`rpg_core.fileformat` (the container, the
``.rpg`` header, keys, the meta-device plan, save, load, inspect and export).
"""

from __future__ import annotations

from .fileformat.container import (
    CODE_TO_NUMPY,
    DTYPE_SIZES,
    MAX_DIMS,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    ContainerError,
    ContainerErrorCode,
    TensorEntry,
)
from .fileformat.header import (
    FORMAT_NAME,
    FORMAT_VERSION,
    RING_DTYPES,
    CompactHeader,
    read_header,
    verify_checksum,
)
from .fileformat.inspect import export_plain, inspect_compact
from .fileformat.keys import KEY_PREFIX, KEY_SALT_CONTEXT
from .fileformat.load import load_compact
from .fileformat.plan import DEFAULT_MAX_PARAMS, TORCH_TO_CODE, Plan, plan
from .fileformat.save import save_compact
from .fileformat.torchvision_models import (
    TORCHVISION_PREFIX,
    build_torchvision,
    torchvision_model,
    torchvision_spec,
)
from .inference import INFERENCE_ATTR

__all__ = [
    "CODE_TO_NUMPY",
    "DEFAULT_MAX_PARAMS",
    "DTYPE_SIZES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INFERENCE_ATTR",
    "KEY_PREFIX",
    "KEY_SALT_CONTEXT",
    "MAX_DIMS",
    "MAX_HEADER_BYTES",
    "MAX_TENSORS",
    "RING_DTYPES",
    "TORCHVISION_PREFIX",
    "TORCH_TO_CODE",
    "CompactHeader",
    "ContainerError",
    "ContainerErrorCode",
    "Plan",
    "TensorEntry",
    "build_torchvision",
    "export_plain",
    "inspect_compact",
    "load_compact",
    "plan",
    "read_header",
    "save_compact",
    "torchvision_model",
    "torchvision_spec",
    "verify_checksum",
]
