"""The import graph keeps its layers (read from the source with ast, nothing imported):
rpg_core at the bottom, api above it, worker and frontend on top of api, studio (the composition)
above all. Lazy imports inside functions and ``importlib.import_module("...")`` count too."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from rpg_core.cli import _source_tree_entry_points, build_parser, command_entry_points

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rpg_core", "api", "worker", "frontend", "studio")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str | None = None) -> set[str]:
    """The absolute names of every module ``path`` (the module ``module``) imports."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return out


def _imported_packages(package: str) -> dict[str, set[str]]:
    """For each module of ``package``: the top-level project packages it imports."""
    graph = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tops = {name.split(".")[0] for name in _imports(path)}
        graph[_module_name(path)] = tops & set(PACKAGES)
    return graph


ALLOWED = {
    "rpg_core": {"rpg_core"},
    "api": {"rpg_core", "api"},
    "worker": {"rpg_core", "api", "worker"},
    "frontend": {"rpg_core", "api", "frontend"},
    "studio": set(PACKAGES),
}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_runs_up_a_layer(package: str) -> None:
    wrong = {
        module: sorted(tops - ALLOWED[package])
        for module, tops in _imported_packages(package).items()
        if tops - ALLOWED[package]
    }
    assert wrong == {}, f"{package} imports above its layer: {wrong}"


def test_the_import_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The check itself: a function-level import, a relative one and import_module count."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib\nfrom .settings import Settings\n\ndef f():\n"
        "    from worker import app\n    return importlib.import_module('frontend.routes')\n",
        encoding="utf-8",
    )
    assert {"api.settings", "worker", "frontend.routes"} <= _imports(probe, "api.probe")


def test_worker_changes_job_state_only_through_the_lifecycle() -> None:
    """No worker module imports the ORM tables or builds SQL (only a Session is passed on)."""
    offenders = {}
    for path in sorted((ROOT / "worker").rglob("*.py")):
        names = {
            n for n in _imports(path)
            if n.startswith("api.models") or (n.startswith("sqlalchemy") and n != "sqlalchemy.orm"
                                              and not n.startswith("sqlalchemy.orm."))
        }  # fmt: skip
        if names:
            offenders[_module_name(path)] = sorted(names)
    assert offenders == {}


def test_the_rpg_commands_are_the_entry_points_of_pyproject(tmp_path: Path) -> None:
    """pyproject.toml registers the service's commands; rpg_core reads the group (from the
    installed metadata, else from the checkout's pyproject) and names no service module."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    group = table["rpg.commands"]
    assert group == {
        "api": "api.cli:register",
        "studio": "studio.cli:register",
        "worker": "worker.cli:register",
    }
    for value in group.values():
        assert callable(EntryPoint("x", value, "rpg.commands").load())
    assert {ep.name: ep.value for ep in command_entry_points()} == group
    stale = tmp_path / "pyproject.toml"  # an editable install whose metadata predates the group
    stale.write_text('[project.entry-points."rpg.commands"]\nx = "studio.cli:register"\n')
    assert [(ep.name, ep.value) for ep in _source_tree_entry_points(stale)] == [
        ("x", "studio.cli:register")
    ]
    assert _source_tree_entry_points(tmp_path / "missing.toml") == []
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"submit", "status", "token", "api", "serve", "worker", "reconcile", "train"} <= set(
        commands
    )
    cli_source = (ROOT / "rpg_core" / "cli" / "__init__.py").read_text()
    assert "api.cli" not in cli_source and "worker.cli" not in cli_source


def test_importing_the_api_loads_no_worker_dashboard_or_celery() -> None:
    """At run time too: ``import api.main`` (what an API process loads) pulls in none of the
    layers above it, and Celery only on the first dispatch."""
    code = (
        "import sys, api.main\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'worker', 'frontend', 'studio', 'celery', 'kombu'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
