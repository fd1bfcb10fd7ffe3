"""End to end (issue 13): a pose sweep and a multitask sweep (two sharing variants each, tiny)
over REST -> a real Celery worker on PostgreSQL -> results with the task's metrics and the
primary value -> the task-aware power law and the comparison table (paper Tables 4 and 5).

Needs the engine's pose/multitask training (rpg_core.tasks); run with ``-m tasks_e2e``."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Stack

pytestmark = [pytest.mark.tasks_e2e, pytest.mark.slow]

TINY: dict[str, dict[str, Any]] = {
    "pose": {
        "task": "pose",
        "data": {"dataset": "synthetic-pose", "num_train": 64, "num_val": 32, "image_size": 32},
        "model": {"stacks": 2, "sharing": "rpg", "width": 0.25},
        "train": {"epochs": 1, "batch_size": 16},
    },
    "multitask": {
        "task": "multitask",
        "data": {"dataset": "synthetic-scenes", "num_train": 64, "num_val": 32, "image_size": 32},
        "model": {"stacks": 2, "sharing": "rpg", "width": 0.25},
        "train": {"epochs": 1, "batch_size": 16},
    },
}
VARIANTS = {"pose": ["none", "rpg"], "multitask": ["reuse", "rpg"]}
PRIMARY = {"pose": "pckh", "multitask": "depth_rmse"}
METRICS = {"pose": {"pckh"}, "multitask": {"depth_rmse", "normal_rmse"}}


def test_pose_and_multitask_sweeps_through_a_worker(stack: Stack) -> None:
    stack.start_worker()
    client, auth = stack.client, stack.auth
    sweeps: dict[str, tuple[int, list[int]]] = {}
    for task, base in TINY.items():
        body = {"name": f"e2e-{task}", "base": base, "grid": {"model.sharing": VARIANTS[task]}}
        r = client.post("/api/sweeps", json=body, headers=auth)
        assert r.status_code == 201, r.text
        sweeps[task] = (r.json()["id"], r.json()["experiment_ids"])
        listed = client.get("/api/experiments", params={"task": task}, headers=auth).json()
        assert {e["id"] for e in listed["items"]} >= set(sweeps[task][1])  # queued: filtered
    for task, (sweep_id, ids) in sweeps.items():
        for exp_id in ids:
            exp = stack.wait_status(exp_id, "succeeded", "failed", timeout=300)
            assert exp.status == "succeeded", exp.error
            assert exp.task == task and exp.primary_metric == PRIMARY[task]
            assert exp.primary_value is not None
            result = client.get(f"/api/experiments/{exp_id}", headers=auth).json()["result"]
            assert result["task"] == task and set(result["metrics"]) >= METRICS[task]
            assert result["primary_value"] == pytest.approx(result["metrics"][PRIMARY[task]])
            assert result["history"][-1][f"val_{PRIMARY[task]}"] is not None
            assert {f["code"] for f in result["health"]} <= {"near-chance"}
            assert set(result["baseline"]) == {f"val_{k}" for k in METRICS[task]}
            assert result["samples"] and result["samples"][0]["image"]

        # one tiny epoch learns nothing past the constant prediction: the guard rails flag it
        # near-chance, and flagged runs join a fit only when asked
        law = client.get(
            "/api/analysis/power-law",
            params={"task": task, "sweep": sweep_id, "include_flagged": "true"},
            headers=auth,
        )
        assert law.status_code == 200, law.text
        body = law.json()
        assert body["metric"] == PRIMARY[task]
        assert {(s["sharing"], s["stacks"]) for s in body["series"]} == {
            (v, 2) for v in VARIANTS[task]
        }
        assert sorted(p["experiment_id"] for s in body["series"] for p in s["points"]) == sorted(
            ids
        )

        table = client.get("/api/analysis/comparison", params={"sweep": sweep_id}, headers=auth)
        assert table.status_code == 200, table.text
        t = table.json()
        assert t["task"] == task and t["runs"] == len(ids)
        assert sorted(t["sharing"]) == sorted(VARIANTS[task]) and t["stacks"] == [2]
        for cell in t["cells"]:
            assert set(cell["metrics"]) == METRICS[task] and cell["total_params"]
        # a cell of flagged runs only is badged and never the best (issue 22)
        ranked = [c for c in t["cells"] if not c["flagged"]]
        assert set(t["best"]) == (METRICS[task] if ranked else set())
        assert all(c["flagged_ids"] == c["experiment_ids"] for c in t["cells"] if c["flagged"])

        page = client.get(f"/ui/runs/{ids[-1]}/samples")
        assert page.status_code == 200  # pictures when the engine stores samples
