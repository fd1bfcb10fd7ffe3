"""Out-of-distribution evaluation (eval.ood): the built-in shifts, class-mapped folders, and
their scoring inside a run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rpg_core import RPGConfigError, RPGDataError
from rpg_core.data import Datasets, TensorImages, load_datasets
from rpg_core.evaluate.ood import (
    OCCLUSION_FILL,
    SEVERITY,
    Scorer,
    evaluate_ood,
    load_folder_set,
    mean_ood,
    shift_images,
    shifted_set,
)
from rpg_core.spec import SHIFTS, OODSetSpec, parse_spec

RANDOM_SHIFTS = ("rotation", "gaussian_noise", "occlusion", "translation")


@pytest.fixture(scope="module")
def digits() -> Datasets:
    return load_datasets({"dataset": "digits"})


def _val(d: Datasets) -> TensorImages:
    assert isinstance(d.val, TensorImages)
    return d.val


def test_every_shift_has_six_levels_and_a_spec_name() -> None:
    assert set(SEVERITY) == set(SHIFTS)
    for name, levels in SEVERITY.items():
        assert len(levels) == 6, name


@pytest.mark.parametrize("shift", SHIFTS)
def test_shift_is_deterministic_keeps_labels_and_grows_with_severity(
    shift: str, digits: Datasets
) -> None:
    val = _val(digits)
    x = val.x.float()
    prev = -1.0
    for sev in range(6):
        a = shifted_set(val, shift, sev, seed=3)
        b = shifted_set(val, shift, sev, seed=3)
        assert isinstance(a, TensorImages) and isinstance(b, TensorImages)
        assert torch.equal(a.x, b.x), f"{shift}@{sev} is not deterministic for a seed"
        assert torch.equal(a.y, val.y), "labels must not change"
        assert a.x.dtype == torch.uint8 and a.x.shape == val.x.shape
        change = float((a.x.float() - x).abs().mean())
        if sev == 0:
            assert torch.equal(a.x, val.x), "severity 0 must be the identity"
        assert change > prev, f"{shift}: severity {sev} changes the images no more than {sev - 1}"
        prev = change


@pytest.mark.parametrize("shift", RANDOM_SHIFTS)
def test_random_shifts_depend_on_the_seed_and_not_on_batching(shift: str, digits: Datasets) -> None:
    x = _val(digits).x[:64]
    whole = shift_images(x, shift, 4, seed=0)
    assert not torch.equal(whole, shift_images(x, shift, 4, seed=1))
    parts = torch.cat(
        [shift_images(x[i : i + 10], shift, 4, 0, start=i, total=64) for i in range(0, 64, 10)]
    )
    assert torch.equal(whole, parts), "image i must be shifted alike whatever the batch"


def _dot(size: int, row: int, col: int) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size, dtype=torch.uint8)
    x[0, 0, row - 1 : row + 2, col - 1 : col + 2] = 255
    return x


def _centroid(x: torch.Tensor) -> tuple[float, float]:
    w = x[0, 0].float()
    rows, cols = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    return float((w * rows).sum() / w.sum()), float((w * cols).sum() / w.sum())


@pytest.mark.parametrize("sev", range(1, 6))
def test_rotation_turns_by_its_angle(sev: int) -> None:
    size = 64
    x = _dot(size, size // 2, size // 2 + 20)  # 20 px right of the centre
    out = shift_images(x, "rotation", sev, seed=0)
    cy, cx = _centroid(out)
    c = (size - 1) / 2
    angle = abs(math.degrees(math.atan2(cy - c, cx - c)))
    assert angle == pytest.approx(SEVERITY["rotation"][sev], abs=2.0)


@pytest.mark.parametrize("sev", range(1, 6))
def test_translation_moves_by_its_fraction(sev: int) -> None:
    size = 64
    x = _dot(size, 32, 32)
    out = shift_images(x, "translation", sev, seed=5)
    cy, cx = _centroid(out)
    moved = math.hypot(cy - 32, cx - 32)
    assert moved == pytest.approx(SEVERITY["translation"][sev] * size, abs=1.0)


@pytest.mark.parametrize("sev", range(1, 6))
def test_occlusion_covers_its_square(sev: int) -> None:
    x = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    out = shift_images(x, "occlusion", sev, seed=2)
    side = round(SEVERITY["occlusion"][sev] * 32)
    covered = (out[:, 0] == OCCLUSION_FILL).sum(dim=(1, 2))
    assert covered.tolist() == [side * side] * 8
    assert torch.equal(out[:, 0], out[:, 2]), "the square covers every channel"


@pytest.mark.parametrize("sev", range(1, 6))
def test_blur_spreads_an_impulse_by_its_sigma(sev: int) -> None:
    x = torch.zeros(1, 1, 64, 64, dtype=torch.uint8)
    x[0, 0, :, 32] = 255  # a line: its blurred profile is the 1-d kernel, scaled by 255
    out = shift_images(x, "gaussian_blur", sev, seed=0).float()[0, 0]
    cols = torch.arange(64).float()
    profile = out[32]
    var = float((profile * (cols - 32) ** 2).sum() / profile.sum())
    sigma = SEVERITY["gaussian_blur"][sev] * 64 / 32
    assert math.sqrt(var) == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("sev", [1, 2, 3])
def test_noise_has_its_standard_deviation(sev: int) -> None:
    x = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    out = shift_images(x, "gaussian_noise", sev, seed=0).float()
    std = float(((out - 128) / 255).std())
    assert std == pytest.approx(SEVERITY["gaussian_noise"][sev], rel=0.05)


@pytest.mark.parametrize("sev", range(1, 6))
def test_contrast_scales_the_spread(sev: int) -> None:
    x = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    x = x.to(torch.uint8)
    out = shift_images(x, "contrast", sev, seed=0).float()
    ratio = out.std(dim=(2, 3)) / x.float().std(dim=(2, 3))
    assert torch.allclose(ratio, torch.tensor(SEVERITY["contrast"][sev]), atol=0.02)


@pytest.mark.parametrize("sev", range(1, 6))
def test_inversion_blends_towards_the_negative(sev: int) -> None:
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    out = shift_images(x, "inversion", sev, seed=0).float()
    p = SEVERITY["inversion"][sev]
    want = x.float() + p * (255 - 2 * x.float())
    assert float((out - want).abs().max()) <= 0.5 + 1e-4


# --- folders with a class map --------------------------------------------------------------------
def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _folder_root(tmp_path: Path, cmap: Any) -> Path:
    """A data root with ``mini/{zero: 2, one: 3, two: 1 images}`` and ``class-maps/m.json``."""
    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    for cls, n in (("zero", 2), ("one", 3), ("two", 1)):
        for i in range(n):
            _png(root / "mini" / cls / f"{i}.png", rng.integers(0, 255, (20, 24, 3), np.uint8))
    (root / "class-maps").mkdir()
    text = cmap if isinstance(cmap, str) else json.dumps(cmap)
    (root / "class-maps" / "m.json").write_text(text)
    return root


class _Always(nn.Module):
    """Predicts class ``k`` for every image; records the input shape it saw."""

    def __init__(self, k: int, classes: int = 10) -> None:
        super().__init__()
        self.k, self.classes = k, classes
        self.shape: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shape = tuple(x.shape[1:])
        out = torch.zeros(len(x), self.classes)
        out[:, self.k] = 1.0
        return out


def _scorer(model: nn.Module) -> Scorer:
    import contextlib

    return Scorer(model, 4, torch.device("cpu"), contextlib.nullcontext, lambda x: x)


def _folder(**kw: Any) -> OODSetSpec:
    return OODSetSpec(folder="mini", class_map="m", **kw)


def test_folder_scores_through_the_class_map(tmp_path: Path, digits: Datasets) -> None:
    root = _folder_root(tmp_path, {"zero": 0, "one": [1, "7"]})
    model = _Always(1)
    out = evaluate_ood(_scorer(model), digits, [_folder()], root)
    assert out == {"folder:mini": pytest.approx(3 / 5)}  # "two" is not mapped: skipped
    assert model.shape == (1, 32, 32), "folder images take the run's channels and size"
    out = evaluate_ood(_scorer(_Always(7)), digits, [_folder()], root)
    assert out["folder:mini"] == pytest.approx(3 / 5)  # one -> 1 or 7: both count
    out = evaluate_ood(_scorer(_Always(0)), digits, [_folder()], root)
    assert out["folder:mini"] == pytest.approx(2 / 5)
    fs = load_folder_set(_folder(max_images=4), root, digits)
    assert len(fs.images) == 4 and fs.folder_classes == ("one", "zero")


@pytest.mark.parametrize(
    ("cmap", "message"),
    [
        ("{not json", "not valid UTF-8 JSON"),
        ("[1, 2]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ({"zero": 10}, "10 is not a training class; use a class index 0..9"),
        ({"zero": "cat"}, "'cat' is not a training class"),
        ({"zero": []}, "empty list"),
        ({"zero": True}, "a name or an index"),
        ({"zeros": 0}, "names folder classes that mini/ does not have: zeros"),
    ],
)
def test_bad_class_map_is_named(tmp_path: Path, digits: Datasets, cmap: Any, message: str) -> None:
    root = _folder_root(tmp_path, cmap)
    with pytest.raises(RPGDataError, match="'m'") as err:
        load_folder_set(_folder(), root, digits)
    assert message in str(err.value)


def test_missing_folder_or_map_names_the_key(tmp_path: Path, digits: Datasets) -> None:
    root = _folder_root(tmp_path, {"zero": 0})
    with pytest.raises(RPGDataError, match=r"class_map 'nope'.*class-maps/nope\.json"):
        load_folder_set(OODSetSpec(folder="mini", class_map="nope"), root, digits)
    with pytest.raises(RPGDataError, match=r"folder 'absent'.*no folder absent/"):
        load_folder_set(OODSetSpec(folder="absent", class_map="m"), root, digits)


def test_paths_out_of_the_data_root_are_refused(tmp_path: Path, digits: Datasets) -> None:
    root = _folder_root(tmp_path, {"zero": 0})
    outside = tmp_path / "outside"
    (outside / "zero").mkdir(parents=True)
    (root / "escape").symlink_to(outside)
    with pytest.raises(RPGDataError, match="outside the data root"):
        load_folder_set(OODSetSpec(folder="escape", class_map="m"), root, digits)
    (outside / "evil.json").write_text(json.dumps({"zero": 0}))
    (root / "class-maps" / "evil.json").symlink_to(outside / "evil.json")
    with pytest.raises(RPGDataError, match="outside the data root"):
        load_folder_set(OODSetSpec(folder="mini", class_map="evil"), root, digits)
    for bad in ("../mini", "/etc", "a/b"):
        with pytest.raises(RPGConfigError, match=r"eval\.ood\.0\.folder"):
            parse_spec({"eval": {"ood": [{"folder": bad, "class_map": "m"}]}})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"shift": "rotation", "folder": "x", "class_map": "m"}, "exactly one of shift"),
        ({}, "exactly one of shift"),
        ({"folder": "x"}, "needs class_map"),
        ({"shift": "rotation", "severities": [6]}, "less than or equal to 5"),
        ({"shift": "rotation", "severities": []}, "non-empty list"),
        ({"shift": "rotation", "severities": [1, 1]}, "without repeats"),
        ({"shift": "swirl"}, "eval.ood.0.shift"),
        ({"shift": "rotation", "class_map": "m"}, "class_map applies to folder"),
        ({"shift": "rotation", "sevrities": [1]}, "did you mean 'severities'?"),
    ],
)
def test_spec_errors_name_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(RPGConfigError, match="eval.ood.0") as err:
        parse_spec({"eval": {"ood": [entry]}})
    assert message in str(err.value)


def test_mean_leaves_out_severity_zero() -> None:
    assert mean_ood({"rotation@0": 0.9, "rotation@2": 0.5, "folder:x": 0.3}) == pytest.approx(0.4)
    assert mean_ood({"rotation@0": 0.9}) is None


# --- inside a run ----------------------------------------------------------------------------------
TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {"arch": "resnet18", "width": 0.125},
    "data": {"dataset": "digits", "train_subset": 256, "val_subset": 96},
    "train": {"epochs": 1, "batch_size": 32},
}


def test_severity_zero_scores_the_in_distribution_accuracy() -> None:
    spec = {
        **TINY,
        "eval": {
            "ood": [{"shift": "rotation", "severities": [0, 5]}, {"shift": "contrast"}],
            "ood_each_epoch": True,
        },
    }
    from rpg_core.training.engine import train

    r = train(spec)
    assert r.ood is not None and r.final_val_acc is not None
    assert r.ood["rotation@0"] == r.final_val_acc
    assert set(r.ood) == {"rotation@0", "rotation@5"} | {f"contrast@{s}" for s in range(1, 6)}
    rest = [v for k, v in r.ood.items() if k != "rotation@0"]
    assert r.ood_acc == pytest.approx(sum(rest) / len(rest))
    assert r.history[-1]["ood_acc"] == pytest.approx(r.ood_acc)
    assert r.as_dict()["ood"] == r.ood


def test_no_ood_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import rpg_core.evaluate.ood

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("eval.ood is unset: nothing may be scored")

    monkeypatch.setattr(rpg_core.evaluate.ood, "evaluate_ood", boom)
    from rpg_core.training.engine import train

    r = train(TINY)
    assert r.ood is None and r.ood_acc is None
    assert "ood_acc" not in r.history[-1]


def test_bad_class_map_fails_before_training(tmp_path: Path) -> None:
    root = _folder_root(tmp_path, {"zero": 11})
    from rpg_core.training.engine import train

    spec = {**TINY, "eval": {"ood": [{"folder": "mini", "class_map": "m"}]}}
    with pytest.raises(RPGDataError, match="11 is not a training class"):
        train(spec, data_root=root, callbacks=[_NoSteps()])


class _NoSteps:
    def on_step(self, *a: Any) -> None:
        raise AssertionError("training started before the class map was checked")
