"""``rpg sweep`` (run a sweep template locally) and ``rpg fit`` (power law from result files).

``rpg sweep FILE --out DIR`` expands the template, trains each experiment in turn with
:func:`rpg_core.training.engine.train` and writes ``DIR/<experiment>.json`` per run and ``DIR/summary.json``
with the power-law fit of accuracy against backbone parameters (one fit per architecture, over its
RPG runs). ``--dry-run`` lists the experiments and their backbone parameters and trains nothing.
Checkpoints go to ``DIR/<experiment>/``; running the same sweep again resumes each experiment from
its last checkpoint (finished ones return at once).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..exceptions import RPGConfigError, RPGError

ACCURACY_KEYS = ("final_val_acc", "val_accuracy", "val_acc", "best_val_acc", "accuracy", "acc")


def register(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a sweep template's experiments locally, in turn")
    p.add_argument(
        "file", help="sweep template (YAML or JSON), e.g. experiments/paper/digits/fig5.yaml"
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<sweep name>)")
    p.add_argument("--dry-run", action="store_true", help="list the experiments, train nothing")
    p.add_argument("--data-root", default=None, help="root folder of the datasets")
    p.set_defaults(func=run_sweep)

    f = sub.add_parser("fit", help="fit a power law to result files written by `rpg sweep`")
    f.add_argument("results", nargs="+", help="result JSON files (with backbone_params, accuracy)")
    f.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for the CI of b")
    f.add_argument("--json", action="store_true", help="print JSON")
    f.add_argument(
        "--include-flagged",
        action="store_true",
        help="also fit runs the guard rails flagged (diverged, near chance)",
    )
    f.set_defaults(func=run_fit)


# --- helpers -------------------------------------------------------------------------------------
def backbone_params(spec: Any) -> int:
    """The backbone parameters of the experiment's model (the ring for an RPG network)."""
    from ..models import create_model
    from ..rpg.params import count_params

    return count_params(create_model(spec)).backbone


def accuracy_of(result: dict[str, Any]) -> float | None:
    """The validation accuracy in a result dict (as a fraction), under any of the usual keys."""
    for source in (result, result.get("metrics") or {}):
        if not isinstance(source, dict):
            continue
        for key in ACCURACY_KEYS:
            value = source.get(key)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                return float(value) / 100.0 if value > 1.0 else float(value)
    return None


def _group_key(run: dict[str, Any]) -> str | None:
    spec = run.get("spec") or {}
    if not spec.get("rpg"):
        return None  # plain baselines are one point per architecture: not fitted
    model = spec.get("model") or {}
    return f"{model.get('arch')}-{model.get('variant')}-w{model.get('width')}"


def flags_of(run: dict[str, Any]) -> list[str]:
    """The guard-rail flags of a run written by ``rpg sweep`` (rpg_core.training.health)."""
    return [str(f.get("code")) for f in (run.get("result") or {}).get("health") or []]


def fit_groups(
    runs: list[dict[str, Any]], bootstrap: int = 1000, include_flagged: bool = False
) -> dict[str, Any]:
    """A power-law fit per architecture over the RPG runs that have an accuracy (runs the guard
    rails flagged are left out unless ``include_flagged``)."""
    from ..analysis.power_law import fit_power_law

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if flags_of(r) and not include_flagged:
            continue
        key = _group_key(r)
        if key is not None and r.get("accuracy") is not None:
            groups.setdefault(key, []).append(r)
    fits: dict[str, Any] = {}
    for key, members in sorted(groups.items()):
        try:
            fit = fit_power_law(
                [m["backbone_params"] for m in members],
                [m["accuracy"] for m in members],
                bootstrap=bootstrap,
            )
            fits[key] = fit.as_dict()
        except RPGConfigError as err:
            fits[key] = {"error": str(err)}
    return fits


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


# --- rpg sweep -----------------------------------------------------------------------------------
def _train_one(spec: Any, out: Path, data_root: str | None) -> dict[str, Any]:
    from ..training.engine import train  # the engine: imported only when something is trained

    result = train(spec, checkpoint_dir=out / spec.name, data_root=data_root)
    return dict(result.as_dict())


