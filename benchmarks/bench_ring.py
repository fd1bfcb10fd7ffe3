"""Benchmark of the ring: training-step and inference overhead against a plain network.

Side by side in one run, on one device:
1. One training step (forward, backward, SGD momentum step) of a CIFAR-form ResNet18 (width 64
   by default, batch 128, 32x32): plain, RPG (rpg_core: one gather per ring per forward, its
   backward a scatter-add into the small expanded ring) and the reference code's approach (a
   separate ``ring[idx_i] * mask_i`` gather per layer every forward, int64 indices).
2. Inference (eval, no grad) of plain and RPG with the cached generated weights.
3. torchvision resnet18 with a 45K ring: building the tables from seeds, and the generation's
   forward and backward alone.

Noise: the variants run interleaved, round after round (plain, rpg, reference, plain, ...), so
a busy machine slows them alike; each round gives a ratio to the plain step of the same round,
and the table reports the median ratio with its interquartile range and min-max, beside the
median times. The load average is printed before and after.

The training step's headline (issue 27) is measured in pairs (``--pairs``, ``paired.pairs``):
plain and rpg back to back in alternating order (AB, BA, ...), one torch thread by default, the
median of the per-pair ratios with a bootstrap 95% interval, in wall time and in CPU time of the
process (which a busy machine's waits for a core do not stretch). It ends with one line,
``SUMMARY train-step rpg/plain: ...``. ``--quick`` runs only those pairs, as many as fit in
``--budget`` seconds (150 by default; at least 3), so it takes under 3 minutes.

Usage: python benchmarks/bench_ring.py [--pairs 12] [--quick] [--budget 150] [--threads 1]
       [--steps 15] [--infer-steps 20] [--batch 128] [--width 1.0] [--ring 45000]
       [--device cpu|cuda] [--amp] [--skip-generation]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from paired import Sample, ratio, timed
from torch import nn

from rpg_core import rings, rpgify
from rpg_core.models import create_model
from rpg_core.rpg.ring import Ring, RingSpec
from rpg_core.rpg.rpgify import select_layers


class ReferenceConv2d(nn.Conv2d):
    """The reference code's approach: this layer's own gather from the shared ring every forward."""

    def setup(self, ring: nn.Parameter, idx: torch.Tensor, mask: torch.Tensor, c: float) -> None:
        del self._parameters["weight"]
        self.__dict__["ring"] = ring
        self.register_buffer("idx", idx.long())
        self.register_buffer("mask", mask)
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.__dict__["ring"][self.idx] * self.mask * self.c).view(
            self.out_channels, self.in_channels // self.groups, *self.kernel_size
        )
        return self._conv_forward(x, w, self.bias)


def reference_model(ring_size: int, width: float) -> nn.Module:
    model = create_model({"model": {"arch": "resnet18", "width": width}})
    layers = select_layers(model)
    probe = rpgify(create_model({"model": {"arch": "resnet18", "width": width}}), ring_size)
    spec: RingSpec = rings(probe)["global"].spec
    ring_mod = Ring(spec)
    ring = nn.Parameter(ring_mod.weight.detach().clone())
    model.register_parameter("ring", ring)
    index, scale = ring_mod.index, ring_mod.scale
    for (_, conv), slot, c in zip(layers, spec.layers, spec.multipliers(), strict=True):
        sl = slice(slot.offset, slot.offset + slot.numel)
        conv.__class__ = ReferenceConv2d
        conv.setup(ring, index[sl], torch.sign(scale[sl]), c)  # type: ignore[attr-defined]
    return model


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(device: str, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if amp and device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step_fn(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, amp: bool
) -> Callable[[], float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> float:
        _sync(device)
        t0 = time.perf_counter()
        with _autocast(device, amp):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - t0

    return step


def infer_fn(model: nn.Module, x: torch.Tensor, device: str, amp: bool) -> Callable[[], float]:
    model.eval()

    def step() -> float:
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad(), _autocast(device, amp):
            model(x)
        _sync(device)
        return time.perf_counter() - t0

    return step


def interleaved(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Times of every variant, one call each per round, in the same order every round."""
    for fn in fns.values():
        fn()  # warm-up (allocator, kernels, the ring's cache)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(fn())
    return times


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def ratio_rows(times: dict[str, list[float]], base: str = "plain") -> list[dict[str, Any]]:
    """Per variant: median time and the per-round ratio to ``base`` (median, IQR, min-max)."""
    rows = []
    for k, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base], strict=True)]
        q1, med, q3 = quartiles(ratios)
        rows.append(
            {
                "variant": k,
                "median_s": statistics.median(ts),
                "ratio": med,
                "iqr": (q1, q3),
                "range": (min(ratios), max(ratios)),
            }
        )
    return rows


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'variant':<34}{'median s':>10}{'ratio':>8}{'IQR':>16}{'min-max':>16}")
    for r in rows:
        iqr = f"{r['iqr'][0]:.3f}-{r['iqr'][1]:.3f}"
        rng = f"{r['range'][0]:.3f}-{r['range'][1]:.3f}"
        print(f"{r['variant']:<34}{r['median_s']:>10.4f}{r['ratio']:>8.3f}{iqr:>16}{rng:>16}")


