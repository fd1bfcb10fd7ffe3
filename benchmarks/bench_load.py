"""Load + first forward of a ResNet18-RPG with a 2M ring against a plain safetensors load of the
same network (issue 27), in interleaved pairs.

    python benchmarks/bench_load.py [--pairs 15] [--quick] [--threads 1] [--device cpu|cuda]
                                    [--ring 2000000] [--width 1.0] [--profile]

Both sides start from a file on disk (in the page cache) and end after the first forward pass
of one 3x32x32 image:

- rpg: ``rpg_core.format.load_compact`` (header checks, checksum, the model rebuilt from the
  stored spec, the ring's index table generated from the seeds) and the first forward (the
  generated kernels gathered);
- plain: the same architecture without a ring built by ``create_model`` (as any nn.Module is
  built: its weights initialised), ``safetensors.torch.load_file`` and ``load_state_dict``, and
  its first forward.

The pairs alternate their order (``paired.pairs``); the summary line gives the median of the
per-pair ratios rpg / plain with a bootstrap 95% interval, in wall time and in CPU time of the
process. ``--profile`` prints where one load's time goes (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from paired import load_text, median, pairs, ratio
from safetensors.torch import load_file, save_file

from rpg_core.format import load_compact, save_compact
from rpg_core.models import create_model


def specs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    model = {"arch": "resnet18", "width": args.width, "num_classes": 10}
    return {"model": model, "rpg": {"ring_size": args.ring}}, {"model": model}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def loaders(args: argparse.Namespace, tmp: Path) -> dict[str, Callable[[], torch.nn.Module]]:
    rpg_spec, plain_spec = specs(args)
    save_compact(create_model(rpg_spec), tmp / "model.rpg")
    save_file(create_model(plain_spec).state_dict(), str(tmp / "model.safetensors"))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(args.device)
    dev = args.device

    def rpg() -> torch.nn.Module:
        model = load_compact(tmp / "model.rpg", map_location=dev)
        with torch.no_grad():
            model(x)
        _sync(dev)
        return model

    def plain() -> torch.nn.Module:
        model = create_model(plain_spec)
        model.load_state_dict(load_file(str(tmp / "model.safetensors")))
        model = model.to(dev).eval()
        with torch.no_grad():
            model(x)
        _sync(dev)
        return model

    return {"rpg": rpg, "plain": plain}


def profile(fn: Callable[[], object], top: int = 14) -> None:
    prof = cProfile.Profile()
    prof.runcall(fn)
    print("\nwhere one load's time goes (cProfile, own time):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="5 pairs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ring", type=int, default=2_000_000)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n_pairs = 5 if args.quick else args.pairs
    load0 = load_text()
    print(
        f"load + first forward, ResNet18 (CIFAR form, width {args.width}) with a "
        f"{args.ring:,} ring against plain safetensors; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load0}"
    )
    with tempfile.TemporaryDirectory() as d:
        fns = loaders(args, Path(d))
        rpg, plain = pairs(fns["rpg"], fns["plain"], n_pairs)
        if args.profile:
            profile(fns["rpg"])
    wall = ratio([s.wall for s in rpg], [s.wall for s in plain])
    cpu = ratio([s.cpu for s in rpg], [s.cpu for s in plain])
    print(f"{'variant':<8}{'wall s (median)':>17}{'min-max':>16}{'cpu s (median)':>16}")
    for name, ss in (("plain", plain), ("rpg", rpg)):
        walls = [s.wall for s in ss]
        print(
            f"{name:<8}{median(walls):>17.3f}{min(walls):>8.3f}-{max(walls):.3f}"
            f"{median([s.cpu for s in ss]):>16.3f}"
        )
    print(
        f"SUMMARY load+first-forward rpg/plain: wall {wall.text()}, cpu {cpu.text()}; "
        f"load average {load0} -> {load_text()} (target <= 1.5)"
    )
    return {"wall": wall.median, "cpu": cpu.median, "wall_low": wall.low, "wall_high": wall.high}


if __name__ == "__main__":
    main()
