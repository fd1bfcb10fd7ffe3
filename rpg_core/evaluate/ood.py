"""Out-of-distribution evaluation (``eval.ood``; the paper's Table 6 "generalizability").

Two kinds of shifted test set, both scored with the run's own preprocessing (the shift acts on
the uint8 images before the loader centre-crops and normalises them):

* built-in shifts of the run's validation set (``shift: rotation`` ...), each at severities
  0 (identity) to 5, ImageNet-C style; the parameter of each severity is in :data:`SEVERITY`
  (and in docs/OOD.md). Every random draw (rotation sign, offsets, noise) is a function of
  ``(seed, shift, severity, image index)`` only, so a shifted set is the same in every run,
  batch size and worker count;
* an image folder under the data root (``folder: objectnet-mini``: ``<root>/<folder>/<class>/*``)
  mapped to the training classes by a class map (``<root>/class-maps/<class_map>.json``), as
  ObjectNet is scored for an ImageNet model. A folder class may map to several training classes
  (a prediction of any of them counts as correct); folder classes the map leaves out are skipped.

Results are flat: ``{"rotation@1": acc, ..., "folder:objectnet-mini": acc}``; their mean over
every entry except severity 0 is the run's ``ood_acc``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import (
    IMAGE_EXTENSIONS,
    SPLIT_SEED,
    BatchLoader,
    Datasets,
    FolderImages,
    ImageSet,
    TensorImages,
    TensorSamples,
    resolve_under,
)
from ..exceptions import RPGDataError
from ..spec import OODSetSpec
from ..stopping import StopCheck, check_stop, checked

log = logging.getLogger(__name__)

CLASS_MAP_DIR = "class-maps"
MAX_CLASS_MAP_BYTES = 4 * 1024 * 1024
CHUNK = 256  # images shifted at a time (in-memory sets)

# The parameter of severities 0..5 (index = severity; 0 is the identity for every shift).
# Lengths are fractions of the image side; blur sigma is in pixels at 32x32 and scales with it.
SEVERITY: dict[str, tuple[float, ...]] = {
    "rotation": (0.0, 10.0, 20.0, 30.0, 45.0, 60.0),  # degrees, sign drawn per image
    "gaussian_blur": (0.0, 0.5, 0.75, 1.0, 1.5, 2.0),  # sigma, pixels at a 32-pixel side
    "gaussian_noise": (0.0, 0.08, 0.12, 0.18, 0.26, 0.38),  # std on [0, 1] (ImageNet-C's)
    "contrast": (1.0, 0.4, 0.3, 0.2, 0.1, 0.05),  # factor towards the image mean (ImageNet-C's)
    "inversion": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),  # blend towards the negative: 1 = 255 - x
    "occlusion": (0.0, 0.2, 0.3, 0.4, 0.5, 0.6),  # side of a mid-grey square / image side
    "translation": (0.0, 0.05, 0.1, 0.15, 0.2, 0.25),  # shift / image side, direction per image
}
OCCLUSION_FILL = 128.0


def _seed(seed: int, shift: str, severity: int) -> int:
    code = sorted(SEVERITY).index(shift)
    return (seed * 1_000_003 + code * 7_919 + severity * 104_729 + 17) % 2**62


def draws(shift: str, severity: int, seed: int, n: int) -> torch.Tensor:
    """Per-image uniform draws [n, 2] of a shifted set (offsets, signs, directions)."""
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(_seed(seed, shift, severity)))


def _noise(shift: str, severity: int, seed: int, index: int, shape: Sequence[int]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(_seed(seed, shift, severity) ^ (index * 2_654_435_761))
    return torch.randn(*shape, generator=gen)


def _affine(x: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # reflect padding needs the image wider than the kernel's radius
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        x = F.pad(x, (radius - pad,) * 4, mode="replicate")
    else:
        x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def apply_shift(
    x: torch.Tensor, shift: str, severity: int, u: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """``x`` (uint8 [B, C, H, W]) shifted at ``severity``; ``u``: its images' :func:`draws`
    ([B, 2]); ``noise``: gaussian_noise only, standard normal of ``x``'s shape. Returns uint8;
    severity 0 returns ``x`` itself."""
    if shift not in SEVERITY:
        raise RPGDataError(f"unknown shift {shift!r}; use one of {', '.join(SEVERITY)}")
    if severity == 0:
        return x
    p = SEVERITY[shift][severity]
    b, _, h, w = x.shape
    xf = x.float()
    if shift == "rotation":
        a = torch.where(u[:, 0] < 0.5, -1.0, 1.0) * math.radians(p)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = a.cos(), -a.sin() * h / w
        theta[:, 1, 0], theta[:, 1, 1] = a.sin() * w / h, a.cos()
        out = _affine(xf, theta, "bilinear")
    elif shift == "translation":
        direction = u[:, 0] * 2 * math.pi
        dx = (direction.cos() * p * w).round()
        dy = (direction.sin() * p * h).round()
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / w, -2 * dy / h  # whole pixels
        out = _affine(xf, theta, "nearest")
    elif shift == "occlusion":
        side = max(1, round(p * min(h, w)))
        top = (u[:, 0] * (h - side + 1)).floor().long().clamp(0, h - side)
        left = (u[:, 1] * (w - side + 1)).floor().long().clamp(0, w - side)
        rows = torch.arange(h)[None, :, None]
        cols = torch.arange(w)[None, None, :]
        mask = (
            (rows >= top[:, None, None])
            & (rows < top[:, None, None] + side)
            & (cols >= left[:, None, None])
            & (cols < left[:, None, None] + side)
        )
        out = torch.where(mask[:, None], torch.tensor(OCCLUSION_FILL), xf)
    elif shift == "gaussian_blur":
        out = _blur(xf, p * min(h, w) / 32)
    elif shift == "gaussian_noise":
        if noise is None:
            raise RPGDataError("internal: gaussian_noise needs its noise")
        out = xf + noise * (255.0 * p)
    elif shift == "contrast":
        mean = xf.mean(dim=(2, 3), keepdim=True)  # per channel, as ImageNet-C
        out = (xf - mean) * p + mean
    else:  # inversion
        out = xf + p * (255.0 - 2 * xf)
    return out.round().clamp(0, 255).to(torch.uint8)


def shift_images(
    x: torch.Tensor, shift: str, severity: int, seed: int, start: int = 0, total: int | None = None
) -> torch.Tensor:
    """Images ``start..start+len(x)`` of a set of ``total`` images, shifted (uint8 in and out).
    Image ``i`` of the set is shifted the same whatever ``start`` and the batching are."""
    if severity == 0:
        return x
    n = len(x)
    u = draws(shift, severity, seed, total if total is not None else start + n)[start : start + n]
    noise = None
    if shift == "gaussian_noise":
        noise = torch.stack(
            [_noise(shift, severity, seed, start + i, x.shape[1:]) for i in range(n)]
        )
    return apply_shift(x, shift, severity, u, noise)


class ShiftedFolderImages(FolderImages):
    """A folder set whose images are shifted as they are decoded (image ``i`` always alike)."""

    def __init__(self, base: FolderImages, shift: str, severity: int, seed: int) -> None:
        super().__init__(base.files, base.labels, base.size)
        self.shift, self.severity, self.seed = shift, severity, seed
        self._u = draws(shift, severity, seed, len(base))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = super().__getitem__(i)
        noise = None
        if self.shift == "gaussian_noise":
            noise = _noise(self.shift, self.severity, self.seed, i, x.shape)[None]
        out = apply_shift(x[None], self.shift, self.severity, self._u[i : i + 1], noise)
        return out[0], y


def shifted_set(
    images: ImageSet, shift: str, severity: int, seed: int, should_stop: StopCheck | None = None
) -> ImageSet:
    """``images`` with every image shifted (labels unchanged); ``should_stop`` is checked
    before each chunk of an in-memory set (raises ``rpg_core.stopping.Stopped``)."""
    if severity == 0:
        return images
    if isinstance(images, TensorImages):
        n = len(images)
        parts = [
            shift_images(images.x[i : i + CHUNK], shift, severity, seed, i, n)
            for i in checked(range(0, n, CHUNK), should_stop)
        ]
        x = torch.cat(parts) if parts else images.x
        return TensorImages(x, images.y)
    return ShiftedFolderImages(images, shift, severity, seed)


# --- image folders with a class map ------------------------------------------------------------
class OODFolderImages(FolderImages):
    """Folder images decoded like the run's validation images: ``channels`` 1 (greyscale) or 3,
    shorter side resized to ``size`` and centre-cropped."""

    def __init__(self, files: list[Path], labels: list[int], size: int, channels: int) -> None:
        super().__init__(files, labels, size)
        self.channels = channels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = super().__getitem__(i)
        if self.channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
            grey = (0.299 * x[0].float() + 0.587 * x[1].float() + 0.114 * x[2].float()).round()
            return grey.clamp(0, 255).to(torch.uint8)[None], y
        return x, y


@dataclasses.dataclass(frozen=True)
class FolderSet:
    """An OOD folder: its images (labels index ``folder_classes``) and, per folder class, the
    training classes a prediction may name to be correct."""

    images: OODFolderImages
    folder_classes: tuple[str, ...]
    allowed: torch.Tensor  # bool [folder classes, training classes]


def _class_index(value: Any, data: Datasets, where: str) -> int:
    names = list(data.classes)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RPGDataError(f"{where}: a training class is a name or an index, got {value!r}")
    if isinstance(value, str) and value in names:
        return names.index(value)
    if isinstance(value, str) and not names and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 0 <= value < data.num_classes:
        return value
    allowed = (
        f"one of the training classes ({', '.join(names[:20])}{', ...' if len(names) > 20 else ''})"
        if names
        else f"a class index 0..{data.num_classes - 1} (this dataset's classes have no names)"
    )
    raise RPGDataError(f"{where}: {value!r} is not a training class; use {allowed}")


def read_class_map(key: str, root: Path, data: Datasets) -> dict[str, list[int]]:
    """``<root>/class-maps/<key>.json`` as {folder class: [training class indices]}, strictly
    validated (every error names the key and the fix)."""
    path = resolve_under(root, CLASS_MAP_DIR, f"{key}.json")
    where = f"eval.ood class_map {key!r}"
    if not path.is_file():
        raise RPGDataError(
            f"{where}: no file {CLASS_MAP_DIR}/{key}.json under the data root; put a JSON object "
            f'{{"folder class": "training class", ...}} there'
        )
    if path.stat().st_size > MAX_CLASS_MAP_BYTES:
        raise RPGDataError(f"{where}: the file is over {MAX_CLASS_MAP_BYTES // 1024**2} MiB")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RPGDataError(f"{where}: not valid UTF-8 JSON ({err}); fix the file") from None
    if not isinstance(raw, dict) or not raw:
        raise RPGDataError(
            f"{where}: must be a non-empty JSON object {{folder class: training class or "
            f"[training classes]}}, got {type(raw).__name__}"
        )
    out: dict[str, list[int]] = {}
    for folder_class, target in raw.items():
        entry = f"{where}, entry {folder_class!r}"
        targets = target if isinstance(target, list) else [target]
        if not targets:
            raise RPGDataError(f"{entry}: an empty list maps to nothing; name a training class")
        out[folder_class] = sorted({_class_index(t, data, entry) for t in targets})
    return out


def load_folder_set(
    spec: OODSetSpec, root: Path, data: Datasets, val_size: int | None = None
) -> FolderSet:
    """The images of ``spec.folder`` whose classes ``spec.class_map`` maps."""
    assert spec.folder is not None and spec.class_map is not None
    cmap = read_class_map(spec.class_map, root, data)
    base = Path(root).resolve()
    tree = resolve_under(base, spec.folder)
    where = f"eval.ood folder {spec.folder!r}"
    if not tree.is_dir():
        raise RPGDataError(
            f"{where}: no folder {spec.folder}/ under the data root; put <class>/*.jpg|png there"
        )
    present = sorted(p.name for p in tree.iterdir() if p.is_dir())
    missing = sorted(set(cmap) - set(present))
    if missing:
        raise RPGDataError(
            f"eval.ood class_map {spec.class_map!r} names folder classes that {spec.folder}/ "
            f"does not have: {', '.join(missing[:10])}; fix the map or the folder "
            f"(its classes: {', '.join(present[:10])}{', ...' if len(present) > 10 else ''})"
        )
    classes = tuple(c for c in present if c in cmap)
    skipped = len(present) - len(classes)
    if skipped:
        log.info("%s: %d classes not in the class map are skipped", where, skipped)
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        for f in sorted(resolve_under(base, spec.folder, cls).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(resolve_under(base, str(f.relative_to(base))))
                labels.append(label)
    if not files:
        raise RPGDataError(f"{where}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its classes")
    allowed = torch.zeros(len(classes), data.num_classes, dtype=torch.bool)
    for i, cls in enumerate(classes):
        allowed[i, cmap[cls]] = True
    size = val_size or data.image_size
    images = OODFolderImages(files, labels, size, data.in_channels)
    if spec.max_images is not None and spec.max_images < len(images):
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(SPLIT_SEED))
        idx = sorted(keep[: spec.max_images].tolist())
        images = OODFolderImages(
            [files[i] for i in idx], [labels[i] for i in idx], size, data.in_channels
        )
    return FolderSet(images, classes, allowed)


# --- scoring -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Scorer:
    """How the engine runs its model on a batch (device, autocast, memory format)."""

    model: nn.Module
    batch_size: int
    device: torch.device
    autocast: Callable[[], AbstractContextManager[Any]]
    prepare: Callable[[torch.Tensor], torch.Tensor]
    num_workers: int = 0
    should_stop: StopCheck | None = None  # checked per batch and per shifted chunk


def _accuracy(
    scorer: Scorer, data: Datasets, images: ImageSet, allowed: torch.Tensor | None = None
) -> float:
    loader = BatchLoader(
        dataclasses.replace(data, val=images),
        "val",
        scorer.batch_size,
        device=scorer.device,
        num_workers=scorer.num_workers,
    )
    right, n = 0.0, 0
    ok = allowed.to(scorer.device) if allowed is not None else None
    with torch.no_grad():
        for x, y in checked(loader.epoch(0), scorer.should_stop):
            with scorer.autocast():
                pred = scorer.model(scorer.prepare(x)).float().argmax(1)
            hit = ok[y, pred] if ok is not None else pred == y
            right += float(hit.sum().item())
            n += len(y)
    return right / max(n, 1)


def _subset(images: ImageSet, n: int | None) -> ImageSet:
    return images.subset(n) if n is not None else images


def evaluate_ood(
    scorer: Scorer, data: Datasets, sets: Sequence[OODSetSpec], data_root: str | Path
) -> dict[str, float]:
    """Accuracy on every OOD set: ``{"<shift>@<severity>": acc, "folder:<name>": acc}``.
    Raises ``rpg_core.stopping.Stopped`` as soon as ``scorer.should_stop`` says so (checked
    per batch, per shifted chunk and per set)."""
    if isinstance(data.val, TensorSamples):
        raise RPGDataError(
            f"eval.ood: OOD accuracy is for classification; {data.name} is a {data.task} dataset"
        )
    was_training = scorer.model.training
    scorer.model.eval()
    out: dict[str, float] = {}
    try:
        for s in sets:
            if s.shift is not None:
                base = _subset(data.val, s.max_images)
                for sev in s.levels:
                    check_stop(scorer.should_stop)
                    images = shifted_set(base, s.shift, sev, s.seed, scorer.should_stop)
                    out[f"{s.shift}@{sev}"] = _accuracy(scorer, data, images)
            else:
                check_stop(scorer.should_stop)
                val_size = data.val.size if isinstance(data.val, FolderImages) else None
                fs = load_folder_set(s, Path(data_root), data, val_size)
                out[f"folder:{s.folder}"] = _accuracy(scorer, data, fs.images, fs.allowed)
    finally:
        scorer.model.train(was_training)
    return out


def mean_ood(results: dict[str, float]) -> float | None:
    """The mean accuracy over every OOD entry except severity 0 (the identity)."""
    vals = [v for k, v in results.items() if not k.endswith("@0")]
    return sum(vals) / len(vals) if vals else None


def check_ood_sources(sets: Sequence[OODSetSpec], data: Datasets, data_root: str | Path) -> None:
    """Fail before training when a folder or class map of ``sets`` is missing or invalid."""
    for s in sets:
        if s.folder is not None:
            load_folder_set(s, Path(data_root), data)
