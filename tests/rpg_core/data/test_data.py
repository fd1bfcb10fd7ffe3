"""Datasets by key, under one data root, with seeded augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rpg_core import RPGConfigError, RPGDataError
from rpg_core.data import (
    SYSTEM_FASHION,
    BatchLoader,
    crop_flip,
    epoch_generator,
    load_datasets,
    read_cifar_batch,
    read_idx,
    resized_crop_flip,
    resolve_under,
)
from rpg_core.spec import DataSpec


# --- digits and synthetic -----------------------------------------------------------------------
def test_digits_split_is_fixed_and_stratified() -> None:
    d = load_datasets({"dataset": "digits"})
    assert (len(d.train), len(d.val)) == (1437, 360)
    assert (d.num_classes, d.in_channels, d.image_size) == (10, 1, 32)
    assert d.train.x.shape[1:] == (1, 32, 32)  # type: ignore[union-attr]
    counts = torch.bincount(d.val.y, minlength=10)  # type: ignore[union-attr]
    assert counts.min() >= 35 and counts.max() <= 37  # about 36 of each class
    again = load_datasets({"dataset": "digits", "image_size": 16})
    assert torch.equal(again.val.y, d.val.y)  # type: ignore[union-attr]
    assert again.image_size == 16


def test_synthetic_is_seeded_and_class_conditional() -> None:
    spec = {"dataset": "synthetic", "num_classes": 3, "num_train": 60, "num_val": 30}
    a, b = load_datasets(spec), load_datasets(spec)
    assert torch.equal(a.train.x, b.train.x)  # type: ignore[union-attr]
    assert (a.num_classes, a.in_channels, len(a.train), len(a.val)) == (3, 3, 60, 30)
    # nearest class mean (from train) classifies val far above chance: the data is learnable
    xt, yt = a.train.x.float().flatten(1), a.train.y  # type: ignore[union-attr]
    xv, yv = a.val.x.float().flatten(1), a.val.y  # type: ignore[union-attr]
    means = torch.stack([xt[yt == k].mean(0) for k in range(3)])
    acc = (torch.cdist(xv, means).argmin(1) == yv).float().mean().item()
    assert acc > 0.9


def test_synthetic_size_is_bounded() -> None:
    with pytest.raises(RPGDataError, match="num_train"):
        load_datasets({"dataset": "synthetic", "num_train": 1_000_000, "image_size": 1024})


def test_unknown_dataset_is_a_config_error() -> None:
    with pytest.raises(RPGConfigError, match="dataset"):
        load_datasets({"dataset": "/etc/passwd"})


# --- Fashion-MNIST (IDX) ------------------------------------------------------------------------
def write_idx(path: Path, arr: np.ndarray, *, magic: bytes | None = None) -> None:
    header = magic or bytes([0, 0, 8, arr.ndim])
    dims = b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.write_bytes(gzip.compress(header + dims + arr.astype(np.uint8).tobytes()))


def fashion_tree(root: Path, n: int = 20) -> Path:
    d = root / "fashion-mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return d


def test_fashion_from_the_data_root(tmp_path: Path) -> None:
    d = fashion_tree(tmp_path)
    data = load_datasets({"dataset": "fashion-mnist", "train_subset": 12}, data_root=tmp_path)
    assert (len(data.train), len(data.val), data.image_size) == (12, 10, 32)
    raw = read_idx(d / "train-images-idx3-ubyte.gz", expect_ndim=3)
    x = data.val.x  # type: ignore[union-attr]
    assert x[:, :, :2].sum() == 0 and x[:, :, -2:].sum() == 0  # zero-padded 28 -> 32
    assert raw.shape == (20, 28, 28)


def test_idx_bad_magic_and_truncation_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    write_idx(bad, np.zeros((2, 3, 3)), magic=bytes([0, 0, 9, 3]))
    with pytest.raises(RPGDataError, match="magic"):
        read_idx(bad, expect_ndim=3)
    good = np.zeros((2, 3, 3), np.uint8)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in good.shape))
    with pytest.raises(RPGDataError, match="truncated"):
        read_idx(short, expect_ndim=3)
    with pytest.raises(RPGDataError, match="3 dims"):
        write_idx(tmp_path / "labels.gz", np.zeros(4))
        read_idx(tmp_path / "labels.gz", expect_ndim=3)


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_system_package_subset(tmp_path: Path) -> None:
    spec = {"dataset": "fashion-mnist", "train_subset": 500, "val_subset": 100}
    data = load_datasets(spec, data_root=tmp_path)
    assert (len(data.train), len(data.val), data.num_classes) == (500, 100, 10)
    assert set(data.train.y.tolist()) == set(range(10))  # type: ignore[union-attr]


# --- CIFAR (restricted unpickler) ---------------------------------------------------------------
def write_cifar(root: Path, hundred: bool = False, protocol: int = 2, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    label = "fine_labels" if hundred else "labels"
    k = 100 if hundred else 10

    def batch() -> dict[Any, Any]:
        return {
            b"batch_label": b"fixture",
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            label.encode(): [int(v) for v in rng.integers(0, k, n)],
            b"filenames": [b"img%d.png" % i for i in range(n)],
        }

    d = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    d.mkdir(parents=True)
    names = (
        ["train", "test"] if hundred else [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    )
    for name in names:
        with (d / name).open("wb") as f:
            pickle.dump(batch(), f, protocol=protocol)
    return d


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar10_fixture_loads(tmp_path: Path, protocol: int) -> None:
    write_cifar(tmp_path, protocol=protocol)
    data = load_datasets({"dataset": "cifar10"}, data_root=tmp_path)
    assert (len(data.train), len(data.val), data.num_classes, data.in_channels) == (30, 6, 10, 3)
    assert data.train.x.shape == (30, 3, 32, 32)  # type: ignore[union-attr]


def test_cifar100_fixture_loads_fine_labels(tmp_path: Path) -> None:
    write_cifar(tmp_path, hundred=True)
    data = load_datasets({"dataset": "cifar100", "image_size": 16}, data_root=tmp_path)
    assert (len(data.train), len(data.val), data.num_classes, data.image_size) == (6, 6, 100, 16)


def test_cifar_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(RPGDataError, match=r"cifar-10-batches-py not found; put the CIFAR-10"):
        load_datasets({"dataset": "cifar10"}, data_root=tmp_path)


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


def test_cifar_reader_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(RPGDataError, match="not allowed"):
        read_cifar_batch(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_cifar_reader_checks_shapes(tmp_path: Path) -> None:
    d = write_cifar(tmp_path)
    with (d / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(RPGDataError, match="3072"):
        load_datasets({"dataset": "cifar10"}, data_root=tmp_path)


# --- image folders ------------------------------------------------------------------------------
def image_tree(root: Path, name: str = "tiny") -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            d = root / name / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    return root / name


def test_image_folder_loads_and_augments(tmp_path: Path) -> None:
    image_tree(tmp_path)
    spec = {"dataset": "imagefolder:tiny", "image_size": 16}
    data = load_datasets(spec, data_root=tmp_path)
    assert (len(data.train), len(data.val), data.num_classes) == (6, 4, 2)
    assert data.classes == ("cat", "dog") and data.augment == "imagenet"
    loader = BatchLoader(data, "train", 4, seed=0)
    batches = list(loader.epoch(0))
    assert [x.shape for x, _ in batches] == [(4, 3, 16, 16), (2, 3, 16, 16)]
    again = list(loader.epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    val = list(BatchLoader(data, "val", 8).epoch(0))
    assert val[0][1].tolist() == [0, 0, 1, 1]


def test_image_folder_with_workers_gives_the_same_batches(tmp_path: Path) -> None:
    image_tree(tmp_path)
    data = load_datasets({"dataset": "imagefolder:tiny", "image_size": 16}, data_root=tmp_path)
    a = list(BatchLoader(data, "train", 4, seed=3).epoch(1))
    b = list(BatchLoader(data, "train", 4, seed=3, num_workers=1).epoch(1))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b, strict=True))


# --- the data root ------------------------------------------------------------------------------
@pytest.mark.parametrize("part", ["../outside", "/etc", "a/../../b", ""])
def test_paths_outside_the_root_are_refused(tmp_path: Path, part: str) -> None:
    with pytest.raises(RPGDataError, match="not allowed"):
        resolve_under(tmp_path, part)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    image_tree(outside, "real")
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil").symlink_to(outside / "real")
    with pytest.raises(RPGDataError, match="outside the data root") as err:
        load_datasets({"dataset": "imagefolder:evil"}, data_root=root)
    # issue 23: the error names the path given, never where the link leads
    assert f"{root / 'evil'} is a symlink" in str(err.value)
    assert str(outside) not in str(err.value)
    write_cifar(outside)
    (root / "cifar-10-batches-py").symlink_to(outside / "cifar-10-batches-py")
    with pytest.raises(RPGDataError, match="outside the data root") as err:
        load_datasets({"dataset": "cifar10"}, data_root=root)
    assert str(outside) not in str(err.value)


def test_symlinked_image_inside_a_tree_is_refused(tmp_path: Path) -> None:
    tree = image_tree(tmp_path / "root", "tiny")
    secret = tmp_path / "secret.png"
    (tree / "train" / "cat" / "0.png").rename(secret)
    (tree / "train" / "cat" / "0.png").symlink_to(secret)
    with pytest.raises(RPGDataError, match="outside the data root") as err:
        load_datasets({"dataset": "imagefolder:tiny"}, data_root=tmp_path / "root")
    assert "tiny/train/cat/0.png is a symlink" in str(err.value)
    assert "secret" not in str(err.value)


def test_spec_cannot_name_a_path() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        DataSpec(dataset="imagefolder:../etc")


def test_data_root_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path)
    monkeypatch.setenv("RPG_DATA_ROOT", str(tmp_path))
    assert len(load_datasets({"dataset": "cifar10"}).val) == 6


# --- augmentation and batches -------------------------------------------------------------------
def test_crop_flip_is_a_shift_and_flip() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4).repeat(8, 1, 1, 1)
    out = crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    same = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert any(flipped) and any(same)
    padded = crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert padded.shape == x.shape and not torch.equal(padded, out)


def test_resized_crop_flip_shapes_and_seed() -> None:
    x = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    a = resized_crop_flip(x, torch.Generator().manual_seed(1), 8)
    b = resized_crop_flip(x, torch.Generator().manual_seed(1), 8)
    assert a.shape == (4, 3, 8, 8) and torch.equal(a, b)


def test_batches_depend_on_seed_and_epoch_only() -> None:
    data = load_datasets({"dataset": "synthetic", "num_train": 40, "num_val": 10, "image_size": 8})
    loader = BatchLoader(data, "train", 16, seed=5)
    e0 = [y for _, y in loader.epoch(0)]
    assert [len(y) for y in e0] == [16, 16, 8] and len(loader) == 3
    assert sorted(torch.cat(e0).tolist()) == sorted(data.train.y.tolist())  # type: ignore[union-attr]
    assert all(torch.equal(a, b) for a, b in zip(e0, [y for _, y in loader.epoch(0)], strict=True))
    assert not torch.equal(torch.cat(e0), torch.cat([y for _, y in loader.epoch(1)]))
    assert epoch_generator(5, 0).initial_seed() != epoch_generator(5, 1).initial_seed()
    x, _ = next(iter(loader.epoch(0)))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.5


@pytest.mark.parametrize("n", [1, 16, 17, 33])
def test_loader_length_matches_its_batches(n: int) -> None:
    data = load_datasets({"dataset": "synthetic", "num_train": n, "num_val": 3, "image_size": 8})
    for split in ("train", "val"):
        loader = BatchLoader(data, split, 16)
        batches = list(loader.epoch(0))
        assert len(loader) == len(batches)
        if split == "train" and n > 1:
            assert min(len(y) for _, y in batches) >= 2  # never a batch of one (BatchNorm)
