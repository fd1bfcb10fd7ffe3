"""rpg_core.spec.safe_yaml: the one YAML loader (load_spec, load_sweep and the service use it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("number", "value"),
    [
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775807", -(2**63 - 1)),
        ("0x7fffffffffffffff", 2**63 - 1),
        ("0b101", 5),
        ("1:30", 90),
        ("1_000", 1000),
        ("!!int '12'", 12),
        ("0." + "1" * 97, float("0." + "1" * 97)),
    ],
)
def test_numbers_within_bounds_load(number: str, value: int | float) -> None:
    assert loads(f"a: {number}\n") == {"a": value}


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("1" * 4301, "a number of 4,301 characters"),  # past Python's int digit limit
        ("0x" + "f" * 5000, "a number of 5,002 characters"),
        ("1:" * 3000 + "1", "a number of 6,001 characters"),
        ("9223372036854775808", "the integer 9223372036854775808 is out of range"),
        ("0x8000000000000000", "out of range"),
        ("-0b1" + "0" * 63, "out of range"),
        ("59:" * 20 + "1", "out of range"),  # sexagesimal: 60**20
        ("1" + "0" * 200 + ".0", "a number of 203 characters"),
        ("!!int '" + "7" * 200 + "'", "a number of 200 characters"),
    ],
)
def test_numbers_out_of_bounds_are_refused_naming_the_field(number: str, why: str) -> None:
    with pytest.raises(RPGYAMLError, match=why) as err:
        loads(f"top:\n  list: [1, {number}]\n")
    assert err.value.field == "top.list[1]"
    assert str(err.value).startswith("top.list[1] (line 2): ")
    assert "at most 100 characters and integers at most 9,223,372,036,854,775,807" in str(err.value)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a: !!int abc\n", "!!int of 'abc', which is not a number"),
        ("a: !!int ''\n", "!!int of '', which is not a number"),
        ("a: !!float [1]\n", "!!float of a list or mapping"),
        ("a: !!bool maybe\n", "'maybe' is not a valid bool"),
        ("a: [1, 2020-02-30]\n", "line 1, column 8.*'2020-02-30' is not a valid timestamp"),
        ("a: !!timestamp x\n", "not a valid timestamp"),
        ("a: !!map x\n", "expected a mapping"),
    ],
)
def test_scalars_that_do_not_parse_as_their_tag_are_yaml_errors(text: str, why: str) -> None:
    """These raised ValueError/KeyError/AttributeError from PyYAML's constructors (a 500)."""
    with pytest.raises(RPGYAMLError, match=why):
        loads(text)


YAML_PIECES = st.sampled_from(
    ["a", ": ", "- ", "\n", "  ", "[", "]", "{", "}", ", ", "!!int ", "!!float ", "!!bool ",
     "!!timestamp ", "!!map ", "!!seq ", "!!str ", "!!binary ", "<<: ", "0x", "0o", "0b", "1:",
     "1", "9", "f", "_", ".", "e", "-", "+", "2020-02-30", "1e999", ".nan", "'", '"', "?",
     "&x ", "*x", "#", "|", ">"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(YAML_PIECES, max_size=30).map("".join))
def test_any_text_loads_as_json_or_is_refused_with_a_reason(text: str) -> None:
    try:
        data = loads(text)
    except RPGYAMLError as err:
        assert str(err)
        return
    json.dumps(data, allow_nan=False)  # JSON types only, and within the number bounds
