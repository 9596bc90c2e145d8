"""Exact integer Winograd convolution, the golden twin of :mod:`convgen.hdl.winograd`.

The transform matrices, their sources and the identity check are in :mod:`convgen.core.winograd`.

The scaling choice
------------------
G has entries 1/2, so convgen uses the integer matrix ``G2 = 2 G``. The transformed filter
``U4 = G2 g G2^T = 4 U`` is integer; the element-wise products and their channel sum are 4x
the true ones, and the output transform divides by 4 at the very end:
``Y = (A^T M4 A) >> 2``. The shift is exact (A^T M4 A is 4 times an integer), so no rounding
happens anywhere. The factor is carried into the output transform, not into a requant scale,
so the block's output is the plain int32 convolution and needs no extra bookkeeping.

Layouts: feature maps are NCHW without the batch: ``x[C_in, H, W]``, weights
``w[C_out, C_in, 3, 3]``, output ``y[C_out, H, W]`` (stride 1, padding 1, cross-correlation as
in every CNN framework).
"""

from __future__ import annotations

import numpy as np

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError, check_int
from convgen.core.winograd import AT, AT_4, BT, BT_4, FILTER_SCALE, FILTER_SHIFT, G, G2, G_4, check_identity

from .conv import conv2d_nchw

__all__ = [
    "BT", "G", "AT", "G2", "FILTER_SCALE", "FILTER_SHIFT", "BT_4", "G_4", "AT_4",
    "input_transform", "filter_transform", "output_transform", "winograd_tile",
    "f23_1d", "direct_1d", "conv3x3_direct", "conv3x3_winograd", "tile_positions",
    "extract_tiles", "check_identity", "float_error_analysis", "check_conv_operands",
]

# ---- integer transforms (object arrays avoid any int64 overflow question) -----------------
def _as_int(x, shape, name):
    arr = np.asarray(x)
    if arr.shape[-len(shape):] != shape:
        raise ConfigError(f"{name} must have trailing shape {shape}, not {arr.shape}")
    return arr.astype(object)


def input_transform(d) -> np.ndarray:
    """``V = B^T d B`` of a 4x4 tile (or a stack ``[..., 4, 4]``)."""
    d = _as_int(d, (4, 4), "d")
    bt = BT.astype(object)
    return np.einsum("ij,...jk,lk->...il", bt, d, bt)


def filter_transform(g) -> np.ndarray:
    """``U4 = (2G) g (2G)^T = 4 G g G^T`` of a 3x3 filter (or a stack ``[..., 3, 3]``)."""
    g = _as_int(g, (3, 3), "g")
    g2 = G2.astype(object)
    return np.einsum("ij,...jk,lk->...il", g2, g, g2)


def output_transform(m4, shift: int = FILTER_SHIFT) -> np.ndarray:
    """``Y = (A^T M A) >> shift`` (arithmetic shift = floor division by ``2**shift``; exact
    when M comes from the scaled filter transform) of a 4x4 tile -> 2x2."""
    m4 = _as_int(m4, (4, 4), "m")
    at = AT.astype(object)
    full = np.einsum("ij,...jk,lk->...il", at, m4, at)
    return np.vectorize(lambda v: v >> shift, otypes=[object])(full)


def winograd_tile(d_tiles, g_filters) -> np.ndarray:
    """One 2x2 output tile summed over channels: ``d_tiles[C, 4, 4]``, ``g_filters[C, 3, 3]``."""
    v = input_transform(d_tiles)
    u = filter_transform(g_filters)
    m4 = (u * v).sum(axis=0)
    return output_transform(m4)


def f23_1d(d, g) -> list[int]:
    """1-D F(2,3): ``y[0..1]`` of a 4-sample signal and a 3-tap filter, with ``G2 = 2G``:
    ``y = (A^T [(G2 g) * (B^T d)]) >> 1``."""
    d = [int(v) for v in d]
    g = [int(v) for v in g]
    v = [sum(int(BT[a][b]) * d[b] for b in range(4)) for a in range(4)]
    u = [sum(int(G2[a][b]) * g[b] for b in range(3)) for a in range(4)]
    return [sum(int(AT[o][a]) * u[a] * v[a] for a in range(4)) >> 1 for o in range(2)]


