"""``rpg sweep`` (run a sweep template locally) and ``rpg fit`` (power law from result files).

``rpg sweep FILE --out DIR`` expands the template, trains each experiment in turn through
:func:`rpg_core.training.experiment.train_experiment` (the service's path: the same stored result, the
similarity histogram included) with a line per epoch and the sweep's ETA, and writes
``DIR/<experiment>.json`` per run and ``DIR/summary.json`` with the power-law fit of accuracy
against backbone parameters (one fit per architecture, over its RPG runs) and, for a group with
no fit, why (``not_fitted``: e.g. an ablation at one size, whose size does not vary).
``--dry-run`` lists the experiments, their backbone parameters and the spec fields that differ
between them, and trains nothing. Checkpoints go to ``DIR/<experiment>/``; running the same sweep
again resumes each experiment from its last checkpoint (finished ones return at once).

``rpg fit DIR/*.json`` fits the run results it is given and skips, with a note, JSON files that
are not run results (the sweep's ``summary.json``). Every JSON written is strict (NaN as null).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..exceptions import RPGConfigError, RPGError
from .output import to_json, write_json
from .train import ProgressLine, _clock, epoch_line, set_threads

SUMMARY_FILE = "summary.json"
ACCURACY_KEYS = ("final_val_acc", "val_accuracy", "val_acc", "best_val_acc", "accuracy", "acc")


def register(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a sweep template's experiments locally, in turn")
    p.add_argument(
        "file", help="sweep template (YAML or JSON), e.g. experiments/paper/digits/fig5.yaml"
    )
    p.add_argument("--out", default=None, help="output folder (default: runs/<sweep name>)")
    p.add_argument("--dry-run", action="store_true", help="list the experiments, train nothing")
    p.add_argument("--data-root", default=None, help="root folder of the datasets")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
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
) -> tuple[dict[str, Any], dict[str, str]]:
    """A power-law fit per architecture over the RPG runs that have an accuracy (runs the guard
    rails flagged are left out unless ``include_flagged``), and, for every group that has no fit,
    why: a sweep whose size does not vary (an ablation at one ring size) is not a size sweep, so
    it is not fitted, and says so instead of writing a fit error.

    Returns ``(fits, not_fitted)``: group -> ``PowerLawFit.as_dict()``, group -> the reason.
    """
    from ..analysis.power_law import MIN_POINTS, fit_power_law

    groups: dict[str, list[dict[str, Any]]] = {}
    flagged: dict[str, int] = {}
    plain = 0
    for r in runs:
        key = _group_key(r)
        if key is None:
            plain += 1
            continue
        if r.get("accuracy") is None:
            continue
        if flags_of(r) and not include_flagged:
            flagged[key] = flagged.get(key, 0) + 1
            continue
        groups.setdefault(key, []).append(r)
    fits: dict[str, Any] = {}
    not_fitted: dict[str, str] = {}
    for key in sorted(set(groups) | set(flagged)):
        members = groups.get(key, [])
        sizes = {m["backbone_params"] for m in members}
        left_out = f" ({flagged[key]} flagged run(s) left out)" if key in flagged else ""
        if len(sizes) == 1 and len(members) >= 2:
            (size,) = sizes
            not_fitted[key] = (
                f"the size does not vary: all {len(members)} runs have {size:,} backbone "
                f"parameters, so there is no power law to fit (an ablation or replicates at one "
                f"size, not a size sweep){left_out}"
            )
            continue
        if len(members) < MIN_POINTS or len(sizes) < 2:
            not_fitted[key] = (
                f"{len(members)} run(s) with an accuracy at {len(sizes)} size(s); a fit needs "
                f"{MIN_POINTS} runs at 2 or more sizes{left_out}"
            )
            continue
        try:
            fit = fit_power_law(
                [m["backbone_params"] for m in members],
                [m["accuracy"] for m in members],
                bootstrap=bootstrap,
            )
            fits[key] = fit.as_dict()
        except RPGConfigError as err:
            not_fitted[key] = f"the fit failed: {err}{left_out}"
    if plain:
        not_fitted["plain"] = (
            f"{plain} plain run(s): baselines are one point per architecture, listed, not fitted"
        )
    return fits, not_fitted


# --- rpg sweep -----------------------------------------------------------------------------------
class SweepProgress(ProgressLine):
    """Engine callback of ``rpg sweep``: a line per epoch with the sweep's ETA (and, on a
    terminal, the step line of ``rpg train``).

    The ETA is the sweep's wall time per epoch trained so far (set-up and evaluation included)
    times the epochs still to train; epochs a resumed run had done already are not counted.
    """

    def __init__(self, epochs_per_run: list[int], stream: Any = None) -> None:
        super().__init__(stream or sys.stdout)
        self.epochs = list(epochs_per_run)
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.trained = 0  # epochs trained by this process
        self.run = -1
        self.run_left = 0  # epochs of the current run still to train
        self.dense_reused: int | None = None  # epochs of a reused dense network, until said

    def start_run(self, index: int) -> None:
        self.run, self.run_left = index, self.epochs[index]

    def end_run(self) -> None:
        self.run_left = 0  # finished, failed or stopped: nothing more to train for it

    def remaining(self) -> int:
        return self.run_left + sum(self.epochs[self.run + 1 :])

    def eta_s(self) -> float:
        if self.trained == 0:
            return math.inf
        return (time.perf_counter() - self.started) / self.trained * self.remaining()

    def on_dense_reused(self, epochs: int) -> None:
        self.dense_reused = epochs  # the on_resume that follows says so

    def on_resume(self, history: list[dict[str, Any]]) -> None:
        self.run_left = max(0, self.run_left - len(history))
        reused, self.dense_reused = self.dense_reused, None
        if reused is not None:
            self.stream.write(
                f"  the dense network of this sweep reused ({reused} epochs, trained once)\n"
            )
        else:
            self.stream.write(f"  resumed at epoch {len(history)}\n")
        self.stream.flush()

    def on_step(self, step: int, total: int, m: dict[str, Any]) -> None:
        if self.live:  # a \r line is noise in a log file
            super().on_step(step, total, m)

    def on_epoch_end(self, epoch: int, m: dict[str, Any]) -> None:
        self.trained += 1
        self.run_left = max(0, self.run_left - 1)
        lead = "\r" if self.live else ""
        self.stream.write(
            f"{lead}  {epoch_line(epoch, m, self.epochs[self.run])}"
            f"  sweep ETA {_clock(self.eta_s())}\n"
        )
        self.stream.flush()


def _epochs(spec: Any) -> int:
    from ..spec import resolve_train

    return int(resolve_train(spec.train)["epochs"])


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"rpg.ring_size": 1000, ...}``: the leaves of a nested mapping by dotted path."""
    if not isinstance(data, dict) or not data:
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _distinct(values: list[Any]) -> int:
    return len({json.dumps(v, sort_keys=True) for v in values})


