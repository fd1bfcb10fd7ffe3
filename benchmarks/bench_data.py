"""The data path: images per second of the seeded batch loader (augmentation on whole batches on
the training device), against the previous crop implementation, side by side.

Both variants produce the same batches bit for bit (asserted); they alternate epoch by epoch.

Usage: python benchmarks/bench_data.py [--dataset fashion-mnist] [--batch 128] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rpg_core import data as data_mod
from rpg_core.data import BatchLoader, load_datasets


def crop_flip_before(
    x: torch.Tensor, gen: torch.Generator, pad: int = 4, *, flip: bool = True
) -> torch.Tensor:
    """The crop before this change: advanced indexing over a channels-last permute."""
    b, _, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    flip_mask = (torch.rand(b, generator=gen) < 0.5).to(dev) & flip
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(h, device=dev)[None, :]
    ar = torch.arange(w, device=dev)[None, :]
    cols = ox[:, None] + torch.where(flip_mask[:, None], w - 1 - ar, ar)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def epoch_rate(loader: BatchLoader, epoch: int) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    n, first = 0, None
    for x, y in loader.epoch(epoch):
        first = x if first is None else first
        n += len(y)
    assert first is not None
    return n / (time.perf_counter() - t0), first


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    d = load_datasets({"dataset": args.dataset})
    loader = BatchLoader(d, "train", args.batch, seed=0)
    current: Callable[..., torch.Tensor] = data_mod.crop_flip
    rates: dict[str, list[float]] = {"before": [], "now": []}
    for epoch in range(args.epochs):
        data_mod.crop_flip = crop_flip_before  # type: ignore[assignment]
        rate_b, first_b = epoch_rate(loader, epoch)
        data_mod.crop_flip = current  # type: ignore[assignment]
        rate_n, first_n = epoch_rate(loader, epoch)
        assert torch.equal(first_b, first_n), "the two crops must give the same batches"
        rates["before"].append(rate_b)
        rates["now"].append(rate_n)
    print(
        f"{args.dataset} train ({len(d.train):,} images {d.in_channels}x{d.image_size}x"
        f"{d.image_size}), batch {args.batch}, {args.threads} thread(s), {args.epochs} epochs "
        f"each, {time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}"
    )
    for k, rs in rates.items():
        print(
            f"{k:<8} {statistics.median(rs):>10,.0f} images/s (min {min(rs):,.0f}, max {max(rs):,.0f})"
        )
    ratio = statistics.median(rates["now"]) / statistics.median(rates["before"])
    print(f"now/before: {ratio:.2f}x")


if __name__ == "__main__":
    main()
