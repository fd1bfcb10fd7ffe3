"""``rpg sweep`` and ``rpg fit`` tell the same truth as the service: strict JSON, only what was
computed, a note for what is not fitted, per-epoch progress, the same stored result."""

from __future__ import annotations

import io
import json
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rpg_core.cli import main
from rpg_core.cli.analysis import SweepProgress
from rpg_core.training.result import ExperimentResult, TrainResult


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as strict parsers (JSON.parse, jq) do."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- a fake engine: a known power law, two epochs per run, the callbacks called as train does --
EPOCHS = 2


def _fake_engine(nan_history: bool = False) -> types.ModuleType:
    module = types.ModuleType("rpg_core.training.engine")

    def train(spec: Any, *, callbacks: Any = (), **_: Any) -> TrainResult:
        ring = spec.rpg.ring_size if spec.rpg is not None else 1e7
        acc = 1.0 - 2.0 * ring**-0.3
        history = []
        for epoch in range(1, EPOCHS + 1):
            record = {"epoch": epoch, "train_loss": 0.5, "train_acc": acc, "val_loss": 0.4,
                      "val_acc": acc, "lr": 0.1, "seconds": 0.01}  # fmt: skip
            if nan_history:
                record["val_loss"] = math.nan
            history.append(record)
            for cb in callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(epoch, dict(record))
        return TrainResult(name=spec.name, final_val_acc=acc, epochs=EPOCHS, history=history)

    module.train = train  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rpg_core.training.engine", _fake_engine())


BASE: dict[str, Any] = {
    "model": {"width": 0.125},
    "rpg": {"ring_size": 100},
    "train": {"epochs": EPOCHS},
}


def _sweep_file(tmp_path: Path, **sweep: Any) -> Path:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"name": "law", "base": BASE, **sweep}))
    return path


def _run_file(tmp_path: Path, params: int, acc: float) -> Path:
    path = tmp_path / f"r{params}.json"
    path.write_text(json.dumps({"name": f"r{params}", "backbone_params": params, "accuracy": acc}))
    return path


def _points(tmp_path: Path, n: int) -> list[str]:
    sizes = [1000 * 4**i for i in range(n)]
    noise = [0.004, -0.003, 0.002, -0.004, 0.003, -0.002][:n]
    return [
        str(_run_file(tmp_path, p, 1 - 0.9 * p**-0.3 + e))
        for p, e in zip(sizes, noise, strict=True)
    ]


# --- rpg fit -------------------------------------------------------------------------------------
def test_fit_json_of_three_points_is_strict_and_claims_no_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", *_points(tmp_path, 3), "--json", "--bootstrap", "200"]) == 0
    fit = strict_json(capsys.readouterr().out)
    assert fit["n"] == 3 and fit["adj_r2"] is None  # no degree of freedom left: null, not NaN
    assert fit["saturating"] is None and fit["best"] is None
    assert fit["criterion"] == "not compared: the saturating form needs 5 points, this fit has 3"
    assert len(fit["b_ci"]) == 2 and "rough" in fit["ci_note"]


