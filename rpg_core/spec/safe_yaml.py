"""The one YAML loader for everything the library and the service read (specs, sweeps, uploads).

``yaml.safe_load`` never runs code, but it still expands aliases: a few hundred bytes of
"billion laughs" (``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) become gigabytes, and a
self-referencing alias (``a: &a [*a]``) builds a cyclic object that nothing downstream can
serialise. :func:`loads` refuses, with :class:`RPGYAMLError` saying why:

* any alias (``*name``, including merge keys ``<<: *name``): a spec never needs one;
* text over ``max_bytes``, nesting deeper than ``max_depth``;
* values JSON cannot carry: non-string mapping keys, NaN/infinity, ``!!binary``, ``!!set``.

Dates (``2024-01-01``) are returned as their ISO text, and floats follow YAML 1.2
(``1e-3`` is a number, as in JSON, not the string YAML 1.1 makes of it).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from ..exceptions import RPGConfigError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32

# YAML 1.2's float (JSON numbers with an exponent but no dot are floats), plus .inf/.nan
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*\.[0-9_]*)(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class RPGYAMLError(RPGConfigError):
    """A YAML document was refused (alias, too large, too deep, a value JSON cannot hold)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and nesting deeper than ``max_depth``."""

    max_depth = MAX_DEPTH

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise RPGYAMLError(
                f"YAML aliases are not allowed (*{event.anchor} at line {line}): "
                "write the value out instead"
            )
        self._depth += 1
        if self._depth > self.max_depth:
            event = self.peek_event()
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise RPGYAMLError(
                f"YAML nested deeper than {self.max_depth} levels (line {line}); "
                "a spec is a few levels deep"
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Keys are strings, as in JSON: a plain scalar key is its text (``1:``, ``1e3:``,
        ``true:`` give "1", "1e3", "true"); a list or mapping as a key is refused."""
        self.flatten_mapping(node)
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode):
                key_node.tag = "tag:yaml.org,2002:str"
        return super().construct_mapping(node, deep=deep)


# floats per YAML 1.2 (replace the YAML 1.1 resolver of the same tag)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "-+0123456789.":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:float", _FLOAT_12)
    )


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON types only (dict with str keys, list, str, int, float, bool, None)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise RPGYAMLError(
                    f"{where or '(top)'}: mapping key {k!r} is not a string; quote it"
                )
            out[k] = _plain(v, f"{where}.{k}" if where else k)
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise RPGYAMLError(f"{where or '(top)'}: {value} is not allowed (JSON has no NaN/inf)")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise RPGYAMLError(
        f"{where or '(top)'}: a {type(value).__name__} value (YAML tag) is not allowed; "
        "use strings, numbers, booleans, lists and mappings"
    )


def loads(text: str | bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML (or JSON) document safely; raises :class:`RPGYAMLError` saying why not."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > max_bytes:
        raise RPGYAMLError(f"YAML text of {size} bytes is over the limit of {max_bytes} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RPGYAMLError(f"YAML text is not UTF-8 (byte {err.start})") from None
    loader = _Loader(text)
    loader.max_depth = max_depth
    try:
        data = loader.get_single_data()
    except RPGYAMLError:
        raise
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise RPGYAMLError(f"not valid YAML/JSON{where}: {problem}") from None
    except RecursionError:
        raise RPGYAMLError("YAML nested too deeply") from None
    finally:
        loader.dispose()
    return _plain(data, "")
