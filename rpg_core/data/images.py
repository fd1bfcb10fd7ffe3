"""Image sets held in memory or read from files, and :class:`Datasets`, the pair of them with
what a model needs to know (classes, channels, size, normalisation, augmentation style)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..catalog.datasets import DATASETS
from ..exceptions import RPGDataError
from ..image_limits import open_image
from ..spec import DataSpec

SYSTEM_FASHION = Path(DATASETS["fashion-mnist"].system_dirs[0])  # the Debian package's folder
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLIT_SEED = 0  # the fixed seed of train/val splits and subsets (independent of train.seed)
MAX_SYNTHETIC_BYTES = 2 * 1024**3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AugmentKind = Literal["cifar", "crop", "imagenet", "none"]  # crop: cifar without the flip


class TensorImages(Dataset[tuple[torch.Tensor, int]]):
    """Images in memory: ``x`` uint8 [N, C, H, W] and ``y`` int64 [N]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise RPGDataError("internal: TensorImages needs uint8 [N,C,H,W] and labels [N]")
        self.x, self.y = x, y.to(torch.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])

    def subset(self, n: int | None, seed: int = SPLIT_SEED) -> TensorImages:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.sort().values
        return TensorImages(self.x[idx], self.y[idx])


class FolderImages(Dataset[tuple[torch.Tensor, int]]):
    """Image files decoded on demand: shorter side resized to ``size``, centre-cropped square."""

    def __init__(self, files: list[Path], labels: list[int], size: int) -> None:
        self.files, self.labels, self.size = files, labels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        try:
            rgb = open_image(self.files[i]).convert("RGB")  # size checked before decoding
            w, h = rgb.size
            scale = self.size / min(w, h)
            nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
            rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - self.size) // 2, (nh - self.size) // 2
            rgb = rgb.crop((left, top, left + self.size, top + self.size))
            arr = np.asarray(rgb, dtype=np.uint8).copy()
        except OSError as err:
            raise RPGDataError(f"cannot read image {self.files[i]}: {err}") from None
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), self.labels[i]

    def subset(self, n: int | None, seed: int = SPLIT_SEED) -> FolderImages:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        keep = sorted(idx.tolist())
        return FolderImages(
            [self.files[i] for i in keep], [self.labels[i] for i in keep], self.size
        )


ImageSet = TensorImages | FolderImages


def subset_indices(total: int, n: int | None, seed: int = SPLIT_SEED) -> list[int]:
    """The indices ``TensorImages.subset(n)`` keeps of ``total`` items: a seeded random choice,
    sorted (all of them when ``n`` is None or not smaller than ``total``)."""
    if n is None or n >= total:
        return list(range(total))
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    return sorted(idx.tolist())


class TensorSamples(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Images in memory, ``x`` uint8 [N, C, H, W], with ``targets``: a dict of tensors [N, ...].

    ``samples[i]`` is ``(x[i], {key: value[i]})``."""

    def __init__(self, x: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise RPGDataError("internal: TensorSamples needs uint8 images [N,C,H,W]")
        bad = [k for k, v in targets.items() if v.ndim == 0 or len(v) != len(x)]
        if bad or not targets:
            raise RPGDataError(
                f"internal: TensorSamples needs targets with first dim {len(x)}; bad: {bad}"
            )
        self.x = x
        self.targets: dict[str, torch.Tensor] = dict(targets)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.x[i], {k: v[i] for k, v in self.targets.items()}

    def subset(self, n: int | None, seed: int = SPLIT_SEED) -> TensorSamples:
        """A seeded random subset of ``n`` samples in their original order (the same choice as
        ``TensorImages.subset``)."""
        if n is None or n >= len(self):
            return self
        idx = torch.tensor(subset_indices(len(self), n, seed))
        return TensorSamples(self.x[idx], {k: v[idx] for k, v in self.targets.items()})

    @property
    def nbytes(self) -> int:
        """Bytes held: the images and every target."""
        tensors = [self.x, *self.targets.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


SampleSet = TensorImages | FolderImages | TensorSamples


@dataclass(frozen=True)
class Datasets:
    """A dataset's train and val images and what a model needs to know about them.

    ``task``: ``classification`` (splits are :data:`ImageSet`, labels), ``pose`` or
    ``multitask`` (splits are :class:`~.dense.TensorSamples`, target dicts). ``num_classes`` is
    the model's output channels: classes, 16 joints (pose) or 4 maps (multitask: 1 depth + 3
    normal)."""

    name: str
    train: SampleSet
    val: SampleSet
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: AugmentKind  # the augmentation style of the training set ("none": off)
    classes: tuple[str, ...] = ()
    task: str = "classification"


def normalisation(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (at least 1e-3) of uint8 images ``x`` [N, C, H, W] in [0, 1]."""
    xf = x.float().div_(255.0)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in xf.std(dim=(0, 2, 3)))
    return mean, std


def _in_memory(
    name: str, train: TensorImages, val: TensorImages, k: int, spec: DataSpec, style: AugmentKind
) -> Datasets:
    mean, std = normalisation(train.x)
    return Datasets(
        name=name,
        train=train,
        val=val,
        num_classes=k,
        in_channels=train.x.shape[1],
        image_size=train.x.shape[-1],
        mean=mean,
        std=std,
        augment=style if spec.augment is not False else "none",
    )
