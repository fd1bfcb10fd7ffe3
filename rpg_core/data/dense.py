"""Samples with dense or structured targets (pose joints, depth and normal maps), held in memory.

:class:`TensorSamples` is the counterpart of :class:`~.images.TensorImages` for the ``pose`` and
``multitask`` tasks: uint8 images ``x`` [N, C, H, W] and a dict of target tensors whose first
dimension is N. :func:`dense_datasets` wraps a train and val pair into :class:`~.images.Datasets`
with the normalisation of the training images (as classification's in-memory sets do) and no
augmentation (a geometric augmentation would have to move the targets too).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset

from ..exceptions import RPGDataError
from .images import MAX_SYNTHETIC_BYTES, SPLIT_SEED, Datasets

__all__ = [
    "DENSE_TASKS",
    "TensorSamples",
    "check_memory",
    "dense_datasets",
    "subset_indices",
]

DENSE_TASKS = ("pose", "multitask")


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


def check_memory(what: str, n: int, bytes_per_sample: int, fix: str) -> None:
    """Refuse to build more than ``MAX_SYNTHETIC_BYTES`` in memory, saying how to avoid it."""
    total = n * bytes_per_sample
    if total > MAX_SYNTHETIC_BYTES:
        raise RPGDataError(
            f"{what}: {n} samples of {bytes_per_sample / 1024**2:.2f} MiB each would take "
            f"{total / 1024**3:.1f} GiB in memory, over the "
            f"{MAX_SYNTHETIC_BYTES // 1024**3} GiB limit; {fix}"
        )


def dense_datasets(
    name: str,
    train: TensorSamples,
    val: TensorSamples,
    *,
    task: str,
    num_classes: int,
    classes: tuple[str, ...] = (),
) -> Datasets:
    """A pose or multitask train/val pair: normalisation from the training images, no
    augmentation, ``num_classes`` the output channels a model needs."""
    if task not in DENSE_TASKS:
        raise RPGDataError(f"internal: dense datasets are for {DENSE_TASKS}, not {task!r}")
    xf = train.x.float().div_(255.0)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in xf.std(dim=(0, 2, 3)))
    return Datasets(
        name=name,
        train=train,
        val=val,
        num_classes=num_classes,
        in_channels=train.x.shape[1],
        image_size=train.x.shape[-1],
        mean=mean,
        std=std,
        augment="none",
        classes=classes,
        task=task,
    )
