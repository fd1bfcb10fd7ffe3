"""The import structure of rpg_core: what the API needs loads no torch, and no import circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rpg_core"

# What the API process imports from rpg_core (and the torch-free layers under the file format).
TORCH_FREE = [
    "rpg_core",
    "rpg_core.spec",
    "rpg_core.spec.sweep",
    "rpg_core.spec.safe_yaml",
    "rpg_core.exceptions",
    "rpg_core.training.health",
    "rpg_core.training.result",
    "rpg_core.models",
    "rpg_core.format.inference",
    "rpg_core.analysis",
    "rpg_core.analysis.power_law",
    "rpg_core.analysis.adaptive",
    "rpg_core.format.container",
    "rpg_core.format.header",
]


def _loads_torch(statement: str) -> bool:
    code = f"import sys\n{statement}\nprint('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module: str) -> None:
    assert not _loads_torch(f"import {module}")


def test_the_spec_checks_model_names_without_torch() -> None:
    statement = (
        "from rpg_core.spec import parse_spec\n"
        "from rpg_core.models import list_models\n"
        "assert {'resnet18', 'resnet34'} <= set(list_models())\n"
        "parse_spec({'model': {'arch': 'resnet34'}, 'prune': None})"
    )
    assert not _loads_torch(statement)


@pytest.mark.slow
def test_the_engine_does_load_torch() -> None:
    # the check above can fail: importing what builds a network does load torch
    assert _loads_torch("from rpg_core import train")


def test_lazy_package_exports_what_it_lists() -> None:
    import rpg_core
    import rpg_core.evaluate.predict  # noqa: F401 - a submodule must not shadow a function
    import rpg_core.rpg.rpgify  # noqa: F401
    import rpg_core.training.engine  # noqa: F401

    assert callable(rpg_core.predict) and rpg_core.predict.__name__ == "predict"
    assert callable(rpg_core.rpgify) and rpg_core.rpgify.__name__ == "rpgify"
    assert callable(rpg_core.train) and rpg_core.train.__name__ == "train"
    for name in rpg_core.__all__:
        assert getattr(rpg_core, name) is not None, name
    assert set(rpg_core.__all__) <= set(dir(rpg_core))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = rpg_core.no_such_name  # type: ignore[attr-defined]


# --- no import circles --------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, *, in_functions: bool) -> list[ast.Import | ast.ImportFrom]:
    """The imports of a module, never those under ``if TYPE_CHECKING``; with ``in_functions``
    also those inside functions (run later, but still a dependency)."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if in_functions:
                todo.extend(ast.iter_child_nodes(node))
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: set[str]
) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    if node.level == 0:
        base = node.module or ""
    elif node.module:
        base = f"{base}.{node.module}"
    # ``from pkg import sub`` depends on the submodule; ``from mod import name`` on the module
    subs = {f"{base}.{alias.name}" for alias in node.names} & modules
    named = len(subs) < len(node.names)
    return subs | ({base} & modules if named else set())


def import_graph(*, in_functions: bool) -> dict[str, set[str]]:
    files = {p: _module_name(p) for p in PACKAGE.rglob("*.py")}
    modules = set(files.values())
    graph: dict[str, set[str]] = {}
    for path, module in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in _imports(tree, in_functions=in_functions):
            edges |= _targets(module, path.name == "__init__.py", node, modules)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph(in_functions=True)
    assert {"rpg_core.spec.model", "rpg_core.exceptions"} <= graph["rpg_core.spec"]
    assert "rpg_core.catalog.archs" in graph["rpg_core.spec.model"]
    assert "rpg_core.format" in graph["rpg_core.evaluate.predict"]  # inside predict()
    assert "rpg_core.format" not in import_graph(in_functions=False)["rpg_core.evaluate.predict"]
    assert "rpg_core.rpg.generator" in graph["rpg_core.format.header"]  # from .. import generator


@pytest.mark.parametrize("in_functions", [False, True], ids=["module-level", "all"])
def test_rpg_core_has_no_import_cycles(in_functions: bool) -> None:
    cycle = find_cycle(import_graph(in_functions=in_functions))
    assert cycle is None, " -> ".join(cycle or [])


# --- the rooms: packages in layers ------------------------------------------------------------
# An import may only point to a package of a lower layer (docs/ARCHITECTURE.md, "The library's
# rooms"); rpg_core/__init__.py (the lazy public surface) may name any.
LAYERS = [
    {"exceptions", "version", "stopping"},
    {"image_limits"},  # bounds on images any reader applies (raises rpg_core.exceptions')
    {"catalog"},
    {"spec", "rpg"},
    {"data", "models", "tasks"},
    {"format", "analysis"},
    {"evaluate"},
    {"training"},
    {"cli"},
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_layer() -> None:
    rooms = {_room(m) for m in import_graph(in_functions=True)} - {None}
    assert rooms == set(RANK), "give each package of rpg_core a layer in LAYERS"


def test_no_import_runs_up_or_across_the_rooms() -> None:
    bad = []
    for module, targets in import_graph(in_functions=True).items():
        room = _room(module)
        if room is None:
            continue
        for t in targets:
            other = _room(t)
            if other is not None and other != room and RANK[other] >= RANK[room]:
                bad.append(f"{module} -> {t}")
    assert not bad, "imports that run up or across a layer: " + ", ".join(sorted(bad))


def test_no_module_imports_a_private_name_of_another_package() -> None:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _imports(tree, in_functions=True):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
            target = (
                ".".join(base[: len(base) - node.level + 1] + [node.module or ""])
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and target.startswith("rpg_core") and _room(target) != _room(module):
                    bad.append(f"{module}: {alias.name} from {target}")
    assert not bad, ", ".join(bad)
