"""Golden twin of :class:`convgen.hdl.engine.ConvEngine`: the host's slicing of a layer, the
memory images it writes, the descriptor validity rules, and the engine's arithmetic composed
from the existing goldens.

The engine computes one quantized convolution layer as a sequence of output-stationary GEMM
tiles (docs/engine.md). This module is the single description of that decomposition:

- :func:`plan` slices a :class:`~convgen.core.layer.ConvLayer` for an engine of ``rows x cols``
  PEs and ``vec``-channel activation words: which input channels a tile reads (its *slice*),
  which output channel each of its ``cols`` lanes produces, the reduction length K.
  Grouped and depthwise layers whose groups are narrower than ``cols`` are merged into one
  GEMM with block-diagonal weights (several groups per tile), so that a depthwise tile keeps
  ``rows`` PEs busy per cycle instead of one.
- :func:`pack_x`, :func:`pack_w`, :func:`pack_params` build the memory images (words as
  integer arrays); :func:`unpack_y` reads the output image back into NHWC.
- :func:`descriptor_errors` states the rules under which the hardware raises ``error``.
- :func:`engine_conv` computes the engine's result from these images with the im2col golden
  (:func:`convgen.golden.im2col.im2col`), the exact GEMM (:func:`convgen.golden.gemm.gemm`)
  and the requantizer golden (:func:`convgen.golden.requant.requantize`). The tests check it
  against the convolution oracle :func:`convgen.golden.conv.conv2d_nhwc` and ONNX Runtime.

Nothing here imports hdl/: the engine's limits arrive as a plain dict (``EngineConfig.limits()``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError, check_int

from .gemm import gemm
from .im2col import im2col
from .quant import wrap32
from .requant import RequantParams, mult_shift_fields, requantize

__all__ = ["EnginePlan", "random_qlinearconv_arrays", "space_to_depth", "space_to_depth_factor", "unfold_width", "plan", "pack_x", "pack_w", "pack_params", "unpack_y", "descriptor_fields",
           "descriptor_errors", "engine_accumulators", "engine_conv", "PARAM_FIELDS"]

#: fields of one parameter-memory word, in the order of the hardware's param layout
PARAM_FIELDS = ("bias", "mult", "shift", "zero_point", "act_min", "act_max")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class EnginePlan:
    """How the host slices one layer for a ``rows x cols`` engine with ``vec``-channel words.

    Attributes
    ----------
    c_slice : int
        Input channels one tile reduces over (a *slice*); ``k = kh*kw*c_slice``, ordered
        ``(kh, kw, c)`` with c fastest.
    slice_words : int
        ``ceil(c_slice / vec)`` activation words per slice and pixel.
    slices : int
        Distinct input-channel slices of the layer.
    pixel_words : int
        ``slices * slice_words``: the activation words of one pixel (x's channel stride).
    tiles_per_slice, ntiles : int
        Output-channel tiles per slice and in total (``ntiles`` words of ``cols`` channels per
        output pixel in y).
    pixel_tiles, m_total : int
        ``ceil(OH*OW / rows)`` pixel tiles; ``OH*OW`` output pixels.
    lane_channel : ndarray[ntiles, cols]
        Output channel of lane j of tile t, -1 for an unused lane.
    slice_channel : ndarray[slices, c_slice]
        Input channel at position c of slice s, -1 past the last channel.
    """

    layer: ConvLayer
    rows: int
    cols: int
    vec: int
    c_slice: int
    slice_words: int
    slices: int
    tiles_per_slice: int
    lane_channel: np.ndarray
    slice_channel: np.ndarray

    @property
    def ntiles(self) -> int:
        return self.slices * self.tiles_per_slice

    @property
    def pixel_words(self) -> int:
        return self.slices * self.slice_words

    @property
    def k(self) -> int:
        return self.layer.kh * self.layer.kw * self.c_slice

    @property
    def m_total(self) -> int:
        return self.layer.out_h * self.layer.out_w

    @property
    def pixel_tiles(self) -> int:
        return _cdiv(self.m_total, self.rows)

    @property
    def tiles(self) -> int:
        """GEMM tiles of the layer (``pixel_tiles * ntiles``)."""
        return self.pixel_tiles * self.ntiles

    @property
    def x_words(self) -> int:
        return self.layer.h * self.layer.w * self.pixel_words

    @property
    def w_words(self) -> int:
        return self.ntiles * self.k

    @property
    def p_words(self) -> int:
        return self.ntiles * self.cols

    @property
    def y_words(self) -> int:
        return self.m_total * self.ntiles

    @property
    def useful_macs(self) -> int:
        return self.layer.macs

    @property
    def array_macs(self) -> int:
        """MACs the array performs (including block-diagonal zeros and partial tiles)."""
        return self.tiles * self.rows * self.cols * self.k


def plan(layer: ConvLayer, rows: int, cols: int, vec: int) -> EnginePlan:
    """Slice ``layer`` (batch 1) for an engine of ``rows x cols`` PEs and ``vec``-channel words.

    - ``groups == 1``: one slice of all C channels, ``ceil(C_out/cols)`` tiles.
    - groups with ``C_out/groups >= cols``: one slice per group (``C/groups`` channels),
      ``ceil((C_out/groups)/cols)`` tiles each (a group's last tile may be partial).
    - groups with ``C_out/groups < cols`` (depthwise, small groups): ``gp = cols // (C_out/groups)``
      groups share one tile: the slice holds their ``gp*C/groups`` input channels and the
      weights are block-diagonal (zero across groups). A depthwise layer with multiplier d
      thus reduces over ``cols/d`` channels per tile.
    """
    rows = check_int("rows", rows, 1)
    cols = check_int("cols", cols, 1)
    vec = check_int("vec", vec, 1)
    if layer.n != 1:
        raise ConfigError(f"n (batch) must be 1 for the conv engine, not {layer.n} (run images one by one)")
    L = layer
    G, cg, ng = L.groups, L.c_per_group, L.c_out_per_group
    if G == 1 or ng >= cols:
        c_slice, slices, tps = cg, G, _cdiv(ng, cols)
        lane = np.full((slices * tps, cols), -1, dtype=np.int64)
        for t in range(slices * tps):
            g, sub = divmod(t, tps)
            for j in range(cols):
                if sub * cols + j < ng:
                    lane[t, j] = g * ng + sub * cols + j
        sch = np.array([[g * cg + c for c in range(cg)] for g in range(G)], dtype=np.int64)
    else:
        gp = cols // ng
        c_slice, slices, tps = gp * cg, _cdiv(G, gp), 1
        lane = np.full((slices, cols), -1, dtype=np.int64)
        sch = np.full((slices, c_slice), -1, dtype=np.int64)
        for t in range(slices):
            for j in range(gp * ng):
                g = t * gp + j // ng
                if g < G:
                    lane[t, j] = g * ng + j % ng
            for c in range(c_slice):
                ci = t * gp * cg + c
                if ci < L.c:
                    sch[t, c] = ci
    return EnginePlan(L, rows, cols, vec, c_slice, _cdiv(c_slice, vec), slices, tps, lane, sch)


# -- memory images ------------------------------------------------------------------------
def _check_int8(name: str, a, signed: bool) -> np.ndarray:
    a = np.asarray(a)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ConfigError(f"{name} must hold integers, not {a.dtype}")
    lo, hi = (-128, 127) if signed else (0, 255)
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ConfigError(f"{name} values must be in {lo}..{hi} ({'int8' if signed else 'uint8'}), "
                          f"found {int(a.min())}..{int(a.max())}")
    return a


def pack_x(x_hwc, p: EnginePlan, x_zero_point: int = 0) -> np.ndarray:
    """Activation memory image ``[x_words, vec]`` (int64 element values) of ``x[h, w, c]``:
    word ``(ih*W + iw)*pixel_words + s*slice_words + i`` holds channels ``i*vec ..`` of slice s.
    Positions past the slice's last channel hold ``x_zero_point`` (they meet zero weights)."""
    L = p.layer
    x = np.asarray(x_hwc, dtype=np.int64)
    if x.shape != (L.h, L.w, L.c):
        raise ConfigError(f"x must have shape (h, w, c) = {(L.h, L.w, L.c)}, not {x.shape}")
    per_pixel = np.full((L.h * L.w, p.slices, p.slice_words * p.vec), int(x_zero_point), dtype=np.int64)
    flat = x.reshape(L.h * L.w, L.c)
    for s in range(p.slices):
        valid = p.slice_channel[s] >= 0
        per_pixel[:, s, :p.c_slice][:, valid] = flat[:, p.slice_channel[s][valid]]
    return per_pixel.reshape(L.h * L.w * p.pixel_words, p.vec)


def pack_w(w_ohwi, p: EnginePlan, w_zero_point: int = 0) -> np.ndarray:
    """Weight memory image ``[ntiles*K, cols]``: word ``t*K + k`` is row k of tile t's
    ``K x cols`` weight matrix (``k = (kh*KW + kw)*c_slice + c``). Entries that pair a lane with
    an input channel of another group, unused lanes and channels past the slice hold
    ``w_zero_point``, so they are zero once the engine subtracts it."""
    L = p.layer
    w = np.asarray(w_ohwi, dtype=np.int64)
    if w.shape != (L.c_out, L.kh, L.kw, L.c_per_group):
        raise ConfigError(f"w must have shape (c_out, kh, kw, c/groups) = "
                          f"{(L.c_out, L.kh, L.kw, L.c_per_group)}, not {w.shape}")
    out = np.full((p.ntiles, L.kh * L.kw, p.c_slice, p.cols), int(w_zero_point), dtype=np.int64)
    cg, ng = L.c_per_group, L.c_out_per_group
    wt = w.reshape(L.c_out, L.kh * L.kw, cg)
    n = p.lane_channel                                              # [t, j]: output channel or -1
    ci = p.slice_channel[np.arange(p.ntiles) // p.tiles_per_slice]  # [t, c]: input channel or -1
    # lane j of tile t meets channel c of its slice iff both exist and are in the same group
    ok = (n[:, :, None] >= 0) & (ci[:, None, :] >= 0) & (n[:, :, None] // ng == ci[:, None, :] // cg)
    t, j, c = np.nonzero(ok)
    out[t, :, c, j] = wt[n[t, j], :, ci[t, c] - (n[t, j] // ng) * cg]
    return out.reshape(p.ntiles * p.k, p.cols)


def pack_params(params: RequantParams, p: EnginePlan) -> dict[str, np.ndarray]:
    """Parameter memory image: one word per (tile t, lane j) at ``t*cols + j``, as a dict of
    :data:`PARAM_FIELDS` arrays of length ``ntiles*cols``. ``mult`` and ``shift`` are the
    requantizer's parameter word (:func:`convgen.golden.requant.mult_shift_fields`: the Q31
    multiplier, with ``round_away`` in bit 31 for tflite_opt, or the float32 bits of the scale
    for onnx and xnnpack, scales >= 1 included); unused lanes get harmless values."""
    if params.channels != p.layer.c_out:
        raise ConfigError(f"requantization parameters are for {params.channels} channels, the layer has "
                          f"{p.layer.c_out}")
    ch = p.lane_channel.reshape(-1)
    idx = np.where(ch >= 0, ch, 0)
    mult, shift = mult_shift_fields(params, idx)
    out = {"bias": params.bias[idx], "mult": mult, "shift": shift, "zero_point": params.zero_point[idx],
           "act_min": params.act_min[idx], "act_max": params.act_max[idx]}
    unused = ch < 0
    for name in ("bias", "zero_point", "act_min", "act_max"):
        out[name] = np.where(unused, 0, out[name]).astype(np.int64)
    return out


def unpack_y(y_words, p: EnginePlan) -> np.ndarray:
    """Output memory image ``[m_total*ntiles, cols]`` (word ``m*ntiles + t``) -> ``y[OH, OW, C_out]``."""
    L = p.layer
    yw = np.asarray(y_words).reshape(p.m_total, p.ntiles, p.cols)
    y = np.zeros((p.m_total, L.c_out), dtype=np.int64)
    t, j = np.nonzero(p.lane_channel >= 0)
    y[:, p.lane_channel[t, j]] = yw[:, t, j]
    return y.reshape(L.out_h, L.out_w, L.c_out)


def pack_y(y, p: EnginePlan) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`unpack_y`: ``y[OH, OW, C_out]`` as the output memory image
    ``[m_total*ntiles, cols]`` (low byte of each value) and the byte mask of the lanes that hold
    outputs (0xFF) or nothing (0)."""
    L = p.layer
    y2 = np.asarray(y, dtype=np.int64).reshape(p.m_total, L.c_out)
    yw = np.zeros((p.m_total, p.ntiles, p.cols), dtype=np.int64)
    mask = np.zeros_like(yw)
    t, j = np.nonzero(p.lane_channel >= 0)
    yw[:, t, j] = y2[:, p.lane_channel[t, j]] & 0xFF
    mask[:, t, j] = 0xFF
    return yw.reshape(-1, p.cols), mask.reshape(-1, p.cols)


# -- descriptor ---------------------------------------------------------------------------
def descriptor_fields(p: EnginePlan, *, x_zero_point: int, w_zero_point: int, x_signed: bool,
                      x_base: int = 0, w_base: int = 0, p_base: int = 0, y_base: int = 0) -> dict[str, int]:
    """The descriptor of one layer as a dict of integers (the hardware layout names them)."""
    L = p.layer
    return {
        "h": L.h, "w": L.w, "c_in": L.c, "c_out": L.c_out, "kh": L.kh, "kw": L.kw,
        "stride_h": L.stride_h, "stride_w": L.stride_w, "pad_top": L.pad_top, "pad_left": L.pad_left,
        "pad_bottom": L.pad_bottom, "pad_right": L.pad_right, "dil_h": L.dil_h, "dil_w": L.dil_w,
        "groups": L.groups, "c_slice": p.c_slice, "slice_words": p.slice_words, "slices": p.slices,
        "pixel_words": p.pixel_words, "tiles_per_slice": p.tiles_per_slice, "ntiles": p.ntiles,
        "pixel_tiles": p.pixel_tiles, "m_total": p.m_total, "out_h": L.out_h, "out_w": L.out_w,
        "x_base": x_base, "w_base": w_base, "p_base": p_base, "y_base": y_base,
        "x_zero_point": int(x_zero_point), "w_zero_point": int(w_zero_point), "x_signed": int(bool(x_signed)),
    }


def descriptor_errors(d: dict, limits: dict) -> list[str]:
    """Every rule the hardware checks, with the fields it names; empty for a valid descriptor.

    ``limits`` (``EngineConfig.limits()``): ``vec``, ``rows``, ``max_h``, ``max_w``,
    ``max_kernel``, ``max_stride``, ``max_pad``, ``max_dilation``, ``max_pixel_words``,
    ``max_tiles``, ``max_k``. Fields wider than their layout field are the caller's error
    (packing refuses them); the rules below are exactly those of ``ConvEngine``'s CHECK state
    and of the im2col generator it programs (``c = pixel_words``, ``groups = 1``)."""
    e = []

    def rng(name, lo, hi):
        if not lo <= d[name] <= hi:
            e.append(f"{name} must be in {lo}..{hi}, not {d[name]}")

    rng("h", 1, limits["max_h"])
    rng("w", 1, limits["max_w"])
    for f in ("kh", "kw"):
        rng(f, 1, limits["max_kernel"])
    for f in ("stride_h", "stride_w"):
        rng(f, 1, limits["max_stride"])
    for f in ("pad_top", "pad_left", "pad_bottom", "pad_right"):
        rng(f, 0, limits["max_pad"])
    for f in ("dil_h", "dil_w"):
        rng(f, 1, limits["max_dilation"])
    rng("pixel_words", 1, limits["max_pixel_words"])
    rng("ntiles", 1, limits["max_tiles"])
    for f in ("c_in", "c_out", "groups", "c_slice", "slice_words", "slices", "tiles_per_slice", "pixel_tiles",
              "m_total"):
        if d[f] < 1:
            e.append(f"{f} must be >= 1, not {d[f]}")
    if e:
        return e
    oh = (d["h"] + d["pad_top"] + d["pad_bottom"] - d["dil_h"] * (d["kh"] - 1) - 1)
    ow = (d["w"] + d["pad_left"] + d["pad_right"] - d["dil_w"] * (d["kw"] - 1) - 1)
    if oh < 0 or ow < 0:
        e.append("output height and width must be >= 1 (pads too small for the dilated kernel)")
    elif d.get("out_h", oh // d["stride_h"] + 1) != oh // d["stride_h"] + 1 or \
            d.get("out_w", ow // d["stride_w"] + 1) != ow // d["stride_w"] + 1:
        e.append("out_h and out_w must be the output size of the geometry")
    elif d["m_total"] != d.get("out_h", oh // d["stride_h"] + 1) * d.get("out_w", ow // d["stride_w"] + 1):
        e.append("m_total must be out_h * out_w")
    vec = limits["vec"]
    if not (d["slice_words"] - 1) * vec < d["c_slice"] <= d["slice_words"] * vec:
        e.append(f"slice_words must be ceil(c_slice/{vec}) = {_cdiv(d['c_slice'], vec)}, not {d['slice_words']}")
    if d["slices"] * d["slice_words"] > d["pixel_words"]:
        e.append("slices * slice_words must be <= pixel_words")
    if not (d["slices"] - 1) * d["tiles_per_slice"] < d["ntiles"] <= d["slices"] * d["tiles_per_slice"]:
        e.append("ntiles must be in ((slices-1)*tiles_per_slice, slices*tiles_per_slice]")
    rows = limits["rows"]
    if not (d["pixel_tiles"] - 1) * rows < d["m_total"] <= d["pixel_tiles"] * rows:
        e.append(f"pixel_tiles must be ceil(m_total/{rows})")
    k = d["kh"] * d["kw"] * d["c_slice"]
    if k > limits["max_k"]:
        e.append(f"K = kh*kw*c_slice = {k} must be <= {limits['max_k']} (accumulator overflow limit)")
    lo, hi = (-128, 127) if d["x_signed"] else (0, 255)
    if not lo <= d["x_zero_point"] <= hi:
        e.append(f"x_zero_point must be in {lo}..{hi}, not {d['x_zero_point']}")
    if not -128 <= d["w_zero_point"] <= 127:
        e.append(f"w_zero_point must be in -128..127, not {d['w_zero_point']}")
    return e


# -- arithmetic ---------------------------------------------------------------------------
def _slice_image(x_words, p: EnginePlan, s: int) -> np.ndarray:
    L = p.layer
    xw = np.asarray(x_words, dtype=np.int64).reshape(L.h * L.w, p.slices, p.slice_words * p.vec)
    return xw[:, s, :p.c_slice].reshape(L.h, L.w, p.c_slice)


def engine_accumulators(x_words, w_words, p: EnginePlan, x_zero_point: int, w_zero_point: int) -> np.ndarray:
    """int32 accumulators ``[m_total, ntiles, cols]`` the array produces from the memory images:
    per tile, the im2col patch matrix of its slice (padding reads ``x_zero_point``) minus the
    zero point, times its ``K x cols`` weights minus ``w_zero_point``, on 9-bit operands."""
    L = p.layer
    sub = ConvLayer(L.h, L.w, p.c_slice, L.kh, L.kw, L.stride_h, L.stride_w, L.pad_top, L.pad_left,
                    L.pad_bottom, L.pad_right, L.dil_h, L.dil_w, 1, c_out=p.cols)
    w = np.asarray(w_words, dtype=np.int64).reshape(p.ntiles, p.k, p.cols) - int(w_zero_point)
    acc = np.zeros((p.m_total, p.ntiles, p.cols), dtype=np.int64)
    for s in range(p.slices):
        a = im2col(_slice_image(x_words, p, s), sub, pad_value=int(x_zero_point))[0] - int(x_zero_point)
        for t in range(s * p.tiles_per_slice, min((s + 1) * p.tiles_per_slice, p.ntiles)):
            acc[:, t, :] = gemm(a, w[t], a_width=9, b_width=9, acc_width=32)
    return acc


def engine_conv(x_hwc, w_ohwi, layer: ConvLayer, params: RequantParams, *, rows: int, cols: int, vec: int,
                x_zero_point: int = 0, w_zero_point: int = 0, x_signed: bool = True) -> np.ndarray:
    """The engine's output ``y[OH, OW, C_out]`` for a quantized layer, computed the engine's
    way (pack, per-tile GEMM, requantize per lane, unpack)."""
    p = plan(layer, rows, cols, vec)
    _check_int8("x", x_hwc, x_signed)
    _check_int8("w", w_ohwi, True)
    xw = pack_x(x_hwc, p, x_zero_point)
    ww = pack_w(w_ohwi, p, w_zero_point)
    acc = engine_accumulators(xw, ww, p, x_zero_point, w_zero_point)
    ch = np.broadcast_to(np.where(p.lane_channel >= 0, p.lane_channel, 0)[None], acc.shape)
    yw = requantize(wrap32(acc), params, channel=ch)
    return unpack_y(yw.reshape(p.m_total * p.ntiles, p.cols), p)


# -- a quantized layer, from ONNX QLinearConv or TFLite-style inputs --------------------------
@dataclass(frozen=True)
class QuantConv:
    """One quantized convolution in the engine's layouts: ``x[h, w, c]``, ``w[c_out, kh, kw, c/groups]``
    (OHWI), per-tensor zero points, per-channel :class:`RequantParams`."""

    layer: ConvLayer
    x: np.ndarray
    w: np.ndarray
    x_zero_point: int
    w_zero_point: int
    x_signed: bool
    params: RequantParams


def _scalar_int(name, v) -> int:
    a = np.asarray(v)
    if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ConfigError(f"{name} must be one integer (per tensor), not shape {a.shape} of {a.dtype}")
    return int(a.reshape(-1)[0])


def quant_conv_from_arrays(arrays: dict, *, rounding: str = "onnx", layout: str = "nchw") -> QuantConv:
    """A :class:`QuantConv` from ONNX QLinearConv inputs and attributes (``layout='nchw'``: ``x``
    NCHW with N = 1, ``w`` OIHW; ``x_scale``, ``x_zero_point``, ``w_scale`` per tensor or per
    channel, ``w_zero_point`` per tensor, ``y_scale``, ``y_zero_point``, optional ``B``,
    ``strides``, ``pads`` (ONNX order), ``dilations``, ``group``) or from TFLite-style inputs
    (``layout='nhwc'``: ``x`` NHWC, ``w`` OHWI; ``rounding`` tflite/tflite_single with per-channel
    ``multiplier``, ``shift`` and optional ``act_min``/``act_max`` instead of scales)."""
    from convgen.core.layer import conv_layer_from_onnx

    from .requant import params_from_scales

    if layout not in ("nchw", "nhwc"):
        raise ConfigError(f"layout must be one of 'nchw', 'nhwc', not {layout!r}")
    for key in ("x", "w"):
        if key not in arrays:
            raise ConfigError(f"the layer needs the array {key!r}")
    x = np.asarray(arrays["x"])
    w = np.asarray(arrays["w"])
    if x.ndim != 4 or w.ndim != 4:
        raise ConfigError(f"x and w must be 4-D, not {x.shape} and {w.shape}")
    if layout == "nhwc":
        x = x.transpose(0, 3, 1, 2)
        w = w.transpose(0, 3, 1, 2)
    if x.shape[0] != 1:
        raise ConfigError(f"batch must be 1, not {x.shape[0]}")
    x_signed = x.dtype != np.uint8
    attrs = {}
    for key, onnx_key in (("strides", "strides"), ("pads", "pads"), ("dilations", "dilations"), ("group", "group")):
        if key in arrays:
            v = np.asarray(arrays[key]).reshape(-1).tolist()
            attrs[onnx_key] = v[0] if key == "group" else v
    layer = conv_layer_from_onnx(attrs, x.shape, w.shape, bias="B" in arrays)
    xz = _scalar_int("x_zero_point", arrays.get("x_zero_point", 0))
    wz = _scalar_int("w_zero_point", arrays.get("w_zero_point", 0))
    yz = _scalar_int("y_zero_point", arrays.get("y_zero_point", 0))
    y_signed = np.asarray(arrays.get("y_zero_point", np.int8(0))).dtype != np.uint8 if "y_zero_point" in arrays \
        else x_signed
    lo, hi = (-128, 127) if y_signed else (0, 255)
    bias = np.asarray(arrays["B"]).astype(np.int64) if "B" in arrays else np.zeros(layer.c_out, np.int64)
    act_min = arrays.get("act_min", lo)
    act_max = arrays.get("act_max", hi)
    if rounding == "onnx":
        for key in ("x_scale", "w_scale", "y_scale"):
            if key not in arrays:
                raise ConfigError(f"rounding 'onnx' needs {key}")
        params = params_from_scales("onnx", np.float32(arrays["x_scale"]), np.asarray(arrays["w_scale"], np.float32),
                                    np.float32(arrays["y_scale"]), bias=np.broadcast_to(bias, (layer.c_out,)),
                                    zero_point=yz, act_min=act_min, act_max=act_max, out_width=9)
    elif "multiplier" in arrays:
        params = RequantParams.make(rounding, layer.c_out, bias=bias, multiplier=arrays["multiplier"],
                                    shift=arrays["shift"], zero_point=yz, act_min=act_min, act_max=act_max,
                                    out_width=9)
    else:
        params = params_from_scales(rounding, np.float32(arrays["x_scale"]), np.asarray(arrays["w_scale"], np.float32),
                                    np.float32(arrays["y_scale"]), bias=np.broadcast_to(bias, (layer.c_out,)),
                                    zero_point=yz, act_min=act_min, act_max=act_max, out_width=9)
    if params.channels == 1 and layer.c_out > 1:
        params = _broadcast_params(params, layer.c_out)
    _check_int8("x", x, x_signed)
    _check_int8("w", w, True)
    return QuantConv(layer, x[0].transpose(1, 2, 0).astype(np.int64), w.transpose(0, 2, 3, 1).astype(np.int64),
                     xz, wz, bool(x_signed), params)


def _broadcast_params(p: RequantParams, n: int) -> RequantParams:
    def rep(a):
        return None if a is None else np.repeat(a, n)
    return RequantParams(p.rounding, n, rep(p.bias), rep(p.multiplier), rep(p.shift), rep(p.scale),
                         rep(p.zero_point), rep(p.act_min), rep(p.act_max), p.out_width, p.out_signed,
                         rep(p.round_away))


def reference_conv(q: QuantConv) -> np.ndarray:
    """The oracle's answer ``y[OH, OW, C_out]``: ``requantize(wrap32(conv2d_nhwc(...)))``."""
    from .conv import conv2d_nhwc

    acc = conv2d_nhwc(q.x, q.w, q.layer, q.x_zero_point, q.w_zero_point)
    return requantize(wrap32(acc), q.params)


def engine_conv_q(q: QuantConv, *, rows: int, cols: int, vec: int) -> np.ndarray:
    return engine_conv(q.x, q.w, q.layer, q.params, rows=rows, cols=cols, vec=vec,
                       x_zero_point=q.x_zero_point, w_zero_point=q.w_zero_point, x_signed=q.x_signed)


def random_quant_conv(rng: np.random.Generator, layer: ConvLayer, *, x_signed: bool = True,
                      rounding: str = "onnx", per_channel: bool = True, bias: bool = True,
                      w_zero_point: int | None = None, relu: bool = False) -> QuantConv:
    """A random quantized layer whose outputs spread over the int8/uint8 range (scales chosen
    from the accumulator spread, so the test sees few saturated outputs)."""
    lo, hi = (-128, 127) if x_signed else (0, 255)
    x = rng.integers(lo, hi + 1, (layer.h, layer.w, layer.c))
    w = rng.integers(-128, 128, (layer.c_out, layer.kh, layer.kw, layer.c_per_group))
    xz = int(rng.integers(lo, hi + 1)) if rng.random() < 0.8 else (0 if x_signed else 128)
    wz = int(rng.integers(-20, 21)) if w_zero_point is None else int(w_zero_point)
    k = layer.kh * layer.kw * layer.c_per_group
    spread = 128.0 * 128.0 * np.sqrt(k) * 1.5
    yz = int(rng.integers(-20, 21)) + (0 if x_signed else 128)
    ylo, yhi = (-128, 127) if x_signed else (0, 255)
    b = rng.integers(-(1 << 14), 1 << 14, layer.c_out) if bias else np.zeros(layer.c_out, np.int64)
    act_min = max(ylo, yz) if relu else ylo
    if rounding == "onnx":
        xs = np.float32(rng.uniform(0.01, 0.1))
        ws = (rng.uniform(0.5, 2.0, layer.c_out if per_channel else 1) * 0.01).astype(np.float32)
        ys = np.float32(float(xs) * float(ws.mean()) * spread / 100.0)
        from .requant import params_from_scales
        params = params_from_scales("onnx", xs, ws, ys, bias=b, zero_point=yz, act_min=act_min, act_max=yhi,
                                    out_width=9)
    else:
        from .quant import quantize_multiplier
        reals = rng.uniform(0.5, 2.0, layer.c_out) * 100.0 / spread
        qm = [quantize_multiplier(float(r), single_rounding=rounding == "tflite_single") for r in reals]
        params = RequantParams.make(rounding, layer.c_out, bias=b, multiplier=[m for m, _ in qm],
                                    shift=[s for _, s in qm], zero_point=yz, act_min=act_min, act_max=yhi,
                                    out_width=9)
    return QuantConv(layer, x, w, xz, wz, x_signed, params)


def random_qlinearconv_arrays(rng: np.random.Generator, layer: ConvLayer, *, x_signed: bool = True,
                              per_channel: bool = True, bias: bool = True) -> dict:
    """A random ONNX QLinearConv layer as its input names (``x`` NCHW, ``w`` OIHW, scales,
    zero points, ``B``, attributes), as ``convgen run conv --layer`` takes it. The output scale
    follows the accumulator spread so that outputs use the int8/uint8 range; ``w_zero_point``
    is 0 (ONNX Runtime requires it for int8 weights)."""
    dt = np.int8 if x_signed else np.uint8
    lo, hi = (-128, 127) if x_signed else (0, 255)
    x = rng.integers(lo, hi + 1, (1, layer.c, layer.h, layer.w)).astype(dt)
    w = rng.integers(-128, 128, (layer.c_out, layer.c_per_group, layer.kh, layer.kw)).astype(np.int8)
    xs = np.float32(rng.uniform(0.01, 0.1))
    ws = (rng.uniform(0.5, 2.0, layer.c_out if per_channel else 1) * 0.01).astype(np.float32)
    k = layer.kh * layer.kw * layer.c_per_group
    ys = np.float32(float(xs) * float(ws.mean()) * 128 * 128 * np.sqrt(k) * 1.5 / 100)
    arrays = {"x": x, "x_scale": xs, "x_zero_point": np.array(rng.integers(lo, hi + 1), dt),
              "w": w, "w_scale": ws if per_channel else ws.reshape(()), "w_zero_point": np.int8(0),
              "y_scale": ys, "y_zero_point": np.array(int(rng.integers(-20, 21)) + (0 if x_signed else 128), dt),
              "strides": np.array([layer.stride_h, layer.stride_w]),
              "pads": np.array([layer.pad_top, layer.pad_left, layer.pad_bottom, layer.pad_right]),
              "dilations": np.array([layer.dil_h, layer.dil_w]), "group": np.array(layer.groups)}
    if bias:
        arrays["B"] = rng.integers(-(1 << 14), 1 << 14, layer.c_out).astype(np.int32)
    return arrays


# -- host-side rewrite of fetch-bound strided layers -------------------------------------------
def space_to_depth_factor(layer: ConvLayer, rows: int) -> int:
    """The stride ``s`` by which :func:`space_to_depth` should rewrite ``layer`` for an engine of
    ``rows`` rows, or 1 (no rewrite). It applies to a standard convolution (groups 1, dilation
    1) with equal strides ``s >= 2`` whose input has fewer than ``rows`` channels: such a layer is
    fetch-bound (each ``rows``-request chunk carries only C channels, docs/engine.md), and its
    rewrite carries ``C*s*s`` channels per pixel."""
    L = layer
    s = L.stride_h
    if (L.groups == 1 and L.dil_h == L.dil_w == 1 and L.stride_w == s and s >= 2 and L.c < rows):
        return s
    return 1


def space_to_depth(q: QuantConv, s: int) -> QuantConv:
    """The same convolution as a stride-1, unpadded one over an ``s x s`` space-to-depth input
    (the ResNet stem 7x7/2 over 3 channels becomes 4x4/1 over 12): exactly the same outputs.

    With ``xp`` the input padded with ``x_zero_point`` (top/left by the layer's pads, bottom/right
    up to a multiple of ``s`` that covers every tap), ``X[j, i, (bh, bw, c)] = xp[s*j+bh, s*i+bw, c]``
    and ``W[o, ah, aw, (bh, bw, c)] = w[o, s*ah+bh, s*aw+bw, c]``, or ``w_zero_point`` for taps past
    the kernel: ``y[o] = sum_k xp[s*o+k] w[k] = sum_a sum_b X[o+a][b] W[a][b]``. Padded inputs and
    the added taps are zero once the engine subtracts the zero points, as in the original layer."""
    L = q.layer
    if s < 2 or L.groups != 1 or L.dil_h != 1 or L.dil_w != 1 or L.stride_h != s or L.stride_w != s:
        raise ConfigError(f"space_to_depth needs a standard layer with strides {s}x{s} and no dilation")
    oh, ow = L.out_h, L.out_w
    kh2, kw2 = -(-L.kh // s), -(-L.kw // s)
    hp, wp = s * (oh - 1 + kh2), s * (ow - 1 + kw2)          # multiples of s covering every tap
    xp = np.full((hp, wp, L.c), int(q.x_zero_point), dtype=np.int64)
    h_end, w_end = min(L.h, hp - L.pad_top), min(L.w, wp - L.pad_left)
    xp[L.pad_top:L.pad_top + h_end, L.pad_left:L.pad_left + w_end] = np.asarray(q.x)[:h_end, :w_end]
    x2 = xp.reshape(hp // s, s, wp // s, s, L.c).transpose(0, 2, 1, 3, 4).reshape(hp // s, wp // s, s * s * L.c)
    wk = np.full((L.c_out, kh2 * s, kw2 * s, L.c), int(q.w_zero_point), dtype=np.int64)
    wk[:, :L.kh, :L.kw] = np.asarray(q.w)
    w2 = wk.reshape(L.c_out, kh2, s, kw2, s, L.c).transpose(0, 1, 3, 2, 4, 5).reshape(L.c_out, kh2, kw2, s * s * L.c)
    layer = ConvLayer(hp // s, wp // s, s * s * L.c, kh2, kw2, c_out=L.c_out, name=L.name, op=L.op, bias=L.bias)
    assert (layer.out_h, layer.out_w) == (oh, ow)
    return QuantConv(layer, x2, w2, q.x_zero_point, q.w_zero_point, q.x_signed, q.params)


def pad_explicit(q: QuantConv) -> QuantConv:
    """The same convolution with its pads written into the input as ``x_zero_point`` (what the
    engine reads for a padded tap) and no pads left: exactly the same outputs."""
    L = q.layer
    x = np.full((L.h + L.pad_top + L.pad_bottom, L.w + L.pad_left + L.pad_right, L.c), int(q.x_zero_point),
                dtype=np.asarray(q.x).dtype)
    x[L.pad_top:L.pad_top + L.h, L.pad_left:L.pad_left + L.w] = np.asarray(q.x)
    layer = dataclasses.replace(L, h=x.shape[0], w=x.shape[1], pad_top=0, pad_left=0, pad_bottom=0, pad_right=0)
    assert (layer.out_h, layer.out_w) == (L.out_h, L.out_w)
    return dataclasses.replace(q, layer=layer, x=x)


def pad_channels(q: QuantConv, multiple: int) -> QuantConv:
    """The same standard convolution with its input channels padded up to a multiple of
    ``multiple``: the added channels read ``x_zero_point`` and their weights are ``w_zero_point``,
    so each added product ``(x - x_zp)(w - w_zp)`` is zero; exactly the same outputs."""
    L = q.layer
    if L.groups != 1:
        raise ConfigError("pad_channels needs a standard (groups 1) layer")
    c2 = -(-L.c // multiple) * multiple
    if c2 == L.c:
        return q
    x, w = np.asarray(q.x), np.asarray(q.w)
    x2 = np.full(x.shape[:2] + (c2,), int(q.x_zero_point), dtype=x.dtype)
    x2[..., :L.c] = x
    w2 = np.full(w.shape[:3] + (c2,), int(q.w_zero_point), dtype=w.dtype)
    w2[..., :L.c] = w
    return dataclasses.replace(q, layer=dataclasses.replace(L, c=c2), x=x2, w=w2)


def unfold_width(q: QuantConv) -> QuantConv:
    """The same stride-1, unpadded convolution with its kernel's width folded into the channels:
    ``X[j, i, (a, c)] = x[j, i+a, c]``, ``W[o, ah, 0, (a, c)] = w[o, ah, a, c]`` (a KH x 1 kernel
    over ``KW*C`` channels), exactly the same outputs. For a layer that still has fewer channels
    than the array has rows after :func:`space_to_depth` (the ResNet stem's 12 on 16 rows)."""
    L = q.layer
    if (L.stride_h != 1 or L.stride_w != 1 or L.pads != (0, 0, 0, 0) or L.groups != 1 or L.dil_w != 1
            or L.dil_h != 1):
        raise ConfigError("unfold_width needs a stride-1, unpadded, undilated standard layer")
    ow, kw = L.out_w, L.kw
    x = np.asarray(q.x)
    x2 = np.concatenate([x[:, a:a + ow, :] for a in range(kw)], axis=2)
    w2 = np.asarray(q.w).reshape(L.c_out, L.kh, 1, kw * L.c)
    layer = ConvLayer(L.h, ow, kw * L.c, L.kh, 1, c_out=L.c_out, name=L.name, op=L.op, bias=L.bias)
    assert (layer.out_h, layer.out_w) == (L.out_h, L.out_w)
    return QuantConv(layer, x2, w2, q.x_zero_point, q.w_zero_point, q.x_signed, q.params)
