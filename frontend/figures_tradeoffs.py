"""The dashboard's figures of generalization (in- against out-of-distribution accuracy, a run's
accuracy per shift) and speed (accuracy against inference time), in the style of
:mod:`frontend.figures`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from .figures import LAYOUT, PLAIN_SCOPE, SYMBOLS, colour, fmt_params, slot, to_dict

# ----------------------------------------------------------------------------- generalization


def _kind(p: Mapping[str, Any]) -> str:
    return "plain" if p["scope"] == PLAIN_SCOPE else "RPG"


def ood_scatter_figure(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """In-distribution (final val) against mean out-of-distribution accuracy, one point per run:
    RPG and plain networks as separate traces (circles and stars), with the y = x line."""
    fig = go.Figure()
    for i, kind in enumerate(("RPG", "plain")):
        pts = [p for p in points if _kind(p) == kind and p.get("ood_acc") is not None]
        if not pts:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p["val_acc"] for p in pts],
                y=[p["ood_acc"] for p in pts],
                mode="markers",
                name=f"{kind} ({len(pts)} runs)",
                customdata=[p["experiment_id"] for p in pts],
                text=[
                    f"{p['name']} · {p['arch']} · {fmt_params(p['backbone_params'] or 0)}"
                    for p in pts
                ],  # fmt: skip
                marker={
                    "color": colour(i),
                    "symbol": "star" if kind == "plain" else "circle",
                    "size": 15 if kind == "plain" else 10,
                    "line": {"width": 1, "color": "#000000"},
                },
                hovertemplate="run %{customdata}: %{text}<br>in-distribution %{x:.4f}<br>"
                "out-of-distribution %{y:.4f}<extra>" + kind + "</extra>",
                meta={"role": "ood", "kind": kind},
            )
        )
    vals = [v for p in points for v in (p.get("val_acc"), p.get("ood_acc")) if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    fig.add_trace(
        go.Scatter(
            x=[lo, hi], y=[lo, hi], mode="lines", name="OOD = ID",
            line={"color": "#888888", "dash": "dot", "width": 1}, hoverinfo="skip",
        )
    )  # fmt: skip
    fig.update_layout(
        **{**LAYOUT, "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}},
        title="In-distribution vs out-of-distribution accuracy",
        xaxis={"title": "in-distribution accuracy (final val)"},
        yaxis={"title": "mean out-of-distribution accuracy"},
    )
    return to_dict(fig)


def split_ood(ood: Mapping[str, float]) -> tuple[dict[str, dict[int, float]], dict[str, float]]:
    """``{"rotation@3": a, "folder:x": b}`` as ({shift: {severity: acc}}, {folder: acc})."""
    shifts: dict[str, dict[int, float]] = {}
    folders: dict[str, float] = {}
    for key, acc in ood.items():
        name, _, sev = key.rpartition("@")
        if name and sev.isdigit():
            shifts.setdefault(name, {})[int(sev)] = acc
        else:
            folders[key.removeprefix("folder:")] = acc
    return shifts, folders


def ood_breakdown_figure(ood: Mapping[str, float], val_acc: float | None) -> dict[str, Any]:
    """A run's accuracy per shift against severity (one line each), its folders as bars at the
    right, and its in-distribution accuracy as a dashed line."""
    shifts, folders = split_ood(ood)
    fig = go.Figure()
    for name in sorted(shifts):
        i = slot(name)
        sev = sorted(shifts[name])
        fig.add_trace(
            go.Scatter(
                x=[str(s) for s in sev],
                y=[shifts[name][s] for s in sev],
                mode="lines+markers",
                name=name,
                line={"color": colour(i)},
                marker={"symbol": SYMBOLS[i % len(SYMBOLS)], "size": 8},
                hovertemplate=name + " severity %{x}: %{y:.4f}<extra></extra>",
            )
        )
    if folders:
        fig.add_trace(
            go.Bar(
                x=[f"folder {k}" for k in folders], y=list(folders.values()), name="folders",
                marker={"color": "#999999"}, hovertemplate="%{x}: %{y:.4f}<extra></extra>",
            )
        )  # fmt: skip
    if val_acc is not None:
        fig.add_hline(
            y=val_acc, line={"color": "#000000", "dash": "dash", "width": 1},
            annotation_text=f"in-distribution {val_acc:.3f}", annotation_position="top left",
        )  # fmt: skip
    fig.update_layout(
        **LAYOUT,
        xaxis={
            "title": "severity (0: unshifted)",
            "type": "category",
            "categoryorder": "array",
            "categoryarray": [str(v) for v in sorted({s for d in shifts.values() for s in d})]
            + [f"folder {k}" for k in folders],
        },
        yaxis={"title": "accuracy", "range": [0, 1.02]},
    )
    return to_dict(fig)


# ----------------------------------------------------------------------------- speed


@dataclass(frozen=True)
class SpeedPoint:
    """One finished run: its accuracy against its inference time per image."""

    experiment_id: int
    label: str  # the run's name
    group: str  # the series: recurrence mode (mdeq), "rpg" (a ring) or "plain"
    ms_per_image: float
    accuracy: float
    backbone_params: int | None


def speed_figure(
    points: Sequence[SpeedPoint], title: str, y_title: str = "best val accuracy"
) -> dict[str, Any]:
    """Accuracy (or a pose/multitask run's primary metric, ``y_title``) against inference time
    per image (log axis), one series per group (Table 1)."""
    fig = go.Figure()
    groups = sorted({p.group for p in points})
    for group in groups:
        pts = [p for p in points if p.group == group]
        i = slot(group)
        fig.add_trace(
            go.Scatter(
                x=[p.ms_per_image for p in pts],
                y=[p.accuracy for p in pts],
                mode="markers",
                name=f"{group} (n={len(pts)})",
                marker={"color": colour(i), "size": 9},
                text=[p.label for p in pts],
                customdata=[[p.experiment_id, p.backbone_params] for p in pts],
                meta={"role": "points", "group": group},
                hovertemplate="#%{customdata[0]} %{text}<br>%{x:.3f} ms/image<br>"
                + y_title
                + " %{y:.4f}<br>backbone %{customdata[1]}<extra></extra>",
            )
        )
    fig.update_layout(
        **LAYOUT,
        title=title,
        xaxis={"title": "inference time per image (ms, log)", "type": "log"},
        yaxis={"title": y_title},
    )
    return to_dict(fig)
