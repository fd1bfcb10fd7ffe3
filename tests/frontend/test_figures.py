"""Unit tests of the server-side figure builders and the ablation grouping (no browser)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from api.analysis import series_key_of
from frontend import figures
from frontend.routes import ablation_bars
from rpg_core.analysis.power_law import fit_power_law


def _series(arch: str, scope: str, sizes: list[int], fit: dict[str, Any] | None) -> dict[str, Any]:
    points = [
        {"experiment_id": i + 1, "params": p, "value": 1 - 0.9 * p**-0.25}
        for i, p in enumerate(sizes)
    ]
    return {"arch": arch, "scope": scope, "dataset": "digits", "points": points, "fit": fit}


FIT = {"a": 0.9, "b": 0.25, "r2": 0.99, "b_ci": [0.2, 0.3], "params_for": {"0.9": 6561.0}}
DATA = {
    "metric": "best_val_acc",
    "series": [
        _series("resnet18", "global", [1000, 2000, 4000], FIT),
        _series("resnet18", "plain", [11000], None),
        _series("resnet34", "global", [1000, 2000], None),
    ],
}


# the fitted law of the first series (its points lie on error = 0.9 * P^-0.25): its own
# predict draws the fit line
FITTED = DATA["series"][0]
LAWS = {
    series_key_of(FITTED): fit_power_law(
        [p["params"] for p in FITTED["points"]],
        [p["value"] for p in FITTED["points"]],
        bootstrap=0,
    )
}


def _traces(fig: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [t for t in fig["data"] if t["meta"]["role"] == role]


def test_power_law_figure_has_points_per_series_and_one_fit_line() -> None:
    fig = figures.power_law_figure(DATA, laws=LAWS)
    points = _traces(fig, "points")
    assert [len(t["x"]) for t in points] == [3, 1, 2]
    assert [t["customdata"] for t in points][0] == [1, 2, 3]
    fits = _traces(fig, "fit")
    assert len(fits) == 1  # neither the baseline nor an unfitted series gets a line
    xs, ys = fits[0]["x"], fits[0]["y"]
    assert xs[0] == pytest.approx(1000) and xs[-1] == pytest.approx(4000)
    assert ys[-1] == pytest.approx(1 - 0.9 * 4000**-0.25)
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert "b=0.250 [0.200, 0.300], R²=0.990" in points[0]["name"]
    assert points[1]["marker"]["symbol"] == "star" and "baseline" in points[1]["name"]
    assert "no fit" in points[2]["name"]


def test_power_law_figure_on_the_error_axis() -> None:
    fig = figures.power_law_figure(DATA, error=True, laws=LAWS)
    first = _traces(fig, "points")[0]
    assert first["y"][0] == pytest.approx(0.9 * 1000**-0.25)
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert _traces(fig, "fit")[0]["y"][0] == pytest.approx(0.9 * 1000**-0.25)


def test_power_law_table_formats_params_for_targets() -> None:
    rows = figures.power_law_table(DATA)
    assert rows[0]["params_for"] == {"0.9": "6.56k (extrapolated: 1.6× the largest run)"}
    assert rows[0]["a"] == 0.9
    assert rows[1]["plain"] and rows[2]["b"] is None


def test_similarity_and_curves_figures() -> None:
    h = figures.Histogram("run", [0.0, 0.5, 1.0], [0.25, 0.75])
    fig = figures.similarity_figure([h, h])
    assert len(fig["data"]) == 2 and fig["data"][0]["x"] == [0.25, 0.75]
    assert fig["layout"]["barmode"] == "overlay"
    curves = [
        figures.Curve("train_loss", [1, 2], [2.0, 1.0]),
        figures.Curve("val_acc", [1, 2], [0.5, 0.6]),
    ]
    fig = figures.training_curves_figure(curves)
    assert {t["name"]: t["xaxis"] for t in fig["data"]} == {"train_loss": "x", "val_acc": "x2"}


def _exp(status: str, acc: float | None, permute: bool, reflect: bool, rpg: bool = True) -> Any:
    spec = {"rpg": {"permute": permute, "reflect": reflect} if rpg else None}
    return SimpleNamespace(status=status, best_val_acc=acc, spec=spec)


def test_ablation_bars_group_by_permute_and_reflect() -> None:
    rows = [
        _exp("succeeded", 0.7, False, False),
        _exp("succeeded", 0.8, True, True),
        _exp("succeeded", 0.6, True, True),
        _exp("failed", None, True, False),
        _exp("succeeded", 0.99, True, True, rpg=False),  # plain baseline: not a bar
    ]
    bars = ablation_bars(rows)
    assert [b.label for b in bars] == ["permutation + reflection", "neither"]
    assert bars[0].mean == pytest.approx(0.7) and bars[0].n == 2 and bars[0].std > 0
    assert ablation_bars(rows[1:3]) == []  # one setting only: not an ablation


def _colours(fig: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        t["name"].split(":")[0].split(" (")[0]: (t["marker"]["color"], t["marker"]["symbol"])
        for t in _traces(fig, "points")
    }


def test_a_series_keeps_its_colour_when_another_is_added() -> None:
    before = _colours(figures.power_law_figure(DATA))
    more = {**DATA, "series": [_series("resnet10", "stage", [500, 900], None), *DATA["series"]]}
    after = _colours(figures.power_law_figure(more))
    assert all(after[k] == v for k, v in before.items())
    curves = [figures.Curve("train_loss", [1], [1.0]), figures.Curve("val_loss", [1], [1.2])]
    colour_of = {
        t["name"]: t["line"]["color"] for t in figures.training_curves_figure(curves)["data"]
    }
    curves.append(figures.Curve("val_top5", [1], [0.9]))
    again = {t["name"]: t["line"]["color"] for t in figures.training_curves_figure(curves)["data"]}
    assert all(again[k] == v for k, v in colour_of.items())


def test_the_fitted_constant_a_is_shown() -> None:
    name = _traces(figures.power_law_figure(DATA), "points")[0]["name"]
    assert "error = 0.9·P^−b, b=0.250" in name
    assert figures.power_law_table(DATA)[0]["a"] == 0.9


def test_params_for_a_target_say_how_far_they_extrapolate() -> None:
    sizes = [1000.0, 4000.0]
    assert figures.params_needed(2000, sizes) == "2k"
    assert figures.params_needed(12_000, sizes) == "12k (extrapolated: 3.0× the largest run)"
    far = figures.params_needed(297e9, sizes)
    assert far == "beyond 100× the largest run (4k): out of reach of this fit"
    # the cell: a law fitted to short runs "needs" 3.19e61 parameters; no digits
    exploded = figures.params_needed(3.19e61, sizes)
    assert exploded == far and not any(
        ch.isdigit() for ch in exploded.replace("100", "").replace("4k", "")
    )
    assert figures.params_needed(float("inf"), sizes) == "beyond 100× the largest run"
    assert figures.fmt_params(3.19e61) == "3e+61" and figures.fmt_params(1.5e12) == "1.5T"
    assert figures.params_needed(500, sizes) == "500 (below the smallest run, 1k: extrapolated)"
    assert figures.params_needed(None, sizes) is None


def test_loss_curves_are_on_a_log_axis_and_the_figure_has_no_second_title() -> None:
    curves = [
        figures.Curve("train_loss", [1, 2, 3], [1158.0, 2.0, 0.5]),
        figures.Curve("val_loss", [1, 2, 3], [8.0, 1.0, 0.6]),
        figures.Curve("val_acc", [1, 2, 3], [0.2, 0.5, 0.7]),
    ]
    fig = figures.training_curves_figure(curves)
    assert fig["layout"]["yaxis"]["type"] == "log"  # the loss subplot
    assert fig["layout"]["yaxis2"].get("type") != "log"
    assert "title" not in fig["layout"] or "Training curves" not in str(fig["layout"]["title"])
