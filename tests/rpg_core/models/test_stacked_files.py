"""``.rpg`` files of the stacked models: every sharing variant of ``hourglass`` (pose) and
``encdec`` (multitask) saves with its task in the spec and rebuilds bit for bit in a fresh
process, with the file's tensors checked against the architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rpg_core.format import inspect_compact, load_compact, save_compact
from rpg_core.models import create_model
from rpg_core.rpg.rpgify import rings
from rpg_core.tasks import get_task

from ..fresh_process import flat_outputs, fresh_process_outputs

CASES = [
    ("pose", "hourglass", "none", 2),
    ("pose", "hourglass", "full", 2),
    ("pose", "hourglass", "rpg", 2),
    ("multitask", "encdec", "single", 1),
    ("multitask", "encdec", "reuse", 2),
    ("multitask", "encdec", "reuse-new-bn", 2),
    ("multitask", "encdec", "rpg", 2),
]


def _targets(task: str, n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if task == "pose":
        return {
            "joints": torch.rand(n, 16, 2, generator=g) * 31,
            "visible": torch.ones(n, 16),
            "head": torch.full((n,), 6.0),
        }
    normal = torch.nn.functional.normalize(torch.randn(n, 3, 32, 32, generator=g), dim=1)
    return {
        "depth": torch.rand(n, 1, 32, 32, generator=g) + 1,
        "normal": normal,
        "mask": torch.ones(n, 1, 32, 32),
    }


@pytest.mark.slow
@pytest.mark.parametrize(("task", "arch", "sharing", "stacks"), CASES)
def test_a_stacked_model_file_rebuilds_bit_for_bit_in_a_fresh_process(
    task: str, arch: str, sharing: str, stacks: int, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    spec = {"task": task, "model": {"arch": arch, "width": 0.25, "stacks": stacks,
                                    "sharing": sharing}}  # fmt: skip
    model = create_model(spec, num_classes=16)
    x = torch.randn(4, 3, 32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):  # trained weights and batchnorm statistics, not the init
        opt.zero_grad()
        get_task(task).loss(model(x), _targets(task, 4)).backward()
        opt.step()
    model.eval()
    path = tmp_path / "m.rpg"
    save_compact(model, path)
    header = inspect_compact(path)
    assert header["spec"]["task"] == task
    assert header["spec"]["model"]["sharing"] == sharing
    assert header["spec"]["model"]["stacks"] == stacks
    loaded = load_compact(path)
    assert len(rings(loaded)) == len(rings(model))
    with torch.no_grad():
        expected = flat_outputs(model(x))
        assert np.array_equal(flat_outputs(loaded(x)), expected)
    assert np.array_equal(fresh_process_outputs(path, x, tmp_path), expected)


def test_a_file_whose_task_is_unknown_is_refused_naming_the_task(tmp_path: Path) -> None:
    from rpg_core.exceptions import RPGFormatError

    model = create_model({"task": "pose", "model": {"width": 0.25, "sharing": "full"}})
    path = tmp_path / "m.rpg"
    save_compact(model, path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    spec = json.loads(header["__metadata__"]["spec"])
    spec["task"] = "segmentation"
    header["__metadata__"]["spec"] = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    with pytest.raises(RPGFormatError, match=r"spec.task 'segmentation'"):
        load_compact(path)
