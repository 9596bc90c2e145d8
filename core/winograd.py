"""Winograd transform matrices, shared by the RTL (:mod:`convgen.hdl.winograd`) and the golden
model (:mod:`convgen.golden.winograd`).

Transform matrices (checked against primary sources)
----------------------------------------------------
F(2,3), from Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016,
section 4.1 (equation 7)::

    B^T = [[1, 0,-1, 0],     G = [[  1,   0,   0],     A^T = [[1, 1, 1, 0],
           [0, 1, 1, 0],          [1/2, 1/2, 1/2],            [0, 1,-1,-1]]
           [0,-1, 1, 0],          [1/2,-1/2, 1/2],
           [0, 1, 0,-1]]          [  0,   0,   1]]

Cross-checked against andravin/wincnn (the paper author's generator, README, points
(0, 1, -1)); wincnn prints the same G and the same first three rows, and the last row of
A^T / B^T with the opposite sign ([0, 1, -1, 1] and [0, -1, 0, 1]), an equally valid choice of
the point at infinity. The paper's signs are used here. F(4,3) (float analysis only) is
wincnn's ``showCookToomFilter((0, 1, -1, 2, -2), 4, 3)`` output, which is also the matrix set
printed in the paper (section 4.2). :func:`check_identity` verifies every set symbolically
(exact fractions) on the basis vectors, so a mistyped entry cannot pass.

"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["BT", "G", "AT", "G2", "FILTER_SCALE", "FILTER_SHIFT", "BT_4", "G_4", "AT_4", "check_identity"]

# ---- F(2,3) / F(2x2,3x3) (Lavin & Gray 2016, eq. 7) ----------------------------------------
BT = np.array([[1, 0, -1, 0],
               [0, 1, 1, 0],
               [0, -1, 1, 0],
               [0, 1, 0, -1]], dtype=np.int64)
G = np.array([[Fraction(1), Fraction(0), Fraction(0)],
              [Fraction(1, 2), Fraction(1, 2), Fraction(1, 2)],
              [Fraction(1, 2), Fraction(-1, 2), Fraction(1, 2)],
              [Fraction(0), Fraction(0), Fraction(1)]], dtype=object)
AT = np.array([[1, 1, 1, 0],
               [0, 1, -1, -1]], dtype=np.int64)
FILTER_SCALE = 2        # G2 = 2 G is integer
FILTER_SHIFT = 2        # 2-D: U4 = G2 g G2^T = 4 U, so Y = (A^T M4 A) >> 2
G2 = np.array([[int(FILTER_SCALE * v) for v in row] for row in G], dtype=np.int64)

# ---- F(4,3) / F(4x4,3x3) (wincnn, points 0, 1, -1, 2, -2; float analysis only) -------------
BT_4 = np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], dtype=np.int64)
G_4 = np.array([[Fraction(1, 4), 0, 0],
                [Fraction(-1, 6), Fraction(-1, 6), Fraction(-1, 6)],
                [Fraction(-1, 6), Fraction(1, 6), Fraction(-1, 6)],
                [Fraction(1, 24), Fraction(1, 12), Fraction(1, 6)],
                [Fraction(1, 24), Fraction(-1, 12), Fraction(1, 6)],
                [0, 0, 1]], dtype=object)
AT_4 = np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], dtype=np.int64)


def check_identity(at, g, bt) -> None:
    """Exact check that ``A^T [(G g) * (B^T d)] == direct FIR`` for every basis pair (d_i, g_j).
    The algorithm is bilinear, so the basis pairs prove it for all inputs. Raises ValueError."""
    m, n = at.shape
    r = g.shape[1]
    if n != m + r - 1 or g.shape[0] != n or bt.shape != (n, n):
        raise ValueError("inconsistent transform shapes")
    for i in range(n):
        for j in range(r):
            d = [Fraction(int(k == i)) for k in range(n)]
            gg = [Fraction(int(k == j)) for k in range(r)]
            u = [sum(Fraction(g[a][b]) * gg[b] for b in range(r)) for a in range(n)]
            v = [sum(int(bt[a][b]) * d[b] for b in range(n)) for a in range(n)]
            y = [sum(int(at[o][a]) * u[a] * v[a] for a in range(n)) for o in range(m)]
            direct = [sum(d[o + k] * gg[k] for k in range(r)) for o in range(m)]
            if y != direct:
                raise ValueError(f"transform identity fails for d_{i}, g_{j}: {y} != {direct}")
