"""A model the worker stores carries what prediction needs: it predicts in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rpg_core
from rpg_core.data import load_datasets
from rpg_core.format import read_header
from rpg_core.spec import parse_spec
from worker.artifacts import save_outputs

from .conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_stored_model_has_inference_metadata_and_predicts(tmp_path: Path) -> None:
    spec = tiny_spec("stored", epochs=1)
    model = rpg_core.create_model(spec, num_classes=4, in_channels=3)
    files = save_outputs(tmp_path, 5, model, load_datasets(parse_spec(spec).data))
    path = tmp_path / files[0].path
    info = read_header(path).inference
    assert info is not None
    assert info["image_size"] == 8 and info["in_channels"] == 3 and len(info["std"]) == 3
    image = tmp_path / "photo.jpg"
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(image)
    out = subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", "predict", str(path), str(image), "--json"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)[0]
    assert 0 <= row["label"] < 4 and len(row["top"]) == 3 and row["name"] is None
