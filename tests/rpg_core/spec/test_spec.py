"""The experiment spec: defaults, recipes, validation messages, files, sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rpg_core import RPGConfigError
from rpg_core.spec import RECIPES, json_schema, load_spec, parse_spec, resolve_train
from rpg_core.spec.sweep import MAX_EXPERIMENTS, expand, load_sweep

ISSUE_EXAMPLE = """
name: r18-rpg-45k
model: {arch: resnet18, variant: cifar}
rpg: {ring_size: 45000, scope: global, permute: true, reflect: true, seed: 0}   # omit: plain
data: {dataset: digits}
train: {recipe: cifar, epochs: 15, batch_size: 128}
"""


def test_the_documented_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(ISSUE_EXAMPLE)
    spec = load_spec(path)
    assert spec.rpg is not None and spec.rpg.ring_size == 45000
    assert spec.task == "classification"
    hp = resolve_train(spec.train)
    assert hp["epochs"] == 15 and hp["batch_size"] == 128 and hp["lr"] == 0.1
    assert hp["milestones"] == [4, 9, 12]  # 60/120/160 of 200, scaled to 15 epochs


def test_recipes_are_the_papers() -> None:
    assert (
        RECIPES["cifar"]["milestones"] == [60, 120, 160]
        and RECIPES["cifar"]["weight_decay"] == 5e-4
    )
    assert RECIPES["imagenet"]["lr"] == 0.3 and RECIPES["imagenet"]["batch_size"] == 256
    full = resolve_train(parse_spec({"train": {"recipe": "imagenet"}}).train)
    assert full["milestones"] == [75, 150, 225] and full["weight_decay"] == 3e-5
    own = resolve_train(parse_spec({"train": {"epochs": 10, "milestones": [3], "lr": 0.5}}).train)
    assert own["milestones"] == [3] and own["lr"] == 0.5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rpg": {"ring_size": 0}}, "rpg.ring_size"),
        ({"rpg": {"ring_size": 1.5}}, "rpg.ring_size"),
        ({"rpg": {"ring_size": 10, "scope": "blocks"}}, "rpg.scope"),
        ({"model": {"arch": "vit"}}, "model.arch"),
        ({"data": {"dataset": "../etc"}}, "data.dataset"),
        ({"data": {"dataset": "imagefolder:../x"}}, "data.dataset"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"milestones": [5, 3]}}, "train"),
        ({"unknown": 1}, "unknown"),
        ({"name": "bad name!"}, "name"),
    ],
)
def test_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(RPGConfigError, match=rf"(^|; |invalid spec: ){field}"):
        parse_spec(data)


def test_float_count_from_json_is_an_int() -> None:
    spec = parse_spec({"rpg": {"ring_size": 45000.0}})
    assert (
        spec.rpg is not None and spec.rpg.ring_size == 45000 and isinstance(spec.rpg.ring_size, int)
    )


def test_schema_is_exported() -> None:
    schema = json_schema()
    assert set(schema["properties"]) >= {"name", "task", "model", "rpg", "data", "train", "tags"}


def test_sweep_expansion(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "name: s\nbase: {data: {dataset: digits}, rpg: {ring_size: 100}}\n"
        "grid: {rpg.ring_size: [100, 1000], model.arch: [resnet18, resnet34]}\n"
        "extra: [{name: plain, rpg: null}]\ntags: [t]\n"
    )
    specs = expand(load_sweep(path))
    assert len(specs) == 5
    assert {s.rpg.ring_size for s in specs if s.rpg} == {100, 1000}
    assert specs[-1].name == "s-plain" and specs[-1].rpg is None
    assert all(s.tags == ["t"] for s in specs)
    assert len({s.name for s in specs}) == 5


def test_sweep_errors() -> None:
    with pytest.raises(RPGConfigError, match="at most 1000"):
        expand(
            {
                "grid": {"rpg.seed": list(range(MAX_EXPERIMENTS + 1))},
                "base": {"rpg": {"ring_size": 5}},
            }
        )
    with pytest.raises(RPGConfigError, match=r"sweep experiment .*rpg.ring_size"):
        expand({"base": {"rpg": {"ring_size": 5}}, "grid": {"rpg.ring_size": [-1]}})
    with pytest.raises(RPGConfigError, match="grid.rpg.seed: give at least one value"):
        expand({"grid": {"rpg.seed": []}})


@pytest.mark.parametrize(
    ("spec", "field", "suggestion"),
    [
        ({"train": {"epoch": 3}}, "train.epoch", "epochs"),
        ({"rpg": {"ring_size": 10, "ring_sise": 3}}, "rpg.ring_sise", "ring_size"),
        ({"modle": {"arch": "resnet18"}}, "modle", "model"),
        ({"data": {"datset": "digits"}}, "data.datset", "dataset"),
    ],
)
def test_a_misspelled_field_suggests_the_closest_name(
    spec: dict[str, Any], field: str, suggestion: str
) -> None:
    with pytest.raises(RPGConfigError) as err:
        parse_spec(spec)
    assert f"{field}: Extra inputs are not permitted; did you mean {suggestion!r}?" in str(
        err.value
    )


def test_a_misspelled_sweep_field_suggests_the_closest_name() -> None:
    from rpg_core.spec.sweep import parse_sweep

    with pytest.raises(RPGConfigError, match="did you mean 'grid'"):
        parse_sweep({"grdi": {"rpg.ring_size": [1]}})


def test_the_default_recipe_is_short_and_the_papers_keep_their_names() -> None:
    hp = resolve_train(parse_spec({"train": {"epochs": 3}}).train)
    assert hp["schedule"] == "cosine" and hp["milestones"] == [] and hp["lr"] == 0.1
    assert hp["batch_size"] is None  # chosen from the data size by the engine
    assert hp["warmup_epochs"] == pytest.approx(0.3)  # the recipe's, under a tenth of 3 epochs
    assert resolve_train(parse_spec({"train": {"epochs": 2}}).train)["warmup_epochs"] == 0.2
    paper = resolve_train(parse_spec({"train": {"recipe": "paper-cifar"}}).train)
    assert paper["schedule"] == "step" and paper["milestones"] == [60, 120, 160]
    assert RECIPES["cifar"] is RECIPES["paper-cifar"]  # the old name still reads
    # milestones alone mean the step schedule
    own = resolve_train(parse_spec({"train": {"epochs": 6, "milestones": [4]}}).train)
    assert own["schedule"] == "step" and own["milestones"] == [4]
    adamw = resolve_train(parse_spec({"train": {"optimizer": "adamw"}}).train)
    assert adamw["lr"] == 2e-3 and adamw["weight_decay"] == 0.05


def test_auto_batch_size_gives_short_runs_enough_steps() -> None:
    from rpg_core.spec import auto_batch_size

    assert auto_batch_size(1437) == 16  # digits: 89 steps an epoch, the most it can have
    assert auto_batch_size(3000) == 16  # 187 steps (32 would give 93)
    assert auto_batch_size(3200) == 32  # 100 steps
    assert auto_batch_size(10_000) == 64  # 156 steps
    assert auto_batch_size(60_000) == 128


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"epochs": 1, "milestones": [1]}, "1-epoch run has no room"),
        ({"epochs": 5, "milestones": [2, 5]}, r"milestones \[5\] are not below epochs \(5\)"),
        ({"epochs": 3, "warmup_epochs": 3.0}, r"warmup_epochs \(3.0\) must be below epochs"),
        ({"schedule": "cosine", "milestones": [3]}, "milestones apply to schedule step only"),
        ({"schedule": "linear"}, "train.schedule"),
        ({"precise_bn": "sometimes"}, "train.precise_bn"),
    ],
)
def test_impossible_short_run_specs_are_refused_naming_the_field(train: dict, message: str) -> None:
    with pytest.raises(RPGConfigError, match=message) as err:
        parse_spec({"train": train})
    assert "train" in str(err.value)


def test_augmentation_is_off_for_short_runs_unless_asked() -> None:
    from rpg_core.spec import resolve_augment

    assert resolve_augment(parse_spec({"train": {"epochs": 3}})) is False
    assert resolve_augment(parse_spec({"train": {"epochs": 30}})) is True
    assert resolve_augment(parse_spec({"train": {"epochs": 3}, "data": {"augment": True}}))
    assert resolve_augment(parse_spec({"train": {"recipe": "paper-cifar"}})) is True


def test_sweep_size_is_counted_without_expanding(tmp_path: Path, capsys: Any) -> None:
    import json as _json
    import time as _time
    import tracemalloc

    from rpg_core.cli import main
    from rpg_core.spec.sweep import check_sweep_size, sweep_size

    grid = {f"k{i}": list(range(1000)) for i in range(4)}
    bomb = {"base": {"data": {"dataset": "digits"}}, "grid": grid, "extra": [{"name": "p"}]}
    assert sweep_size(bomb) == 10**12 + 1
    # the Python heap's peak during the call (a process-wide peak could hide the growth)
    tracemalloc.start()
    t = _time.perf_counter()
    try:
        with pytest.raises(RPGConfigError) as err:
            expand(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _time.perf_counter() - t < 1.0
    assert peak < 50 * 1024**2
    msg = str(err.value)
    assert "1000000000001 experiments" in msg and "at most 1000" in msg
    assert all(k in msg for k in grid)
    with pytest.raises(RPGConfigError, match="at most 5 are allowed"):
        check_sweep_size({"grid": {"rpg.seed": list(range(6))}}, limit=5)
    assert check_sweep_size({"grid": {"rpg.seed": list(range(5))}}, limit=5) == 5
    # the CLI: the same error, one line, exit status 2, nothing trained
    path = tmp_path / "bomb.json"
    path.write_text(_json.dumps(bomb))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert "at most 1000 are allowed" in capsys.readouterr().err
