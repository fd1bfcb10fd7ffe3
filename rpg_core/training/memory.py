"""The peak memory of a training job, estimated from its spec before anything is allocated.

One estimate, checked twice: by the API before it accepts a spec (``api.validation``: a 422 with
the estimate, the budget and the fields to change) and by the worker before it trains
(``worker.runner``: a job that would not fit fails once, clearly, never by the OOM killer).

What is counted (bytes of host memory; a CUDA job holds its activations on the device, so this
is an upper bound there):

- ``runtime``: the Python process with torch and rpg_core loaded (:data:`RUNTIME_BYTES`, measured);
- ``data``: the in-memory datasets (uint8 images and targets) and the float copies their
  normalisation makes (:func:`data_memory_bytes`); sets read from files batch by batch
  (``imagefolder:``) count nothing;
- ``parameters``: weights, gradients and optimizer state (SGD momentum: one, AdamW: two more
  copies), and buffers;
- ``ring``: for an RPG model, the rings' signed index tables (4 or 8 bytes per generated weight),
  the generated weights and their gradients during a step, and, while the tables are built, the
  generator's 64-bit temporaries (:data:`RING_BUILD_BYTES` per generated weight);
- ``activations``: what a training step keeps for its backward pass at the batch size and image
  size: the tensors autograd saves in a forward pass of the network at a quarter width on images
  of at most 64 px (:data:`REF_WIDTH`, :data:`REF_SIZE`; a real pass of a small network on the
  CPU, milliseconds), scaled by the width and the pixels, times :data:`BACKWARD_FACTOR` for the
  backward's own buffers;
- ``ood``: one shifted copy of the validation set at a time for ``eval.ood`` shift sets.

The parameters and the generated weights are counted on torch's ``meta`` device (nothing is
allocated). The structure of a model is worked out once per architecture and image size and
cached: a sweep over ring sizes, seeds or
epochs builds it once. Importing this module loads no torch (the API imports it); estimating does.

``benchmarks/bench_memory.py`` compares the estimate with the measured peak RSS of real runs
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..catalog.datasets import DATASETS

if TYPE_CHECKING:
    from ..spec import DataSpec, ExperimentSpec

log = logging.getLogger(__name__)

__all__ = [
    "backbone_params",
    "BACKWARD_FACTOR",
    "FIXED_DATA",
    "RING_BUILD_BYTES",
    "RUNTIME_BYTES",
    "DataShape",
    "MemoryEstimate",
    "data_memory_bytes",
    "data_shape",
    "estimate_job_memory",
    "gib",
    "memory_error",
    "physical_memory_bytes",
]

# in-memory classification sets: (classes, channels, default image size, train images, val images)
FIXED_DATA: dict[str, tuple[int, int, int, int, int]] = {
    d.name: (d.classes or 0, d.channels or 0, d.image_size or 0, d.num_train or 0, d.num_val or 0)
    for d in DATASETS.values()
    if d.fixed_size
}
# measured (benchmarks/bench_memory.py): peak RSS of a process that imported torch and rpg_core's
# engine and trained a tiny model; what every job pays before its data and model
RUNTIME_BYTES = 750 * 1024**2
REF_WIDTH = 0.25  # activations are measured on this width of the network, then scaled
REF_SIZE = 64  # ... and on images of at most this size
BACKWARD_FACTOR = 2.0  # the backward pass's gradient buffers on top of the saved activations
RING_BUILD_BYTES = 24  # per generated weight, the generator's temporaries while tables are built
FLOAT = 4  # float32 parameters, gradients, optimizer state and activations (CPU training)


def gib(n: float) -> str:
    """``n`` bytes as GiB, one decimal (two below 1 GiB)."""
    v = n / 1024**3
    return f"{v:.2f} GiB" if v < 1 else f"{v:.1f} GiB"


def physical_memory_bytes() -> int:
    """This machine's physical memory (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


# --- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataShape:
    """What a dataset feeds a model: channels, outputs (classes, joints, maps), image size,
    and the images held in memory (None: read from files, or not known before loading)."""

    channels: int
    outputs: int | None
    image_size: int
    n_train: int | None
    n_val: int | None
    sample_bytes: int  # bytes one stored sample takes (image and targets)


def _subset(n: int | None, subset: int | None) -> int | None:
    if subset is None:
        return n
    return min(n, subset) if n is not None else subset


