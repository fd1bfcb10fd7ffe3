"""``rpg methods`` (issue 24): the methods registry, in words and as JSON."""

from __future__ import annotations

import json

import pytest

from rpg_core.catalog.methods import METHODS
from rpg_core.cli import main


def test_rpg_methods_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for m in METHODS.values():
        assert f"{m.name}: {m.description}" in out
        assert m.reference in out
    assert "Chen et al." in out


def test_rpg_methods_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in data] == ["rpg", "width", "hashed", "prune-global", "prune-filters"]
    assert data[3]["trains_dense_first"] is True and data[0]["min_budget"] == 1