def differing_fields(specs: list[Any]) -> list[str]:
    """The dotted spec paths whose values are not the same in every experiment (name aside).

    A section that is null in some experiments and set in others (``rpg`` of a plain baseline
    beside RPG runs) is one field, ``rpg``; inside it, only the values that differ between the
    experiments that set it are listed.
    """
    flats = [_flat(s.model_dump(mode="json")) for s in specs]
    out: set[str] = set()
    for path in sorted(set().union(*flats) - {"name"}):
        values = [f[path] for f in flats if path in f]
        if len(values) < len(flats):  # its section is null in some experiments
            parts = path.split(".")
            for i in range(1, len(parts)):
                if any(".".join(parts[:i]) in f for f in flats):
                    out.add(".".join(parts[:i]))
                    break
        if _distinct(values) > 1:
            out.add(path)
    return sorted(out)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _field_value(spec: Any, flat: dict[str, Any], path: str, fields: list[str]) -> str | None:
    """``path``'s value in ``spec`` as text: a leaf, or a whole section as the JSON of its
    non-default fields; None when the spec has no such field."""
    if path in flat:
        return _shown(flat[path])
    if any(f.startswith(f"{path}.") for f in fields):
        return None  # the section is set here: its differing fields are shown one by one
    section: Any = spec.model_dump(mode="json", exclude_defaults=True)
    for key in path.split("."):
        if not isinstance(section, dict) or key not in section:
            return None
        section = section[key]
    return _shown(section)


def _dry_run(specs: list[Any], rows: list[dict[str, Any]]) -> None:
    fields = differing_fields(specs)
    if len(specs) > 1:
        print(f"fields that differ between the runs: {', '.join(fields) or 'none but the name'}")
    width = max(len(s.name) for s in specs)
    for s, r in zip(specs, rows, strict=True):
        flat = _flat(s.model_dump(mode="json"))
        shown = [(p, _field_value(s, flat, p, fields)) for p in fields]
        values = " ".join(f"{p}={v}" for p, v in shown if v is not None)
        print(f"{s.name:<{width}}  {r['backbone_params']:>12,}  {values}".rstrip())
    print(f"{len(specs)} experiments ({sum(_epochs(s) for s in specs)} epochs in all)")


def _train_one(
    spec: Any, out: Path, data_root: str | None, progress: SweepProgress
) -> dict[str, Any]:
    from ..training.experiment import train_experiment  # the service's path: similarity included

    result = train_experiment(
        spec,
        callbacks=[progress],
        checkpoint_dir=out / spec.name,
        data_root=data_root,
        dense_cache=out / "dense",  # a pruning method's dense network: once per dense spec
    )
    return result.stored()