def data_shape(data: DataSpec) -> DataShape:
    """The shape of ``data`` from its spec alone (torch-free; the loaders' defaults)."""
    name = data.dataset
    if name in FIXED_DATA:
        classes, channels, size, n_train, n_val = FIXED_DATA[name]
        size = data.image_size or size
        return DataShape(channels, classes, size, n_train, n_val, channels * size * size)
    if name == "synthetic":
        size = data.image_size or 32
        return DataShape(
            3, data.num_classes or 10, size, data.num_train or 1000, data.num_val or 200,
            3 * size * size,
        )  # fmt: skip
    if name == "synthetic-pose" or name.startswith("mpii:"):
        from ..data.pose import NUM_JOINTS, POSE_SIZE, POSE_TRAIN, POSE_VAL, pose_bytes

        size = data.image_size or POSE_SIZE
        known = name == "synthetic-pose"
        return DataShape(
            3, NUM_JOINTS, size,
            data.num_train or POSE_TRAIN if known else None,
            data.num_val or POSE_VAL if known else None,
            pose_bytes(size),
        )  # fmt: skip
    if name == "synthetic-scenes" or name.startswith("scenes:"):
        from ..data.scenes import (
            SCENE_FOLDER_SIZE,
            SCENES_SIZE,
            SCENES_TRAIN,
            SCENES_VAL,
            scene_bytes,
        )

        known = name == "synthetic-scenes"
        size = data.image_size or (SCENES_SIZE if known else SCENE_FOLDER_SIZE)
        return DataShape(
            3, 4, size,
            data.num_train or SCENES_TRAIN if known else None,
            data.num_val or SCENES_VAL if known else None,
            scene_bytes(size),
        )  # fmt: skip
    # imagefolder:<name>: decoded batch by batch from files (nothing held in memory)
    size = data.image_size or 224
    return DataShape(3, None, size, None, None, 0)


def data_memory_bytes(data: DataSpec) -> int | None:
    """Estimated peak memory of loading ``data`` (None: read lazily from files, or a folder whose
    size is known only once it is read).

    The loaders keep every sample (uint8 images, float targets) and make float copies of the
    training images for the normalisation statistics (8 bytes per pixel value: the float copy
    and the squared deviations); synthetic classification data draws three float tensors of the
    largest split (12 bytes per pixel value).
    """
    shape = data_shape(data)
    if data.dataset.startswith("imagefolder:"):
        return None
    n_train = _subset(shape.n_train, data.train_subset)
    n_val = _subset(shape.n_val, data.val_subset)
    if n_train is None or n_val is None:
        return None
    pixels = shape.channels * shape.image_size**2
    if data.dataset == "synthetic":
        return (n_train + n_val) * pixels + max(n_train, n_val) * pixels * 12
    return (n_train + n_val) * shape.sample_bytes + n_train * pixels * 8


# --- the model ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelShape:
    params: int  # parameters of the plain network
    buffers: int  # bytes of buffers (batchnorm statistics)
    generated: dict[str, int]  # ring name -> weights generated from it (empty: plain network)
    saved_per_image: int  # bytes autograd saves for backward, per image of a training batch


def _model_key(spec: ExperimentSpec, shape: DataShape) -> str:
    import json

    # the ring's size changes no structure: a sweep over ring sizes builds the model once
    rpg = spec.rpg.model_dump(mode="json", exclude={"ring_size"}) if spec.rpg is not None else None
    return json.dumps(
        [spec.task, spec.model.model_dump(mode="json"), rpg, shape.channels, shape.outputs,
         shape.image_size], sort_keys=True,
    )  # fmt: skip


def _effective_rpg(spec: ExperimentSpec) -> Any:
    """The rpg section the model is built with (recurrence and sharing fill their own)."""
    from ..spec import recurrence_rpg, sharing_rpg

    model = spec.model
    if model.resolved_sharing() == "rpg":
        return sharing_rpg(model, spec.rpg)
    if model.recurrence is not None and model.recurrence.mode == "rpg":
        return recurrence_rpg(model.recurrence, spec.rpg)
    return spec.rpg


def _saved_bytes(model: Any, x: Any) -> int:
    """Bytes of the tensors autograd saves in one training forward of ``model`` on ``x``."""
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):  # weights are counted with the parameters
            seen[id(t)] = t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    outputs = (
        out.values() if isinstance(out, dict) else out if isinstance(out, list | tuple) else [out]
    )
    kept = sum(o.numel() * o.element_size() for o in outputs if isinstance(o, torch.Tensor))
    return sum(seen.values()) + kept


@lru_cache(maxsize=64)
def _model_shape_cached(key: str) -> _ModelShape:
    import json

    from ..spec import parse_spec

    task, model, rpg, channels, outputs, size = json.loads(key)
    if rpg is not None:
        rpg = {**rpg, "ring_size": 1.0}
    spec = parse_spec({"task": task, "model": model, "rpg": rpg})
    return _measure_model(spec, channels, outputs, size)


