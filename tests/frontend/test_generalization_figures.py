"""The generalization figures: the gap axis, the ID-vs-OOD scatter, a run's breakdown."""

from __future__ import annotations

from typing import Any

from frontend.figures import gap_figure
from frontend.figures_tradeoffs import ood_breakdown_figure, ood_scatter_figure, split_ood


def _series(scope: str, gaps: list[float]) -> dict[str, Any]:
    return {
        "arch": "resnet18",
        "scope": scope,
        "dataset": "digits",
        "fit": None,
        "excluded": [],
        "points": [
            {"experiment_id": i + 1, "params": 1000 * (i + 1), "accuracy": 0.8, "gap": g}
            for i, g in enumerate(gaps)
        ],
    }


def test_gap_figure_plots_the_gap_for_rpg_and_plain() -> None:
    data = {"quantity": "gap", "series": [_series("global", [0.05, 0.02]), _series("plain", [0.2])]}
    fig = gap_figure(data)
    points = [t for t in fig["data"] if t.get("meta", {}).get("role") == "points"]
    assert [t["y"] for t in points] == [[0.05, 0.02], [0.2]]
    assert points[1]["marker"]["symbol"] == "star"  # plain baselines stand apart
    assert "plain" in points[1]["name"]
    assert not [t for t in fig["data"] if t.get("meta", {}).get("role") == "fit"]
    assert "gap" in fig["layout"]["yaxis"]["title"]["text"]


def _point(i: int, scope: str, val: float, ood: float | None) -> dict[str, Any]:
    return {"experiment_id": i, "name": f"r{i}", "arch": "resnet18", "scope": scope,
            "backbone_params": 1000, "val_acc": val, "ood_acc": ood}  # fmt: skip


def test_scatter_separates_rpg_and_plain() -> None:
    pts = [_point(1, "global", 0.9, 0.6), _point(2, "plain", 0.92, 0.5),
           _point(3, "stage", 0.85, 0.55), _point(4, "plain", 0.8, None)]  # fmt: skip
    fig = ood_scatter_figure(pts)
    kinds = {t["meta"]["kind"]: t for t in fig["data"] if t.get("meta")}
    assert kinds["RPG"]["customdata"] == [1, 3] and kinds["RPG"]["y"] == [0.6, 0.55]
    assert kinds["plain"]["customdata"] == [2]  # a run without an OOD mean is not a point
    assert kinds["plain"]["marker"]["symbol"] == "star"


def test_breakdown_orders_severities_and_lists_folders() -> None:
    ood = {"occlusion@3": 0.5, "rotation@0": 0.9, "rotation@2": 0.6, "folder:objnet": 0.3}
    shifts, folders = split_ood(ood)
    assert shifts == {"occlusion": {3: 0.5}, "rotation": {0: 0.9, 2: 0.6}}
    assert folders == {"objnet": 0.3}
    fig = ood_breakdown_figure(ood, 0.9)
    assert fig["layout"]["xaxis"]["categoryarray"] == ["0", "2", "3", "folder objnet"]
    names = [t["name"] for t in fig["data"]]
    assert names == ["occlusion", "rotation", "folders"]
