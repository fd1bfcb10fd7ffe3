"""``rpg inspect`` and ``rpg export`` through the real command-line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rpg_core.cli import main
from rpg_core.format import save_compact
from rpg_core.models import create_model

SPEC = {"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 0.05, "seed": 4}}


@pytest.fixture(scope="module")
def rpg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny.rpg"
    save_compact(create_model(SPEC), path)
    return path


def test_inspect_prints_sizes_and_ratios(
    rpg_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(rpg_file)]) == 0
    out = capsys.readouterr().out
    assert "ring 'global'" in out
    assert "index .npy" in out and "x smaller" in out
    assert '"arch": "resnet18"' in out


def test_inspect_json(rpg_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(rpg_file), "--json", "--build"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"]["total"] == rpg_file.stat().st_size
    assert info["built"]["ring"] == info["rings"][0]["size"]
    assert info["ratio_vs_reference"] > 1


def test_inspect_keyed_file_shows_no_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = save_compact(create_model(SPEC), tmp_path / "k.rpg", keyed=True)
    assert main(["inspect", str(tmp_path / "k.rpg")]) == 0
    assert "seed=(keyed)" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "k.rpg"), "--build"]) == 2
    assert "keyed" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "k.rpg"), "--build", "--key", str(key)]) == 0


def test_export_safetensors(
    rpg_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "plain.safetensors"
    assert main(["export", str(rpg_file), "--to", "safetensors", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    state = load_file(str(out))
    assert "layer1.0.conv1.weight" in state
    assert not any("rpg_rings" in k for k in state)
    assert state["layer1.0.conv1.weight"].dtype == torch.float32


def test_export_default_output_name(rpg_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.rpg"
    copy.write_bytes(rpg_file.read_bytes())
    assert main(["export", str(copy), "--to", "safetensors"]) == 0
    assert (tmp_path / "model.safetensors").is_file()


def test_bad_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, bad)
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "never unpickles" in err and "Traceback" not in err
    assert main(["export", str(tmp_path), "--to", "onnx"]) == 2
    assert "directory" in capsys.readouterr().err
