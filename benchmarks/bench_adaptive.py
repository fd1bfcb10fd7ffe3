"""The adaptive power law (rpg_core.analysis.adaptive, issue 25) against a uniform grid.

Both strategies get the same number of trials over the same range. The grid of ``t`` trials is
``t`` sizes log-spaced over the range; the adaptive rule is :func:`propose` driven in a loop
(never stopping early, so every trial count can be compared). Measured after each trial count:
the width of b's 95% interval (Student's t, the rule's default) and whether it and the pairs
bootstrap's hold the true b, and the error (in decades)
of the predicted parameter count that reaches a target error, against the truth.

(a) ``synthetic``: laws ``error = a * P^-b`` with multiplicative log-normal noise, many
    repetitions (each draws its own noise, the same for both strategies' trial order).
(b) ``real``: ResNet18-RPG on Fashion-MNIST over ring sizes on a fixed log-spaced lattice, one
    thread per training; every (ring, seed) is trained once and cached in a JSON file, so the
    strategies share trainings and a rerun continues. The truth is the law fitted to the whole
    lattice (every ring, every seed); replicate ``r`` of the grid uses seed ``r`` at every ring,
    replicate ``r`` of the adaptive rule the seeds ``r, r+1, ...`` at each ring's successive
    visits (so replicates share trainings and are not independent).

Usage:
  python benchmarks/bench_adaptive.py synthetic [--reps 300] [--trials 12]
  OMP_NUM_THREADS=1 python benchmarks/bench_adaptive.py real [--cache runs/bench_adaptive.json]
      [--low 1000] [--high 100000] [--points 9] [--seeds 6] [--trials 9] [--epochs 2]
      [--subset 3000] [--image-size 14] [--width 0.25] [--dataset fashion-mnist]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rpg_core.analysis.adaptive import AdaptiveLaw, Observation, propose, t975
from rpg_core.analysis.power_law import bootstrap_coefficients, power_coefficients

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Law:
    name: str
    a: float
    b: float
    sigma: float  # standard deviation of log(error): the seed-to-seed noise
    low: float
    high: float
    target_at: float  # the target error is the law's error at this many parameters
    c: float = 0.0  # an irreducible error: the law bends (error = a P^-b + c)

    def error(self, p: float) -> float:
        return self.a * p ** (-self.b) + self.c

    @property
    def true_b(self) -> float:
        """What a dense grid over the range estimates: b itself for a straight law, the
        least-squares log-log slope of the noise-free law over 257 log-spaced sizes when it
        bends."""
        if self.c == 0:
            return self.b
        p = np.exp(np.linspace(math.log(self.low), math.log(self.high), 257))
        return power_coefficients(p, [self.error(x) for x in p])[1]

    @property
    def target_error(self) -> float:
        return self.error(self.target_at)


# realistic: b of CIFAR-like laws (0.05 to 0.3), noise of 1% to 10% of the error between seeds
LAWS = (
    Law("steep, 3% noise", a=3.0, b=0.30, sigma=0.03, low=1e3, high=1e5, target_at=3e4),
    Law("steep, 10% noise", a=3.0, b=0.30, sigma=0.10, low=1e3, high=1e5, target_at=3e4),
    Law("shallow, 3% noise", a=0.5, b=0.05, sigma=0.03, low=1e3, high=1e5, target_at=3e4),
    # a law that bends: error = 3 P^-0.3 + 0.05 (the straight fit is the wrong model)
    Law("bending, 3% noise", a=3.0, b=0.30, sigma=0.03, low=1e3, high=1e5, target_at=3e4, c=0.05),
)


def params_of(knob: float) -> int:
    return int(round(knob))


def _interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(p: Sequence[float], err: Sequence[float], target_error: float) -> dict[str, float]:
    """b, its 95% intervals (Student's t, what the rule stops on by default, and the pairs
    bootstrap) and the log10 count reaching ``target_error`` of one design."""
    pa, ea = np.asarray(p, dtype=np.float64), np.asarray(err, dtype=np.float64)
    a, b = power_coefficients(pa, ea)
    boot = bootstrap_coefficients(pa, ea, BOOTSTRAP, 0)
    blo, bhi = _interval(boot[:, 1])
    x, y = np.log(pa), np.log(ea)
    resid = y - (math.log(a) - b * x)
    s = math.sqrt(float((resid**2).sum()) / (len(x) - 2))
    half = t975(len(x) - 2) * s / math.sqrt(float(((x - x.mean()) ** 2).sum()))
    target = math.log10(a / target_error) / b if b > 0 else math.inf
    return {
        "b": b,
        "lo": b - half,
        "hi": b + half,
        "width": 2 * half,
        "boot_lo": blo,
        "boot_hi": bhi,
        "boot_width": bhi - blo,
        "log10_target": target,
    }


def grid(low: float, high: float, t: int) -> list[float]:
    return [float(round(v)) for v in np.exp(np.linspace(math.log(low), math.log(high), t))]


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = sorted(x for x in values if math.isfinite(x))
    if not v:
        return {"median": math.nan, "q25": math.nan, "q75": math.nan, "n": 0}
    q = np.percentile(v, [25, 50, 75])
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "n": len(v)}


def compare(
    designs: dict[str, Callable[[int], tuple[list[float], list[float]]]],
    true_b: float,
    true_log10_target: float,
    target_error: float,
    trials: int,
) -> dict[str, dict[int, dict[str, float]]]:
    """For one repetition: each strategy's summary after t = 3..trials trials."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name, design in designs.items():
        out[name] = {}
        for t in range(3, trials + 1):
            p, e = design(t)
            s = summarize(p, e, target_error)
            s["covers"] = float(s["lo"] <= true_b <= s["hi"])
            s["boot_covers"] = float(s["boot_lo"] <= true_b <= s["boot_hi"])
            s["target_err"] = abs(s["log10_target"] - true_log10_target)
            out[name][t] = s
    return out


