"""The one YAML loader for everything the library and the service read (specs, sweeps, uploads).

``yaml.safe_load`` never runs code, but it still expands aliases: a few hundred bytes of
"billion laughs" (``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) become gigabytes, and a
self-referencing alias (``a: &a [*a]``) builds a cyclic object that nothing downstream can
serialise. :func:`loads` refuses, with :class:`RPGYAMLError` saying why:

* any alias (``*name``, including merge keys ``<<: *name``): a spec never needs one;
* text over ``max_bytes``, nesting deeper than ``max_depth``;
* values JSON cannot carry: non-string mapping keys, NaN/infinity, ``!!binary``, ``!!set``;
* numbers written with more than ``MAX_NUMBER_CHARS`` characters, and integers beyond
  ``MAX_INT`` in magnitude (``0x`` + 5,000 digits, a long sexagesimal ``1:2:3:...``): the
  text's length is checked before any conversion, the error names the field and the line.

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
MAX_NUMBER_CHARS = 100  # the text of one number (a 64-bit binary literal is 66)
MAX_INT = 2**63 - 1  # the magnitude of an integer (a signed 64-bit integer)

# YAML 1.2's float (JSON numbers with an exponent but no dot are floats), plus .inf/.nan
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*\.[0-9_]*)(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class RPGYAMLError(RPGConfigError):
    """A YAML document was refused (alias, too large, too deep, a value JSON cannot hold).

    ``field`` is the dotted path of the refused value when the document says which."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class _OutOfBounds:
    """A number the loader refused while constructing it; :func:`_plain` reports it with its
    field (the constructor knows the line, not the field)."""

    def __init__(self, why: str, line: int) -> None:
        self.why, self.line = why, line


def _bounded_number(loader: yaml.SafeLoader, node: Node, kind: str) -> Any:
    """``int`` or ``float`` of a scalar, its text and (for an int) its value bounded."""
    if not isinstance(node, ScalarNode):  # !!int [1] or !!float {a: 1}
        raise yaml.constructor.ConstructorError(
            None, None, f"!!{kind} of a list or mapping", node.start_mark
        )
    text = str(node.value)
    line = node.start_mark.line + 1 if node.start_mark else 0
    limits = f"numbers have at most {MAX_NUMBER_CHARS} characters and integers at most {MAX_INT:,}"
    if len(text) > MAX_NUMBER_CHARS:
        return _OutOfBounds(
            f"a number of {len(text):,} characters ({text[:12]}...); {limits}", line
        )
    try:
        value = (
            loader.construct_yaml_int(node) if kind == "int" else loader.construct_yaml_float(node)
        )
    except (ValueError, IndexError):  # an explicit tag on other text: !!int abc, !!int ""
        raise yaml.constructor.ConstructorError(
            None, None, f"!!{kind} of {text[:20]!r}, which is not a number", node.start_mark
        ) from None
    if kind == "int" and abs(value) > MAX_INT:
        return _OutOfBounds(f"the integer {text} is out of range; {limits}", line)
    return value


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

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """A scalar whose text does not parse as its type (``!!bool x``, ``!!timestamp x``,
        ``2020-02-30``) is a YAML error at its line, not the constructor's raw exception."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, KeyError, AttributeError, IndexError, TypeError, OverflowError):
            text = node.value if isinstance(node, ScalarNode) else type(node).__name__
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{str(text)[:40]!r} is not a valid {kind}; quote it to keep it as text",
                node.start_mark,
            ) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Keys are strings, as in JSON: a plain scalar key is its text (``1:``, ``1e3:``,
        ``true:`` give "1", "1e3", "true"); a list or mapping as a key is refused."""
        if not isinstance(node, MappingNode):  # !!map x
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {type(node).__name__}", node.start_mark
            )
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


def _bounded_int(loader: yaml.SafeLoader, node: Node) -> Any:
    return _bounded_number(loader, node, "int")


def _bounded_float(loader: yaml.SafeLoader, node: Node) -> Any:
    return _bounded_number(loader, node, "float")


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _bounded_float)


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
    if isinstance(value, _OutOfBounds):
        field = where or "(top)"
        raise RPGYAMLError(f"{field} (line {value.line}): {value.why}", field=field)
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
    except (ValueError, KeyError, AttributeError, IndexError, TypeError, OverflowError) as err:
        # a constructor's own error that construct_object did not see (PyYAML builds some
        # values in generators); never the raw exception
        raise RPGYAMLError(f"not valid YAML/JSON: a value does not parse ({err})") from None
    finally:
        loader.dispose()
    return _plain(data, "")
