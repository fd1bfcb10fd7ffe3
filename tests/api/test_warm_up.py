"""An API process warms its submission path before it serves (issue 27): torch's import and the
memory estimate's first model cost seconds, which each process of ``uvicorn --workers 4`` paid
inside its first requests. Importing the app still loads no torch (test_torch_free)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from fastapi.testclient import TestClient
from api.settings import Settings
from studio.app import create_app
settings = Settings(database_url=sys.argv[1], broker_url="", warm_on_start=sys.argv[2] == "1")
app = create_app(settings)
before = "torch" in sys.modules
with TestClient(app):
    from rpg_core.training import memory
    print(json.dumps({"before": before, "after": "torch" in sys.modules,
                      "estimated": memory._model_shape_cached.cache_info().currsize}))
"""


def _probe(code: str, tmp_path: Path, warm: bool) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter on a new SQLite database; its last line's JSON."""
    db = f"sqlite:///{tmp_path / 'rpg.db'}"
    out = subprocess.run(
        [sys.executable, "-c", code, db, "1" if warm else "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    seen: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return seen


@pytest.mark.parametrize("warm", [True, False])
def test_the_app_imports_torch_and_estimates_a_model_before_serving(
    tmp_path: Path, warm: bool
) -> None:
    seen = _probe(PROBE, tmp_path, warm)
    assert seen["before"] is False  # building the app loads no torch
    assert seen["after"] is warm  # the start-up does, when asked to
    assert (seen["estimated"] >= 1) is warm


def test_a_failing_warm_up_never_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from api import validation
    from api.settings import Settings

    def broken(*_a: object, **_k: object) -> list[dict[str, str]]:
        raise RuntimeError("no model today")

    monkeypatch.setattr(validation, "limit_errors", broken)
    spent = validation.warm_submission_path(Settings(database_url="sqlite://"))
    assert spent >= 0
    assert "warming the submission path failed" in caplog.text


FREEZE_PROBE = """
import gc, json, sys
from fastapi.testclient import TestClient
from api.settings import Settings
from api.main import freeze_start_up_heap
from studio.app import create_app
settings = Settings(database_url=sys.argv[1], broker_url="", warm_on_start=sys.argv[2] == "1")
before = gc.get_freeze_count()
with TestClient(create_app(settings)) as client:
    frozen = gc.get_freeze_count()
    r = client.get("/api/analysis/power-law")
    print(json.dumps({"before": before, "frozen": frozen, "status": r.status_code,
                      "series": len(r.json()["series"]), "again": freeze_start_up_heap()}))
"""


@pytest.mark.parametrize("warm", [True, False])
def test_a_warmed_process_freezes_its_start_up_heap_once(tmp_path: Path, warm: bool) -> None:
    # the start-up's objects (torch's import) leave the collector's scans, once per process;
    # the power law's warm-up (a first fit, its SELECT at LIMIT 0) leaves the answers unchanged
    seen = _probe(FREEZE_PROBE, tmp_path, warm)
    assert seen["before"] == 0 and seen["status"] == 200 and seen["series"] == 0
    assert (seen["frozen"] > 10_000) is warm
    # called again: nothing more to do after a warm start-up, the first freeze without one
    assert (seen["again"] == 0) is warm
