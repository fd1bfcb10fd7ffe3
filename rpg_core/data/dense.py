"""Samples with dense or structured targets (pose joints, depth and normal maps), held in memory.

:class:`TensorSamples` (defined beside the other image sets in :mod:`.images`) is the counterpart of :class:`~.images.TensorImages` for the ``pose`` and
``multitask`` tasks: uint8 images ``x`` [N, C, H, W] and a dict of target tensors whose first
dimension is N. :func:`dense_datasets` wraps a train and val pair into :class:`~.images.Datasets`
with the normalisation of the training images (as classification's in-memory sets do) and no
augmentation (a geometric augmentation would have to move the targets too).
"""

from __future__ import annotations

from ..exceptions import RPGDataError
from .images import MAX_SYNTHETIC_BYTES, Datasets, TensorSamples, normalisation, subset_indices

__all__ = [
    "DENSE_TASKS",
    "TensorSamples",
    "check_memory",
    "dense_datasets",
    "subset_indices",
]

DENSE_TASKS = ("pose", "multitask")


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
    mean, std = normalisation(train.x)
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
