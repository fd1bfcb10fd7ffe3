"""Structured L1 filter pruning to a budget (method prune-filters, issue 24): the budget is met
within one filter, the removed filters are whole (conv1 row, bn1 channel, conv2 column) and the
network computes what the narrowed one computes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from rpg_core.exceptions import RPGConfigError
from rpg_core.models import create_model
from rpg_core.rpg.params import count_params
from rpg_core.training.filter_pruning import filter_budget_range, live_filters, prune_filters
from rpg_core.training.global_pruning import nonzero_backbone, pruned_params
from rpg_core.training.pruning import _prune_block, prunable_blocks

from ..analysis._digits import one_thread

MODEL: dict[str, Any] = {"arch": "resnet18", "width": 0.125, "in_channels": 1, "num_classes": 10}


@pytest.mark.parametrize(("fraction", "rounds"), [(0.5, 1), (0.1, 3), (0.05, 2)])
def test_meets_the_budget_within_one_filter(fraction: float, rounds: int) -> None:
    torch.manual_seed(0)
    model = create_model({"model": MODEL})
    low, dense = filter_budget_range(model)
    budget = round(fraction * dense)
    assert low < budget < dense
    calls: list[int] = []

    def tune(net: nn.Module, r: int) -> dict[str, Any]:
        calls.append(r)  # the masks are on while fine-tuning: dead filters read as zero
        return {"round": r, "nonzero": nonzero_backbone(net)}

    report = prune_filters(model, budget, rounds=rounds, finetune=tune, input_size=(1, 32, 32))
    assert calls == list(range(1, rounds + 1)) and len(report.rounds) == rounds
    assert abs(report.nonzero_backbone - budget) <= report.filter_cost
    assert report.rounds[-1] == report.nonzero_backbone == nonzero_backbone(model)
    assert list(report.rounds) == sorted(report.rounds, reverse=True)
    assert pruned_params(model).backbone == report.nonzero_backbone
    assert report.macs_after is not None and report.macs_before is not None
    assert report.macs_after < report.macs_before
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not any(n.endswith(("_orig", "_mask")) for n in names)  # prune.remove ran
    json.dumps(report.as_dict())


def test_whole_filters_go_and_the_network_equals_the_narrowed_one() -> None:
    torch.manual_seed(1)
    model = create_model({"model": MODEL}).eval()
    _, dense = filter_budget_range(model)
    report = prune_filters(model, dense // 4, rounds=2)
    for name, block in prunable_blocks(model):
        live = live_filters(block)
        assert len(live) == report.kept[name] < report.channels[name]
        dead = torch.ones(block.conv1.out_channels, dtype=torch.bool)
        dead[live] = False
        assert not block.conv1.weight[dead].any() and not block.conv2.weight[:, dead].any()
        assert not block.bn1.weight[dead].any() and not block.bn1.bias[dead].any()
    narrowed = create_model({"model": MODEL}).eval()
    narrowed.load_state_dict(model.state_dict())
    narrowed.__dict__.pop("rpg_spec", None)
    for name, block in prunable_blocks(narrowed):
        _prune_block(block, report.kept[name])  # cut the dead filters out
    narrowed.eval()  # the new bn1 modules too
    assert count_params(narrowed).backbone == report.nonzero_backbone
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), narrowed(x), rtol=1e-5, atol=1e-5)


def test_budget_and_network_errors() -> None:
    model = create_model({"model": MODEL})
    low, dense = filter_budget_range(model)
    with pytest.raises(
        RPGConfigError, match=rf"method\.budget: prune-filters keeps {low}\.\.{dense}"
    ):
        prune_filters(model, low - 1)
    with pytest.raises(RPGConfigError, match=rf"ask for at least {low}, or use method prune-gl"):
        prune_filters(model, low - 1)
    with pytest.raises(RPGConfigError, match=rf"ask for at most {dense}$"):
        prune_filters(model, dense + 1)
    rpg = create_model({"model": MODEL, "rpg": {"ring_size": 1000}})
    with pytest.raises(RPGConfigError, match="prunes a plain network"):
        prune_filters(rpg, 100)


def test_a_prune_filters_run_trains_prunes_and_records_the_cost() -> None:
    """train() with method prune-filters: the dense epochs, then one record per round; the
    result's backbone is within one filter of the budget, and the cost counts every epoch."""
    from rpg_core.training.engine import train

    kept: list[nn.Module] = []

    class Keep:
        def on_train_end(self, _result: object, model: nn.Module) -> None:
            kept.append(model)

    spec = {
        "name": "pf",
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {"dataset": "digits", "image_size": 8, "augment": False, "train_subset": 256},
        "train": {"epochs": 1, "batch_size": 64},
        "method": {"name": "prune-filters", "budget": 0.2, "rounds": 2, "finetune_epochs": 1},
    }
    with one_thread():
        result = train(spec, callbacks=[Keep()])
    assert result.status == "completed"
    budget = round(0.2 * 174_336)
    assert result.prune is not None and result.prune["method"] == "prune-filters"
    assert abs(result.params["backbone"] - budget) <= result.prune["filter_cost"]
    (model,) = kept
    assert nonzero_backbone(model) == result.params["backbone"]
    assert [r.get("prune_round") for r in result.history] == [None, 1, 2]
    assert result.best_epoch in (2, 3)
    assert result.method == "prune-filters" and result.budget == budget
    assert result.backbone == result.params["backbone"]
    assert result.total_epochs == 3  # 1 dense + 2 rounds x 1 fine-tuning epoch
    assert result.total_wall_s is not None and result.total_wall_s > 0


def test_an_unreachable_budget_is_refused_before_training() -> None:
    from rpg_core.training.engine import train

    spec = {
        "name": "pf-low",
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {"dataset": "digits", "image_size": 8, "augment": False, "train_subset": 64},
        "train": {"epochs": 50, "batch_size": 64},
        "method": {"name": "prune-filters", "budget": 100},
    }
    low = filter_budget_range(create_model({"model": MODEL}))[0]
    with pytest.raises(RPGConfigError, match=rf"method\.budget: 100 .* prune-filters .*{low}"):
        train(spec)
    from rpg_core.models.budget import resolve_method  # where the model is built (and the API)
    from rpg_core.models.factory import backbone_counter, filter_floor
    from rpg_core.spec import parse_spec

    with pytest.raises(RPGConfigError, match=rf"ask for at least {low}, or use method prune-gl"):
        resolve_method(parse_spec(spec), backbone_counter(10, 1), filter_floor)
    ok = parse_spec({**spec, "method": {"name": "prune-filters", "budget": low}})
    assert resolve_method(ok, backbone_counter(10, 1), filter_floor).budget == low
