"""Global unstructured L1 pruning to a budget (method prune-global, issue 24): the budget is met
exactly, the weights are plain tensors with zeros, and the counted parameters are the non-zero
backbone weights."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from rpg_core.exceptions import RPGConfigError
from rpg_core.models import create_model
from rpg_core.rpg.params import count_params
from rpg_core.training.global_pruning import (
    backbone_weights,
    nonzero_backbone,
    prune_global,
    pruned_params,
    round_targets,
)
from rpg_core.training.pruning import evaluate, finetune

from ..analysis._digits import Epochs, digits, one_thread

MODEL: dict[str, Any] = {"arch": "resnet18", "width": 0.125, "in_channels": 1, "num_classes": 10}


def test_round_targets_are_geometric_to_the_budget() -> None:
    assert round_targets(1000, 10, 2) == [100, 10]
    assert round_targets(1000, 10, 1) == [10]
    t = round_targets(174_336, 5_000, 4)
    assert t[-1] == 5_000 and all(a > b for a, b in zip(t, t[1:], strict=False))


def test_prunes_to_the_budget_exactly_after_training() -> None:
    xt, yt, xv, yv = digits()
    train, val = Epochs(xt[:640], yt[:640]), [(xv, yv)]
    torch.manual_seed(0)
    with one_thread():
        model = create_model({"model": MODEL})
        finetune(model, train, epochs=2, lr=0.05)
        before = evaluate(model, val)
        dense = count_params(model).backbone
        budget = dense // 10

        def tune(net: nn.Module, r: int) -> dict[str, Any]:
            losses = finetune(net, train, epochs=1, lr=0.02)
            return {"round": r, "loss": losses[-1], "val_acc": evaluate(net, val)}

        report = prune_global(model, budget, rounds=2, finetune=tune)
    assert report.rounds[-1] == budget and report.nonzero_backbone == budget
    assert report.rounds[0] > budget and len(report.round_metrics) == 2
    # prune.remove: plain parameters, no masks or _orig left; the zeros are in the weights
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not any(n.endswith(("_orig", "_mask")) for n in names)
    assert all(isinstance(m.weight, nn.Parameter) for m, _ in backbone_weights(model))
    # the counted parameters are the non-zero learned values
    counts = pruned_params(model)
    nonzero = sum(int(m.weight.count_nonzero()) for m, _ in backbone_weights(model))
    assert counts.backbone == nonzero == budget == nonzero_backbone(model)
    assert counts.total == count_params(model).total - (dense - budget)
    # the pruned network still classifies (fine-tuned), well above chance
    after = evaluate(model, val)
    assert before > 0.5 and after > 0.5, (before, after)
    json.dumps(report.as_dict())


def test_one_round_keeps_the_largest_magnitudes_over_the_whole_backbone() -> None:
    torch.manual_seed(1)
    model = create_model({"model": MODEL})
    with torch.no_grad():  # layers of different scales: a global threshold prunes them unevenly
        for i, (m, _) in enumerate(backbone_weights(model)):
            m.weight.mul_(1 + i % 3)
    before = torch.cat([m.weight.detach().abs().flatten() for m, _ in backbone_weights(model)])
    budget = 3_000
    prune_global(model, budget, rounds=1)
    after = torch.cat([m.weight.detach().flatten() for m, _ in backbone_weights(model)])
    kept = after != 0
    assert int(kept.sum()) == budget
    assert before[kept].min() >= before[~kept].max()  # L1: the largest |w| anywhere survive
    sparsity = [float((m.weight == 0).float().mean()) for m, _ in backbone_weights(model)]
    assert max(sparsity) - min(sparsity) > 0.1  # global, not the same share per layer


def test_budget_and_network_errors() -> None:
    model = create_model({"model": MODEL})
    dense = count_params(model).backbone
    with pytest.raises(RPGConfigError, match=rf"method\.budget: prune-global keeps 1\.\.{dense}"):
        prune_global(model, dense + 1)
    with pytest.raises(RPGConfigError, match=r"method\.budget"):
        prune_global(model, 0)
    rpg = create_model({"model": MODEL, "rpg": {"ring_size": 1000}})
    with pytest.raises(RPGConfigError, match="prunes a plain network"):
        prune_global(rpg, 100)


def test_a_prune_global_run_trains_prunes_and_counts_the_non_zero() -> None:
    """train() with method prune-global: the dense epochs, then one record per round; the
    result's backbone is the budget, its metrics the pruned network's."""
    from rpg_core.training.engine import train

    kept: list[nn.Module] = []

    class Keep:
        def on_train_end(self, _result: object, model: nn.Module) -> None:
            kept.append(model)

    spec = {
        "name": "pg",
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {"dataset": "digits", "image_size": 8, "augment": False, "train_subset": 256},
        "train": {"epochs": 1, "batch_size": 64},
        "method": {"name": "prune-global", "budget": 0.05, "rounds": 2, "finetune_epochs": 1},
    }
    with one_thread():
        result = train(spec, callbacks=[Keep()])
    assert result.status == "completed"
    dense = 174_336
    budget = round(0.05 * dense)
    assert result.params["backbone"] == budget
    (model,) = kept
    assert nonzero_backbone(model) == budget
    assert [r.get("prune_round") for r in result.history] == [None, 1, 2]
    assert result.history[-1]["backbone_nonzero"] == budget
    assert result.final_val_acc == result.history[-1]["val_acc"]
    assert result.best_epoch in (2, 3)  # a pruned round, not the dense epoch
    assert result.prune is not None and result.prune["nonzero_backbone"] == budget
    assert result.prune["kept_per_round"][-1] == budget


def test_a_sweeps_pruning_runs_train_their_dense_network_once(tmp_path: Any) -> None:
    """Issue 24: "never train the same dense network twice in one sweep": the second run of the
    same dense spec (another budget, another pruning method) starts from the first's dense
    network in the dense cache, trains no dense epoch, and still counts its cost."""
    from rpg_core.spec import parse_spec
    from rpg_core.training.engine import dense_key, train

    dense_epochs: list[str] = []
    reused: list[tuple[str, int]] = []

    class Count:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_epoch_end(self, _epoch: int, record: dict[str, Any]) -> None:
            if "prune_round" not in record:
                dense_epochs.append(self.name)

        def on_dense_reused(self, epochs: int) -> None:
            reused.append((self.name, epochs))

    base = {
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {"dataset": "digits", "image_size": 8, "augment": False, "train_subset": 256},
        "train": {"epochs": 1, "batch_size": 64},
    }
    specs = [
        {**base, "name": "a", "method": {"name": "prune-global", "budget": 0.05, "rounds": 1}},
        {**base, "name": "b", "method": {"name": "prune-global", "budget": 0.2, "rounds": 1}},
        {**base, "name": "c", "method": {"name": "prune-filters", "budget": 0.5, "rounds": 1}},
    ]
    assert len({dense_key(parse_spec(s)) for s in specs}) == 1
    other = {**specs[0], "train": {**base["train"], "seed": 1}}
    assert dense_key(parse_spec(other)) != dense_key(parse_spec(specs[0]))  # another network
    cache = tmp_path / "dense"
    with one_thread():
        results = [train(s, callbacks=[Count(s["name"])], dense_cache=cache) for s in specs]
    assert dense_epochs == ["a"]  # trained once, by the first run
    assert [r.dense_reused for r in results] == [False, True, True]
    assert reused == [("b", 1), ("c", 1)]  # the callbacks were told, with the dense epochs
    first_dense = results[0].history[0]
    for r in results[1:]:
        assert r.history[0] == first_dense  # the same dense epoch, its record carried along
        assert r.total_epochs == results[0].total_epochs  # the dense epoch is still its cost
