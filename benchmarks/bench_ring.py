"""Benchmark of the ring (issue 2): training-step overhead and weight-generation cost.

Rows, side by side in one run:
1. One training step (forward, backward, SGD step) of a CIFAR-form ResNet18 (width 64, batch 128,
   32x32): plain, RPG (rpg_core: one fused gather per ring per forward), and the reference code's
   approach (a separate ``ring[idx_i] * mask_i`` gather per layer every forward, int64 indices).
   Steps are interleaved (plain, rpg, reference, plain, ...) so machine noise hits all alike.
2. torchvision resnet18 with a 45K ring: building the tables from seeds, and the forward and
   backward time of the weight generation alone.
3. The same on CUDA when a GPU is present.

Usage: python benchmarks/bench_ring.py [--steps 3] [--batch 128] [--width 1.0]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torchvision
from torch import nn

from rpg_core import rings, rpgify
from rpg_core.models import create_model
from rpg_core.ring import Ring, RingSpec
from rpg_core.rpgify import select_layers


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
    for (_, conv), slot, c in zip(layers, spec.layers, spec.multipliers(), strict=True):
        sl = slice(slot.offset, slot.offset + slot.numel)
        mask = torch.sign(ring_mod.scale[sl])
        conv.__class__ = ReferenceConv2d
        conv.setup(ring, ring_mod.index[sl], mask, c)  # type: ignore[attr-defined]
    return model


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str):  # type: ignore[no-untyped-def]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def bench_training_step(device: str, steps: int, batch: int, width: float, ring: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    models = {
        "plain": create_model({"model": {"arch": "resnet18", "width": width}}),
        "rpg (rpg_core)": create_model(
            {"model": {"arch": "resnet18", "width": width}, "rpg": {"ring_size": ring}}
        ),
        "reference (gather per layer)": reference_model(ring, width),
    }
    fns = {k: step_fn(m.to(device).train(), x, y, device) for k, m in models.items()}
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            times[k].append(fn())
    base = statistics.median(times["plain"])
    print(
        f"\n[{device}] one training step, CIFAR ResNet18 width {width}, batch {batch}, ring {ring}"
    )
    print(f"{'variant':<32}{'median s':>10}{'ratio':>8}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:<32}{med:>10.4f}{med / base:>8.3f}")


def bench_generation(device: str, reps: int = 20) -> None:
    model = torchvision.models.resnet18()
    t0 = time.perf_counter()
    rpgify(model, 45_000)
    build = time.perf_counter() - t0
    ring = rings(model)["global"].to(device)
    fwd, bwd = [], []
    grad = torch.randn(ring.spec.generated, device=device)
    for _ in range(reps):
        t0 = time.perf_counter()
        flat = ring.generate()
        if device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        flat.backward(grad)
        if device == "cuda":
            torch.cuda.synchronize()
        fwd.append(t1 - t0)
        bwd.append(time.perf_counter() - t1)
        ring.weight.grad = None
    m = ring.spec.generated
    print(f"\n[{device}] torchvision resnet18, 45K ring, {m:,} generated weights")
    print(f"build tables from seeds (rpgify)   {build:.3f} s")
    print(f"generate all weights (forward)     {statistics.median(fwd) * 1e3:.2f} ms")
    print(f"ring gradient, eq. 2 (backward)    {statistics.median(bwd) * 1e3:.2f} ms")
    print(f"memory of the tables               {m * 8 / 2**20:.1f} MiB (int32 index + f32 scale)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--ring", type=int, default=45_000)
    args = p.parse_args()
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}"
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        if device == "cuda":
            print(f"GPU: {torch.cuda.get_device_name()}")
        bench_training_step(
            device, args.steps if device == "cpu" else 20, args.batch, args.width, args.ring
        )
        bench_generation(device)


if __name__ == "__main__":
    main()
