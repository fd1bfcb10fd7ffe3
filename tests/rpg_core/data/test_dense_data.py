"""Pose and multitask data: synthetic-pose, mpii:<name>, synthetic-scenes, scenes:<name>."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rpg_core import RPGDataError
from rpg_core.data import BatchLoader, Datasets, TensorSamples, load_datasets
from rpg_core.data.pose import Occluder, render_pose, synthetic_pose
from rpg_core.data.scenes import SceneParams, Texture, render_scenes, synthetic_scenes


def _samples(d: Datasets) -> tuple[TensorSamples, TensorSamples]:
    assert isinstance(d.train, TensorSamples) and isinstance(d.val, TensorSamples)
    return d.train, d.val


# --- synthetic-pose -------------------------------------------------------------------------------
def test_synthetic_pose_is_seeded_per_sample_and_split() -> None:
    a = synthetic_pose([0, 1, 2], 32, split="train")
    b = synthetic_pose([0, 1, 2], 32, split="train")
    assert torch.equal(a.x, b.x) and torch.equal(a.targets["joints"], b.targets["joints"])
    one = synthetic_pose([1], 32, split="train")  # sample i depends on i alone
    assert torch.equal(one.x[0], a.x[1]) and torch.equal(one.targets["head"][0], a.targets["head"][1])  # fmt: skip
    val = synthetic_pose([0, 1, 2], 32, split="val")
    assert not torch.equal(val.x, a.x)


def test_synthetic_pose_shapes_and_targets() -> None:
    d = load_datasets(
        {"dataset": "synthetic-pose", "num_train": 24, "num_val": 8, "image_size": 32}
    )
    train, val = _samples(d)
    assert (d.task, d.num_classes, d.in_channels, d.image_size, d.augment) == ("pose", 16, 3, 32, "none")  # fmt: skip
    assert (len(train), len(val)) == (24, 8) and d.classes[0] == "r_ankle"
    assert train.x.dtype == torch.uint8 and train.x.shape == (24, 3, 32, 32)
    j, vis, head = train.targets["joints"], train.targets["visible"], train.targets["head"]
    assert (j.dtype, vis.dtype, head.dtype) == (torch.float32,) * 3
    assert (j.shape, vis.shape, head.shape) == ((24, 16, 2), (24, 16), (24,))
    assert set(vis.unique().tolist()) <= {0.0, 1.0} and vis.mean() > 0.5
    shown = vis.bool()
    assert (j[shown] >= 0).all() and (j[shown] <= 31).all()
    assert (head > 0).all()
    assert torch.allclose(head, (j[:, 9] - j[:, 8]).norm(dim=1))
    assert len(d.mean) == 3 and all(s > 0 for s in d.std)


def test_synthetic_pose_subset_draws_the_same_samples() -> None:
    base = {"dataset": "synthetic-pose", "num_train": 10, "num_val": 4, "image_size": 16}
    full, _ = _samples(load_datasets(base))
    part, _ = _samples(load_datasets({**base, "train_subset": 4}))
    want = full.subset(4)
    assert len(part) == 4 and torch.equal(part.x, want.x)
    assert torch.equal(part.targets["joints"], want.targets["joints"])


def test_occluded_joints_are_invisible() -> None:
    size = 32
    joints = np.array(
        [[10, 28], [11, 22], [12, 17], [18, 17], [19, 22], [20, 28], [15, 17], [15, 9],
         [15, 7], [15, 3], [6, 16], [8, 12], [11, 9], [19, 9], [22, 12], [24, 16]],
        dtype=np.float64,
    )  # fmt: skip
    occ = Occluder(3.0, 13.0, 9.0, 19.0, (250, 10, 10))  # over the right wrist (6, 16)
    img, vis = render_pose(np.random.default_rng(0), size, joints, [occ])
    assert vis[10] == 0 and vis.sum() == 15
    assert np.abs(img[16, 6].astype(int) - [250, 10, 10]).max() < 40  # the occluder is on top
    outside = joints.copy()
    outside[5] = [40.0, 28.0]  # left ankle out of the image
    _, vis2 = render_pose(np.random.default_rng(0), size, outside, [])
    assert vis2[5] == 0 and vis2.sum() == 15


def test_synthetic_pose_memory_is_bounded() -> None:
    with pytest.raises(RPGDataError, match="num_train"):
        load_datasets({"dataset": "synthetic-pose", "num_train": 1_000_000, "image_size": 1024})


# --- mpii:<name> ----------------------------------------------------------------------------------
def _joints(**over: list[float]) -> list[list[float]]:
    out = [[40.0 + i, 40.0, 1.0] for i in range(16)]
    for k, v in over.items():
        out[int(k[1:])] = v
    return out


def mpii_tree(root: Path, records: list[dict[str, Any]] | None = None) -> Path:
    tree = root / "mini"
    (tree / "images").mkdir(parents=True)
    for i in range(3):
        arr = np.full((80, 100, 3), 40 * i, np.uint8)
        arr[38:49, 45:56] = (255, 0, 0)  # a red square around (50, 43)
        Image.fromarray(arr).save(tree / "images" / f"im{i}.{'jpg' if i == 1 else 'png'}")
    if records is None:
        first = _joints(
            j0=[30.0, 23.0, 1.0], j1=[-1.0, -1.0, 0.0], j2=[60.0, 50.0, 0.0],
            j3=[90.0, 43.0, 1.0], j8=[50.0, 33.0, 1.0], j9=[50.0, 23.0, 1.0],
        )  # fmt: skip
        records = [
            {"img_paths": "im0.png", "joint_self": first, "objpos": [50, 40],
             "scale_provided": 0.2, "isValidation": 0.0},
            {"img_paths": "im1.jpg", "joint_self": _joints(), "objpos": [50.0, 40.0],
             "scale_provided": 0.3, "isValidation": 0},
            {"img_paths": "im2.png", "joint_self": _joints(), "objpos": [45.0, 35.0],
             "scale_provided": 0.25, "isValidation": 1},
        ]  # fmt: skip
    (tree / "mpii_annotations.json").write_text(json.dumps(records))
    return tree


def test_mpii_crops_and_maps_joints(tmp_path: Path) -> None:
    mpii_tree(tmp_path)
    d = load_datasets({"dataset": "mpii:mini", "image_size": 25}, data_root=tmp_path)
    train, val = _samples(d)
    assert (len(train), len(val), d.task, d.num_classes, d.image_size) == (2, 1, "pose", 16, 25)
    # record 0: side 1.25 x 0.2 x 200 = 50 px around (50, 40 + 15 x 0.2): 0.5 output px per input
    # px, and x_out = (x - 50 + 25) * 0.5 - 0.5
    j, vis = train.targets["joints"][0], train.targets["visible"][0]
    assert j[0].tolist() == [2.0, 2.0] and vis[0] == 1
    assert vis[1] == 0  # missing (x, y <= 0)
    assert vis[2] == 0 and j[2].tolist() == [17.0, 15.5]  # annotated invisible
    assert vis[3] == 0 and j[3, 0] == 32.0  # outside the crop
    assert j[8].tolist() == [12.0, 7.0] and j[9].tolist() == [12.0, 2.0]
    assert train.targets["head"][0] == 5.0
    # the red square (input pixels 45-55 x 38-48) lands on output pixels 9.5-14.5, centred on 12
    red = train.x[0, 0].int() - train.x[0, 1].int()
    assert (red[11:14, 11:14] == 255).all() and (red[:, [8, 16]] == 0).all()
    mid = red[4:21, 4:21]  # symmetric about pixel 12: the crop is centred to the sub-pixel
    assert torch.equal(mid, mid.flip(0)) and torch.equal(mid, mid.flip(1))
    assert train.x.shape == (2, 3, 25, 25) and (train.targets["head"] > 0).all()


def test_mpii_subset_and_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mpii_tree(tmp_path)
    spec = {"dataset": "mpii:mini", "image_size": 16, "train_subset": 1}
    train, _ = _samples(load_datasets(spec, data_root=tmp_path))
    assert len(train) == 1
    monkeypatch.setattr("rpg_core.data.dense.MAX_SYNTHETIC_BYTES", 100)
    with pytest.raises(RPGDataError, match="image_size or set data.train_subset"):
        load_datasets(spec, data_root=tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"objpos": None}, "record 1 has no 'objpos'"),
        ({"joint_self": [[1, 2, 1]] * 15}, "record 1: 'joint_self'"),
        ({"scale_provided": "big"}, "record 1: 'scale_provided'"),
        ({"isValidation": 2}, "record 1: 'isValidation'"),
        ({"img_paths": "../../outside.png"}, "record 1: 'img_paths'"),
        ({"img_paths": "/etc/passwd"}, "record 1: 'img_paths'"),
        ({"img_paths": "nothere.png"}, "nothere.png: no such image file"),
    ],
)
def test_mpii_bad_records_are_named(tmp_path: Path, change: dict[str, Any], match: str) -> None:
    tree = mpii_tree(tmp_path)
    records = json.loads((tree / "mpii_annotations.json").read_text())
    records[1].update(change)
    records[1] = {k: v for k, v in records[1].items() if v is not None}
    (tree / "mpii_annotations.json").write_text(json.dumps(records))
    with pytest.raises(RPGDataError, match=match):
        load_datasets({"dataset": "mpii:mini", "image_size": 16}, data_root=tmp_path)


def test_mpii_folder_linked_out_of_the_root_is_refused(tmp_path: Path) -> None:
    mpii_tree(tmp_path / "outside")
    root = tmp_path / "root"
    root.mkdir()
    (root / "mini").symlink_to(tmp_path / "outside" / "mini")
    with pytest.raises(RPGDataError, match="outside the data root"):
        load_datasets({"dataset": "mpii:mini"}, data_root=root)


# --- synthetic-scenes -----------------------------------------------------------------------------
def test_synthetic_scenes_targets() -> None:
    spec = {"dataset": "synthetic-scenes", "num_train": 6, "num_val": 3, "image_size": 16}
    d = load_datasets(spec)
    train, val = _samples(d)
    assert (d.task, d.num_classes, d.augment, len(train), len(val)) == ("multitask", 4, "none", 6, 3)  # fmt: skip
    dep, nrm, mask = train.targets["depth"], train.targets["normal"], train.targets["mask"]
    assert train.x.shape == (6, 3, 16, 16) and train.x.dtype == torch.uint8
    assert (dep.shape, nrm.shape, mask.shape) == ((6, 1, 16, 16), (6, 3, 16, 16), (6, 1, 16, 16))
    assert {dep.dtype, nrm.dtype, mask.dtype} == {torch.float32}
    assert (dep > 0).all() and (dep < 12).all() and (mask == 1).all()
    assert torch.allclose(nrm.norm(dim=1), torch.ones(6, 16, 16), atol=1e-5)
    # facing the camera: against every pixel's ray (x - c, y - c, f), whatever f is
    c = torch.arange(16.0) - 7.5
    for f in (16 / (2 * math.tan(math.radians(25))), 16 / (2 * math.tan(math.radians(37.5)))):
        ray = torch.stack(torch.broadcast_tensors(c[None, :], c[:, None], torch.tensor(f)))
        assert ((nrm * ray).sum(1) < 0.05 * f).all()
    again, _ = _samples(load_datasets(spec))
    assert torch.equal(again.x, train.x) and torch.equal(again.targets["depth"], dep)
    assert not torch.equal(val.x, train.x[:3])
    one = synthetic_scenes([4], 16, split="train")
    assert torch.equal(one.x[0], train.x[4])  # batching never changes a scene


def _plain(rgb: float) -> Texture:
    return Texture(3, 1.0, 0.0, (rgb, rgb, rgb), (rgb, rgb, rgb))


def test_level_camera_sees_a_flat_floor_and_a_far_wall() -> None:
    scene = SceneParams(
        room=(6.0, 6.0, 3.0), camera=(3.0, 0.5, 1.5), yaw=math.pi / 2, pitch=0.0, roll=0.0,
        fov=math.radians(60), boxes=(), spheres=(),
        textures=(_plain(0.5), _plain(0.6), _plain(0.7)), light=(3.0, 3.0, 2.9),
    )  # fmt: skip
    size = 32
    _, depth, normal = render_scenes([scene], size)
    f, c = (size / 2) / math.tan(math.radians(30)), (size - 1) / 2
    # the floor, 1.5 m below the camera: pixel row v meets it at depth 1.5 f / (v - c)
    assert depth[0, 0, 28, 16] == pytest.approx(1.5 * f / (28 - c), rel=1e-5)
    bottom = normal[0, :, 26:, :].reshape(3, -1)
    assert np.allclose(bottom.T, [0.0, -1.0, 0.0], atol=1e-6)  # up is -y in the camera frame
    # the far wall at y = 6, 5.5 m ahead, faces the camera
    assert depth[0, 0, 15, 16] == pytest.approx(5.5, rel=1e-5)
    assert np.allclose(normal[0, :, 15, 16], [0.0, 0.0, -1.0], atol=1e-6)


def test_box_and_sphere_are_hit_in_front_of_the_wall() -> None:
    from rpg_core.data.scenes import Box, Sphere

    scene = SceneParams(
        room=(6.0, 6.0, 3.0), camera=(3.0, 0.5, 1.0), yaw=math.pi / 2, pitch=0.0, roll=0.0,
        fov=math.radians(60), boxes=(Box(3.0, 3.0, 0.0, 0.5, 0.5, 2.0),),
        spheres=(Sphere(1.0, 2.5, 0.4),),
        textures=(*(_plain(0.5),) * 3, _plain(0.2), _plain(0.9)), light=(3.0, 1.0, 2.9),
    )  # fmt: skip
    _, depth, normal = render_scenes([scene], 32)
    assert depth[0, 0, 15, 15] == pytest.approx(2.0, rel=1e-5)  # the box's front face, y = 2.5
    assert np.allclose(normal[0, :, 15, 15], [0.0, 0.0, -1.0], atol=1e-6)
    assert (depth[0] < 5.5).sum() > 40


# --- scenes:<name> --------------------------------------------------------------------------------
def scenes_tree(root: Path, scale: float | None = 1000.0) -> Path:
    tree = root / "rooms"
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        for kind in ("rgb", "depth", "normal"):
            (tree / split / kind).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tree / split / "rgb" / f"{i:03d}.png"
            )
            raw = np.full((8, 8), 2500, np.uint16)
            raw[0, 0] = 0  # missing depth
            Image.fromarray(raw).save(tree / split / "depth" / f"{i:03d}.png")
            nrm = np.zeros((8, 8, 3), np.uint8)
            nrm[...] = (128, 0, 128)  # about (0, -1, 0)
            nrm[7, 7] = 0  # missing normal
            Image.fromarray(nrm).save(tree / split / "normal" / f"{i:03d}.png")
    if scale is not None:
        (tree / "scene.json").write_text(json.dumps({"depth_scale": scale}))
    return tree


def test_scene_folder_reads_depth_normal_and_mask(tmp_path: Path) -> None:
    tree = scenes_tree(tmp_path)
    d = load_datasets({"dataset": "scenes:rooms", "image_size": 8}, data_root=tmp_path)
    train, val = _samples(d)
    assert (len(train), len(val), d.task, d.num_classes) == (2, 1, "multitask", 4)
    rgb = np.asarray(Image.open(tree / "train" / "rgb" / "001.png")).transpose(2, 0, 1)
    assert np.array_equal(train.x[1].numpy(), rgb)
    dep, mask, nrm = train.targets["depth"], train.targets["mask"], train.targets["normal"]
    assert dep[0, 0, 3, 3] == pytest.approx(2.5) and dep[0, 0, 0, 0] == 0
    assert mask[0, 0, 0, 0] == 0 and mask[0, 0, 7, 7] == 0 and mask.sum() == 2 * 62
    assert torch.allclose(nrm[0, :, 3, 3].norm(), torch.tensor(1.0))
    assert nrm[0, 1, 3, 3] == pytest.approx(-1.0, abs=1e-3) and (nrm[0, :, 7, 7] == 0).all()
    # resized and centre-cropped: still a square at image_size
    small = load_datasets({"dataset": "scenes:rooms", "image_size": 16}, data_root=tmp_path)
    assert _samples(small)[0].targets["depth"].shape == (2, 1, 16, 16)


def test_scene_folder_default_depth_scale(tmp_path: Path) -> None:
    scenes_tree(tmp_path, scale=None)
    train, _ = _samples(load_datasets({"dataset": "scenes:rooms"}, data_root=tmp_path))
    assert train.targets["depth"][0, 0, 20, 20] == pytest.approx(2500 / 512)


@pytest.mark.parametrize("fault", ["no-normal", "8-bit", "size", "scale"])
def test_scene_folder_faults_are_named(tmp_path: Path, fault: str) -> None:
    tree = scenes_tree(tmp_path)
    match = {"no-normal": "no normal counterpart", "8-bit": "not 16-bit depth",
             "size": "differs in size", "scale": "depth_scale"}[fault]  # fmt: skip
    if fault == "no-normal":
        (tree / "train" / "normal" / "001.png").unlink()
    elif fault == "8-bit":
        Image.fromarray(np.ones((8, 8), np.uint8)).save(tree / "val" / "depth" / "000.png")
    elif fault == "size":
        Image.fromarray(np.ones((9, 8), np.uint16)).save(tree / "val" / "depth" / "000.png")
    else:
        (tree / "scene.json").write_text('{"depth_scale": -1}')
    with pytest.raises(RPGDataError, match=match):
        load_datasets({"dataset": "scenes:rooms", "image_size": 8}, data_root=tmp_path)


# --- batches --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["synthetic-pose", "synthetic-scenes"])
def test_batch_loader_yields_target_dicts(key: str) -> None:
    d = load_datasets({"dataset": key, "num_train": 10, "num_val": 5, "image_size": 16})
    train, val = _samples(d)
    loader = BatchLoader(d, "train", 4, seed=1)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 3
    for x, y in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
        assert isinstance(y, dict) and set(y) == set(train.targets)
        assert all(len(v) == len(x) for v in y.values())
    again = list(loader.epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    # val batches are in order, normalised with the training mean and std
    x, y = next(iter(BatchLoader(d, "val", 3).epoch(0)))
    mean, std = torch.tensor(d.mean).view(1, 3, 1, 1), torch.tensor(d.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (val.x[:3].float() / 255 - mean) / std)
    for k, v in y.items():
        assert torch.equal(v, val.targets[k][:3])


def test_classification_datasets_keep_their_task() -> None:
    d = load_datasets({"dataset": "synthetic", "num_classes": 2, "num_train": 8, "num_val": 4})
    assert d.task == "classification"
    x, y = next(iter(BatchLoader(d, "val", 4).epoch(0)))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.int64
