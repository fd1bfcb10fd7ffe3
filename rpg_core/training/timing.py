"""Inference time per image: an eval-mode, no-grad forward timed on the run's device
(``TrainResult.inference_ms_per_image``; paper Table 1 compares it across recurrence modes)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..exceptions import RPGConfigError

if TYPE_CHECKING:
    from .epoch import _Run

INFERENCE_BATCH = 64  # images per timed forward
INFERENCE_WARMUP = 2
INFERENCE_REPEATS = 5


def measure_inference(
    model: nn.Module,
    images: torch.Tensor,
    *,
    warmup: int = INFERENCE_WARMUP,
    repeats: int = INFERENCE_REPEATS,
) -> float:
    """Milliseconds per image of an eval-mode, no-grad forward of the batch ``images`` (already
    on the model's device and prepared): ``warmup`` untimed passes, then the median of
    ``repeats`` timed ones divided by the batch size. The model is left in eval mode."""
    if images.shape[0] == 0:
        raise RPGConfigError("measure_inference needs at least one image")
    model.eval()
    cuda = images.device.type == "cuda"
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(images.device)
            t0 = time.perf_counter()
            model(images)
            if cuda:
                torch.cuda.synchronize(images.device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2] / images.shape[0]


def run_inference_ms(run: _Run) -> float | None:
    """The run's inference time per image on a fixed batch of validation images."""
    batch = next(iter(run.val_loader.epoch(0)), None)
    if batch is None:
        return None
    images = run.prepare(batch[0][:INFERENCE_BATCH])
    with run.autocast():
        return measure_inference(run.model, images)
