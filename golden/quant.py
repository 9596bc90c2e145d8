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
"""

from __future__ import annotations

import math

import numpy as np

from convgen.core.params import ConfigError
from convgen.core.quant import INT32_MAX, INT32_MIN, ONNX_SCALE_MAX, ONNX_SCALE_MIN, SHIFT_MAX, SHIFT_MIN

__all__ = [
    "INT32_MIN", "INT32_MAX", "wrap32", "srdhm", "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier", "multiply_by_quantized_multiplier_single",
    "quantize_multiplier", "ort_scale", "scale_onnx_float", "scale_onnx_int",
    "ONNX_SCALE_MIN", "ONNX_SCALE_MAX", "check_onnx_scale",
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


def check_onnx_scale(scale) -> np.ndarray:
    """Return ``scale`` as float32, or raise ConfigError if any value is outside the
    accepted range (positive normal float32 below 1, see docs/requant.md)."""
    s = np.asarray(scale)
    if s.dtype != np.float32:
        s64 = np.asarray(scale, dtype=np.float64)
        s = s64.astype(np.float32)
        if not np.array_equal(s.astype(np.float64), s64, equal_nan=True):
            raise ConfigError("scale must be float32 values (ONNX Runtime computes the scale in float32); "
                              "pass a float32 array or use ort_scale(x_scale, w_scale, y_scale)")
    bad = ~((s >= np.float32(ONNX_SCALE_MIN)) & (s <= np.float32(ONNX_SCALE_MAX)))
    if np.any(bad):
        v = s[bad].ravel()[0]
        raise ConfigError(f"scale must be a float32 in [2**-126, 1) (positive, normal, below 1), not {float(v)!r}")
    return s


def scale_onnx_float(v, scale) -> np.ndarray:
    """``round_half_even(float32(v) * float32(scale))`` computed the way ONNX Runtime does,
    in float32 (NumPy float32 arithmetic is IEEE 754 round-to-nearest-even). ``v`` is int32.
    Returns int64 (exact for scales below 1: the product is below 2**31)."""
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
    y = _rne_shift(r << 8, u)
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
