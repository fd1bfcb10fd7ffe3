"""rpg_core.spec.safe_yaml: the one YAML loader (load_spec, load_sweep and the service use it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import load_spec
from rpg_core.spec.safe_yaml import RPGYAMLError, loads
from rpg_core.spec.sweep import load_sweep


def test_plain_documents_load_as_json_types() -> None:
    text = "a: 1\nb: 1e-3\nc: [x, 2.5, null, yes]\nd: 2024-01-01\ne: {f: '1e3'}\n"
    assert loads(text) == {
        "a": 1,
        "b": 0.001,
        "c": ["x", 2.5, None, True],
        "d": "2024-01-01",
        "e": {"f": "1e3"},
    }
    assert loads('{"a": [1, {"b": false}]}') == {"a": [1, {"b": False}]}
    # keys are strings, as in JSON (a YAML 1.1 emitter leaves "1e3" unquoted)
    assert loads("1: x\n1e3: y\ntrue: z\n") == {"1": "x", "1e3": "y", "true": "z"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a: &a [x, x]\nb: [*a, *a]\n", "aliases are not allowed"),
        ("a: &a [*a]\n", "aliases are not allowed"),
        ("a: &a {b: *a}\n", "aliases are not allowed"),
        ("a: " + "[" * 40 + "]" * 40, "deeper than"),
        ("a: " + "[" * 50_000 + "]" * 50_000, "deeper than"),
        ("a: .inf\n", "NaN/inf"),
        ("? [1]\n: x\n", "unhashable key"),
        ("a: !!set {x}\n", "not allowed"),
        ("a: !!python/name:os.system\n", "not valid YAML"),
        ("a: [\n", "line 2"),
    ],
)
def test_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(RPGYAMLError, match=why):
        loads(text)


def test_size_limit() -> None:
    with pytest.raises(RPGYAMLError, match="over the limit of 10 bytes"):
        loads("a: 12345678901", max_bytes=10)


def test_load_spec_and_sweep_use_it(tmp_path: Path) -> None:
    bomb = "name: &n x\ntags: [*n, *n]\n"
    (tmp_path / "s.yaml").write_text(bomb)
    with pytest.raises(RPGConfigError, match="aliases are not allowed"):
        load_spec(tmp_path / "s.yaml")
    (tmp_path / "w.yaml").write_text("base: &b {}\nextra: [*b]\n")
    with pytest.raises(RPGConfigError, match="aliases are not allowed"):
        load_sweep(tmp_path / "w.yaml")
    (tmp_path / "ok.yaml").write_text("train: {weight_decay: 5e-4, epochs: 2}\n")
    assert load_spec(tmp_path / "ok.yaml").train.weight_decay == 0.0005
