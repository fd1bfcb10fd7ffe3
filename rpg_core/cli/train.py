"""``rpg train SPEC.yaml``: train locally with a progress line on stderr, write the result JSON
(the result the service stores, :func:`rpg_core.training.experiment.train_experiment`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..exceptions import RPGConfigError
from .output import to_json


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train an experiment spec locally and write its result")
    p.add_argument("spec", help="the experiment spec (YAML or JSON)")
    p.add_argument("--out", help="write the result JSON here (default: stdout)")
    p.add_argument("--checkpoint-dir", help="checkpoint every epoch here; resume from it")
    p.add_argument("--data-root", help="where datasets live (default: $RPG_DATA_ROOT or ./data)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=run)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class ProgressLine:
    """A ``\\r`` progress line on stderr: epoch, step, ETA, running loss and accuracy."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def on_step(self, step: int, total: int, m: dict[str, Any]) -> None:
        acc = f"  acc {100 * m['acc']:.1f}%" if m.get("acc") is not None else ""
        self.stream.write(
            f"\repoch {m['epoch']}/{m['epochs']}  step {m['step_in_epoch']}/{m['steps_per_epoch']}"
            f"  ETA {_clock(m['eta_s'])}  loss {m['loss']:.4f}{acc}   "
        )
        self.stream.flush()

    def on_epoch_end(self, epoch: int, m: dict[str, Any]) -> None:
        self.stream.write(f"\r{epoch_line(epoch, m)}\n")
        self.stream.flush()


def epoch_line(epoch: int, m: dict[str, Any], epochs: int | None = None) -> str:
    """``epoch 2/5: train loss 0.41 acc 85.1%  val loss 0.39 acc 86.0%  lr 0.05  (12.3s)``; a
    pruning method's round (no learning rate of its own, maybe no training) says its round and
    the non-zero backbone weights left."""
    of = f"/{epochs}" if epochs is not None and "prune_round" not in m else ""
    head = f"epoch {epoch}{of}"
    if "prune_round" in m:
        head += f" (prune round {m['prune_round']}, {m.get('backbone_nonzero', 0):,} non-zero)"
    parts = [head + ":"]
    if m.get("train_loss") is not None:
        train_acc = f" acc {100 * m['train_acc']:.1f}%" if m.get("train_acc") is not None else ""
        parts.append(f"train loss {m['train_loss']:.4f}{train_acc}")
    if m.get("val_loss") is not None:
        parts.append(f" val loss {m['val_loss']:.4f}{_val_metrics(m)}")
    if m.get("lr") is not None:
        parts.append(f" lr {m['lr']:.4g}")
    if m.get("seconds") is not None:
        parts.append(f" ({m['seconds']:.1f}s)")
    return " ".join(parts)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (None: torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise RPGConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _primary(key: str | None, value: float | None) -> str:
    """``val acc 91.20%`` (classification), ``val pckh 0.6340``, ``val depth_rmse 0.4100``."""
    if key in (None, "acc"):
        return f"val acc {'n/a' if value is None else f'{100 * value:.2f}%'}"
    return f"val {key} {'n/a' if value is None else f'{value:.4f}'}"


def _val_metrics(m: dict[str, Any]) -> str:
    """`` acc 91.2%`` for classification, `` pckh 0.634`` / `` depth_rmse 0.41 ...`` else."""
    out = ""
    for key, value in m.items():
        if not key.startswith("val_") or key == "val_loss" or value is None:
            continue
        name = key.removeprefix("val_")
        out += f" {name} {100 * value:.1f}%" if name in ("acc", "top5") else f" {name} {value:.4g}"
    return out


def run(args: argparse.Namespace) -> int:
    from ..spec import load_spec
    from ..training.experiment import train_experiment

    spec = load_spec(args.spec)
    set_threads(args.threads)
    result = train_experiment(  # the service's path: the same result, similarity included
        spec,
        callbacks=[] if args.quiet else [ProgressLine()],
        checkpoint_dir=args.checkpoint_dir,
        data_root=args.data_root,
        resume=not args.no_resume,
    )
    checkpoint = {"checkpoint": str(args.checkpoint_dir)} if args.checkpoint_dir else {}
    text = to_json({**result.stored(), **checkpoint})
    for flag in result.health:
        print(f"WARNING {flag['code']}: {flag['message']}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(
            f"{result.status}: {result.epochs_run}/{result.epochs} epochs, "
            f"{_primary(result.primary_metric, result.primary_value)}; "
            f"result written to {args.out}",
            file=sys.stderr,
        )
    else:
        print(text)
    return 0
