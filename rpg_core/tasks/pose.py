"""Pose: heatmaps per stack, a spatial cross-entropy per visible joint, PCKh@0.5 (see
:mod:`rpg_core.tasks` for the shapes and the loss's scale)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..catalog.tasks import task_info
from .base import Targets, Task, as_numpy, rounded, stacks_of
from .pictures import png_base64

HEATMAP_STRIDE = 2  # input pixels per heatmap pixel (heatmaps are S/2 x S/2)
HEATMAP_SIGMA = 1.0  # target Gaussians' standard deviation, heatmap pixels (Newell: 1 at 64x64)
PCKH_THRESHOLD = 0.5  # PCKh@0.5: within half the head segment


def heatmap_targets(
    joints: torch.Tensor,
    height: int,
    width: int,
    *,
    stride: int = HEATMAP_STRIDE,
    sigma: float = HEATMAP_SIGMA,
) -> torch.Tensor:
    """Gaussian target heatmaps ``[B, J, height, width]`` (float32, peak 1) centred on
    ``joints`` ``[B, J, 2]`` (x, y input pixels), at sub-pixel precision."""
    j = joints.float()
    h = (j + 0.5) / stride - 0.5  # heatmap coordinates
    u = torch.arange(width, device=j.device, dtype=torch.float32)
    v = torch.arange(height, device=j.device, dtype=torch.float32)
    dx2 = (u.view(1, 1, 1, -1) - h[..., 0, None, None]) ** 2  # [B, J, 1, W]
    dy2 = (v.view(1, 1, -1, 1) - h[..., 1, None, None]) ** 2  # [B, J, H, 1]
    return torch.exp(-(dx2 + dy2) / (2.0 * sigma * sigma))


def decode(heatmaps: torch.Tensor, *, stride: int = HEATMAP_STRIDE) -> torch.Tensor:
    """Joint positions ``[B, J, 2]`` (x, y input pixels) from heatmaps ``[B, J, H, W]``.

    Per heatmap: the argmax (the first, in row-major order, on a tie), moved a quarter pixel
    along x and along y toward the higher of its two neighbours there (Newell et al.'s rule; no
    move on a tie or at the border), then mapped to input coordinates.
    """
    hm = heatmaps.detach().float()
    b, j, hh, ww = hm.shape
    flat = hm.reshape(b, j, hh * ww)
    idx = flat.argmax(-1)
    px, py = idx % ww, idx // ww
    # the four neighbours, clamped (their difference is used only in the interior)
    right = flat.gather(-1, (py * ww + (px + 1).clamp(max=ww - 1)).unsqueeze(-1)).squeeze(-1)
    left = flat.gather(-1, (py * ww + (px - 1).clamp(min=0)).unsqueeze(-1)).squeeze(-1)
    down = flat.gather(-1, ((py + 1).clamp(max=hh - 1) * ww + px).unsqueeze(-1)).squeeze(-1)
    up = flat.gather(-1, ((py - 1).clamp(min=0) * ww + px).unsqueeze(-1)).squeeze(-1)
    interior = (px > 0) & (px < ww - 1) & (py > 0) & (py < hh - 1)
    dx = torch.where(interior, torch.sign(right - left), torch.zeros_like(right))
    dy = torch.where(interior, torch.sign(down - up), torch.zeros_like(down))
    x = px.float() + 0.25 * dx
    y = py.float() + 0.25 * dy
    return (torch.stack([x, y], -1) + 0.5) * stride - 0.5


def pckh_hits(
    pred: torch.Tensor, joints: torch.Tensor, visible: torch.Tensor, head: torch.Tensor
) -> tuple[float, float]:
    """(correct, counted) visible joints: correct within ``PCKH_THRESHOLD * head`` pixels."""
    dist = (pred.float() - joints.float()).norm(dim=-1)  # [B, J]
    vis = visible.float() > 0.5
    ok = (dist <= PCKH_THRESHOLD * head.float()[:, None]) & vis
    return float(ok.sum().item()), float(vis.sum().item())


class PoseTask(Task):
    """Heatmap regression with intermediate supervision; PCKh@0.5 from the last stack."""

    info = task_info("pose")

    def batch_size(self, targets: Targets) -> int:
        return int(targets["joints"].shape[0])

    def loss(self, outputs: Any, targets: Targets, *, label_smoothing: float = 0.0) -> torch.Tensor:
        stacks = stacks_of(outputs)
        first = stacks[0]["heatmaps"]
        t = self.targets_to(targets, first.device)
        _, _, hh, ww = first.shape
        b, j = first.shape[:2]
        target = heatmap_targets(t["joints"], hh, ww).reshape(b, j, hh * ww)
        target = target / target.sum(-1, keepdim=True).clamp(min=1e-12)  # a distribution
        weight = (t["visible"].float() > 0.5).float()  # [B, J]; invisible joints: weight 0
        denom = weight.sum().clamp(min=1.0)
        total = first.new_zeros((), dtype=torch.float32)
        for out in stacks:
            logp = F.log_softmax(out["heatmaps"].float().reshape(b, j, hh * ww), -1)
            total = total + (-(target * logp).sum(-1) * weight).sum() / denom
        return total

    def baseline(self, train: Targets, val: Targets) -> dict[str, float]:
        """PCKh of predicting every joint at its mean visible training position."""
        vis = (train["visible"].float() > 0.5).float()[..., None]  # [N, J, 1]
        mean = (train["joints"].float() * vis).sum(0) / vis.sum(0).clamp(min=1.0)  # [J, 2]
        pred = mean.expand_as(val["joints"])
        correct, counted = pckh_hits(pred, val["joints"], val["visible"], val["head"])
        return {"val_pckh": correct / counted if counted else 0.0}

    def eval_sums(self, outputs: Any, targets: Targets, *, top5: bool = False) -> dict[str, float]:
        stacks = stacks_of(outputs)
        last = stacks[-1]["heatmaps"]
        t = self.targets_to(targets, last.device)
        loss = self.loss(stacks, t)
        correct, counted = pckh_hits(decode(last), t["joints"], t["visible"], t["head"])
        return {
            "loss_sum": float(loss.item()) * self.batch_size(t),
            "pckh_correct": correct,
            "pckh_count": counted,
        }

    def finish(self, sums: Mapping[str, float], n: int, *, top5: bool = False) -> dict[str, float]:
        return {
            "val_loss": sums.get("loss_sum", 0.0) / max(n, 1),
            "val_pckh": sums.get("pckh_correct", 0.0) / max(sums.get("pckh_count", 0.0), 1.0),
        }

    def samples(
        self, x_raw_uint8: Any, outputs: Any, targets: Targets, k: int = 3
    ) -> list[dict[str, Any]]:
        pred = decode(stacks_of(outputs)[-1]["heatmaps"]).cpu()
        joints = targets["joints"].detach().float().cpu()
        visible = targets["visible"].detach().float().cpu()
        head = targets["head"].detach().float().cpu()
        images = as_numpy(x_raw_uint8)
        out: list[dict[str, Any]] = []
        for i in range(min(k, len(images))):
            out.append(
                {
                    "image": png_base64(images[i]),
                    "pred": [[rounded(x), rounded(y)] for x, y in pred[i].tolist()],
                    "true": [
                        [rounded(x), rounded(y), int(v > 0.5)]
                        for (x, y), v in zip(joints[i].tolist(), visible[i].tolist(), strict=True)
                    ],
                    "head": rounded(float(head[i])),
                }
            )
        return out
