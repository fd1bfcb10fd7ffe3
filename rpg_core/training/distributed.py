"""Data-parallel runs (``train.devices`` > 1): torchrun's ranks, DDP and global batch statistics.

:func:`rpg_core.training.engine.train` of a spec with ``train.devices: N`` > 1 calls
:func:`launch`, which runs ``torchrun`` (``python -m torch.distributed.run --standalone
--nproc-per-node N --max-restarts 0``: torch's elastic agent, one process per device) on
:mod:`rpg_core.training.rank`. Every rank trains the spec through the same engine
(:func:`~rpg_core.training.engine.run_train` with its :class:`Ranks`), which then

- takes its shard of each global batch (``BatchLoader(shard=(rank, world))``: the same seeded
  order and augmentation as a 1-device run, each rank the ``rank``-th part of every batch), so
  ``train.batch_size`` stays the global batch;
- wraps the model in ``DistributedDataParallel`` (gradients all-reduced in buckets, the ring's
  one Parameter among them: its scatter-add backward fills ``.grad`` like any other), and scales
  each rank's loss by ``n_rank * world / n_batch`` so DDP's average is the global batch's mean
  gradient even when a batch does not split evenly;
- normalises with the global batch's statistics: ``torch.nn.SyncBatchNorm`` on CUDA (NCCL);
  on the CPU (gloo) torch's SyncBatchNorm refuses CPU tensors, so :class:`GlobalBatchNorm`
  computes the same statistics with ``torch.distributed.nn.functional.all_reduce`` (an
  autograd-aware collective: its backward sums the gradient over the ranks, as SyncBatchNorm's);
- evaluates its shard of the validation set and sums the task's metric sums over the ranks;
- stops when rank 0 says so: rank 0 asks its callbacks before every step and after every epoch
  and broadcasts the answer (:meth:`Ranks.decide`), so every rank stops at the same step.

Only rank 0 writes: checkpoints (the engine's atomic write), and in the run folder (``<checkpoint
dir>/ranks/``) the events its callbacks would have had (``events.jsonl``: ``on_step``,
``on_epoch_end``, ``on_resume``), the final model (``final.safetensors``) and the result
(``result.json``). The launching process tails the events into the caller's callbacks, turns a
callback's stop into the file ``stop`` that rank 0 reads, and at the end gives ``on_datasets`` and
``on_train_end`` the datasets and the trained model (rebuilt from ``final.safetensors``). A rank
that dies (an error, or ``kill -9``) ends the whole run: the elastic agent stops the others
(``max_restarts`` 0) and :func:`launch` raises (:class:`RankFailed`, transient: a worker retries
and resumes from the last checkpoint; a rank's own rpg_core error keeps its class).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .. import exceptions
from ..exceptions import RPGConfigError

log = logging.getLogger(__name__)

RUN_DIR = "ranks"  # the run folder under the checkpoint directory
EVENTS, STOP, RESULT, FINAL = "events.jsonl", "stop", "result.json", "final.safetensors"
NOOP_ALLREDUCE_ENV = "RPG_DDP_NOOP_ALLREDUCE"  # "1": DDP's all-reduce replaced by nothing
LOCAL_BN_ENV = "RPG_DDP_LOCAL_BN"  # "1": CPU batchnorm over each rank's shard (timing only)
POLL_S = 0.1  # how often the launcher reads events and asks its callbacks whether to stop
PR_SET_PDEATHSIG = 1


class RankFailed(RuntimeError):
    """A rank of a data-parallel run died or failed with an error outside rpg_core's (transient:
    a retry resumes from the last checkpoint)."""


# --- the ranks' side ----------------------------------------------------------------------------
@dataclass
class Ranks:
    """One rank's place in a data-parallel run (torchrun's environment)."""

    rank: int
    world: int
    device: torch.device
    run_dir: Path
    bn_group: Any = None  # the process group of the batch statistics' all-reduces

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def decide(self, ask: Callable[[], bool]) -> bool:
        """Rank 0's answer to ``ask`` (asked on rank 0 only), broadcast to every rank."""
        flag = torch.zeros(1, dtype=torch.int32, device=self.comm_device)
        if self.leader and ask():
            flag.fill_(1)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    @property
    def comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks (float64)."""
        t = torch.tensor(list(values), dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def sum_dict(self, totals: dict[str, float], n: int) -> tuple[dict[str, float], int]:
        """A task's evaluation sums and image count, summed over the ranks (a rank whose shard
        was empty has no keys: every key any rank has is summed)."""
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, (totals, n))
        out: dict[str, float] = {}
        for part, _ in gathered:
            for k, v in part.items():
                out[k] = out.get(k, 0.0) + float(v)
        return out, sum(int(c) for _, c in gathered)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A batchnorm layer that, in training, normalises with the statistics of the global batch
    (every rank's shard): SyncBatchNorm's arithmetic for the CPU, where torch's SyncBatchNorm
    refuses to run. Two all-reduces per layer (the sum, then the centred sum of squares: the
    two-pass variance a single-device batchnorm computes); in eval mode it is a plain batchnorm."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, group: Any = None) -> None:
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.load_state_dict(bn.state_dict())
        self.group = group
        self.local = False  # True: this rank's batch alone (local_batchnorm)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.local or not dist.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = x.sum(dims)
        stats = all_reduce(
            torch.cat([local, local.new_tensor([x.numel() / x.shape[1]])]), group=self.group
        )
        count = stats[-1]
        mean = stats[:-1] / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims), group=self.group) / count
        if self.track_running_stats and self.num_batches_tracked is not None:
            assert self.running_mean is not None and self.running_var is not None
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
            with torch.no_grad():
                n = float(count)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (n / max(n - 1, 1.0))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def global_batchnorm(model: nn.Module, ranks: Ranks) -> nn.Module:
    """``model`` with every batchnorm normalising over the global batch: SyncBatchNorm on CUDA,
    :class:`GlobalBatchNorm` on the CPU (same state-dict keys: checkpoints and .rpg files are
    those of a 1-device run)."""
    if ranks.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model, ranks.bn_group)
    _global_batchnorm(model, ranks)
    if os.environ.get(LOCAL_BN_ENV) == "1":  # a measurement (benchmarks/bench_ddp.py)
        log.warning("%s=1: batch statistics of each rank's shard (timing only)", LOCAL_BN_ENV)
        for m in model.modules():
            if isinstance(m, GlobalBatchNorm):
                m.local = True
    return model


def _global_batchnorm(model: nn.Module, ranks: Ranks) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, GlobalBatchNorm
        ):
            setattr(model, name, GlobalBatchNorm(child, ranks.bn_group))
        else:
            _global_batchnorm(child, ranks)


@contextlib.contextmanager
def local_batchnorm(model: nn.Module) -> Iterator[None]:
    """Inside: batchnorm layers normalise over this rank's batch alone (precise batchnorm, where
    every rank runs the whole global batches). SyncBatchNorm (CUDA) has no such switch: it
    still syncs, over identical batches (the same mean and variance; its unbiased correction
    counts every rank's copy, a relative 1/(n - 1) - 1/(world n - 1) on the running variance)."""
    layers = [m for m in model.modules() if isinstance(m, GlobalBatchNorm)]
    for m in layers:
        m.local = True
    try:
        yield
    finally:
        for m in layers:
            m.local = False


def wrap_ddp(model: nn.Module, ranks: Ranks) -> nn.Module:
    """``model`` under DistributedDataParallel (its buffers are kept equal by the global batch
    statistics, so DDP does not broadcast them every step)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
    if os.environ.get(NOOP_ALLREDUCE_ENV) == "1":  # a measurement (benchmarks/bench_ddp.py)
        log.warning("%s=1: gradients are NOT all-reduced (timing only)", NOOP_ALLREDUCE_ENV)
        ddp.register_comm_hook(None, _noop_allreduce)
    return ddp


def _noop_allreduce(_state: Any, bucket: Any) -> Any:
    """A DDP comm hook that sends nothing: the bucket's local gradients, as if reduced."""
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


# DDP checks a hook's annotations against the classes; under postponed annotations they are strings
_noop_allreduce.__annotations__.clear()


class RankEvents:
    """Rank 0's callback: what the launcher's callbacks should hear, as JSON lines; a stop is
    the file ``stop`` the launcher writes."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.out = (run_dir / EVENTS).open("a", encoding="utf-8")

    def _write(self, kind: str, *args: Any) -> None:
        self.out.write(json.dumps({"on": kind, "args": list(args)}) + "\n")
        self.out.flush()

    def on_step(self, step: int, total: int, metrics: dict[str, Any]) -> None:
        self._write("on_step", step, total, metrics)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self._write("on_epoch_end", epoch, metrics)

    def on_resume(self, history: list[dict[str, Any]]) -> None:
        self._write("on_resume", history)

    def should_stop(self) -> bool:
        return (self.run_dir / STOP).exists()

    def on_train_end(self, result: Any, model: nn.Module) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        tmp = self.run_dir / (FINAL + ".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, self.run_dir / FINAL)
        tmp = self.run_dir / (RESULT + ".tmp")
        tmp.write_text(result.model_dump_json(), encoding="utf-8")
        os.replace(tmp, self.run_dir / RESULT)


# --- the launcher's side ------------------------------------------------------------------------
def backend_for(device: torch.device, devices: int) -> str:
    """NCCL on CUDA (with ``devices`` GPUs visible), gloo on the CPU."""
    if device.type != "cuda":
        return "gloo"
    visible = torch.cuda.device_count()
    if visible < devices:
        raise RPGConfigError(
            f"train.devices: {devices} GPUs asked but {visible} visible here "
            f"(CUDA_VISIBLE_DEVICES); lower train.devices or run on a host with more GPUs"
        )
    return "nccl"


def torchrun_command(devices: int, run_dir: Path) -> list[str]:
    """torchrun on one host: ``devices`` ranks, no restart inside the attempt (a dead rank ends
    the run; the caller retries from the last checkpoint)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(devices),
        "--max-restarts",
        "0",
        "--monitor-interval",
        "0.2",
        "-m",
        "rpg_core.training.rank",
        str(run_dir),
    ]


