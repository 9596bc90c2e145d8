"""Exact integer primitives of TFLite / gemmlowp requantization and of ONNX Runtime's float path.

Every function is vectorised over NumPy arrays and exact: int64 arithmetic where the
intermediate provably fits (documented per function), float32 arithmetic only where the
reference itself computes in float32 (ONNX Runtime).

Sources transcribed (C semantics: ``/`` truncates toward zero, ``>>`` on negative values is
arithmetic):

- ``SaturatingRoundingDoublingHighMul`` and ``RoundingDivideByPOT``: google/gemmlowp,
  ``fixedpoint/fixedpoint.h``.
- ``MultiplyByQuantizedMultiplier`` (both the default double-rounding body and the
  ``TFLITE_SINGLE_ROUNDING`` body) and ``QuantizeMultiplier``: tensorflow/tensorflow,
  ``tensorflow/lite/kernels/internal/common.cc`` and ``quantization_util.cc``.
- ONNX Runtime's requantization of QLinearConv / QLinearMatMul (``MlasRequantizeOutput``):
  ``float(int32 acc + bias) * float scale``, clamped, rounded half to even.
- TFLite's optimized int8 kernels (``tflite_opt``): ruy's kernels behind
  ``optimized_integer_ops::ConvPerChannel`` (``cpu_backend_gemm``) and the NEON/``kUpward``
  output stage of ``optimized_integer_ops::DepthwiseConvPerChannel``: the same SRDHM, then a
  rounding right shift that adds ``2**(e-1)`` and shifts (ties up, toward +infinity) instead
  of RoundingDivideByPOT. Checked against LiteRT 2.3.0 (tests/test_tflite_paths.py).
- XNNPACK's qs8/qc8w "fp32" requantization (``xnnpack``): ``xnn_qs8_qc8w``
  ``..._minmax_fp32_...`` micro-kernels and ``xnn_create_convolution2d_nhwc_qs8_qc8w``: the
  ONNX Runtime arithmetic with ``scale = float32(float32(in_s * w_s) / out_s)`` below 256, and
  activation bounds ``xnn_qs8_quantize`` = ``lrintf(f / out_s + zp)`` in float32.
"""

from __future__ import annotations

import math

import numpy as np

from convgen.core.params import ConfigError
from convgen.core.quant import (INT32_MAX, INT32_MIN, ONNX_SCALE_MAX, ONNX_SCALE_MIN, SHIFT_MAX, SHIFT_MIN,
                               XNNPACK_SCALE_MAX, XNNPACK_SCALE_MIN)

__all__ = [
    "INT32_MIN", "INT32_MAX", "wrap32", "srdhm", "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier", "multiply_by_quantized_multiplier_single",
    "quantize_multiplier", "ort_scale", "scale_onnx_float", "scale_onnx_int",
    "ONNX_SCALE_MIN", "ONNX_SCALE_MAX", "check_onnx_scale",
    "rounding_shift_right_half_up", "multiply_by_quantized_multiplier_opt", "xnnpack_scale",
    "check_xnnpack_scale", "tflite_activation_bounds", "xnnpack_activation_bounds",
]



def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap32(x) -> np.ndarray:
    """Two's complement wrap to int32 (what int32 additions and shifts do in hardware)."""
    x = _i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul(int32 a, int32 b)``.

    ``(a*b + nudge) / 2**31`` with C truncating division, nudge ``2**30`` for ``a*b >= 0``
    and ``1 - 2**30`` otherwise; ``INT32_MIN * INT32_MIN`` saturates to ``INT32_MAX``.
    ``|a*b| <= 2**62``, so int64 holds every intermediate."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    q = np.where(v >= 0, v >> 31, -((-v) >> 31))  # truncation toward zero
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, q).astype(np.int64)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT(int32 x, int exponent)``, ``0 <= exponent <= 31``:
    division by ``2**exponent`` rounding half away from zero."""
    x, e = _i64(x), _i64(exponent)
    if np.any((e < 0) | (e > 31)):
        raise ConfigError("RoundingDivideByPOT exponent must be in 0..31")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite's default (double-rounding) ``MultiplyByQuantizedMultiplier``:
    ``RoundingDivideByPOT(SRDHM(x * (1 << left_shift), M), right_shift)``.

    ``x * (1 << left_shift)`` is computed in int32 by TFLite, where an overflow is
    undefined behaviour; convgen defines it as two's complement wrap (what the compiled
    code and the hardware do)."""
    shift = _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(srdhm(wrap32(_i64(x) << left), multiplier), right)


