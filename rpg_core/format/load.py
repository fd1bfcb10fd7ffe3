"""Rebuilding the model of an ``.rpg`` file: header validated, tensors checked against the
architecture on the meta device, checksum verified, then the model built from the stored spec
(index arrays and signs from the seeds) and its tensors loaded strictly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..exceptions import RPGConfigError, RPGFormatError
from ..models.torchvision import TORCHVISION_PREFIX, build_torchvision
from ..rpg.ring import Ring, RingSpec, values_loaded_later
from .container import as_safetensors
from .container import fail as _fail
from .header import CompactHeader, read_data, read_header
from .inference import INFERENCE_ATTR
from .keys import _seeds_for
from .plan import DEFAULT_MAX_PARAMS, plan
from .safetensors_codec import SafetensorError, decode


def _tensors(h: CompactHeader, data: bytes) -> dict[str, torch.Tensor]:
    """The file's tensors, decoded by the safetensors library from the checked data section."""
    try:
        return decode(as_safetensors(h.container, data))
    except SafetensorError as err:  # every entry was checked: a last guard
        raise _fail(h.path, f"the tensor data cannot be decoded: {str(err)[:300]}") from None


def _ring_values(h: CompactHeader, name: str, stored: torch.Tensor) -> torch.Tensor:
    values = stored.to(torch.float32)
    if h.ring_dtype == "int8":
        values = values * torch.tensor(h.ring_scales[name], dtype=torch.float32)
    return values


@contextmanager
def _as_format_error(h: CompactHeader) -> Iterator[None]:
    try:
        yield
    except RPGFormatError:
        raise
    except RPGConfigError as err:
        raise _fail(h.path, f"the stored spec cannot be built: {err}") from None


def _build(h: CompactHeader, seed: int | None, ring_seeds: dict[str, int]) -> nn.Module:
    from ..models import create_model

    spec = json.loads(json.dumps(h.spec))
    if spec["rpg"] is not None:
        spec["rpg"]["seed"] = seed
        spec["rpg"]["generator"] = h.generator_version  # the file's, whatever its spec says
    with _as_format_error(h), values_loaded_later():  # load_compact sets every ring's values
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
    data = read_data(h)
    model = _build(h, seed, ring_seeds)
    state = _tensors(h, data)
    if h.sparse:
        from .sparse import decode_sparse

        for name, entry in h.sparse.items():
            bitmap, values = state.pop(entry.bitmap), state.pop(entry.values)
            state[name] = decode_sparse(h.path, entry, bitmap, values)
    for name, tensor_name in h.ring_keys.items():
        state[tensor_name] = _ring_values(h, name, state[tensor_name])
    try:
        with torch.no_grad():
            model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # every name, shape and dtype was checked; this is a last guard
        raise _fail(h.path, f"the tensors do not fit the model: {str(err)[:500]}") from None
    if h.inference is not None:
        model.__dict__[INFERENCE_ATTR] = dict(h.inference)
    return model.to(map_location).eval()
