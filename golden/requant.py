"""Golden twin of :class:`convgen.hdl.requant.Requantizer`, and a full quantized GEMM / conv.

``requantize(acc, params)`` does, per value of channel ``c`` (the last axis of ``acc``):

1. ``v = wrap32(acc + bias[c])`` (int32 addition, as TFLite and ONNX Runtime do it);
2. ``y = scale(v)`` by ``params.rounding``:

   - ``"tflite"``: ``MultiplyByQuantizedMultiplier(v, multiplier[c], shift[c])``, gemmlowp
     double rounding (golden/quant.py);
   - ``"tflite_single"``: ``(v*M + 2**(30-shift)) >> (31-shift)``, saturated to int32;
   - ``"onnx"``: ``round_half_even(float32(v) * scale[c])`` in float32, as ONNX Runtime;
   - ``"tflite_opt"``: TFLite's optimized kernels: SRDHM, then a right shift rounding ties up
     (golden/quant.py ``multiply_by_quantized_multiplier_opt``); channels marked ``round_away``
     round the final shift like ``"tflite"`` instead (the ``C mod 8`` scalar channels of
     TFLite's optimized depthwise conv);
   - ``"xnnpack"``: the ``onnx`` arithmetic with XNNPACK's scale range (below 256);

3. ``out = clamp(y + zero_point[c], act_min[c], act_max[c])`` (exact integer addition).

``qgemm``/``qconv2d`` build the accumulators from quantized operands with their zero
points (``sum (x - zx)(w - zw)``) and requantize them: the complete reference
``y = clamp(requant(sum (x - zx)(w - zw) + bias) + zy)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convgen.core.intrange import IntRange
from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError, check_bool, check_choice, check_int
from convgen.core.quant import (FLOAT_ROUNDINGS, GOLDEN_ROUNDINGS, INT32, MULTIPLIER_MAX, MULTIPLIER_MIN,
                               OPT_AWAY_BIT, OPT_MULTIPLIER_MAX, OUT_WIDTH_MAX, OUT_WIDTH_MIN, ROUNDINGS,
                               SHIFT_MAX, SHIFT_MIN)

from .conv import conv2d_nchw
from .quant import (check_onnx_scale, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_opt,
                    multiply_by_quantized_multiplier_single, ort_scale, quantize_multiplier,
                    scale_onnx_float, wrap32)

__all__ = ["ROUNDINGS", "GOLDEN_ROUNDINGS", "MULTIPLIER_MIN", "MULTIPLIER_MAX", "SHIFT_MIN", "SHIFT_MAX",
           "RequantParams", "requantize", "scale_values", "qgemm", "qconv2d", "params_from_scales",
           "mult_shift_fields"]



def _per_channel(name: str, value, channels: int | None, dtype=np.int64) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a scalar or a 1-D per-channel array, not shape {arr.shape}")
    if dtype is np.int64 and arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must hold integers, not {arr.dtype}")
    if channels is not None and arr.size not in (1, channels):
        raise ConfigError(f"{name} must have 1 or {channels} values (one per channel), not {arr.size}")
    if channels is not None and arr.size == 1:
        arr = np.repeat(arr, channels)
    return arr.astype(dtype)


def _check_range(name: str, arr: np.ndarray, rng: IntRange, what: str = "") -> None:
    if arr.size and (int(arr.min()) < rng.lo or int(arr.max()) > rng.hi):
        bad = arr[(arr < rng.lo) | (arr > rng.hi)][0]
        raise ConfigError(f"{name} must be in {rng.lo}..{rng.hi}{what}, not {int(bad)}")


@dataclass(frozen=True)
class RequantParams:
    """Per-channel requantization parameters, checked on construction.

    Parameters
    ----------
    rounding : "tflite", "tflite_single", "onnx", "tflite_opt" or "xnnpack"
    bias : int32 per channel
    multiplier : int in [2**30, 2**31) per channel (tflite modes; with ``check_multiplier=False``
        any int32, or 0..2**31-1 in ``tflite_opt``, whose parameter word keeps bit 31 for
        ``round_away``)
    shift : int in -31..30 per channel (tflite modes; positive = left shift)
    scale : float32 in [2**-126, 1) per channel (onnx), in [2**-126, 256) (xnnpack)
    zero_point, act_min, act_max : per channel, in the output range
    out_width, out_signed : the output type (default int8)
    round_away : bool per channel (``tflite_opt`` only, default all False): the final shift
        rounds ties away from zero (RoundingDivideByPOT, as ``tflite``) instead of up; TFLite's
        optimized DEPTHWISE_CONV_2D does that on its last ``C mod 8`` channels
        (golden/tflite_fixtures.py ``opt_ties_up_channels``)

    Scalars are broadcast to ``channels``."""

    rounding: str
    channels: int
    bias: np.ndarray
    multiplier: np.ndarray | None
    shift: np.ndarray | None
    scale: np.ndarray | None
    zero_point: np.ndarray
    act_min: np.ndarray
    act_max: np.ndarray
    out_width: int = 8
    out_signed: bool = True
    round_away: np.ndarray | None = None

    @classmethod
    def make(cls, rounding: str, channels: int, *, bias=0, multiplier=None, shift=None, scale=None,
             zero_point=0, act_min=None, act_max=None, out_width: int = 8, out_signed: bool = True,
             check_multiplier: bool = True, round_away=None) -> "RequantParams":
        check_choice("rounding", rounding, GOLDEN_ROUNDINGS)
        channels = check_int("channels", channels, 1)
        out_width = check_int("out_width", out_width, OUT_WIDTH_MIN, OUT_WIDTH_MAX)
        check_bool("out_signed", out_signed)
        out_rng = IntRange.of_operand(out_width, out_signed)
        kind = f" ({'int' if out_signed else 'uint'}{out_width})"
        bias = _per_channel("bias", bias, channels)
        _check_range("bias", bias, INT32, " (int32)")
        if rounding in FLOAT_ROUNDINGS:
            if scale is None:
                raise ConfigError(f"rounding {rounding!r} needs scale (float32 per channel), not multiplier/shift")
            if multiplier is not None or shift is not None:
                raise ConfigError(f"rounding {rounding!r} takes scale, not multiplier/shift")
            scale = np.atleast_1d(np.asarray(scale))
            if scale.ndim != 1 or scale.size not in (1, channels):
                raise ConfigError(f"scale must have 1 or {channels} values (one per channel), not shape {scale.shape}")
            scale = check_onnx_scale(np.repeat(scale, channels) if scale.size == 1 else scale, mode=rounding)
        else:
            if scale is not None:
                raise ConfigError(f"rounding {rounding!r} takes multiplier and shift, not scale "
                                  "(convert a real scale with quantize_multiplier)")
            if multiplier is None or shift is None:
                raise ConfigError(f"rounding {rounding!r} needs multiplier and shift")
            multiplier = _per_channel("multiplier", multiplier, channels)
            shift = _per_channel("shift", shift, channels)
            if check_multiplier:
                _check_range("multiplier", multiplier, IntRange(MULTIPLIER_MIN, MULTIPLIER_MAX),
                             " (Q31 multiplier in [2**30, 2**31))")
            elif rounding == "tflite_opt":
                _check_range("multiplier", multiplier, IntRange(0, OPT_MULTIPLIER_MAX),
                             " (non-negative Q31 multiplier in tflite_opt)")
            else:
                _check_range("multiplier", multiplier, INT32, " (int32)")
            _check_range("shift", shift, IntRange(SHIFT_MIN, SHIFT_MAX))
        zero_point = _per_channel("zero_point", zero_point, channels)
        act_min = _per_channel("act_min", out_rng.lo if act_min is None else act_min, channels)
        act_max = _per_channel("act_max", out_rng.hi if act_max is None else act_max, channels)
        _check_range("zero_point", zero_point, out_rng, kind)
        _check_range("act_min", act_min, out_rng, kind)
        _check_range("act_max", act_max, out_rng, kind)
        if rounding == "tflite_opt":
            away = np.zeros(channels, dtype=bool) if round_away is None else np.atleast_1d(np.asarray(round_away))
            if away.dtype != bool:
                raise ConfigError(f"round_away must hold booleans, not {away.dtype}")
            round_away = _per_channel("round_away", away, channels, dtype=bool)
        elif round_away is not None:
            raise ConfigError(f"round_away applies to rounding 'tflite_opt' only, not {rounding!r}")
        if np.any(act_min > act_max):
            c = int(np.argmax(act_min > act_max))
            raise ConfigError(f"act_min must be <= act_max, channel {c} has act_min={int(act_min[c])} "
                              f"> act_max={int(act_max[c])}")
        return cls(rounding, channels, bias, multiplier, shift, scale, zero_point, act_min, act_max,
                   out_width, out_signed, round_away)


def scale_values(v, p: RequantParams, channel=None) -> np.ndarray:
    """Step 2 alone: scale int32 values ``v`` (channel = last axis, or ``channel`` indices)."""
    idx = (slice(None),) if channel is None else channel
    if p.rounding == "tflite":
        return multiply_by_quantized_multiplier(v, p.multiplier[idx], p.shift[idx])
    if p.rounding == "tflite_single":
        return multiply_by_quantized_multiplier_single(v, p.multiplier[idx], p.shift[idx])
    if p.rounding == "tflite_opt":
        m, s = p.multiplier[idx], p.shift[idx]
        return np.where(p.round_away[idx], multiply_by_quantized_multiplier(v, m, s),
                        multiply_by_quantized_multiplier_opt(v, m, s))
    return scale_onnx_float(v, p.scale[idx])  # onnx, xnnpack


def requantize(acc, p: RequantParams, channel=None) -> np.ndarray:
    """The three steps above. ``acc`` is int32 with channels on the last axis (``channel``
    None), or any shape with ``channel`` an index array of the same shape."""
    acc = np.asarray(acc)
    if acc.size and not np.issubdtype(acc.dtype, np.integer):
        raise ConfigError(f"acc must hold integers, not {acc.dtype}")
    acc = acc.astype(np.int64)
    _check_range("acc", acc, INT32, " (int32)")
    if channel is None:
        if acc.shape[-1:] != (p.channels,):
            raise ConfigError(f"acc's last axis must have {p.channels} channels, not shape {acc.shape}")
        ch = np.broadcast_to(np.arange(p.channels), acc.shape)
    else:
        ch = np.asarray(channel)
    v = wrap32(acc + p.bias[ch])
    y = scale_values(v, p, ch)
    return np.clip(y + p.zero_point[ch], p.act_min[ch], p.act_max[ch]).astype(np.int64)


def mult_shift_fields(p: RequantParams, channels=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``mult`` and ``shift`` fields of the requantizer's parameter word (hdl/requant.py
    ``RequantConfig.p_layout``, the engine's parameter memory) for ``channels`` (default all):

    - ``onnx``, ``xnnpack``: the float32 bits of the scale; shift 0 (unused);
    - ``tflite``, ``tflite_single``: the multiplier as a 32-bit two's complement word;
    - ``tflite_opt``: the multiplier (0..2**31-1) with ``round_away`` in bit ``OPT_AWAY_BIT``.
    """
    idx = np.arange(p.channels) if channels is None else np.asarray(channels)
    if p.rounding in FLOAT_ROUNDINGS:
        return (p.scale.astype(np.float32).view(np.uint32).astype(np.int64)[idx],
                np.zeros(idx.shape, dtype=np.int64))
    mult = p.multiplier.astype(np.int64)[idx] & 0xFFFFFFFF
    if p.rounding == "tflite_opt":
        mult = mult | (p.round_away[idx].astype(np.int64) << OPT_AWAY_BIT)
    return mult, p.shift.astype(np.int64)[idx]


