"""Data-parallel training: 1 device against N ranks of DDP for the same global batch.

Every configuration trains the same spec through the engine (``rpg_core.training.engine``):

- ``1 device``: a plain run (no torch.distributed);
- ``N ranks``: ``train.devices: N``, torchrun's ranks (gloo on the CPU, NCCL on GPUs), each its
  share of every global batch;
- ``N ranks, no all-reduce``: the same with DDP's gradient all-reduce replaced by a no-op comm
  hook (``RPG_DDP_NOOP_ALLREDUCE=1``: wrong gradients, timing only). The all-reduce share is
  ``1 - t(no all-reduce) / t(N ranks)`` per step. The batch statistics' all-reduces
  (GlobalBatchNorm / SyncBatchNorm) stay in both, so this is the gradients' share only;
- ``N ranks, no all-reduce, local BN``: also each rank's batchnorm over its own shard
  (``RPG_DDP_LOCAL_BN=1``, CPU only: SyncBatchNorm has no such switch), so
  ``1 - t(that) / t(N ranks)`` is the share of all communication of a CPU step.

Each rank (and the 1 device) computes with ``--threads`` CPU threads (default 1: on a loaded
machine oversubscribed OpenMP threads spin and a 2-thread process can run several times slower
than two 1-thread ones, which would flatter DDP). Step time and images/s come from the run's training time (``TrainResult.images_per_s``, rank 0's
clock; start-up, evaluation and torchrun's launch are left out). Configurations alternate,
``--repeats`` times; the median and the range are printed, with ``uptime`` before and after.
NCCL needs one GPU per rank: with fewer GPUs than ``--ranks`` it measures 1 rank of DDP on NCCL
(torchrun, world size 1) against the plain device run, and says why.

    python benchmarks/bench_ddp.py --backend gloo --ranks 2 [--quick] [--repeats 3]
    python benchmarks/bench_ddp.py --backend nccl --ranks 2 --quick   # from gpu_check.sh
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from rpg_core.spec import parse_spec
from rpg_core.training import distributed
from rpg_core.training.engine import train


def spec(args: argparse.Namespace, devices: int) -> dict[str, Any]:
    return {
        "name": f"bench-ddp-{devices}",
        "model": {"arch": "resnet18", "width": args.width},
        "rpg": {"ring_size": args.ring},
        "data": {
            "dataset": "synthetic",
            "num_classes": 10,
            "num_train": args.batch * args.steps,
            "num_val": args.batch,
            "image_size": args.image_size,
        },
        "train": {
            "epochs": 1,
            "batch_size": args.batch,
            "device": "cuda" if args.backend == "nccl" else "cpu",
            "devices": devices,
            "precise_bn": "off",
        },
    }


def run(
    args: argparse.Namespace, ranks: int, *, ddp: bool, noop: bool = False, local_bn: bool = False
) -> float:
    """Images per second of one training run (``ddp`` False: the plain 1-device engine); every
    rank, and the 1 device, computes with ``args.threads`` threads (a rank's share of this
    process's threads: rpg_core.training.distributed)."""
    torch.set_num_threads(args.threads * (ranks if ddp else 1))
    before = {
        k: os.environ.get(k) for k in (distributed.NOOP_ALLREDUCE_ENV, distributed.LOCAL_BN_ENV)
    }
    os.environ[distributed.NOOP_ALLREDUCE_ENV] = "1" if noop else "0"
    os.environ[distributed.LOCAL_BN_ENV] = "1" if local_bn else "0"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not ddp:
                result = train(spec(args, 1), checkpoint_dir=tmp)
            else:  # torchrun even for 1 rank (DDP on a world of one)
                s = parse_spec(spec(args, ranks))
                result = distributed.launch(
                    s,
                    callbacks=[],
                    checkpoint_dir=Path(tmp),
                    data_root=None,
                    resume=False,
                    step_interval_s=10.0,
                )
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return float(result.images_per_s)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="toy sizes, one repeat (a smoke check)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--batch", type=int, default=64, help="the global batch")
    p.add_argument("--steps", type=int, default=12, help="steps (global batches) per run")
    p.add_argument("--ring", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per rank (and device)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.width, args.image_size, args.batch, args.steps = 1, 0.125, 8, 16, 4
        args.ring = 2000
    ranks, why = args.ranks, ""
    if args.backend == "nccl":
        if not torch.cuda.is_available():
            print("nccl: no CUDA device here; use --backend gloo")  # noqa: T201
            return 2
        gpus = torch.cuda.device_count()
        if gpus < ranks:
            why = (
                f"NCCL needs one GPU per rank and {gpus} is visible: measured 1 rank of DDP on "
                f"NCCL (torchrun, world size 1) against the plain device run instead of {ranks}"
            )
            ranks = 1
    load_before = uptime()
    names = [
        "1 device",
        f"{ranks} ranks",
        f"{ranks} ranks, no all-reduce",
        f"{ranks} ranks, no all-reduce, local BN",
    ]
    rates: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):
        rates[names[0]].append(run(args, 1, ddp=False))
        rates[names[1]].append(run(args, ranks, ddp=True))
        rates[names[2]].append(run(args, ranks, ddp=True, noop=True))
        rates[names[3]].append(run(args, ranks, ddp=True, noop=True, local_bn=True))
    load_after = uptime()
    med = {n: statistics.median(v) for n, v in rates.items()}
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "  # noqa: T201
        f"torch {torch.__version__}, backend {args.backend}"
    )
    print(f"load before: {load_before}\nload after:  {load_after}")  # noqa: T201
    if why:
        print(f"note: {why}")  # noqa: T201
    print(
        f"global batch {args.batch}, {args.steps} steps, width {args.width}, "  # noqa: T201
        f"{args.image_size}px, ring {args.ring}, {args.repeats} repeats (median [min-max])"
    )
    for n in names:
        v = rates[n]
        step_ms = 1000 * args.batch / med[n]
        print(
            f"{n:28s} {med[n]:9.1f} img/s [{min(v):.1f}-{max(v):.1f}]  {step_ms:8.1f} ms/step  "  # noqa: T201
            f"x{med[n] / med[names[0]]:.2f} of 1 device"
        )
    share = 1 - med[names[1]] / med[names[2]]  # 1 - t(no all-reduce) / t(all-reduce)
    bn_share = 1 - med[names[1]] / med[names[3]]  # ... with no batch-statistics all-reduce either
    print(
        f"all-reduce share of a {ranks}-rank step: {share:.0%} (gradients), "  # noqa: T201
        f"{bn_share:.0%} (gradients and CPU batch statistics)"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "rates": rates,
                    "median": med,
                    "share": share,
                    "load": [load_before, load_after],
                    "note": why,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
