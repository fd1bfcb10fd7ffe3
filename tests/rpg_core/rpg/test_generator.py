"""The seeded generator: golden vectors, an independent scalar reference, even sampling."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rpg_core import RPGConfigError
from rpg_core.rpg import generator

MASK = (1 << 64) - 1


# --- an independent, scalar re-implementation of the documented algorithm ------------------
def ref_mix(z: int) -> int:
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def ref_stream(seed: int, tag: int, n: int) -> list[int]:
    state = ref_mix(seed ^ ref_mix(tag))
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        out.append(ref_mix(state))
    return out


def ref_permutation(seed: int, tag: int, n: int) -> list[int]:
    if n <= 1:
        return [0] * n
    b = (n - 1).bit_length()
    keys = [((r >> b) << b) | i for i, r in enumerate(ref_stream(seed, tag, n))]
    return [k & ((1 << b) - 1) for k in sorted(keys)]


def ref_bijection_permutation(seed: int, tag: int, n: int) -> list[int]:
    """Generator 2, as docs/FORMAT.md states it: 4 rounds of x = x*k + c mod 2^b,
    x ^= x >> ceil(b/2), keys from stream(seed, tag, 8), then cycle walking below n."""
    if n <= 1:
        return [0] * n
    b = (n - 1).bit_length()
    mask = (1 << b) - 1
    keys = ref_stream(seed, tag, 8)

    def f(x: int) -> int:
        for r in range(4):
            x = (x * (keys[2 * r] | 1) + keys[2 * r + 1]) & mask
            x ^= x >> ((b + 1) // 2)
        return x

    out = []
    for i in range(n):
        y = f(i)
        while y >= n:
            y = f(y)
        out.append(y)
    return out


def ref_index_array(seed: int, n: int, m: int, permute: bool = True, version: int = 2) -> list[int]:
    if not permute:
        return [i % n for i in range(m)]
    perm = ref_permutation if version == 1 else ref_bijection_permutation
    q, r = divmod(m, n)
    base = list(range(n)) * q + perm(seed, 1, n)[:r]
    return [base[p] for p in perm(seed, 2, m)]


def ref_signs(seed: int, m: int) -> list[int]:
    return [-1 if r >> 63 else 1 for r in ref_stream(seed, 3, m)]


# --- golden vectors: these pin the format; changing them breaks every saved .rpg file --------
def test_golden_stream() -> None:
    assert generator.stream(0, 1, 4).tolist() == [
        4720248854425330031,
        1629287585893752162,
        5358695149628781184,
        10446081457555163891,
    ]
    assert generator.stream(12345, 3, 3).tolist() == [
        6955881097175313934,
        4787134808472257865,
        7275224104078964175,
    ]


def test_golden_tables() -> None:
    # generator 1 (sort-based): files written before generator 2 rebuild with these
    assert generator.permutation(7, 2, 12).tolist() == [5, 11, 1, 7, 8, 9, 0, 2, 10, 3, 4, 6]
    v1 = generator.index_array(3, 5, 12, version=1).tolist()
    assert v1 == [3, 1, 3, 4, 4, 0, 1, 4, 2, 0, 0, 2]
    assert generator.index_array(3, 20, 7, version=1).tolist() == [6, 16, 13, 9, 12, 11, 10]
    # generator 2 (keyed bijection), the default until generator 4
    assert generator.permutation_v2(7, 2, 12).tolist() == [7, 1, 8, 2, 3, 4, 11, 9, 0, 5, 10, 6]
    assert generator.index_array(3, 5, 12, version=2).tolist() == [
        0,
        1,
        2,
        4,
        3,
        3,
        0,
        2,
        3,
        4,
        0,
        1,
    ]
    assert generator.index_array(3, 20, 7, version=2).tolist() == [18, 12, 5, 7, 19, 0, 10]
    v2_signs = generator.signs(9, 16, version=2).tolist()
    assert v2_signs == [-1, 1, -1, -1, 1, 1, 1, 1, -1, 1, 1, 1, -1, 1, 1, 1]
    assert generator.derive_seed(0, "global") == 3376049013404315612
    assert generator.derive_seed(0, "layer1") == 5100602383445586922


@pytest.mark.parametrize(
    ("seed", "n", "m"), [(0, 7, 100), (5, 100, 37), (2**62, 13, 13), (1, 1, 9)]
)
def test_matches_scalar_reference(seed: int, n: int, m: int) -> None:
    assert generator.index_array(seed, n, m, version=2).tolist() == ref_index_array(seed, n, m)
    assert generator.index_array(seed, n, m, version=1).tolist() == ref_index_array(
        seed, n, m, version=1
    )
    assert generator.signs(seed, m, version=2).tolist() == ref_signs(seed, m)
    assert generator.index_array(seed, n, m, permute=False).tolist() == ref_index_array(
        seed, n, m, permute=False
    )


def test_permutation_is_a_permutation() -> None:
    for n in (1, 2, 3, 1000, 4097, 70_000):
        for perm in (generator.permutation, generator.permutation_v2):
            p = perm(11, 2, n)
            assert sorted(p.tolist()) == list(range(n))
    for perm in (generator.permutation, generator.permutation_v2):
        assert not np.array_equal(perm(1, 2, 1000), perm(2, 2, 1000))
    # a prefix of generator 2's permutation is computed on its own (the ring's extra elements)
    full = generator.permutation_v2(5, 1, 5000)
    assert generator.permutation_v2(5, 1, 5000, count=123).tolist() == full[:123].tolist()


def test_bijection_permutation_looks_random() -> None:
    """Generator 2 keeps what the paper needs of a random permutation: no order survives."""
    p = generator.permutation_v2(7, 2, 200_000).astype(np.float64)
    i = np.arange(len(p), dtype=np.float64)
    assert abs(np.corrcoef(p, i)[0, 1]) < 0.01
    assert abs(np.corrcoef(p[:-1], p[1:])[0, 1]) < 0.01
    assert abs(np.abs(np.diff(p)).mean() / len(p) - 1 / 3) < 0.005  # E|U1 - U2| = 1/3
    assert (p == i).mean() < 0.001  # fixed points: about 1/n


# generator 2's speed over generator 1 is a benchmark's claim (benchmarks/bench_compact.py,
# docs/BENCHMARKS.md), not a test's: a timing ratio in the suite fails on a busy machine.


def test_unknown_generator_version() -> None:
    with pytest.raises(RPGConfigError, match="generator version 5"):
        generator.index_array(0, 5, 10, version=5)


@pytest.mark.parametrize(("n", "m"), [(45, 1000), (1000, 1000), (999, 1000), (7, 7 * 13)])
def test_even_sampling(n: int, m: int) -> None:
    counts = np.bincount(generator.index_array(4, n, m), minlength=n)
    assert counts.min() == m // n
    assert counts.max() == -(-m // n)
    assert counts.sum() == m


def test_tall_ring_uses_each_element_at_most_once() -> None:
    u = generator.index_array(4, 5000, 1200)
    assert len(set(u.tolist())) == 1200
    assert u.max() < 5000


def test_ablation_switches() -> None:
    assert generator.index_array(1, 4, 10, permute=False).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert (generator.signs(1, 100, reflect=False) == 1).all()
    s = generator.signs(1, 100_000)
    assert set(np.unique(s).tolist()) == {-1, 1}
    assert abs(float(s.mean())) < 0.02  # fair coin: 0.02 is > 6 standard deviations


def test_same_tables_in_a_separate_process() -> None:
    here = generator.digest(generator.index_array(0, 45000, 300_000), generator.signs(0, 300_000))
    code = (
        "from rpg_core.rpg import generator as g;"
        "print(g.digest(g.index_array(0, 45000, 300000), g.signs(0, 300000)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "3"])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(RPGConfigError, match="seed"):
        generator.stream(seed, 1, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("n", "m"), [(1, 1), (1, 9), (7, 100), (100, 37), (13, 13), (70_000, 3), (45_000, 300_000)]
)
def test_signed_index_is_index_plus_sign(version: int, n: int, m: int) -> None:
    """The fused table equals index_array + n * (sign < 0) for every switch, over several
    blocks (300K positions: three of 2**17) and with the blocks shared by threads."""
    seed = n * 31 + m
    for permute, reflect in ((True, True), (True, False), (False, True)):
        u = generator.index_array(seed, n, m, permute=permute, version=version)
        b = generator.signs(seed, m, reflect=reflect, version=version)
        expected = u.astype(np.int64) + n * (b < 0)
        for workers in (1, 3):
            got = generator.signed_index(
                seed, n, m, permute=permute, reflect=reflect, version=version, workers=workers
            )
            assert got.dtype == np.int32
            assert np.array_equal(got, expected), (permute, reflect, workers)


def test_signed_index_checks_its_arguments() -> None:
    with pytest.raises(RPGConfigError, match="n > 0 and m > 0"):
        generator.signed_index(0, 0, 5)
    with pytest.raises(RPGConfigError, match="generator version 9"):
        generator.signed_index(0, 5, 5, version=9)


# --- generator 4 (two-level block permutation), from its specification alone -----------------
V4_B = 1 << 16


def ref_v4_permutation(seed: int, tag: int, n: int) -> list[int]:
    """Generator 4's permutation, position by position, as docs/FORMAT.md states it."""
    if n <= 1:
        return [0] * n
    nb = -(-n // V4_B)
    short = n - (nb - 1) * V4_B
    order = ref_bijection_permutation(seed, tag, nb)
    keys = ref_stream(seed, tag + 16, nb)
    tail = ref_bijection_permutation(seed, tag + 32, short) if short < V4_B else []
    out = []
    for i in range(n):
        block, t = divmod(i, V4_B)
        s = order[block]
        start = s * V4_B - (V4_B - short) * (s > order[nb - 1])
        if block == nb - 1 and short < V4_B:
            g = tail[t]
        else:
            a, c = (keys[block] % V4_B) | 1, (keys[block] >> 32) % V4_B
            g = (a * t + c) % V4_B
        out.append(start + g)
    return out


def ref_v4_index_array(seed: int, n: int, m: int) -> list[int]:
    q, r = divmod(m, n)
    base = list(range(n)) * q + ref_v4_permutation(seed, 1, n)[:r]
    return [base[p] for p in ref_v4_permutation(seed, 2, m)]


def ref_v4_signs(seed: int, m: int) -> list[int]:
    words = ref_stream(seed, 3, -(-m // 64))
    return [-1 if (words[j // 64] >> (j % 64)) & 1 else 1 for j in range(m)]


def test_generator4_golden_tables() -> None:
    assert generator.GENERATORS[4] == "splitmix64-blocks"
    assert generator.permutation_v4(7, 2, 12).tolist() == [6, 11, 4, 1, 10, 7, 8, 5, 0, 3, 2, 9]
    assert generator.index_array(3, 5, 12, version=4).tolist() == [
        2,
        4,
        3,
        0,
        2,
        4,
        2,
        1,
        3,
        1,
        0,
        4,
    ]
    assert generator.index_array(3, 20, 7, version=4).tolist() == [11, 18, 13, 5, 9, 10, 15]
    assert generator.signs(9, 16, version=4).tolist() == [
        -1, 1, -1, -1, -1, 1, 1, -1, 1, -1, 1, 1, 1, 1, -1, -1
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seed", "n", "m"),
    [
        (0, 7, 100),
        (5, 100, 37),
        (2**62, 13, 13),
        (1, 1, 9),
        (3, 5, 12),
        (8, 70_001, 2 * V4_B + 777),
    ],
)
def test_generator4_matches_scalar_reference(seed: int, n: int, m: int) -> None:
    """Several blocks, a short last block, the extra elements, every sign word."""
    assert generator.index_array(seed, n, m, version=4).tolist() == ref_v4_index_array(seed, n, m)
    assert generator.signs(seed, m, version=4).tolist() == ref_v4_signs(seed, m)
    assert generator.index_array(seed, n, m, permute=False, version=4).tolist() == [
        i % n for i in range(m)
    ]


def test_generator4_permutation_every_shape() -> None:
    # a whole number of blocks (no short block), one block, a short block, fewer than a block
    for n in (2 * V4_B, V4_B, 3 * V4_B + 5, 1000, 1, 2):
        p = generator.permutation_v4(4, 2, n)
        assert np.array_equal(np.sort(p), np.arange(n)), n
    assert generator.permutation_v4(4, 2, 2 * V4_B).tolist() == ref_v4_permutation(4, 2, 2 * V4_B)
    full = generator.permutation_v4(5, 1, 3 * V4_B + 9)
    assert np.array_equal(
        generator.permutation_v4(5, 1, 3 * V4_B + 9, count=V4_B + 3), full[: V4_B + 3]
    )


@pytest.mark.parametrize(
    ("n", "m"), [(70_001, 11 * V4_B + 5), (2_000, 300_000), (300_000, 100_000)]
)
def test_generator4_even_sampling_and_tables(n: int, m: int) -> None:
    """Every ring element used q or q + 1 times; the fused table (fast path for rings of a
    block or more, threads) is index + n * (sign < 0)."""
    u = generator.index_array(6, n, m, version=4)
    counts = np.bincount(u, minlength=n)
    assert counts.min() == m // n and counts.max() == -(-m // n) and counts.sum() == m
    b = generator.signs(6, m, version=4)
    expected = u.astype(np.int64) + n * (b < 0)
    for workers in (1, 2):
        got = generator.signed_index(6, n, m, version=4, workers=workers)
        assert got.dtype == np.int32 and np.array_equal(got, expected)


def test_generator4_kernels_uncorrelated_and_signs_balanced() -> None:
    """Kernels generated from one random ring by different seeds (layers' rings) are nearly
    uncorrelated; within one table, two layers' slices are too; the signs are a fair coin."""
    n, m = 100_000, 800_000
    w = np.random.default_rng(0).standard_normal(2 * n)
    w[n:] = -w[:n]  # the table [w, -w]
    k1 = w[generator.signed_index(1, n, m, version=4)]
    k2 = w[generator.signed_index(2, n, m, version=4)]
    assert abs(np.corrcoef(k1, k2)[0, 1]) < 0.01  # 1/sqrt(m) ~ 0.001
    half = m // 2
    assert abs(np.corrcoef(k1[:half], k1[half:])[0, 1]) < 0.01
    assert abs(np.corrcoef(k1[:-1], k1[1:])[0, 1]) < 0.01  # neighbours in one kernel
    s = generator.signs(1, m, version=4)
    assert abs(float(s.mean())) < 0.01  # 0.01 is about 9 standard deviations
