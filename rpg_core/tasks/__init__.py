"""The torch side of the task registry (:mod:`rpg_core.catalog.tasks`): each task's loss and metrics.

``get_task(name)`` gives a :class:`Task`; the training loop asks it for

- ``loss(outputs, targets)``: the scalar to back-propagate;
- ``batch_size(targets)``: the images in a batch (the weight of its loss in epoch means);
- ``train_sums(outputs, targets)``: running sums of the training metric (classification:
  ``{"correct": n}``; dense tasks have none, ``{}``);
- ``eval_sums(outputs, targets)``: additive sums over a validation pass (``loss_sum`` and the
  sums the metrics need), added key by key over the batches; ``finish(sums, n)`` turns them,
  with ``n`` the images, into ``{"val_loss": .., "val_<key>": ..}`` for every metric of the task;
- ``samples(x_raw_uint8, outputs, targets)``: a few validation pictures for the run page.

What a model returns and what a batch holds, per task:

- ``classification``: logits ``[B, K]``; targets int64 ``[B]``.
- ``pose``: a list, one entry per stacked sub-network, of ``{"heatmaps": [B, J, S/2, S/2]}``;
  targets ``{"joints": [B, J, 2] (x, y) input pixels, "visible": [B, J] 0/1, "head": [B]}``
  (the head segment length in pixels). Pixel centres are at integer coordinates in the input
  and in the heatmap; heatmap coordinate ``h`` is input coordinate
  ``(h + 0.5) * HEATMAP_STRIDE - 0.5`` (heatmap pixel 0 covers input pixels 0 and 1, centre 0.5).
- ``multitask``: a list, one entry per stack, of ``{"depth": [B, 1, S, S] positive, "normal":
  [B, 3, S, S] unit}``; targets ``{"depth": [B, 1, S, S], "normal": [B, 3, S, S] unit,
  "mask": [B, 1, S, S] (1 valid)}``.

Loss scales (SGD, lr ~0.05-0.1, momentum 0.9, as for classification):

- pose, per stack: a spatial cross-entropy per visible joint, the keypoint loss of Mask R-CNN
  (He et al. 2017): the joint's heatmap is a softmax over its ``H * W`` pixels, the target the
  Gaussian of ``HEATMAP_SIGMA`` = 1 heatmap pixel around the joint normalised to sum 1, the
  loss ``-sum_p target_p log softmax(heatmap)_p``, averaged over the visible joints and summed
  over the stacks (intermediate supervision, as Newell et al.); invisible joints weigh 0. It
  starts near ``log(H * W)`` per stack (6.9 at 32x32) and cannot go below the target's entropy
  (2.8 at sigma 1), the scale of a classifier's loss, so the classification recipe (SGD,
  momentum 0.9) trains it as it is. Newell's mean squared error on the heatmaps is not used:
  under SGD at CPU-sized budgets it settles on all-zero maps (the peaks are a few pixels of
  ``H * W``), measured at chance PCKh after 800 steps where this loss overfits 32 images in 150
  (docs/BENCHMARKS.md, "Pose loss"). Decoding is the same argmax.
- multitask, per stack: masked L1 on depth + masked ``1 - cos`` between the predicted and true
  normal, both means over the valid pixels, weights 1 and 1; summed over the stacks. The
  gradient of either term is at most 1 / n_valid per pixel (L1: +-1; cosine: at most
  ``1 / |n|`` for a unit prediction), whatever the depth units, so neither term swamps the
  other's updates; the loss starts O(1) (metre depths, random normals).

Validation metrics come from the LAST stack: PCKh@0.5 (a visible joint is correct when its
decoded prediction lies within half the head segment of the truth), depth RMSE (dataset depth
units) and normal RMSE (unit-normal components). Their sums (squared errors and counts) are
additive, so a pass's metric is exact over the whole set, not a mean over batches.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..catalog.tasks import TaskInfo, task_info
from ..exceptions import RPGConfigError

__all__ = [
    "HEATMAP_SIGMA",
    "HEATMAP_STRIDE",
    "ClassificationTask",
    "MultitaskTask",
    "PoseTask",
    "Task",
    "decode",
    "depth_colormap",
    "get_task",
    "heatmap_targets",
    "png_base64",
]

HEATMAP_STRIDE = 2  # input pixels per heatmap pixel (heatmaps are S/2 x S/2)
HEATMAP_SIGMA = 1.0  # target Gaussians' standard deviation, heatmap pixels (Newell: 1 at 64x64)
PCKH_THRESHOLD = 0.5  # PCKh@0.5: within half the head segment
_EPS = 1e-6  # normalising a predicted normal: |n| floored here

Targets = Any  # a tensor (classification) or a dict of tensors (dense tasks)


class Task:
    """A task's loss and metrics; one subclass per task in :data:`rpg_core.catalog.tasks.TASKS`."""

    info: TaskInfo

    def targets_to(self, targets: Targets, device: torch.device) -> Targets:
        """``targets`` on ``device`` (a tensor, or every tensor of a dict)."""
        if isinstance(targets, Mapping):
            return {k: v.to(device) for k, v in targets.items()}
        return targets.to(device)

    def loss(self, outputs: Any, targets: Targets, *, label_smoothing: float = 0.0) -> torch.Tensor:
        """The scalar to back-propagate (float32)."""
        raise NotImplementedError

    def batch_size(self, targets: Targets) -> int:
        if isinstance(targets, Mapping):
            return int(next(iter(targets.values())).shape[0])
        return len(targets)

    def train_sums(self, outputs: Any, targets: Targets) -> dict[str, float]:
        """Running sums of the training metric over a batch (none for dense tasks)."""
        return {}

    def eval_sums(self, outputs: Any, targets: Targets, *, top5: bool = False) -> dict[str, float]:
        """Additive sums over a validation batch: ``loss_sum`` (the loss times the batch) and
        what the metrics need. Call under ``torch.no_grad()``."""
        raise NotImplementedError

    def finish(self, sums: Mapping[str, float], n: int, *, top5: bool = False) -> dict[str, float]:
        """``{"val_loss": .., "val_<key>": ..}`` from a pass's summed ``eval_sums`` over ``n``
        images (zeros when empty)."""
        raise NotImplementedError

    def samples(
        self, x_raw_uint8: Any, outputs: Any, targets: Targets, k: int = 3
    ) -> list[dict[str, Any]]:
        """Pictures of the first ``k`` images of a batch for the run page (none by default)."""
        return []

    def baseline(self, train: Targets, val: Targets) -> dict[str, float]:
        """``{"val_<key>": ..}``: the metrics on ``val`` of a constant prediction made from the
        training targets (the mean pose, the per-pixel mean maps): what a network that learnt
        nothing from its inputs scores (the dense tasks' "chance"; none for classification,
        whose chance the guard rails compute from the labels)."""
        return {}


