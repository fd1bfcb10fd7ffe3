"""The one safetensors codec (rpg_core.format.safetensors_codec): the library writes and reads both the
.rpg files and the checkpoints, behind the container's strict checks; writes are atomic and
fsynced (file, then directory)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from rpg_core import RPGFormatError, rings
from rpg_core.format import load_compact, read_header, save_compact
from rpg_core.format import safetensors_codec as codec
from rpg_core.models import create_model
from rpg_core.training.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TINY: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 0.05, "seed": 7},
}


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync call synced: 'file' or 'dir'."""
    seen: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        seen.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return seen


def test_write_atomic_fsyncs_the_file_then_the_directory(tmp_path: Path, fsyncs: list[str]) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    codec.write_atomic(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert fsyncs == ["file", "dir"]
    codec.write_atomic(target, lambda tmp: tmp.write_bytes(b"by a writer"))
    assert target.read_bytes() == b"by a writer" and fsyncs[2:] == ["file", "dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no temp file stays


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        codec.write_atomic(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_save_compact_writes_through_the_library_atomically(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    model = create_model(TINY).eval()
    path = tmp_path / "m.rpg"
    save_compact(model, path, ring_dtype="bfloat16")
    assert fsyncs == ["file", "dir"]
    h = read_header(path)
    with safe_open(str(path), framework="pt") as f:  # any safetensors reader opens it
        assert set(f.keys()) == set(h.tensors)
        assert f.metadata()["sha256"] == h.sha256
        ring_name = next(iter(h.ring_keys.values()))
        assert f.get_tensor(ring_name).dtype == torch.bfloat16
    loaded = load_compact(path)
    for name, ring in rings(model).items():
        expected = ring.weight.detach().to(torch.bfloat16).to(torch.float32)
        assert torch.equal(rings(loaded)[name].weight, expected)


def test_the_generator1_fixture_loads_the_stored_tensors_bit_for_bit() -> None:
    """The file written before the codec (and before generator 2) loads exactly its bytes."""
    path = FIXTURES / "generator1-resnet18.rpg"
    stored = load_file(str(path))  # the library alone, no rpg_core check
    state = load_compact(path).state_dict()
    assert set(stored) <= set(state)
    for name, array in stored.items():
        assert np.array_equal(state[name].numpy(), array), name


def test_checkpoints_go_through_the_codec_and_the_strict_checks(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, epoch=3)
    assert fsyncs == ["file", "dir"]
    ckpt = load_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.epoch == 3
    assert torch.equal(ckpt.tensors["model/weight"], model.weight.detach())
    path = checkpoint_path(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw + b"\x00" * 8)  # trailing bytes: the strict layer refuses
    with pytest.raises(RPGFormatError, match="8 bytes after the last tensor") as err:
        load_checkpoint(tmp_path)
    assert "not a valid RPG checkpoint" in str(err.value)
    huge = (2**40).to_bytes(8, "little") + raw[8:]
    path.write_bytes(huge)
    with pytest.raises(RPGFormatError, match="above the limit"):
        load_checkpoint(tmp_path)


def test_decode_errors_are_the_library_s() -> None:
    with pytest.raises(codec.SafetensorError):
        codec.decode(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
