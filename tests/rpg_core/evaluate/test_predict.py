"""Models you can use after download: inference metadata in .rpg files, ``predict`` and
``rpg predict``, rpgify-converted torchvision models saved by name, the ``linear`` flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import rpg_core
from rpg_core import RPGConfigError, RPGFormatError
from rpg_core.evaluate.predict import CLASS_NAMES, check_inference, inference_info
from rpg_core.format import read_header

ROOT = Path(__file__).resolve().parents[3]
FASHION_INFO = {
    "dataset": "fashion-mnist",
    "image_size": 16,
    "in_channels": 1,
    "mean": [0.29],
    "std": [0.35],
    "classes": list(CLASS_NAMES["fashion-mnist"]),
    "fit": "resize",
}


def _fashion_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return rpg_core.create_model(
        {
            "model": {"arch": "resnet18", "width": 0.125, "in_channels": 1, "num_classes": 10},
            "rpg": {"ring_size": 500},
        }
    ).eval()


def _pngs(tmp_path: Path, n: int = 2, size: int = 28, mode: str = "L") -> list[str]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        shape = (size, size) if mode == "L" else (size, size, 3)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        out.append(str(path))
    return out


@pytest.mark.slow
def test_predict_from_a_saved_file_in_a_fresh_process(tmp_path: Path) -> None:
    model = _fashion_model()
    path = tmp_path / "m.rpg"
    rpg_core.save_compact(model, path, inference=FASHION_INFO)
    assert read_header(path).inference == FASHION_INFO
    images = _pngs(tmp_path)
    here = rpg_core.predict(path, images, top_k=3)
    assert [len(r.top) for r in here] == [3, 3]
    assert all(r.name in CLASS_NAMES["fashion-mnist"] for r in here)
    # the same from the model itself, with the preprocessing done by hand
    x = torch.stack(
        [
            torch.from_numpy(np.array(Image.open(i).resize((16, 16), Image.Resampling.BILINEAR)))
            for i in images
        ]
    )
    with torch.no_grad():
        logits = model(((x.float() / 255 - 0.29) / 0.35).unsqueeze(1))
    assert [r.label for r in here] == logits.argmax(1).tolist()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", "predict", str(path), *images, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["label"] for r in rows] == [r.label for r in here]
    assert rows[0]["name"] == here[0].name
    assert rows[0]["probability"] == pytest.approx(here[0].probability, rel=1e-5)
    text = subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", "predict", str(path), images[0], "-k", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert text.startswith(f"{images[0]}: {here[0].name} ") and text.count("%") == 2


def test_old_files_stay_loadable_and_predict_says_what_it_needs(tmp_path: Path) -> None:
    model = _fashion_model()
    path = tmp_path / "old.rpg"
    rpg_core.save_compact(model, path)  # as before: no inference metadata
    assert read_header(path).inference is None
    loaded = rpg_core.load_compact(path)
    with pytest.raises(RPGConfigError, match="has no inference metadata"):
        rpg_core.predict(loaded, _pngs(tmp_path, 1))
    got = rpg_core.predict(path, _pngs(tmp_path, 1), inference=FASHION_INFO)
    assert got[0].name in CLASS_NAMES["fashion-mnist"]
    # a loaded file keeps its metadata when saved again
    rpg_core.save_compact(model, tmp_path / "new.rpg", inference=FASHION_INFO)
    again = rpg_core.load_compact(tmp_path / "new.rpg")
    rpg_core.save_compact(again, tmp_path / "again.rpg")
    assert read_header(tmp_path / "again.rpg").inference == FASHION_INFO
    assert rpg_core.inspect_compact(tmp_path / "again.rpg")["inference"] == FASHION_INFO


def test_predict_takes_arrays_and_rgb_images_and_pads_like_training(tmp_path: Path) -> None:
    model = rpg_core.create_model({"model": {"arch": "resnet18", "width": 0.125}}).eval()
    info = {**FASHION_INFO, "in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    info.update(image_size=32, fit="pad", classes=None)
    arr = np.zeros((28, 28, 3), np.uint8)
    arr[10:18, 10:18] = 255
    from rpg_core.evaluate.predict import preprocess

    x = preprocess([arr], info)
    assert x.shape == (1, 3, 32, 32)
    assert float(x[0, 0, 0, 0]) == pytest.approx(-2.0)  # the zero padding, normalised
    assert float(x[0, 0, 16, 16]) == pytest.approx(2.0)
    got = rpg_core.predict(model, [arr, _pngs(tmp_path, 1, 40, "RGB")[0]], inference=info)
    assert len(got) == 2 and got[0].name is None and got[0].top[0][1] is None


def test_bad_images_and_metadata_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    model = _fashion_model()
    with pytest.raises(rpg_core.RPGDataError, match="not an image PIL can read"):
        rpg_core.predict(model, [str(bad)], inference=FASHION_INFO)
    with pytest.raises(rpg_core.RPGDataError, match="no such image"):
        rpg_core.predict(model, [str(tmp_path / "missing.png")], inference=FASHION_INFO)
    with pytest.raises(RPGConfigError, match="inference.std"):
        check_inference({**FASHION_INFO, "std": [0.0]})
    with pytest.raises(RPGConfigError, match="inference.mean"):
        rpg_core.save_compact(model, tmp_path / "m.rpg", inference={**FASHION_INFO, "mean": [1, 2]})


def test_inference_info_of_fashion_mnist_has_its_class_names() -> None:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    info = inference_info(
        {"dataset": "fashion-mnist", "train_subset": 300, "val_subset": 10, "image_size": 32}
    )
    assert info["classes"] == list(CLASS_NAMES["fashion-mnist"])
    assert info["in_channels"] == 1 and info["image_size"] == 32 and info["fit"] == "pad"
    assert 0.1 < info["mean"][0] < 0.5 and 0.2 < info["std"][0] < 0.5


def test_rpgify_converted_torchvision_model_saves_and_loads_bit_for_bit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    rpg_core.rpgify(model, 45_000, scope="stage", seed=7)  # the README's first example
    path = tmp_path / "tv.rpg"
    rpg_core.save_compact(model, path)
    spec = read_header(path).spec
    assert spec["model"] == {"arch": "torchvision:resnet18", "num_classes": 10}
    assert spec["rpg"]["ring_size"] == 45_000 and spec["rpg"]["scope"] == "stage"
    loaded = rpg_core.load_compact(path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), loaded(x))
    assert rpg_core.count_params(loaded).ring == 45_000
    # and a converted model is itself saved again by name
    rpg_core.save_compact(loaded, tmp_path / "again.rpg")
    assert read_header(tmp_path / "again.rpg").spec == spec


@pytest.mark.slow
def test_a_model_that_cannot_be_rebuilt_by_name_gets_what_to_do() -> None:
    class Mine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3)

    model = rpg_core.rpgify(Mine(), 10)
    with pytest.raises(RPGConfigError, match="register_model") as err:
        rpg_core.save_compact(model, "never-written.rpg")
    assert "materialize" in str(err.value) and "safetensors" in str(err.value)
    assert not Path("never-written.rpg").exists()
    changed = torchvision.models.resnet18(num_classes=10)
    changed.fc = torch.nn.Sequential(torch.nn.Linear(512, 64), torch.nn.Linear(64, 10))
    with pytest.raises(RPGConfigError, match="matches none of torchvision"):
        rpg_core.save_compact(rpg_core.rpgify(changed, 1000), "never-written.rpg")


def test_linear_alone_on_a_resnet_is_an_error_that_says_how_to_generate_the_head() -> None:
    spec = {"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 500}}
    with pytest.raises(RPGConfigError, match=r"include=\['layer\*', 'fc'\]"):
        rpg_core.create_model({**spec, "rpg": {"ring_size": 500, "linear": True}})
    model = rpg_core.create_model(
        {**spec, "rpg": {"ring_size": 500, "linear": True, "include": ["layer*", "fc"]}}
    )
    assert rpg_core.is_generated(model.fc) and not rpg_core.is_generated(model.conv1)


def test_a_file_with_broken_inference_metadata_is_refused(tmp_path: Path) -> None:
    from rpg_core import format as compact

    path = tmp_path / "m.rpg"
    rpg_core.save_compact(_fashion_model(), path, inference=FASHION_INFO)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n].replace(b'\\"in_channels\\":1', b'\\"in_channels\\":2')
    assert len(header) == n
    path.write_bytes(raw[:8] + header + raw[8 + n :])
    with pytest.raises(RPGFormatError, match="inference.in_channels"):
        compact.read_header(path)
