# ruff: noqa: T201
"""The one-command demo (``python -m worker.demo``): embedded ``rpg serve``, a small sweep on
Fashion-MNIST (digits where it is missing), the power-law fit, then serving until Ctrl-C.

Plain ResNet18 baselines and RPG at several ring sizes, CIFAR-form ResNet18 at width 1/4 on
3,000 training images at 14x14, 3 epochs each: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

RING_SIZES = (2_000, 8_000, 30_000)
WIDTHS = (0.25, 0.0625)  # the RPG width, and a plain net of about the largest ring's size
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _dataset() -> dict[str, Any]:
    if (
        FASHION.is_dir()
        or (Path(os.environ.get("RPG_DATA_ROOT", "data")) / "fashion-mnist").is_dir()
    ):
        return {
            "dataset": "fashion-mnist",
            "train_subset": 3000,
            "val_subset": 1000,
            "image_size": 14,
        }
    return {"dataset": "digits", "image_size": 16}


def sweep_specs(epochs: int) -> list[dict[str, Any]]:
    data = _dataset()
    train = {"epochs": epochs, "batch_size": 128, "lr": 0.05, "milestones": [epochs - 1]}
    out = [
        {
            "name": f"plain-w{w}",
            "model": {"arch": "resnet18", "width": w},
            "data": data,
            "train": train,
            "tags": ["demo", "plain"],
        }
        for w in WIDTHS
    ]
    out += [
        {
            "name": f"rpg-{r}",
            "model": {"arch": "resnet18", "width": WIDTHS[0]},
            "rpg": {"ring_size": r},
            "data": data,
            "train": train,
            "tags": ["demo", "rpg"],
        }
        for r in RING_SIZES
    ]
    return out


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"rpg serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the API at {url} did not come up in {timeout:.0f} s")


def _token(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", "token", "create", f"demo-{os.getpid()}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir).resolve()
    url = f"http://127.0.0.1:{args.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_BROKER")}
    env.setdefault("RPG_DATABASE_URL", f"sqlite:///{workdir / 'rpg-studio.db'}")
    env.setdefault("RPG_ARTIFACT_DIR", str(workdir / "artifacts"))
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "serve.log"
    print(f"starting rpg serve (API, worker, embedded broker); its log: {log_path}", flush=True)
    server_log = log_path.open("ab")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rpg_core.cli",
            "serve",
            "--port",
            str(args.port),
            "--workdir",
            str(workdir),
        ],
        env=env,
        start_new_session=True,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_up(url, server)
        auth = {"Authorization": f"Bearer {_token(env)}"}
        ids = [_submit(url, auth, spec) for spec in sweep_specs(args.epochs)]
        print(f"dashboard: {url}/   ({len(ids)} experiments queued)", flush=True)
        _wait_done(url, auth, ids, server)
        _print_fit(url, auth, ids)
        if not args.exit_when_done:
            print("serving until Ctrl-C", flush=True)
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    return 0


def _submit(url: str, auth: dict[str, str], spec: dict[str, Any]) -> int:
    r = httpx.post(f"{url}/api/experiments", json=spec, headers=auth, timeout=30)
    r.raise_for_status()
    return int(r.json()["id"])


def _wait_done(url: str, auth: dict[str, str], ids: list[int], server: Any) -> None:
    pending = set(ids)
    last_note = time.monotonic()
    while pending:
        if server.poll() is not None:
            raise SystemExit("rpg serve stopped before the sweep finished")
        for i in sorted(pending):
            exp = httpx.get(f"{url}/api/experiments/{i}", headers=auth, timeout=30).json()
            if exp["status"] in ("succeeded", "failed", "cancelled"):
                pending.discard(i)
                acc = exp.get("best_val_acc")
                print(
                    f"  {exp['name']:<14} {exp['status']:<9} best val acc "
                    f"{'-' if acc is None else f'{acc:.3f}'}   backbone params "
                    f"{exp.get('backbone_params') or '-'}",
                    flush=True,
                )
            elif exp["status"] == "running" and time.monotonic() - last_note > 15:
                last_note = time.monotonic()
                print(
                    f"  ... {exp['name']} epoch {exp.get('epoch') or 0}, "
                    f"{100 * (exp.get('progress') or 0):.0f}% ({len(pending)} runs to go)",
                    flush=True,
                )
        time.sleep(1.0)


def _print_fit(url: str, auth: dict[str, str], ids: list[int]) -> None:
    from rpg_core.analysis import fit_power_law

    rows = [httpx.get(f"{url}/api/experiments/{i}", headers=auth, timeout=30).json() for i in ids]
    pts = [
        (r["backbone_params"], r["best_val_acc"])
        for r in rows
        if r["status"] == "succeeded" and "rpg" in (r.get("tags") or [])
    ]
    if len(pts) < 3:
        print("power-law fit: fewer than 3 finished RPG runs")
        return
    fit = fit_power_law([p for p, _ in pts], [a for _, a in pts])
    ci = f" (95% CI {fit.b_ci[0]:.3f}-{fit.b_ci[1]:.3f})" if fit.b_ci else ""
    print(
        f"power law over {len(pts)} RPG runs: error = {fit.a:.3g} * P^-{fit.b:.3f}{ci}, "
        f"R^2 {fit.r2:.3f}; see {url}/power-law",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker.demo", description=__doc__)
    p.add_argument("--workdir", default=".rpg-studio-demo")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--exit-when-done", action="store_true", help="stop after the sweep (CI)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