def _measure_model(
    spec: ExperimentSpec, channels: int, outputs: int | None, size: int
) -> _ModelShape:
    import torch

    from ..models import create_model
    from ..rpg.rpgify import group_layers, select_layers

    # the plain network on the meta device (rings would build their tables): its parameter
    # counts, and its convs are the generated weights
    with torch.device("meta"), _no_random_init_mode():
        model = create_model(spec.model, num_classes=outputs, in_channels=channels, plain=True)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    rpg = _effective_rpg(spec)
    generated: dict[str, int] = {}
    if rpg is not None:
        layers = select_layers(model, include=rpg.include, exclude=rpg.exclude, linear=rpg.linear)
        sizes = {n: int(getattr(m, "weight").numel()) for n, m in layers}  # noqa: B009
        groups = group_layers(layers, rpg.scope)
        generated = {r: sum(sizes[n] for n in names) for r, names in groups.items()}
    pixels = (size / min(size, REF_SIZE)) ** 2
    try:
        ref = _saved_per_image(_reference_key(spec, channels, outputs, size, REF_WIDTH))
        saved = int(ref * spec.model.width / REF_WIDTH * pixels)
    except Exception:  # a network that has no quarter width (a plugin's): its own, if small
        if params * FLOAT > 1024**3:
            raise
        own = _saved_per_image(_reference_key(spec, channels, outputs, size, spec.model.width))
        saved = int(own * pixels)
    return _ModelShape(params, buffers, generated, saved)


# torch draws no random numbers on the meta device natively: its Python references would import
# torch._dynamo (tens of seconds on a busy machine); the shapes are all an estimate needs
_RANDOM_INIT = frozenset({"normal_", "uniform_", "trunc_normal_", "bernoulli_", "random_",
                          "exponential_", "geometric_", "cauchy_", "log_normal_"})  # fmt: skip


