"""The runner in-process against real PostgreSQL: the stored result is the contract, and its
similarity histogram comes from the engine's callback (the datasets are loaded once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import rpg_core.data
import rpg_core.training.engine
from api import crud
from rpg_core.analysis import feature_similarity
from rpg_core.data import BatchLoader
from rpg_core.format import load_compact
from rpg_core.spec import parse_spec
from rpg_core.training.result import ExperimentResult
from worker.config import WorkerSettings
from worker.runner import run_experiment

from .conftest import Stack, tiny_spec


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_a_run_stores_the_contract_and_loads_its_datasets_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rpg_core.data.load_datasets
    loads: list[Any] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(rpg_core.data, "load_datasets", counting)
    monkeypatch.setattr(rpg_core.training.engine, "load_datasets", counting)
    spec = tiny_spec("contract", epochs=1)
    exp_id = stack.submit(spec)
    wcfg = WorkerSettings(similarity_images=32)
    assert run_experiment(stack.settings, wcfg, exp_id, worker="in-process:1") == "succeeded"
    assert len(loads) == 1  # the engine's; the histogram and the model file reuse its datasets

    got = stack.client.get(f"/api/experiments/{exp_id}", headers=stack.auth).json()
    result = ExperimentResult.model_validate(got["result"])
    assert result.attempt == 1 and result.epochs_run == 1 and result.checkpoint is None
    assert got["val_acc"] == result.val_acc == result.final_val_acc
    assert got["backbone_params"] == result.backbone_params == result.params["backbone"]

    # the histogram is the one the worker computed before (layer3, `similarity_images` images
    # of the validation set), on the stored model and the datasets loaded afresh
    assert result.similarity is not None
    model = load_compact(Path(stack.settings.artifact_dir) / crud.artifact_relpath(exp_id))
    data = real(parse_spec(spec).data)
    batches = BatchLoader(data, "val", batch_size=32).epoch(0)
    expected = feature_similarity(model, batches, layer="layer3", max_images=32).as_dict()
    stored = result.similarity.model_dump()
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == (pytest.approx(value) if key in {"mean", "median"} else value), key
    assert result.similarity.images == 32 and result.similarity.layer == "layer3"
