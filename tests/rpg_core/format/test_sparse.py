"""Sparse tensors in .rpg files (docs/FORMAT.md section 3b): a pruned plain network saves as a
bitmap of its non-zero positions and their values, loads bit for bit, is smaller than the dense
file, and a corrupted bitmap or values tensor is refused naming the key and the fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rpg_core.exceptions import RPGFormatError
from rpg_core.format import SPARSE_ATTR, inspect_compact, load_compact, read_header, save_compact
from rpg_core.format import safetensors_codec as codec
from rpg_core.models import create_model
from rpg_core.training.global_pruning import nonzero_backbone, prune_global

MODEL: dict[str, Any] = {"arch": "resnet18", "width": 0.125, "in_channels": 1, "num_classes": 10}


def _pruned(density: float = 0.1) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model({"model": MODEL}).eval()
    dense = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    prune_global(model, int(density * dense), rounds=1)
    with torch.no_grad():  # a negative zero is a value: it must come back with its sign
        model.fc.weight[0, 0] = -0.0
        model.layer1[0].conv1.weight.view(-1)[0] = -0.0
    return model


def _bits(t: torch.Tensor) -> torch.Tensor:
    ints = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}
    return t.contiguous().view(ints[t.element_size()]) if t.is_floating_point() else t


def test_round_trip_is_bit_for_bit_and_smaller(tmp_path: Path) -> None:
    model = _pruned(0.1)
    sparse, dense = tmp_path / "sparse.rpg", tmp_path / "dense.rpg"
    save_compact(model, sparse, sparse=True)
    save_compact(model, dense)
    back = load_compact(sparse)
    want, got = model.state_dict(), back.state_dict()
    assert set(want) == set(got)
    for k, v in want.items():
        assert v.dtype == got[k].dtype and torch.equal(_bits(v), _bits(got[k])), k
    assert torch.signbit(back.layer1[0].conv1.weight.view(-1)[0])
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
    assert nonzero_backbone(back) == nonzero_backbone(model)
    assert sparse.stat().st_size < 0.5 * dense.stat().st_size  # 10% density
    h = read_header(sparse)
    assert h.version == 2 and "layer1.0.conv1.weight" in h.sparse
    assert read_header(dense).version == 1 and not read_header(dense).sparse
    info = inspect_compact(sparse)  # sizes by part read the sparse parts as their tensor's
    assert info["bytes"]["total"] == sparse.stat().st_size and info["params"]["conv"] > 0


def test_the_models_mark_makes_the_default_sparse(tmp_path: Path) -> None:
    model = _pruned(0.1)
    model.__dict__[SPARSE_ATTR] = True
    save_compact(model, tmp_path / "m.rpg")
    assert read_header(tmp_path / "m.rpg").sparse
    save_compact(model, tmp_path / "d.rpg", sparse=False)
    assert not read_header(tmp_path / "d.rpg").sparse
    dense_model = create_model({"model": MODEL})  # no zeros: nothing is smaller sparse
    save_compact(dense_model, tmp_path / "n.rpg", sparse=True)
    assert read_header(tmp_path / "n.rpg").version == 1


def _rewrite(path: Path, edit: Any) -> None:
    """Rewrite ``path`` with ``edit(tensors, meta)`` applied and a valid checksum: a file whose
    container is intact but whose sparse parts disagree."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    edit(tensors, meta)
    meta["sha256"] = hashlib.sha256(codec.data_section(codec.encode(tensors, {}))).hexdigest()
    codec.write_atomic(path, codec.encode(tensors, meta))


KEY = "layer2.0.conv2.weight"
VALUES, BITMAP = f"rpg_sparse:{KEY}:values", f"rpg_sparse:{KEY}:bitmap"


def _drop_value(t: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    t[VALUES] = t[VALUES][:-1].clone()


def _clear_bit(t: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    bm = t[BITMAP].clone()
    i = int(torch.nonzero(bm)[0])
    bm[i] = bm[i] & (bm[i] - 1)  # one set bit fewer: the values no longer fit
    t[BITMAP] = bm


def _short_bitmap(t: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    t[BITMAP] = t[BITMAP][:-1].clone()


def _nnz(t: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    sparse = json.loads(meta["sparse"])
    sparse[KEY]["nnz"] += 1
    meta["sparse"] = json.dumps(sparse)


@pytest.mark.parametrize(
    ("edit", "key", "match"),
    [
        (_drop_value, VALUES, r"values of .* must be F32 of shape"),
        (_clear_bit, VALUES, r"marks \d+ positions but \d+ values are stored"),
        (_short_bitmap, BITMAP, r"must be U8 of shape"),
        (_nnz, VALUES, r"must be F32 of shape"),
    ],
)
def test_a_corrupt_sparse_tensor_is_refused_naming_the_key(
    tmp_path: Path, edit: Any, key: str, match: str
) -> None:
    path = tmp_path / "m.rpg"
    save_compact(_pruned(0.1), path, sparse=True)
    assert KEY in read_header(path).sparse
    _rewrite(path, edit)
    with pytest.raises(RPGFormatError, match=match) as err:
        load_compact(path)
    assert repr(key) in str(err.value) and "save_compact(..., sparse=True)" in str(err.value)


def test_sparse_metadata_in_a_version_1_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.rpg"
    save_compact(_pruned(0.1), path, sparse=True)
    _rewrite(path, lambda t, meta: meta.update(format_version="1"))
    with pytest.raises(RPGFormatError, match="needs format_version 2"):
        read_header(path)