def direct_1d(d, g) -> list[int]:
    return [sum(int(d[o + k]) * int(g[k]) for k in range(3)) for o in range(2)]


# ---- full feature maps --------------------------------------------------------------------
def check_conv_operands(x, w, *, data_width: int = 8, weight_width: int = 8):
    """Return ``(x[C_in, H, W], w[C_out, C_in, 3, 3])`` as int64 or raise ConfigError."""
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 3:
        raise ConfigError(f"x must be C_in x H x W (NCHW without batch), not shape {x.shape}")
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ConfigError(f"w must be C_out x C_in x 3 x 3, not shape {w.shape}")
    if w.shape[1] != x.shape[0]:
        raise ConfigError(f"w has C_in={w.shape[1]} but x has C_in={x.shape[0]}")
    if min(x.shape) < 1 or w.shape[0] < 1:
        raise ConfigError(f"every dimension must be >= 1: x {x.shape}, w {w.shape}")
    for name, arr, width in (("x", x, data_width), ("w", w, weight_width)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"{name} must hold integers, not {arr.dtype}")
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        if int(arr.min()) < lo or int(arr.max()) > hi:
            raise ConfigError(f"{name} values must be in {lo}..{hi} (int{width}), "
                              f"found {int(arr.min())}..{int(arr.max())}")
    return x.astype(np.int64), w.astype(np.int64)


def conv3x3_direct(x, w) -> np.ndarray:
    """Direct 3x3 cross-correlation, stride 1, zero padding 1, int64: the convolution oracle
    :func:`convgen.golden.conv.conv2d_nchw` in this module's layout (``x[C_in, H, W]``,
    ``w[C_out, C_in, 3, 3]`` -> ``y[C_out, H, W]``)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    c_in, h, wd = x.shape
    return conv2d_nchw(x, w, ConvLayer.square(h, wd, c_in, 3, pad=1, c_out=w.shape[0]))


def tile_positions(h: int, w: int) -> list[tuple[int, int]]:
    """Top-left output coordinates ``(oy, ox)`` of the 2x2 output tiles covering H x W, row by
    row. The matching 4x4 input tile starts at ``(oy - 1, ox - 1)`` (padding 1), so adjacent
    input tiles overlap by 2. Odd H or W: the last tile row/column reaches past the map and its
    extra outputs are dropped."""
    check_int("H", h, 1)
    check_int("W", w, 1)
    return [(oy, ox) for oy in range(0, h, 2) for ox in range(0, w, 2)]


def extract_tiles(x) -> np.ndarray:
    """``x[C_in, H, W]`` -> ``tiles[T, C_in, 4, 4]`` in :func:`tile_positions` order, zero
    outside the map (padding 1 on the top/left, and up to 2 on the bottom/right)."""
    x = np.asarray(x, dtype=np.int64)
    c_in, h, w = x.shape
    th, tw = -(-h // 2), -(-w // 2)
    xp = np.zeros((c_in, 2 * th + 2, 2 * tw + 2), dtype=np.int64)
    xp[:, 1:h + 1, 1:w + 1] = x
    tiles = [xp[:, oy:oy + 4, ox:ox + 4] for oy, ox in tile_positions(h, w)]
    return np.stack(tiles)


def assemble(tiles_out, c_out: int, h: int, w: int) -> np.ndarray:
    """``tiles_out[C_out, T, 2, 2]`` -> ``y[C_out, H, W]`` (cropping odd edges)."""
    th, tw = -(-h // 2), -(-w // 2)
    t = np.asarray(tiles_out).reshape(c_out, th, tw, 2, 2)
    return t.transpose(0, 1, 3, 2, 4).reshape(c_out, 2 * th, 2 * tw)[:, :h, :w]


def conv3x3_winograd(x, w) -> np.ndarray:
    """3x3 stride-1 pad-1 convolution by exact integer F(2x2,3x3) on 4x4 tiles (overlap 2)."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    c_out = w.shape[0]
    _, h, wd = x.shape
    tiles = extract_tiles(x)                      # [T, C_in, 4, 4]
    v = input_transform(tiles)                    # [T, C_in, 4, 4]
    u = filter_transform(w)                       # [C_out, C_in, 4, 4]
    m4 = np.einsum("ocij,tcij->otij", u, v)      # [C_out, T, 4, 4]
    y = output_transform(m4)                      # [C_out, T, 2, 2]
    return assemble(y, c_out, h, wd).astype(np.int64)


