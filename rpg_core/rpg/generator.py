"""The seeded generator behind every generating matrix R_i (paper eq. 1-3).

Everything here is a pure function of integer seeds, written out so that any language can
reproduce it bit for bit; nothing depends on ``torch.randperm`` or numpy's ``Generator``, whose
streams may change between releases. ``docs/FORMAT.md`` restates the algorithm.

Definitions (all arithmetic modulo 2**64 on unsigned 64-bit integers):

``mix64(z)``
    SplitMix64's finaliser: ``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
    z *= 0x94D049BB133111EB; z ^= z >> 31``.
``stream(seed, tag, n)``
    ``s0 = mix64(seed ^ mix64(tag))``; output ``i`` (0-based) is ``mix64(s0 + (i + 1) * GAMMA)``
    with ``GAMMA = 0x9E3779B97F4A7C15`` (SplitMix64's sequence started at ``s0``).
``permutation(seed, tag, n)``
    ``b = bit_length(n - 1)``; ``key_i = ((stream_i >> b) << b) | i``; sort the keys ascending
    (they are distinct, so any sort gives the same order); the permutation is ``key & (2**b - 1)``.
``index_array(seed, n, m, permute)``
    ``q, r = divmod(m, n)``; ``base = [0..n-1] * q ++ permutation(seed, SELECT, n)[:r]``.
    With ``permute`` the index array is ``base[permutation(seed, SHUFFLE, m)]``; without it,
    ``i mod n`` for ``i`` in ``0..m-1``. Every ring element is used ``q`` or ``q + 1`` times.
``signs(seed, m, reflect)``
    With ``reflect``: ``+1`` where the top bit of ``stream(seed, SIGN, m)`` is 0, else ``-1``.
    Without it: all ``+1``.

Four generators build the index arrays; a ring records which one made it (files: the
``generator`` metadata; rings: ``RingSpec.generator``):

version 1, ``splitmix64-sortperm``
    ``permutation`` as above: a sort of ``n`` random keys (O(n log n); 1-3 s for ResNet18's 11M
    weights on a busy 2-core machine). Files written before version 2 use it and still load.
version 2, ``splitmix64-bijection`` (the default from 2026-11-27 to 2026-12-03)
    ``permutation(seed, tag, n)[i] = walk(f(i))``: ``f`` is a keyed bijection of the ``b``-bit
    integers (``b = max(1, bit_length(n - 1))``) made of ``ROUNDS`` rounds of
    ``x = (x * k_odd + c) mod 2**b; x ^= x >> ceil(b / 2)`` with the round keys
    ``k_odd = stream_{2r} | 1`` and ``c = stream_{2r+1}`` of ``stream(seed, tag, 2 * ROUNDS)``;
    ``walk`` applies ``f`` again while the value is ``>= n`` (cycle walking, which keeps a
    bijection of ``0..n-1``). O(n), no sort; ``index_array`` and ``signs`` are otherwise the same.
version 3, ``splitmix64-hash`` (HashedNets, Chen et al. 2015: ``method: hashed``)
    No permutation: with ``permute`` the index array is ``u_j = stream(seed, HASH, m)_j mod n``
    (unsigned 64-bit remainder), a hash of the position ``j``: sampling *with* replacement, so
    the ring elements are used unevenly (about ``e^-k`` of them not at all, ``k = m / n``).
    Without ``permute``, ``j mod n`` as for the others; ``signs`` is the same (the top bit of the
    ``SIGN`` stream at ``j``: the sign hash).
version 4, ``splitmix64-blocks`` (the default for new rings since 2026-12-03)
    ``permutation(seed, tag, n)`` is two-level, with blocks of ``B = 2**16`` positions:
    ``nb = ceil(n / B)`` blocks, the last one of ``L = n - (nb - 1) * B`` positions
    (``1 <= L <= B``). The block order ``o = permutation_v2(seed, tag, nb)`` (version 2's
    permutation, over the blocks) sends block ``J`` to source block ``S = o[J]``, which starts
    at ``start(S) = S * B - (B - L) * [S > o[nb - 1]]`` (the short block sits at ``o[nb - 1]``;
    the blocks after it move down by ``B - L``). Position ``i = J * B + t`` (``t < B``) maps to
    ``start(o[J]) + g_J(t)``: ``g_J(t) = (a_J * t + c_J) mod B`` with ``k_J =
    stream(seed, tag + 16, nb)_J``, ``a_J = (k_J mod B) | 1``, ``c_J = (k_J >> 32) mod B``,
    except for a short last block (``J = nb - 1`` and ``L < B``), where ``g(t) =
    permutation_v2(seed, tag + 32, L)[t]``. ``index_array`` is as above with this permutation
    for ``SELECT`` and ``SHUFFLE``. ``signs``: ``-1`` where bit ``j mod 64`` (bit 0 the least
    significant) of ``stream(seed, SIGN, ceil(m / 64))_{j // 64}`` is 1, else ``+1``: one
    SplitMix64 output per 64 positions. A block of the index array reads a window of at most
    ``B`` consecutive base positions (so the gather of a kernel stays in the cache), and the
    value of such a window is ``(start mod n) + g``, less ``n`` once it reaches ``n``: no
    division per position, no cycle walking over the ``m`` positions (about 6x cheaper than
    version 2's table for a ResNet18 with a 2M ring, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..exceptions import RPGConfigError

GENERATORS = {  # version -> id
    1: "splitmix64-sortperm",
    2: "splitmix64-bijection",
    3: "splitmix64-hash",  # HashedNets: sampling with replacement (method hashed)
    4: "splitmix64-blocks",  # two-level permutation, 64 sign bits per stream output
}
HASHED_VERSION = 3
BLOCKS_VERSION = 4
GENERATOR_VERSION = 4  # what new rings use
GENERATOR_ID = GENERATORS[GENERATOR_VERSION]
BIJECTION_ROUNDS = 4  # rounds of the version-2 bijection

GAMMA = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1
SEED_LIMIT = 1 << 63  # seeds are non-negative and fit a signed 64-bit integer (JSON-safe as text)

# Stream tags: one independent stream per use.
TAG_SELECT = 1  # which (m mod n) ring elements are used once more
TAG_SHUFFLE = 2  # the shuffle of the whole index array
TAG_SIGN = 3  # the sign flips (reflection)
TAG_HASH = 4  # version 3: the hashed ring element of every position

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64_int(z: int) -> int:
    """SplitMix64's finaliser on a Python int (the scalar reference of :func:`mix64`)."""
    z &= MASK64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def mix64(z: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser on a uint64 array (modifies and returns ``z``)."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def check_seed(seed: int, name: str = "seed") -> int:
    """Return ``seed`` if it is an int in [0, 2**63), else raise naming the argument."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise RPGConfigError(f"{name} must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise RPGConfigError(f"{name} must be in [0, 2**63), got {seed}")
    return seed


_CHUNK = 1 << 15  # elements per block: the arithmetic stays in the CPU cache (5x faster)
_BLOCK = 1 << 17  # elements per block of signed_index: its cycle walking in few, larger steps


_STEPS = np.arange(1, _CHUNK + 1, dtype=np.uint64) * np.uint64(GAMMA)  # (i + 1) * GAMMA


def _stream_start(seed: int, tag: int) -> int:
    """``s0`` of the stream (seed, tag)."""
    return mix64_int(check_seed(seed) ^ mix64_int(tag))


def _stream_block(s0: int, start: int, k: int) -> np.ndarray:
    """Outputs ``start .. start + k - 1`` (``k <= _CHUNK``) of the stream started at ``s0``."""
    z = _STEPS[:k] + np.uint64((s0 + start * GAMMA) & MASK64)
    return mix64(z)


def _top_bits(s0: int, start: int, k: int, tmp: np.ndarray) -> np.ndarray:
    """The top bit (0 or 1, uint64) of outputs ``start .. start + k - 1`` of the stream at
    ``s0``: :func:`mix64` without its last ``z ^= z >> 31``, which leaves the top bit as it is;
    in place, with ``tmp`` (uint64, ``>= k``) as scratch."""
    z = _STEPS[:k] + np.uint64((s0 + start * GAMMA) & MASK64)
    t = tmp[:k]
    np.right_shift(z, np.uint64(30), out=t)
    np.bitwise_xor(z, t, out=z)
    np.multiply(z, _M1, out=z)
    np.right_shift(z, np.uint64(27), out=t)
    np.bitwise_xor(z, t, out=z)
    np.multiply(z, _M2, out=z)
    return np.right_shift(z, np.uint64(63), out=z)


def _stream_blocks(seed: int, tag: int, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, block) pairs covering ``stream(seed, tag, n)``; each block is a fresh array."""
    s0 = _stream_start(seed, tag)
    for start in range(0, n, _CHUNK):
        yield start, _stream_block(s0, start, min(_CHUNK, n - start))


def stream(seed: int, tag: int, n: int) -> np.ndarray:
    """``n`` pseudo-random uint64 values of the stream (seed, tag)."""
    out = np.empty(n, dtype=np.uint64)
    for start, block in _stream_blocks(seed, tag, n):
        out[start : start + len(block)] = block
    return out


def permutation(seed: int, tag: int, n: int) -> np.ndarray:
    """A permutation of ``0..n-1`` (int64) fixed by (seed, tag): sort of distinct random keys."""
    if n <= 1:
        return np.zeros(max(n, 0), dtype=np.int64)
    b = np.uint64((n - 1).bit_length())
    keys = np.empty(n, dtype=np.uint64)
    index = np.arange(_CHUNK, dtype=np.uint64)
    for start, block in _stream_blocks(seed, tag, n):
        block >>= b
        block <<= b
        block |= index[: len(block)] + np.uint64(start)
        keys[start : start + len(block)] = block
    keys.sort()
    keys &= np.uint64((1 << int(b)) - 1)
    return keys.view(np.int64)  # values < 2**b <= 2**63: the same bits as int64


def check_version(version: int) -> int:
    """``version`` if this rpg_core has that generator, else raise naming the known ones."""
    if isinstance(version, bool) or version not in GENERATORS:
        raise RPGConfigError(
            f"generator version {version!r} is unknown; this rpg_core has "
            + ", ".join(f"{v} ({name})" for v, name in GENERATORS.items())
        )
    return int(version)


def _round_keys(seed: int, tag: int, dtype: type) -> list[tuple[Any, Any]]:
    """(odd multiplier, addend) per round, reduced to ``dtype`` (only their low ``b`` bits
    matter: the arithmetic is modulo ``2**b``, and ``b <= 32`` runs in uint32)."""
    keys = [int(k) for k in stream(seed, tag, 2 * BIJECTION_ROUNDS)]
    bits = np.iinfo(dtype).bits
    low = (1 << bits) - 1
    return [
        (dtype((keys[2 * r] | 1) & low), dtype(keys[2 * r + 1] & low))
        for r in range(BIJECTION_ROUNDS)
    ]


def _bijection(
    x: np.ndarray, keys: list[tuple[Any, Any]], b: int, tmp: np.ndarray | None = None
) -> np.ndarray:
    """The keyed bijection of ``b``-bit integers (an unsigned array, modified and returned);
    ``tmp``: scratch of at least ``len(x)`` elements of ``x``'s dtype (else allocated)."""
    dtype = x.dtype.type
    mask = dtype((1 << b) - 1)
    shift = dtype((b + 1) // 2)
    t = np.empty_like(x) if tmp is None or len(tmp) < len(x) else tmp[: len(x)]
    for mult, add in keys:  # in place: no temporary array per operation
        np.multiply(x, mult, out=x)
        np.add(x, add, out=x)
        np.bitwise_and(x, mask, out=x)
        np.right_shift(x, shift, out=t)
        np.bitwise_xor(x, t, out=x)
    return x


class _Bijection:
    """Version 2's permutation of ``0..n-1`` (``n >= 2``), evaluated block by block."""

    def __init__(self, seed: int, tag: int, n: int) -> None:
        self.b = (n - 1).bit_length()
        self.dtype: type = np.uint32 if self.b <= 32 else np.uint64
        self.keys = _round_keys(seed, tag, self.dtype)
        self.limit = self.dtype(n)
        self.base: np.ndarray = np.arange(_CHUNK, dtype=self.dtype)

    def block(self, start: int, k: int, tmp: np.ndarray | None = None) -> np.ndarray:
        """Values ``start .. start + k - 1``, in the unsigned work dtype: the bijection in
        cache-sized pieces, then the cycle walking of the whole block (few, larger steps)."""
        x: np.ndarray = np.empty(k, dtype=self.dtype)
        for a in range(0, k, _CHUNK):
            piece = x[a : a + _CHUNK]
            np.add(self.base[: len(piece)], self.dtype(start + a), out=piece)
            _bijection(piece, self.keys, self.b, tmp)
        self.walk(x, np.flatnonzero(x >= self.limit), tmp)
        return x

    def walk(
        self, x: np.ndarray, out_of_range: np.ndarray, tmp: np.ndarray | None, steps: int = -1
    ) -> np.ndarray:
        """Cycle walking (a bijection's cycle returns below n) of ``x[out_of_range]``, in
        place, at most ``steps`` times (-1: to the end); the positions still out of range."""
        while len(out_of_range) and steps != 0:
            y = _bijection(x[out_of_range], self.keys, self.b, tmp)
            x[out_of_range] = y
            out_of_range = out_of_range[y >= self.limit]
            steps -= 1
        return out_of_range


def permutation_v2(seed: int, tag: int, n: int, count: int | None = None) -> np.ndarray:
    """The first ``count`` (default ``n``) values of version 2's permutation of ``0..n-1``."""
    count = n if count is None else count
    if n <= 1:
        return np.zeros(max(min(count, n), 0), dtype=np.int64)
    check_seed(seed)
    perm = _Bijection(seed, tag, n)
    out = np.empty(count, dtype=np.int64)
    tmp: np.ndarray = np.empty(_CHUNK, dtype=perm.dtype)
    for start in range(0, count, _CHUNK):
        k = min(_CHUNK, count - start)
        out[start : start + k] = perm.block(start, k, tmp)
    return out


def index_array(
    seed: int, n: int, m: int, *, permute: bool = True, version: int = GENERATOR_VERSION
) -> np.ndarray:
    """The index array u (length ``m``, values in ``0..n-1``) of the paper's even sampling."""
    if n <= 0 or m <= 0:
        raise RPGConfigError(f"index_array needs n > 0 and m > 0, got n={n}, m={m}")
    check_version(version)
    dtype = np.int32 if n < 2**31 else np.int64
    if not permute:
        return (np.arange(m, dtype=np.int64) % n).astype(dtype)
    if version == HASHED_VERSION:
        return hashed_index(seed, n, m).astype(dtype)
    q, r = divmod(m, n)
    if version == BLOCKS_VERSION:
        extra4 = permutation_v4(seed, TAG_SELECT, n, count=r) if r else None
        k = permutation_v4(seed, TAG_SHUFFLE, m)
        u4 = (k % n).astype(dtype)
        if extra4 is not None:
            tail4 = k >= q * n
            u4[tail4] = extra4.astype(dtype)[k[tail4] - q * n]
        return u4
    # u = base[shuffle] with base = [0..n-1] * q ++ extra; computed without the random-access
    # gather: base[k] is k mod n for k < q*n, and extra[k - q*n] after.
    if version == 1:
        shuffle = permutation(seed, TAG_SHUFFLE, m)
        extra = permutation(seed, TAG_SELECT, n)[:r] if r else None
    else:
        shuffle = permutation_v2(seed, TAG_SHUFFLE, m)
        extra = permutation_v2(seed, TAG_SELECT, n, count=r) if r else None
    u = _mod(shuffle, n, dtype) if q else np.empty(m, dtype=dtype)
    if extra is not None:
        tail = shuffle >= q * n
        u[tail] = extra.astype(dtype)[shuffle[tail] - q * n]
    return u


def table_dtype(n: int) -> type:
    """The dtype of a ring's signed index (values below ``2 n``): int32 while it fits."""
    return np.int32 if 2 * n < 2**31 else np.int64


def signed_index(
    seed: int,
    n: int,
    m: int,
    *,
    permute: bool = True,
    reflect: bool = True,
    version: int = GENERATOR_VERSION,
    workers: int = 1,
) -> np.ndarray:
    """A ring's table, ``index_array(...) + n * (signs(...) < 0)``, element for element.

    The value ``u_j`` where the sign is +1 and ``n + u_j`` where it is -1 (dtype
    :func:`table_dtype`), computed in one pass of cache-sized blocks: the index, its remainder,
    the extra elements and the sign of a block are done before the next block starts, so no
    full-size intermediate array is written (version 1's sort is the exception: its whole index
    array comes first). Version 2's cycle walking stops after a few steps in each block; the
    few positions still walking (about 1%) finish together at the end. ``workers`` threads
    share the blocks (numpy releases the GIL).
    """
    if n <= 0 or m <= 0:
        raise RPGConfigError(f"signed_index needs n > 0 and m > 0, got n={n}, m={m}")
    check_version(version)
    check_seed(seed)
    if version == BLOCKS_VERSION:
        return _signed_index_v4(seed, n, m, permute, reflect, workers)
    table = _SignedTable(seed, n, m, permute, reflect, version)
    blocks = -(-m // _BLOCK)
    workers = max(1, min(int(workers), blocks))
    per = -(-blocks // workers) * _BLOCK
    ranges = [(a, min(a + per, m)) for a in range(0, m, per)]
    if workers == 1:
        late = [table.fill(a, b) for a, b in ranges]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            late = list(pool.map(lambda r: table.fill(*r), ranges))
    table.finish(late)
    return table.out


class _SignedTable:
    """:func:`signed_index`'s work: ``fill`` a range of blocks, then ``finish`` the positions
    whose cycle walk was cut short."""

    WALK = 4  # walking steps per block: (1/3)^4 of a block's positions or fewer are left over

    def __init__(
        self, seed: int, n: int, m: int, permute: bool, reflect: bool, version: int
    ) -> None:
        self.n, self.m = n, m
        self.out: np.ndarray = np.empty(m, dtype=table_dtype(n))
        self.offset = self.out.dtype.type(n)
        self.s_sign = _stream_start(seed, TAG_SIGN) if reflect else None
        self.kind = "mod" if not permute else ("v1" if version == 1 else str(version))
        self.shuffle: _Bijection | None = None
        if self.kind == "v1":  # a sort of all m keys: the whole array first
            self.u = index_array(seed, n, m, version=1)
        elif self.kind == str(HASHED_VERSION):
            self.s_hash = _stream_start(seed, TAG_HASH)
        elif self.kind != "mod":
            if m > 1:  # a permutation of one element is [0]
                self.shuffle = _Bijection(seed, TAG_SHUFFLE, m)
            self.work: type = np.uint32 if self.shuffle is None else self.shuffle.dtype
            q, r = divmod(m, n)
            extra = permutation_v2(seed, TAG_SELECT, n, count=r) if r else None
            self.extra: np.ndarray | None = None if extra is None else extra.astype(self.work)
            self.q, self.whole = q, self.work(q * n)

    def fill(self, first: int, last: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Blocks starting in [first, last); the (positions, walk so far, sign part) of those
        whose walk is not done."""
        tmp = np.empty(_CHUNK, dtype=np.uint64)
        late = []
        for start in range(first, last, _BLOCK):
            k = min(_BLOCK, self.m - start)
            block = self.out[start : start + k]
            u, walking, x = self._index(start, k, tmp)
            block[...] = u
            if self.s_sign is not None:
                for a in range(0, k, _CHUNK):
                    piece = block[a : a + _CHUNK]
                    negative = _top_bits(self.s_sign, start + a, len(piece), tmp)
                    piece += negative.astype(self.out.dtype) * self.offset
            if walking is not None and len(walking):
                assert x is not None
                sign_part = block[walking] - u[walking].astype(self.out.dtype)
                late.append((walking + start, x[walking], sign_part))
        return late

    def _index(
        self, start: int, k: int, tmp: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``index_array(...)[start : start + k]``, except at the returned positions (local),
        whose walk is not done (version 2), and version 2's shuffle values ``x``."""
        if self.kind == "mod":
            return np.arange(start, start + k, dtype=np.int64) % self.n, None, None
        if self.kind == "v1":
            return self.u[start : start + k], None, None
        if self.kind == str(HASHED_VERSION):
            u = np.empty(k, dtype=np.uint64)
            modulus = np.uint64(self.n)
            for a in range(0, k, _CHUNK):
                piece = u[a : a + _CHUNK]
                np.remainder(_stream_block(self.s_hash, start + a, len(piece)), modulus, out=piece)
            return u, None, None
        if self.shuffle is None:
            x: np.ndarray = np.zeros(k, dtype=self.work)
            walking = None
        else:
            x = np.empty(k, dtype=self.work)
            sh = self.shuffle
            scratch: np.ndarray = tmp.view(self.work)
            for a in range(0, k, _CHUNK):
                piece = x[a : a + _CHUNK]
                np.add(sh.base[: len(piece)], sh.dtype(start + a), out=piece)
                _bijection(piece, sh.keys, sh.b, scratch)
            walking = sh.walk(x, np.flatnonzero(x >= sh.limit), scratch, self.WALK)
        return self._base(x), walking, x

    def _base(self, x: np.ndarray) -> np.ndarray:
        """``base[x]``: ``x mod n`` below ``q n``, the extra elements above (a value of an
        unfinished walk, ``>= m``, gives a placeholder that :meth:`finish` replaces)."""
        modulus = self.work(self.n)
        if self.extra is None:  # base[k] = k mod n everywhere
            return np.remainder(x, modulus)
        last = self.work(len(self.extra) - 1)
        if not self.q:  # m < n: base is the extra elements only
            return self.extra[np.minimum(x, last)]
        u = np.remainder(x, modulus)
        tail = np.flatnonzero(x >= self.whole)
        u[tail] = self.extra[np.minimum(x[tail] - self.whole, last)]
        return u

    def finish(self, late: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]) -> None:
        """The positions whose walk was cut short: walked to the end, all together."""
        parts = [p for chunk in late for p in chunk]
        if not parts:
            return
        assert self.shuffle is not None
        positions = np.concatenate([p for p, _, _ in parts])
        x = np.concatenate([v for _, v, _ in parts])
        sign_part = np.concatenate([s for _, _, s in parts])
        self.shuffle.walk(x, np.arange(len(x)), None)
        self.out[positions] = self._base(x).astype(self.out.dtype) + sign_part


def hashed_index(seed: int, n: int, m: int) -> np.ndarray:
    """Version 3's index array: ``stream(seed, HASH, m) mod n`` (int64), HashedNets' hash of
    each position (with replacement: the elements are not used evenly)."""
    out = np.empty(m, dtype=np.int64)
    nn_ = np.uint64(n)
    for start, block in _stream_blocks(seed, TAG_HASH, m):
        block %= nn_
        out[start : start + len(block)] = block.view(np.int64)  # < n < 2**63: the same bits
    return out


def _mod(x: np.ndarray, n: int, dtype: type) -> np.ndarray:
    """``x % n`` as ``dtype``, in cache-sized blocks."""
    out: np.ndarray = np.empty(len(x), dtype=dtype)
    for start in range(0, len(x), _CHUNK):
        out[start : start + _CHUNK] = x[start : start + _CHUNK] % n
    return out


def signs(
    seed: int, m: int, *, reflect: bool = True, version: int = GENERATOR_VERSION
) -> np.ndarray:
    """The reflection b in {+1, -1}^m as int8."""
    out = np.ones(m, dtype=np.int8)
    if reflect and check_version(version) == BLOCKS_VERSION:
        out -= 2 * sign_bits_v4(seed, m).astype(np.int8)
    elif reflect:
        for start, block in _stream_blocks(seed, TAG_SIGN, m):
            top = (block >> np.uint64(63)).astype(np.int8)
            out[start : start + len(block)] -= 2 * top
    return out


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a hash (used to derive a ring's seed from its name)."""
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & MASK64
    return h


def derive_seed(seed: int, name: str) -> int:
    """The seed of the ring called ``name`` in a model converted with ``seed``.

    ``mix64(seed ^ fnv1a64(utf8(name))) >> 1`` (63 bits, so it stays a non-negative int64).
    """
    return mix64_int(check_seed(seed) ^ fnv1a64(name.encode("utf-8"))) >> 1


def digest(u: np.ndarray, b: np.ndarray) -> str:
    """sha256 of an index array and sign vector (little-endian int64 then int8), for checks."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(u, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(b, dtype="i1").tobytes())
    return h.hexdigest()


# --- version 4: two-level permutation (blocks of V4_BLOCK), sign bits 64 per stream output ------
V4_BITS = 16
V4_BLOCK = 1 << V4_BITS  # positions per block of version 4's permutation (uint16 arithmetic)
V4_KEYS = 16  # tag offset of the per-block keys stream
V4_SHORT = 32  # tag offset of the short block's order
_V4_ROWS = 2  # blocks per piece of signed_index_v4 (128K positions: cache-sized)
_T4 = np.arange(V4_BLOCK, dtype=np.uint16)


class _BlockPerm:
    """Version 4's permutation of ``0..n-1`` (see the module docstring)."""

    def __init__(self, seed: int, tag: int, n: int) -> None:
        self.n = n
        self.nb = -(-n // V4_BLOCK)
        self.short = n - (self.nb - 1) * V4_BLOCK  # size of the last block, 1..V4_BLOCK
        order = permutation_v2(seed, tag, self.nb)
        last = int(order[-1])
        gap = V4_BLOCK - self.short
        self.start: np.ndarray = order * V4_BLOCK - gap * (order > last)  # int64
        keys = stream(seed, tag + V4_KEYS, self.nb)
        low = np.uint64(V4_BLOCK - 1)
        self.a: np.ndarray = ((keys & low) | np.uint64(1)).astype(np.uint16)
        self.c: np.ndarray = ((keys >> np.uint64(32)) & low).astype(np.uint16)
        self.tail: np.ndarray | None = None
        if self.short < V4_BLOCK:
            self.tail = permutation_v2(seed, tag + V4_SHORT, self.short)

    def inner_rows(self, first: int, last: int) -> np.ndarray:
        """The within-block values (uint16, shape (last - first, V4_BLOCK)) of full blocks:
        ``(a t + c) mod 2**16`` is uint16 arithmetic as it wraps."""
        x: np.ndarray = self.a[first:last, None] * _T4[None, :]
        x += self.c[first:last, None]
        return x

    def values(self, j: np.ndarray) -> np.ndarray:
        """The permutation at positions ``j`` (int64 array), int64."""
        block = j >> V4_BITS
        t = (j & (V4_BLOCK - 1)).astype(np.uint16)
        inner = (self.a[block] * t + self.c[block]).astype(np.int64)  # uint16: mod 2**16
        if self.tail is not None:
            short = block == self.nb - 1
            inner[short] = self.tail[t[short]]
        out: np.ndarray = self.start[block] + inner
        return out

    def head(self, count: int, dtype: type = np.int64) -> np.ndarray:
        """Values ``0 .. count - 1`` as ``dtype`` (which holds ``n - 1``), a block at a time."""
        full = min(count // V4_BLOCK, self.nb - (self.tail is not None))
        out: np.ndarray = np.empty(count, dtype=dtype)
        if full:
            rows = out[: full * V4_BLOCK].reshape(full, V4_BLOCK)
            np.add(self.inner_rows(0, full), self.start[:full, None].astype(dtype), out=rows)
        j = np.arange(full * V4_BLOCK, count, dtype=np.int64)
        out[full * V4_BLOCK :] = self.values(j)
        return out


def permutation_v4(seed: int, tag: int, n: int, count: int | None = None) -> np.ndarray:
    """The first ``count`` (default ``n``) values of version 4's permutation of ``0..n-1``."""
    count = n if count is None else count
    check_seed(seed)
    if n <= 1:
        return np.zeros(max(min(count, n), 0), dtype=np.int64)
    return _BlockPerm(seed, tag, n).head(count)


def sign_bits_v4(seed: int, m: int) -> np.ndarray:
    """Version 4's sign bits (uint8, 1 where the sign is -1): bit ``j mod 64`` of output
    ``j // 64`` of ``stream(seed, SIGN, ceil(m / 64))``."""
    words = stream(seed, TAG_SIGN, -(-m // 64)).astype("<u8")
    bits: np.ndarray = np.unpackbits(words.view(np.uint8), bitorder="little")[:m]
    return bits


def _signed_index_v4(
    seed: int, n: int, m: int, permute: bool, reflect: bool, workers: int
) -> np.ndarray:
    """:func:`signed_index` for version 4: pieces of ``_V4_ROWS`` blocks; in a block whose
    base positions are all below ``q n`` the value is ``(start mod n) + inner``, less ``n``
    when that reaches ``n`` (no division per position)."""
    dtype = table_dtype(n)
    out: np.ndarray = np.empty(m, dtype=dtype)
    bits = sign_bits_v4(seed, m) if reflect else None
    q, r = divmod(m, n)
    whole = q * n
    if not permute:
        for a in range(0, m, _BLOCK):
            piece = out[a : a + _BLOCK]
            piece[...] = np.arange(a, a + len(piece), dtype=np.int64) % n
            if bits is not None:
                piece += bits[a : a + len(piece)].astype(dtype) * dtype(n)
        return out
    ext: np.ndarray = np.zeros(0, dtype=dtype)
    if r:  # m > n > 1 or 1 < m < n: the extra elements, as the table's dtype
        ext = _BlockPerm(seed, TAG_SELECT, n).head(r, dtype) if n > 1 else np.zeros(r, dtype)
    if m == 1:
        perm = None
        rows_full = 0
    else:
        perm = _BlockPerm(seed, TAG_SHUFFLE, m)
        rows_full = perm.nb - (perm.tail is not None)
    fast = n >= V4_BLOCK and dtype == np.int32

    def base(k: np.ndarray) -> np.ndarray:  # base[k] for int64 k (flattened)
        k = k.ravel()
        u: np.ndarray = (k % n).astype(dtype)
        tail = np.flatnonzero(k >= whole)
        if len(tail):
            u[tail] = ext[k[tail] - whole]
        return u

    def rows(first: int, last: int) -> None:
        assert perm is not None
        scratch = np.empty((_V4_ROWS, V4_BLOCK), dtype=np.uint32)
        for j0 in range(first, last, _V4_ROWS):
            j1 = min(j0 + _V4_ROWS, last)
            view = out[j0 * V4_BLOCK : j1 * V4_BLOCK].reshape(j1 - j0, V4_BLOCK)
            inner = perm.inner_rows(j0, j1)
            start = perm.start[j0:j1]
            if fast:  # every row as if below q n; the rows that are not are redone below
                uv = view.view(np.uint32)
                np.add(inner, (start % n).astype(np.uint32)[:, None], out=uv)
                np.subtract(uv, np.uint32(n), out=scratch[: len(uv)])  # wraps where uv < n
                np.minimum(uv, scratch[: len(uv)], out=uv)
                redo = np.flatnonzero(start + V4_BLOCK > whole).tolist()
            else:
                redo = list(range(j1 - j0))
            for i in redo:
                s0 = int(start[i])
                if s0 >= whole:  # extra elements only: a window of them
                    view[i] = ext[inner[i].astype(np.int64) + (s0 - whole)]
                else:
                    view[i] = base(inner[i].astype(np.int64) + s0)
            if bits is not None:
                b = bits[j0 * V4_BLOCK : j1 * V4_BLOCK].reshape(view.shape)
                sign: np.ndarray = scratch[: len(view)].view(dtype)
                np.multiply(b, dtype(n), out=sign)
                view += sign

    workers = max(1, min(int(workers), -(-rows_full // _V4_ROWS)))
    per = -(-rows_full // workers // _V4_ROWS) * _V4_ROWS if rows_full else 0
    spans = [(a, min(a + per, rows_full)) for a in range(0, rows_full, per)] if per else []
    if workers == 1:
        for s in spans:
            rows(*s)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda s: rows(*s), spans))
    rest = rows_full * V4_BLOCK
    if rest < m:
        j = np.arange(rest, m, dtype=np.int64)
        k = perm.values(j) if perm is not None else np.zeros(1, np.int64)
        piece = out[rest:]
        piece[...] = base(k)
        if bits is not None:
            piece += bits[rest:].astype(dtype) * dtype(n)
    return out
