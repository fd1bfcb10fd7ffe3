"""The tasks' losses and metrics (rpg_core.tasks) against small hand-worked examples."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rpg_core.exceptions import RPGConfigError
from rpg_core.tasks import (
    HEATMAP_STRIDE,
    MultitaskTask,
    PoseTask,
    decode,
    get_task,
    heatmap_targets,
)
from rpg_core.training.loop import evaluate_batches, train_steps


def _png(b64: str) -> Image.Image:
    raw = base64.b64decode(b64, validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw))


def _in(h: float) -> float:
    """Heatmap coordinate -> input coordinate (stride 2)."""
    return (h + 0.5) * HEATMAP_STRIDE - 0.5


def test_the_registry() -> None:
    assert HEATMAP_STRIDE == 2 and _in(0) == 0.5  # heatmap pixel 0 covers input pixels 0 and 1
    for name in ("classification", "pose", "multitask"):
        assert get_task(name).info.name == name
    with pytest.raises(RPGConfigError, match="unknown"):
        get_task("segmentation")


# --- pose --------------------------------------------------------------------------------------
def _pose_case(visible: list[float]) -> tuple[list[dict[str, torch.Tensor]], dict]:
    """One 16x16 image, 2 joints, head 10 px; heatmaps 8x8 with one hot pixel each.

    Joint 0 at heatmap (2, 3) = input (4.5, 6.5), its peak right there. Joint 1 at heatmap
    (2, 5) = input (4.5, 10.5), its peak at heatmap (5, 5) = input (10.5, 10.5): 6 px = 0.6 head.
    """
    hm = torch.zeros(1, 2, 8, 8)
    hm[0, 0, 3, 2] = 1.0
    hm[0, 1, 5, 5] = 1.0
    targets = {
        "joints": torch.tensor([[[_in(2), _in(3)], [_in(2), _in(5)]]]),
        "visible": torch.tensor([visible]),
        "head": torch.tensor([10.0]),
    }
    return [{"heatmaps": hm}], targets


def test_pckh_counts_a_peak_at_the_joint_and_not_one_0_6_head_away() -> None:
    task = PoseTask()
    outputs, targets = _pose_case([1.0, 1.0])
    pred = decode(outputs[0]["heatmaps"])
    assert pred[0].tolist() == [[4.5, 6.5], [10.5, 10.5]]  # lone peaks: no refinement
    sums = task.eval_sums(outputs, targets)
    assert (sums["pckh_correct"], sums["pckh_count"]) == (1.0, 2.0)
    assert task.finish(sums, 1)["val_pckh"] == 0.5
    # 0.4 head away (heatmap (4, 5) = input (8.5, 10.5)): correct
    outputs[0]["heatmaps"][0, 1] = 0.0
    outputs[0]["heatmaps"][0, 1, 5, 4] = 1.0
    assert task.finish(task.eval_sums(outputs, targets), 1)["val_pckh"] == 1.0


def test_pckh_ignores_invisible_joints() -> None:
    task = PoseTask()
    outputs, targets = _pose_case([1.0, 0.0])  # the wrong joint is invisible
    sums = task.eval_sums(outputs, targets)
    assert (sums["pckh_correct"], sums["pckh_count"]) == (1.0, 1.0)
    assert task.finish(sums, 1) == {"val_loss": pytest.approx(sums["loss_sum"]), "val_pckh": 1.0}


def test_decode_moves_a_quarter_pixel_toward_the_higher_neighbour() -> None:
    hm = torch.zeros(1, 2, 8, 8)
    hm[0, 0, 4, 3] = 1.0  # peak at x 3, y 4
    hm[0, 0, 4, 4], hm[0, 0, 4, 2] = 0.5, 0.2  # right higher: x + 0.25
    hm[0, 0, 3, 3], hm[0, 0, 5, 3] = 0.6, 0.1  # up higher: y - 0.25
    hm[0, 1, 0, 7] = 1.0  # a border peak: not moved
    hm[0, 1, 1, 7] = 0.5
    pred = decode(hm)
    assert pred[0, 0].tolist() == [_in(3.25), _in(3.75)] == [7.0, 8.0]
    assert pred[0, 1].tolist() == [_in(7), _in(0)]


def test_decode_recovers_the_joints_of_gaussian_targets() -> None:
    g = torch.Generator().manual_seed(0)
    joints = 2 + torch.rand(4, 16, 2, generator=g) * 59  # in a 64x64 input, off the borders
    hm = heatmap_targets(joints, 32, 32)
    assert hm.shape == (4, 16, 32, 32) and float(hm.max()) <= 1.0
    err = (decode(hm) - joints).abs()
    assert float(err.max()) <= 0.5 + 1e-5  # argmax + quarter pixel: within 1/4 heatmap px


def test_the_pose_loss_is_a_spatial_cross_entropy_over_visible_joints_per_stack() -> None:
    task = PoseTask()
    joints = torch.tensor([[[10.0, 12.0], [30.0, 20.0]]])
    target = heatmap_targets(joints, 16, 16)
    dist = target / target.sum((2, 3), keepdim=True)  # each joint's target distribution
    entropy = -(dist * dist.clamp(min=1e-30).log()).sum((2, 3))  # [1, 2]: the loss's floor
    logits = dist.clamp(min=1e-30).log()  # softmax(logits) == dist exactly
    wrong = logits.clone()
    wrong[0, 1] = 0.0  # the second (invisible) joint's heatmap: flat, the worst guess
    targets = {"joints": joints, "visible": torch.tensor([[1.0, 0.0]]), "head": torch.ones(1)}
    # only visible joints count: the flat second heatmap costs nothing
    assert float(task.loss([{"heatmaps": wrong}], targets)) == pytest.approx(float(entropy[0, 0]))
    targets["visible"] = torch.ones(1, 2)
    one = float(task.loss([{"heatmaps": wrong}], targets))
    # by hand: a flat heatmap over 256 pixels costs log(256) whatever the target; the mean of
    # the two joints' cross-entropies
    assert one == pytest.approx((float(entropy[0, 0]) + math.log(256)) / 2, rel=1e-5)
    two = float(task.loss([{"heatmaps": wrong}, {"heatmaps": wrong}], targets))
    assert two == pytest.approx(2 * one)  # every stack is supervised
    # a constant added to a heatmap changes nothing (a softmax over its pixels)
    assert float(task.loss([{"heatmaps": wrong + 3.0}], targets)) == pytest.approx(one, rel=1e-5)


def test_sgd_on_the_pose_loss_raises_pckh_to_1() -> None:
    task = PoseTask()
    g = torch.Generator().manual_seed(1)
    joints = 4 + torch.rand(1, 16, 2, generator=g) * 56
    targets = {"joints": joints, "visible": torch.ones(1, 16), "head": torch.full((1,), 4.0)}
    hm = nn.Parameter(0.3 * torch.randn(1, 16, 32, 32, generator=g))
    pckh = lambda: task.finish(task.eval_sums([{"heatmaps": hm.detach()}], targets), 1)  # noqa: E731
    before = pckh()
    # a per-pixel parameter's gradient is (softmax - target) / 16 (the mean over 16 joints)
    opt = torch.optim.SGD([hm], lr=50.0)
    losses = []
    for _ in range(50):
        loss = task.loss([{"heatmaps": hm}], targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    after = pckh()
    assert before["val_pckh"] < 0.5 and after["val_pckh"] == 1.0
    # from log(32 * 32) = 6.9 toward the targets' entropy (2.8 at sigma 1), its floor
    assert losses[-1] < 0.5 * losses[0] and after["val_loss"] < before["val_loss"]


# --- multitask ---------------------------------------------------------------------------------
def _scene(depth_pred, depth_true, mask, normal_pred=None, normal_true=None):
    b, _, h, w = depth_true.shape
    up = torch.zeros(b, 3, h, w)
    up[:, 2] = 1.0
    outputs = [{"depth": depth_pred, "normal": up if normal_pred is None else normal_pred}]
    targets = {"depth": depth_true, "normal": up if normal_true is None else normal_true}
    targets["mask"] = mask
    return outputs, targets


def test_depth_rmse_by_hand() -> None:
    task = MultitaskTask()
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    true = torch.tensor([[[[2.0, 7.0], [0.0, 9.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # valid errors 1 and 3
    sums = task.eval_sums(*_scene(pred, true, mask))
    assert (sums["depth_se"], sums["depth_n"]) == (10.0, 2.0)
    out = task.finish(sums, 1)
    assert out["val_depth_rmse"] == pytest.approx(math.sqrt(5))
    assert out["val_normal_rmse"] == 0.0  # identical normals
    # the loss: L1 (1 + 3) / 2 = 2 on depth, 1 - cos = 0 on normals
    assert out["val_loss"] == pytest.approx(2.0)


def test_normal_rmse_of_opposite_normals() -> None:
    task = MultitaskTask()
    g = torch.Generator().manual_seed(2)
    n = F.normalize(torch.randn(1, 3, 4, 4, generator=g), dim=1)
    ones = torch.ones(1, 1, 4, 4)
    out = task.finish(task.eval_sums(*_scene(ones, ones, ones, -n, n)), 1)
    # |-n - n|^2 = 4 per pixel over 3 components: sqrt(4 / 3)
    assert out["val_normal_rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert out["val_loss"] == pytest.approx(2.0)  # 1 - cos = 2
    # a predicted normal is normalised first: 3 n is n
    assert task.finish(task.eval_sums(*_scene(ones, ones, ones, 3 * n, n)), 1)[
        "val_normal_rmse"
    ] == pytest.approx(0.0, abs=1e-6)


def test_rmse_sums_are_additive_over_batches() -> None:
    task = MultitaskTask()
    g = torch.Generator().manual_seed(3)

    def batch(b: int):
        d = 1 + torch.rand(b, 1, 6, 6, generator=g)
        t = 1 + 3 * torch.rand(b, 1, 6, 6, generator=g)
        m = (torch.rand(b, 1, 6, 6, generator=g) > 0.3).float()
        n = torch.randn(b, 3, 6, 6, generator=g)
        nt = F.normalize(torch.randn(b, 3, 6, 6, generator=g), dim=1)
        return _scene(d, t, m, n, nt)

    (o1, t1), (o2, t2) = batch(2), batch(3)
    s1, s2 = task.eval_sums(o1, t1), task.eval_sums(o2, t2)
    total = task.finish({k: s1[k] + s2[k] for k in s1}, 5)
    cat = task.finish(
        task.eval_sums(
            [{k: torch.cat([o1[0][k], o2[0][k]]) for k in o1[0]}],
            {k: torch.cat([t1[k], t2[k]]) for k in t1},
        ),
        5,
    )
    for key in ("val_depth_rmse", "val_normal_rmse"):
        assert total[key] == pytest.approx(cat[key], rel=1e-6)
    # not the mean of the batches' RMSEs
    mean = (task.finish(s1, 2)["val_depth_rmse"] + task.finish(s2, 3)["val_depth_rmse"]) / 2
    assert mean != pytest.approx(cat["val_depth_rmse"], rel=1e-6)


def test_metrics_come_from_the_last_stack_and_every_stack_is_supervised() -> None:
    task = MultitaskTask()
    ones = torch.ones(1, 1, 2, 2)
    (good,), targets = _scene(ones, ones, ones)
    bad = {"depth": 3 * ones, "normal": good["normal"]}
    assert task.finish(task.eval_sums([bad, good], targets), 1)["val_depth_rmse"] == 0.0
    assert float(task.loss([bad, good], targets)) == pytest.approx(2.0)
    assert float(task.loss([bad, bad], targets)) == pytest.approx(4.0)


def test_sgd_on_the_multitask_loss_lowers_both_rmses() -> None:
    task = MultitaskTask()
    g = torch.Generator().manual_seed(4)
    true_d = 1 + 2 * torch.rand(1, 1, 16, 16, generator=g)
    true_n = F.normalize(torch.randn(1, 3, 16, 16, generator=g), dim=1)
    mask = (torch.rand(1, 1, 16, 16, generator=g) > 0.2).float()
    depth = nn.Parameter(torch.ones(1, 1, 16, 16))
    normal = nn.Parameter(torch.randn(1, 3, 16, 16, generator=g))
    targets = {"depth": true_d, "normal": true_n, "mask": mask}

    def metrics() -> dict[str, float]:
        outputs = [{"depth": depth.detach(), "normal": normal.detach()}]
        return task.finish(task.eval_sums(outputs, targets), 1)

    before = metrics()
    # means over ~200 valid pixels: a per-pixel parameter's step is lr / n_valid
    n_valid = float(mask.sum())
    opt = torch.optim.SGD(
        [{"params": [depth], "lr": 0.05 * n_valid}, {"params": [normal], "lr": 0.5 * n_valid}]
    )
    for _ in range(50):
        loss = task.loss([{"depth": depth, "normal": normal}], targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = metrics()
    assert after["val_depth_rmse"] < 0.1 * before["val_depth_rmse"]
    assert after["val_normal_rmse"] < 0.1 * before["val_normal_rmse"]
    assert after["val_loss"] < 0.1 * before["val_loss"]


# --- classification ----------------------------------------------------------------------------
def test_classification_is_cross_entropy_and_top1_as_the_loop_computes_them() -> None:
    task = get_task("classification")
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(12, 10, generator=g)
    y = torch.randint(0, 10, (12,), generator=g)
    assert torch.equal(task.loss(logits, y), F.cross_entropy(logits, y))
    assert torch.equal(
        task.loss(logits, y, label_smoothing=0.1), F.cross_entropy(logits, y, label_smoothing=0.1)
    )
    assert task.batch_size(y) == 12
    assert task.train_sums(logits, y) == {"correct": float((logits.argmax(1) == y).sum())}
    sums = task.eval_sums(logits, y, top5=True)
    out = task.finish(sums, 12, top5=True)
    assert out["val_loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    assert out["val_acc"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    # exactly what the loop's evaluation gives (the model is the identity on logits)
    assert out == evaluate_batches(nn.Identity(), [(logits, y)], top5=True)
    assert set(task.finish(sums, 12)) == {"val_loss", "val_acc"}


def test_classification_training_sums_match_the_loop() -> None:
    task = get_task("classification")
    torch.manual_seed(6)
    x = torch.randn(8, 5)
    y = torch.randint(0, 3, (8,))

    def run(use_task: bool) -> tuple[float, float, torch.Tensor]:
        torch.manual_seed(7)
        model = nn.Linear(5, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        if not use_task:
            s = train_steps(model, [(x, y)] * 3, opt, label_smoothing=0.1)
            return s.loss, s.correct, model.weight.detach().clone()
        loss_sum, correct = 0.0, 0.0
        for _ in range(3):
            logits = model(x)
            loss = task.loss(logits, y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.item()) * task.batch_size(y)
            correct += task.train_sums(logits, y)["correct"]
        return loss_sum, correct, model.weight.detach().clone()

    a, b = run(False), run(True)
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])


def test_classification_has_no_samples() -> None:
    task = get_task("classification")
    assert task.samples(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 4), None) == []


# --- samples -----------------------------------------------------------------------------------
def test_pose_samples() -> None:
    task = PoseTask()
    g = torch.Generator().manual_seed(8)
    joints = 4 + torch.rand(2, 16, 2, generator=g) * 56
    visible = (torch.rand(2, 16, generator=g) > 0.3).float()
    targets = {"joints": joints, "visible": visible, "head": torch.tensor([12.0, 9.5])}
    outputs = [{"heatmaps": torch.rand(2, 16, 32, 32, generator=g)} for _ in range(2)]
    for channels, mode in ((3, "RGB"), (1, "L")):
        x = torch.randint(0, 256, (2, channels, 64, 64), generator=g, dtype=torch.uint8)
        samples = task.samples(x, outputs, targets, k=3)
        assert len(samples) == 2
        for i, s in enumerate(samples):
            pic = _png(s["image"])
            assert pic.size == (64, 64) and pic.mode == mode
            px = torch.from_numpy(np.array(pic))
            assert torch.equal(px.reshape(64, 64, channels).permute(2, 0, 1), x[i])
            assert len(s["pred"]) == 16 and all(len(p) == 2 for p in s["pred"])
            assert len(s["true"]) == 16 and [t[2] for t in s["true"]] == visible[i].int().tolist()
            want = decode(outputs[-1]["heatmaps"])[i]
            assert torch.allclose(torch.tensor(s["pred"]), want, atol=0.01)
            assert s["head"] == float(targets["head"][i])
    assert len(task.samples(x, outputs, targets, k=1)) == 1


def test_multitask_samples() -> None:
    task = MultitaskTask()
    g = torch.Generator().manual_seed(9)
    depth = 1 + torch.rand(2, 1, 16, 16, generator=g)
    normal = F.normalize(torch.randn(2, 3, 16, 16, generator=g), dim=1)
    mask = torch.ones(2, 1, 16, 16)
    mask[:, :, 0, 0] = 0.0
    targets = {"depth": depth, "normal": normal, "mask": mask}
    outputs = [{"depth": depth + 0.1, "normal": normal}]
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    (s, _) = task.samples(x, outputs, targets)
    assert set(s) == {"image", "depth_pred", "depth_true", "normal_pred", "normal_true"}
    for key in s:
        pic = _png(s[key])
        assert pic.size == (16, 16) and pic.mode == "RGB"
        assert pic.getpixel((0, 0)) == (0, 0, 0) or key == "image"  # invalid: black
    # one value range for pred and true: the largest true depth is below the largest pred
    true, pred = _png(s["depth_true"]), _png(s["depth_pred"])
    yellow = (253, 231, 37)  # the top of the range
    assert (np.asarray(pred) == yellow).all(-1).any()
    assert (np.asarray(true) != yellow).any(-1).all()
    # normals as (n + 1) / 2 * 255
    n = normal[0, :, 3, 5]
    want = tuple(round(float(c)) for c in (n + 1) / 2 * 255)
    assert _png(s["normal_true"]).getpixel((5, 3)) == pytest.approx(want, abs=1)


def test_a_metric_owns_its_direction() -> None:
    from rpg_core.catalog.tasks import task_info

    pckh = task_info("pose").metric("pckh")
    depth = task_info("multitask").metric("depth_rmse")
    assert pckh.best([0.2, 0.7, 0.5]) == 0.7 and depth.best([0.9, 0.3, 0.5]) == 0.3
    assert pckh.as_error(0.75) == 0.25 and depth.as_error(0.4) == 0.4
    assert pckh.from_error(pckh.as_error(0.6)) == 0.6 and depth.from_error(0.4) == 0.4
    assert pckh.fitted() == "1 - pckh" and depth.fitted() == "depth_rmse"
    with pytest.raises(ValueError, match="pckh"):
        pckh.best([])
