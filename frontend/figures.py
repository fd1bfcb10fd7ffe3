"""Plotly figure builders (server-side): each returns a JSON-ready figure dict.

Colours follow the Okabe-Ito palette (colour-blind safe); series also differ by marker symbol,
so no information is carried by colour alone.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rpg_core.catalog.tasks import DEFAULT_TASK, task_info

# plotly (and narwhals under it) looks these modules up in sys.modules without the import lock
# (``get_module(name, should_load=False)``): a request thread that serialises a figure while
# another thread is importing one of them (a model-info request loading torch, which loads
# numpy and PIL) gets the half-initialised module and fails with "partially initialized module
# 'numpy' has no attribute 'ndarray'". Importing them here, when the app is built and before
# any request thread runs, closes that race. One not installed cannot be imported by anyone.
PLOTLY_PROBED_MODULES = ("numpy", "PIL.Image")
for _name in PLOTLY_PROBED_MODULES:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass

OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "pentagon")
PLAIN_SCOPE = "plain"
FIT_SAMPLES = 64
# a power law's x axis (the API's ?x=): backbone parameters, or the model file's bytes
X_TITLES = {"params": "backbone parameters", "bytes": "model file bytes"}
AXIS: dict[str, Any] = {
    "showline": True,
    "linecolor": "#444444",
    "ticks": "outside",
    "gridcolor": "#e6e6e6",
    "zeroline": False,
}
# No plotly template: its JSON (8 kB per figure) slows plotly.js's first render noticeably.
LAYOUT: dict[str, Any] = {
    "template": "none",
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "colorway": list(OKABE_ITO),
    "margin": {"l": 64, "r": 24, "t": 48, "b": 56},
    "font": {"size": 14, "family": "system-ui, sans-serif", "color": "#1b1b1b"},
    "legend": {"orientation": "v"},
    "hovermode": "closest",
}


def colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def slot(key: str) -> int:
    """A stable palette slot for a series key: a series keeps its colour and marker when
    other series are added or removed (a hash, not its position)."""
    return zlib.crc32(key.encode()) % len(OKABE_ITO)


def series_key(series: Mapping[str, Any]) -> str:
    """A series' name: its label (arch, scope, dataset and what sets it apart from other
    series of the same ones), else built from those."""
    if series.get("label"):
        return str(series["label"])
    key = f"{series['arch']} · {series['scope']} · {series['dataset']}"
    if series.get("sharing"):
        key += f" · sharing {series['sharing']} · {series.get('stacks')} stacks"
    return key


def _slot_key(series: Mapping[str, Any]) -> str:
    """What a series' colour and marker follow: its conditions key (stable as series come
    and go), else its name."""
    return str(series.get("conditions_key") or series_key(series))


def is_plain(series: Mapping[str, Any]) -> bool:
    """A plain-network baseline (drawn as stars, not fitted); a stacked model is never one,
    nor runs of a spec's ``method`` (``width``: plain networks made narrower to a budget are
    a method's series, fitted like the others)."""
    return (
        series["scope"] == PLAIN_SCOPE
        and not series.get("sharing")
        and "method.name" not in (series.get("conditions") or {})
    )


def _series_slot(series: Mapping[str, Any]) -> int:
    """A series' palette slot: the hash of its key (:func:`slot`); runs of a spec's ``method``
    take their method's slot (or the one 4 on, by the hash), so two methods never share a
    colour and marker."""
    from rpg_core.catalog.methods import METHODS

    method = series.get("method")
    order = list(METHODS)
    if "method.name" in (series.get("conditions") or {}) and method in order:
        half = len(OKABE_ITO) // 2
        return (order.index(method) % half) + half * (slot(_slot_key(series)) % 2)
    return slot(_slot_key(series))


def _metric(data: Mapping[str, Any]) -> Any:
    """The MetricInfo of a power-law response (its direction's one owner)."""
    from api.analysis import metric_of

    return metric_of(str(data.get("task", DEFAULT_TASK)), str(data.get("metric", "acc")))


def _task(data: Mapping[str, Any]) -> Any:
    """The TaskInfo of a power-law response."""
    return task_info(str(data.get("task", DEFAULT_TASK)))


