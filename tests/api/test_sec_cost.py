"""Cost before work: a request that would make the server do unbounded work is refused first.

Before the fix, a 20 KB sweep of four grid keys with 1,000 values each (10^12 combinations) was
expanded in memory before the 1,000-run limit was checked: the API process grew to 20.9 GB and
the kernel's OOM killer ran. Now the grid's size is counted (a product of lengths) first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api import crud
from api.db import make_engine, make_sessionmaker
from api.settings import Settings
from studio.app import create_app

from ..pg import throwaway_database
from .test_overload import api_server

BOMB = {
    "name": "bomb",
    "base": {"data": {"dataset": "digits"}, "train": {"epochs": 1}},
    "grid": {
        "rpg.seed": list(range(1000)),
        "train.seed": list(range(1000)),
        "train.epochs": list(range(1, 1001)),
        "model.width": [0.25 + i / 1000 for i in range(1000)],
    },
}


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def cost_db() -> Iterator[tuple[str, str]]:
    with throwaway_database("rpg_cost") as url:
        engine = make_engine(url)
        with make_sessionmaker(engine)() as s:
            token = crud.create_token(s, "cost")
        engine.dispose()
        yield url, token


def test_sweep_bomb_is_refused_at_once_without_growing_the_server(
    cost_db: tuple[str, str], tmp_path: Path
) -> None:
    url, token = cost_db
    with (
        api_server(url, tmp_path) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c,
    ):
        pid = _server_pid()
        # warm up the code paths of a refused sweep (imports, validation) before measuring
        small = {**BOMB, "grid": {"rpg.seed": list(range(40)), "train.seed": list(range(40))}}
        assert c.post("/api/sweeps", json=small).status_code == 422
        before = _rss_bytes(pid)
        t = time.perf_counter()
        r = c.post("/api/sweeps", json=BOMB)
        elapsed = time.perf_counter() - t
        grown = _rss_bytes(pid) - before
        assert r.status_code == 422, r.text[:300]
        [err] = r.json()["detail"]
        assert err["field"] == "sweep"
        assert "1000000000000 experiments" in err["message"]
        assert "at most 1000" in err["message"]
        for key in BOMB["grid"]:
            assert key in err["message"]
        assert elapsed < 1.0, elapsed
        assert grown < 50 * 1024**2, grown
        assert c.get("/api/experiments").json()["items"] == []  # nothing was created


def _server_pid() -> int:
    """The uvicorn process api_server started (a child of this test process)."""
    me = str(os.getpid())
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"uvicorn" in cmd:
            return int(proc.name)
    raise AssertionError("no uvicorn child process")


# --- specs that cannot fit: refused with the estimate, the budget and the fields to change ---
CANNOT_FIT = {
    # before: accepted, then killed by memory on each of three attempts (2-6 minutes each)
    "resnet18 width 16": ({"model": {"arch": "resnet18", "width": 16.0}}, "model.width"),
    "hourglass 8 stacks width 16": (
        {"task": "pose", "model": {"arch": "hourglass", "stacks": 8, "width": 16.0}},
        "model.width",
    ),
    "synthetic-pose 1024 px": (
        {"task": "pose", "data": {"dataset": "synthetic-pose", "image_size": 1024,
                                  "num_train": 500, "num_val": 100}},
        "data.image_size",
    ),
}  # fmt: skip


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_specs_over_the_memory_budget_are_refused(settings: Settings) -> None:
    budget = settings.model_copy(update={"max_job_memory_bytes": 8 * 1024**3})
    app = create_app(budget)
    with TestClient(app) as c:
        with app.state.sessionmaker() as session:
            auth = {"Authorization": f"Bearer {crud.create_token(session, 'mem')}"}
        for label, (spec, field) in CANNOT_FIT.items():
            r = c.post("/api/experiments", json={"name": "big", **spec}, headers=auth)
            assert r.status_code == 422, (label, r.text[:300])
            [err] = r.json()["detail"]
            msg = err["message"]
            assert "this job needs about" in msg and "GiB" in msg, msg
            assert "this server allows 8.0 GiB per job" in msg, msg
            assert field in msg and err["field"] in msg, msg
        sweep = {"name": "s", "base": CANNOT_FIT["resnet18 width 16"][0],
                 "grid": {"train.seed": [0, 1]}}  # fmt: skip
        r = c.post("/api/sweeps", json=sweep, headers=auth)
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["detail"]] == [
            "experiments[0].model.width", "experiments[1].model.width"]  # fmt: skip
        small = {"name": "ok", "model": {"width": 0.25}, "train": {"epochs": 1}}
        assert c.post("/api/experiments", json=small, headers=auth).status_code == 201
        assert [e["name"] for e in c.get("/api/experiments").json()["items"]] == ["ok"]


def test_the_default_budget_is_what_one_worker_of_this_machine_holds() -> None:
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert Settings().max_job_memory_bytes == physical * 2 // 5
    assert Settings(max_job_memory_bytes=5).max_job_memory_bytes == 5
