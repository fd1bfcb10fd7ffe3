"""A search study's figure (issue 25): each trial's objective in order, pruned trials marked at
their last reported value, and the best so far."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from .figures import colour, to_dict


def study_figure(detail: Mapping[str, Any]) -> dict[str, Any]:
    """Plotly figure of ``api.search.study_detail``: x the trial number, y the objective."""
    trials = list(detail.get("trials") or [])
    objective = str(detail.get("objective", "objective"))
    complete = [t for t in trials if t.get("value") is not None]
    pruned = [t for t in trials if t.get("status") == "pruned" and t.get("intermediate")]

    def last(t: Mapping[str, Any]) -> float:
        values = t["intermediate"]
        return float(values[max(values, key=int)])

    def params(t: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                         for k, v in (t.get("params") or {}).items())  # fmt: skip

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[t["number"] for t in complete],
            y=[t["value"] for t in complete],
            mode="markers",
            name="complete",
            marker={"color": colour(0), "size": 9},
            text=[params(t) for t in complete],
            hovertemplate="trial %{x}: %{y:.4f}<br>%{text}<extra>complete</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[t["number"] for t in pruned],
            y=[last(t) for t in pruned],
            mode="markers",
            name="pruned (last evaluation)",
            marker={"color": colour(5), "size": 10, "symbol": "x"},
            text=[
                f"{params(t)}; stopped after {len(t['intermediate'])} evaluations" for t in pruned
            ],  # fmt: skip
            hovertemplate="trial %{x}: %{y:.4f}<br>%{text}<extra>pruned</extra>",
        )
    )
    best = [(t["number"], t["best_so_far"]) for t in trials if t.get("best_so_far") is not None]
    fig.add_trace(
        go.Scatter(
            x=[b[0] for b in best],
            y=[b[1] for b in best],
            mode="lines",
            line={"shape": "hv", "color": colour(2)},
            name="best so far",
            hovertemplate="best after trial %{x}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis={"title": "trial (in the order asked)", "dtick": 1},
        yaxis={"title": f"{objective} ({detail.get('direction', '')})"},
        margin={"t": 30, "r": 10},
        legend={"orientation": "h"},
    )
    return to_dict(fig)
