"""The maintained project's habits: pinned installs (constraints.txt, used by the Makefile), a
pre-commit configuration running what `make lint` and `make typecheck` run, and the fast lane's
markers (make test-fast)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from . import conftest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt: {line!r} is not name==version"
        pins[_norm(m[1])] = m[2]
    return pins


def test_constraints_pin_every_dependency_and_not_the_project() -> None:
    pins = _pins()
    assert "rpg-studio" not in pins
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("service", "dev"):
        wanted += project["optional-dependencies"][extra]
    names = {_norm(re.split(r"[\[<>=!~ ;]", w, maxsplit=1)[0]) for w in wanted}
    assert names - set(pins) == set(), "pyproject dependencies missing from constraints.txt"


def _make_n(target: str) -> str:
    out = subprocess.run(["make", "-n", target, "VENV=/nonexistent-venv"], cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout


def test_make_setup_installs_with_the_constraints() -> None:
    pins = _pins()
    installs = [line for line in _make_n("setup").splitlines() if "pip install" in line]
    project = [line for line in installs if "-e " in line]
    assert project and all("-c constraints.txt" in line for line in project)
    torch = [line for line in installs if "torch==" in line]
    assert torch and "-c constraints.txt" in torch[0]
    assert f"torch=={pins['torch']} torchvision=={pins['torchvision']}" in torch[0]


def test_pre_commit_runs_what_make_lint_and_typecheck_run() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [r["repo"] for r in config["repos"]] == ["local"]  # nothing fetched
    entries = [h["entry"] for r in config["repos"] for h in r["hooks"]]
    assert entries == ["make lint", "make typecheck"]
    lint = _make_n("lint")
    assert "ruff check" in lint and "ruff format --check" in lint


def test_make_test_fast_leaves_out_slow_browser_and_e2e() -> None:
    fast = _make_n("test-fast")
    assert '-m "not slow and not browser and not e2e"' in fast
    assert "ruff check" in fast and "mypy" in fast
    (run,) = [line for line in _make_n("test").splitlines() if "-m pytest" in line]
    # make test: the whole suite, no selection (-m, -k, paths): only xdist's two processes
    assert run.split("-m pytest")[1].split() == ["-n", "2", "--dist", "loadgroup"]
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"][
        "markers"
    ]
    assert {m.split(":")[0] for m in markers} >= {"slow", "browser", "e2e"}


@pytest.mark.parametrize(
    ("fixtures", "marks"),
    [(["browser", "page"], {"browser"}), (["stack"], {"e2e"}), (["tmp_path"], set())],
)
def test_browser_and_process_tests_are_marked_by_their_fixtures(
    fixtures: list[str], marks: set[str]
) -> None:
    added: list[str] = []
    item = SimpleNamespace(
        nodeid="tests/rpg_core/test_x.py::t",
        fixturenames=fixtures,
        add_marker=lambda m: added.append(m.name),
    )
    conftest.pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type, list-item]
    assert set(added) == marks


@pytest.mark.parametrize(
    ("nodeid", "marks", "serial"),
    [
        ("tests/api/test_x.py::t", (), True),
        ("tests/worker/test_x.py::t", (), True),
        ("tests/frontend/test_x.py::t", (), True),
        ("tests/benchmarks/test_x.py::t", (), True),
        ("tests/benchmarks/test_x.py::t", ("slow",), True),
        ("tests/benchmarks/test_x.py::t", ("isolated",), False),
        ("tests/test_setup.py::t", (), True),
        ("tests/rpg_core/training/test_x.py::t", (), False),
    ],
)
def test_only_the_librarys_tests_run_beside_the_service_tests(
    nodeid: str, marks: tuple[str, ...], serial: bool
) -> None:
    """Under xdist the tests that share Redis, PostgreSQL, ports and chromium stay in one group
    (one process, one at a time); the library's run beside them, and the tests marked
    ``isolated``."""
    groups: list[tuple[str, ...]] = []
    item = SimpleNamespace(
        nodeid=nodeid,
        fixturenames=[],
        add_marker=lambda m: groups.append(m.args) if m.name == "xdist_group" else None,
        get_closest_marker=lambda name: SimpleNamespace(name=name) if name in marks else None,
    )
    conftest.pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type, list-item]
    assert groups == ([(conftest.SERIAL_GROUP,)] if serial else [])
