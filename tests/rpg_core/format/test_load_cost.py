"""What a load costs, counted (issue 27): each ring's index table is generated once, in one
fused pass, and an eval model's forward passes reuse its gathered kernels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rpg_core import rings
from rpg_core.format import load_compact, save_compact
from rpg_core.models import create_model
from rpg_core.rpg import generator, ring

SPEC: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.125},
    "rpg": {"ring_size": 0.05, "seed": 3, "scope": "stage"},
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of the generator's table builders and of the ring's kernel generation."""
    counts: Counter[str] = Counter()

    def counting(owner: Any, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("signed_index", "index_array", "signs", "permutation", "hashed_index"):
        counting(generator, name)
    counting(ring.Ring, "generate_layers")
    counting(ring.Ring, "reset_parameters")
    return counts


def test_a_load_builds_each_table_once(tmp_path: Path, calls: Counter[str]) -> None:
    model = create_model(SPEC)
    save_compact(model, tmp_path / "m.rpg")
    calls.clear()
    loaded = load_compact(tmp_path / "m.rpg")
    n_rings = len(rings(loaded))
    assert n_rings == 4  # layer1..layer4
    # one fused pass per ring; no separate index array, sign vector or sort (generator 4), and
    # no random init of the rings: the file's values replace it
    assert calls == Counter(signed_index=n_rings)
    for name, r in rings(loaded).items():
        assert torch.equal(r.weight, rings(model)[name].weight)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        first = loaded(x)
        second = loaded(x)
    assert calls["generate_layers"] == n_rings  # the kernels are gathered once, then cached
    assert calls["signed_index"] == n_rings  # the forward passes build no table
    assert torch.equal(first, second)
    with torch.no_grad():
        assert torch.equal(first, model.eval()(x))  # and it is the saved model


def test_generator1_file_sorts_once(tmp_path: Path, calls: Counter[str]) -> None:
    spec = {**SPEC, "rpg": {**SPEC["rpg"], "scope": "global", "generator": 1}}
    save_compact(create_model(spec), tmp_path / "v1.rpg")
    calls.clear()
    load_compact(tmp_path / "v1.rpg")
    # generator 1's sort needs its whole index array (one call, one sort of the shuffle keys
    # and one of the extra elements), the signs are fused
    assert calls == Counter(signed_index=1, index_array=1, permutation=2)


def test_rings_built_outside_a_load_are_initialised(calls: Counter[str]) -> None:
    model = create_model(SPEC)
    assert calls["reset_parameters"] == len(rings(model)) == 4
    with ring.values_loaded_later():
        create_model(SPEC)
    assert calls["reset_parameters"] == 4  # skipped inside
    create_model(SPEC)
    assert calls["reset_parameters"] == 8  # and back after it
