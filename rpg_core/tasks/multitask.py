"""Multitask (depth and surface normals): masked L1 + (1 - cos) per stack, RMSEs of the last
stack (see :mod:`rpg_core.tasks`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..catalog.tasks import task_info
from .base import Targets, Task, as_numpy, stacks_of
from .pictures import depth_colormap, normal_rgb, png_base64

_EPS = 1e-6  # normalising a predicted normal: |n| floored here


def _unit(n: torch.Tensor) -> torch.Tensor:
    return n / n.norm(dim=1, keepdim=True).clamp(min=_EPS)


class MultitaskTask(Task):
    """Depth (masked L1) + surface normals (masked 1 - cos) per stack; RMSEs from the last."""

    info = task_info("multitask")

    def batch_size(self, targets: Targets) -> int:
        return int(targets["depth"].shape[0])

    @staticmethod
    def _stack_loss(out: Mapping[str, torch.Tensor], t: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = (t["mask"].float() > 0.5).float()  # [B, 1, S, S]
        n_valid = mask.sum().clamp(min=1.0)
        depth = ((out["depth"].float() - t["depth"].float()).abs() * mask).sum() / n_valid
        cos = (_unit(out["normal"].float()) * t["normal"].float()).sum(1, keepdim=True)
        normal = ((1.0 - cos) * mask).sum() / n_valid
        return depth + normal

    def loss(self, outputs: Any, targets: Targets, *, label_smoothing: float = 0.0) -> torch.Tensor:
        stacks = stacks_of(outputs)
        t = self.targets_to(targets, stacks[0]["depth"].device)
        total = self._stack_loss(stacks[0], t)
        for out in stacks[1:]:
            total = total + self._stack_loss(out, t)
        return total

    def baseline(self, train: Targets, val: Targets) -> dict[str, float]:
        """RMSEs of predicting every image's per-pixel mean training depth and normal."""
        mask = (train["mask"].float() > 0.5).float()
        count = mask.sum(0).clamp(min=1.0)  # [1, S, S]
        depth = (train["depth"].float() * mask).sum(0) / count
        normal = _unit((train["normal"].float() * mask).sum(0, keepdim=True))[0]
        n = int(val["depth"].shape[0])
        const = [{"depth": depth.expand(n, -1, -1, -1), "normal": normal.expand(n, -1, -1, -1)}]
        sums = self.eval_sums(const, val)
        out = self.finish(sums, n)
        return {k: v for k, v in out.items() if k != "val_loss"}

    def eval_sums(self, outputs: Any, targets: Targets, *, top5: bool = False) -> dict[str, float]:
        stacks = stacks_of(outputs)
        last = stacks[-1]
        t = self.targets_to(targets, last["depth"].device)
        loss = self.loss(stacks, t)
        mask = (t["mask"].float() > 0.5).float()
        depth_se = ((last["depth"].float() - t["depth"].float()) ** 2 * mask).sum()
        normal_se = ((_unit(last["normal"].float()) - t["normal"].float()) ** 2 * mask).sum()
        n_valid = float(mask.sum().item())
        return {
            "loss_sum": float(loss.item()) * self.batch_size(t),
            "depth_se": float(depth_se.item()),
            "depth_n": n_valid,
            "normal_se": float(normal_se.item()),
            "normal_n": 3.0 * n_valid,
        }

    def finish(self, sums: Mapping[str, float], n: int, *, top5: bool = False) -> dict[str, float]:
        def rmse(se: str, count: str) -> float:
            return math.sqrt(sums.get(se, 0.0) / max(sums.get(count, 0.0), 1.0))

        return {
            "val_loss": sums.get("loss_sum", 0.0) / max(n, 1),
            "val_depth_rmse": rmse("depth_se", "depth_n"),
            "val_normal_rmse": rmse("normal_se", "normal_n"),
        }

    def samples(
        self, x_raw_uint8: Any, outputs: Any, targets: Targets, k: int = 3
    ) -> list[dict[str, Any]]:
        last = stacks_of(outputs)[-1]
        images = as_numpy(x_raw_uint8)
        d_pred = last["depth"].detach().float().cpu().numpy()[:, 0]
        d_true = targets["depth"].detach().float().cpu().numpy()[:, 0]
        n_pred = _unit(last["normal"].detach().float()).cpu().numpy()
        n_true = targets["normal"].detach().float().cpu().numpy()
        valid = targets["mask"].detach().float().cpu().numpy()[:, 0] > 0.5
        out: list[dict[str, Any]] = []
        for i in range(min(k, len(images))):
            m = valid[i]
            both = np.concatenate([d_pred[i][m], d_true[i][m]])
            lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
            out.append(
                {
                    "image": png_base64(images[i]),
                    "depth_pred": png_base64(depth_colormap(d_pred[i], lo, hi, m)),
                    "depth_true": png_base64(depth_colormap(d_true[i], lo, hi, m)),
                    "normal_pred": png_base64(normal_rgb(n_pred[i], m)),
                    "normal_true": png_base64(normal_rgb(n_true[i], m)),
                }
            )
        return out
