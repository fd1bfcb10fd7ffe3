"""Feature similarity (paper Fig. 7): how correlated a layer's channels are.

The feature map after a named module (for our ResNets ``"layer3"``: after residual stage 3) is
captured with a forward hook over a batch of images. Each channel's activations, flattened over
the images and the spatial positions, is one variable; the Pearson correlation matrix of the
channels is computed and the off-diagonal ``|correlation|`` is binned over ``[0, 1]``. Mass near 1
means redundant channels (room to prune, as in the paper's reference [60]); mass near 0 means
decorrelated features. A channel with zero variance has no defined correlation: it counts as 0
against every other channel and is reported in ``constant_channels``.

:class:`SimilarityCallback` computes the histogram at the end of a training run, on the
validation data the run already loaded (the worker stores it with the result).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import RPGConfigError, RPGError

log = logging.getLogger(__name__)

MAX_BINS = 10_000


@dataclass(frozen=True)
class SimilarityHistogram:
    """Normalised histogram of the off-diagonal ``|correlation|`` between channels.

    ``fractions[i]`` is the fraction of channel pairs whose ``|correlation|`` lies in
    ``[bin_edges[i], bin_edges[i + 1])`` (the last bin includes 1); the fractions sum to 1.
    """

    layer: str
    channels: int
    images: int
    samples_per_channel: int
    pairs: int
    constant_channels: int
    bin_edges: tuple[float, ...]
    fractions: tuple[float, ...]
    mean: float
    median: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "channels": self.channels,
            "images": self.images,
            "samples_per_channel": self.samples_per_channel,
            "pairs": self.pairs,
            "constant_channels": self.constant_channels,
            "bin_edges": list(self.bin_edges),
            "fractions": list(self.fractions),
            "mean": self.mean,
            "median": self.median,
            "statistic": "|Pearson correlation| between channels, off-diagonal pairs",
        }


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if isinstance(layer, str) and layer and layer in modules:
        return modules[layer]
    names = [n for n in modules if n and "." not in n] or [n for n in modules if n]
    raise RPGConfigError(
        f"layer: no module named {layer!r} in this model; valid names include "
        f"{', '.join(names[:12])} (nested names use dots, e.g. 'layer3.1.conv2')"
    )


def _images_of(item: Any) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, list | tuple) and item and isinstance(item[0], torch.Tensor):
        return item[0]
    raise RPGConfigError(
        "loader_or_batch must be an image tensor, an (images, labels) pair, or an iterable "
        f"of those, got an item of type {type(item).__name__}"
    )


def _is_pair(obj: Any) -> bool:
    return (
        isinstance(obj, list | tuple)
        and len(obj) == 2
        and isinstance(obj[0], torch.Tensor)
        and isinstance(obj[1], torch.Tensor)
        and obj[0].dim() >= 2
        and obj[1].dim() == 1
    )


def _collect(loader_or_batch: Any, max_images: int) -> torch.Tensor:
    """Up to ``max_images`` images from a tensor, a pair, or an iterable of batches."""
    single = isinstance(loader_or_batch, torch.Tensor) or _is_pair(loader_or_batch)
    batches: Iterable[Any] = [loader_or_batch] if single else loader_or_batch
    out, count = [], 0
    for item in batches:
        x = _images_of(item)
        out.append(x[: max_images - count])
        count += len(out[-1])
        if count >= max_images:
            break
    if count == 0:
        raise RPGConfigError("loader_or_batch: no images")
    return torch.cat(out)


def _capture(model: nn.Module, module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: Any, output: Any) -> None:
        captured.append((output[0] if isinstance(output, tuple | list) else output).detach())

    device = next((t.device for t in [*model.parameters(), *model.buffers()]), images.device)
    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images.to(device))
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise RPGConfigError("layer: the named module did not run in the model's forward pass")
    return captured[0]


def channel_correlation(features: torch.Tensor) -> tuple[np.ndarray, int]:
    """Pearson correlation between channels of ``features`` (N, C, ...) and the count of
    zero-variance channels (whose correlations are set to 0, diagonal included)."""
    if features.dim() < 2:
        raise RPGConfigError(f"features must be (N, C, ...), got shape {tuple(features.shape)}")
    x = features.transpose(0, 1).reshape(features.shape[1], -1).to(torch.float64).cpu().numpy()
    magnitude = np.abs(x).mean(axis=1)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=1))
    # zero variance, up to the rounding of the mean of identical values
    constant = norm <= 1e-9 * magnitude * np.sqrt(x.shape[1])
    safe = np.where(constant, 1.0, norm)
    z = x / safe[:, None]
    corr = np.clip(z @ z.T, -1.0, 1.0)
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    return corr, int(constant.sum())


def feature_similarity(
    model: nn.Module,
    loader_or_batch: Any,
    layer: str = "layer3",
    *,
    bins: int = 50,
    max_images: int = 256,
) -> SimilarityHistogram:
    """Histogram of channel similarity of ``model``'s feature map after module ``layer``.

    Args:
        model: any network (RPG or plain); it runs in eval mode under no_grad (its mode is
            restored afterwards).
        loader_or_batch: an image tensor (N, C, H, W), an (images, labels) pair, or an iterable
            of those (a DataLoader); the first ``max_images`` images are used.
        layer: a module name from ``model.named_modules()``.
        bins: number of equal bins over [0, 1].
        max_images: at most this many images.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise RPGConfigError(f"bins must be an int in [1, {MAX_BINS}], got {bins!r}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise RPGConfigError(f"max_images must be an int >= 1, got {max_images!r}")
    module = _module(model, layer)
    images = _collect(loader_or_batch, max_images)
    features = _capture(model, module, images)
    if features.dim() < 2 or features.shape[1] < 2:
        raise RPGConfigError(
            f"layer {layer!r}: output shape {tuple(features.shape)} has fewer than 2 channels"
        )
    corr, constant = channel_correlation(features)
    values = np.abs(corr[np.triu_indices(corr.shape[0], k=1)])
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    result = SimilarityHistogram(
        layer=layer,
        channels=int(corr.shape[0]),
        images=int(images.shape[0]),
        samples_per_channel=int(features[:, 0].numel()),
        pairs=int(values.size),
        constant_channels=constant,
        bin_edges=tuple(float(e) for e in edges),
        fractions=tuple(float(c) for c in counts / values.size),
        mean=float(values.mean()),
        median=float(np.median(values)),
    )
    log.info(
        "feature similarity %s: mean |corr| %.4f over %d pairs", layer, result.mean, result.pairs
    )
    return result


class SimilarityCallback:
    """Engine callback: the ``layer`` similarity histogram of the trained model on the first
    ``images`` validation images of the datasets the run loaded (``on_datasets``).

    After a completed run ``histogram`` holds it; it stays None for a stopped run, or a model
    without ``layer`` (logged).
    """

    def __init__(self, images: int, layer: str = "layer3") -> None:
        self.images = images
        self.layer = layer
        self.histogram: SimilarityHistogram | None = None
        self._data: Any = None

    def on_datasets(self, data: Any) -> None:
        self._data = data

    def on_train_end(self, result: Any, model: nn.Module) -> None:
        if self._data is None or result.stopped:
            return
        from ..data import BatchLoader

        loader = BatchLoader(self._data, "val", batch_size=min(self.images, 256))
        try:
            self.histogram = feature_similarity(
                model, loader.epoch(0), layer=self.layer, max_images=self.images
            )
        except RPGError as err:  # e.g. an architecture without a "layer3"
            log.info("no similarity histogram: %s", err)
