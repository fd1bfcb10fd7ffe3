"""Unit tests of the sweep figure of accuracy against inference time (paper Table 1)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from frontend import figures_tradeoffs
from frontend.routes_tradeoffs import speed_group, speed_points


def _exp(i: int, status: str, acc: float | None, spec: dict[str, Any]) -> Any:
    return SimpleNamespace(
        id=i, name=f"run{i}", status=status, best_val_acc=acc, spec=spec, backbone_params=100 * i,
        task="classification", primary_value=acc,
    )  # fmt: skip


def _rec(mode: str) -> dict[str, Any]:
    return {"model": {"arch": "mdeq", "recurrence": {"mode": mode}}, "rpg": None}


def test_points_are_grouped_by_recurrence_mode_and_need_a_stored_time() -> None:
    rows = [
        _exp(1, "succeeded", 0.8, _rec("rpg")),
        _exp(2, "succeeded", 0.7, _rec("equilibrium")),
        _exp(3, "succeeded", 0.9, {"model": {"arch": "resnet18"}, "rpg": {"ring_size": 10}}),
        _exp(4, "succeeded", 0.6, {"model": {"arch": "resnet18"}, "rpg": None}),
        _exp(5, "failed", None, _rec("shared")),  # not finished: no point
        _exp(6, "succeeded", 0.5, _rec("shared")),  # a run from before the time was stored
    ]
    results = {1: {"inference_ms_per_image": 0.2}, 2: {"inference_ms_per_image": 3}, 3: {}}
    results |= {4: {"inference_ms_per_image": 0.1}, 5: {"inference_ms_per_image": 1.0}, 6: {}}
    points = speed_points(rows, results)
    assert [(p.experiment_id, p.group, p.ms_per_image) for p in points] == [
        (1, "rpg", 0.2),
        (2, "equilibrium", 3),
        (4, "plain", 0.1),
    ]
    assert speed_group(rows[2].spec) == "rpg"
    own = {"model": {"recurrence": {"mode": "shared", "norms": "per_application"}}}
    assert speed_group(own) == "shared, own norms"
    fig = figures_tradeoffs.speed_figure(points, "t")
    traces = {t["meta"]["group"]: t for t in fig["data"]}
    assert set(traces) == {"rpg", "equilibrium", "plain"}
    assert traces["equilibrium"]["x"] == [3] and traces["equilibrium"]["y"] == [0.7]
    assert fig["layout"]["xaxis"]["type"] == "log"
    # a group keeps its colour whatever else the sweep holds
    alone = figures_tradeoffs.speed_figure([p for p in points if p.group == "rpg"], "t")
    assert alone["data"][0]["marker"]["color"] == traces["rpg"]["marker"]["color"]
