"""The device path: generation, the ring's gradient, training (bf16 autocast + channels_last on
CUDA) and loading .rpg files on a device.

Runs on CUDA when a GPU is present (``benchmarks/gpu_check.sh``); ``RPG_TEST_DEVICE=cpu`` runs
the same checks on the CPU (the script's ``--dry-run``, part of the suite); otherwise skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rpg_core import rings, train
from rpg_core.format import load_compact, save_compact
from rpg_core.models import create_model

DEVICE = os.environ.get("RPG_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
pytestmark = pytest.mark.skipif(
    not DEVICE or (DEVICE.startswith("cuda") and not torch.cuda.is_available()),
    reason="no CUDA device (RPG_TEST_DEVICE=cpu runs these on the CPU)",
)
SPEC = {"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 3000, "seed": 4}}


def test_generated_weights_on_the_device_are_the_cpu_ones() -> None:
    cpu = rings(create_model(SPEC))["global"]
    dev = rings(create_model(SPEC))["global"].to(DEVICE)
    for a, b in zip(cpu.generate_layers(), dev.generate_layers(), strict=True):
        assert torch.equal(a.detach(), b.detach().cpu())  # a gather is exact


def test_ring_gradient_on_the_device_matches_the_cpu() -> None:
    grads = []
    for device in ("cpu", DEVICE):
        torch.manual_seed(0)
        model = create_model(SPEC).to(device)
        x = torch.randn(4, 3, 16, 16).to(device)
        model(x).square().mean().backward()
        grads.append(rings(model)["global"].weight.grad.detach().cpu())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_training_runs_on_the_device() -> None:
    spec = {
        **SPEC,
        "data": {
            "dataset": "synthetic",
            "num_classes": 4,
            "num_train": 64,
            "num_val": 32,
            "image_size": 16,
        },  # fmt: skip
        "train": {"epochs": 2, "batch_size": 16, "device": DEVICE, "deterministic": False},
    }
    result = train(spec, step_interval_s=1e9)
    assert result.device.startswith(DEVICE.split(":")[0])
    assert result.status == "completed" and result.epochs_run == 2
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] * 1.5


def test_rpg_file_loads_onto_the_device(tmp_path: Path) -> None:
    model = create_model(SPEC).eval()
    save_compact(model, tmp_path / "m.rpg")
    on_device = load_compact(tmp_path / "m.rpg", map_location=DEVICE)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        got = on_device(x.to(DEVICE)).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
