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


def test_a_pruned_run_stores_a_sparse_model_file_and_its_cost(stack: Stack) -> None:
    """method prune-global through the worker: the model file is the sparse .rpg (smaller than
    the dense one, rebuilt bit for bit), the stored file's size is the file's, and the result
    records the method, the budget, the backbone it has and the whole training cost."""
    from rpg_core.format import read_header, save_compact
    from rpg_core.training.global_pruning import nonzero_backbone

    spec = {
        **tiny_spec("pruned", epochs=1, ring=None),
        "method": {"name": "prune-global", "budget": 0.1, "rounds": 2, "finetune_epochs": 1},
    }
    exp_id = stack.submit(spec)
    assert run_experiment(stack.settings, WorkerSettings(), exp_id, worker="in-process:1") == (
        "succeeded"
    )
    got = stack.client.get(f"/api/experiments/{exp_id}", headers=stack.auth).json()
    result = ExperimentResult.model_validate(got["result"])
    budget = round(0.1 * 174_336)
    assert result.method == "prune-global" and result.budget == budget
    assert result.backbone == result.backbone_params == budget == result.params["backbone"]
    assert result.total_epochs == 3 and result.total_wall_s and result.total_wall_s > 0
    path = Path(stack.settings.artifact_dir) / crud.artifact_relpath(exp_id)
    h = read_header(path)
    assert h.version == 2 and h.sparse  # the pruned weights are left out
    with stack.session() as s:
        stored = crud.get_file(s, exp_id, "model")
        assert stored is not None and stored.size == path.stat().st_size
    model = load_compact(path)
    assert nonzero_backbone(model) == budget
    dense = path.parent / "dense.rpg"
    save_compact(model, dense, sparse=False)
    assert path.stat().st_size < dense.stat().st_size / 2
    assert torch.equal(load_compact(dense).layer4[1].conv2.weight, model.layer4[1].conv2.weight)