def aggregate(runs: list[dict[str, dict[int, dict[str, float]]]]) -> dict[str, Any]:
    """Median and quartiles over repetitions, per strategy and trial count."""
    agg: dict[str, Any] = {}
    for name in runs[0]:
        agg[name] = {}
        for t in runs[0][name]:
            rows = [r[name][t] for r in runs]
            agg[name][t] = {
                "width": _stats([r["width"] for r in rows]),
                "target_err": _stats([r["target_err"] for r in rows]),
                "boot_width": _stats([r["boot_width"] for r in rows]),
                "coverage": statistics.fmean(r["covers"] for r in rows),
                "boot_coverage": statistics.fmean(r["boot_covers"] for r in rows),
            }
    return agg


# --- (a) synthetic --------------------------------------------------------------------------------
def synthetic_rep(law: Law, trials: int, rep: int) -> dict[str, dict[int, dict[str, float]]]:
    """One repetition: the k-th trial of every strategy draws the same noise ``noise[k]``."""
    noise = np.random.default_rng(1000 + rep).normal(0.0, law.sigma, size=trials)

    def observed(rule: AdaptiveLaw) -> list[Observation]:
        obs: list[Observation] = []
        for k in range(trials):
            prop = propose(rule, obs, params_of)
            if prop.knob is None:
                break
            p = params_of(prop.knob)
            obs.append(Observation(prop.knob, p, law.error(p) * math.exp(noise[k])))
        return obs

    def prefix(obs: list[Observation]) -> Callable[[int], tuple[list[float], list[float]]]:
        return lambda t: ([float(o.params) for o in obs[:t]], [o.error for o in obs[:t]])

    def uniform(t: int) -> tuple[list[float], list[float]]:
        p = [float(params_of(k)) for k in grid(law.low, law.high, t)]
        return p, [law.error(x) * math.exp(noise[i]) for i, x in enumerate(p)]

    plain = AdaptiveLaw(low=law.low, high=law.high, max_trials=trials)
    aimed = AdaptiveLaw(
        low=law.low, high=law.high, max_trials=trials, target_error=law.target_error
    )
    designs = {
        "grid": uniform,
        "adaptive": prefix(observed(plain)),
        "adaptive-target": prefix(observed(aimed)),
    }
    return compare(designs, law.true_b, math.log10(law.target_at), law.target_error, trials)


def synthetic(reps: int, trials: int, laws: Sequence[Law] = LAWS) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for law in laws:
        t0 = time.perf_counter()
        runs = [synthetic_rep(law, trials, rep) for rep in range(reps)]
        results[law.name] = {
            "law": law.__dict__,
            "reps": reps,
            "seconds": time.perf_counter() - t0,
            "by_trials": aggregate(runs),
        }
    return results


