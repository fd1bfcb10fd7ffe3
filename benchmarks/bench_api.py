"""REST API latency and overload: POST /api/experiments, the list and the power-law endpoints.

Seeds a fresh database with 10,000 experiments (1,000 of them succeeded with results), starts
uvicorn in a subprocess on 127.0.0.1 and drives it with httpx async clients: each phase at 1
and at 50 concurrent clients (``--repeats`` times; the median and the spread are printed), then
the overload phase: 100 concurrent clients submitting, counting every status (a 5xx other than
503 + Retry-After is a failure) and checking that every 201 is listed afterwards. The machine's
load average is printed before and after. Runs on PostgreSQL and on SQLite, bounded in time.

    python benchmarks/bench_api.py [--requests 300] [--repeats 3] [--backends postgresql,sqlite]
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
OVERLOAD_CLIENTS = 100
PHASE_FILTER = ""
PHASE_TIME_LIMIT_S = 25.0
PAIR_CONCURRENCY = (1, 10, 50, 100)
PAIR_APPS = ("product", "bare")
PRODUCTION_WORKERS = 4  # docs/DEPLOY.md: uvicorn studio.app:app ... --workers 4
BARE_POOL_SIZE = 16  # the product admits RPG_MAX_CONCURRENT_REQUESTS (16) per process at once
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    url: str, artifacts: str, app: str = "product", workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real uvicorn process on 127.0.0.1 serving ``app``: ``product`` (studio.app:app, the
    served API and dashboard, dispatching to Redis) or ``bare`` (benchmarks/bare_app.py), with
    ``workers`` processes. Yields its base URL and the process."""
    port = _free_port()
    queue = f"rpg-bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RPG_DATABASE_URL": url,
        "RPG_BARE_DATABASE_URL": url,
        "RPG_BARE_POOL_SIZE": str(BARE_POOL_SIZE),
        "RPG_AUTO_MIGRATE": "false",
        "RPG_BROKER_URL": "redis://127.0.0.1:6379/15",
        "RPG_DISPATCH_QUEUE": queue,
        "RPG_ARTIFACT_DIR": artifacts,
        "PYTHONPATH": str(ROOT),
    }
    target = (
        ["studio.app:app"]
        if app == "product"
        else ["--app-dir", str(ROOT / "benchmarks"), "bare_app:app"]
    )
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        "60",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{app} server did not start: {' '.join(cmd)}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(20)
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/15").delete(queue)


