"""Compact .rpg files (issue 4): sizes against the reference code's artifacts, load time, and
the accuracy change of reduced-precision rings, side by side in one run.

    /root/.cache/rpg-studio/venv/bin/python benchmarks/bench_compact.py [--write]

``--write`` replaces the section "Compact files (issue 4)" of docs/BENCHMARKS.md with the results.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rpg_core import count_params, rings
from rpg_core.format import load_compact, read_header, save_compact
from rpg_core.models import create_model
from rpg_core.rpg.ring import build_tables

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Compact files (issue 4)"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# --- sizes ----------------------------------------------------------------------------------
NPY_HEADER = 128  # np.save's header for a 1-D array


def _reference_artifacts(model: nn.Module, tmp: Path, write_npy: bool) -> int:
    """What the reference code writes: checkpoint + int64 index .npy + masks .npy.

    The checkpoint is always written with torch.save and measured; the two .npy files are
    written with numpy when ``write_npy`` (and then must match the arithmetic), else computed.
    """
    ring = rings(model)["global"]
    torch.save(model.state_dict(), tmp / "ckpt.pth")
    total = (tmp / "ckpt.pth").stat().st_size
    m = ring.spec.generated
    arithmetic = (NPY_HEADER + 8 * m) + (NPY_HEADER + 4 * m)
    if write_npy:
        np.save(tmp / "index.npy", ring.index.numpy().astype(np.int64))
        np.save(tmp / "masks.npy", np.sign(ring.scale.numpy()).astype(np.float32))
        written = sum((tmp / f).stat().st_size for f in ("index.npy", "masks.npy"))
        assert written == arithmetic, (written, arithmetic)
        (tmp / "index.npy").unlink()
        (tmp / "masks.npy").unlink()
    (tmp / "ckpt.pth").unlink()
    return total + arithmetic


def size_rows(tmp: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    for variant, classes in (("cifar", 100), ("imagenet", 1000)):
        for ring_size in (45_000, 2_000_000):
            spec = {"model": {"arch": "resnet18", "variant": variant, "num_classes": classes},
                    "rpg": {"ring_size": ring_size}}  # fmt: skip
            model = create_model(spec)
            sizes = {}
            for dtype in ("float32", "int8"):
                save_compact(model, tmp / f"{dtype}.rpg", ring_dtype=dtype)
                sizes[dtype] = (tmp / f"{dtype}.rpg").stat().st_size
            header = read_header(tmp / "float32.rpg").header_len
            ref = _reference_artifacts(model, tmp, write_npy=not rows)
            full = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            full += 4 * count_params(model).generated - 4 * ring_size
            c = count_params(model)
            rows.append([
                f"{variant} ({classes} classes)", f"{ring_size:,}", f"{c.total:,}",
                _mb(sizes["float32"]), _mb(sizes["int8"]), f"{header / 1024:.1f} KiB", _mb(ref),
                f"{ref / sizes['float32']:.0f}x", f"{ref / sizes['int8']:.0f}x",
                f"{full / sizes['float32']:.1f}x",
            ])  # fmt: skip
    return rows


# --- load time ------------------------------------------------------------------------------
def load_rows(tmp: Path, repeats: int = 3) -> list[list[str]]:
    spec = {"model": {"arch": "resnet18", "num_classes": 100}, "rpg": {"ring_size": 2_000_000}}
    model = create_model(spec)
    save_compact(model, tmp / "m.rpg")
    ring = rings(model)["global"]
    np.save(tmp / "index.npy", ring.index.numpy().astype(np.int64))
    np.save(tmp / "masks.npy", np.sign(ring.scale.numpy()).astype(np.float32))
    x = torch.randn(1, 3, 32, 32)
    ours, forward, npy, tables, cpu = [], [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        build_tables(ring.spec)
        tables.append(time.perf_counter() - t0)
        t0, c0 = time.perf_counter(), time.process_time()
        m = load_compact(tmp / "m.rpg")
        t1 = time.perf_counter()
        with torch.no_grad():
            m(x)
        t2 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        ours.append(t1 - t0)
        forward.append(t2 - t1)
        t0 = time.perf_counter()
        np.load(tmp / "index.npy")
        np.load(tmp / "masks.npy")
        npy.append(time.perf_counter() - t0)
    med = statistics.median
    generated = ring.spec.generated
    return [
        ["load_compact (validate, rebuild from seeds, load)", f"{med(ours):.2f} s"],
        ["  of which: index array + signs from the seeds (rpg_core.rpg.ring.build_tables)",
         f"{med(tables):.2f} s"],
        ["first forward pass (1x3x32x32, gathers the kernels)", f"{med(forward):.2f} s"],
        ["total: load + first forward", f"{med(ours) + med(forward):.2f} s"],
        ["  the same in CPU time of the process (what a busy machine stretches)",
         f"{med(cpu):.2f} s"],
        [f"reference: np.load of index + masks only ({generated:,} weights, from page cache)",
         f"{med(npy):.2f} s"],
        *_generator_rows(ring.spec.seed, ring.spec.size, generated, repeats),
    ]  # fmt: skip


def _generator_rows(seed: int, n: int, m: int, repeats: int) -> list[list[str]]:
    """The index array alone, generator 1 (sort) against 2 (bijection), alternating."""
    from rpg_core.rpg import generator

    cpu: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for version in (1, 2):
            c0 = time.process_time()
            generator.index_array(seed, n, m, version=version)
            cpu[version].append(time.process_time() - c0)
    med = statistics.median
    return [
        [f"index array, generator 1 (sort of {m:,} keys), CPU time", f"{med(cpu[1]):.2f} s"],
        ["index array, generator 2 (keyed bijection), CPU time", f"{med(cpu[2]):.2f} s"],
    ]


# --- accuracy of reduced-precision rings on digits ---------------------------------------------
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    x = nn.functional.pad(x, (12, 12, 12, 12)).unsqueeze(1)  # 8x8 -> 32x32, one channel
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


def accuracy_rows(tmp: Path, epochs: int) -> list[list[str]]:
    spec = {"model": {"arch": "resnet18", "width": 0.25, "in_channels": 1, "num_classes": 10},
            "rpg": {"ring_size": 0.05}}  # fmt: skip
    xtr, ytr, xte, yte = _digits()
    torch.manual_seed(0)
    model = create_model(spec)
    _train(model, xtr, ytr, epochs)
    model.eval()
    with torch.no_grad():
        ref_logits = model(xte)
    rows = []
    for dtype in ("float32", "float16", "bfloat16", "int8"):
        save_compact(model, tmp / f"d_{dtype}.rpg", ring_dtype=dtype)
        loaded = load_compact(tmp / f"d_{dtype}.rpg")
        with torch.no_grad():
            logits = loaded(xte)
        acc = (logits.argmax(1) == yte).float().mean().item()
        agree = (logits.argmax(1) == ref_logits.argmax(1)).float().mean().item()
        rows.append([
            dtype, _mb((tmp / f"d_{dtype}.rpg").stat().st_size), f"{100 * acc:.2f}%",
            f"{100 * agree:.2f}%", f"{(logits - ref_logits).abs().max().item():.2e}",
        ])  # fmt: skip
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(epochs: int) -> str:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        sizes = size_rows(tmp)
        t1 = time.perf_counter()
        loads = load_rows(tmp)
        t2 = time.perf_counter()
        accs = accuracy_rows(tmp, epochs)
        took = time.perf_counter() - t0
        print(f"sizes {t1 - t0:.0f} s, load {t2 - t1:.0f} s, accuracy {took - t2 + t0:.0f} s")
    date = datetime.date.today().isoformat()
    cpu = platform.processor() or platform.machine()
    return "\n\n".join([
        SECTION,
        f"Machine: {os.cpu_count()}-core CPU ({cpu}, shared with other jobs), torch "
        f"{torch.__version__}; {date}; command: `python benchmarks/bench_compact.py --write` "
        f"({took:.0f} s); 1-minute load average {load[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other developers' jobs share the 2 cores).",
        "**Sizes.** ResNet18-RPG, global ring. `.rpg` float32 / int8 ring vs the reference code's "
        "artifacts for the same model (torch.save checkpoint + int64 index `.npy` + sign masks "
        "`.npy` as float32; the checkpoint written and measured, the `.npy` sizes written once and "
        "checked against 128 + 8M and 128 + 4M bytes) and vs a full float32 state_dict.",
        _table(["variant", "ring", "learned params", ".rpg f32", ".rpg int8", "header",
                "reference files", "ref/.rpg f32", "ref/.rpg int8", "full/.rpg f32"], sizes),
        "**Load time**, ResNet18-RPG (CIFAR stem, 11.2M generated weights, 2M ring), median "
        "of 3 in one process:",
        _table(["step", "time"], loads),
        f"**Reduced-precision rings**: ResNet18-RPG width 0.25, ring 5% of the generated "
        f"weights, trained {epochs} epochs on sklearn digits (1400 train / 397 test, padded to "
        "32x32) by a small SGD loop in the benchmark; the same trained model saved with each "
        "ring dtype and loaded back:",
        _table(["ring dtype", "file", "test accuracy", "same prediction as float32",
                "max logit change"], accs),
    ])  # fmt: skip


def write_section(text: str) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION in old:
        before, _, rest = old.partition(SECTION)
        nxt = rest.find("\n## ")
        old = before + (rest[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(old.rstrip() + "\n\n" + text + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args(argv)
    text = report(args.epochs)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
