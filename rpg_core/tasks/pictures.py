"""Pictures of a run's validation samples for the run page: colour maps and PNGs."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from .base import as_numpy

# viridis at 0, 1/8, ..., 1 (matplotlib's), interpolated linearly
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


def depth_colormap(
    depth: np.ndarray, lo: float, hi: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """A viridis-like colour image ``[3, H, W]`` uint8 of ``depth`` ``[H, W]`` over ``[lo, hi]``
    (``lo`` dark purple, ``hi`` yellow); pixels not ``valid`` black."""
    t = np.clip((np.asarray(depth, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    pos = t * (len(_VIRIDIS) - 1)
    i = np.minimum(pos.astype(np.int64), len(_VIRIDIS) - 2)
    f = (pos - i)[..., None]
    rgb = _VIRIDIS[i] * (1.0 - f) + _VIRIDIS[i + 1] * f  # [H, W, 3]
    if valid is not None:
        rgb = rgb * np.asarray(valid, dtype=bool)[..., None]
    return np.rint(rgb).astype(np.uint8).transpose(2, 0, 1)


def normal_rgb(normal: np.ndarray, valid: np.ndarray) -> np.ndarray:
    rgb = np.clip((np.asarray(normal, dtype=np.float64) + 1.0) / 2.0 * 255.0, 0.0, 255.0)
    return (np.rint(rgb) * valid[None]).astype(np.uint8)


def png_base64(image: Any) -> str:
    """A PNG (base64 text) of a uint8 image ``[C, H, W]`` (C 1 or 3; other C: the first channel)
    or ``[H, W]``."""
    from PIL import Image

    a = np.asarray(as_numpy(image))
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float64)), 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
    pic = Image.fromarray(np.ascontiguousarray(a))  # [H, W]: L; [H, W, 3]: RGB
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