def params_from_scales(rounding: str, x_scale, w_scale, y_scale, *, bias=0, zero_point=0,
                       act_min=None, act_max=None, out_width=8, out_signed=True) -> RequantParams:
    """Parameters for a layer with float scales. ``onnx``, ``xnnpack``: the float32 scale as
    ONNX Runtime and XNNPACK compute it; tflite modes: ``quantize_multiplier(x_scale * w_scale /
    y_scale)`` in double, as TFLite's kernels prepare it. (Fused-activation bounds differ by
    path: golden/quant.py ``tflite_activation_bounds``, ``xnnpack_activation_bounds``.)"""
    ws = np.atleast_1d(np.asarray(w_scale, dtype=np.float64))
    channels = max(ws.size, np.atleast_1d(np.asarray(bias)).size)
    if rounding in FLOAT_ROUNDINGS:
        return RequantParams.make(rounding, channels, bias=bias, scale=ort_scale(x_scale, ws, y_scale),
                                  zero_point=zero_point, act_min=act_min, act_max=act_max,
                                  out_width=out_width, out_signed=out_signed)
    real = float(np.float32(x_scale)) * ws.astype(np.float32).astype(np.float64) / float(np.float32(y_scale))
    qm = [quantize_multiplier(r, single_rounding=rounding == "tflite_single") for r in real]
    return RequantParams.make(rounding, channels, bias=bias, multiplier=[m for m, _ in qm],
                              shift=[s for _, s in qm], zero_point=zero_point, act_min=act_min,
                              act_max=act_max, out_width=out_width, out_signed=out_signed)