def run_sweep(args: argparse.Namespace) -> int:
    from ..spec.sweep import expand, load_sweep

    sweep = load_sweep(args.file)
    specs = expand(sweep)
    rows = [{"name": s.name, "backbone_params": backbone_params(s)} for s in specs]
    if args.dry_run:
        _dry_run(specs, rows)
        return 0
    set_threads(args.threads)
    out = Path(args.out or Path("runs") / sweep.name)
    out.mkdir(parents=True, exist_ok=True)
    progress = SweepProgress([_epochs(s) for s in specs])
    runs, failed = [], 0
    for i, (spec, row) in enumerate(zip(specs, rows, strict=True)):
        n = progress.epochs[i]
        print(f"[{i + 1}/{len(specs)}] {spec.name} ({n} epoch{'s' if n != 1 else ''})", flush=True)
        progress.start_run(i)
        run: dict[str, Any] = {**row, "spec": spec.model_dump(mode="json")}
        run["checkpoint"] = str(out / spec.name)
        try:
            run["result"] = _train_one(spec, out, args.data_root, progress)
            run["accuracy"] = accuracy_of(run["result"])
            for flag in run["result"].get("health") or []:
                print(f"  WARNING {flag['code']}: {flag['message']}", flush=True)
        except RPGError as err:
            failed += 1
            run["error"] = str(err)
            print(f"  failed: {err}", flush=True)
        progress.end_run()
        write_json(out / f"{spec.name}.json", run)
        runs.append(run)
    fits, not_fitted = fit_groups(runs)  # flagged runs left out
    summary = {
        "sweep": sweep.name,
        "runs": [
            {
                **{k: r.get(k) for k in ("name", "backbone_params", "accuracy", "error")},
                "flags": flags_of(r),
            }
            for r in runs
        ],  # fmt: skip
        "power_law": fits,
        "not_fitted": not_fitted,  # group -> why it has no fit (e.g. the size does not vary)
    }
    write_json(out / SUMMARY_FILE, summary)
    print(f"wrote {len(runs)} results and {SUMMARY_FILE} to {out} ({failed} failed)")
    for key, why in not_fitted.items():
        print(f"  no power law for {key}: {why}")
    return 1 if failed else 0


# --- rpg fit -------------------------------------------------------------------------------------
def _read_result(path: str) -> dict[str, Any] | None:
    """A run result of ``rpg sweep``; None (with a note on stderr) for a JSON file that is not
    one (the sweep's own summary.json, when given DIR/*.json)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise RPGConfigError(f"cannot read result file {path!r}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise RPGConfigError(f"result file {path!r} is not JSON: {err}") from None
    if isinstance(data, dict) and "backbone_params" in data:
        if data.get("accuracy") is None:
            data["accuracy"] = accuracy_of(data.get("result") or {})
        return data
    if isinstance(data, dict) and "sweep" in data and "runs" in data:
        what = "a sweep's summary"
    else:
        what = "not a run result of `rpg sweep` (no backbone_params)"
    print(f"skipped {path}: {what}", file=sys.stderr)
    return None


def _print_fit(fit: Any) -> None:
    """The fit as text: only what was computed, with the caveats it needs."""
    from ..analysis.power_law import MIN_POINTS_SATURATING

    ci = ""
    if fit.b_ci:
        note = f"; {fit.ci_note}" if fit.ci_note else ""
        ci = f" (95% CI {fit.b_ci[0]:.4f} .. {fit.b_ci[1]:.4f}{note})"
    r2 = f"   adj r2 = {fit.adj_r2:.4f}" if math.isfinite(fit.adj_r2) else ""
    print(f"error = {fit.a:.4g} * P^(-{fit.b:.4f}){ci}   r2 = {fit.r2:.4f}{r2}   n = {fit.n}")
    if fit.saturating is None:  # nothing to compare the power form with
        print(
            f"one form fitted: the saturating form (+ c) needs {MIN_POINTS_SATURATING} points, "
            f"this fit has {fit.n}"
        )
        return
    s = fit.saturating
    print(f"error = {s.a:.4g} * P^(-{s.b:.4f}) + {s.c:.4f}   r2 = {s.r2:.4f}")
    print(f"better form (AICc): {fit.best}")


def run_fit(args: argparse.Namespace) -> int:
    from ..analysis.power_law import fit_power_law

    runs = [r for p in args.results if (r := _read_result(p)) is not None]
    if not runs:
        raise RPGConfigError(
            "results: none of the files is a run result (with backbone_params); give the "
            "per-run files of `rpg sweep`"
        )
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
        print(to_json(fit.as_dict()))
        return 0
    _print_fit(fit)
    return 0