def metric_titles(data: Mapping[str, Any], error: bool) -> tuple[str, str]:
    """(figure title, y axis title) of a power-law response: the metric's label, what is
    fitted and which way is better."""
    metric = str(data.get("metric", "best_val_acc"))
    hib = _metric(data).higher_is_better
    if metric in task_info(str(data.get("task", DEFAULT_TASK))).metric_columns:
        name = metric.replace("_", " ")
        if error:
            return "Error vs backbone parameters", f"1 − {name}"
        return "Accuracy vs backbone parameters", name
    label = str(data.get("label") or metric)
    unit = f" ({data['unit']})" if data.get("unit") else ""
    if error:
        y = f"error (1 − {label}), lower is better" if hib else f"{label}{unit}, lower is better"
        return f"{'Error' if hib else label} vs backbone parameters (fitted: {y.split(',')[0]})", y
    return (
        f"{label} vs backbone parameters",
        f"{label}{unit}, {'higher' if hib else 'lower'} is better",
    )


@functools.cache
def warm() -> None:
    """Build and serialise one small figure of the kinds the pages draw, once per process:
    plotly loads its validators lazily, on a figure's first use (0.1 s: the first power-law
    figure of a fresh server paid it). ``frontend.mount`` calls it when the app is built."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[1, 2],
            y=[0.5, 0.6],
            mode="markers",
            customdata=[1, 2],
            text=["a", "b"],
            error_y={"type": "data", "array": [0.1, 0.1], "arrayminus": [0.1, 0.1]},
            marker={"color": OKABE_ITO[0], "symbol": SYMBOLS[0], "size": 9},
            hovertemplate="%{text}",
            meta={"role": "points"},
        )
    )
    fig.add_trace(go.Scatter(x=[1, 2], y=[0.5, 0.6], mode="lines", line={"dash": "dash"}))
    fig.update_layout(**LAYOUT, xaxis={"type": "log", "title": {"text": "x"}}, yaxis={})
    fig.add_hline(y=0)
    to_dict(fig)


def to_dict(fig: go.Figure) -> dict[str, Any]:
    """The figure as plain JSON types (numpy arrays become lists), with our axis style."""
    fig.update_xaxes(**AXIS)
    fig.update_yaxes(**AXIS)
    out: dict[str, Any] = json.loads(fig.to_json())
    return out


# ----------------------------------------------------------------------------- power law


def fmt_params(n: float) -> str:
    """A parameter count for a person (rpg_core.analysis.readable: one formatter everywhere)."""
    from rpg_core.analysis.readable import params_text

    return params_text(n)


def fit_label(series: Mapping[str, Any]) -> str:
    """The legend text of a series: its key and, when fitted, b with its CI and R^2."""
    key = series_key(series)
    fit = series.get("fit")
    if is_plain(series):
        return f"{key} (plain baseline)"
    if not fit:
        return f"{key} (no fit: {series.get('fit_error') or 'fewer than 3 sizes'})"
    ci = fit.get("b_ci")
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and len(ci) == 2 else ""
    quantity = series.get("fitted") or "error"
    return f"{key}: {quantity} = {fit['a']:.3g}·P^−b, b={fit['b']:.3f}{ci_text}, R²={fit['r2']:.3f}"


def _fit_curve(law: Any, params: Sequence[float], error: bool, metric: Any) -> tuple[list, list]:
    """The law's own prediction (``law.predict``: the metric at a parameter count) over the
    range of the runs, on a log grid."""
    lo, hi = math.log10(min(params)), math.log10(max(params))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.1, hi + 0.1
    xs = [10 ** (lo + (hi - lo) * i / (FIT_SAMPLES - 1)) for i in range(FIT_SAMPLES)]
    values = [float(v) for v in law.predict(xs)]
    return xs, [metric.as_error(v) for v in values] if error else values


def _sizes(series: Mapping[str, Any], gap: bool) -> list[Mapping[str, Any]]:
    """The series' points by size (mean and spread of its replicates)."""
    sizes = series.get("sizes")
    if sizes:
        return list(sizes)
    return [
        {
            "params": p["params"],
            "n": 1,
            "mean": p["gap"] if gap else p["value"],
            "min": p["gap"] if gap else p["value"],
            "max": p["gap"] if gap else p["value"],
            "experiment_ids": [p["experiment_id"]],
        }
        for p in series["points"]
    ]


