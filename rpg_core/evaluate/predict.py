"""Prediction from a model or a ``.rpg`` file: ``predict(model_or_file, images)``.

A ``.rpg`` file written by this version carries what inference needs (``inference`` metadata,
docs/FORMAT.md): the input size and channels, the normalisation the model was trained with,
the class names where the dataset has them, and how a smaller image was fitted (padded, as
Fashion-MNIST's 28x28 images are to 32x32, or resized). :func:`inference_info` builds it from a
dataset; the service's worker stores it in every model it saves. Files written before have none:
they load as before, and ``predict`` asks for ``inference=``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..catalog.tasks import task_info
from ..exceptions import RPGConfigError, RPGDataError
from ..format.inference import (
    CLASS_NAMES,
    FASHION_SOURCE_SIZE,
    INFERENCE_ATTR,
    check_inference,
    inference_info,
)
from ..image_limits import MAX_IMAGE_PIXELS, check_image_size, open_image

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_NAMES",
    "FASHION_SOURCE_SIZE",
    "INFERENCE_ATTR",
    "MAX_IMAGE_PIXELS",
    "Prediction",
    "check_inference",
    "inference_info",
    "predict",
    "preprocess",
]

MAX_BATCH_PIXELS = 1024 * 1024  # input pixels per forward pass (64 at 128 px, 1 at 1024 px)


@dataclass(frozen=True)
class Prediction:
    """One image's prediction: the best class, its name and probability, and the top k."""

    label: int
    name: str | None
    probability: float
    top: list[tuple[int, str | None, float]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "probability": self.probability,
            "top": [{"label": i, "name": n, "probability": p} for i, n, p in self.top],
        }


ImageLike = str | os.PathLike[str] | np.ndarray | torch.Tensor | Any  # Any: a PIL image


def _open(image: ImageLike) -> Any:
    """A PIL image from a path, a PIL image, an HxW(xC) uint8 array or a CxHxW uint8 tensor,
    its size checked (rpg_core.image_limits) before anything is decoded or resized."""
    from PIL import Image

    if isinstance(image, Image.Image):
        check_image_size(image.width, image.height, "the image")
        return image
    if isinstance(image, str | os.PathLike):
        return open_image(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 3:
            t = t.permute(1, 2, 0)  # torch's CxHxW to HxWxC
        image = t.numpy()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise RPGDataError(f"an image array must be uint8 (0..255), got {arr.dtype}")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise RPGDataError(f"an image array must be HxW or HxWx3, got shape {arr.shape}")
        check_image_size(arr.shape[1], arr.shape[0], "the image array")
        return Image.fromarray(np.ascontiguousarray(arr))
    raise RPGDataError(f"cannot read an image from a {type(image).__name__}")


def preprocess(images: Iterable[ImageLike], info: Mapping[str, Any]) -> torch.Tensor:
    """The batch the model expects: converted to its channels, fitted to its size (padded or
    resized then centre-cropped, as in training), scaled to [0, 1] and normalised."""
    from PIL import Image

    size, channels = int(info["image_size"]), int(info["in_channels"])
    out = []
    for image in images:
        img = _open(image).convert("L" if channels == 1 else "RGB")
        w, h = img.size
        if info.get("fit") == "pad" and w == h and w < size and (size - w) % 2 == 0:
            arr = np.asarray(img, dtype=np.uint8)
            p = (size - w) // 2
            pad = ((p, p), (p, p)) + (((0, 0),) if arr.ndim == 3 else ())
            arr = np.pad(arr, pad)
        else:
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        out.append(t)
    if not out:
        raise RPGDataError("no images to predict")
    x = torch.stack(out).float() / 255.0
    mean = torch.tensor(info["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(info["std"]).view(1, -1, 1, 1)
    return (x - mean) / std


def _model_and_info(
    model_or_file: nn.Module | str | os.PathLike[str],
    key: str | None,
    inference: Mapping[str, Any] | None,
) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(model_or_file, nn.Module):
        model, where = model_or_file, "the model"
    else:
        from ..format import load_compact

        model, where = load_compact(model_or_file, key=key), str(model_or_file)
    info = inference if inference is not None else model.__dict__.get(INFERENCE_ATTR)
    if info is None:
        raise RPGConfigError(
            f"{where} has no inference metadata (input size, normalisation): a file written "
            "before .rpg files stored it, or a model not loaded from a file. Pass "
            "inference={'image_size': ..., 'in_channels': ..., 'mean': [...], 'std': [...]} "
            "(rpg_core.inference_info(spec) computes it from the training data), or save the "
            "model again with save_compact(model, path, inference=...)"
        )
    return model, check_inference(info)


def model_task(model: nn.Module) -> str:
    """The task a model was built for (its spec's ``task``, else its architecture's): what
    ``predict`` (classification) or :mod:`rpg_core.predict_tasks` (pose, multitask) reads."""
    from ..catalog.tasks import task_of_arch
    from ..models import model_spec_of

    spec = model_spec_of(model) or {}
    task = spec.get("task")
    if isinstance(task, str):
        return task
    arch = (spec.get("model") or {}).get("arch")
    return task_of_arch(arch) if isinstance(arch, str) else "classification"


def predict(
    model_or_file: nn.Module | str | os.PathLike[str],
    images: ImageLike | Sequence[ImageLike],
    *,
    top_k: int = 5,
    key: str | None = None,
    inference: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> list[Prediction]:
    """Classify ``images`` (PNG/JPEG paths, PIL images, uint8 arrays) with a model or ``.rpg``.

    The preprocessing comes from the file's inference metadata (or ``inference``); returns one
    :class:`Prediction` per image with the ``top_k`` classes by probability.
    """
    if top_k < 1:
        raise RPGConfigError(f"top_k must be at least 1, got {top_k}")
    if isinstance(images, str | os.PathLike | np.ndarray | torch.Tensor) or hasattr(
        images, "getpixel"
    ):
        images = [images]
    items = list(images)
    model, info = _model_and_info(model_or_file, key, inference)
    task = model_task(model)
    use = task_info(task).predict_with
    if use != "predict":
        where = "the model" if isinstance(model_or_file, nn.Module) else str(model_or_file)
        raise RPGConfigError(
            f"{where} is a {task} model: predict() classifies images; use rpg_core.{use} "
            "(or `rpg predict`, which predicts for every task)"
        )
    # the forward pass's memory grows with the input's pixels: bound a batch by them
    batch_size = max(1, min(batch_size, MAX_BATCH_PIXELS // info["image_size"] ** 2))
    names = info.get("classes")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    results: list[Prediction] = []
    try:
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                x = preprocess(items[start : start + batch_size], info).to(device)
                probs = torch.softmax(model(x).float(), dim=1).cpu()
                k = min(top_k, probs.shape[1])
                values, labels = probs.topk(k, dim=1)
                for vs, ls in zip(values.tolist(), labels.tolist(), strict=True):
                    top = [
                        (int(i), names[i] if names and i < len(names) else None, float(v))
                        for v, i in zip(vs, ls, strict=True)
                    ]
                    results.append(Prediction(top[0][0], top[0][1], top[0][2], top))
    finally:
        model.train(was_training)
    log.info("predicted %d images", len(results))
    return results
