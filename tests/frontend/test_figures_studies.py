"""The figures of issue 25: a study's trials in order (pruned marked, best so far) and a
power-law study's points numbered in the order its rule chose them."""

from __future__ import annotations

from typing import Any

from frontend.figures import _point_trace
from frontend.figures_studies import study_figure


def _trial(number: int, status: str, value: float | None, best: float, **kw: Any) -> dict[str, Any]:
    return {"number": number, "status": status, "value": value, "best_so_far": best,
            "params": {"train.lr": 0.01 * (number + 1)}, "intermediate": kw.get("iv", {})}  # fmt: skip


def test_the_study_figure_marks_pruned_trials_and_the_best_so_far() -> None:
    detail = {
        "objective": "acc",
        "direction": "maximize",
        "trials": [
            _trial(0, "succeeded", 0.6, 0.6),
            _trial(1, "pruned", None, 0.6, iv={"1": 0.3, "2": 0.35}),
            _trial(2, "succeeded", 0.7, 0.7),
        ],
    }
    fig = study_figure(detail)
    by_name = {t["name"]: t for t in fig["data"]}
    assert list(by_name["complete"]["x"]) == [0, 2]
    assert list(by_name["pruned (last evaluation)"]["y"]) == [0.35]  # its last evaluation
    assert list(by_name["best so far"]["y"]) == [0.6, 0.6, 0.7]


def test_a_power_law_studys_points_are_numbered_in_order() -> None:
    points = [{"experiment_id": 10 + i, "params": p, "value": 0.5, "trial": i}
              for i, p in enumerate([4000, 500, 1500])]  # fmt: skip
    sizes = [{"params": p["params"], "n": 1, "mean": 0.5, "min": 0.5, "max": 0.5, "std": 0.0,
              "experiment_ids": [p["experiment_id"]]} for p in sorted(points, key=lambda p: p["params"])]  # fmt: skip
    series = {"points": points, "sizes": sizes, "conditions_key": "k", "scope": "global",
              "arch": "resnet18", "dataset": "digits"}  # fmt: skip
    trace = _point_trace(series, 0, False, "law")
    assert trace.mode == "markers+text"
    assert list(trace.texttemplate) == ["#1", "#2", "#0"]  # by size; the numbers give the order
    tuned = _point_trace({**series, "tuned": True}, 0, False, "tuned")
    assert tuned.mode == "markers"  # a tuned series' points are best trials, not an order
