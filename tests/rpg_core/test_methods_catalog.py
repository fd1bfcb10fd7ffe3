"""The methods registry (issue 24): names, references, and the error for an unknown one."""

from __future__ import annotations

import pytest

from rpg_core.catalog.methods import METHODS, list_methods, method_info
from rpg_core.exceptions import RPGConfigError


def test_registry_lists_the_methods_with_references() -> None:
    assert list_methods() == ["rpg", "width", "hashed", "prune-global", "prune-filters"]
    for m in METHODS.values():
        d = m.as_dict()
        assert d["name"] == m.name and m.reference and m.description and m.budget
        assert m.min_budget >= 1
    assert "Chen" in method_info("hashed").reference
    assert method_info("prune-global").trains_dense_first
    assert not method_info("rpg").trains_dense_first


def test_unknown_method_names_the_known_ones() -> None:
    with pytest.raises(RPGConfigError, match=r"method\.name: unknown method 'lottery'.*rpg, width"):
        method_info("lottery")
