"""Generator version 3, splitmix64-hash (HashedNets, Chen et al. 2015; issue 24): every weight
reads a ring element chosen by a hash of its position, with replacement; a hashed model's
.rpg file records its generator and rebuilds bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from rpg_core.format import load_compact, read_header, save_compact
from rpg_core.models import create_model
from rpg_core.rpg import generator
from rpg_core.rpg.params import count_params
from rpg_core.rpg.rpgify import rings


def test_hash_index_is_the_documented_stream_mod_n() -> None:
    seed, n, m = 12345, 997, 70_000  # > one 32K block
    u = generator.index_array(seed, n, m, version=3)
    assert u.shape == (m,) and u.min() >= 0 and u.max() < n
    assert np.array_equal(u, generator.index_array(seed, n, m, version=3))  # deterministic
    assert not np.array_equal(u, generator.index_array(seed + 1, n, m, version=3))
    s0 = generator.mix64_int(seed ^ generator.mix64_int(generator.TAG_HASH))
    for j in (0, 1, 2, 32_767, 32_768, m - 1):  # the scalar reference of the docs
        h = generator.mix64_int((s0 + (j + 1) * generator.GAMMA) & generator.MASK64)
        assert u[j] == h % n
    # without permute: the same j mod n as the other generators
    assert np.array_equal(
        generator.index_array(seed, n, m, permute=False, version=3),
        generator.index_array(seed, n, m, permute=False, version=2),
    )


def test_hashing_uses_the_ring_unevenly_rpg_evenly() -> None:
    n, k = 4000, 3  # k uses per element on average
    hashed = np.bincount(generator.index_array(7, n, k * n, version=3), minlength=n)
    even = np.bincount(generator.index_array(7, n, k * n, version=2), minlength=n)
    assert set(even.tolist()) == {k}  # rpg: every element exactly k times
    unused = float(np.mean(hashed == 0))
    # binomial(k n, 1/n): P(0 uses) ~ e^-k = 0.050; std of the fraction ~ 0.0034
    assert abs(unused - math.exp(-k)) < 0.015
    assert hashed.max() >= 2 * k  # some elements carry many weights
    assert hashed.sum() == k * n


def test_hashed_model_saves_its_generator_and_rebuilds_bit_for_bit(tmp_path: Path) -> None:
    spec = {
        "model": {"arch": "resnet18", "width": 0.125},
        "method": {"name": "hashed", "budget": 3000},
    }
    model = create_model(spec).eval()
    (ring,) = rings(model).values()
    assert ring.spec.generator == 3 and count_params(model).backbone == 3000
    plain_rpg = create_model({"model": spec["model"], "rpg": {"ring_size": 3000}})
    (even,) = rings(plain_rpg).values()
    assert ring.spec.generated == even.spec.generated  # the same cost as rpg
    assert not torch.equal(ring.index, even.index)
    path = tmp_path / "hashed.rpg"
    save_compact(model, path)
    assert read_header(path).generator_version == 3
    loaded = load_compact(path)
    (again,) = rings(loaded).values()
    assert again.spec.generator == 3 and torch.equal(again.signed_index, ring.signed_index)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # ... and in a fresh process, as a user loading the file elsewhere would
    from ..fresh_process import fresh_process_outputs

    with torch.no_grad():
        expected = model(x).numpy()
    assert np.array_equal(fresh_process_outputs(path, x, tmp_path), expected)
