"""The convolution oracle: exact integer 2-D convolution, written once.

Every golden model and test that needs "the right answer" of a convolution calls
:func:`conv2d_nhwc` (or its layout adapter :func:`conv2d_nchw`): the im2col route
(:func:`convgen.golden.im2col.conv_im2col`), the Winograd engines, the quantized layers of
:mod:`convgen.golden.requant` and the conv engine. It is itself checked against plain Python
loops and against ONNX Runtime's ConvInteger/QLinearConv in the tests.

Semantics (ONNX ``ConvInteger`` / ``QLinearConv`` before requantization, cross-correlation as
in every CNN framework)::

    acc[n, oh, ow, o] = sum over kh, kw, ci of
        (xpad[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*Cg + ci] - x_zero_point)
        * (w[o, kh, kw, ci] - w_zero_point[o])

with ``g = o // (C_out/groups)``, ``Cg = C/groups``, and padded taps reading ``x_zero_point``
(what a real zero quantizes to), so they contribute nothing. Depthwise layers are
``groups == C`` with ``C_out = depth_multiplier * C``. The result is int64 and exact: no
wrapping (an int32 accumulator is the caller's choice, ``golden.quant.wrap32``).
"""

from __future__ import annotations

import numpy as np

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError

__all__ = ["conv2d_nhwc", "conv2d_nchw"]


def _zero_points(w_zero_point, c_out: int) -> np.ndarray:
    zw = np.asarray(w_zero_point, dtype=np.int64)
    if zw.ndim > 1 or zw.size not in (1, c_out):
        raise ConfigError(f"w_zero_point must be a scalar or one value per output channel ({c_out}), "
                          f"not shape {zw.shape}")
    return np.broadcast_to(zw.reshape(-1), (c_out,))


def conv2d_nhwc(x, w, layer: ConvLayer, x_zero_point=0, w_zero_point=0) -> np.ndarray:
    """``x[N, H, W, C]`` (or ``[H, W, C]``), ``w[C_out, KH, KW, C/groups]`` (OHWI) ->
    int64 ``acc[N, OH, OW, C_out]`` (or ``[OH, OW, C_out]``); geometry from ``layer``."""
    L = layer
    x = np.asarray(x, dtype=np.int64)
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    if x.shape[1:] != (L.h, L.w, L.c):
        raise ConfigError(f"x must have shape (n, h, w, c) = (n, {L.h}, {L.w}, {L.c}), not {x.shape}")
    w = np.asarray(w, dtype=np.int64)
    c_out = w.shape[0] if w.ndim == 4 else -1
    if w.ndim != 4 or w.shape[1:] != (L.kh, L.kw, L.c_per_group) or c_out % L.groups:
        raise ConfigError(f"w must have shape (c_out, {L.kh}, {L.kw}, {L.c_per_group}) with c_out divisible "
                          f"by groups={L.groups}, not {w.shape}")
    w = w - _zero_points(w_zero_point, c_out)[:, None, None, None]
    n = x.shape[0]
    xp = np.full((n, L.h + L.pad_top + L.pad_bottom, L.w + L.pad_left + L.pad_right, L.c),
                 int(x_zero_point), dtype=np.int64)
    xp[:, L.pad_top:L.pad_top + L.h, L.pad_left:L.pad_left + L.w] = x
    xp -= int(x_zero_point)
    oh, ow, cg, og = L.out_h, L.out_w, L.c_per_group, c_out // L.groups
    acc = np.zeros((n, oh, ow, c_out), dtype=np.int64)
    for kh in range(L.kh):
        for kw in range(L.kw):
            h0, w0 = kh * L.dil_h, kw * L.dil_w
            tap = xp[:, h0:h0 + L.stride_h * (oh - 1) + 1:L.stride_h, w0:w0 + L.stride_w * (ow - 1) + 1:L.stride_w]
            for g in range(L.groups):
                acc[..., g * og:(g + 1) * og] += np.einsum(
                    "nhwc,oc->nhwo", tap[..., g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, kh, kw, :])
    return acc if batched else acc[0]


def conv2d_nchw(x, w, layer: ConvLayer, x_zero_point=0, w_zero_point=0) -> np.ndarray:
    """ONNX layouts: ``x[N, C, H, W]`` (or ``[C, H, W]``), ``w[C_out, C/groups, KH, KW]`` (OIHW)
    -> int64 ``acc[N, C_out, OH, OW]`` (or ``[C_out, OH, OW]``). Same arithmetic as
    :func:`conv2d_nhwc` (it only transposes)."""
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim not in (3, 4) or w.ndim != 4:
        raise ConfigError(f"x must be [n, c, h, w] or [c, h, w] and w [c_out, c/groups, kh, kw], "
                          f"not {x.shape} and {w.shape}")
    xs = np.moveaxis(x, -3, -1)
    y = conv2d_nhwc(xs, w.transpose(0, 2, 3, 1), layer, x_zero_point, w_zero_point)
    return np.moveaxis(y, -1, -3)
