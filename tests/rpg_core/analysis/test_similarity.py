"""Feature similarity: copies give mass at 1, independent features mass near 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from rpg_core.analysis import SimilarityCallback, feature_similarity
from rpg_core.data import BatchLoader, load_datasets
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import parse_spec
from rpg_core.training.engine import train

from ._digits import small_resnet


def copies_model(channels: int = 8) -> nn.Module:
    """A conv whose output channels are copies of one filter (every other one negated)."""
    conv = nn.Conv2d(1, channels, 3, padding=1, bias=False)
    with torch.no_grad():
        base = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(0))
        for i in range(channels):
            conv.weight[i] = base if i % 2 == 0 else -base
    return nn.Sequential(conv, nn.Flatten())


def test_copied_channels_put_all_mass_at_one() -> None:
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    h = feature_similarity(copies_model(), x, layer="0", bins=20)
    assert h.fractions[-1] == pytest.approx(1.0)
    assert h.mean == pytest.approx(1.0, abs=1e-6)
    assert h.pairs == 8 * 7 // 2
    assert h.constant_channels == 0


def test_independent_features_put_mass_near_zero() -> None:
    x = torch.randn(64, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    h = feature_similarity(nn.Sequential(nn.Identity()), x, layer="0", bins=50)
    assert h.mean < 0.05
    assert sum(h.fractions[:5]) == pytest.approx(1.0)  # all |corr| < 0.1
    assert h.samples_per_channel == 64 * 8 * 8


def test_constant_channel_counts_as_uncorrelated() -> None:
    model = copies_model(4)
    conv = model.get_submodule("0")
    assert isinstance(conv, nn.Conv2d)
    with torch.no_grad():
        conv.weight[0].zero_()  # channel 0 is always 0
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    h = feature_similarity(model, x, layer="0", bins=10)
    assert h.constant_channels == 1
    # 6 pairs: 3 with the constant channel (0), 3 among the copies (1)
    assert h.fractions[0] == pytest.approx(0.5)
    assert h.fractions[-1] == pytest.approx(0.5)


def test_resnet_layer3_histogram() -> None:
    model = small_resnet(2000)
    model.train()
    x = torch.randn(12, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    y = torch.zeros(12, dtype=torch.int64)
    loader = [(x[:5], y[:5]), (x[5:], y[5:])]
    h = feature_similarity(model, loader, max_images=8, bins=25)
    assert model.training  # mode restored
    assert h.layer == "layer3"
    assert h.channels == 64  # 256 * 0.25
    assert h.images == 8
    assert len(h.bin_edges) == 26 and h.bin_edges[0] == 0.0 and h.bin_edges[-1] == 1.0
    assert len(h.fractions) == 25
    assert sum(h.fractions) == pytest.approx(1.0)
    again = feature_similarity(model, (x[:8], y[:8]), bins=25)
    assert again == h  # deterministic for a given batch
    d = json.loads(json.dumps(h.as_dict()))
    assert d["fractions"] == list(h.fractions)


def test_unknown_layer_lists_valid_names() -> None:
    with pytest.raises(RPGConfigError, match="layer3"):
        feature_similarity(small_resnet(None), torch.randn(2, 1, 16, 16), layer="layer9")


@pytest.mark.parametrize(
    ("kwargs", "word"), [({"bins": 0}, "bins"), ({"max_images": 0}, "max_images")]
)
def test_bad_options(kwargs: dict, word: str) -> None:
    with pytest.raises(RPGConfigError, match=word):
        feature_similarity(copies_model(), torch.randn(2, 1, 8, 8), layer="0", **kwargs)


def test_bad_batch() -> None:
    with pytest.raises(RPGConfigError, match="loader_or_batch"):
        feature_similarity(copies_model(), ["not images"], layer="0")
    with pytest.raises(RPGConfigError, match="loader_or_batch"):
        feature_similarity(copies_model(), [], layer="0")


# --- the engine callback ----------------------------------------------------------------------
def _tiny_spec(arch: str = "resnet18") -> dict[str, Any]:
    return {
        "name": "sim",
        "model": {"arch": arch, "width": 0.125} if arch == "resnet18" else {"arch": arch},
        "data": {
            "dataset": "synthetic",
            "num_classes": 4,
            "num_train": 32,
            "num_val": 24,
            "image_size": 8,
        },
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.05},
    }


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One thread: on a shared 2-core machine two OpenMP threads are many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Keep:
    model: Any = None
    datasets: int = 0

    def on_datasets(self, data: Any) -> None:
        self.datasets += 1

    def on_train_end(self, result: Any, model: nn.Module) -> None:
        self.model = model


@pytest.mark.usefixtures("one_thread")
def test_the_callback_histograms_the_runs_own_validation_images() -> None:
    cb, keep = SimilarityCallback(images=20), _Keep()
    result = train(_tiny_spec(), callbacks=[keep, cb], step_interval_s=0)
    assert result.status == "completed" and keep.datasets == 1
    assert cb.histogram is not None and cb.histogram.layer == "layer3" and cb.histogram.images == 20
    # the same as the histogram of the trained model on the validation set loaded afresh
    data = load_datasets(parse_spec(_tiny_spec()).data)
    again = feature_similarity(keep.model, BatchLoader(data, "val", 20).epoch(0), max_images=20)
    assert cb.histogram == again


@pytest.mark.usefixtures("one_thread")
def test_a_stopped_run_gets_no_histogram() -> None:
    class StopNow:
        def should_stop(self) -> bool:
            return True

    cb = SimilarityCallback(images=8)
    result = train(_tiny_spec(), callbacks=[StopNow(), cb], step_interval_s=0)
    assert result.stopped and cb.histogram is None


@pytest.mark.usefixtures("one_thread")
def test_a_model_without_the_layer_gets_no_histogram() -> None:
    cb = SimilarityCallback(images=8, layer="no-such-layer")
    result = train(_tiny_spec(), callbacks=[cb], step_interval_s=0)
    assert result.status == "completed" and cb.histogram is None
