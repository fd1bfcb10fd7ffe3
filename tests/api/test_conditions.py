"""Comparable by construction (issue 22): the power law and the comparison table pool only runs
of the same conditions (rpg_core.spec.conditions, stored with each run at submission)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.models import Experiment

from .conftest import run_to_end

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

FASHION: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.25},
    "data": {"dataset": "fashion-mnist", "train_subset": 3000, "image_size": 14},
    "train": {"epochs": 3},
}


def _spec(ring: int, seed: int = 0, **over: dict[str, Any]) -> dict[str, Any]:
    spec = {k: dict(v) for k, v in FASHION.items()}
    for k, v in over.items():
        spec[k] = {**spec.get(k, {}), **v}
    return {**spec, "name": f"r{ring}", "rpg": {"ring_size": ring}, "train": {
        **spec["train"], "seed": seed}}  # fmt: skip


def _run(
    client: TestClient, auth: dict[str, str], session: Session, spec: dict[str, Any], acc: float,
    params: int, **result: Any,
) -> int:  # fmt: skip
    r = client.post("/api/experiments", json=spec, headers=auth)
    assert r.status_code == 201, r.text
    exp_id: int = r.json()["id"]
    run_to_end(session, exp_id, {"best_val_acc": acc, "val_acc": acc, "backbone_params": params,
                                 "total_params": params + 500, **result})  # fmt: skip
    return exp_id


def _law(p: int, a: float, b: float) -> float:
    return 1 - a * p**-b


CONDITIONS = {  # label -> (spec overrides, a, b, sizes)
    "short": ({}, 0.9, 0.25, (1000, 2000, 4000, 8000)),
    "longer": ({"train": {"epochs": 10}}, 0.6, 0.2, (1000, 4000, 16000)),
    "more data": ({"data": {"train_subset": 6000}}, 0.8, 0.3, (1000, 4000, 16000)),
}


def _seed_three(client: TestClient, auth: dict[str, str], session: Session) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    for label, (over, a, b, sizes) in CONDITIONS.items():
        for p in sizes:
            ids.setdefault(label, []).append(
                _run(client, auth, session, _spec(p, **over), _law(p, a, b), p)
            )
    return ids


def test_three_conditions_are_three_series_with_their_conditions(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    ids = _seed_three(client, auth, session)
    stored = session.get(Experiment, ids["short"][0])
    assert stored is not None and stored.conditions_key and stored.conditions
    assert stored.conditions["train.epochs"] == 3
    body = client.get("/api/analysis/power-law", params={"target": [0.95]}).json()
    assert len(body["series"]) == 3
    by_ids = {tuple(p["experiment_id"] for p in s["points"]): s for s in body["series"]}
    assert set(by_ids) == {tuple(v) for v in ids.values()}
    for label, (_, a, b, _sizes) in CONDITIONS.items():
        s = by_ids[tuple(ids[label])]
        assert s["fit"]["b"] == pytest.approx(b, rel=1e-6)  # each its own law, not a mixture
        assert s["fit"]["a"] == pytest.approx(a, rel=1e-6)
        assert s["conditions"]["data.dataset"] == "fashion-mnist"
        assert "rpg.ring_size" not in s["conditions"] and "train.seed" not in s["conditions"]
        assert s["description"].startswith("fashion-mnist, ")
    assert by_ids[tuple(ids["longer"])]["conditions"]["train.epochs"] == 10
    assert "6,000 training images" in by_ids[tuple(ids["more data"])]["description"]
    keys = {s["conditions_key"] for s in body["series"]}
    assert len(keys) == 3 and body["focus"] in keys
    # the summary names what was pooled and what was left apart
    assert body["summary"].startswith(f"{len(body['series'][0]['points'])} runs: fashion-mnist")
    assert "other runs differ in" in body["summary"] and "never pooled" in body["summary"]
    assert "epochs (10)" in body["summary"] or "epochs (3)" in body["summary"]
    assert "training images (" in body["summary"]
    # series of the same arch, scope and dataset are named by what sets them apart
    labels = {s["label"] for s in body["series"]}
    assert len(labels) == 3 and all("epochs" in lb and "training images" in lb for lb in labels)
    # the readable prediction never spells out an exploded number
    for s in body["series"]:
        text = s["fit"]["params_for_text"]["0.95"]
        assert text is None or len(text) < 80


def test_a_run_of_other_conditions_never_changes_a_fit(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    ids = _seed_three(client, auth, session)
    before = {
        s["conditions_key"]: (s["fit"], [p["experiment_id"] for p in s["points"]])
        for s in client.get("/api/analysis/power-law").json()["series"]
    }
    # the case: another subset, another length, at a size that would bend a mixed fit
    _run(client, auth, session, _spec(2000, data={"train_subset": 500}, train={"epochs": 1}),
         0.2, 2000)  # fmt: skip
    after = client.get("/api/analysis/power-law").json()
    assert len(after["series"]) == 4
    for s in after["series"]:
        if s["conditions_key"] in before:
            assert (s["fit"], [p["experiment_id"] for p in s["points"]]) == before[
                s["conditions_key"]
            ]
    assert sorted(len(v) for v in ids.values()) == [3, 3, 4]


def test_seeds_are_replicates_shown_as_mean_and_spread_and_all_fitted(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    accs = {1000: [0.50, 0.54], 4000: [0.70], 16000: [0.80, 0.82, 0.84]}
    for p, values in accs.items():
        for seed, acc in enumerate(values):
            _run(client, auth, session, _spec(p, seed=seed), acc, p)
    (series,) = client.get("/api/analysis/power-law").json()["series"]
    assert len(series["points"]) == 6  # every replicate is a point of the fit
    sizes = {s["params"]: s for s in series["sizes"]}
    assert [sizes[p]["n"] for p in (1000, 4000, 16000)] == [2, 1, 3]
    assert sizes[1000]["mean"] == pytest.approx(0.52)
    assert (sizes[16000]["min"], sizes[16000]["max"]) == (pytest.approx(0.80), pytest.approx(0.84))
    assert sizes[16000]["std"] == pytest.approx((0.02**2 * 2 / 3) ** 0.5)
    from rpg_core.analysis.power_law import fit_power_law

    flat = [(p, a) for p, values in accs.items() for a in values]
    law = fit_power_law([p for p, _ in flat], [a for _, a in flat], bootstrap=0)
    assert series["fit"]["b"] == pytest.approx(law.b, rel=1e-9)


POSE: dict[str, Any] = {
    "task": "pose",
    "data": {"dataset": "synthetic-pose", "num_train": 64, "num_val": 32, "image_size": 32},
    "model": {"stacks": 2, "sharing": "rpg", "width": 0.25},
    "train": {"epochs": 1, "batch_size": 16},
}


def _pose(
    client: TestClient, auth: dict[str, str], session: Session, pckh: float,
    flags: str | None = None, train: dict[str, Any] | None = None, **model: Any,
) -> int:  # fmt: skip
    body = {
        **POSE,
        "model": {**POSE["model"], **model},
        "train": {**POSE["train"], **(train or {})},
    }
    r = client.post("/api/experiments", json=body, headers=auth)
    assert r.status_code == 201, r.text
    exp_id: int = r.json()["id"]
    run_to_end(session, exp_id, {
        "task": "pose", "metrics": {"pckh": pckh}, "primary_metric": "pckh",
        "primary_value": pckh, "backbone_params": 1000, "total_params": 1200,
        **({"flags": flags} if flags else {}),
    })  # fmt: skip
    return exp_id


def test_a_table_pools_only_comparable_runs_and_never_ranks_a_flagged_cell(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    _pose(client, auth, session, 0.40, sharing="none")
    _pose(client, auth, session, 0.50, sharing="rpg")
    _pose(client, auth, session, 0.52, sharing="rpg", train={"seed": 1})
    flagged = _pose(client, auth, session, 0.90, flags="near-chance", sharing="full")
    mixed_bad = _pose(client, auth, session, 0.01, flags="diverged", sharing="none")
    longer = _pose(client, auth, session, 0.95, sharing="rpg", train={"epochs": 3})
    body = client.get("/api/analysis/comparison", params={"task": "pose"}).json()
    assert body["runs"] == 5 and longer not in [
        i for c in body["cells"] for i in c["experiment_ids"]
    ]
    cells = {c["sharing"]: c for c in body["cells"]}
    # the full cell holds only a flagged run: shown, badged, never the best
    assert cells["full"]["flagged"] is True and cells["full"]["flagged_ids"] == [flagged]
    assert cells["full"]["best"] == []
    assert cells["rpg"]["best"] == ["pckh"] and body["best"]["pckh"] == [
        {"sharing": "rpg", "stacks": 2}
    ]
    # a flagged run beside clean ones is left out of the cell's numbers and named
    assert cells["none"]["flagged"] is False and cells["none"]["flagged_ids"] == [mixed_bad]
    assert cells["none"]["metrics"]["pckh"]["mean"] == pytest.approx(0.40)
    assert cells["rpg"]["metrics"]["pckh"]["n"] == 2
    assert cells["rpg"]["backbone_params"] == 1000 and cells["rpg"]["total_params"] == 1200
    # the run of other epochs is a table of its own, named
    (other,) = body["others"]
    assert other["runs"] == 1 and "epochs" in other["differs"]
    assert "1 other run differs in epochs (3)" in body["summary"]
    assert "in a table of its own" in body["summary"]
    alone = client.get(
        "/api/analysis/comparison", params={"task": "pose", "conditions": other["conditions_key"]}
    ).json()
    assert [c["experiment_ids"] for c in alone["cells"]] == [[longer]]
    r = client.get("/api/analysis/comparison", params={"task": "pose", "conditions": "0" * 16})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "conditions"


def test_a_sweep_says_whether_it_has_a_table(client: TestClient, auth: dict[str, str]) -> None:
    rpg_and_plain = {
        "name": "demo",
        "base": {**FASHION, "rpg": {"ring_size": 1000}},
        "grid": {"rpg.ring_size": [1000, 4000]},
        "extra": [{"name": "plain", "rpg": None}],
    }
    variants = {"name": "t4", "base": POSE, "grid": {"model.sharing": ["none", "rpg"]}}
    out = {}
    for sweep in (rpg_and_plain, variants):
        r = client.post("/api/sweeps", json=sweep, headers=auth)
        assert r.status_code == 201, r.text
        out[sweep["name"]] = client.get(f"/api/sweeps/{r.json()['id']}", headers=auth).json()
    assert out["demo"]["compares_variants"] is False
    assert out["demo"]["varies"] == ["rpg", "rpg.ring_size"]
    assert out["t4"]["compares_variants"] is True and out["t4"]["varies"] == ["model.sharing"]
    listed = {s["name"]: s for s in client.get("/api/sweeps", headers=auth).json()["items"]}
    assert listed["demo"]["compares_variants"] is False and listed["t4"]["compares_variants"]


def test_the_summary_names_plain_networks_as_such() -> None:
    """Seen on the demo's page: plain baselines were said to 'differ in RPG (default)'."""
    from api.analysis import summary_of
    from rpg_core.spec.conditions import conditions_of

    base = {
        "model": {"arch": "resnet18", "width": 0.25},
        "data": {"dataset": "fashion-mnist", "train_subset": 3000, "image_size": 14},
        "train": {"epochs": 3},
    }
    ringed = conditions_of({**base, "rpg": {"ring_size": 500}})
    plain = conditions_of(base)
    text = summary_of(ringed, 3, [(plain, 2)])
    assert "2 other runs differ in RPG (none: plain networks)" in text, text
    assert "(default)" not in text


def test_the_summary_names_ringed_runs_against_a_plain_focus() -> None:
    from api.analysis import summary_of
    from rpg_core.spec.conditions import conditions_of

    base = {"model": {"arch": "resnet18"}, "data": {"dataset": "digits"}, "train": {"epochs": 2}}
    text = summary_of(
        conditions_of(base), 2, [(conditions_of({**base, "rpg": {"ring_size": 9}}), 1)]
    )
    assert "1 other run differs in RPG (a ring)" in text, text
