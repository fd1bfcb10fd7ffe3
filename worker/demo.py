# ruff: noqa: T201
"""The one-command demo (``make demo``, ``python -m worker.demo``): embedded ``rpg serve`` in the
one home folder (``$RPG_HOME``, default ``.rpg-studio``), a small sweep on Fashion-MNIST (digits
where it is missing) submitted through the typed client, the power-law fit, then serving until
Ctrl-C, SIGTERM or SIGHUP, which stop the server and its worker (the whole process group).

Plain ResNet18 baselines and RPG at several ring sizes, CIFAR-form ResNet18 at width 1/4 on
3,000 training images at 14x14, 3 epochs each: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from api.status import FINISHED, JobStatus
from rpg_core.catalog.datasets import DATASETS

RING_SIZES = (100, 500, 2_500)  # 3 epochs of 3,000 images saturate near 80% from 2K up
TINY_RING_SIZES = (500, 1_000, 2_000)
WIDTHS = (0.25, 0.0625)  # the RPG width, and the smallest plain net (43.6K params)
DEFAULT_PORT = 8000


class Stop(Exception):
    """SIGTERM or SIGHUP reached the demo: shut everything down."""


def _dataset(tiny: bool) -> dict[str, Any]:
    if tiny:  # for tests: 8x8 synthetic images, well under a second per epoch
        return {
            "dataset": "synthetic",
            "image_size": 8,
            "num_train": 128,
            "num_val": 32,
            "num_classes": 4,
        }
    if DATASETS["fashion-mnist"].installed_in(Path(os.environ.get("RPG_DATA_ROOT", "data"))):
        return {
            "dataset": "fashion-mnist",
            "train_subset": 3000,
            "val_subset": 1000,
            "image_size": 14,
        }
    return {"dataset": "digits", "image_size": 16}


def demo_sweep(epochs: int, *, tiny: bool = False) -> dict[str, Any]:
    """The demo's sweep: RPG at each ring size (the grid) and the plain baselines (extra)."""
    train: dict[str, Any] = {"epochs": epochs}  # everything else: the default (short) recipe
    widths = (0.125, 0.125) if tiny else WIDTHS
    return {
        "name": "demo",
        "base": {
            "model": {"arch": "resnet18", "width": widths[0]},
            "rpg": {"ring_size": RING_SIZES[0]},
            "data": _dataset(tiny),
            "train": train,
            "tags": ["rpg"],
        },
        "grid": {"rpg.ring_size": list(TINY_RING_SIZES if tiny else RING_SIZES)},
        "extra": [
            {"name": f"plain-w{w}", "model": {"width": w}, "rpg": None, "tags": ["plain"]}
            for w in dict.fromkeys(widths)
        ],
        "tags": ["demo"],
    }


def sweep_specs(epochs: int, *, tiny: bool = False) -> list[dict[str, Any]]:
    """The demo's experiments, validated (as the server will expand them)."""
    from rpg_core.spec.sweep import expand

    return [s.model_dump(mode="json") for s in expand(demo_sweep(epochs, tiny=tiny))]


