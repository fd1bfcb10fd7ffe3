"""Writing a model as an ``.rpg`` file: its rings (in the chosen dtype), its ordinary
parameters and buffers, the spec that rebuilds it and the ring seeds (or a key)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import RPGConfigError
from ..models.torchvision import torchvision_spec
from ..rpg import generator
from ..rpg.ring import Ring
from . import safetensors_codec as codec
from .header import FORMAT_NAME, RING_DTYPES, SPARSE_FORMAT_VERSION, SparseEntry
from .inference import INFERENCE_ATTR, check_inference
from .keys import _make_keyed
from .plan import TORCH_TO_CODE

log = logging.getLogger(__name__)


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


def _sparsify(
    tensors: dict[str, torch.Tensor], rings: set[str]
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Every floating tensor but the rings that is smaller as a bitmap and its values
    (docs/FORMAT.md section 3b) replaced by those two, and the ``sparse`` metadata."""
    from .sparse import encode_sparse

    out: dict[str, torch.Tensor] = {}
    meta: dict[str, dict[str, Any]] = {}
    for name, t in tensors.items():
        got = None if name in rings else encode_sparse(t)
        if got is None:
            out[name] = t
            continue
        bitmap, values = got
        entry = SparseEntry(name, TORCH_TO_CODE[t.dtype], tuple(t.shape), values.numel())
        out[entry.bitmap], out[entry.values] = bitmap, values
        meta[name] = {"dtype": entry.dtype, "shape": list(entry.shape), "nnz": entry.nnz}
    return out, meta


def _check_dtypes(tensors: dict[str, torch.Tensor]) -> None:
    for name, t in tensors.items():
        if t.dtype not in TORCH_TO_CODE:
            raise RPGConfigError(f"save_compact: tensor {name!r} has unsupported dtype {t.dtype}")


def _writer() -> str:
    from ..version import __version__

    return f"rpg-studio {__version__}"


def _metadata(spec: dict[str, Any], ring_specs: list[dict[str, Any]], ring_dtype: str,
              scales: dict[str, float], digest: str,
              version: int = generator.GENERATOR_VERSION) -> dict[str, str]:  # fmt: skip
    meta = {
        "format": FORMAT_NAME,
        "format_version": "1",  # 2 when the file holds sparse tensors (_sparsify)
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


def save_compact(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    ring_dtype: str = "float32",
    keyed: bool = False,
    inference: dict[str, Any] | None = None,
    sparse: bool | None = None,
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
        sparse: store every floating tensor that is smaller so as a bitmap of its non-zero
            positions and their values (a pruned network; docs/FORMAT.md section 3b; the file
            is then format version 2); ``load_compact`` rebuilds the same tensors bit for bit.
            Default: the model's own ``rpg_sparse`` mark (the engine sets it on a network
            pruned by method prune-global or prune-filters), else False.
    """
    from ..models import model_spec_of
    from .sparse import SPARSE_ATTR

    spec = model_spec_of(model) or torchvision_spec(model)
    info = inference if inference is not None else model.__dict__.get(INFERENCE_ATTR)
    info = check_inference(info) if info is not None else None
    if ring_dtype not in RING_DTYPES:
        raise RPGConfigError(f"ring_dtype must be one of {sorted(RING_DTYPES)}, got {ring_dtype!r}")
    ring_mods = {m.spec.name: m for m in model.modules() if isinstance(m, Ring)}
    if keyed and not ring_mods:
        raise RPGConfigError("keyed=True needs an RPG model (a plain model has no seeds to hide)")
    tensors, scales = _state_with_rings(model, ring_dtype)
    _check_dtypes(tensors)
    if sparse is None:
        sparse = model.__dict__.get(SPARSE_ATTR) is True
    sparse_meta: dict[str, dict[str, Any]] = {}
    if sparse:
        tensors, sparse_meta = _sparsify(tensors, set(_ring_keys_of(model).values()))
    # the library lays out the data section (larger dtypes first); it does not depend on the
    # metadata, so the checksum of a first encoding is the final file's
    data = codec.data_section(codec.encode(tensors, {}))
    digest = hashlib.sha256(data)
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
    if sparse_meta:
        meta["format_version"] = str(SPARSE_FORMAT_VERSION)
        meta["sparse"] = json.dumps(sparse_meta, sort_keys=True, separators=(",", ":"))
    key = _make_keyed(spec, ring_specs, meta) if keyed else None
    blob = codec.encode(tensors, meta)
    if codec.data_section(blob) != data:  # a library that ordered by metadata would break it
        raise RuntimeError("save_compact: the safetensors library laid the data out twice apart")
    codec.write_atomic(path, blob)
    log.info("saved %s (%s rings, %d tensors, %d sparse)", path, ring_dtype, len(tensors),
             len(sparse_meta))  # fmt: skip
    return key
