"""Prediction for the dense tasks: keypoints of a pose model, depth and normal maps of a
multitask model (``rpg_core.predict`` classifies; ``rpg predict`` picks by the file's task).

- :func:`predict_keypoints` (``pose``, an hourglass): one :class:`KeypointPrediction` per image,
  each joint's (x, y) in the pixels of the image as given (pixel centres at integer
  coordinates), decoded from the last stack's heatmaps as in evaluation
  (:func:`rpg_core.tasks.decode`), with its score.
- :func:`predict_maps` (``multitask``, an encoder-decoder): one :class:`MapPrediction` per image,
  the last stack's depth ``[S, S]`` (the training data's depth units) and unit surface normals
  ``[3, S, S]`` at the model's input size ``S``, covering :attr:`MapPrediction.box` of the image.

The images are fitted to the model's input as :func:`rpg_core.predict.preprocess` fits them
(the file's inference metadata); :func:`input_to_image` maps the model's input pixels back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..catalog.tasks import task_info
from ..exceptions import RPGConfigError
from ..tasks import decode, depth_colormap
from .predict import ImageLike, _model_and_info, _open, model_task, preprocess

log = logging.getLogger(__name__)

__all__ = [
    "KeypointPrediction",
    "MapPrediction",
    "input_to_image",
    "map_paths",
    "predict_keypoints",
    "predict_maps",
    "write_maps",
]


@dataclass(frozen=True)
class Affine:
    """``image = scale * input + offset`` per axis: a model-input pixel coordinate to the
    image's (pixel centres at integer coordinates in both)."""

    scale_x: float
    offset_x: float
    scale_y: float
    offset_y: float

    def point(self, x: float, y: float) -> tuple[float, float]:
        return self.scale_x * x + self.offset_x, self.scale_y * y + self.offset_y

    def box(self, size: int) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) pixel edges of the image region the input covers."""
        left, top = self.point(-0.5, -0.5)
        right, bottom = self.point(size - 0.5, size - 0.5)
        return left + 0.5, top + 0.5, right + 0.5, bottom + 0.5


def input_to_image(width: int, height: int, info: Mapping[str, Any]) -> Affine:
    """How :func:`rpg_core.predict.preprocess` fitted a ``width`` x ``height`` image to the
    model's ``image_size``, inverted: padded (an even margin ``p``: image = input - p) or the
    shorter side resized to the size (PIL's bilinear: output pixel ``i`` samples input
    coordinate ``(i + 0.5) * w / nw - 0.5``) and the centre square cropped."""
    size = int(info["image_size"])
    w, h = int(width), int(height)
    if info.get("fit") == "pad" and w == h and w < size and (size - w) % 2 == 0:
        p = (size - w) // 2
        return Affine(1.0, -float(p), 1.0, -float(p))
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    sx, sy = w / nw, h / nh
    return Affine(sx, (left + 0.5) * sx - 0.5, sy, (top + 0.5) * sy - 0.5)


@dataclass(frozen=True)
class Keypoint:
    name: str | None
    x: float
    y: float
    score: float


@dataclass(frozen=True)
class KeypointPrediction:
    """One image's joints, in its own pixels. ``score``: the share of the joint's heatmap
    softmax (the distribution the model was trained to match) within one heatmap pixel of the
    decoded peak, 0..1; a sharp, confident peak scores about 0.75 (the target Gaussian's share),
    a flat heatmap ``9 / (heatmap pixels)``."""

    keypoints: list[Keypoint]
    width: int
    height: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "keypoints": [
                {"name": k.name, "x": k.x, "y": k.y, "score": k.score} for k in self.keypoints
            ],
        }


@dataclass(frozen=True)
class MapPrediction:
    """One image's maps at the model's input size ``S``: ``depth`` float32 ``[S, S]`` in the
    training data's depth units, ``normal`` float32 ``[3, S, S]`` unit vectors (x, y, z).
    ``box``: (left, top, right, bottom), the region of the image they cover, in its pixels."""

    depth: np.ndarray
    normal: np.ndarray
    box: tuple[float, float, float, float]
    width: int
    height: int

    def as_dict(self) -> dict[str, Any]:
        """A summary (the arrays themselves go to files: :func:`write_maps`)."""
        return {
            "width": self.width,
            "height": self.height,
            "size": int(self.depth.shape[-1]),
            "box": [round(v, 2) for v in self.box],
            "depth_min": float(self.depth.min()),
            "depth_max": float(self.depth.max()),
        }


def _as_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(images, str | os.PathLike | np.ndarray | torch.Tensor) or hasattr(
        images, "getpixel"
    ):
        return [images]
    return list(images)


def _run(
    model_or_file: nn.Module | str | os.PathLike[str],
    images: ImageLike | Sequence[ImageLike],
    task: str,
    key: str | None,
    inference: Mapping[str, Any] | None,
    batch_size: int,
) -> tuple[list[tuple[Any, Affine, Any]], dict[str, Any]]:
    """(the last stack's output per image, with its image and geometry) and the inference info."""
    model, info = _model_and_info(model_or_file, key, inference)
    found = model_task(model)
    if found != task:
        where = "the model" if isinstance(model_or_file, nn.Module) else str(model_or_file)
        use = f"rpg_core.{task_info(found).predict_with}"
        raise RPGConfigError(f"{where} is a {found} model, not {task}: use {use}")
    pictures = [_open(i) for i in _as_list(images)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    out: list[tuple[Any, Affine, Any]] = []
    try:
        with torch.no_grad():
            for start in range(0, len(pictures), batch_size):
                batch = pictures[start : start + batch_size]
                x = preprocess(batch, info).to(device)
                outputs = model(x)  # one dict per stacked sub-network (or one dict)
                last = outputs if isinstance(outputs, Mapping) else outputs[-1]  # as evaluated
                for i, pic in enumerate(batch):
                    item = {k: v[i].float().cpu() for k, v in last.items()}
                    out.append((pic, input_to_image(pic.width, pic.height, info), item))
    finally:
        model.train(was_training)
    return out, info


def predict_keypoints(
    model_or_file: nn.Module | str | os.PathLike[str],
    images: ImageLike | Sequence[ImageLike],
    *,
    key: str | None = None,
    inference: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> list[KeypointPrediction]:
    """The joints of a pose model (``.rpg`` or module) in each image's pixels."""
    rows, info = _run(model_or_file, images, "pose", key, inference, batch_size)
    names = info.get("classes")
    results = []
    for pic, geometry, item in rows:
        heatmaps = item["heatmaps"]  # [J, H, W]
        joints = decode(heatmaps[None])[0]  # [J, 2], model-input pixels
        j, hh, ww = heatmaps.shape
        probs = torch.softmax(heatmaps.reshape(j, -1), -1).reshape(j, 1, hh, ww)
        near = torch.nn.functional.avg_pool2d(probs, 3, stride=1, padding=1) * 9  # 3x3 sums
        peak = heatmaps.reshape(j, -1).argmax(-1)
        scores = near.reshape(j, -1).gather(1, peak[:, None])[:, 0]
        points = []
        for n, ((x, y), s) in enumerate(zip(joints.tolist(), scores.tolist(), strict=True)):
            ix, iy = geometry.point(x, y)
            name = names[n] if names and n < len(names) else None
            points.append(Keypoint(name, round(ix, 2), round(iy, 2), round(float(s), 4)))
        results.append(KeypointPrediction(points, pic.width, pic.height))
    log.info("predicted the keypoints of %d images", len(results))
    return results


def predict_maps(
    model_or_file: nn.Module | str | os.PathLike[str],
    images: ImageLike | Sequence[ImageLike],
    *,
    key: str | None = None,
    inference: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> list[MapPrediction]:
    """The depth and surface-normal maps of a multitask model (``.rpg`` or module)."""
    rows, info = _run(model_or_file, images, "multitask", key, inference, batch_size)
    size = int(info["image_size"])
    results = []
    for pic, geometry, item in rows:
        normal = item["normal"]
        normal = normal / normal.norm(dim=0, keepdim=True).clamp(min=1e-6)
        depth = item["depth"][0].numpy().astype(np.float32)
        results.append(
            MapPrediction(
                depth, normal.numpy().astype(np.float32), geometry.box(size), pic.width, pic.height
            )
        )
    log.info("predicted the depth and normal maps of %d images", len(results))
    return results


MAP_FILES = ("depth.npy", "normal.npy", "depth.png", "normal.png")


def map_paths(stem: str | os.PathLike[str]) -> list[Path]:
    """The files :func:`write_maps` writes for ``stem``: ``STEM.depth.npy``, ... (MAP_FILES)."""
    base = Path(stem)
    return [base.with_name(f"{base.name}.{kind}") for kind in MAP_FILES]


def write_maps(prediction: MapPrediction, stem: str | os.PathLike[str]) -> list[Path]:
    """Write ``STEM.depth.npy`` (float32 [S, S]), ``STEM.normal.npy`` (float32 [3, S, S]) and
    their pictures ``STEM.depth.png`` (viridis over the map's own range: near dark, far
    yellow) and ``STEM.normal.png`` (RGB = (n + 1) / 2); returns the paths."""
    from PIL import Image

    paths = dict(zip(MAP_FILES, map_paths(stem), strict=True))
    d = prediction.depth
    np.save(paths["depth.npy"], d, allow_pickle=False)
    np.save(paths["normal.npy"], prediction.normal, allow_pickle=False)
    depth_rgb = depth_colormap(d, float(d.min()), float(d.max())).transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(depth_rgb)).save(paths["depth.png"])
    n = np.clip((prediction.normal + 1.0) / 2.0 * 255.0, 0, 255).round().astype(np.uint8)
    Image.fromarray(np.ascontiguousarray(n.transpose(1, 2, 0))).save(paths["normal.png"])
    return list(paths.values())
