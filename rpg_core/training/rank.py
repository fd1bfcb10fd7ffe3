"""One rank of a data-parallel run: torchrun's entry point (``python -m rpg_core.training.rank
RUN_DIR``, started by :func:`rpg_core.training.distributed.launch`).

It joins the process group (NCCL on CUDA, gloo on the CPU) from torchrun's environment and
trains the run folder's spec through :func:`rpg_core.training.engine.run_train` with its
:class:`~rpg_core.training.distributed.Ranks`; rank 0's callback writes what the launcher's
callbacks hear. A rank's error is written to ``error<rank>.json`` before it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from .distributed import PR_SET_PDEATHSIG, RankEvents, Ranks
from .engine import run_train


def _die_with_parent() -> None:
    """SIGKILL this process when its parent (the elastic agent) dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """One rank (torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): train the spec of the run
    folder ``argv[0]`` through the engine."""
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(message)s")
    run_dir = Path((argv if argv is not None else sys.argv[1:])[0])
    job = json.loads((run_dir / "job.json").read_text(encoding="utf-8"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    (run_dir / f"rank{rank}.pid").write_text(str(os.getpid()), encoding="utf-8")
    cuda = job["backend"] == "nccl"
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(job["backend"])
    try:
        ranks = Ranks(rank, world, device, run_dir, bn_group=dist.new_group())
        callbacks = [RankEvents(run_dir)] if rank == 0 else []
        try:
            run_train(
                job["spec"],
                callbacks=callbacks,
                checkpoint_dir=job["checkpoint_dir"],
                data_root=job["data_root"],
                resume=job["resume"],
                step_interval_s=job["step_interval_s"],
                ranks=ranks,
            )
        except Exception as err:
            (run_dir / f"error{rank}.json").write_text(
                json.dumps({"type": type(err).__name__, "message": str(err)}), encoding="utf-8"
            )
            raise
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
