"""A model the worker stores carries what prediction needs: it predicts in a fresh process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rpg_core
from api.storage import ArtifactStore, LocalStore, S3Store, StoreConfig
from rpg_core.data import load_datasets
from rpg_core.format import read_header
from rpg_core.spec import parse_spec
from worker.artifacts import save_outputs

from .conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", pytest.param("s3", marks=pytest.mark.e2e)])
def test_the_stored_model_has_inference_metadata_and_predicts(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    spec = tiny_spec("stored", epochs=1)
    model = rpg_core.create_model(spec, num_classes=4, in_channels=3)
    store: ArtifactStore = LocalStore(tmp_path)
    if backend == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        store = S3Store(StoreConfig(f"s3://{bucket}/m", tmp_path, endpoint_url=server.url))
    files = save_outputs(tmp_path, 5, model, load_datasets(parse_spec(spec).data), store)
    assert store.size(files[0].path) == files[0].size
    path = tmp_path / "downloaded.rpg"
    store.get_file(files[0].path, path)  # what a reader gets from the store
    assert hashlib.sha256(path.read_bytes()).hexdigest() == files[0].sha256
    assert (tmp_path / files[0].path).exists() == (backend == "local")  # S3: no scratch left
    info = read_header(path).inference
    assert info is not None
    assert info["image_size"] == 8 and info["in_channels"] == 3 and len(info["std"]) == 3
    if backend != "local":
        return  # the same bytes (checked above) predict as the local backend's test shows
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
