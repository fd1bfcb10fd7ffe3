"""Search sweeps through REST (issue 25): bad input is a 422 naming the field; the driver creates
trials as experiments, tells Optuna what became of them and repairs an asked trial that never got
an experiment (no broker here: the driver's steps are called as the worker would)."""

from __future__ import annotations

import copy
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import crud, search
from api.models import Experiment, Study
from api.optuna_tables import storage
from api.settings import Settings

from .conftest import run_to_end

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

BASE: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "data": {"dataset": "synthetic", "image_size": 8, "num_train": 64, "num_val": 32},
    "train": {"epochs": 3},
}
SWEEP: dict[str, Any] = {
    "name": "lr",
    "base": BASE,
    "grid": {"rpg.ring_size": [500, 1000]},
    "search": {
        "sampler": "tpe",
        "n_trials": 3,
        "parallel": 2,
        "space": {"train.lr": {"log": [0.003, 0.3]}},
        "pruner": "median",
    },
}
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _with(**search: Any) -> dict[str, Any]:
    sweep = copy.deepcopy(SWEEP)
    sweep["search"].update(search)
    return sweep


BAD: list[tuple[dict[str, Any], str, str]] = [
    (_with(space={"train.lr": {"log": [0.3, 0.003]}}), "search.space.train.lr", "inverted"),
    (_with(space={"train.lr": {"uniform": [0.1, 0.1]}}), "search.space.train.lr", "empty"),
    (_with(space={"train.lr": {"log": [-0.1, 0.3]}}), "search.space.train.lr", "above zero"),
    (_with(space={"train.lr": {"log": [0, 0.3]}}), "search.space.train.lr", "above zero"),
    (_with(space={"train.lr": {"choices": []}}), "search.space.train.lr", "non-empty"),
    (_with(space={"train.lr": {"log": [0.01, 0.1], "int": [1, 2]}}), "search.space.train.lr", ""),
    (_with(objective="pckh"), "search.objective", "acc"),
    (
        _with(sampler="grid", space={"train.lr": {"choices": [0.01, 0.1]}}),
        "search.pruner",
        "grid",
    ),
    (_with(sampler="annealing"), "search.sampler", "tpe"),
    (_with(space={"train.lr": {"choices": [{"a": 1}]}}), "search.space.train.lr", "number"),
    (
        _with(pruner={"name": "hyperband", "min_resource": 3, "max_resource": 3}),
        "search.pruner",
        "above min_resource",
    ),
    (
        _with(sampler="grid", pruner="none", space={"train.lr": {"choices": [0.01, 0.1]}}),
        "search.n_trials",
        "2 points",
    ),
    (_with(pruner="patient"), "search.pruner.name", "median"),
    (_with(space={"train.nonsense": {"log": [0.01, 0.1]}}), "search.space.train.nonsense", ""),
    (_with(space={"rpg.ring_size": {"int": [100, 900]}}), "search.space.rpg.ring_size", "grid"),
    (
        _with(sampler="power-law", pruner="none", space={"train.lr": {"log": [0.01, 0.1]}}),
        "search.space",
        "size knob",
    ),
]


