"""Security, validation family: full-match patterns, strict types, and specs that can only fail
refused at submission (422 naming the field; nothing stored).

Before the fix ``"digits\\n"`` was accepted (the job then failed three times with IndexError),
``permute: "yes"`` and ``label_smoothing: false`` were coerced, and ``model.num_classes: 2`` on
digits, ``imagefolder:missing`` and synthetic data needing tens of GiB were queued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings

from .conftest import SPEC

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _refused(client: TestClient, auth: dict[str, str], spec: dict[str, Any]) -> list[str]:
    r = client.post("/api/experiments", json=spec, headers=auth)
    assert r.status_code == 422, r.text
    assert client.get("/api/experiments").json()["items"] == []  # nothing stored
    return [e["field"] for e in r.json()["detail"]]


def _with(section: str, **fields: Any) -> dict[str, Any]:
    return {**SPEC, section: {**SPEC.get(section, {}), **fields}}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_with("data", dataset="digits\n"), "data.dataset"),
        (_with("data", dataset="imagefolder:x\n"), "data.dataset"),
        ({**SPEC, "rpg": None, "prune": {"source": "model.rpg\n"}}, "prune.source"),
        (_with("rpg", scope={"layer1.*": "ring\n"}), "rpg.scope"),
        (_with("train", device="cuda:0\n"), "train.device"),
        ({**SPEC, "name": "x\n"}, "name"),
    ],
)
def test_patterns_match_the_whole_value(
    client: TestClient, auth: dict[str, str], spec: dict[str, Any], field: str
) -> None:
    assert any(f.startswith(field) for f in _refused(client, auth, spec))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_with("rpg", permute="yes"), "rpg.permute"),
        (_with("rpg", reflect="off"), "rpg.reflect"),
        (_with("rpg", linear=1), "rpg.linear"),
        (_with("rpg", seed="3"), "rpg.seed"),
        (_with("data", augment="off"), "data.augment"),
        (_with("train", label_smoothing=False), "train.label_smoothing"),
        (_with("train", deterministic="true"), "train.deterministic"),
        (_with("train", epochs="2"), "train.epochs"),
        (_with("train", epochs=2.5), "train.epochs"),
        (_with("train", lr="0.1"), "train.lr"),
        (_with("train", milestones=[True]), "train.milestones.0"),
        (_with("model", width=True), "model.width"),
        (_with("model", num_classes="10"), "model.num_classes"),
        ({**SPEC, "rpg": None, "prune": {"source": 1, "fraction": "0.3"}}, "prune.fraction"),
    ],
)
def test_types_are_strict(
    client: TestClient, auth: dict[str, str], spec: dict[str, Any], field: str
) -> None:
    assert field in _refused(client, auth, spec)


def test_numbers_stay_numbers(client: TestClient, auth: dict[str, str]) -> None:
    spec = _with("train", lr=1, label_smoothing=0, epochs=2)  # an int where a float goes is fine
    assert client.post("/api/experiments", json=spec, headers=auth).status_code == 201


def test_too_few_classes_for_the_dataset(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/api/experiments", json=_with("model", num_classes=2), headers=auth)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["field"] == "model.num_classes" and "digits has 10 classes" in err["message"]
    spec = {**_with("model", num_classes=3), "data": {"dataset": "synthetic", "num_classes": 5}}
    assert "model.num_classes" in _refused(client, auth, spec)
    ok = {**_with("model", num_classes=12)}
    assert client.post("/api/experiments", json=ok, headers=auth).status_code == 201


def test_in_channels_must_match_the_dataset(client: TestClient, auth: dict[str, str]) -> None:
    """Before: ``in_channels: 64`` on digits (1 channel) was accepted and failed 3 times."""
    r = client.post("/api/experiments", json=_with("model", in_channels=64), headers=auth)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["field"] == "model.in_channels"
    assert "digits has 1 channel" in err["message"] and "must be 1" in err["message"]
    pose = {"task": "pose", "model": {"arch": "hourglass", "in_channels": 1},
            "data": {"dataset": "synthetic-pose"}}  # fmt: skip
    assert _refused(client, auth, pose) == ["model.in_channels"]
    ok = _with("model", in_channels=1)
    assert client.post("/api/experiments", json=ok, headers=auth).status_code == 201


def test_mpii_and_scene_folders_must_exist(settings: Settings, tmp_path: Path) -> None:
    """Before: ``mpii:<name>`` / ``scenes:<name>`` that do not exist were accepted."""
    from api.validation import MPII_FILE as API_MPII_FILE
    from rpg_core.data.pose import MPII_FILE

    assert API_MPII_FILE == MPII_FILE
    root = tmp_path / "data-root"
    (root / "people" / "images").mkdir(parents=True)
    (root / "people" / MPII_FILE).write_text("[]")
    (root / "no-json" / "images").mkdir(parents=True)
    for split in ("train", "val"):
        (root / "rooms" / split / "rgb").mkdir(parents=True)
    (root / "half" / "train").mkdir(parents=True)
    app = create_app(settings.model_copy(update={"data_root": root}))
    with TestClient(app) as c:
        from api import crud

        with app.state.sessionmaker() as session:
            auth = {"Authorization": f"Bearer {crud.create_token(session, 'v')}"}

        def post(task: str, arch: str, dataset: str) -> Any:
            spec = {"task": task, "model": {"arch": arch}, "data": {"dataset": dataset,
                    "train_subset": 8, "val_subset": 4}, "train": {"epochs": 1}}  # fmt: skip
            return c.post("/api/experiments", json=spec, headers=auth)

        for task, arch, dataset, need in [
            ("pose", "hourglass", "mpii:missing", MPII_FILE),
            ("pose", "hourglass", "mpii:no-json", MPII_FILE),
            ("multitask", "encdec", "scenes:missing", "train/"),
            ("multitask", "encdec", "scenes:half", "val/"),
        ]:
            r = post(task, arch, dataset)
            assert r.status_code == 422, (dataset, r.text)
            [err] = r.json()["detail"]
            assert err["field"] == "data.dataset" and dataset in err["message"]
            assert need in err["message"] and str(root) not in err["message"]
        assert post("pose", "hourglass", "mpii:people").status_code == 201
        assert post("multitask", "encdec", "scenes:rooms").status_code == 201


def _image_folder(root: Path, name: str, classes: int) -> None:
    for split in ("train", "val"):
        for k in range(classes):
            (root / name / split / f"c{k}").mkdir(parents=True)


def test_data_must_exist_under_the_data_root(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "data-root"
    _image_folder(root, "pets", 3)
    _image_folder(root, "one", 1)
    s = settings.model_copy(update={"data_root": root})
    app = create_app(s)
    with TestClient(app) as c:
        from api import crud

        with app.state.sessionmaker() as session:
            auth = {"Authorization": f"Bearer {crud.create_token(session, 'v')}"}
        for dataset in ("imagefolder:missing", "imagefolder:one", "cifar10", "cifar100"):
            r = c.post("/api/experiments", json=_with("data", dataset=dataset), headers=auth)
            assert r.status_code == 422, dataset
            [err] = r.json()["detail"]
            assert err["field"] == "data.dataset" and str(root) not in err["message"]
        prune = {**SPEC, "rpg": None, "prune": {"source": "gone.rpg"}}
        r = c.post("/api/experiments", json=prune, headers=auth)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "prune.source"
        pets = _with("data", dataset="imagefolder:pets")
        assert c.post("/api/experiments", json=pets, headers=auth).status_code == 201
        few = {**pets, "model": {"arch": "resnet18", "num_classes": 2}}
        r = c.post("/api/experiments", json=few, headers=auth)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "model.num_classes"
    off = settings.model_copy(update={"data_root": root, "check_data_on_submit": False})
    with TestClient(create_app(off)) as c:
        r = c.post("/api/experiments", json=_with("data", dataset="cifar10"), headers=auth)
        assert r.status_code == 201


@pytest.mark.parametrize(
    "data",
    [
        {"dataset": "synthetic", "num_train": 1_000_000, "num_val": 1_000_000, "image_size": 24},
        {"dataset": "digits", "image_size": 1024},
    ],
)
def test_data_over_the_memory_budget(
    client: TestClient, auth: dict[str, str], data: dict[str, Any]
) -> None:
    r = client.post("/api/experiments", json={**SPEC, "data": data}, headers=auth)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["field"].startswith(("data.", "train.")), err
    assert "GiB" in err["message"] and "of memory" in err["message"]
    assert "data.image_size" in err["message"]


def test_sweep_errors_name_the_experiment(client: TestClient, auth: dict[str, str]) -> None:
    sweep = {
        "name": "s",
        "base": {**SPEC, "name": "b"},
        "grid": {"model.num_classes": [10, 2]},
    }
    r = client.post("/api/sweeps", json=sweep, headers=auth)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["detail"]] == ["experiments[1].model.num_classes"]
    assert client.get("/api/sweeps").json()["items"] == []
