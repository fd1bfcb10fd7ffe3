"""Compact ``.rpg`` model files: the rings, the ordinary parameters and a few seeds.

A ``.rpg`` file is a safetensors file (8-byte little-endian header length, a JSON header, the raw
tensor bytes). It holds every ring and every ordinary parameter and buffer of the model; the index
arrays and sign masks are not stored, they are rebuilt from the seeds. ``docs/FORMAT.md`` is the
complete specification.

Reading never runs code from the file: the header is parsed and validated (sizes, offsets, dtypes,
duplicate keys, metadata) before any tensor is read, the architecture is checked on PyTorch's
``meta`` device (no memory) before the model is built, and no pickle is ever opened.

This package's names are the public face; the layers live in its modules:

- :mod:`.container`: the safetensors container, read strictly; every failure is a
  :class:`~.container.ContainerError` with a :class:`~.container.ContainerErrorCode` (no torch).
- :mod:`.header`: the ``.rpg`` metadata on top of it, validated into a ``CompactHeader``
  (format and generator versions, rings, spec, ring dtype, keys, inference; no torch).
- :mod:`.inference`: what inference needs (input size, normalisation, class names), stored in
  the header.
- :mod:`.keys`: keyed files (the seeds left out and handed back as a key).
- :mod:`.plan`: the header checked against the architecture on the meta device.
- :mod:`.sparse`: sparse tensors (a pruned network's zeros left out: a bitmap and the values).
- :mod:`.save`, :mod:`.load`, :mod:`.inspect`: writing, rebuilding, describing and exporting.

Torchvision classifiers are rebuilt by name through :mod:`rpg_core.models.torchvision`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names are imported on first use (PEP 562): the torch-free layers (container, header,
# inference) load without torch, and reading a header never builds a model.
if TYPE_CHECKING:
    from ..models.torchvision import (
        TORCHVISION_PREFIX,
        build_torchvision,
        torchvision_model,
        torchvision_spec,
    )
    from .container import (
        CODE_TO_NUMPY,
        DTYPE_SIZES,
        MAX_DIMS,
        MAX_HEADER_BYTES,
        MAX_TENSORS,
        ContainerError,
        ContainerErrorCode,
        TensorEntry,
    )
    from .header import (
        FORMAT_NAME,
        FORMAT_VERSION,
        RING_DTYPES,
        CompactHeader,
        read_header,
        verify_checksum,
    )
    from .inference import INFERENCE_ATTR
    from .inspect import export_plain, inspect_compact
    from .keys import KEY_PREFIX, KEY_SALT_CONTEXT
    from .load import load_compact
    from .plan import DEFAULT_MAX_PARAMS, TORCH_TO_CODE, Plan, plan
    from .save import save_compact
    from .sparse import SPARSE_ATTR

_LAZY: dict[str, str] = {  # public name -> the module that defines it
    "CODE_TO_NUMPY": ".container",
    "CompactHeader": ".header",
    "ContainerError": ".container",
    "ContainerErrorCode": ".container",
    "DEFAULT_MAX_PARAMS": ".plan",
    "DTYPE_SIZES": ".container",
    "FORMAT_NAME": ".header",
    "FORMAT_VERSION": ".header",
    "INFERENCE_ATTR": ".inference",
    "KEY_PREFIX": ".keys",
    "KEY_SALT_CONTEXT": ".keys",
    "MAX_DIMS": ".container",
    "MAX_HEADER_BYTES": ".container",
    "MAX_TENSORS": ".container",
    "Plan": ".plan",
    "RING_DTYPES": ".header",
    "SPARSE_ATTR": ".sparse",
    "TORCHVISION_PREFIX": "..models.torchvision",
    "TORCH_TO_CODE": ".plan",
    "TensorEntry": ".container",
    "build_torchvision": "..models.torchvision",
    "export_plain": ".inspect",
    "inspect_compact": ".inspect",
    "load_compact": ".load",
    "plan": ".plan",
    "read_header": ".header",
    "save_compact": ".save",
    "torchvision_model": "..models.torchvision",
    "torchvision_spec": "..models.torchvision",
    "verify_checksum": ".header",
}

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
    "SPARSE_ATTR",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