def _preexec() -> Callable[[], None] | None:
    """torchrun dies with the process that launched it (SIGKILL at its death), set up only from
    the main thread (a parent-death signal fires when the forking thread ends)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return preexec


def _rank_env(devices: int, backend: str) -> dict[str, str]:
    env = dict(os.environ)
    if backend == "gloo":  # the ranks share this process's threads
        env["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // devices))
    return env


class _Tail:
    """The events rank 0 wrote since the last read, handed to the callbacks."""

    def __init__(self, path: Path, callbacks: Sequence[Any]) -> None:
        self.path, self.callbacks, self.offset = path, callbacks, 0

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        for line in chunk[:end].splitlines():
            event = json.loads(line)
            self.notify(event["on"], *event["args"])

    def notify(self, method: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, method, None)
            if fn is not None:
                fn(*args)


def _rank_error(run_dir: Path, rc: int, devices: int, log_path: Path) -> Exception:
    """The exception of a failed run: a rank's rpg_core error keeps its class; anything else
    (a rank killed, another error) is :class:`RankFailed`."""
    for rank in range(devices):
        path = run_dir / f"error{rank}.json"
        if path.is_file():
            err = json.loads(path.read_text(encoding="utf-8"))
            cls = getattr(exceptions, str(err.get("type")), None)
            message = f"rank {rank} of {devices}: {err.get('message')}"
            if isinstance(cls, type) and issubclass(cls, exceptions.RPGError):
                return cls(message)
            # e.g. gloo's "Connection reset by peer" on the ranks that outlived a killed one
            return RankFailed(
                f"a rank of the {devices}-device run failed and the run stopped "
                f"({err.get('type')}: {message})"
            )
    tail = (
        log_path.read_text(encoding="utf-8", errors="replace")[-1500:] if log_path.exists() else ""
    )
    dead = [line for line in tail.splitlines() if "exitcode" in line or "Signal" in line]
    detail = "; ".join(s.strip() for s in dead[-3:]) or f"torchrun exited with {rc}"
    return RankFailed(f"a rank of the {devices}-device run died ({detail}); the run stopped")


def launch(
    spec: Any,
    *,
    callbacks: Sequence[Any],
    checkpoint_dir: Path | None,
    data_root: str | Path | None,
    resume: bool,
    step_interval_s: float,
) -> Any:
    """Run ``spec`` as ``spec.train.devices`` ranks under torchrun and return rank 0's
    :class:`~rpg_core.training.result.TrainResult`, calling ``callbacks`` as a 1-device run
    would (see the module's docstring)."""
    from ..stopping import callbacks_stop
    from .loop import pick_device
    from .result import TrainResult

    devices = int(spec.train.devices)
    backend = backend_for(pick_device(spec.train.device), devices)
    with contextlib.ExitStack() as stack:
        if checkpoint_dir is None:
            checkpoint_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            resume = False
        run_dir = Path(checkpoint_dir) / RUN_DIR
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        job = {
            "spec": spec.model_dump(mode="json"),
            "backend": backend,
            "checkpoint_dir": str(checkpoint_dir),
            "data_root": str(data_root) if data_root is not None else None,
            "resume": resume,
            "step_interval_s": step_interval_s,
        }
        (run_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
        log_path = run_dir / "torchrun.log"
        log.info("%s: %d ranks (%s) under torchrun in %s", spec.name, devices, backend, run_dir)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                torchrun_command(devices, run_dir),
                env=_rank_env(devices, backend),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(),  # noqa: PLW1509 - prctl only, between fork and exec
            )
        tail, stop_asked = _Tail(run_dir / EVENTS, callbacks), callbacks_stop(callbacks)
        try:
            while proc.poll() is None:
                tail.read()
                if not (run_dir / STOP).exists() and stop_asked():
                    (run_dir / STOP).touch()
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:  # an exception here (a callback's): the ranks go too
                proc.kill()
                proc.wait()
        tail.read()
        if proc.returncode != 0 or not (run_dir / RESULT).is_file():
            raise _rank_error(run_dir, proc.returncode, devices, log_path)
        result = TrainResult.model_validate_json((run_dir / RESULT).read_text(encoding="utf-8"))
        if callbacks:
            model, data = _trained_model(spec, run_dir / FINAL, data_root)
            tail.notify("on_datasets", data)
            tail.notify("on_train_end", result, model)
    return result


def _trained_model(spec: Any, final: Path, data_root: str | Path | None) -> tuple[nn.Module, Any]:
    """The run's datasets and its trained model (rank 0's final weights), in this process."""
    from safetensors.torch import load_file

    from ..data import load_datasets
    from ..models import create_model
    from ..spec import resolve_augment

    data_spec = spec.data.model_copy(update={"augment": resolve_augment(spec)})
    data = load_datasets(data_spec, data_root=data_root)
    model = create_model(spec, num_classes=data.num_classes, in_channels=data.in_channels)
    model.load_state_dict(load_file(str(final)), strict=True)
    return model, data