def port_taken(host: str, port: int) -> bool:
    """True when something listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_taken_message(port: int) -> str:
    return (
        f"port {port} on 127.0.0.1 is already in use (another `make demo` or `rpg serve` still "
        f"running?); stop it, or pick another port: make demo PORT={port + 10} "
        f"(python -m worker.demo --port {port + 10})"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the demo dies, even by SIGKILL (no orphan server)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise Stop(signal.Signals(signum).name)


def _wait_up(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"rpg serve exited with {proc.returncode}; see its log: {log_path}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the API at {url} did not come up in {timeout:.0f} s; see {log_path}")


def _token(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", "token", "create", f"demo-{int(time.time())}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"rpg token create failed: {out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1]


def exports(home: Path, url: str, token: str) -> str:
    """The lines a user pastes into another shell to drive this server with ``rpg``."""
    return "\n".join(
        [
            f"export RPG_HOME={home}",
            f"export RPG_API_URL={url}",
            f"export RPG_API_TOKEN={token}",
        ]
    )


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (API, reconciler, worker), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the server is gone; anything left in its group (a stuck worker) goes too
        time.sleep(0.2)
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def run(args: argparse.Namespace) -> int:
    from api.settings import home_dir

    home = Path(args.home or home_dir()).resolve()
    url = f"http://127.0.0.1:{args.port}"
    if port_taken("127.0.0.1", args.port):
        print(f"make demo: error: {port_taken_message(args.port)}", file=sys.stderr, flush=True)
        return 2
    from .lifeline import holder_of

    holder = holder_of(home)  # rpg serve takes this lock itself; here to say so up front
    if holder is not None:
        print(
            f"make demo: error: the home {home} is already served by another rpg serve or "
            f"make demo ({holder}); stop it first, or use another home: "
            "RPG_HOME=OTHER_FOLDER make demo",
            file=sys.stderr,
            flush=True,
        )
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_BROKER")}
    env["RPG_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "serve.log"
    database = env.get("RPG_DATABASE_URL") or f"sqlite:///{home / 'rpg-studio.db'}"
    print(f"home: {home}  (database {database}; server log {log_path})", flush=True)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    server: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("ab") as server_log:
            server = subprocess.Popen(
                [sys.executable, "-m", "rpg_core.cli", "serve", "--port", str(args.port)],
                env=env,
                start_new_session=True,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        print(f"starting rpg serve on {url} (pid {server.pid})", flush=True)
        _wait_up(url, server, log_path, args.start_timeout)
        token = _token(env)
        print(
            "\nserving. To drive it from another shell (rpg submit, rpg status, rpg download):\n\n"
            + exports(home, url, token)
            + "\n",
            flush=True,
        )
        _run_sweep(url, token, args, server, home)
        if not args.exit_when_done:
            print("serving until Ctrl-C (or kill)", flush=True)
            server.wait()
            print(f"rpg serve stopped (exit {server.returncode}); see {log_path}", flush=True)
    except (KeyboardInterrupt, Stop) as why:
        print(
            f"\nstopping ({str(why) or 'Ctrl-C'}): the server and its worker; a run in training "
            "resumes from its last checkpoint at the next start on this home",
            flush=True,
        )
    finally:
        # a second Ctrl-C or kill while stopping must not leave the server behind
        for sig in (*previous, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        if server is not None:
            _stop_server(server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return 0


def _run_sweep(url: str, token: str, args: argparse.Namespace, server: Any, home: Path) -> None:
    from api.client import Client

    sweep = demo_sweep(args.epochs, tiny=args.tiny)
    with Client(url, token) as client:
        found = find_sweep(client, sweep)
        if found is None:
            created = client.submit_sweep(sweep)
            sweep_id, ids = int(created["id"]), [int(i) for i in created["experiment_ids"]]
            print(
                f"sweep {sweep_id} ({len(ids)} experiments) queued: see {url}/sweeps"
                f"\ndashboard: {url}/",
                flush=True,
            )
        else:
            sweep_id = int(found["id"])
            ids = [int(e["id"]) for e in _sweep_runs(client, sweep_id)]
            print(
                f"sweep {sweep_id} ({len(ids)} experiments: {_counts(found.get('counts') or {})})"
                f" is already in this home: not submitting it again, serving it. See {url}/sweeps"
                f"\ndashboard: {url}/",
                flush=True,
            )
        say_resumed(client, home)
        if args.no_wait:
            return
        rows = _follow(client, sweep_id, ids, server, args.epochs)
    _print_fit(url, rows)


def find_sweep(client: Any, sweep: dict[str, Any]) -> dict[str, Any] | None:
    """The newest sweep of the server that is ``sweep`` (the same stored spec), whatever the
    state of its runs; None when there is none."""
    from rpg_core.spec.sweep import parse_sweep

    wanted = parse_sweep(sweep).model_dump(mode="json")  # as the server stores it
    for item in client.sweeps(limit=200)["items"]:
        if item["name"] != wanted["name"]:
            continue
        full: dict[str, Any] = client.sweep(item["id"])
        if full.get("spec") == wanted:
            return full
    return None


def _sweep_runs(client: Any, sweep_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.experiments(sweep=sweep_id, sort="id", limit=200)["items"]
    return items


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none yet"


def say_resumed(client: Any, home: Path) -> list[dict[str, Any]]:
    """Say which runs the server resumes first (they were training when it last stopped) and
    from where: the notes it recorded at its start in ``home``'s server file
    (``worker.serve.write_server_file``; the runs' own notes are gone once they finish, and a
    short one may finish before this asks). Returns those runs with their notes."""
    from api.client import SERVER_FILE

    from .serve import INTERRUPTED

    try:
        info = json.loads((home / SERVER_FILE).read_text(encoding="utf-8"))
        notes = {int(r["id"]): str(r["note"]) for r in info.get("resumed") or []}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        notes = {}
    resumed = [{**client.experiment(i), "note": notes[i]} for i in sorted(notes)]
    if resumed:
        print(
            f"{len(resumed)} run(s) were training when the service last stopped; they run "
            "first, before the queued ones:",
            flush=True,
        )
        for e in resumed:
            where = e["note"][len(INTERRUPTED) :].lstrip(",; ")
            print(f"  experiment {e['id']} {e['name']}: {where}", flush=True)
    return resumed


def _epoch_lines(
    client: Any, exp: dict[str, Any], after: int, epochs: int
) -> tuple[int, list[str]]:
    """The progress lines of ``exp``'s epochs past ``after`` (one per epoch), and its last epoch."""
    series = client.metrics(exp["id"]).get("series") or {}
    by_epoch: dict[int, dict[str, float]] = {}
    for name, s in series.items():
        for epoch, value in zip(s["epoch"], s["value"], strict=False):
            by_epoch.setdefault(int(epoch), {})[name] = float(value)
    lines = []
    for epoch in sorted(e for e in by_epoch if e > after):
        m = by_epoch[epoch]
        parts = [f"{exp['name']:<22} epoch {epoch}/{epochs}"]
        if "val_acc" in m:
            parts.append(f"val acc {m['val_acc']:.3f}")
        if "train_loss" in m:
            parts.append(f"train loss {m['train_loss']:.3f}")
        lines.append("  " + "  ".join(parts))
    return max([after, *by_epoch]), lines


