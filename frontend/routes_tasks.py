"""The dashboard's pages for pose and multitask runs (paper Tables 4 and 5): the comparison
table (rows sharing variants, columns numbers of sub-networks) and a run's pictures (pose:
predicted and true keypoints over the image; multitask: input, predicted and true depth and
normal maps). Reads through the API's services (api.analysis, api.crud)."""

from __future__ import annotations

import base64
import binascii
import html
import re
import struct
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from api import crud
from api.deps import ExperimentId, ReadAuth, SessionDep

from .routes import render

router = APIRouter(include_in_schema=False)

MAX_SAMPLES = 16
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_PNG = b"\x89PNG\r\n\x1a\n"
PRED_COLOUR = "#D55E00"  # vermillion (Okabe-Ito)
TRUE_COLOUR = "#009E73"  # bluish green
MULTITASK_MAPS = (
    ("image", "input"),
    ("depth_pred", "depth (predicted)"),
    ("depth_true", "depth (true)"),
    ("normal_pred", "normals (predicted)"),
    ("normal_true", "normals (true)"),
)


@router.get("/tables", response_class=HTMLResponse)
def tables_page() -> HTMLResponse:
    return render("tables")


def png_size(b64: Any) -> tuple[int, int] | None:
    """(width, height) of a base64 PNG, or None when it is not one (then it is not shown)."""
    if not isinstance(b64, str) or len(b64) > 4_000_000 or not _B64.fullmatch(b64):
        return None
    try:
        head = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    if len(head) < 24 or not head.startswith(_PNG) or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return (int(w), int(h)) if 0 < w <= 4096 and 0 < h <= 4096 else None


def _img(b64: str, alt: str) -> str:
    return f'<img class="sample-img" src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _xy(point: Any) -> tuple[float, float] | None:
    if not isinstance(point, list | tuple) or len(point) < 2:
        return None
    try:
        x, y = float(point[0]), float(point[1])
    except (TypeError, ValueError):
        return None
    if x != x or y != y:  # NaN
        return None
    return (x, y)


def pose_sample(sample: dict[str, Any], i: int) -> str:
    """The image with predicted (filled, vermillion) and true keypoints (green rings; joints
    marked invisible are dashed and hollow) drawn as an SVG over it; the engine writes the
    coordinates in image pixels (rpg_core.tasks.PoseTask.samples)."""
    size = png_size(sample.get("image"))
    if size is None:
        return ""
    w, h = size
    pred = sample.get("pred") or []
    true = sample.get("true") or []
    r = max(w, h) / 40
    marks = []
    for p in true:
        xy = _xy(p)
        if xy is None:
            continue
        visible = len(p) < 3 or bool(p[2])
        dash = "" if visible else f' stroke-dasharray="{r / 2:.3g}"'
        marks.append(
            f'<circle class="kp-true{"" if visible else " kp-hidden"}" cx="{xy[0]:.3g}" '
            f'cy="{xy[1]:.3g}" r="{r * 1.4:.3g}" fill="none" stroke="{TRUE_COLOUR}" '
            f'stroke-width="{r / 2.5:.3g}"{dash}/>'
        )
    for p in pred:
        xy = _xy(p)
        if xy is not None:
            marks.append(
                f'<circle class="kp-pred" cx="{xy[0]:.3g}" cy="{xy[1]:.3g}" r="{r:.3g}" '
                f'fill="{PRED_COLOUR}"/>'
            )
    head = sample.get("head")
    caption = f"sample {i + 1}" + (
        f" · head size {float(head):.3g}" if isinstance(head, int | float) else ""
    )
    return (
        f'<figure class="sample pose-sample"><div class="kp-wrap">{_img(sample["image"], caption)}'
        f'<svg class="kp-overlay" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
        f'aria-hidden="true">{"".join(marks)}</svg></div>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def multitask_sample(sample: dict[str, Any], i: int) -> str:
    """Input, predicted and true depth, predicted and true normals, side by side, labelled."""
    cells = []
    for key, label in MULTITASK_MAPS:
        b64 = sample.get(key)
        if not isinstance(b64, str) or png_size(b64) is None:
            continue
        cells.append(
            f'<figure class="sample map-{key.replace("_", "-")}">{_img(b64, f"{label}, sample {i + 1}")}'
            f"<figcaption>{html.escape(label)}</figcaption></figure>"
        )
    return f'<div class="map-row" role="group" aria-label="sample {i + 1}">{"".join(cells)}</div>'


def samples_html(task: str, samples: Any) -> str:
    if not isinstance(samples, list):
        return ""
    items = [s for s in samples[:MAX_SAMPLES] if isinstance(s, dict)]
    if task == "pose":
        body = "".join(pose_sample(s, i) for i, s in enumerate(items))
        legend = (
            f'<p class="kp-legend"><span class="kp-key" style="background:{PRED_COLOUR}"></span> '
            f'predicted <span class="kp-key ring" style="border-color:{TRUE_COLOUR}"></span> true '
            "(dashed: marked invisible)</p>"
        )
        return f'{legend}<div class="samples pose-samples">{body}</div>' if body else ""
    if task == "multitask":
        body = "".join(multitask_sample(s, i) for i, s in enumerate(items))
        return f'<div class="samples map-grid">{body}</div>' if body else ""
    return ""


@router.get("/ui/runs/{experiment_id}/samples", response_class=HTMLResponse)
def run_samples(experiment_id: ExperimentId, session: SessionDep, _auth: ReadAuth) -> HTMLResponse:
    """The run's pictures (its result's ``samples``) as HTML; empty when it has none."""
    exp = crud.get_experiment(session, experiment_id)
    if exp is None:
        raise HTTPException(404, detail=f"experiment {experiment_id} not found")
    result = crud.get_result(session, experiment_id) or {}
    return HTMLResponse(samples_html(exp.task, result.get("samples")))