def qgemm(x, w, x_zero_point, w_zero_point, p: RequantParams) -> np.ndarray:
    """``y[m, n] = clamp(requant(sum_k (x[m,k] - zx)(w[k,n] - zw[n]) + bias[n]) + zy[n])``.
    ``w_zero_point`` is a scalar or one per output channel (column). The accumulator is
    exact (int64) and wrapped to int32, as the int32 accumulators of the frameworks."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64), (w.shape[1],))
    acc = (x - int(x_zero_point)) @ (w - zw[None, :])
    return requantize(wrap32(acc), p)


def qconv2d(x, w, x_zero_point, w_zero_point, p: RequantParams, *, stride=1, pad=0, dilation=1,
            groups=1) -> np.ndarray:
    """Quantized convolution in ONNX layouts, NCHW input ``x[N, C, H, W]``, weights
    ``w[M, C/groups, kh, kw]``: the exact accumulators of the convolution oracle
    :func:`convgen.golden.conv.conv2d_nchw` (padding reads the input zero point), wrapped to
    int32 and requantized per output channel. ``stride``/``dilation`` an int or pair, ``pad`` an
    int or (top, left, bottom, right). Returns ``y[N, M, OH, OW]``."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    n, c, h, wd = x.shape
    layer = ConvLayer.square(h, wd, c, tuple(w.shape[2:]), stride, pad, dilation, groups, c_out=w.shape[0])
    acc = conv2d_nchw(x, w, layer, x_zero_point, w_zero_point)
    y = requantize(wrap32(acc.transpose(0, 2, 3, 1)), p)  # channels last
    return y.transpose(0, 3, 1, 2)