async def load(
    base: str,
    token: str,
    n: int,
    make: Callable[[int], tuple[str, str, Any]],
    expect: int,
    concurrency: int,
    statuses: dict[int, int] | None = None,
    created: list[int] | None = None,
) -> list[float]:
    """``n`` requests from ``concurrency`` clients; returns each latency (s). With ``statuses``
    every status is counted instead of an unexpected one raising; ``created`` gets the 201s' ids.
    """
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
                if statuses is not None:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 503 and "retry-after" not in r.headers:
                        statuses[-503] = statuses.get(-503, 0) + 1  # a 503 without Retry-After
                elif r.status_code != expect:
                    raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:200]}")
                if created is not None and r.status_code == 201:
                    created.append(int(r.json()["id"]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if errors:
        print(f"    {len(errors)} transport errors: {sorted(set(errors))}")
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its live descendants (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _stats(lat: list[float], wall: float) -> dict[str, float]:
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"n": len(lat), "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "rps": len(lat) / wall}


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of each figure over the repeats, and the p50/p99 spread (min-max)."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["p50_min"] = min(r["p50_ms"] for r in runs)
    out["p50_max"] = max(r["p50_ms"] for r in runs)
    out["p99_min"] = min(r["p99_ms"] for r in runs)
    out["p99_max"] = max(r["p99_ms"] for r in runs)
    return out


def listed_ids(base: str, token: str) -> set[int]:
    seen: set[int] = set()
    cursor: str | None = None
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/api/experiments", params=params, timeout=60).json()
            seen |= {item["id"] for item in page["items"]}
            cursor = page["next_cursor"]
            if not cursor:
                return seen


def overload(base: str, token: str, n: int) -> dict[str, float]:
    """``n`` submissions from OVERLOAD_CLIENTS clients: statuses, latency, all 201s listed."""
    statuses: dict[int, int] = {}
    created: list[int] = []
    t = time.perf_counter()
    make = lambda i: ("POST", "/api/experiments", {**SPEC, "name": f"over-{i}"})  # noqa: E731
    lat = asyncio.run(load(base, token, n, make, 201, OVERLOAD_CLIENTS, statuses, created))
    s = _stats(lat, time.perf_counter() - t)
    missing = set(created) - listed_ids(base, token)
    bad = sum(v for k, v in statuses.items() if k >= 500 and k != 503) + statuses.get(-503, 0)
    print(
        f"  POST /api/experiments c={OVERLOAD_CLIENTS:<3} (overload)"
        f"{'':>17} n={s['n']:>4}  p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  "
        f"{s['rps']:6.1f} req/s  statuses {dict(sorted(statuses.items()))}  "
        f"5xx (not 503+Retry-After): {bad}  201s not listed: {len(missing)}"
    )
    return {**s, "bad_5xx": bad, "n_503": statuses.get(503, 0), "unlisted": len(missing)}


def bench_backend(url: str, n: int, repeats: int) -> dict[str, dict[str, float]]:
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
    phases = {k: v for k, v in phases.items() if PHASE_FILTER in k}
    out = {}
    with tempfile.TemporaryDirectory() as artifacts, server(url, artifacts) as (base, _):
        for name, (make, expect, count) in phases.items():
            asyncio.run(load(base, token, 10, make, expect, 1))  # warm-up (imports, pools)
            for conc in (1, CONCURRENCY):
                n_req = count if conc > 1 else max(100, count // 3)  # p99 needs 100 samples
                runs = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    lat = asyncio.run(load(base, token, n_req, make, expect, conc))
                    runs.append(_stats(lat, time.perf_counter() - t))
                key = f"{name} c={conc}"
                out[key] = s = _summary(runs)
                print(
                    f"  {key:<50} n={int(s['n']):>4}  p50 {s['p50_ms']:7.1f} ms "
                    f"({s['p50_min']:.1f}-{s['p50_max']:.1f})  p99 {s['p99_ms']:7.1f} ms "
                    f"({s['p99_min']:.1f}-{s['p99_max']:.1f})  {s['rps']:6.1f} req/s"
                )
        out["overload"] = overload(base, token, max(3 * OVERLOAD_CLIENTS, n))
    return out


# ----------------------------------------------------------------------------- product vs bare


def _pair_phases(cursor: dict[str, str]) -> dict[str, Callable[[str, int], tuple[str, str, Any]]]:
    """Each phase's request for app ``a`` (its own page-2 cursor: the product's is signed)."""
    return {
        "POST /api/experiments": lambda a, i: (
            "POST",
            "/api/experiments",
            {**SPEC, "name": f"load-{i}"},
        ),
        "GET /api/experiments?limit=50": lambda a, i: ("GET", "/api/experiments?limit=50", None),
        "GET ...?limit=50&cursor=(page 2)": lambda a, i: (
            "GET",
            f"/api/experiments?limit=50&cursor={cursor[a]}",
            None,
        ),
    }


EXPECT = {"POST": 201, "GET": 200}


def _requests_at(conc: int, n: int) -> int:
    return max(n, 3 * conc)  # every client sends a few (p99 needs n >= 100)


def pair(
    n: int,
    repeats: int,
    workers_list: list[int],
    phase_filter: str = "",
    concurrencies: tuple[int, ...] = PAIR_CONCURRENCY,
) -> dict[str, Any]:
    """The product and the bare app, each a uvicorn with the same number of processes on its
    own database seeded alike, interleaved: in each repeat one server runs every phase at every
    concurrency, then the other (the order alternates between repeats). Returns, per
    (workers, phase, concurrency, app), the median figures with the spread, the 5xx count and
    the per-repeat ratios product / bare of the requests per second."""
    out: dict[str, Any] = {}
    with postgres_db() as url_p, postgres_db() as url_b, tempfile.TemporaryDirectory() as art:
        t = time.perf_counter()
        tokens = {"product": seed(url_p), "bare": seed(url_b)}
        urls = {"product": url_p, "bare": url_b}
        print(f"  seeded 2 x {N_EXPERIMENTS} experiments in {time.perf_counter() - t:.1f} s")
        for workers in workers_list:
            runs: dict[tuple[str, int, str], list[dict[str, float]]] = {}
            fives: dict[tuple[str, int, str], int] = {}
            others: dict[tuple[str, int, str], dict[int, int]] = {}
            for rep in range(repeats):
                order = PAIR_APPS if rep % 2 == 0 else PAIR_APPS[::-1]
                for app in order:
                    with server(urls[app], art, app, workers) as (base, proc):
                        headers = {"Authorization": f"Bearer {tokens[app]}"}
                        first = httpx.get(
                            f"{base}/api/experiments?limit=50", headers=headers, timeout=60
                        ).json()
                        cursor = {app: str(first["next_cursor"])}
                        phases = _pair_phases(cursor)
                        for name, make_for in phases.items():
                            if phase_filter not in name:
                                continue

                            def make(i: int, make_for=make_for, app=app) -> tuple[str, str, Any]:
                                return make_for(app, i)

                            expect = EXPECT[make(0)[0]]
                            warm = asyncio.run(
                                load(base, tokens[app], 4 * workers * 5, make, expect, 10, {})
                            )
                            del warm
                            for conc in concurrencies:
                                statuses: dict[int, int] = {}
                                cpu = cpu_seconds(proc.pid)
                                t = time.perf_counter()
                                lat = asyncio.run(
                                    load(
                                        base,
                                        tokens[app],
                                        _requests_at(conc, n),
                                        make,
                                        expect,
                                        conc,
                                        statuses,
                                    )
                                )
                                key = (name, conc, app)
                                st = _stats(lat, time.perf_counter() - t)
                                st["cpu_ms"] = 1000 * (cpu_seconds(proc.pid) - cpu) / len(lat)
                                runs.setdefault(key, []).append(st)
                                fives[key] = fives.get(key, 0) + sum(
                                    v for k, v in statuses.items() if k >= 500
                                )
                                bad = {k: v for k, v in statuses.items() if k != expect}
                                if bad:
                                    o = others.setdefault(key, {})
                                    for k, v in bad.items():
                                        o[k] = o.get(k, 0) + v
            print(f"workers={workers} (uvicorn --workers {workers}, each app):")
            print(
                f"  {'phase':<34} {'c':>3}  {'app':<7} {'req/s':>7} {'(min-max)':>13}  "
                f"{'p50 ms':>7} {'p99 ms':>7} {'(p99 min-max)':>15}  5xx  {'cpu ms/req':>10}  "
                "product/bare: req/s, cpu/req"
            )
            for (name, conc, app), rs in runs.items():
                s = _summary(rs)
                rps = [r["rps"] for r in rs]
                line = (
                    f"  {name:<34} {conc:>3}  {app:<7} {s['rps']:7.1f} "
                    f"({min(rps):5.1f}-{max(rps):5.1f})  {s['p50_ms']:7.1f} {s['p99_ms']:7.1f} "
                    f"({s['p99_min']:6.1f}-{s['p99_max']:6.1f})  {fives[(name, conc, app)]:>3}  "
                    f"{s['cpu_ms']:10.2f}"
                )
                entry = {**s, "rps_min": min(rps), "rps_max": max(rps)}
                entry["n_5xx"] = fives[(name, conc, app)]
                entry["other_statuses"] = others.get((name, conc, app), {})
                if app == "bare" and (name, conc, "product") in runs:
                    ratios = [
                        p["rps"] / b["rps"]
                        for p, b in zip(runs[(name, conc, "product")], rs, strict=True)
                    ]
                    cpu_ratios = [
                        p["cpu_ms"] / b["cpu_ms"]
                        for p, b in zip(runs[(name, conc, "product")], rs, strict=True)
                    ]
                    entry["ratio"] = statistics.median(ratios)
                    entry["cpu_ratio"] = statistics.median(cpu_ratios)
                    line += (
                        f"  {statistics.median(ratios):5.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                        f", {statistics.median(cpu_ratios):.2f}x"
                    )
                if entry["other_statuses"]:
                    line += f"  other statuses {entry['other_statuses']}"
                out[f"w{workers} {name} c={conc} {app}"] = entry
                print(line)
    return out


def check_targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets: product >= 50% of the bare app's req/s (POST and listing, median
    ratio at every concurrency), p99 at c=1 under 50 ms, no 5xx at 100 clients."""
    misses = []
    for key, r in results.items():
        if key.endswith(" bare") and "ratio" in r and r["ratio"] < 0.5:
            misses.append(f"{key[:-5]}: product/bare {r['ratio']:.2f} < 0.5")
        if key.endswith(" c=1 product") and r["p99_ms"] >= 50:
            misses.append(f"{key}: p99 {r['p99_ms']:.1f} ms >= 50")
        if " c=100 " in key and r["n_5xx"]:
            misses.append(f"{key}: {r['n_5xx']} 5xx")
    return misses


# ----------------------------------------------------------------------------- where the time goes

# (category, substring of a frame "function (file:line)"); a sample counts for the innermost
# frame that matches (pool pre-ping inside the token check is the pre-ping). The middleware
# counts only its own frames (a sample whose deeper frames are all asyncio or prometheus_client).
IDLE_LEAVES = ("Queue.get (queue.py", "Condition.wait (threading.py", "select (selectors.py")
PROFILE_RULES: tuple[tuple[str, str], ...] = (
    ("waiting for PostgreSQL (psycopg wait)", "Connection.wait (psycopg"),
    ("waiting for Redis (socket read)", "_read_from_socket (redis"),
    ("pool pre-ping (SELECT 1 per checkout)", "_do_ping_w_event"),
    ("pool pre-ping (SELECT 1 per checkout)", "do_ping (sqlalchemy"),
    ("auth: token lookup", "check_token (api/crud/tokens.py"),
    ("validation: submission limits (api.validation)", "check_limits (api/validation.py"),
    ("validation: conditions of the spec", "conditions_of ("),
    ("validation: body as ExperimentSpec (pydantic)", "request_body_to_args"),
    ("validation: body as ExperimentSpec (pydantic)", "_validate_value"),
    ("dispatch: Celery send_task to Redis", "dispatch ("),
    ("dispatch: mark dispatched (UPDATE + COMMIT)", "mark_dispatched"),
    ("insert + commit (ORM)", "create_experiment ("),
    ("insert + commit (ORM)", "commit (sqlalchemy/orm/session.py"),
    ("listing query + ORM rows", "list_experiments (api/crud/listing.py"),
    ("serialisation: response model + JSON", "serialize_response"),
    ("serialisation: response model + JSON", "model_validate"),
    ("serialisation: response model + JSON", "render (starlette/responses.py"),
    ("serialisation: response model + JSON", "jsonable_encoder"),
    ("session open/close (get_session)", "get_session (api/deps.py"),
    ("request body read / JSON parse", "json_body"),
    ("request body read / JSON parse", "body (starlette/requests.py"),
)
MIDDLEWARE_RULE = ("middleware: admission, body limit, prometheus (own time)", "api/middleware.py")


def _category(frames: list[str]) -> str:
    for depth in range(len(frames) - 1, -1, -1):  # leaf first
        frame = frames[depth]
        for cat, needle in PROFILE_RULES:
            if needle in frame:
                return cat
        if MIDDLEWARE_RULE[1] in frame and all(
            "asyncio/" in f or "prometheus_client/" in f or "threading" in f
            for f in frames[depth + 1 :]
        ):
            return MIDDLEWARE_RULE[0]
    return "server and framework (uvicorn, h11, asyncio, starlette, fastapi routing)"


def profile_summary(raw: Path) -> list[tuple[str, float]]:
    """(category, share of the busy samples) from py-spy's raw (collapsed) output."""
    counts: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        if any(leaf in frames[-1] for leaf in IDLE_LEAVES):
            continue  # an idle thread (py-spy --nonblocking may count them)
        cat = _category(frames)
        counts[cat] = counts.get(cat, 0) + int(n)
    total = sum(counts.values()) or 1
    return sorted(((c, n / total) for c, n in counts.items()), key=lambda x: -x[1])


def profile(n: int) -> None:
    """The product (1 process) under py-spy while it serves ``n`` POSTs, then ``n`` listings,
    at 10 clients; prints where its busy samples went, by category."""
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with postgres_db() as url, tempfile.TemporaryDirectory() as art:
        token = seed(url)
        phases = {
            "POST /api/experiments": lambda i: (
                "POST",
                "/api/experiments",
                {**SPEC, "name": f"prof-{i}"},
            ),
            "GET /api/experiments?limit=50": lambda i: ("GET", "/api/experiments?limit=50", None),
        }
        with server(url, art, "product", 1) as (base, proc):
            for name, make in phases.items():
                expect = 201 if name.startswith("POST") else 200
                asyncio.run(load(base, token, 30, make, expect, 10))
                out = Path(art) / "profile.txt"
                spy_proc = subprocess.Popen(
                    [spy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "200"]
                    + ["--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)  # attached
                cpu = cpu_seconds(proc.pid)
                lat = asyncio.run(load(base, token, n, make, expect, 10))
                cpu_ms = 1000 * (cpu_seconds(proc.pid) - cpu) / len(lat)
                spy_proc.send_signal(2)
                spy_proc.wait(60)
                print(f"  {name} (c=10, {len(lat)} requests, {cpu_ms:.2f} server cpu ms/req):")
                for cat, share in profile_summary(out):
                    print(f"    {100 * share:5.1f}%  {cat}")


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--mode",
        choices=("pair", "product", "profile"),
        default="pair",
        help="pair: the product against the bare app (PostgreSQL); product: the product's own "
        "phases and overload on each backend; profile: the product under py-spy, by category",
    )
    ap.add_argument(
        "--requests", type=int, default=300, help="requests per phase (at least 3 per client)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs of each phase (median, spread)")
    ap.add_argument("--backends", default="postgresql,sqlite", help="--mode product")
    ap.add_argument(
        "--workers",
        default=f"1,{PRODUCTION_WORKERS}",
        help="--mode pair: uvicorn process counts (1 and docs/DEPLOY.md's production setting)",
    )
    ap.add_argument("--phases", default="", help="only phases whose name contains this")
    ap.add_argument(
        "--concurrency",
        default=",".join(map(str, PAIR_CONCURRENCY)),
        help="--mode pair: client counts",
    )
    ap.add_argument("--seed-rows", type=int, default=10_000, help="experiments seeded")
    args = ap.parse_args()
    global PHASE_FILTER, N_EXPERIMENTS, N_RESULTS
    PHASE_FILTER = args.phases
    N_EXPERIMENTS = args.seed_rows
    N_RESULTS = min(N_RESULTS, N_EXPERIMENTS // 10)
    print(
        f"RPG Studio API benchmark ({args.mode}), {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{platform.platform()}, {os.cpu_count()} CPUs; load average (1/5/15 min) {_load()}\n"
        f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}"
    )
    if args.mode == "profile":
        print("postgresql, the product (studio.app:app, 1 process) under py-spy:")
        profile(args.requests)
        return
    if args.mode == "pair":
        workers = [int(w) for w in args.workers.split(",")]
        print("postgresql, the product (studio.app:app) against the bare app (bare_app.py):")
        conc = tuple(int(c) for c in args.concurrency.split(","))
        res = pair(args.requests, args.repeats, workers, args.phases, conc)
        print(f"load average at the end: {_load()}")
        misses = check_targets(res)
        print("targets: " + ("all met" if not misses else "; ".join(misses)))
        return
    results = {}
    for backend in args.backends.split(","):
        print(f"{backend}: uvicorn 1 process")
        with postgres_db() if backend == "postgresql" else sqlite_db() as url:
            results[backend] = bench_backend(url, args.requests, args.repeats)
    print(f"load average at the end: {_load()}")
    if {"postgresql", "sqlite"} <= set(results):
        print("p50 ratio sqlite / postgresql:")
        for name in results["postgresql"]:
            r = results["sqlite"][name]["p50_ms"] / results["postgresql"][name]["p50_ms"]
            print(f"  {name:<50} {r:5.2f}x")
    failed = [
        b for b, r in results.items() if r["overload"]["bad_5xx"] or r["overload"]["unlisted"]
    ]
    if failed:
        sys.exit(f"overload: 5xx or unlisted 201s on {', '.join(failed)}")


if __name__ == "__main__":
    main()