def multiply_by_quantized_multiplier_single(x, multiplier, shift) -> np.ndarray:
    """TFLite's ``TFLITE_SINGLE_ROUNDING`` ``MultiplyByQuantizedMultiplier``:
    ``(x*M + 2**(30-shift)) >> (31-shift)`` in int64, ``-31 <= shift <= 30``; the result is
    saturated to int32 (TFLite only DCHECKs that it fits).

    ``|x*M| <= 2**62`` and the rounding term is at most ``2**61``, so int64 holds it."""
    shift = _i64(shift)
    if np.any((shift < SHIFT_MIN) | (shift > SHIFT_MAX)):
        raise ConfigError(f"shift must be in {SHIFT_MIN}..{SHIFT_MAX} for single rounding")
    total = 31 - shift
    r = (_i64(x) * _i64(multiplier) + (np.int64(1) << (total - 1))) >> total
    return np.clip(r, INT32_MIN, INT32_MAX)


def quantize_multiplier(real_multiplier: float, *, single_rounding: bool = False) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier(double, int32* quantized_multiplier, int* shift)``.

    ``q, shift = frexp(real)``; ``M = round(q * 2**31)`` half away from zero (TfLiteRound is
    ``std::round``); if ``M == 2**31`` it is halved and ``shift`` incremented; a shift below
    -31 flushes to ``(0, 0)``; with single rounding a shift above 30 saturates to
    ``(2**31 - 1, 30)``. Returns Python ints."""
    real = float(real_multiplier)
    if not math.isfinite(real):
        raise ConfigError(f"real_multiplier must be finite, not {real_multiplier!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    # std::round: half away from zero; q * 2**31 is exact in double (power-of-two scaling)
    scaled = q * (1 << 31)
    q_fixed = int(math.floor(abs(scaled) + 0.5)) * (1 if scaled >= 0 else -1)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < SHIFT_MIN:
        shift, q_fixed = 0, 0
    if single_rounding and shift > SHIFT_MAX:
        shift, q_fixed = SHIFT_MAX, INT32_MAX
    return int(q_fixed), int(shift)


def ort_scale(x_scale, w_scale, y_scale) -> np.ndarray:
    """The requantization scale as ONNX Runtime computes it for QLinearConv/QLinearMatMul:
    ``x_scale * w_scale / y_scale``, each operation in float32 (left to right)."""
    xs = np.float32(x_scale)
    ws = np.asarray(w_scale, dtype=np.float32)
    ys = np.float32(y_scale)
    return (xs * ws) / ys


def check_onnx_scale(scale, *, mode: str = "onnx") -> np.ndarray:
    """Return ``scale`` as float32, or raise ConfigError if any value is outside the
    accepted range of ``mode``: positive normal float32 below 1 for ``onnx``, below 256 for
    ``xnnpack`` (see docs/requant.md)."""
    lo, hi, what = ((XNNPACK_SCALE_MIN, XNNPACK_SCALE_MAX, "[2**-126, 256) (positive, normal, below 256)")
                    if mode == "xnnpack" else (ONNX_SCALE_MIN, ONNX_SCALE_MAX, "[2**-126, 1) (positive, normal, below 1)"))
    s = np.asarray(scale)
    if s.dtype != np.float32:
        s64 = np.asarray(scale, dtype=np.float64)
        s = s64.astype(np.float32)
        if not np.array_equal(s.astype(np.float64), s64, equal_nan=True):
            raise ConfigError("scale must be float32 values (ONNX Runtime computes the scale in float32); "
                              "pass a float32 array or use ort_scale(x_scale, w_scale, y_scale)")
    bad = ~((s >= np.float32(lo)) & (s <= np.float32(hi)))
    if np.any(bad):
        v = s[bad].ravel()[0]
        raise ConfigError(f"scale must be a float32 in {what}, not {float(v)!r}")
    return s


def check_xnnpack_scale(scale) -> np.ndarray:
    """:func:`check_onnx_scale` with XNNPACK's range: positive normal float32 below 256."""
    return check_onnx_scale(scale, mode="xnnpack")