def _no_random_init_mode() -> Any:
    from torch.overrides import TorchFunctionMode

    class NoRandomInit(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            if getattr(func, "__name__", "") in _RANDOM_INIT and args and args[0].is_meta:
                return args[0]
            return func(*args, **(kwargs or {}))

    return NoRandomInit()


def _reference_key(
    spec: ExperimentSpec, channels: int, outputs: int | None, size: int, width: float
) -> str:
    import json

    model = spec.model.model_dump(mode="json")
    model["width"] = width
    return json.dumps([spec.task, model, channels, outputs, min(size, REF_SIZE)], sort_keys=True)


@lru_cache(maxsize=64)
def _saved_per_image(key: str) -> int:
    """Saved activations per image of the reference network (width :data:`REF_WIDTH`, images
    of at most :data:`REF_SIZE` px), from a real forward pass on the CPU: a small network, a
    few milliseconds (the meta device would need torch's Python decompositions, seconds).
    Activations grow with the channels (the width) and the pixels, which scales them."""
    import json

    import torch

    from ..models import create_model
    from ..spec import parse_spec

    task, model, channels, outputs, size = json.loads(key)
    spec = parse_spec({"task": task, "model": model})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only wait for each other
    try:
        with torch.random.fork_rng(devices=[]):
            net = create_model(spec.model, num_classes=outputs, in_channels=channels, plain=True)
            batch = 2  # train-mode batchnorm needs two values per channel
            x = torch.rand(batch, channels, size, size)
            return _saved_bytes(net, x) // batch
    finally:
        torch.set_num_threads(threads)


# --- the estimate ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """A job's estimated peak memory: ``parts`` (bytes) at the peak and what to change."""

    parts: dict[str, int]
    batch_size: int
    fields: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def summary(self) -> str:
        shown = ", ".join(f"{k} {gib(v)}" for k, v in self.parts.items() if v >= 1024**2)
        return f"about {gib(self.total)} ({shown})"


def _batch_size(spec: ExperimentSpec, n_train: int | None) -> int:
    from ..spec import AUTO_BATCH_RANGE, auto_batch_size, resolve_train

    bs = resolve_train(spec.train)["batch_size"]
    if bs is not None:
        return int(bs)
    return auto_batch_size(n_train) if n_train is not None else AUTO_BATCH_RANGE[1]


def _optimizer_states(spec: ExperimentSpec) -> int:
    from ..spec import resolve_train

    return 2 if resolve_train(spec.train).get("optimizer") == "adamw" else 1


def estimate_job_memory(spec: ExperimentSpec) -> MemoryEstimate:
    """The peak memory a training job of ``spec`` needs (see the module's docstring).

    A pruning job (``prune``) takes its model from a trained file: only its data is counted."""
    shape = data_shape(spec.data)
    n_train = _subset(shape.n_train, spec.data.train_subset)
    n_val = _subset(shape.n_val, spec.data.val_subset)
    data = data_memory_bytes(spec.data) or 0
    stored = (n_train or 0) * shape.sample_bytes + (n_val or 0) * shape.sample_bytes
    batch = _batch_size(spec, n_train)
    if spec.prune is not None:
        return MemoryEstimate({"runtime": RUNTIME_BYTES, "data": data}, batch, _fields(spec, {}))
    m = _model_shape_cached(_model_key(spec, shape))
    states = 2 + _optimizer_states(spec)  # weights, gradients, optimizer state
    generated = sum(m.generated.values())
    ring = 0
    if generated:
        from ..rpg.rpgify import ring_sizes

        ring = sum(ring_sizes(_effective_rpg(spec).ring_size, m.generated).values())
    learned = m.params - generated + ring
    params = learned * FLOAT * states + m.buffers
    tables = 0
    if generated:
        index = 8 if 2 * ring >= 2**31 else 4
        # the index tables, the generated weights and their gradients (one step), the scatter
        tables = generated * (index + 2 * FLOAT) + 2 * ring * FLOAT
    pixels = shape.channels * shape.image_size**2
    activations = int(m.saved_per_image * batch * BACKWARD_FACTOR) + 2 * batch * pixels * FLOAT
    ood = 0
    if any(s.shift is not None for s in spec.eval.ood) and n_val:
        ood = n_val * pixels
    train_peak = {
        "runtime": RUNTIME_BYTES, "data": stored, "parameters": params, "ring": tables,
        "activations": max(activations, ood),
    }  # fmt: skip
    # the other phases: loading the data (its float copies), building the rings' tables
    load_peak = RUNTIME_BYTES + data
    build_peak = RUNTIME_BYTES + stored + generated * RING_BUILD_BYTES
    parts = train_peak
    if max(load_peak, build_peak) > sum(train_peak.values()):
        if load_peak >= build_peak:
            parts = {"runtime": RUNTIME_BYTES, "data": data}
        else:
            parts = {"runtime": RUNTIME_BYTES, "data": stored, "ring": generated * RING_BUILD_BYTES}
    return MemoryEstimate(parts, batch, _fields(spec, parts))


_FIELDS = {
    "activations": ("train.batch_size", "data.image_size", "model.width"),
    "parameters": ("model.width",),
    "ring": ("model.width",),
    "data": ("data.image_size", "data.num_train", "data.num_val", "data.train_subset"),
}


def _fields(spec: ExperimentSpec, parts: dict[str, int]) -> tuple[str, ...]:
    """The spec fields that lower the biggest parts, biggest first."""
    out: list[str] = []
    for name, _ in sorted(parts.items(), key=lambda kv: -kv[1]):
        for f in _FIELDS.get(name, ()):
            if f == "data.num_train" and spec.data.dataset not in (
                "synthetic",
                "synthetic-pose",
                "synthetic-scenes",
            ):
                continue  # fmt: skip
            if f == "data.num_val" and spec.data.dataset not in (
                "synthetic",
                "synthetic-pose",
                "synthetic-scenes",
            ):
                continue  # fmt: skip
            if f not in out:
                out.append(f)
    if spec.model.resolved_stacks() not in (None, 1) and "model.stacks" not in out:
        out.append("model.stacks")
    return tuple(out) or ("data",)


def memory_error(spec: ExperimentSpec, budget: int) -> tuple[str, str] | None:
    """``(field, message)`` when ``spec``'s estimate is over ``budget`` bytes, else None."""
    est = estimate_job_memory(spec)
    if est.total <= budget:
        return None
    return est.fields[0], (
        f"this job needs {est.summary()} of memory at batch size {est.batch_size}; this server "
        f"allows {gib(budget)} per job: lower {', '.join(est.fields)}"
    )


def backbone_params(spec: ExperimentSpec | dict[str, Any]) -> int:
    """The backbone parameter count of the model ``spec`` builds (what its result's
    ``backbone`` would say), without data or training: the model is built on the CPU from the
    data's shape (:func:`data_shape`). The power-law search sampler's ``params_of``."""
    from ..models import create_model
    from ..rpg.params import count_params
    from ..spec import parse_spec

    parsed = parse_spec(spec) if isinstance(spec, dict) else spec
    shape = data_shape(parsed.data)
    model = create_model(parsed, num_classes=shape.outputs, in_channels=shape.channels)
    return int(count_params(model).backbone)