def _point_trace(
    series: Mapping[str, Any],
    i: int,
    error: bool,
    name: str,
    gap: bool = False,
    metric: Any = None,
    what: str = "",
    x: str = "params",
) -> go.Scatter:
    """One marker per size at the mean of its replicates, the bar spanning their min and max
    (a size run once has none); hover names the runs, a click opens the first."""
    plain = is_plain(series)
    c = _series_slot(series)

    def y(v: float) -> float:
        return metric.as_error(v) if error and metric is not None and not gap else v

    sizes = _sizes(series, gap)
    means = [y(s["mean"]) for s in sizes]
    lo = [y(s["min"]) for s in sizes]
    hi = [y(s["max"]) for s in sizes]
    up = [max(a, b) - m for a, b, m in zip(lo, hi, means, strict=True)]
    down = [m - min(a, b) for a, b, m in zip(lo, hi, means, strict=True)]
    runs = [
        (f"mean of {s['n']} runs (" if s["n"] > 1 else "run (")
        + ", ".join(f"#{e}" for e in s["experiment_ids"][:8])
        + (", …" if len(s["experiment_ids"]) > 8 else "")
        + ")"
        + (f", range {s['min']:.4g} to {s['max']:.4g}" if s["n"] > 1 else "")
        for s in sizes
    ]
    label = what or ("train−val gap" if gap else "error" if error else "accuracy")
    x_unit = "model file bytes" if x == "bytes" else "backbone params"
    # a power-law study's points are its trials: numbered in the order the rule chose them
    trial = {p["experiment_id"]: p.get("trial") for p in series.get("points") or []}
    numbered = not series.get("tuned") and any(v is not None for v in trial.values())
    order = [
        ", ".join(f"#{trial[e]}" for e in s["experiment_ids"] if trial.get(e) is not None)
        for s in sizes
    ]
    return go.Scatter(
        x=[s["params"] for s in sizes],
        y=means,
        mode="markers+text" if numbered else "markers",
        texttemplate=order if numbered else None,
        textposition="top center",
        name=name,
        legendgroup=f"s{i}",
        customdata=[s["experiment_ids"][0] for s in sizes],
        text=runs,
        error_y=(
            {
                "type": "data",
                "symmetric": False,
                "array": up,
                "arrayminus": down,
                "visible": True,
                "color": colour(c),
                "thickness": 1.5,
                "width": 4,
            }
            if any(s["n"] > 1 for s in sizes)
            else None
        ),
        marker={
            "color": colour(c),
            "symbol": "star" if plain else SYMBOLS[c % len(SYMBOLS)],
            "size": 16 if plain else 9,
            **({"line": {"width": 1, "color": "#000000"}} if plain else {}),
        },
        hovertemplate=(
            "%{text}<br>%{x:,} "
            + x_unit
            + "<br>"
            + label
            + " %{y:.4f}<extra>"
            + series_key(series)[:60]
            + "</extra>"
        ),
        meta={"role": "points", "series": i, "conditions_key": series.get("conditions_key")},
    )


def _excluded_trace(points: Sequence[Mapping[str, Any]], error: bool, metric: Any) -> go.Scatter:
    """Runs the guard rails flagged: shown hollow and grey, not fitted."""
    return go.Scatter(
        x=[p["params"] for p in points],
        y=[metric.as_error(p["value"]) if error else p["value"] for p in points],
        mode="markers",
        name="flagged (diverged or near chance), not fitted",
        customdata=[p["experiment_id"] for p in points],
        text=[", ".join(p.get("flags") or []) for p in points],
        marker={"color": "rgba(0,0,0,0)", "size": 10, "line": {"width": 1.5, "color": "#888888"}},
        hovertemplate="run %{customdata}<br>%{x:,} backbone params<br>%{y:.4f}<br>"
        "flagged: %{text}<extra></extra>",
        meta={"role": "excluded"},
    )


def _fit_trace(series: Mapping[str, Any], i: int, error: bool, law: Any, metric: Any) -> go.Scatter:
    xs, ys = _fit_curve(law, [p["params"] for p in series["points"]], error, metric)
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        name="fit",
        legendgroup=f"s{i}",
        showlegend=False,
        line={"color": colour(_series_slot(series)), "width": 2, "dash": "dash"},
        hoverinfo="skip",
        meta={"role": "fit", "series": i, "conditions_key": series.get("conditions_key")},
    )