# --- (b) real -------------------------------------------------------------------------------------
def train_point(ring: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from rpg_core import train

    torch.set_num_threads(1)
    spec = {
        "name": f"adaptive-r{ring}-s{seed}",
        "model": {"arch": "resnet18", "variant": "cifar", "width": args.width},
        "rpg": {"ring_size": ring, "seed": seed},
        "data": {
            "dataset": args.dataset,
            "train_subset": args.subset,
            "val_subset": args.val_subset,
            "image_size": args.image_size,
        },
        "train": {"epochs": args.epochs, "seed": seed},
    }
    t0 = time.perf_counter()
    r = train(spec)
    acc = r.final_val_acc
    if acc is None:
        raise RuntimeError(f"{spec['name']}: no validation accuracy")
    return {
        "ring": ring,
        "seed": seed,
        "acc": float(acc),
        "params": int(r.params["backbone"]),
        "seconds": time.perf_counter() - t0,
    }


def real(args: argparse.Namespace) -> dict[str, Any]:
    rings = [int(k) for k in grid(args.low, args.high, args.points)]  # the rule's candidates
    cache_path = Path(args.cache)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache: dict[str, dict[str, Any]] = (
        json.loads(cache_path.read_text()) if cache_path.exists() else {}
    )

    def point(ring: int, seed: int) -> dict[str, Any]:
        key = f"{ring}:{seed}"
        if key not in cache:
            cache[key] = train_point(ring, seed, args)
            cache_path.write_text(json.dumps(cache, indent=1))
            print(
                f"trained {key}: acc {cache[key]['acc']:.4f} in {cache[key]['seconds']:.1f} s",
                flush=True,
            )
        return cache[key]

    t0 = time.perf_counter()
    for seed in range(args.seeds):  # the whole lattice: the dense truth (one seed at a time)
        for ring in rings:
            point(ring, seed)
    rows = [point(r, s) for r in rings for s in range(args.seeds)]
    p_all = [float(r["params"]) for r in rows]
    e_all = [1.0 - r["acc"] for r in rows]
    true_a, true_b = power_coefficients(p_all, e_all)
    truth_fit = summarize(p_all, e_all, 1.0)
    ends = [r for r in rows if r["ring"] in (rings[0], rings[-1])]
    ends_b = power_coefficients([float(r["params"]) for r in ends], [1.0 - r["acc"] for r in ends])[
        1
    ]
    # the target: the truth's error at the lattice's geometric middle
    p_mid = math.sqrt(rings[0] * rings[-1])
    target_error = true_a * p_mid ** (-true_b)
    true_target = math.log10(p_mid)
    params = {r: point(r, 0)["params"] for r in rings}

    def pof(knob: float) -> int:
        return int(params[int(round(knob))])

    trials = args.trials
    runs = []
    for rep in range(args.seeds):

        def uniform(t: int, rep: int = rep) -> tuple[list[float], list[float]]:
            ks = [rings[int(round(i))] for i in np.linspace(0, len(rings) - 1, t)]
            # a ring the grid holds twice (more trials than lattice points) takes the next seed
            pts = [point(k, rep + ks[:i].count(k)) for i, k in enumerate(ks)]
            return [float(x["params"]) for x in pts], [1.0 - x["acc"] for x in pts]

        def adaptive(
            target: float | None, rep: int = rep
        ) -> Callable[[int], tuple[list[float], list[float]]]:
            rule = AdaptiveLaw(
                low=rings[0],
                high=rings[-1],
                candidates=len(rings),
                max_trials=trials,
                target_error=target,
            )
            obs: list[Observation] = []
            for _ in range(trials):
                prop = propose(rule, obs, pof)
                if prop.knob is None:
                    break
                ring = int(round(prop.knob))
                visit = sum(1 for o in obs if int(o.knob) == ring)
                x = point(ring, rep + visit)  # beyond the lattice's seeds: trained on demand
                obs.append(Observation(float(ring), int(x["params"]), 1.0 - x["acc"]))

            def design(t: int) -> tuple[list[float], list[float]]:
                return [float(o.params) for o in obs[:t]], [o.error for o in obs[:t]]

            return design

        runs.append(
            compare(
                {
                    "grid": uniform,
                    "adaptive": adaptive(None),
                    "adaptive-target": adaptive(target_error),
                },
                true_b,
                true_target,
                target_error,
                trials,
            )
        )
    per_ring = {r: _stats([1.0 - point(r, s)["acc"] for s in range(args.seeds)]) for r in rings}
    return {
        "rings": rings,
        "seeds": args.seeds,
        "trainings": len(cache),
        "train_seconds": sum(float(v["seconds"]) for v in cache.values()),
        "seconds": time.perf_counter() - t0,
        "truth": {
            "a": true_a,
            "b": true_b,
            "b_interval": [truth_fit["lo"], truth_fit["hi"]],
            "b_of_the_ends": ends_b,  # the secant between the range's ends (every seed)
        },
        "target_error": target_error,
        "target_params": p_mid,
        "error_per_ring": per_ring,
        "by_trials": aggregate(runs),
        "spec": {
            k: getattr(args, k)
            for k in ("dataset", "subset", "val_subset", "image_size", "width", "epochs")
        },
    }


# --- report ---------------------------------------------------------------------------------------
def table(by_trials: dict[str, Any]) -> str:
    """Per trial count and strategy: b's t-interval width (median, quartiles), how often the
    t and the bootstrap intervals hold the true b, and the target size's error in decades."""
    names = list(by_trials)
    head = "| trials | " + " | ".join(
        f"{n}: b width (IQR) | {n}: covers t / boot | {n}: target err, decades (IQR)" for n in names
    )
    lines = [head + " |", "|" + "---|" * (1 + 3 * len(names))]
    for t in by_trials[names[0]]:
        cells = [str(t)]
        for n in names:
            s = by_trials[n][t]
            w, e = s["width"], s["target_err"]
            cells += [
                f"{w['median']:.3f} ({w['q25']:.3f}-{w['q75']:.3f})",
                f"{s['coverage']:.0%} / {s['boot_coverage']:.0%}",
                f"{e['median']:.3f} ({e['q25']:.3f}-{e['q75']:.3f})",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    up = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "uptime": up,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="part", required=True)
    s = sub.add_parser("synthetic")
    s.add_argument("--reps", type=int, default=300)
    s.add_argument("--trials", type=int, default=12)
    r = sub.add_parser("real")
    r.add_argument("--cache", default=str(ROOT / "runs" / "bench_adaptive.json"))
    r.add_argument("--low", type=float, default=1e3, help="the smallest ring size")
    r.add_argument("--high", type=float, default=1e5, help="the largest ring size")
    r.add_argument("--points", type=int, default=9, help="log-spaced ring sizes (the lattice)")
    r.add_argument("--seeds", type=int, default=6)
    r.add_argument("--trials", type=int, default=9)
    r.add_argument("--epochs", type=int, default=2)
    r.add_argument("--subset", type=int, default=3000)
    r.add_argument("--val-subset", type=int, default=2000)
    r.add_argument("--image-size", type=int, default=14)
    r.add_argument("--width", type=float, default=0.25)
    r.add_argument("--dataset", default="fashion-mnist")
    for p in (s, r):
        p.add_argument("--json", default="", help="write the results here too")
    args = ap.parse_args(argv)
    info = machine()
    print(f"# bench_adaptive {args.part}: {info['date']}, {info['machine']}")
    print(f"# load at start: {info['uptime']}")
    if args.part == "synthetic":
        res: dict[str, Any] = synthetic(args.reps, args.trials)
        for name, v in res.items():
            law = v["law"]
            print(
                f"\n## {name}: b={law['b']}, c={law['c']}, sigma={law['sigma']}, P in [{law['low']:g}, {law['high']:g}], "
                f"target at {law['target_at']:g} params, {v['reps']} repetitions ({v['seconds']:.1f} s)\n"
            )
            print(table(v["by_trials"]))
    else:
        res = real(args)
        t = res["truth"]
        print(
            f"\n## real: {res['spec']}, rings {res['rings']}, {res['seeds']} seeds, "
            f"{res['trainings']} trainings ({res['train_seconds']:.0f} s of training)\n"
        )
        print(
            f"truth (every ring, every seed): b = {t['b']:.4f} [{t['b_interval'][0]:.4f}, "
            f"{t['b_interval'][1]:.4f}]; target error {res['target_error']:.4f} at "
            f"{res['target_params']:.0f} params; b of the two ends only: {t['b_of_the_ends']:.4f}"
        )
        for ring, st in res["error_per_ring"].items():
            print(
                f"  ring {ring}: error median {st['median']:.4f} (IQR {st['q25']:.4f}-{st['q75']:.4f})"
            )
        print()
        print(table(res["by_trials"]))
    info["end_uptime"] = machine()["uptime"]
    print(f"\n# load at end: {info['end_uptime']}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "results": res}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
