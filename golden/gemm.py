"""Exact integer GEMM, the golden twin of :class:`convgen.hdl.systolic.SystolicArray`.

``gemm`` is exact for any operand widths: it uses int64 matrix products when the sum cannot
overflow int64 and Python integers otherwise. With ``acc_width`` it reproduces the
hardware's wrap-around modulo ``2**acc_width`` (signed when either operand is signed).
``tile_schedule``/``tiled_gemm`` split an M x K x N problem into ``rows x cols`` output tiles,
the order in which convgen.sim streams them through the array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convgen.core.intrange import IntRange
from convgen.core.params import ConfigError, check_int

__all__ = ["check_operand", "gemm", "wrap", "Tile", "tile_schedule", "tiled_gemm"]


def check_operand(name: str, x, width: int, is_signed: bool) -> np.ndarray:
    """Return ``x`` as a 2-D int64 array, or raise ConfigError naming ``name`` and the range."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D matrix, not an array of shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must hold integers, not {arr.dtype}")
    rng = IntRange.of_operand(width, is_signed)
    kind = f"int{width}" if is_signed else f"uint{width}"
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < rng.lo or hi > rng.hi:
            raise ConfigError(
                f"{name} values must be in {rng.lo}..{rng.hi} ({kind}), found {lo}..{hi}")
    return arr.astype(np.int64)


def wrap(x, width: int, is_signed: bool) -> np.ndarray:
    """Reduce integers modulo ``2**width`` into the two's complement (or unsigned) range."""
    x = np.asarray(x, dtype=object)
    mod = 1 << width
    r = np.vectorize(lambda v: int(v) % mod, otypes=[object])(x)
    if is_signed:
        r = np.vectorize(lambda v: v - mod if v >= mod >> 1 else v, otypes=[object])(r)
    out_int64 = (width <= 63) or is_signed
    return r.astype(np.int64) if out_int64 else r


def gemm(a, b, *, a_width: int = 8, b_width: int = 8, a_signed: bool = True,
         b_signed: bool = True, acc_width: int | None = None) -> np.ndarray:
    """``C = A @ B`` exactly; wrapped to ``acc_width`` bits if given."""
    a = check_operand("a", a, a_width, a_signed)
    b = check_operand("b", b, b_width, b_signed)
    if a.shape[1] != b.shape[0]:
        raise ConfigError(f"inner dimensions must match: a is {a.shape[0]}x{a.shape[1]}, "
                          f"b is {b.shape[0]}x{b.shape[1]}")
    k = a.shape[1]
    prod = IntRange.of_operand(a_width, a_signed) * IntRange.of_operand(b_width, b_signed)
    total = prod.scale(max(k, 1))
    if -(1 << 63) <= total.lo and total.hi < (1 << 63):
        c = a @ b
    else:  # exact with Python integers
        c = a.astype(object) @ b.astype(object)
    if acc_width is not None:
        c = wrap(c, acc_width, a_signed or b_signed)
    return c


@dataclass(frozen=True)
class Tile:
    """One output tile: rows ``m0 .. m0+m-1`` and columns ``n0 .. n0+n-1`` of C."""

    m0: int
    n0: int
    m: int
    n: int


def tile_schedule(m: int, n: int, rows: int, cols: int) -> list[Tile]:
    """Output tiles of an M x N result in row-major tile order; edge tiles are partial."""
    check_int("M", m, 1)
    check_int("N", n, 1)
    return [Tile(m0, n0, min(rows, m - m0), min(cols, n - n0))
            for m0 in range(0, m, rows) for n0 in range(0, n, cols)]


def tiled_gemm(a, b, rows: int, cols: int, **kwargs) -> np.ndarray:
    """``gemm`` computed tile by tile, each tile zero-padded to ``rows x cols``."""
    a = np.asarray(a)
    b = np.asarray(b)
    m, n = a.shape[0], b.shape[1]
    out = None
    for t in tile_schedule(m, n, rows, cols):
        a_t = np.zeros((rows, a.shape[1]), dtype=np.int64)
        b_t = np.zeros((b.shape[0], cols), dtype=np.int64)
        a_t[:t.m] = a[t.m0:t.m0 + t.m]
        b_t[:, :t.n] = b[:, t.n0:t.n0 + t.n]
        c_t = gemm(a_t, b_t, **kwargs)
        if out is None:
            out = np.zeros((m, n), dtype=c_t.dtype)
        out[t.m0:t.m0 + t.m, t.n0:t.n0 + t.n] = c_t[:t.m, :t.n]
    return out