# --- classification ----------------------------------------------------------------------------
class ClassificationTask(Task):
    """Cross-entropy on logits ``[B, K]``; top-1 (and optionally top-5) accuracy. Numerically
    what :mod:`rpg_core.training.loop` computed before the tasks."""

    info = task_info("classification")

    def loss(self, outputs: Any, targets: Targets, *, label_smoothing: float = 0.0) -> torch.Tensor:
        y = targets.to(outputs.device)
        return F.cross_entropy(outputs.float(), y, label_smoothing=label_smoothing)

    def train_sums(self, outputs: Any, targets: Targets) -> dict[str, float]:
        y = targets.to(outputs.device)
        return {"correct": float((outputs.argmax(1) == y).sum().item())}

    def eval_sums(self, outputs: Any, targets: Targets, *, top5: bool = False) -> dict[str, float]:
        logits = outputs.float()
        y = targets.to(logits.device)
        sums = {
            "loss_sum": float(F.cross_entropy(logits, y, reduction="sum").item()),
            "correct": float((logits.argmax(1) == y).sum().item()),
        }
        if top5:
            top = logits.topk(5, dim=1).indices
            sums["top5"] = float((top == y[:, None]).any(1).sum().item())
        return sums

    def finish(self, sums: Mapping[str, float], n: int, *, top5: bool = False) -> dict[str, float]:
        out = {
            "val_loss": sums.get("loss_sum", 0.0) / max(n, 1),
            "val_acc": sums.get("correct", 0.0) / max(n, 1),
        }
        if top5:
            out["val_top5"] = sums.get("top5", 0.0) / max(n, 1)
        return out