def power_law_figure(
    data: Mapping[str, Any],
    error: bool = False,
    laws: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metric (or its error) against backbone parameters on a log x axis, one series per
    set of conditions with its fitted power law; each size at the mean of its replicates with
    their range; plain networks as star markers.

    ``data`` is the analysis response (``api.analysis``); ``laws`` its fitted laws by series
    key (``api.analysis.series_key_of``), whose own ``predict`` draws each fit's curve. A gap
    response (``quantity="gap"``) is drawn by :func:`gap_figure`."""
    if data.get("quantity") == "gap":
        return gap_figure(data)
    from api.analysis import series_key_of

    fig = go.Figure()
    laws = laws or {}
    metric = _metric(data)
    title, y_title = metric_titles(data, error)
    what = "" if str(data.get("metric")) in _task(data).metric_columns else y_title
    for i, series in enumerate(data.get("series", [])):
        if not series["points"]:
            continue
        label = fit_label({**series, "fitted": data.get("fitted")})
        fig.add_trace(
            _point_trace(series, i, error, label, metric=metric, what=what, x=str(data.get("x")))
        )
        law = laws.get(series_key_of(series))
        if series.get("fit") and law is not None and not is_plain(series):
            fig.add_trace(_fit_trace(series, i, error, law, metric))
    excluded = [p for s in data.get("series", []) for p in s.get("excluded") or []]
    if excluded:
        fig.add_trace(_excluded_trace(excluded, error, metric))
    x_title = X_TITLES.get(str(data.get("x")), X_TITLES["params"])
    fig.update_layout(
        **{**LAYOUT, "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}},
        title=title.replace("backbone parameters", x_title),
        xaxis={"type": "log", "title": {"text": f"{x_title} (log scale)", "standoff": 4}},
        yaxis={"title": y_title},
    )
    if error:
        fig.update_yaxes(type="log")
    return to_dict(fig)


def gap_figure(data: Mapping[str, Any]) -> dict[str, Any]:
    """The train-validation gap against backbone parameters (the paper's Table 6a), one series
    per set of conditions, plain networks as stars beside the RPG ones; no fit."""
    fig = go.Figure()
    for i, series in enumerate(data.get("series", [])):
        if series["points"]:
            label = series_key(series) + (" (plain)" if is_plain(series) else "")
            fig.add_trace(_point_trace(series, i, False, label, gap=True, x=str(data.get("x"))))
    fig.add_hline(y=0, line={"color": "#888888", "width": 1})
    x_title = X_TITLES.get(str(data.get("x")), X_TITLES["params"])
    fig.update_layout(
        **{**LAYOUT, "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}},
        title=f"Train−validation gap vs {x_title} (lower: less over-fitting)",
        xaxis={"type": "log", "title": {"text": f"{x_title} (log scale)", "standoff": 4}},
        yaxis={"title": "train−val gap (train acc − final val acc)"},
    )
    return to_dict(fig)


def params_needed(v: float | None, params: Sequence[float]) -> str | None:
    """The params a fit predicts for a target, saying when (and how far) it extrapolates
    (rpg_core.analysis.readable: one formatter for the page, the API's strings and the CLI)."""
    from rpg_core.analysis.readable import params_needed_text

    return params_needed_text(v, params)


def power_law_table(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per series: its conditions in words, the fit's numbers (a and b of
    error = a·P^−b, its CI, R²) and the params predicted for each target, marked when the fit
    extrapolates beyond its runs."""
    rows = []
    for s in data.get("series", []):
        fit = s.get("fit") or {}
        sizes = [float(p["params"]) for p in s["points"]]
        rows.append(
            {
                "series": series_key(s),
                "method": s.get("method"),
                "conditions_key": s.get("conditions_key"),
                "description": s.get("description", ""),
                "points": len(s["points"]),
                "sizes": len({p["params"] for p in s["points"]}),
                "a": fit.get("a"),
                "b": fit.get("b"),
                "b_ci": fit.get("b_ci"),
                "r2": fit.get("r2"),
                "params_for": {
                    k: params_needed(v, sizes) for k, v in (fit.get("params_for") or {}).items()
                },
                "plain": is_plain(s),
                "fit_error": s.get("fit_error"),
            }
        )
    return rows


# ----------------------------------------------------------------------------- training curves


@dataclass(frozen=True)
class Curve:
    name: str
    epochs: list[int]
    values: list[float]


CURVE_SLOTS = {"train_loss": 0, "val_loss": 1, "train_acc": 0, "val_acc": 1, "val_top5": 2}


def curve_slot(name: str) -> int:
    """A fixed colour and marker per metric name (adding a metric changes no other colour)."""
    return CURVE_SLOTS.get(name, slot(name))


def _metric_label(key: str) -> str:
    """A task metric's label with its direction: ``PCKh@0.5 (higher is better)``."""
    from rpg_core.catalog.tasks import metric_info
    from rpg_core.exceptions import RPGConfigError

    try:
        m = metric_info(key)
    except RPGConfigError:  # an unknown key: shown as it is
        return key
    return f"{m.label} ({m.direction} is better)"


def training_curves_figure(curves: Sequence[Curve]) -> dict[str, Any]:
    """Loss (left, log scale: one diverged epoch does not flatten the rest) and accuracy
    (right) per epoch; train solid, val dashed. The page's heading is its title."""
    metrics = sorted({c.name.removeprefix("val_") for c in curves if "loss" not in c.name})
    accuracy = all("acc" in m or "top5" in m for m in metrics)
    right = "accuracy" if accuracy else ", ".join(_metric_label(m) for m in metrics)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (log scale)", right))
    for c in sorted(curves, key=lambda c: c.name):
        col = 1 if "loss" in c.name else 2
        i = curve_slot(c.name)
        fig.add_trace(
            go.Scatter(
                x=c.epochs,
                y=c.values,
                mode="lines+markers",
                name=c.name,
                line={"color": colour(i), "dash": "dash" if c.name.startswith("val") else "solid"},
                marker={"symbol": SYMBOLS[i % len(SYMBOLS)]},
            ),
            row=1,
            col=col,
        )
    fig.update_layout(**{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 32}})
    losses = [v for c in curves if "loss" in c.name for v in c.values]
    if losses and all(v > 0 for v in losses):
        fig.update_yaxes(type="log", row=1, col=1)
    fractions = [v for c in curves if "loss" not in c.name for v in c.values]
    if fractions and all(_is_fraction(m) for m in metrics):
        fig.update_yaxes(range=fraction_range(fractions), row=1, col=2)
    epochs = max((len(c.epochs) for c in curves), default=1)
    fig.update_xaxes(title="epoch", dtick=max(1, math.ceil(epochs / 10)))
    return to_dict(fig)


def _is_fraction(key: str) -> bool:
    """Accuracy, top-5 and PCKh are fractions in [0, 1] (a unitless task metric); RMSEs not."""
    from rpg_core.catalog.tasks import metric_info
    from rpg_core.exceptions import RPGConfigError

    if "acc" in key or "top5" in key:
        return True
    try:
        return metric_info(key).unit == ""
    except RPGConfigError:
        return False


def fraction_range(values: Sequence[float]) -> list[float]:
    """The y range of a fraction's curve: its data range with a margin, never outside [0, 1]
    (plotly's autorange spans -1..1 for a curve that stays at 0)."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    lo, hi = min(finite), max(finite)
    pad = max(0.05 * (hi - lo), 0.02)
    return [max(0.0, lo - pad), min(1.0, hi + pad)]


# ----------------------------------------------------------------------------- similarity


@dataclass(frozen=True)
class Histogram:
    label: str
    bin_edges: list[float]
    fractions: list[float]


def similarity_figure(hists: Sequence[Histogram]) -> dict[str, Any]:
    """Overlaid normalised histograms of |channel correlation| (the paper's Fig. 7)."""
    fig = go.Figure()
    for i, h in enumerate(hists):
        edges = h.bin_edges
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=False)]
        widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=False)]
        fig.add_trace(
            go.Bar(
                x=centres,
                y=h.fractions,
                width=widths,
                name=h.label,
                opacity=0.55,
                marker={"color": colour(i), "line": {"width": 1, "color": colour(i)}},
                hovertemplate="|corr| %{x:.2f}: %{y:.3f}<extra>" + h.label + "</extra>",
            )
        )
    fig.update_layout(
        **LAYOUT,
        barmode="overlay",
        title="Feature similarity (normalised histogram)",
        xaxis={"title": "|correlation| between channels", "range": [0, 1]},
        yaxis={"title": "fraction of channel pairs"},
    )
    return to_dict(fig)


# ----------------------------------------------------------------------------- ablation


@dataclass(frozen=True)
class AblationBar:
    label: str
    mean: float
    std: float
    n: int


def ablation_figure(bars: Sequence[AblationBar], title: str) -> dict[str, Any]:
    """Bars of mean accuracy per (permute, reflect) setting (the paper's Fig. 5)."""
    fig = go.Figure(
        go.Bar(
            x=[b.label for b in bars],
            y=[b.mean for b in bars],
            error_y={"type": "data", "array": [b.std for b in bars], "visible": True},
            marker={"color": [colour(i) for i in range(len(bars))]},
            text=[f"{b.mean:.3f} (n={b.n})" for b in bars],
            textposition="outside",
            hovertemplate="%{x}: %{y:.4f}<extra></extra>",
        )
    )
    lo = min((b.mean - b.std for b in bars), default=0.0)
    fig.update_layout(
        **LAYOUT,
        title=title,
        yaxis={"title": "best val accuracy", "range": [max(0.0, lo - 0.05), 1.0]},
        xaxis={"title": "generator matrices"},
    )
    return to_dict(fig)
