"""A bounded schemathesis run against a real uvicorn process: every check (the stateful phase
included, through the document's links) except ``positive_data_acceptance``: the schema cannot
say what only the server knows (an opaque cursor it issued, a dataset under its data root, the
classes of a dataset), so schema-valid requests may rightly get a 422.

Bounded: a few examples per operation and a time budget (``--max-time``), so it runs in the
suite; ``RPG_SCHEMATHESIS_EXAMPLES`` raises the examples for a longer run by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api import crud
from api.db import make_engine, make_sessionmaker
from api.migrate import upgrade

from .test_overload import api_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a real server, fuzzed

ST = Path(sys.executable).with_name("st")
EXAMPLES = os.environ.get("RPG_SCHEMATHESIS_EXAMPLES", "5")
MAX_TIME_S = int(os.environ.get("RPG_SCHEMATHESIS_MAX_TIME", "60"))


@pytest.mark.skipif(not ST.exists() and not shutil.which("st"), reason="schemathesis missing")
def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'st.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as s:
        token = crud.create_token(s, "schemathesis")
    engine.dispose()
    env = {"RPG_PARSE_SPEC_RATE": "1000", "RPG_SSE_MAX_S": "2"}
    with api_server(url, tmp_path, **env) as base:
        cmd = [str(ST) if ST.exists() else "st", "run", f"{base}/openapi.json",
               "-H", f"Authorization: Bearer {token}", "--checks", "all",
               "--exclude-checks", "positive_data_acceptance",
               "-n", EXAMPLES, "--generation-deterministic", "--max-time", str(MAX_TIME_S),
               "--request-timeout", "30", "--no-color"]  # fmt: skip
        run = subprocess.run(  # cwd: schemathesis writes its cache there, not in the clone
            cmd, capture_output=True, text=True, timeout=MAX_TIME_S + 120, cwd=tmp_path
        )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "Stateful" in out
