"""Prediction for the dense tasks (issue 22: ``rpg predict`` on a pose or multitask ``.rpg``
dumped ``'list' object has no attribute 'float'``): keypoints in the image's pixels, depth and
normal maps written as .npy arrays and .png pictures, and a classifier's ``predict`` that names
the task and the function to use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import rpg_core
from rpg_core import RPGConfigError
from rpg_core.cli import main
from rpg_core.evaluate.predict import preprocess
from rpg_core.evaluate.predict_tasks import input_to_image, predict_keypoints, predict_maps
from rpg_core.format import save_compact
from rpg_core.models import create_model

ROOT = Path(__file__).resolve().parents[3]
SIZE = 32
INFO: dict[str, Any] = {
    "dataset": "synthetic-pose",
    "image_size": SIZE,
    "in_channels": 3,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "classes": None,
    "fit": "resize",
}


def _blob(width: int, height: int, x0: float, y0: float, sigma: float = 2.5) -> np.ndarray:
    """An RGB uint8 image, black but for a Gaussian spot centred on (x0, y0)."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    g = np.exp(-((u - x0) ** 2 + (v - y0) ** 2) / (2 * sigma * sigma))
    return np.repeat((255 * g).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(t: torch.Tensor) -> tuple[float, float]:
    w = (t - t.min()).double()
    v, u = torch.meshgrid(torch.arange(t.shape[0]), torch.arange(t.shape[1]), indexing="ij")
    return float((w * u).sum() / w.sum()), float((w * v).sum() / w.sum())


@pytest.mark.parametrize(
    ("width", "height", "x0", "y0", "fit"),
    [(60, 40, 31.3, 17.8, "resize"), (40, 64, 12.0, 30.5, "resize"), (28, 28, 9.0, 20.0, "pad")],
)
def test_the_fitting_is_inverted_exactly_as_preprocess_fits(
    width: int, height: int, x0: float, y0: float, fit: str
) -> None:
    """A spot's centre in the model's input, mapped back, is the spot's centre in the image."""
    info = {**INFO, "fit": fit}
    x = preprocess([_blob(width, height, x0, y0)], info)[0, 0]
    geometry = input_to_image(width, height, info)
    got = geometry.point(*_centroid(x))
    assert got == pytest.approx((x0, y0), abs=0.15)
    left, top, right, bottom = geometry.box(SIZE)
    if fit == "pad":
        assert (left, top, right, bottom) == (-2.0, -2.0, 30.0, 30.0)  # 28 px padded by 2
    else:  # the centre square of the image (to a resized pixel), its short side whole
        short = min(width, height)
        assert right - left == pytest.approx(short, abs=1.5) == bottom - top
        assert (left + right) / 2 == pytest.approx(width / 2, abs=1.0)
        assert (top + bottom) / 2 == pytest.approx(height / 2, abs=1.0)


class SpotFinder(nn.Module):
    """A 'pose model' whose 16 heatmaps are the input's brightness (the task's stride 2), so
    every joint lies on the image's bright spot; two stacks, as an hourglass returns."""

    def __init__(self) -> None:
        super().__init__()
        self.rpg_spec = {"task": "pose", "model": {"arch": "hourglass"}, "rpg": None}

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        hm = nn.functional.avg_pool2d(x[:, :1], 2) * 20
        return [{"heatmaps": -hm.repeat(1, 16, 1, 1)}, {"heatmaps": hm.repeat(1, 16, 1, 1)}]


def test_keypoints_are_in_the_pixels_of_the_image_as_given() -> None:
    model = SpotFinder()
    images = [_blob(60, 40, 35.0, 22.0), _blob(48, 80, 20.0, 51.0)]
    results = predict_keypoints(model, images, inference=INFO)
    assert [(r.width, r.height) for r in results] == [(60, 40), (48, 80)]
    for r, truth in zip(results, [(35.0, 22.0), (20.0, 51.0)], strict=True):
        assert len(r.keypoints) == 16
        for k in r.keypoints:  # the last stack (the first one's peak is elsewhere)
            assert (k.x, k.y) == pytest.approx(truth, abs=1.6), k
            assert 0.0 < k.score <= 1.0
    assert results[0].as_dict()["keypoints"][0]["x"] == results[0].keypoints[0].x


def _saved(task: str, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    spec = {"task": task, "model": {"width": 0.25, "stacks": 2, "sharing": "rpg"}}
    model = create_model(spec, num_classes=16 if task == "pose" else 4).eval()
    path = tmp_path / f"{task}.rpg"
    names = ["r_ankle", *(f"j{i}" for i in range(1, 16))] if task == "pose" else None
    save_compact(model, path, inference={**INFO, "classes": names})
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", "predict", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


def test_rpg_predict_on_a_pose_file_prints_named_keypoints_inside_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saved("pose", tmp_path)
    image = tmp_path / "person.png"
    Image.fromarray(_blob(50, 70, 20.0, 30.0)).save(image)
    out = _cli(str(path), str(image), "--json")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    (row,) = json.loads(out.stdout)
    assert row["image"] == str(image) and (row["width"], row["height"]) == (50, 70)
    joints = row["keypoints"]
    assert len(joints) == 16 and joints[0]["name"] == "r_ankle"
    # the model covers the centre 50x50 square of the 50x70 image: rows 10..60
    assert all(-0.5 <= j["x"] <= 49.5 and 9.5 <= j["y"] <= 59.5 for j in joints), joints
    assert main(["predict", str(path), str(image)]) == 0  # the text form, in this process
    text = capsys.readouterr().out
    assert f"{image} (50x70): joint (x, y) in pixels, score" in text and "  r_ankle: (" in text


def test_rpg_predict_on_a_multitask_file_writes_depth_and_normal_arrays_and_pictures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _saved("multitask", tmp_path)
    images = []
    for folder in ("a", "b"):  # two images of one name: numbered, not overwritten
        (tmp_path / folder).mkdir()
        images.append(tmp_path / folder / "room.png")
        Image.fromarray(_blob(40, 30, 10.0, 10.0)).save(images[-1])
    out_dir = tmp_path / "maps"
    assert main(["predict", str(path), *map(str, images), "-o", str(out_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"room-{i}.{k}" for i in (1, 2) for k in ("depth.npy", "normal.npy", "depth.png",
                                                   "normal.png")
    )  # fmt: skip
    depth = np.load(out_dir / "room-1.depth.npy", allow_pickle=False)
    normal = np.load(out_dir / "room-1.normal.npy", allow_pickle=False)
    assert depth.shape == (SIZE, SIZE) and depth.dtype == np.float32
    assert normal.shape == (3, SIZE, SIZE) and normal.dtype == np.float32
    assert np.allclose(np.linalg.norm(normal, axis=0), 1.0, atol=1e-4)
    assert rows[0]["depth_min"] == pytest.approx(float(depth.min()))
    # the centre square of 40x30: resized to 43x32, columns 5..37 cropped, in image pixels
    assert rows[0]["box"] == [round(5 * 40 / 43, 2), 0.0, round(37 * 40 / 43, 2), 30.0]
    with Image.open(out_dir / "room-1.depth.png") as pic:
        assert pic.size == (SIZE, SIZE) and pic.mode == "RGB"
    with Image.open(out_dir / "room-2.normal.png") as pic:
        expected = np.clip((normal + 1) / 2 * 255, 0, 255).round()
        assert pic.size == (SIZE, SIZE)  # room-2 is the same image: the same maps
        assert np.abs(np.asarray(pic).transpose(2, 0, 1) - expected).max() <= 1


def test_the_maps_match_the_library_and_a_file_is_refused_as_the_wrong_task(
    tmp_path: Path,
) -> None:
    pose, multitask = _saved("pose", tmp_path), _saved("multitask", tmp_path)
    image = _blob(32, 32, 16.0, 16.0)
    (maps,) = predict_maps(multitask, image)
    with torch.no_grad():
        last = rpg_core.load_compact(multitask)(preprocess([image], INFO))[-1]
    assert np.allclose(maps.depth, last["depth"][0, 0].numpy(), atol=1e-6)
    with pytest.raises(RPGConfigError, match=r"is a pose model: predict\(\) classifies images; "
                                             r"use rpg_core.predict_keypoints"):  # fmt: skip
        rpg_core.predict(pose, image)
    with pytest.raises(RPGConfigError, match=r"is a multitask model.*rpg_core.predict_maps"):
        rpg_core.predict(multitask, image)
    with pytest.raises(RPGConfigError, match=r"is a pose model, not multitask: use "
                                             r"rpg_core.predict_keypoints"):  # fmt: skip
        predict_maps(pose, image)