def scale_onnx_float(v, scale) -> np.ndarray:
    """``round_half_even(float32(v) * float32(scale))`` computed the way ONNX Runtime does,
    in float32 (NumPy float32 arithmetic is IEEE 754 round-to-nearest-even). ``v`` is int32.
    Returns int64 (exact: the product is below 2**31 for ``onnx`` scales, below 2**39 for
    ``xnnpack`` scales, and float64 holds every float32 value)."""
    f = _i64(v).astype(np.float32) * np.asarray(scale, dtype=np.float32)
    return np.rint(f.astype(np.float64)).astype(np.int64)


def scale_onnx_int(v, scale) -> np.ndarray:
    """The same value as :func:`scale_onnx_float`, in integers only: the algorithm of the
    hardware (hdl/requant.py), kept here so it can be checked against float32 on many cases.

    1. ``|v|`` is normalised (leading-zero count) and rounded to a 24-bit significand ``fm``
       (half to even; ``fm`` may round up to exactly ``2**24``): ``float32(|v|) = fm * 2**(8-lz)``.
    2. ``P = fm * m`` with the scale's 24-bit significand ``m`` lies in ``[2**46, 2**48)``, so
       the float32 product keeps the top 24 bits: drop ``23 + P[47]`` bits, half to even.
    3. That float32 value ``R * 2**E`` is rounded to an integer, half to even.
    """
    v = _i64(v)
    s = np.asarray(scale, dtype=np.float32)
    bits = s.view(np.uint32).astype(np.int64)
    m = (bits & 0x7FFFFF) | (1 << 23)
    eb = (bits >> 23) & 0xFF
    neg = v < 0
    mag = np.abs(v)
    bitlen = np.zeros_like(mag)
    for b in range(32):
        bitlen = np.where(mag >= (np.int64(1) << b), b + 1, bitlen)
    lz = np.minimum(32 - bitlen, 31)  # leading zeros of the 32-bit magnitude (0 -> 31)
    nm = mag << lz
    fm = _rne_shift(nm, np.full_like(nm, 8))
    fexp = 8 - lz
    p = fm * m
    hi = (p >> 47) & 1
    r = _rne_shift(p, 23 + hi)
    u = 135 - hi - fexp - eb  # y = R * 2**(8 - u): R << 8 then a right shift by u
    u = np.minimum(u, 40)
    # scales >= 1 (mode xnnpack, below 256: eb <= 134) give u down to 135 - 1 - 8 - 134 = -8:
    # an exact left shift of R << 8 by up to 8 bits (the product is an integer then)
    y = np.where(u >= 0, _rne_shift(r << 8, np.maximum(u, 0)), (r << 8) << np.maximum(-u, 0))
    y = np.where(mag == 0, 0, y)
    return np.where(neg, -y, y)