def run_sweep(args: argparse.Namespace) -> int:
    from ..spec.sweep import expand, load_sweep

    sweep = load_sweep(args.file)
    specs = expand(sweep)
    rows = [{"name": s.name, "backbone_params": backbone_params(s)} for s in specs]
    if args.dry_run:
        for s, r in zip(specs, rows, strict=True):
            kind = "plain" if s.rpg is None else f"ring {s.rpg.ring_size} ({s.rpg.scope})"
            if s.model.recurrence is not None:
                kind = f"{s.model.recurrence.mode} x{s.model.recurrence.repeats}"
            print(f"{r['name']:<60} {s.model.arch:<10} {kind:<28} {r['backbone_params']:>12,}")
        print(f"{len(specs)} experiments")
        return 0
    out = Path(args.out or Path("runs") / sweep.name)
    out.mkdir(parents=True, exist_ok=True)
    runs, failed = [], 0
    for i, (spec, row) in enumerate(zip(specs, rows, strict=True), 1):
        print(f"[{i}/{len(specs)}] {spec.name}", flush=True)
        run: dict[str, Any] = {**row, "spec": spec.model_dump(mode="json")}
        try:
            run["result"] = _train_one(spec, out, args.data_root)
            run["accuracy"] = accuracy_of(run["result"])
            for flag in run["result"].get("health") or []:
                print(f"  WARNING {flag['code']}: {flag['message']}", flush=True)
        except RPGError as err:
            failed += 1
            run["error"] = str(err)
            print(f"  failed: {err}", flush=True)
        _write_json(out / f"{spec.name}.json", run)
        runs.append(run)
    summary = {
        "sweep": sweep.name,
        "runs": [
            {
                **{k: r.get(k) for k in ("name", "backbone_params", "accuracy", "error")},
                "flags": flags_of(r),
            }
            for r in runs
        ],  # fmt: skip
        "power_law": fit_groups(runs),  # flagged runs left out
    }
    _write_json(out / "summary.json", summary)
    print(f"wrote {len(runs)} results and summary.json to {out} ({failed} failed)")
    return 1 if failed else 0


# --- rpg fit -------------------------------------------------------------------------------------
def _read_result(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise RPGConfigError(f"cannot read result file {path!r}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise RPGConfigError(f"result file {path!r} is not JSON: {err}") from None
    if not isinstance(data, dict) or "backbone_params" not in data:
        raise RPGConfigError(
            f"result file {path!r} has no backbone_params; give the per-run files of `rpg sweep`"
        )
    if data.get("accuracy") is None:
        data["accuracy"] = accuracy_of(data.get("result") or {})
    return data


def run_fit(args: argparse.Namespace) -> int:
    from ..analysis.power_law import fit_power_law

    runs = [_read_result(p) for p in args.results]
    flagged = [r for r in runs if flags_of(r)]
    if flagged and not args.include_flagged:
        names = ", ".join(str(r.get("name")) for r in flagged)
        print(
            f"left out {len(flagged)} flagged run(s) ({names}); --include-flagged fits them",
            file=sys.stderr,
        )
        runs = [r for r in runs if not flags_of(r)]
    points = [r for r in runs if r.get("accuracy") is not None]
    fit = fit_power_law(
        [r["backbone_params"] for r in points],
        [r["accuracy"] for r in points],
        bootstrap=args.bootstrap,
    )
    if args.json:
        print(json.dumps(fit.as_dict(), indent=2))
        return 0
    ci = f" (95% CI {fit.b_ci[0]:.4f} .. {fit.b_ci[1]:.4f})" if fit.b_ci else ""
    print(f"error = {fit.a:.4g} * P^(-{fit.b:.4f}){ci}   r2 = {fit.r2:.4f}   n = {fit.n}")
    if fit.saturating is not None:
        s = fit.saturating
        print(f"error = {s.a:.4g} * P^(-{s.b:.4f}) + {s.c:.4f}   r2 = {s.r2:.4f}")
    print(f"better form (AICc): {fit.best}")
    return 0