# ---- float32 error analysis ---------------------------------------------------------------
def _float_winograd(x, w, at, g, bt, dtype):
    """Float F(m x m, 3x3) in ``dtype``: transforms and products all rounded to dtype."""
    m = at.shape[0]
    n = bt.shape[0]
    at, g, bt = (np.array([[float(v) for v in row] for row in mat], dtype=dtype) for mat in (at, g, bt))
    c_in, h, wd = x.shape
    th, tw = -(-h // m), -(-wd // m)
    xp = np.zeros((c_in, m * th + 2, m * tw + 2), dtype=dtype)
    xp[:, 1:h + 1, 1:wd + 1] = x
    u = np.einsum("ij,ocjk,lk->ocil", g, w.astype(dtype), g).astype(dtype)
    y = np.zeros((w.shape[0], m * th, m * tw), dtype=dtype)
    for ty in range(th):
        for tx in range(tw):
            d = xp[:, ty * m:ty * m + n, tx * m:tx * m + n]
            v = np.einsum("ij,cjk,lk->cil", bt, d, bt).astype(dtype)
            mm = np.einsum("ocij,cij->oij", u, v).astype(dtype)
            y[:, ty * m:(ty + 1) * m, tx * m:(tx + 1) * m] = np.einsum("ij,ojk,lk->oil", at, mm, at)
    return y[:, :h, :wd]


def float_error_analysis(seed: int = 0, shape=(16, 16, 16), c_out: int = 8, trials: int = 3) -> dict:
    """Error of float32 F(2x2,3x3), F(4x4,3x3) and float32 direct convolution against the exact
    float64 direct result, on N(0,1) data and on int8-valued data. Returns a dict of maxima
    (absolute error, and relative to the largest |y|)."""
    rng = np.random.default_rng(seed)
    out = {}
    for kind in ("normal", "int8"):
        res = {"F(2x2,3x3) float32": [], "F(4x4,3x3) float32": [], "direct float32": []}
        for _ in range(trials):
            if kind == "normal":
                x = rng.standard_normal(shape)
                w = rng.standard_normal((c_out, shape[0], 3, 3))
            else:
                x = rng.integers(-128, 128, size=shape).astype(np.float64)
                w = rng.integers(-128, 128, size=(c_out, shape[0], 3, 3)).astype(np.float64)
            ref = conv3x3_direct_float(x, w, np.float64)
            scale = float(np.abs(ref).max())
            cands = {
                "F(2x2,3x3) float32": _float_winograd(x, w, AT, G, BT, np.float32),
                "F(4x4,3x3) float32": _float_winograd(x, w, AT_4, G_4, BT_4, np.float32),
                "direct float32": conv3x3_direct_float(x, w, np.float32),
            }
            for name, y in cands.items():
                err = np.abs(y.astype(np.float64) - ref)
                res[name].append((float(err.max()), float(err.max() / scale),
                                  float(np.mean(np.round(y.astype(np.float64)) != ref)) if kind == "int8" else None))
        out[kind] = {name: {"max_abs_error": max(r[0] for r in v), "max_rel_error": max(r[1] for r in v),
                            **({"fraction_wrong_after_rounding": max(r[2] for r in v)} if kind == "int8" else {})}
                     for name, v in res.items()}
    out["setup"] = {"C_in,H,W": list(shape), "C_out": c_out, "trials": trials, "seed": seed,
                    "reference": "float64 direct convolution (exact for int8 data)"}
    return out


def conv3x3_direct_float(x, w, dtype) -> np.ndarray:
    x = np.asarray(x, dtype=dtype)
    w = np.asarray(w, dtype=dtype)
    c_in, h, wd = x.shape
    xp = np.zeros((c_in, h + 2, wd + 2), dtype=dtype)
    xp[:, 1:h + 1, 1:wd + 1] = x
    y = np.zeros((w.shape[0], h, wd), dtype=dtype)
    for ky in range(3):
        for kx in range(3):
            y += np.einsum("oc,chw->ohw", w[:, :, ky, kx], xp[:, ky:ky + h, kx:kx + wd]).astype(dtype)
    return y
