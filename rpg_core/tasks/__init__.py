"""The torch side of the task registry (:mod:`rpg_core.catalog.tasks`): each task's loss and metrics.

One module per task (:mod:`.classification`, :mod:`.pose`, :mod:`.multitask`) over the shared
base (:mod:`.base`: the :class:`Task` interface) and the run page's pictures (:mod:`.pictures`).
Adding a task: its entry in the catalog, its module here, its line in ``_TASKS``.

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

from ..catalog.tasks import task_info
from ..exceptions import RPGConfigError
from .base import Targets, Task
from .classification import ClassificationTask
from .multitask import MultitaskTask
from .pictures import depth_colormap, png_base64
from .pose import (
    HEATMAP_SIGMA,
    HEATMAP_STRIDE,
    PCKH_THRESHOLD,
    PoseTask,
    decode,
    heatmap_targets,
    pckh_hits,
)

__all__ = [
    "HEATMAP_SIGMA",
    "HEATMAP_STRIDE",
    "PCKH_THRESHOLD",
    "ClassificationTask",
    "MultitaskTask",
    "PoseTask",
    "Targets",
    "Task",
    "decode",
    "depth_colormap",
    "get_task",
    "heatmap_targets",
    "pckh_hits",
    "png_base64",
]

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
