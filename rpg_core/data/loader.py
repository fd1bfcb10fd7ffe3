"""The entry points: :func:`load_datasets` (a data spec to its train and val sets) and
:class:`BatchLoader` (seeded, resumable batches, augmented and normalised).

Classification batches are ``(x, labels)``; pose and multitask batches (sets of
:class:`~.dense.TensorSamples`) are ``(x, targets)`` with ``targets`` a dict of tensors on the
device (:mod:`.pose`, :mod:`.scenes` list the keys)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch
from torch.utils.data import DataLoader

from ..exceptions import RPGConfigError
from ..spec import DATASET_RE, DataSpec
from ..stopping import StopCheck
from .dense import TensorSamples
from .images import Datasets, SampleSet, TensorImages
from .paths import default_data_root
from .pose import load_mpii, load_synthetic_pose
from .readers import load_cifar, load_digits_data, load_fashion, load_image_folder, load_synthetic
from .scenes import load_scene_folder, load_synthetic_scenes
from .transforms import center_crop, crop_flip, epoch_generator, resized_crop_flip

log = logging.getLogger(__name__)

# a batch's targets: int64 labels, or a pose / multitask set's dict of tensors. ``epoch`` types
# them Any so classification callers need no narrowing; dense callers index the dict.
Targets: TypeAlias = torch.Tensor | dict[str, torch.Tensor]


def load_datasets(
    spec: DataSpec | dict[str, Any],
    *,
    data_root: str | Path | None = None,
    download: bool = False,
    should_stop: StopCheck | None = None,
) -> Datasets:
    """The train and val images a data spec names. ``download``: fetch CIFAR when missing.
    ``should_stop``: checked per sample (or chunk) while a pose or multitask set is generated
    or decoded; True raises ``rpg_core.stopping.Stopped``."""
    if isinstance(spec, dict):
        try:
            spec = DataSpec.model_validate(spec)
        except ValueError as err:
            raise RPGConfigError(f"invalid data spec: {err}") from None
    if not DATASET_RE.match(spec.dataset):
        raise RPGConfigError(f"data.dataset: unknown dataset {spec.dataset!r}")
    root = Path(data_root) if data_root is not None else default_data_root()
    log.info("loading dataset %s (data root %s)", spec.dataset, root)
    if spec.dataset == "digits":
        return load_digits_data(spec)
    if spec.dataset == "synthetic":
        return load_synthetic(spec)
    if spec.dataset == "fashion-mnist":
        return load_fashion(spec, root)
    if spec.dataset in ("cifar10", "cifar100"):
        return load_cifar(spec, root, download=download)
    if spec.dataset == "synthetic-pose":
        return load_synthetic_pose(spec, should_stop)
    if spec.dataset == "synthetic-scenes":
        return load_synthetic_scenes(spec, should_stop)
    kind = spec.dataset.split(":", 1)[0]
    if kind == "mpii":
        return load_mpii(spec, root, should_stop)
    if kind == "scenes":
        return load_scene_folder(spec, root, should_stop)
    return load_image_folder(spec, root)


class BatchLoader:
    """Seeded batches of normalised float images: ``for x, y in loader.epoch(e)``.

    ``y``: int64 labels, or for pose / multitask sets (:class:`~.dense.TensorSamples`) a dict
    of target tensors on the device, indexed like ``x`` (those sets are never augmented).
    In-memory sets are indexed directly (and live on the device); image folders go through a
    ``DataLoader`` with ``num_workers`` (and ``pin_memory`` on CUDA). Shuffling and
    augmentation come from :func:`epoch_generator`, so worker count never changes a batch.

    ``shard=(rank, world)`` (a data-parallel run, :mod:`rpg_core.training.distributed`): every
    rank draws the same global batches and yields the ``rank``-th of ``world`` nearly equal
    parts of each (``torch.tensor_split``); in-memory sets are augmented as whole batches first,
    so the parts put together are a 1-rank run's batch. An image folder's rank loads only its
    part and augments it from its own generator (same images and order, other random crops).
    A training set's last batch is dropped when it is smaller than ``max(2, world)``.
    ``global_sizes``: the sizes of the last epoch's global batches.
    """

    def __init__(
        self,
        data: Datasets,
        split: Literal["train", "val"],
        batch_size: int,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.data, self.split, self.batch_size, self.seed = data, split, batch_size, seed
        self.rank, self.world = shard
        self.global_sizes: list[int] = []
        self.device = torch.device(device)
        self.num_workers = num_workers
        self.images: SampleSet = data.train if split == "train" else data.val
        self.train = split == "train"
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(data.mean, device=self.device).view(shape)
        self.std = torch.tensor(data.std, device=self.device).view(shape)
        self._mem: tuple[torch.Tensor, Targets] | None = None
        if isinstance(self.images, TensorImages):
            self._mem = (self.images.x.to(self.device), self.images.y.to(self.device))
        elif isinstance(self.images, TensorSamples):
            targets = {k: v.to(self.device) for k, v in self.images.targets.items()}
            self._mem = (self.images.x.to(self.device), targets)

    def unsharded(self) -> BatchLoader:
        """This loader's global batches (every rank the whole batch), sharing its data."""
        other = copy.copy(self)
        other.rank, other.world, other.global_sizes = 0, 1, []
        return other

    @property
    def num_samples(self) -> int:
        return len(self.images)

    def _order(self, gen: torch.Generator) -> list[torch.Tensor]:
        n = self.num_samples
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        chunks = list(order.split(self.batch_size))
        if self.train and len(chunks) > 1 and len(chunks[-1]) < self._min_last:
            chunks.pop()  # a batch of one breaks BatchNorm (and every rank needs an image)
        return chunks

    @property
    def _min_last(self) -> int:
        return max(2, self.world)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        batches = -(-n // b)
        if self.train and batches > 1 and 0 < n % b < self._min_last:
            batches -= 1  # _order drops a last batch that small
        return batches

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, Any]]:
        """Epoch ``epoch``'s batches ``(x, y)``: ``y`` labels or a target dict (:data:`Targets`)."""
        gen = epoch_generator(self.seed, epoch)
        chunks = self._order(gen)
        self.global_sizes = [len(c) for c in chunks]
        if self.world == 1:
            for x, y in self._raw_batches(chunks):
                yield self._transform(x, gen), y
            return
        if self._mem is not None:  # the whole batch augmented, then this rank's part
            for x, y in self._raw_batches(chunks):
                part = torch.arange(len(x), device=x.device).tensor_split(self.world)[self.rank]
                if len(part):
                    ys = {k: v[part] for k, v in y.items()} if isinstance(y, dict) else y[part]
                    yield self._transform(x, gen)[part], ys
            return
        parts = [c.tensor_split(self.world)[self.rank] for c in chunks]
        rank_gen = epoch_generator(self.seed + 7_919 * self.rank, epoch)
        for x, y in self._raw_batches([p for p in parts if len(p)]):
            yield self._transform(x, rank_gen), y

    def _raw_batches(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, Targets]]:
        if self._mem is not None:
            xs, ys = self._mem
            for idx in chunks:
                i = idx.to(self.device)
                if isinstance(ys, dict):
                    yield xs[i], {k: v[i] for k, v in ys.items()}
                else:
                    yield xs[i], ys[i]
            return
        loader = DataLoader(
            self.images,
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield (
                x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True),
            )

    def _transform(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        size = self.data.image_size
        style = self.data.augment if self.train else "none"
        if style in ("cifar", "crop"):
            x = crop_flip(x, gen, pad=max(1, round(size / 8)), flip=style == "cifar")
        elif style == "imagenet":
            x = resized_crop_flip(x, gen, size)
        xf = center_crop(x, size).float()
        return ((xf / 255.0) - self.mean) / self.std