def _rne_shift(x, n) -> np.ndarray:
    """``x / 2**n`` rounded half to even, for ``x >= 0``, ``0 <= n <= 62``."""
    x, n = _i64(x), _i64(n)
    q = x >> n
    rem = x - (q << n)
    half = np.where(n > 0, np.int64(1) << np.maximum(n - 1, 0), 0)
    up = (n > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    return q + up


def rounding_shift_right_half_up(x, exponent) -> np.ndarray:
    """``(x + 2**(e-1)) >> e`` for ``e > 0`` (``x`` for ``e == 0``), ``0 <= e <= 31``, with no
    int32 overflow: division by ``2**e`` rounding ties up (toward +infinity). This is NEON's
    ``SRSHL`` by ``-e``, TFLite's ``DepthwiseConvRound``/``DivideByPOT<DepthwiseConvOutputRounding::kUpward>``
    and the rounding right shift of ruy's kernels. It differs from RoundingDivideByPOT only on
    negative exact ties (``x < 0``, ``x mod 2**e == 2**(e-1)``), where it gives one more."""
    x, e = _i64(x), _i64(exponent)
    if np.any((e < 0) | (e > 31)):
        raise ConfigError("rounding shift exponent must be in 0..31")
    half = np.where(e > 0, np.int64(1) << np.maximum(e - 1, 0), 0)
    return (x + half) >> e


def multiply_by_quantized_multiplier_opt(x, multiplier, shift) -> np.ndarray:
    """TFLite's optimized int8 kernels (``tflite_opt``):
    ``rounding_shift_right_half_up(SRDHM(wrap32(x << left_shift), M), right_shift)``.

    SRDHM is gemmlowp's (it equals ``(a*b + 2**30) >> 31``, ties up, except INT32_MIN**2),
    what NEON's ``SQRDMULH`` computes and ruy's x86 kernels compute with a 64-bit product, a
    ``2**30`` nudge and an arithmetic shift by 31. Only the final shift differs from the
    reference kernels' :func:`multiply_by_quantized_multiplier`."""
    shift = _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_shift_right_half_up(srdhm(wrap32(_i64(x) << left), multiplier), right)


def xnnpack_scale(x_scale, w_scale, y_scale) -> np.ndarray:
    """XNNPACK's requantization scale: ``input_scale * kernel_scale[c] / output_scale`` in
    float32, left to right (``xnn_create_convolution2d_nhwc_qs8_qc8w``); the same arithmetic
    as :func:`ort_scale`."""
    return ort_scale(x_scale, w_scale, y_scale)


def _limits(out_width: int, out_signed: bool) -> tuple[int, int]:
    return (-(1 << (out_width - 1)), (1 << (out_width - 1)) - 1) if out_signed else (0, (1 << out_width) - 1)


def tflite_activation_bounds(f_min, f_max, out_scale, zero_point, *, out_width: int = 8,
                             out_signed: bool = True) -> tuple[int, int]:
    """Integer clamp bounds of a fused activation with float limits ``f_min``/``f_max``
    (``None``: no limit) as TFLite's kernels derive them
    (``CalculateActivationRangeQuantizedImpl``, tensorflow/lite/kernels/kernel_util.cc):
    ``zero_point + (int)TfLiteRound(f / scale)``, the division in float32 and ``TfLiteRound`` =
    ``std::round`` (half away from zero), then intersected with the output type's range."""
    qmin, qmax = _limits(out_width, out_signed)
    s = np.float32(out_scale)

    def quantize(f):
        q = np.float64(np.float32(f) / s)
        return int(zero_point) + int(math.copysign(math.floor(abs(q) + 0.5), q))

    lo = qmin if f_min is None else max(qmin, quantize(f_min))
    hi = qmax if f_max is None else min(qmax, quantize(f_max))
    return lo, hi


def xnnpack_activation_bounds(f_min, f_max, out_scale, zero_point, *, out_width: int = 8,
                              out_signed: bool = True) -> tuple[int, int]:
    """Integer clamp bounds of a fused activation as XNNPACK derives them (``xnn_qs8_quantize``
    in XNNPACK's subgraph code, called with the limits the TFLite delegate passes):
    ``lrintf(fminf(fmaxf(f / scale + (float)zero_point, qmin), qmax))``, float32 arithmetic,
    ``lrintf`` rounding half to even. ``None``: no limit (XNNPACK's -inf/+inf)."""
    qmin, qmax = _limits(out_width, out_signed)
    s = np.float32(out_scale)

    def quantize(f, default):
        if f is None:
            return default
        q = np.float32(np.float32(f) / s) + np.float32(zero_point)
        q = min(max(q, np.float32(qmin)), np.float32(qmax))
        return int(np.rint(np.float64(q)))

    return quantize(f_min, qmin), quantize(f_max, qmax)
