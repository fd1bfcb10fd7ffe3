"""Augmentation on whole uint8 batches, seeded by a ``torch.Generator`` per (seed, epoch)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# --- augmentation (whole uint8 batches, seeded) ---------------------------------------------------
def crop_flip(
    x: torch.Tensor, gen: torch.Generator, pad: int = 4, *, flip: bool = True
) -> torch.Tensor:
    """CIFAR-style: zero-pad by ``pad``, take a random crop of the original size, flip half
    (``flip=False``: no flips; the same random draws, so only the flips differ).

    The loaders pad by ``image_size / 8`` (4 at 32x32, as the paper's CIFAR recipe)."""
    b, c, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(dev)
    flip_mask = (torch.rand(b, generator=gen) < 0.5).to(dev) & flip
    xp = F.pad(x, (pad, pad, pad, pad))
    ar = torch.arange(w, device=dev)
    cols = ox[:, None] + torch.where(flip_mask[:, None], w - 1 - ar, ar)  # [b, w]
    rows = oy[:, None] + torch.arange(h, device=dev)  # [b, h]
    # one gather over the flattened padded image, channels first (no permute, no copy)
    idx = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(b, 1, h * w)
    return torch.gather(xp.view(b, c, -1), 2, idx.expand(b, c, h * w)).view(b, c, h, w)


def _affine(sx: torch.Tensor, sy: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    theta = torch.zeros(len(sx), 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    return theta


def resized_crop_flip(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """ImageNet-style: a random crop of 8%-100% of the area, aspect 3/4-4/3, resized, flipped."""
    b = len(x)
    area = torch.empty(b).uniform_(0.08, 1.0, generator=gen)
    logr = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    w = (area * logr.exp()).sqrt().clamp(max=1.0)
    h = (area / logr.exp()).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = _affine(w * flip, h, cx, cy).to(x.device)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffling and augmentation: a function of (seed, epoch)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + 1) % 2**63)
