"""Tiny real-data helpers for the analysis tests: sklearn's digits (8x8), zero-padded to 16x16.

(16x16 rather than 32x32 keeps every training here a few seconds on a shared 2-core CPU.)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from sklearn.datasets import load_digits
from torch import nn

from rpg_core.models import create_model

SIZE = 16


def digits(n_val: int = 397) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val); a fixed split, images normalised and padded."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    pad = (SIZE - 8) // 2
    x = nn.functional.pad(x, (pad, pad, pad, pad), value=float(x.min()))
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[n_val:], y[n_val:], x[:n_val], y[:n_val]


def batches(
    x: torch.Tensor, y: torch.Tensor, size: int = 64, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled pass over (x, y)."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(y), size):
        idx = perm[i : i + size]
        yield x[idx], y[idx]


class Epochs:
    """An iterable of batches that reshuffles on each pass (like a DataLoader)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int = 64) -> None:
        self.x, self.y, self.size, self.calls = x, y, size, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.calls += 1
        return batches(self.x, self.y, self.size, seed=self.calls)


def small_resnet(ring_size: int | float | None, arch: str = "resnet18", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    rpg = None if ring_size is None else {"ring_size": ring_size, "seed": seed}
    return create_model(
        {"model": {"arch": arch, "width": 0.25, "in_channels": 1, "num_classes": 10}, "rpg": rpg}
    )


class one_thread:  # noqa: N801 - used like a function: ``with one_thread():``
    """Run torch on one thread inside the block (the test machine's cores are shared)."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)