@SQLITE
def test_bad_search_is_a_422_naming_the_field(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    for body, field, words in BAD:
        r = client.post("/api/sweeps", json=body, headers=auth)
        assert r.status_code == 422, (field, r.text)
        detail = r.json()["detail"]
        fields = [d["field"] for d in detail]
        assert any(f == field or f.startswith(field) for f in fields), (field, detail)
        assert words in " ".join(d["message"] for d in detail), (words, detail)
    assert session.scalars(select(Study)).all() == []  # nothing stored


def _trials(session: Session, study_id: int) -> list[Experiment]:
    session.expire_all()
    q = select(Experiment).where(Experiment.study_id == study_id).order_by(Experiment.trial_number)
    return list(session.scalars(q))


def _states(settings: Settings, row: Study) -> dict[int, str]:
    study = optuna.load_study(study_name=row.optuna_name, storage=storage(settings.database_url))
    return {t.number: t.state.name for t in study.get_trials()}


@SQLITE
def test_a_search_sweep_makes_trials_that_are_experiments(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings
) -> None:
    r = client.post("/api/sweeps", json=SWEEP, headers=auth)
    assert r.status_code == 201, r.text
    out = r.json()
    assert len(out["study_ids"]) == 2  # one study per ring size
    assert len(out["experiment_ids"]) == 4  # parallel 2 in each
    first = out["study_ids"][0]
    row = session.get(Study, first)
    assert row is not None and row.objective == "acc" and row.higher_is_better
    exps = _trials(session, first)
    assert [e.trial_number for e in exps] == [0, 1]
    assert all(e.status == "queued" and e.sweep_id == out["id"] for e in exps)
    assert exps[0].spec["rpg"]["ring_size"] == 500
    assert 0.003 <= exps[0].spec["train"]["lr"] <= 0.3
    assert exps[0].spec["name"] == "lr-ring_size_500-t0"

    # idempotent: driving again creates nothing (two slots are taken)
    assert search.drive(session, settings, first) == []
    # a crash between Optuna's ask and our commit leaves an asked trial without an experiment
    study = search.load_study(row, settings.database_url)
    orphan = study.ask().number
    assert orphan == 2

    # trial 0 succeeds, trial 1 is pruned: Optuna is told, the freed slots get new trials
    run_to_end(session, exps[0].id, {"primary_metric": "acc", "primary_value": 0.5})
    lease = crud.claim_experiment(session, exps[1].id, worker="w")
    assert lease is not None
    result = {"primary_metric": "acc", "primary_value": 0.3, "metrics": {"acc": 0.3}}
    assert crud.prune_experiment(session, exps[1].id, lease.token, result)
    new = search.drive(session, settings, first)
    assert len(new) == 1  # n_trials 3: one more
    states = _states(settings, row)
    assert states[0] == "COMPLETE" and states[1] == "PRUNED"
    assert states[orphan] == "FAIL"  # repaired, not run
    exps = _trials(session, first)
    assert [e.trial_number for e in exps] == [0, 1, 3]
    assert exps[1].status == "pruned" and crud.get_result(session, exps[1].id) is not None

    run_to_end(session, exps[2].id, {"primary_metric": "acc", "primary_value": 0.7})
    assert search.drive(session, settings, first) == []
    session.expire_all()
    assert session.get(Study, first).state == "finished"  # type: ignore[union-attr]

    detail = client.get(f"/api/studies/{first}", headers=auth).json()
    assert [t["number"] for t in detail["trials"]] == [0, 1, 3]
    assert [t["status"] for t in detail["trials"]] == ["succeeded", "pruned", "succeeded"]
    assert detail["best"] == {"number": 3, "value": 0.7}
    assert [t["best_so_far"] for t in detail["trials"]] == [0.5, 0.5, 0.7]
    assert detail["state"] == "finished" and detail["counts"] == {"succeeded": 2, "pruned": 1}
    listed = client.get(f"/api/studies?sweep_id={out['id']}", headers=auth).json()
    assert [s["id"] for s in listed] == out["study_ids"]
    assert (
        client.get(f"/api/sweeps/{out['id']}", headers=auth).json()["study_ids"]
        == (out["study_ids"])
    )
    assert client.get("/api/studies/999999", headers=auth).status_code == 404
    pruned = client.get("/api/experiments?status=pruned", headers=auth).json()["items"]
    assert [e["id"] for e in pruned] == [exps[1].id]


@SQLITE
def test_a_power_law_study_places_sizes_with_the_adaptive_rule(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings
) -> None:
    body = {
        "name": "law",
        "base": {**BASE, "rpg": {"ring_size": 1000}},
        "search": {
            "sampler": "power-law",
            "n_trials": 5,
            "parallel": 2,
            "space": {"rpg.ring_size": {"log": [500, 8000]}},
            "law": {"initial": 3},
        },
    }
    r = client.post("/api/sweeps", json=body, headers=auth)
    assert r.status_code == 201, r.text
    (study_id,) = r.json()["study_ids"]
    sizes: list[int] = []
    seeds: list[tuple[int, int]] = []
    for _ in range(4):  # finish each trial with an error on a known law, err = 3 P^-0.3
        running = [e for e in _trials(session, study_id) if e.status == "queued"]
        assert running, [e.status for e in _trials(session, study_id)]
        exp = running[0]
        ring = exp.spec["rpg"]["ring_size"]
        assert isinstance(ring, int) and 500 <= ring <= 8000
        sizes.append(ring)
        seeds.append((exp.spec["train"]["seed"], exp.spec["rpg"]["seed"]))
        error = 3.0 * ring**-0.3
        run_to_end(
            session,
            exp.id,
            {"primary_metric": "acc", "primary_value": 1 - error, "backbone_params": ring},
        )
        search.drive(session, settings, study_id)
    assert sizes[0] == 500 and len(set(sizes[:2])) == 2  # the spread, pending sizes apart
    # a size tried again is a replicate with the next seeds, never the same run twice
    runs = list(zip(sizes, seeds, strict=True))
    assert len(set(runs)) == len(runs), runs
    assert len(set(sizes)) < len(sizes), runs  # the rule repeated a size (the ends)
    for i, (size, seed) in enumerate(runs):
        k = sum(1 for s, _ in runs[:i] if s == size)
        assert seed == (k, k), runs  # the base spec's seeds are 0
    detail = client.get(f"/api/studies/{study_id}", headers=auth).json()
    trials = detail["trials"]
    assert all(t["reason"] for t in trials)  # why each size, in words
    assert [t["phase"] for t in trials[:3]] == ["initial"] * 3
    assert trials[-1]["phase"] == "adaptive" and trials[-1]["b_interval"] is not None


@SQLITE
def test_the_power_law_fits_the_tuned_trials_apart_from_the_untuned(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings
) -> None:
    rings = [500, 1000, 2000]
    base = {**BASE, "train": {"epochs": 3, "lr": 0.01}}
    untuned = {"name": "plain", "base": base, "grid": {"rpg.ring_size": rings}}
    r = client.post("/api/sweeps", json=untuned, headers=auth)
    assert r.status_code == 201, r.text
    for exp_id in r.json()["experiment_ids"]:
        ring = crud.get_experiment(session, exp_id).spec["rpg"]["ring_size"]  # type: ignore[union-attr]
        run_to_end(session, exp_id, {"best_val_acc": 1 - 2 * ring**-0.2, "backbone_params": ring})
    tuned = {**SWEEP, "name": "tuned", "base": base, "grid": {"rpg.ring_size": rings}}
    tuned["search"] = {**SWEEP["search"], "n_trials": 2, "pruner": "none"}
    r = client.post("/api/sweeps", json=tuned, headers=auth)
    assert r.status_code == 201, r.text
    best: dict[int, float] = {}
    for i, exp_id in enumerate(r.json()["experiment_ids"]):
        ring = crud.get_experiment(session, exp_id).spec["rpg"]["ring_size"]  # type: ignore[union-attr]
        value = 1 - (1.5 - 0.2 * (i % 2)) * ring**-0.2  # tuning helps: the better trial counts
        best[ring] = max(best.get(ring, 0.0), value)
        run_to_end(session, exp_id, {"best_val_acc": value, "backbone_params": ring})

    out = client.get("/api/analysis/power-law", headers=auth).json()
    series = {s["tuned"]: s for s in out["series"]}
    assert set(series) == {False, True}, [s["label"] for s in out["series"]]  # never split by lr
    assert sorted(p["params"] for p in series[False]["points"]) == rings
    tuned_points = {p["params"]: p for p in series[True]["points"]}
    assert sorted(tuned_points) == rings  # the best trial of each size, one point each
    assert {k: p["value"] for k, p in tuned_points.items()} == pytest.approx(best)
    assert all(p["trial"] is not None for p in tuned_points.values())
    assert "tuned" in series[True]["label"] and "train.lr" not in series[True]["conditions"]
    assert series[True]["fit"] is not None and series[False]["fit"] is not None
    assert series[True]["conditions_key"] != series[False]["conditions_key"]
    off = client.get("/api/analysis/power-law?tuned=false", headers=auth).json()
    assert [s["tuned"] for s in off["series"]] == [False]
