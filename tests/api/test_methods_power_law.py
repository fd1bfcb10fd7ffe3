"""Issue 24 on the dashboard's API: RPG against the other ways to shrink a network on one axis.
Runs of 3 methods x 2 budgets x 2 seeds: one power-law series per method, the budget table
(means, spreads, the best per budget, the difference to rpg and whether the seed ranges
separate, computed here by hand from the seeded numbers) and the model file's bytes as x."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud
from rpg_core.spec.conditions import method_of

from .conftest import SPEC, run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

# method -> budget -> the seeds' best_val_acc
ACC = {
    "rpg": {2000: [0.60, 0.62], 8000: [0.70, 0.72]},
    "hashed": {2000: [0.55, 0.58], 8000: [0.69, 0.73]},
    "width": {2000: [0.50, 0.52], 8000: [0.74, 0.76]},
}
WIDTH_BACKBONE = {2000: 1980, 8000: 8050}  # width meets its budget only to the nearest count


def _file_size(method: str, budget: int, seed: int) -> int:
    return 100 * budget + 1000 * seed + {"rpg": 1, "hashed": 2, "width": 3}[method]


def _method_run(
    client: TestClient,
    auth: dict[str, str],
    session: Session,
    method: str,
    budget: int,
    seed: int,
    acc: float,
    file: bool = True,
    flags: str | None = None,
    **over: Any,
) -> int:
    exp_id = submit(
        client,
        auth,
        rpg=None,
        method={"name": method, "budget": budget},
        train={**SPEC["train"], "seed": seed, **over},
    )
    params = WIDTH_BACKBONE[budget] if method == "width" else budget
    result: dict[str, Any] = {"best_val_acc": acc, "val_acc": acc, "backbone_params": params}
    if flags:
        result["flags"] = flags
    files = (
        [
            crud.FileRecord(
                kind="model",
                path=f"{exp_id}/model.rpg",
                sha256="0" * 64,
                size=_file_size(method, budget, seed),
            )
        ]
        if file
        else []
    )
    run_to_end(session, exp_id, result, files)
    return exp_id


def _seed(client: TestClient, auth: dict[str, str], session: Session) -> dict[str, Any]:
    ids: dict[tuple[str, int, int], int] = {}
    for method, budgets in ACC.items():
        for budget, accs in budgets.items():
            for seed, acc in enumerate(accs):
                # one run without a model file: left out of the bytes axis
                file = not (method == "hashed" and budget == 2000 and seed == 1)
                ids[method, budget, seed] = _method_run(
                    client, auth, session, method, budget, seed, acc, file=file
                )
    flagged = _method_run(client, auth, session, "rpg", 8000, 2, 0.1, flags="near-chance")
    # other conditions (more epochs): a series of its own, not in the table
    other = _method_run(client, auth, session, "rpg", 2000, 0, 0.9, epochs=5)
    return {"ids": ids, "flagged": flagged, "other": other}


def test_method_of_is_the_one_rule() -> None:
    assert method_of({"method": {"name": "hashed", "budget": 10}}) == "hashed"
    assert method_of({"model": {"arch": "resnet18"}, "rpg": {"ring_size": 10}}) == "rpg"
    assert method_of({"model": {"arch": "resnet18"}, "rpg": None}) == "width"
    assert method_of({"model": {"arch": "resnet18"}}) == "width"
    assert method_of({"rpg.scope": "global", "method": None}) == "rpg"  # flat conditions
    assert method_of({"rpg": None, "method": None}) == "width"


def test_one_series_per_method_and_the_budget_table(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    seeded = _seed(client, auth, session)
    ids = seeded["ids"]
    body = client.get("/api/analysis/power-law").json()
    assert body["x"] == "params"
    series = body["series"]
    assert len(series) == 4  # three methods and the run of other conditions
    in_table = [
        s for s in series if seeded["other"] not in [p["experiment_id"] for p in s["points"]]
    ]
    assert sorted(s["method"] for s in in_table) == ["hashed", "rpg", "width"]
    for s in series:
        assert s["label"].startswith(f"{s['method']} · "), s["label"]
    by_method = {s["method"]: s for s in in_table}
    assert {p["params"] for p in by_method["width"]["points"]} == {1980, 8050}
    assert [p["experiment_id"] for p in by_method["rpg"]["excluded"]] == [seeded["flagged"]]

    table = body["budget_table"]
    assert table["methods"] == ["rpg", "width", "hashed"]  # the registry's order
    assert [r["budget"] for r in table["rows"]] == [2000, 8000]  # method.budget, not 1980
    assert table["runs"] == 13  # 12 seeded and the flagged one, not the other conditions
    rows = {r["budget"]: r for r in table["rows"]}
    for method, budgets in ACC.items():
        for budget, accs in budgets.items():
            cell = rows[budget]["cells"][method]
            assert cell["n"] == 2
            assert cell["mean"] == pytest.approx(sum(accs) / 2)
            assert (cell["min"], cell["max"]) == (
                pytest.approx(min(accs)),
                pytest.approx(max(accs)),
            )
            assert sorted(cell["experiment_ids"]) == sorted(ids[method, budget, s] for s in (0, 1))
    # the flagged run is listed (badged), out of the numbers
    assert rows[8000]["cells"]["rpg"]["flagged_ids"] == [seeded["flagged"]]
    # 2000: rpg best (0.61); hashed 0.565 (-4.5 points), width 0.51 (-10): both apart
    r2k = rows[2000]
    assert r2k["best"] == ["rpg"] and r2k["cells"]["rpg"]["best"]
    assert r2k["cells"]["hashed"]["delta_rpg"] == pytest.approx(-4.5)
    assert r2k["cells"]["width"]["delta_rpg"] == pytest.approx(-10.0)
    assert r2k["cells"]["hashed"]["separated"] is True  # 0.58 < 0.60
    assert r2k["cells"]["width"]["separated"] is True
    assert r2k["cells"]["rpg"]["delta_rpg"] is None and r2k["cells"]["rpg"]["separated"] is None
    assert r2k["best_separated"] is True
    # 8000: width best (0.75, +4 points); hashed 0.71 (0 points) overlaps rpg's 0.70-0.72
    r8k = rows[8000]
    assert r8k["best"] == ["width"] and not r8k["cells"]["rpg"]["best"]
    assert r8k["cells"]["width"]["delta_rpg"] == pytest.approx(4.0)
    assert r8k["cells"]["width"]["separated"] is True  # 0.74 > 0.72
    assert r8k["cells"]["hashed"]["delta_rpg"] == pytest.approx(0.0, abs=1e-9)
    assert r8k["cells"]["hashed"]["separated"] is False
    assert r8k["best_separated"] is True  # 0.74 above hashed's 0.73 and rpg's 0.72
    # in words: what was pooled and what was not
    assert table["summary"].startswith("13 runs of 3 methods (rpg, width, hashed) at 2 budgets")
    assert "not in the table: 1 run differs in epochs (5)" in table["summary"]
    assert "1 run flagged by the guard rails is left out" in table["summary"]


def test_a_lower_is_better_direction_comes_from_metric_info() -> None:
    from api.analysis import _budget_cell, _budget_row
    from api.schemas import PowerLawPoint
    from rpg_core.catalog.tasks import MetricInfo

    rmse = MetricInfo("rmse", "RMSE", higher_is_better=False, unit="m")
    cells = {
        m: _budget_cell(
            m, [PowerLawPoint(experiment_id=i, params=10, value=v) for i, v in enumerate(vs)]
        )
        for m, vs in {"rpg": [0.5, 0.6], "width": [0.3, 0.4]}.items()
    }
    cells["hashed"] = _budget_cell(
        "hashed", [PowerLawPoint(experiment_id=9, params=10, value=0.01, flags=["diverged"])]
    )
    row = _budget_row(10, cells, rmse)
    assert row.best == ["width"]  # not hashed's flagged 0.01: a flagged cell is never the best
    assert row.cells["width"].delta_rpg == pytest.approx(-0.2)  # in the metric's unit
    assert row.cells["width"].separated is True
    flagged = row.cells["hashed"]
    assert (flagged.n, flagged.mean, flagged.flagged_ids, flagged.best) == (0, None, [9], False)
    assert flagged.delta_rpg is None and flagged.separated is None


def test_x_bytes_uses_the_model_files(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    seeded = _seed(client, auth, session)
    ids = seeded["ids"]
    body = client.get("/api/analysis/power-law", params={"x": "bytes"}).json()
    assert body["x"] == "bytes" and body["without_file"] == 1
    assert "1 run without a model file is left out of the bytes axis." in body["summary"]
    got = {p["experiment_id"]: p["params"] for s in body["series"] for p in s["points"]}
    for (method, budget, seed), exp_id in ids.items():
        if method == "hashed" and budget == 2000 and seed == 1:
            assert exp_id not in got
        else:
            assert got[exp_id] == _file_size(method, budget, seed)
    gap = client.get("/api/analysis/power-law", params={"x": "bytes", "quantity": "gap"})
    assert gap.status_code == 200 and gap.json()["x"] == "bytes"
    # the budget table still reads budgets, and keeps the run without a file
    rows = {r["budget"]: r for r in body["budget_table"]["rows"]}
    assert rows[2000]["cells"]["hashed"]["n"] == 2


def test_a_bad_x_is_a_422_naming_x(client: TestClient) -> None:
    r = client.get("/api/analysis/power-law", params={"x": "flops"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["field"] == "x" and "'params'" in err["message"] and "'bytes'" in err["message"]
    r = client.get("/ui/figures/power-law", params={"x": "flops"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "x"


def test_a_run_without_a_method_section_pools_by_the_one_rule(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """A ring of 2000 asked for as rpg.ring_size is the rpg cell at budget 2000 beside the
    method runs; a plain network without method is width; other ring settings are set apart."""
    for seed, acc in enumerate((0.60, 0.62)):
        _method_run(client, auth, session, "rpg", 2000, seed, acc)
        _method_run(client, auth, session, "width", 2000, seed, acc - 0.1)
    legacy = submit(client, auth, rpg={"ring_size": 2000}, train={**SPEC["train"], "seed": 5})
    run_to_end(session, legacy, {"best_val_acc": 0.64, "backbone_params": 2000})
    layer = submit(
        client, auth, rpg={"ring_size": 2000, "scope": "stage"}, train={**SPEC["train"], "seed": 6}
    )
    run_to_end(session, layer, {"best_val_acc": 0.9, "backbone_params": 2000})
    body = client.get("/api/analysis/power-law").json()
    methods = {p["experiment_id"]: s["method"] for s in body["series"] for p in s["points"]}
    assert methods[legacy] == "rpg" and methods[layer] == "rpg"
    (row,) = body["budget_table"]["rows"]
    rpg = row["cells"]["rpg"]
    assert legacy in rpg["experiment_ids"] and layer not in rpg["experiment_ids"]
    assert rpg["n"] == 3 and rpg["mean"] == pytest.approx((0.60 + 0.62 + 0.64) / 3)
    assert row["best"] == ["rpg"]  # the stage-ring run (0.9) is not in the table
    assert "not in the table: 1 run differs in" in body["budget_table"]["summary"]
    assert "another setting of its method" in body["budget_table"]["summary"]
