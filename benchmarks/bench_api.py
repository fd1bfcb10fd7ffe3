"""REST API latency: POST /api/experiments, the list endpoint and the power-law endpoint.

Seeds a fresh database with 10,000 experiments (1,000 of them succeeded with results), starts
uvicorn in a subprocess on 127.0.0.1 and drives it with 50 concurrent httpx async clients.
Runs the same load on PostgreSQL and on SQLite side by side (ratios), bounded in count and time.

    python benchmarks/bench_api.py [--requests 400] [--backends postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import crud  # noqa: E402
from api.db import make_engine, make_sessionmaker  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from api.models import Experiment, utcnow  # noqa: E402

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
N_EXPERIMENTS = 10_000
N_RESULTS = 1_000
CONCURRENCY = 50
PHASE_TIME_LIMIT_S = 25.0
SPEC = {
    "name": "bench",
    "model": {"arch": "resnet18", "width": 0.25},
    "rpg": {"ring_size": 1000},
    "data": {"dataset": "digits"},
    "train": {"epochs": 2, "batch_size": 64},
}


def _row(i: int, rng: random.Random) -> dict[str, Any]:
    arch = ("resnet18", "resnet34")[i % 2]
    scope = ("global", "stage")[(i // 2) % 2]
    ring = int(1000 * 2 ** (i % 12))
    done = i < N_RESULTS
    spec = {
        **SPEC,
        "name": f"bench-{i}",
        "model": {"arch": arch, "width": 0.25},
        "rpg": {"ring_size": ring, "scope": scope},
    }
    acc = 1 - 0.5 * (ring / 1000) ** -0.3 * rng.uniform(0.95, 1.05) if done else None
    now = utcnow()
    return {
        "name": spec["name"],
        "spec": spec,
        "status": "succeeded" if done else "queued",
        "arch": arch,
        "dataset": "digits",
        "ring_size": float(ring),
        "scope": scope,
        "progress": 1.0 if done else 0.0,
        "attempts": int(done),
        "lease_token": int(done),
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
        "best_val_acc": acc,
        "val_acc": acc,
        "backbone_params": ring if done else None,
    }


def seed(url: str) -> str:
    """Migrate, insert the experiments, and return a fresh API token."""
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(0)
    try:
        with make_sessionmaker(engine)() as s:
            rows = [_row(i, rng) for i in range(N_EXPERIMENTS)]
            for k in range(0, len(rows), 2000):
                s.execute(insert(Experiment), rows[k : k + 2000])
            s.commit()
            return crud.create_token(s, "bench")
    finally:
        engine.dispose()


@contextmanager
def postgres_db() -> Iterator[str]:
    name = f"rpg_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_db() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield f"sqlite:///{d}/bench.db"


@contextmanager
def server(url: str, artifacts: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = f"rpg-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RPG_DATABASE_URL": url,
        "RPG_AUTO_MIGRATE": "false",
        "RPG_BROKER_URL": "redis://127.0.0.1:6379/15",
        "RPG_DISPATCH_QUEUE": queue,
        "RPG_ARTIFACT_DIR": artifacts,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--timeout-keep-alive",
            "60",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/15").delete(queue)


async def load(
    base: str,
    token: str,
    n: int,
    make: Callable[[int], tuple[str, str, Any]],
    expect: int,
    concurrency: int,
) -> list[float]:
    """``n`` requests from ``concurrency`` clients; returns each latency (s)."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(n))
    deadline = time.monotonic() + PHASE_TIME_LIMIT_S
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def worker() -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                method, path, body = make(i)
                t = time.perf_counter()
                try:
                    r = await client.request(method, path, json=body)
                except httpx.TransportError as err:  # counted, not timed
                    errors.append(f"{type(err).__name__}")
                    continue
                latencies.append(time.perf_counter() - t)
                if r.status_code != expect:
                    raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if errors:
        print(f"    {len(errors)} transport errors: {sorted(set(errors))}")
    return latencies


def _stats(lat: list[float], wall: float) -> dict[str, float]:
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"n": len(lat), "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "rps": len(lat) / wall}


def bench_backend(url: str, n: int) -> dict[str, dict[str, float]]:
    t = time.perf_counter()
    token = seed(url)
    print(f"  seeded {N_EXPERIMENTS} experiments in {time.perf_counter() - t:.1f} s")
    phases: dict[str, tuple[Callable[[int], tuple[str, str, Any]], int, int]] = {
        "POST /api/experiments": (
            lambda i: ("POST", "/api/experiments", {**SPEC, "name": f"load-{i}"}),
            201,
            n,
        ),
        "GET /api/experiments?limit=50": (
            lambda i: ("GET", "/api/experiments?limit=50", None),
            200,
            n,
        ),
        "GET list status+arch, sort best_val_acc": (
            lambda i: (
                "GET",
                "/api/experiments?status=succeeded&arch=resnet34&sort=-best_val_acc&limit=50",
                None,
            ),
            200,
            n,
        ),
        "GET /api/analysis/power-law (1,000 results)": (
            lambda i: ("GET", "/api/analysis/power-law", None),
            200,
            max(10, n // 10),
        ),
    }
    out = {}
    with tempfile.TemporaryDirectory() as artifacts, server(url, artifacts) as base:
        for name, (make, expect, count) in phases.items():
            for conc in (1, CONCURRENCY):
                n_req = count if conc > 1 else max(10, count // 8)
                t = time.perf_counter()
                lat = asyncio.run(load(base, token, n_req, make, expect, conc))
                key = f"{name} c={conc}"
                out[key] = s = _stats(lat, time.perf_counter() - t)
                print(
                    f"  {key:<50} n={s['n']:>4}  p50 {s['p50_ms']:7.1f} ms  "
                    f"p99 {s['p99_ms']:7.1f} ms  {s['rps']:6.1f} req/s"
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=300, help="requests per phase")
    ap.add_argument("--backends", default="postgresql,sqlite")
    args = ap.parse_args()
    print(
        f"RPG Studio API benchmark: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{CONCURRENCY} concurrent clients, uvicorn 1 process"
    )
    results = {}
    for backend in args.backends.split(","):
        print(f"{backend}:")
        with postgres_db() if backend == "postgresql" else sqlite_db() as url:
            results[backend] = bench_backend(url, args.requests)
    if {"postgresql", "sqlite"} <= set(results):
        print("p50 ratio sqlite / postgresql:")
        for name in results["postgresql"]:
            r = results["sqlite"][name]["p50_ms"] / results["postgresql"][name]["p50_ms"]
            print(f"  {name:<50} {r:5.2f}x")


if __name__ == "__main__":
    main()