def test_fit_text_prints_only_what_was_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", *_points(tmp_path, 3), "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "95% CI" in out and "rough: a bootstrap of only 3 points" in out
    assert "better form" not in out and "AICc" not in out
    assert "one form fitted: the saturating form (+ c) needs 5 points, this fit has 3" in out
    assert "adj r2" not in out  # undefined with 3 points

    (tmp_path / "six").mkdir()
    assert main(["fit", *_points(tmp_path / "six", 6), "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "better form (AICc): " in out and "rough" not in out and "adj r2 = " in out


def test_fit_of_a_sweep_folder_skips_its_summary(
    tmp_path: Path, fake_engine: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    sweep = _sweep_file(tmp_path, grid={"rpg.ring_size": [100, 1000, 10000]})
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    capsys.readouterr()
    files = sorted(str(p) for p in out.glob("*.json"))  # what the shell makes of out/*.json
    assert str(out / "summary.json") in files
    assert main(["fit", *files, "--json", "--bootstrap", "0"]) == 0
    printed = capsys.readouterr()
    assert strict_json(printed.out)["n"] == 3
    assert f"skipped {out / 'summary.json'}: a sweep's summary" in printed.err

    assert main(["fit", str(out / "summary.json")]) == 2  # nothing left to fit: a clear error
    assert "none of the files is a run result" in capsys.readouterr().err


def test_fit_notes_a_foreign_json_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    assert main(["fit", *_points(tmp_path, 3), str(other), "--json", "--bootstrap", "0"]) == 0
    assert "skipped" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert main(["fit", *_points(tmp_path, 3), str(broken)]) == 2  # a damaged file is an error
    assert "is not JSON" in capsys.readouterr().err


# --- rpg sweep: summary ---------------------------------------------------------------------------
def test_an_ablation_at_one_size_says_why_it_has_no_fit(
    tmp_path: Path, fake_engine: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    sweep = _sweep_file(tmp_path, grid={"rpg.permute": [True, False], "rpg.reflect": [True, False]})
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    summary = strict_json((out / "summary.json").read_text())
    assert summary["power_law"] == {}
    (why,) = summary["not_fitted"].values()
    assert why.startswith("the size does not vary: all 4 runs have 100 backbone parameters")
    assert "error" not in json.dumps(summary["not_fitted"])
    assert "no power law for" in capsys.readouterr().out


def test_a_size_sweep_fits_and_lists_its_plain_baseline(tmp_path: Path, fake_engine: None) -> None:
    out = tmp_path / "out"
    sweep = _sweep_file(
        tmp_path, grid={"rpg.ring_size": [100, 1000, 10000]}, extra=[{"name": "p", "rpg": None}]
    )
    assert main(["sweep", str(sweep), "--out", str(out), "--threads", "1"]) == 0
    summary = strict_json((out / "summary.json").read_text())
    (fit,) = summary["power_law"].values()
    assert fit["n"] == 3 and fit["b"] == pytest.approx(0.3, rel=1e-6)
    assert fit["adj_r2"] is None and fit["best"] is None  # strict JSON, no claimed comparison
    assert list(summary["not_fitted"]) == ["plain"]


def test_sweep_json_is_strict_when_a_metric_is_nan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rpg_core.training.engine", _fake_engine(nan_history=True))
    out = tmp_path / "out"
    assert main(["sweep", str(_sweep_file(tmp_path)), "--out", str(out)]) == 0
    run = strict_json((out / "law.json").read_text())
    assert [h["val_loss"] for h in run["result"]["history"]] == [None, None]
    assert run["checkpoint"] == str(out / "law")


# --- rpg sweep: progress, --threads, --dry-run -------------------------------------------------
def test_sweep_prints_every_epoch_with_the_sweeps_eta(
    tmp_path: Path, fake_engine: None, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = _sweep_file(tmp_path, grid={"rpg.ring_size": [100, 1000]})
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/2] law-ring_size_100 (2 epochs)"
    epochs = [line for line in lines if line.lstrip().startswith("epoch ")]
    assert len(epochs) == 2 * EPOCHS
    assert epochs[0].strip().startswith("epoch 1/2: train loss 0.5000")
    assert all("sweep ETA " in line for line in epochs)
    assert epochs[-1].endswith("sweep ETA 0:00")  # nothing left to train


def test_sweep_threads(
    tmp_path: Path, fake_engine: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    sweep = str(_sweep_file(tmp_path))
    assert main(["sweep", sweep, "--out", str(tmp_path / "out"), "--threads", "3"]) == 0
    assert calls == [3]
    assert main(["sweep", sweep, "--out", str(tmp_path / "out"), "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_dry_run_shows_the_fields_that_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = _sweep_file(
        tmp_path,
        grid={"rpg.permute": [True, False]},
        extra=[{"name": "plain", "rpg": None}],
        seeds=[0, 1],
    )
    assert main(["sweep", str(sweep), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "fields that differ between the runs: rpg, rpg.permute, rpg.seed, train.seed"
    )
    rows = {line.split()[0]: line.split()[2:] for line in lines[1:-1]}
    assert rows["law-permute_False-seed_1"] == ["rpg.permute=false", "rpg.seed=1", "train.seed=1"]
    assert rows["law-plain-seed_0"] == ["rpg=null", "train.seed=0"]
    assert lines[-1] == "6 experiments (12 epochs in all)"


# --- one engine, one result: a local run stores what the service stores ------------------------
TINY: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 0.1},
    "data": {"dataset": "synthetic", "num_classes": 3, "num_train": 24, "num_val": 12,
             "image_size": 8},
    "train": {"epochs": 1, "batch_size": 12, "lr": 0.05},
}  # fmt: skip


def test_a_local_sweep_run_stores_the_similarity_histogram(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"name": "tiny", "base": TINY}))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--data-root", str(tmp_path)]) == 0
    result = strict_json((out / "tiny.json").read_text())["result"]
    hist = result[
        "similarity"
    ]  # as the worker stores it (rpg_core.training.experiment.train_experiment)
    assert hist["layer"] == "layer3" and hist["images"] == 12
    assert sum(hist["fractions"]) == pytest.approx(1.0)
    assert len(hist["bin_edges"]) == len(hist["fractions"]) + 1
    stored = ExperimentResult.model_validate(result)  # the service's stored result, as it is
    assert stored.backbone_params == result["params"]["backbone"] and stored.val_acc is not None


def test_the_sweep_eta_counts_only_epochs_left_to_train() -> None:
    stream = io.StringIO()
    progress = SweepProgress([2, 3, 4], stream=stream)
    progress.start_run(0)
    assert progress.remaining() == 9 and progress.eta_s() == math.inf  # nothing timed yet
    progress.on_resume([{"epoch": 1}])  # a resumed run: its first epoch is done
    assert progress.remaining() == 8 and "resumed at epoch 1" in stream.getvalue()
    record = {"train_loss": 0.5, "val_loss": 0.4, "lr": 0.1, "seconds": 0.01}
    progress.on_epoch_end(2, record)
    assert progress.remaining() == 7 and math.isfinite(progress.eta_s())
    progress.end_run()
    progress.start_run(1)
    progress.end_run()  # a run that failed at once: its epochs are not waited for
    assert progress.remaining() == 4
    assert "epoch 2/2: train loss 0.5000" in stream.getvalue()


def test_a_reused_dense_network_is_not_called_a_resume() -> None:
    """A pruning method's run that starts from its sweep's dense network says so; a run resumed
    from its checkpoint after it says "resumed" again."""
    stream = io.StringIO()
    progress = SweepProgress([5, 5], stream=stream)
    progress.start_run(0)
    progress.on_dense_reused(4)
    progress.on_resume([{"epoch": e} for e in range(1, 5)])
    assert "the dense network of this sweep reused (4 epochs, trained once)" in stream.getvalue()
    assert "resumed" not in stream.getvalue() and progress.remaining() == 6
    progress.end_run()
    progress.start_run(1)
    progress.on_resume([{"epoch": 1}])
    assert stream.getvalue().endswith("  resumed at epoch 1\n")