def _on_device(device: str, model: nn.Module) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device == "cuda" else model


def _batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded CIFAR-shaped batch on the device (channels_last on CUDA) and its labels."""
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, device=args.device)
    if args.device == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (args.batch,), device=args.device)


def models(width: float, ring: int, reference: bool) -> dict[str, nn.Module]:
    out = {
        "plain": create_model({"model": {"arch": "resnet18", "width": width}}),
        "rpg (rpg_core)": create_model(
            {"model": {"arch": "resnet18", "width": width}, "rpg": {"ring_size": ring}}
        ),
    }
    if reference:
        out["reference (gather per layer)"] = reference_model(ring, width)
    return out


def bench_training(args: argparse.Namespace) -> list[dict[str, Any]]:
    dev = args.device
    x, y = _batch(args)
    fns = {
        k: train_step_fn(_on_device(dev, m).train(), x, y, dev, args.amp)
        for k, m in models(args.width, args.ring, reference=True).items()
    }
    rows = ratio_rows(interleaved(fns, args.steps))
    print_rows(
        f"[{dev}{' bf16' if args.amp else ''}] one training step, CIFAR ResNet18 width "
        f"{args.width}, batch {args.batch}, ring {args.ring}, {args.steps} rounds",
        rows,
    )
    return rows


def bench_pairs(args: argparse.Namespace) -> dict[str, Any]:
    """plain and rpg training steps in alternating pairs until ``--pairs`` or ``--budget``."""
    dev = args.device
    x, y = _batch(args)
    built = models(args.width, args.ring, reference=False)
    step = {
        k: train_step_fn(_on_device(dev, m).train(), x, y, dev, args.amp) for k, m in built.items()
    }
    step_of = {"plain": step["plain"], "rpg": step["rpg (rpg_core)"]}
    for fn in step_of.values():
        fn()  # warm-up (allocator, kernels)
    t_end = args.started + args.budget  # the budget counts from the start of the script
    samples: dict[str, list[Sample]] = {"plain": [], "rpg": []}
    i = 0
    while i < args.pairs and (i < 3 or time.perf_counter() < t_end):
        first, second = ("rpg", "plain") if i % 2 == 0 else ("plain", "rpg")
        samples[first].append(timed(step_of[first]))
        samples[second].append(timed(step_of[second]))
        i += 1
    wall = ratio([s.wall for s in samples["rpg"]], [s.wall for s in samples["plain"]])
    cpu = ratio([s.cpu for s in samples["rpg"]], [s.cpu for s in samples["plain"]])
    print(
        f"\n[{dev}{' bf16' if args.amp else ''}] training step in pairs (alternating order), "
        f"CIFAR ResNet18 width {args.width}, batch {args.batch}, ring {args.ring}, "
        f"{torch.get_num_threads()} threads, {i} pairs"
    )
    print(f"{'variant':<10}{'wall s (median)':>17}{'min-max':>16}{'cpu s (median)':>16}")
    for k, ss in samples.items():
        walls = [s.wall for s in ss]
        print(
            f"{k:<10}{statistics.median(walls):>17.3f}{min(walls):>8.3f}-{max(walls):.3f}"
            f"{statistics.median([s.cpu for s in ss]):>16.3f}"
        )
    return {"wall": wall, "cpu": cpu, "pairs": i}


def bench_inference(args: argparse.Namespace) -> list[dict[str, Any]]:
    dev = args.device
    x, _ = _batch(args)
    fns = {
        k: infer_fn(_on_device(dev, m), x, dev, args.amp)
        for k, m in models(args.width, args.ring, reference=False).items()
    }
    rows = ratio_rows(interleaved(fns, args.infer_steps))
    print_rows(
        f"[{dev}{' bf16' if args.amp else ''}] inference (eval, no grad; RPG uses its cached "
        f"weights), batch {args.batch}, {args.infer_steps} rounds",
        rows,
    )
    return rows


def generate_before(ring: Ring) -> Callable[[Ring], list[torch.Tensor]]:
    """The generation before the signed index, with its tables (index and scale, built once):
    one gather + multiply over all M weights, split into layers (its backward: concatenation,
    multiply, scatter-add)."""
    index, scale = ring.index, ring.scale

    def generate(r: Ring) -> list[torch.Tensor]:
        flat = r.weight.index_select(0, index).mul(scale)
        return [c.view(s.shape) for c, s in zip(flat.split(r._sizes), r.spec.layers, strict=True)]

    return generate


def _time_generation(
    ring: Ring, fn: Callable[[Ring], list[torch.Tensor]], device: str
) -> tuple[float, float]:
    _sync(device)
    t0 = time.perf_counter()
    layers = fn(ring)
    _sync(device)
    t1 = time.perf_counter()
    torch.autograd.backward(layers, [torch.ones_like(w) for w in layers])
    _sync(device)
    ring.weight.grad = None
    return t1 - t0, time.perf_counter() - t1


def bench_generation(device: str, reps: int = 20) -> None:
    """The generation alone, now and before, interleaved (same ring, same values)."""
    model = torchvision.models.resnet18()
    t0 = time.perf_counter()
    rpgify(model, 45_000)
    build = time.perf_counter() - t0
    ring = rings(model)["global"].to(device)
    variants = {"now": Ring.generate_layers, "before": generate_before(ring)}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(reps):
        for k, fn in variants.items():
            times[k].append(_time_generation(ring, fn, device))
    m = ring.spec.generated
    table_bytes = ring.signed_index.element_size() * m
    print(f"\n[{device}] torchvision resnet18, 45K ring, {m:,} generated weights")
    print(f"build tables from seeds (rpgify)   {build:.3f} s")
    for k, ts in times.items():
        fwd = statistics.median(t for t, _ in ts) * 1e3
        bwd = statistics.median(t for _, t in ts) * 1e3
        print(f"generation {k:<7} forward {fwd:8.2f} ms   backward (eq. 2) {bwd:8.2f} ms")
    print(f"memory of the tables               {table_bytes / 2**20:.1f} MiB (signed index; "
          f"before: {m * 8 / 2**20:.1f} MiB of int32 index + float32 scale)")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=15, help="training rounds (each: every variant)")
    p.add_argument("--infer-steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--ring", type=int, default=45_000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--pairs", type=int, default=12, help="training-step pairs (plain, rpg)")
    p.add_argument("--quick", action="store_true", help="only the pairs, within --budget")
    p.add_argument(
        "--budget", type=float, default=None, help="seconds for the pairs (--quick: 150)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    args.started = time.perf_counter()
    if args.budget is None:
        args.budget = 150.0 if args.quick else float("inf")
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    malloc = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_"))
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
        f"malloc settings: {malloc or 'glibc defaults'}"
    )
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}")
    paired = bench_pairs(args)
    out: dict[str, Any] = {"pairs": paired}
    if not args.quick:
        out.update(training=bench_training(args), inference=bench_inference(args))
        if not args.skip_generation:
            bench_generation(args.device)
    load1 = os.getloadavg()
    print(f"\nload average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(
        f"SUMMARY train-step rpg/plain (width {args.width}, batch {args.batch}, ring "
        f"{args.ring}, {args.device}): wall {paired['wall'].text()}, cpu {paired['cpu'].text()}; "
        f"load average {load0[0]:.2f} -> {load1[0]:.2f} (target <= 1.03)"
    )
    return out


if __name__ == "__main__":
    main()
