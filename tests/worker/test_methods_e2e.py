"""End to end (issue 24): a budget sweep over three methods through REST -> a real Celery
worker on PostgreSQL -> results that carry each run's method, budget, real backbone and cost ->
one power-law series per method and the budget table; a pruned run's download is its sparse
.rpg file, which loads anywhere with rpg_core alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import Stack

pytestmark = [pytest.mark.slow]

BASE: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "method": {"name": "rpg", "budget": 2000},
    "data": {"dataset": "synthetic", "num_train": 64, "num_val": 32, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 16},
}
METHODS = ["rpg", "width", "prune-global"]
BUDGETS = [2000, 8000]


def test_a_budget_sweep_of_three_methods_through_a_worker(stack: Stack, tmp_path: Path) -> None:
    stack.start_worker()
    client, auth = stack.client, stack.auth
    body = {
        "name": "e2e-methods",
        "base": BASE,
        "grid": {"method.name": METHODS, "method.budget": BUDGETS},
    }
    r = client.post("/api/sweeps", json=body, headers=auth)
    assert r.status_code == 201, r.text
    sweep_id, ids = r.json()["id"], r.json()["experiment_ids"]
    assert len(ids) == len(METHODS) * len(BUDGETS)
    pruned: int | None = None
    reused: list[bool] = []
    for exp_id in ids:
        exp = stack.wait_status(exp_id, "succeeded", "failed", timeout=300)
        assert exp.status == "succeeded", exp.error
        detail = client.get(f"/api/experiments/{exp_id}", headers=auth).json()
        result, method = detail["result"], detail["spec"]["method"]
        assert result["method"] == method["name"] and result["budget"] == method["budget"]
        if method["name"] == "width":  # the nearest width: close to the budget, not equal
            assert abs(result["backbone"] - method["budget"]) / method["budget"] < 0.5
        else:  # the ring's size, or the non-zero weights left by pruning: the budget exactly
            assert result["backbone"] == method["budget"]
        dense_epochs = detail["spec"]["train"]["epochs"]
        if method["name"] == "prune-global":
            assert result["total_epochs"] > dense_epochs  # the fine-tuning counts
            reused.append(result["dense_reused"])
            pruned = exp_id if method["budget"] == BUDGETS[0] else pruned
        else:
            assert result["total_epochs"] == dense_epochs
    assert sorted(reused) == [False, True]  # one worker: the dense network trained once
    law = client.get("/api/analysis/power-law", params={"sweep": sweep_id}, headers=auth)
    assert law.status_code == 200, law.text
    out = law.json()
    assert sorted(s["method"] for s in out["series"]) == sorted(METHODS)  # one per method
    table = out["budget_table"]
    assert [row["budget"] for row in table["rows"]] == BUDGETS
    for row in table["rows"]:
        assert set(row["cells"]) == set(METHODS)
        assert all(c["n"] + len(c["flagged_ids"]) == 1 for c in row["cells"].values())
    # the pruned network downloads as a file rpg_core alone loads: its zeros stored sparse
    assert pruned is not None
    r = client.get(f"/api/experiments/{pruned}/model", headers=auth)
    assert r.status_code == 200
    path = tmp_path / "pruned.rpg"
    path.write_bytes(r.content)
    from rpg_core import load_compact
    from rpg_core.rpg.params import count_params
    from rpg_core.training.global_pruning import nonzero_backbone

    model = load_compact(path)
    assert count_params(model).backbone > BUDGETS[0]  # the dense shape, zeros included
    assert nonzero_backbone(model) == BUDGETS[0]
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
