"""The first load of a finished run's page on a fresh server process (issue 22).

The page asks for its curves, its parameters (model-info, which loads torch and with it numpy
and PIL) and its similarity histogram at once. plotly looks numpy and PIL.Image up in
sys.modules without the import lock, so a figure serialised while another request thread was
importing numpy answered 500 (``partially initialized module 'numpy' has no attribute
'ndarray'``). Only a fresh process has the race: the server is a real ``uvicorn`` process.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from api import crud
from api.db import make_engine, make_sessionmaker
from api.migrate import upgrade
from rpg_core.format import save_compact
from rpg_core.models import create_model

from ..api.test_overload import api_server
from .conftest import spec

COPIES = 8  # concurrent requests per figure route


def _stored_run(url: str, artifacts: Path) -> int:
    """A succeeded run with curves, a similarity histogram and its .rpg file."""
    engine = make_engine(url)
    with make_sessionmaker(engine)() as s:
        exp_id = crud.create_experiment(s, spec("first-load"))
        s.commit()
        exp = crud.get_experiment(s, exp_id)
        assert exp is not None
        rel = crud.artifact_relpath(exp_id)
        (artifacts / rel).parent.mkdir(parents=True, exist_ok=True)
        save_compact(create_model(exp.spec, num_classes=10, in_channels=1), artifacts / rel)
        lease = crud.claim_experiment(s, exp_id, worker="w:1")
        assert lease is not None
        for epoch in (1, 2):
            metrics = {"train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                       "train_acc": 0.5 + 0.1 * epoch, "val_acc": 0.4 + 0.1 * epoch}  # fmt: skip
            crud.record_metrics(s, exp_id, lease.token, epoch, metrics)
        edges = [i / 20 for i in range(21)]
        weights = [math.exp(-((e - 0.3) ** 2) / 0.02) for e in edges[:-1]]
        similarity = {"bin_edges": edges, "fractions": [w / sum(weights) for w in weights],
                      "layer": "layer3"}  # fmt: skip
        result = {"best_val_acc": 0.6, "val_acc": 0.6, "train_acc": 0.7, "backbone_params": 1000,
                  "total_params": 2000, "train_time_s": 1.0, "similarity": similarity}  # fmt: skip
        files = [crud.file_record(artifacts, rel)]
        assert crud.finish_experiment(s, exp_id, lease.token, result, files)
    engine.dispose()
    return exp_id


def test_concurrent_first_requests_to_the_figure_routes_all_answer_200(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rpg.db'}"
    upgrade(url)
    exp_id = _stored_run(url, tmp_path / "artifacts")
    routes = [f"/ui/api/runs/{exp_id}/model-info"] + [
        f"/ui/figures/runs/{exp_id}/curves",
        f"/ui/figures/similarity?ids={exp_id}",
    ] * COPIES
    # api_server also fails the test if the server logged a traceback
    with api_server(url, tmp_path) as base, ThreadPoolExecutor(len(routes)) as pool:
        with httpx.Client(base_url=base, timeout=120) as client:
            answers = list(pool.map(client.get, routes))
    statuses = {route: r.status_code for route, r in zip(routes, answers, strict=True)}
    assert all(r.status_code == 200 for r in answers), statuses
    curves = [r.json() for r, route in zip(answers, routes, strict=True) if "curves" in route]
    assert all(c["points"] == 8 and c["figure"]["data"] for c in curves)
    hists = [r.json() for r, route in zip(answers, routes, strict=True) if "similarity" in route]
    assert all(h["shown"] == 1 and h["missing"] == [] for h in hists)
    assert answers[0].json()["available"] is True