def _follow(
    client: Any, sweep_id: int, ids: list[int], server: Any, epochs: int
) -> list[dict[str, Any]]:
    """Until every run of the sweep is finished: one line per epoch of each run that trains
    (epochs recorded before this start were shown then) and one when a run finishes."""
    pending, rows = set(ids), {}
    shown: dict[int, int] | None = None  # run -> the last epoch shown
    while pending:
        if server.poll() is not None:
            raise SystemExit("rpg serve stopped before the sweep finished; see its log")
        runs = {int(e["id"]): e for e in _sweep_runs(client, sweep_id)}
        if shown is None:  # what was recorded before this start was shown by then
            shown = {
                i: _epoch_lines(client, runs[i], 0, epochs)[0] if i in runs else 0 for i in ids
            }
        for i in sorted(pending):
            exp = runs.get(i)
            if exp is None:  # deleted meanwhile
                pending.discard(i)
                continue
            if exp["status"] in (JobStatus.running, JobStatus.cancelling, *FINISHED):
                shown[i], lines = _epoch_lines(client, exp, shown[i], epochs)
                to_go = f"{len(pending)} run{'s' if len(pending) > 1 else ''} to go"
                for line in lines:
                    print(f"{line}   ({to_go})", flush=True)
            if exp["status"] in FINISHED:
                pending.discard(i)
                rows[i] = exp
                acc = exp.get("best_val_acc")
                print(
                    f"  {exp['name']:<22} {exp['status']:<9} best val acc "
                    f"{'-' if acc is None else f'{acc:.3f}'}   backbone params "
                    f"{exp.get('backbone_params') or '-'}",
                    flush=True,
                )
        time.sleep(1.0)
    return [rows[i] for i in ids if i in rows]


def _print_fit(url: str, rows: list[dict[str, Any]]) -> None:
    from rpg_core.analysis import fit_power_law
    from rpg_core.exceptions import RPGConfigError

    pts = [
        (r["backbone_params"], r["best_val_acc"])
        for r in rows
        if r["status"] == "succeeded" and "rpg" in (r.get("tags") or [])
    ]
    if len(pts) < 3:
        print("power-law fit: fewer than 3 finished RPG runs", flush=True)
        return
    perfect = sum(a >= 1.0 for _, a in pts)
    if perfect:  # the fitted error 1 - acc is 0: nothing to fit in log space
        print(
            f"power-law fit: not fitted: {perfect} of {len(pts)} RPG runs reached val acc 1.000 "
            f"(an error of 0 leaves nothing to fit: the data is too easy for this comparison); "
            f"see {url}/power-law",
            flush=True,
        )
        return
    try:
        fit = fit_power_law([p for p, _ in pts], [a for _, a in pts])
    except RPGConfigError as err:
        print(f"power-law fit: not fitted: {err}", flush=True)
        return
    ci = f" (95% CI {fit.b_ci[0]:.3f}-{fit.b_ci[1]:.3f})" if fit.b_ci else ""
    print(
        f"power law over {len(pts)} RPG runs: error = {fit.a:.3g} * P^({-fit.b:.3f}){ci}, "
        f"R^2 {fit.r2:.3f}; see {url}/power-law",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.demo", description=__doc__)
    p.add_argument(
        "--home", help="the home folder (default: $RPG_HOME, else .rpg-studio in this folder)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="the server's port (default 8000; make demo PORT=8010)",
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--exit-when-done", action="store_true", help="stop after the sweep (CI)")
    p.add_argument("--no-wait", action="store_true", help="submit the sweep, do not wait for it")
    p.add_argument("--tiny", action="store_true", help="tiny synthetic sweep (tests)")
    p.add_argument("--start-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
