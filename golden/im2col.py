"""Golden twin of :class:`convgen.hdl.im2col.Im2colAddressGenerator`.

- :func:`im2col`: the explicit patch matrix, built by slicing a padded NHWC image (no
  address arithmetic), one ``M x K`` matrix per group, columns ordered (kh, kw, c).
- :func:`address_stream`: the generator's output, element by element, computed in closed
  form from the loop indices (the hardware computes it incrementally).
- :func:`indirection_buffer`: one pointer per (output pixel, kh, kw) to a C-vector start.
- :func:`gather`: a memory model that rebuilds the patch matrix from a stream of addresses
  and pad flags, knowing only the documented ordering.
- :func:`conv_im2col` (patch matrix @ weights), which tests check against the convolution
  oracle :func:`convgen.golden.conv.conv2d_nhwc`.

Images are NHWC without the batch axis: ``x[h, w, c]``; element address ``(ih*W + iw)*C + ch``.
Weights are ``w[cout, kh, kw, c_per_group]`` (OHWI), output channel ``o`` belongs to group
``o // (cout/groups)``.
"""

from __future__ import annotations

import numpy as np

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError

__all__ = ["im2col", "address_stream", "indirection_buffer", "gather", "conv_im2col",
           "STREAM_FIELDS"]

STREAM_FIELDS = ("addr", "pad", "fill", "first", "last", "lane_last", "end")


def _check_image(x, layer: ConvLayer) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != (layer.h, layer.w, layer.c):
        raise ConfigError(f"image must have shape (h, w, c) = {(layer.h, layer.w, layer.c)}, not {x.shape}")
    return x


def im2col(x, layer: ConvLayer, pad_value: int = 0) -> np.ndarray:
    """Patch matrices ``[groups, OH*OW, KH*KW*C/groups]``; padded taps hold ``pad_value``."""
    x = _check_image(x, layer)
    L = layer
    xp = np.full((L.h + L.pad_top + L.pad_bottom, L.w + L.pad_left + L.pad_right, L.c), pad_value, dtype=x.dtype)
    xp[L.pad_top:L.pad_top + L.h, L.pad_left:L.pad_left + L.w] = x
    oh, ow, cg = L.out_h, L.out_w, L.c_per_group
    cols = []
    for kh in range(L.kh):
        for kw in range(L.kw):
            h0, w0 = kh * L.dil_h, kw * L.dil_w
            win = xp[h0:h0 + L.stride_h * (oh - 1) + 1:L.stride_h, w0:w0 + L.stride_w * (ow - 1) + 1:L.stride_w]
            cols.append(win.reshape(oh * ow, L.groups, cg))
    patches = np.stack(cols, axis=2)                       # [M, groups, KH*KW, cg]
    return np.ascontiguousarray(patches.transpose(1, 0, 2, 3).reshape(L.groups, oh * ow, L.kh * L.kw * cg))


def address_stream(layer: ConvLayer, tile_rows: int) -> dict[str, np.ndarray]:
    """The generator's elements in order, as arrays (see Im2colAddressGenerator)."""
    L = layer
    groups = 1 if L.indirect else L.groups
    cg = 1 if L.indirect else L.c_per_group
    M, K, R = L.gemm_m, L.kh * L.kw * cg, tile_rows
    T = -(-M // R)
    g, t, k, r = (a.ravel() for a in np.indices((groups, T, K, R)))
    mm = t * R + r
    fill = mm >= M
    oh, ow = mm // L.out_w, mm % L.out_w
    kh, kw, c = k // (L.kw * cg), (k // cg) % L.kw, k % cg
    ih = oh * L.stride_h - L.pad_top + kh * L.dil_h
    iw = ow * L.stride_w - L.pad_left + kw * L.dil_w
    pad = fill | (ih < 0) | (ih >= L.h) | (iw < 0) | (iw >= L.w)
    if L.indirect:
        addr = (ih * L.w + iw) * L.c
    else:
        addr = (ih * L.w + iw) * L.c + g * cg + c
    addr = np.where(pad, 0, addr)
    end = np.zeros(len(addr), dtype=bool)
    end[-1] = True
    return {"addr": addr.astype(np.int64), "pad": pad.astype(np.int64), "fill": fill.astype(np.int64),
            "first": (k == 0).astype(np.int64), "last": (k == K - 1).astype(np.int64),
            "lane_last": (r == R - 1).astype(np.int64), "end": end.astype(np.int64)}


def indirection_buffer(layer: ConvLayer) -> tuple[np.ndarray, np.ndarray]:
    """``(pointers, pad)``, each ``[OH*OW, KH*KW]``: element address of ``x[ih, iw, 0]`` (the
    C-vector start) per output pixel and tap, by explicit loops; pad taps get pointer 0."""
    L = layer
    ptr = np.zeros((L.gemm_m, L.kh * L.kw), dtype=np.int64)
    pad = np.zeros_like(ptr)
    for oh in range(L.out_h):
        for ow in range(L.out_w):
            for kh in range(L.kh):
                for kw in range(L.kw):
                    ih = oh * L.stride_h - L.pad_top + kh * L.dil_h
                    iw = ow * L.stride_w - L.pad_left + kw * L.dil_w
                    mi, ki = oh * L.out_w + ow, kh * L.kw + kw
                    if 0 <= ih < L.h and 0 <= iw < L.w:
                        ptr[mi, ki] = (ih * L.w + iw) * L.c
                    else:
                        pad[mi, ki] = 1
    return ptr, pad


def gather(memory, stream: dict, layer: ConvLayer, tile_rows: int, pad_value: int = 0) -> np.ndarray:
    """Memory model: read ``memory`` (flat NHWC) at each streamed address (``pad_value`` where
    ``pad``) and place it by the documented order. Returns ``[groups, M, K]`` (im2col mode) or
    the ``[M, KH*KW]`` pointer matrix read back (indirection mode, pointers not dereferenced)."""
    L = layer
    memory = np.asarray(memory).ravel()
    addr, pad = np.asarray(stream["addr"]), np.asarray(stream["pad"]).astype(bool)
    n = L.elements(tile_rows)
    if len(addr) != n:
        raise ConfigError(f"stream has {len(addr)} elements, the layer needs {n}")
    if L.indirect:
        values = np.where(pad, 0, addr)
    else:
        values = np.where(pad, pad_value, memory[np.where(pad, 0, addr)])
    groups = 1 if L.indirect else L.groups
    K = L.gemm_k
    T = -(-L.gemm_m // tile_rows)
    # element order: [g][t][k][r]  ->  [g][t*R + r][k]
    v = values.reshape(groups, T, K, tile_rows).transpose(0, 1, 3, 2).reshape(groups, T * tile_rows, K)
    v = v[:, :L.gemm_m]
    return v[0] if L.indirect else v


def conv_im2col(x, w, layer: ConvLayer) -> np.ndarray:
    """Convolution as one GEMM per group: ``y[oh, ow, cout]`` (int64)."""
    L = layer
    w = np.asarray(w, dtype=np.int64)
    cout = w.shape[0]
    if cout % L.groups or w.shape[1:] != (L.kh, L.kw, L.c_per_group):
        raise ConfigError(f"weights must be [cout, {L.kh}, {L.kw}, {L.c_per_group}] with cout divisible by "
                          f"groups={L.groups}, not {w.shape}")
    patches = im2col(np.asarray(x, dtype=np.int64), L)
    og = cout // L.groups
    y = np.concatenate([patches[g] @ w[g * og:(g + 1) * og].reshape(og, -1).T for g in range(L.groups)], axis=1)
    return y.reshape(L.out_h, L.out_w, cout)
