"""The safetensors container under an .rpg file: every failure is a ContainerError whose code
names it (the .rpg semantics above it raise plain RPGFormatErrors)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rpg_core import RPGFormatError
from rpg_core.format import ContainerError, ContainerErrorCode, read_header
from rpg_core.format.container import MAX_TENSORS, header_bytes, layout, read_container

E = ContainerErrorCode
META = {"format": "something-else"}


def _file(header: dict[str, Any], data: bytes = b"", *, raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def _entry(dtype: str, shape: list[int], start: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


CASES: dict[str, tuple[ContainerErrorCode, Callable[[Path], Path]]] = {}


def case(code: ContainerErrorCode) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def wrap(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES[fn.__name__] = (code, fn)
        return fn

    return wrap


def _write(tmp: Path, content: bytes) -> Path:
    p = tmp / "m.rpg"
    p.write_bytes(content)
    return p


@case(E.NOT_FOUND)
def missing(tmp: Path) -> Path:
    return tmp / "absent.rpg"


@case(E.NOT_A_FILE)
def directory(tmp: Path) -> Path:
    (tmp / "d.rpg").mkdir()
    return tmp / "d.rpg"


@case(E.EMPTY)
def empty(tmp: Path) -> Path:
    return _write(tmp, b"")


@case(E.FOREIGN)
def zip_archive(tmp: Path) -> Path:
    return _write(tmp, b"PK\x03\x04" + b"\x00" * 40)


@case(E.FOREIGN)
def a_pickle(tmp: Path) -> Path:
    return _write(tmp, pickle.dumps({"w": [1.0, 2.0]}, protocol=4))


@case(E.TRUNCATED)
def short_length(tmp: Path) -> Path:
    return _write(tmp, b"\x10\x00\x00")


@case(E.TRUNCATED)
def header_past_the_end(tmp: Path) -> Path:
    return _write(tmp, (1000).to_bytes(8, "little") + b"{}")


@case(E.HEADER_TOO_LARGE)
def huge_header(tmp: Path) -> Path:
    return _write(tmp, (2**40).to_bytes(8, "little") + b"{}")


@case(E.HEADER_NOT_OBJECT)
def header_a_list(tmp: Path) -> Path:
    return _write(tmp, _file({}, raw=b"[1, 2]  "))


@case(E.INVALID_JSON)
def duplicate_keys(tmp: Path) -> Path:
    return _write(tmp, _file({}, raw=b'{"__metadata__": {}, "__metadata__": {}}'))


@case(E.METADATA)
def no_metadata(tmp: Path) -> Path:
    return _write(tmp, _file({"w": _entry("F32", [1], 0, 4)}, b"\x00" * 4))


@case(E.TOO_MANY_TENSORS)
def too_many_tensors(tmp: Path) -> Path:
    header: dict[str, Any] = {"__metadata__": META}
    header.update((f"t{i}", _entry("U8", [0], 0, 0)) for i in range(MAX_TENSORS + 1))
    return _write(tmp, _file(header))


@case(E.INVALID_ENTRY)
def unknown_dtype(tmp: Path) -> Path:
    return _write(tmp, _file({"__metadata__": META, "w": _entry("F8", [1], 0, 1)}, b"\x00"))


@case(E.INVALID_ENTRY)
def offsets_do_not_fit_the_shape(tmp: Path) -> Path:
    return _write(tmp, _file({"__metadata__": META, "w": _entry("F32", [2], 0, 4)}, b"\x00" * 4))


@case(E.OVERLAP)
def overlapping(tmp: Path) -> Path:
    header = {"__metadata__": META, "a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 4, 8)}
    return _write(tmp, _file(header, b"\x00" * 8))


@case(E.GAP)
def gap(tmp: Path) -> Path:
    return _write(tmp, _file({"__metadata__": META, "a": _entry("F32", [1], 4, 8)}, b"\x00" * 8))


@case(E.TRUNCATED)
def data_cut_short(tmp: Path) -> Path:
    return _write(tmp, _file({"__metadata__": META, "a": _entry("F32", [2], 0, 8)}, b"\x00" * 4))


@case(E.TRAILING_BYTES)
def trailing(tmp: Path) -> Path:
    return _write(tmp, _file({"__metadata__": META, "a": _entry("F32", [1], 0, 4)}, b"\x00" * 9))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_container_failure_has_its_code(name: str, tmp_path: Path) -> None:
    code, make = CASES[name]
    path = make(tmp_path)
    with pytest.raises(ContainerError) as err:
        read_header(path)
    assert err.value.code is code, err.value
    assert isinstance(err.value, RPGFormatError)
    assert str(err.value).startswith(f"{path.name}: ")  # the file name, never the directory
    assert str(tmp_path) not in str(err.value)


def test_every_code_but_the_races_is_exercised() -> None:
    races = {E.UNREADABLE, E.CHANGED}  # a permission or a file changing under the reader
    assert {code for code, _ in CASES.values()} == set(E) - races


def test_a_valid_container_with_other_metadata_is_an_rpg_error_not_a_container_one(
    tmp_path: Path,
) -> None:
    entries, chunks = layout({"w": ("F32", [1], b"\x00" * 4)})
    path = _write(tmp_path, b"".join([_file({}, raw=header_bytes(entries, META)), *chunks]))
    assert read_container(path).tensors["w"].shape == (1,)
    with pytest.raises(RPGFormatError, match="without RPG metadata") as err:
        read_header(path)
    assert not isinstance(err.value, ContainerError)
