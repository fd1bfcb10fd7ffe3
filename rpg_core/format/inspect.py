"""Describing an ``.rpg`` file (parts, parameters, sizes against the reference code's
artifacts) and exporting its model as a plain network (ONNX or safetensors)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..exceptions import RPGConfigError
from .header import FORMAT_NAME, CompactHeader, read_header, verify_checksum
from .load import load_compact
from .plan import DEFAULT_MAX_PARAMS, Plan, plan
from .save import _writer

log = logging.getLogger(__name__)


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
    for stored, e in h.tensors.items():
        name = h.stored_as(stored)  # a sparse tensor's bitmap and values: the tensor's bytes
        part = p.parts[name]
        by_part[part] = by_part.get(part, 0) + e.nbytes
        if name in p.learned and not (stored != name and stored.endswith(":bitmap")):
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
        from ..rpg.params import count_params

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
    from ..rpg.rpgify import materialize

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
