"""convgen.golden.gemm against independent pure-Python computations.

Every expected value here comes from Python integers (triple loops, ``%``), never from
golden/ itself, so the golden model cannot vouch for itself.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from convgen.golden.gemm import check_operand, gemm, tile_schedule, tiled_gemm, wrap
from convgen.core.params import ConfigError

SIGNS = list(itertools.product([True, False], repeat=2))  # (a_signed, b_signed)
WIDTHS = [(8, 8), (4, 4), (16, 16), (32, 32), (4, 16), (32, 8)]


# ----------------------------------------------------------------------------- helpers

def op_range(width: int, is_signed: bool) -> tuple[int, int]:
    if is_signed:
        return -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return 0, 2 ** width - 1


def rand_matrix(rng: random.Random, rows: int, cols: int, width: int, is_signed: bool) -> list[list[int]]:
    """Random values with the extremes mixed in (they are where overflow happens)."""
    lo, hi = op_range(width, is_signed)
    pool = [lo, hi, 0, lo + 1, hi - 1]

    def one():
        return rng.choice(pool) if rng.random() < 0.3 else rng.randint(lo, hi)

    return [[one() for _ in range(cols)] for _ in range(rows)]


def matmul_py(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    m, k, n = len(a), len(b), len(b[0])
    out = [[0] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            s = 0
            for t in range(k):
                s += a[i][t] * b[t][j]
            out[i][j] = s
    return out


def wrap_py(v: int, width: int, is_signed: bool) -> int:
    mod = 2 ** width
    if is_signed:
        return (v + mod // 2) % mod - mod // 2
    return v % mod


def as_py(c) -> list[list[int]]:
    return [[int(x) for x in row] for row in np.asarray(c).tolist()]


def shapes(rng: random.Random):
    fixed = [(1, 1, 1), (3, 1, 4), (1, 5, 7), (6, 4, 1), (1, 1, 9), (9, 1, 1), (1, 7, 1)]
    rand = [(rng.randint(1, 9), rng.randint(1, 12), rng.randint(1, 9)) for _ in range(4)]
    return fixed + rand


# ----------------------------------------------------------------------------- gemm

@pytest.mark.parametrize("a_signed,b_signed", SIGNS)
@pytest.mark.parametrize("a_width,b_width", WIDTHS)
def test_gemm_matches_python_triple_loop(a_width, b_width, a_signed, b_signed):
    rng = random.Random(f"{a_width}{b_width}{a_signed}{b_signed}")
    for m, k, n in shapes(rng):
        a = rand_matrix(rng, m, k, a_width, a_signed)
        b = rand_matrix(rng, k, n, b_width, b_signed)
        c = gemm(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), a_width=a_width,
                 b_width=b_width, a_signed=a_signed, b_signed=b_signed)
        assert np.asarray(c).shape == (m, n)
        assert as_py(c) == matmul_py(a, b), (m, k, n)


@pytest.mark.parametrize("a_signed,b_signed", SIGNS)
def test_gemm_exact_beyond_int64(a_signed, b_signed):
    """32-bit extremes with K large enough that an int64 sum would overflow."""
    lo_a, hi_a = op_range(32, a_signed)
    lo_b, hi_b = op_range(32, b_signed)
    for k in (1, 2, 3, 7, 64):
        for av, bv in itertools.product((lo_a, hi_a), (lo_b, hi_b)):
            a = [[av] * k, [hi_a] * k]
            b = [[bv, lo_b, 1] for _ in range(k)]
            c = gemm(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), a_width=32,
                     b_width=32, a_signed=a_signed, b_signed=b_signed)
            assert as_py(c) == matmul_py(a, b), (k, av, bv)
    # the largest sum is genuinely outside int64, so the test above can catch a wrap
    assert 64 * max(abs(lo_a), hi_a) * max(abs(lo_b), hi_b) >= 2 ** 63


@pytest.mark.parametrize("a_signed,b_signed", SIGNS)
@pytest.mark.parametrize("acc_width", [1, 8, 17, 32, 63, 64])
def test_gemm_acc_width_wraps_like_python_modulo(acc_width, a_signed, b_signed):
    rng = random.Random(f"acc{acc_width}{a_signed}{b_signed}")
    acc_signed = a_signed or b_signed
    for a_width, b_width in [(8, 8), (32, 32), (16, 4)]:
        for m, k, n in [(1, 1, 1), (3, 40, 2), (2, 5, 4), (4, 1, 3)]:
            a = rand_matrix(rng, m, k, a_width, a_signed)
            b = rand_matrix(rng, k, n, b_width, b_signed)
            c = gemm(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), a_width=a_width,
                     b_width=b_width, a_signed=a_signed, b_signed=b_signed, acc_width=acc_width)
            want = [[wrap_py(v, acc_width, acc_signed) for v in row] for row in matmul_py(a, b)]
            assert as_py(c) == want


# ----------------------------------------------------------------------------- wrap

@pytest.mark.parametrize("is_signed", [True, False])
@pytest.mark.parametrize("width", [1, 2, 7, 8, 16, 31, 32, 33, 63, 64])
def test_wrap_matches_python_modulo(width, is_signed):
    rng = random.Random(f"wrap{width}{is_signed}")
    mod = 2 ** width
    special = [0, 1, -1, mod, -mod, mod - 1, -mod + 1, mod // 2, mod // 2 - 1, -(mod // 2),
               -(mod // 2) - 1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1, 2 ** 64, 3 * 2 ** 90 + 5,
               -(7 * 2 ** 100) - 3]
    values = special + [rng.randint(-(2 ** 130), 2 ** 130) for _ in range(200)] \
        + [rng.randint(-4 * mod, 4 * mod) for _ in range(200)]
    grid = np.array(values, dtype=object).reshape(-1, 1)
    got = wrap(grid, width, is_signed)
    assert [int(x) for x in np.asarray(got).reshape(-1)] == [wrap_py(v, width, is_signed) for v in values]
    lo, hi = op_range(width, is_signed)
    assert all(lo <= int(x) <= hi for x in np.asarray(got).reshape(-1))


def test_wrap_int64_input():
    x = np.array([[np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0]], dtype=np.int64)
    for width, sgn in [(64, True), (64, False), (32, True), (32, False), (8, True)]:
        got = [int(v) for v in np.asarray(wrap(x, width, sgn)).reshape(-1)]
        assert got == [wrap_py(int(v), width, sgn) for v in x.reshape(-1)]


# ----------------------------------------------------------------------------- check_operand

@pytest.mark.parametrize("name", ["a", "b"])
@pytest.mark.parametrize("width,is_signed", [(8, True), (8, False), (4, True), (16, False), (32, True)])
def test_check_operand_out_of_range_names_operand_and_range(name, width, is_signed):
    lo, hi = op_range(width, is_signed)
    allowed = f"{name} values must be in {lo}..{hi}"
    ok = np.array([[lo, hi]], dtype=np.int64)
    assert check_operand(name, ok, width, is_signed).tolist() == [[lo, hi]]
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ConfigError) as e:
            check_operand(name, np.array([[0, bad]], dtype=np.int64), width, is_signed)
        assert allowed in str(e.value)


def test_check_operand_exact_message_int8():
    with pytest.raises(ConfigError, match=r"a values must be in -128\.\.127"):
        check_operand("a", [[0, 128]], 8, True)
    with pytest.raises(ConfigError, match=r"b values must be in 0\.\.255"):
        check_operand("b", [[-1, 3]], 8, False)


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=np.int64), np.zeros((2, 2, 2), dtype=np.int64),
                                 np.int64(5), [1, 2, 3]])
def test_check_operand_rejects_non_2d(bad):
    with pytest.raises(ConfigError) as e:
        check_operand("b", bad, 8, True)
    assert str(e.value).startswith("b ") and "2-D" in str(e.value)


@pytest.mark.parametrize("bad", [np.ones((2, 2)), np.array([[1.0, 2.0]], dtype=np.float32),
                                 np.array([[True, False]]), np.array([["1", "2"]])])
def test_check_operand_rejects_non_integer_dtype(bad):
    with pytest.raises(ConfigError) as e:
        check_operand("a", bad, 8, True)
    assert str(e.value).startswith("a ") and "integers" in str(e.value)


def test_gemm_errors():
    with pytest.raises(ConfigError, match="inner dimensions must match"):
        gemm(np.zeros((2, 3), dtype=np.int64), np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match=r"^a values must be in -128\.\.127"):
        gemm([[200]], [[1]])
    with pytest.raises(ConfigError, match=r"^b values must be in 0\.\.15"):
        gemm([[1]], [[16]], b_width=4, b_signed=False)
    with pytest.raises(ConfigError, match="^a .*integers"):
        gemm(np.ones((1, 1)), [[1]])


# ----------------------------------------------------------------------------- tiling

def test_tile_schedule_covers_every_output_once():
    rng = random.Random("tiles")
    cases = [(1, 1, 1, 1), (1, 1, 8, 8), (8, 8, 8, 8), (9, 7, 8, 8), (17, 3, 4, 2), (64, 65, 64, 64)]
    cases += [(rng.randint(1, 40), rng.randint(1, 40), rng.randint(1, 12), rng.randint(1, 12))
              for _ in range(60)]
    for m, n, rows, cols in cases:
        tiles = tile_schedule(m, n, rows, cols)
        count = [[0] * n for _ in range(m)]
        for t in tiles:
            assert 1 <= t.m <= rows and 1 <= t.n <= cols
            assert 0 <= t.m0 and t.m0 + t.m <= m and 0 <= t.n0 and t.n0 + t.n <= n
            for i in range(t.m0, t.m0 + t.m):
                for j in range(t.n0, t.n0 + t.n):
                    count[i][j] += 1
        assert all(c == 1 for row in count for c in row), (m, n, rows, cols)
        # ceil(M/rows) * ceil(N/cols) tiles, in row-major tile order
        assert len(tiles) == (-(-m // rows)) * (-(-n // cols))
        assert [(t.m0, t.n0) for t in tiles] == sorted((t.m0, t.n0) for t in tiles)


@pytest.mark.parametrize("m,n", [(0, 3), (3, 0), (-1, 2)])
def test_tile_schedule_rejects_empty(m, n):
    with pytest.raises(ConfigError, match="M must|N must"):
        tile_schedule(m, n, 2, 2)


@pytest.mark.parametrize("a_signed,b_signed", SIGNS)
def test_tiled_gemm_matches_numpy_matmul(a_signed, b_signed):
    rng = random.Random(f"tiled{a_signed}{b_signed}")
    cases = [(1, 1, 1, 1, 1), (8, 8, 8, 8, 8), (9, 5, 7, 8, 8), (3, 1, 10, 2, 4), (10, 3, 1, 4, 4)]
    cases += [(rng.randint(1, 20), rng.randint(1, 16), rng.randint(1, 20), rng.randint(1, 8),
               rng.randint(1, 8)) for _ in range(15)]
    for m, k, n, rows, cols in cases:
        a = np.array(rand_matrix(rng, m, k, 8, a_signed), dtype=np.int64)
        b = np.array(rand_matrix(rng, k, n, 8, b_signed), dtype=np.int64)
        c = tiled_gemm(a, b, rows, cols, a_signed=a_signed, b_signed=b_signed)
        np.testing.assert_array_equal(np.asarray(c, dtype=np.int64), np.matmul(a, b))
        assert np.asarray(c).shape == (m, n)


def test_tiled_gemm_with_wrap_and_wide_operands():
    rng = random.Random("tiledwrap")
    for m, k, n, rows, cols in [(5, 9, 7, 2, 3), (3, 4, 11, 4, 4), (1, 6, 1, 3, 3)]:
        a = rand_matrix(rng, m, k, 32, True)
        b = rand_matrix(rng, k, n, 32, False)
        exact = matmul_py(a, b)
        c = tiled_gemm(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), rows, cols,
                       a_width=32, b_width=32, a_signed=True, b_signed=False)
        assert as_py(c) == exact
        c = tiled_gemm(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), rows, cols,
                       a_width=32, b_width=32, a_signed=True, b_signed=False, acc_width=40)
        assert as_py(c) == [[wrap_py(v, 40, True) for v in row] for row in exact]