# --- pose --------------------------------------------------------------------------------------
def _stacks(outputs: Any) -> list[Mapping[str, torch.Tensor]]:
    """The per-stack output dicts of a stacked model (one dict alone is one stack)."""
    if isinstance(outputs, Mapping):
        return [outputs]
    return list(outputs)


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
        stacks = _stacks(outputs)
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
        stacks = _stacks(outputs)
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
        pred = decode(_stacks(outputs)[-1]["heatmaps"]).cpu()
        joints = targets["joints"].detach().float().cpu()
        visible = targets["visible"].detach().float().cpu()
        head = targets["head"].detach().float().cpu()
        images = _as_numpy(x_raw_uint8)
        out: list[dict[str, Any]] = []
        for i in range(min(k, len(images))):
            out.append(
                {
                    "image": png_base64(images[i]),
                    "pred": [[_r(x), _r(y)] for x, y in pred[i].tolist()],
                    "true": [
                        [_r(x), _r(y), int(v > 0.5)]
                        for (x, y), v in zip(joints[i].tolist(), visible[i].tolist(), strict=True)
                    ],
                    "head": _r(float(head[i])),
                }
            )
        return out


# --- multitask ---------------------------------------------------------------------------------
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
        stacks = _stacks(outputs)
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
        stacks = _stacks(outputs)
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
        last = _stacks(outputs)[-1]
        images = _as_numpy(x_raw_uint8)
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
                    "normal_pred": png_base64(_normal_rgb(n_pred[i], m)),
                    "normal_true": png_base64(_normal_rgb(n_true[i], m)),
                }
            )
        return out


# --- pictures ----------------------------------------------------------------------------------
# viridis at 0, 1/8, ..., 1 (matplotlib's), interpolated linearly
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


def depth_colormap(
    depth: np.ndarray, lo: float, hi: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """A viridis-like colour image ``[3, H, W]`` uint8 of ``depth`` ``[H, W]`` over ``[lo, hi]``
    (``lo`` dark purple, ``hi`` yellow); pixels not ``valid`` black."""
    t = np.clip((np.asarray(depth, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    pos = t * (len(_VIRIDIS) - 1)
    i = np.minimum(pos.astype(np.int64), len(_VIRIDIS) - 2)
    f = (pos - i)[..., None]
    rgb = _VIRIDIS[i] * (1.0 - f) + _VIRIDIS[i + 1] * f  # [H, W, 3]
    if valid is not None:
        rgb = rgb * np.asarray(valid, dtype=bool)[..., None]
    return np.rint(rgb).astype(np.uint8).transpose(2, 0, 1)


def _normal_rgb(normal: np.ndarray, valid: np.ndarray) -> np.ndarray:
    rgb = np.clip((np.asarray(normal, dtype=np.float64) + 1.0) / 2.0 * 255.0, 0.0, 255.0)
    return (np.rint(rgb) * valid[None]).astype(np.uint8)


def _as_numpy(images: Any) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    return np.asarray(images)


def png_base64(image: Any) -> str:
    """A PNG (base64 text) of a uint8 image ``[C, H, W]`` (C 1 or 3; other C: the first channel)
    or ``[H, W]``."""
    from PIL import Image

    a = np.asarray(_as_numpy(image))
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float64)), 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
    pic = Image.fromarray(np.ascontiguousarray(a))  # [H, W]: L; [H, W, 3]: RGB
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _r(v: float) -> float:
    return round(float(v), 2)


# --- registry ----------------------------------------------------------------------------------
_TASKS: dict[str, type[Task]] = {
    "classification": ClassificationTask,
    "pose": PoseTask,
    "multitask": MultitaskTask,
}


def get_task(name: str) -> Task:
    """The task named ``name`` (an RPGConfigError names the known ones otherwise)."""
    task_info(name)  # raises on an unknown name
    try:
        return _TASKS[name]()
    except KeyError:
        raise RPGConfigError(f"task: {name!r} has no loss and metrics in rpg_core.tasks") from None
