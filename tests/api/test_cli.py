"""The service commands against a real uvicorn server: token create, submit, status, download."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from sqlalchemy.orm import Session

from api import crud
from api.client import APIError, Client
from api.main import create_app
from api.settings import Settings, get_settings
from rpg_core.cli import build_parser
from rpg_core.cli import main as rpg_main

from .conftest import SPEC, run_to_end


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)  # the real `rpg` parser, library commands included


def _run(argv: list[str]) -> int:
    args = _parse(argv)
    return int(args.func(args))


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)
    sock.close()


def test_token_create_prints_a_working_token(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    session: Session,
) -> None:
    monkeypatch.setenv("RPG_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert _run(["token", "create", "alice"]) == 0
    finally:
        get_settings.cache_clear()
    token = capsys.readouterr().out.strip()
    assert token.startswith("rpg_")
    row = crud.check_token(session, token)
    assert row is not None and row.name == "alice"


def test_submit_status_download(
    server: str,
    token: str,
    tmp_path: Path,
    session: Session,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    remote = ["--url", server, "--token", token]
    assert _run(["submit", str(spec_file), *remote]) == 0
    out = capsys.readouterr().out
    exp_id = int(out.split()[1])
    assert out.strip().endswith("queued")

    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(
        json.dumps({"name": "cli", "base": SPEC, "grid": {"rpg.ring_size": [10, 20]}})
    )
    assert _run(["submit-sweep", str(sweep_file), *remote]) == 0
    assert "2 experiments queued" in capsys.readouterr().out
    assert _run(["sweep", str(sweep_file), "--remote", *remote]) == 0  # the same, by its flag
    assert "2 experiments queued" in capsys.readouterr().out
    search = {"sampler": "random", "n_trials": 3, "parallel": 2}
    search["space"] = {"train.lr": {"log": [0.01, 0.1]}}
    sweep_file.write_text(json.dumps({"name": "cli-search", "base": SPEC, "search": search}))
    assert _run(["submit-sweep", str(sweep_file), *remote]) == 0  # a search: its first trials
    assert "2 experiments queued, 1 study (search" in capsys.readouterr().out

    rel = crud.artifact_relpath(exp_id)
    (settings.artifact_dir / rel).parent.mkdir(parents=True)
    (settings.artifact_dir / rel).write_bytes(b"RPG" * 1000)
    run_to_end(
        session, exp_id, {"best_val_acc": 0.75}, [crud.file_record(settings.artifact_dir, rel)]
    )
    assert _run(["status", str(exp_id), "--url", server]) == 0
    line = capsys.readouterr().out
    assert "succeeded" in line and "0.7500" in line
    assert _run(["status", "--url", server, "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2

    dest = tmp_path / "m.rpg"
    assert _run(["download", str(exp_id), "-o", str(dest), "--url", server]) == 0
    assert dest.read_bytes() == b"RPG" * 1000


def test_client_errors_name_the_problem(server: str, token: str) -> None:
    with Client(server, "rpg_wrong") as c, pytest.raises(APIError) as err:
        c.submit(SPEC)
    assert err.value.status_code == 401
    bad: dict[str, Any] = {**SPEC, "rpg": {"ring_size": -1}}
    with Client(server, token) as c, pytest.raises(APIError, match="rpg.ring_size"):
        c.submit(bad)
    with Client("http://127.0.0.1:1", token) as c, pytest.raises(APIError, match="not running"):
        c.experiment(1)


def test_status_with_the_server_down_says_it_is_not_running_and_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("RPG_API_URL", url)
    assert rpg_main(["status"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"rpg status: error: the RPG Studio server is not running at {url} ")
    assert "(RPG_API_URL)" in err and "start it with `rpg serve`" in err and "make demo" in err
    assert "HTTP 0" not in err and "cannot reach" not in err
    # the same for a download, which leaves no partial file behind
    monkeypatch.chdir(tmp_path)
    assert rpg_main(["download", "1"]) == 2
    assert "is not running at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_401_says_how_to_get_and_pass_a_token(server: str) -> None:
    for token in (None, "rpg_wrong"):
        with Client(server, token) as c, pytest.raises(APIError) as err:
            c.submit(SPEC)
        assert err.value.status_code == 401
        text = str(err.value)
        assert "rpg token create NAME" in text and "RPG_API_TOKEN" in text
        assert "Authorization: Bearer <token>" in text


def test_download_of_a_missing_experiment_says_it_does_not_exist(
    server: str, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rpg_main(["download", "99999", "-o", str(tmp_path / "x.rpg"), "--url", server]) == 2
    err = capsys.readouterr().err
    assert "experiment 99999 not found" in err and "no stored model" not in err
    assert not (tmp_path / "x.rpg").exists() and not (tmp_path / "x.rpg.part").exists()
    with Client(server, token) as c:
        exp_id = c.submit(SPEC)["id"]
    assert rpg_main(["download", str(exp_id), "-o", str(tmp_path / "x.rpg"), "--url", server]) == 2
    assert "has no model yet: it is queued" in capsys.readouterr().err
