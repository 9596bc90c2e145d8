"""TFLite's host operators that ``convgen run tflite`` computes outside the engine, path by
path: SOFTMAX, MEAN, CONCATENATION, PAD, broadcasting ADD (``tflite_net.add_int8``) and MUL,
LOGISTIC, HARD_SWISH, QUANTIZE and DEQUANTIZE, re-derived in NumPy from TFLite's and XNNPACK's
kernels (LiteRT/TensorFlow sources, ``tflite/kernels/``; cited per function) and measured
against LiteRT 2.3 on every path (tests/test_tflite_ops.py, tests/test_tflite_quantize.py).

Integer tensors are int64 arrays holding int8 (or uint8) values; float tensors are float32.

CPU dependence (docs/tflite.md):

- the reference kernels (``ref``) are integer C++: the same on every CPU;
- the optimized SOFTMAX (``opt``; XNNPACK leaves int8 SOFTMAX to it, so also ``xnnpack``)
  builds a float LUT with the C library's ``expf`` and normalizes in float32 on x86 and on
  ARM64 builds with GCC; LiteRT's ARM64 wheels (clang) take another algorithm
  (``SoftmaxInt8LUT``, a uint16 LUT) that :func:`softmax` does not model:
  :func:`softmax_opt_is_modelled` says whether this machine runs the modelled one;
- the optimized MEAN and ADD run NEON code (NEON_2_SSE on x86): integer, the same everywhere,
  with the block structure described per function; multi-threaded MEAN would split its
  channel blocks differently (LiteRT runs single-threaded here);
- float QUANTIZE beyond the int32 range, the optimized DEQUANTIZE (FMA on ARM), XNNPACK's MUL
  (fixed point on ARM) and the optimized HARD_SWISH's NEON product are CPU-dependent as their
  functions describe; measured on x86-64 only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import numpy as np

from convgen.core.params import ConfigError

from .quant import (INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_opt,
                    quantize_multiplier, rounding_divide_by_pot, srdhm, wrap32)

__all__ = ["softmax", "softmax_reference", "softmax_optimized", "softmax_opt_is_modelled", "mean", "pad",
           "concatenation", "broadcast_category", "quantize", "dequantize", "xnnpack_requantize_delegated",
           "quantize_is_defined", "mul", "xnnpack_mul_delegated", "logistic", "hard_swish", "hard_swish_params"]


# ---------------------------------------------------------------------------------------------
# SOFTMAX
# ---------------------------------------------------------------------------------------------

def _sat_left(x, e: int):
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<e>`` for ``e > 0``: a saturating left shift."""
    x = np.asarray(x, dtype=np.int64)
    thr = (1 << (31 - e)) - 1
    return np.where(x > thr, INT32_MAX, np.where(x < -thr, INT32_MIN, x << e))


def _fx_mul(a, b):
    """gemmlowp fixed-point product: SRDHM of the raw values."""
    return srdhm(a, b)


def _exp_on_interval(a):
    """gemmlowp ``exp_on_interval_between_negative_one_quarter_and_0_excl`` (Q0.31)."""
    constant_term, one_third = 1895147668, 715827883
    x = wrap32(a + (1 << 28))
    x2 = _fx_mul(x, x)
    x3 = _fx_mul(x2, x)
    x4 = _fx_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(wrap32(_fx_mul(wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap32(constant_term + _fx_mul(constant_term, wrap32(x + poly)))


def _exp_on_negative_values(a):
    """gemmlowp ``exp_on_negative_values`` of a Q5.26 value (``a <= 0``), as Q0.31."""
    frac_bits = 26
    one_quarter = 1 << (frac_bits - 2)
    a = np.asarray(a, dtype=np.int64)
    a_mod_q = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval(_sat_left(a_mod_q, 5))
    remainder = wrap32(a_mod_q - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                           (2, 39332535), (3, 720401), (4, 242)):
        bit = (remainder & (1 << (frac_bits + exponent))) != 0
        result = np.where(bit, _fx_mul(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` (Q0.31 in, Q0.31 out)."""
    a = np.asarray(a, dtype=np.int64)
    s = a + INT32_MAX
    half_den = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))        # RoundingHalfSum, C division
    x = wrap32(1515870810 + _fx_mul(half_den, -1010580540))               # Q2.29: 48/17 - 32/17 d
    one_q2 = 1 << 29
    for _ in range(3):
        hdx = _fx_mul(half_den, x)                                          # Q2
        one_minus = wrap32(one_q2 - hdx)
        x = wrap32(x + _sat_left(_fx_mul(x, one_minus), 2))                 # Q4 -> Q2
    return _sat_left(x, 1)                                                   # ExactMulByPot<-1>, Rescale<0>


def _clz32(x):
    """Leading zeros of ``x`` as a uint32 (32 for 0)."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    return np.vectorize(lambda v: 32 - int(v).bit_length(), otypes=[np.int64])(x)


def softmax_reference(x, in_scale: float, beta: float) -> np.ndarray:
    """TFLite's reference int8 SOFTMAX (``BUILTIN_REF``; ``reference_ops::Softmax``,
    tflite/kernels/internal/reference/softmax.h, parameters from ``SoftmaxPrepare`` in
    tflite/kernels/activations.cc): gemmlowp fixed point over the last axis. The input
    difference to the row maximum is scaled by ``PreprocessSoftmaxScaling(beta, s_in, 5)``
    into Q5.26, ``exp_on_negative_values``, summed in Q12.19, the reciprocal by
    ``GetReciprocal`` (Newton-Raphson), the output rounded by ``RoundingDivideByPOT``; output
    scale 1/256, zero point -128."""
    x = np.asarray(x, dtype=np.int64)
    real = min(float(np.float32(beta)) * float(np.float32(in_scale)) * (1 << 26), (1 << 31) - 1.0)
    if not real > 1.0:     # QuantizeMultiplierGreaterThanOne: TFLITE_CHECK_GT(multiplier, 1.)
        raise ConfigError(f"SOFTMAX: beta * input scale * 2**26 = {real:.4g} is not above 1 (input scale "
                          f"{float(in_scale):.3g}); TFLite's reference kernel aborts on it "
                          "(QuantizeMultiplierGreaterThanOne in PreprocessSoftmaxScaling)")
    m, left = quantize_multiplier(real)
    diff_min = -int(np.floor(31.0 * (1 << 26) / (1 << left)))
    diff = x - x.max(axis=-1, keepdims=True)
    use = diff >= diff_min
    scaled = srdhm(wrap32(diff * (1 << left)), m)
    e = _exp_on_negative_values(scaled)
    e12 = rounding_divide_by_pot(e, 12)
    total = wrap32(np.where(use, e12, 0).sum(axis=-1, keepdims=True))
    head = _clz32(total)
    bits_over_unit = 12 - head
    shifted = wrap32(((total & 0xFFFFFFFF) << head) - (1 << 31))
    scale = _one_over_one_plus_x(shifted)
    exponent = bits_over_unit + 31 - 8
    if np.any((exponent < 0) | (exponent > 31)):
        raise ConfigError("SOFTMAX: a row whose sum of exponentials needs a reciprocal shift above 31; TFLite's "
                          "reference kernel aborts on it (TFLITE_CHECK in reference_ops::Softmax)")
    out = rounding_divide_by_pot(_fx_mul(scale, e), exponent) - 128
    return np.where(use, np.clip(out, -128, 127), -128)


_LIBM = None


def _expf(v: np.ndarray) -> np.ndarray:
    """The C library's ``expf`` (the one LiteRT's kernels call), element by element."""
    global _LIBM
    if _LIBM is None:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        lib.expf.restype = ctypes.c_float
        lib.expf.argtypes = [ctypes.c_float]
        _LIBM = lib
    return np.array([_LIBM.expf(float(t)) for t in np.asarray(v, np.float32).ravel()],
                    dtype=np.float32).reshape(np.shape(v))


def _exp(v: np.ndarray) -> np.ndarray:
    """The C library's double ``exp``, element by element."""
    _expf(np.zeros(0, np.float32))                       # loads the library
    if not hasattr(_LIBM, "_convgen_exp"):
        _LIBM.exp.restype = ctypes.c_double
        _LIBM.exp.argtypes = [ctypes.c_double]
        _LIBM._convgen_exp = True
    return np.array([_LIBM.exp(float(t)) for t in np.asarray(v, np.float64).ravel()],
                    dtype=np.float64).reshape(np.shape(v))


def softmax_opt_is_modelled() -> bool:
    """Whether this machine's LiteRT runs the optimized SOFTMAX that :func:`softmax_optimized`
    models (float LUT): every CPU except ARM64, whose LiteRT wheels are built with clang and
    take ``SoftmaxInt8LUT`` (``TFLITE_SOFTMAX_USE_UINT16_LUT``, optimized_ops.h)."""
    return platform.machine().lower() not in ("aarch64", "arm64")


def softmax_optimized(x, in_scale: float, out_scale: float, out_zp: int, beta: float) -> np.ndarray:
    """TFLite's optimized int8 SOFTMAX off ARM64 (``optimized_ops::Softmax`` with
    ``PopulateSoftmaxLookupTable``, tflite/kernels/internal/optimized/optimized_ops.h):
    ``table[255 - d] = expf(f32(-s_in * beta) * d)`` (the C library's ``expf``), per row
    ``sum`` of the row's table values added in float32 in order, ``inv = 1 / (sum * s_out)``,
    each output ``round(table * inv)`` (half away from zero) ``+ zp``, clamped to int8."""
    x = np.asarray(x, dtype=np.int64)
    scale = np.float32(-np.float32(in_scale) * np.float32(beta))
    table = _expf(scale * np.arange(256, dtype=np.float32))           # table[d]: difference d
    d = (x.max(axis=-1, keepdims=True) - x)
    t = table[d]
    rows = t.reshape(-1, t.shape[-1])
    sums = np.zeros(rows.shape[0], dtype=np.float32)
    for j in range(rows.shape[1]):                                    # in order, float32
        sums = (sums + rows[:, j]).astype(np.float32)
    inv = (np.float32(1.0) / (sums * np.float32(out_scale))).astype(np.float32)
    prob = (rows * inv[:, None]).astype(np.float32)
    q = np.sign(prob) * np.floor(np.abs(prob).astype(np.float64) + 0.5)   # std::round
    return np.clip(q.astype(np.int64) + int(out_zp), -128, 127).reshape(x.shape)


def softmax(x, in_scale: float, out_scale: float, out_zp: int, beta: float, path: str) -> np.ndarray:
    """int8 SOFTMAX over the last axis on ``path``: ``ref`` :func:`softmax_reference`;
    ``opt`` and ``xnnpack`` (the delegate leaves int8 SOFTMAX to TFLite's optimized kernel)
    :func:`softmax_optimized`."""
    if path == "ref":
        return softmax_reference(x, in_scale, beta)
    return softmax_optimized(x, in_scale, out_scale, out_zp, beta)


# ---------------------------------------------------------------------------------------------
# MEAN
# ---------------------------------------------------------------------------------------------

def _mean_reference(x, axes, keep_dims, in_scale, in_zp, out_scale, out_zp):
    """``reference_ops::QuantizedMeanOrSum`` (tflite/kernels/internal/reference/reduce.h)
    with ``PrepareMeanOrSum``'s multiplier (tflite/kernels/reduce.cc): ``M, shift =
    QuantizeMultiplier(s_in / s_out)``; ``k = floor(log2 n)`` (at most 32 and ``31 + shift``),
    ``M' = (M << k) // n``; ``MultiplyByQuantizedMultiplier(sum - zp_in * n, M', shift - k) +
    zp_out``, clamped."""
    n = int(np.prod([x.shape[a] for a in axes]))
    total = x.sum(axis=tuple(axes), keepdims=keep_dims)
    m, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    k = min(n.bit_length() - 1, 32, 31 + shift)
    m2 = (m << k) // n
    y = multiply_by_quantized_multiplier(wrap32(total - in_zp * n), m2, shift - k) + out_zp
    return np.clip(y, -128, 127)


def _mean_optimized_hw(x, in_scale, in_zp, out_scale, out_zp):
    """``optimized_integer_ops::Mean`` (tflite/kernels/internal/optimized/integer_ops/mean.h):
    4-D, axes {1, 2}, keep_dims. ``real = f32(s_in / f32(n * s_out))``, ``M, shift =
    QuantizeMultiplier(real)``, ``bias = zp_out - trunc(f32(f32(zp_in * s_in) / s_out) +-
    0.5)``; the raw int8 sum (no zero point) of each channel, then: channels in whole blocks
    of 16 (NEON; NEON_2_SSE on x86) ``SRDHM(sum << max(shift, 0), M)`` rounded by
    ``vrshl`` (ties up), the last ``C mod 16`` channels ``MultiplyByQuantizedMultiplier``
    (ties away); ``+ bias``, clamped to int8 (single-threaded)."""
    _, h, w, c = x.shape
    n = np.float32(h * w)
    s_in, s_out = np.float32(in_scale), np.float32(out_scale)
    temp = np.float32(np.float32(np.float32(in_zp) * s_in) / s_out)
    temp = np.float32(temp + np.float32(0.5)) if temp > 0 else np.float32(temp - np.float32(0.5))
    bias = int(out_zp) - int(np.trunc(temp))
    real = np.float32(s_in / np.float32(n * s_out))
    m, shift = quantize_multiplier(float(real))
    acc = x.sum(axis=(1, 2), keepdims=True)
    left, right = max(shift, 0), max(-shift, 0)
    h_ = srdhm(wrap32(acc << left), m)
    vec = (h_ + ((1 << right) >> 1)) >> right if right else h_                       # vrshl: ties up
    sca = multiply_by_quantized_multiplier(acc, m, shift)
    block = np.arange(c) < 16 * (c // 16)
    return np.clip(np.where(block, vec, sca) + bias, -128, 127)


def _mean_xnnpack(x, axes, in_scale, in_zp, out_scale, out_zp, *, fused: bool = False):
    """XNNPACK's qs8 mean (``xnn_define_static_reduce_v2`` with ``xnn_reduce_mean``;
    src/operators/reduce-nd.c, ``xnn_init_qs8_reduce_scalar_params`` /
    ``xnn_update_qs8_reduce_scalar_params`` in src/microparams-init.c, the int32 -> qs8
    reference convert of src/reference/unary-elementwise.cc): the raw int32 sum, ``scale =
    f32(f32(s_in / s_out) * f32(1 / n))``, ``zp' = f32(zp_out - f32(n * zp_in * scale))``,
    ``y = nearbyint(f32(f32(sum * scale) + zp'))`` saturated to int8. The products and sums
    are separate float32 operations on x86 (no FMA in that code); an ARM64 build may fuse
    them (``-ffp-contract``), so this is measured on x86; ``fused``: each product and sum
    rounded once, as an FMA would (docs/tflite.md)."""
    n = int(np.prod([x.shape[a] for a in axes]))
    f = np.float32
    scale = f(f(f(in_scale) / f(out_scale)) * f(f(1.0) / f(n)))
    acc = x.sum(axis=tuple(axes), keepdims=True).astype(np.float32)
    if fused:   # products exact in float64 (24 x 24 bits), one rounding per fused operation
        zp = f(float(f(out_zp)) - float(f(n * int(in_zp))) * float(scale))
        t = (acc.astype(np.float64) * float(scale) + float(zp)).astype(np.float32)
    else:
        zp = f(f(out_zp) - f(f(n * int(in_zp)) * scale))
        t = ((acc * scale).astype(np.float32) + zp).astype(np.float32)
    return np.clip(np.rint(t), -128, 127).astype(np.int64)


def mean(x, axes, keep_dims: bool, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
         path: str) -> np.ndarray:
    """int8 MEAN over ``axes`` on ``path``: ``ref`` the reference kernel; ``opt`` the optimized
    4-D spatial mean (:func:`_mean_optimized_hw`) where it applies (4-D input, axes {1, 2},
    keep_dims), else the reference kernel (``EvalMean`` in tflite/kernels/reduce.cc);
    ``xnnpack``: the delegate leaves int8 MEAN to the optimized kernel (measured: no
    DELEGATE node for it), so as ``opt``."""
    x = np.asarray(x, dtype=np.int64)
    axes = sorted({int(a) % x.ndim for a in np.ravel(axes)})
    if path == "xnnpack":
        y = _mean_xnnpack(x, axes, in_scale, in_zp, out_scale, out_zp)
        return y if keep_dims else y.reshape([d for i, d in enumerate(x.shape) if i not in axes])
    if path != "ref" and keep_dims and x.ndim == 4 and axes == [1, 2]:
        return _mean_optimized_hw(x, in_scale, in_zp, out_scale, out_zp)
    return _mean_reference(x, axes, keep_dims, in_scale, in_zp, out_scale, out_zp)


# ---------------------------------------------------------------------------------------------
# PAD, CONCATENATION
# ---------------------------------------------------------------------------------------------

def pad(x, paddings, zero_point: int) -> np.ndarray:
    """int8 PAD (tflite/kernels/pad.cc, ``reference_ops::Pad``): the input with
    ``paddings[i] = (before, after)`` elements of the output zero point on each axis;
    input and output quantization are equal (checked when the model is read)."""
    return np.pad(np.asarray(x, dtype=np.int64), [tuple(int(v) for v in p) for p in np.asarray(paddings)],
                  constant_values=int(zero_point))


def concatenation(xs, axis: int) -> np.ndarray:
    """int8 CONCATENATION (tflite/kernels/concatenation.cc): TFLite requires every int8
    input to have the output's scale and zero point, so it copies."""
    return np.concatenate([np.asarray(v, dtype=np.int64) for v in xs], axis=axis)


# ---------------------------------------------------------------------------------------------
# broadcasting ADD: which elements the optimized kernel computes with which code
# ---------------------------------------------------------------------------------------------

def broadcast_category(shape0, shape1):
    """``ProcessBroadcastShapes`` (tflite/kernels/internal/reference/process_broadcast_shapes.h):
    ``(category, y)`` with category ``"none"``, ``"first"`` (the first input broadcasts
    fast), ``"second"`` or ``"generic"``, and the five-fold ``broadcast_shape`` ``y``."""
    n = max(len(shape0), len(shape1))
    a0 = (1,) * (n - len(shape0)) + tuple(shape0)
    a1 = (1,) * (n - len(shape1)) + tuple(shape1)
    if a0 == a1:
        return "none", None
    cat = "generic"
    for i in range(n - 1, -1, -1):
        if a0[i] == a1[i]:
            continue
        if a0[i] == 1:
            cat = "first"
        elif a1[i] == 1:
            cat = "second"
        else:
            return "generic", None
        break
    sa, sb = (a1, a0) if cat == "second" else (a0, a1)
    y = [1, 1, 1, 1, 1]
    i = n - 1
    for slot, cond in ((4, lambda i: sa[i] == sb[i]), (3, lambda i: sa[i] == 1), (2, lambda i: sa[i] == sb[i]),
                       (1, lambda i: sb[i] == 1), (0, lambda i: sa[i] == sb[i])):
        while i >= 0 and cond(i):
            y[slot] *= sb[i] if slot in (4, 3, 0) else sa[i]
            i -= 1
    if i >= 0:
        return "generic", None
    return cat, y


# ---------------------------------------------------------------------------------------------
# QUANTIZE, DEQUANTIZE
# ---------------------------------------------------------------------------------------------

#: the integer ranges of the quantized types QUANTIZE and DEQUANTIZE take
INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _round_half_away(v) -> np.ndarray:
    """``std::round`` (``TfLiteRound``) of float values, exactly, as float64."""
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _cvt_int32_x86(r) -> np.ndarray:
    """Rounded float values converted to int32 as x86's ``cvttss2si``/``cvtps2dq`` do: a value
    outside the int32 range (or not finite) becomes ``INT32_MIN``, the "integer indefinite"
    value. (In C++ the conversion is undefined there; ARM saturates instead.)"""
    r = np.asarray(r, np.float64)
    with np.errstate(invalid="ignore"):
        ok = (r >= -2.0 ** 31) & (r < 2.0 ** 31)
        return np.where(ok, np.where(ok, r, 0).astype(np.int64), INT32_MIN)


def quantize_is_defined(x, out_scale: float) -> np.ndarray:
    """Where TFLite's reference and optimized float QUANTIZE are defined C++: ``|x / s|`` within
    the int32 range (elsewhere the float -> int32 conversion is undefined and CPU-dependent:
    :func:`quantize` models x86)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(np.asarray(x, np.float64) / float(np.float32(out_scale))) < 2.0 ** 31 - 1


def xnnpack_requantize_delegated(in_dtype: str, out_dtype: str, in_scale: float, out_scale: float) -> bool:
    """Whether the XNNPACK delegate takes an integer QUANTIZE (a requantization): input and
    output of the same type (int8 -> int8, uint8 -> uint8) and ``2**-8 <= f32(s_in / s_out) <=
    2**7`` (the XNNPACK delegate's ``VisitQuantizeNode``; ``xnn_init_qs8_cvt_scalar_params``
    asserts that range). Otherwise the node stays with TFLite's optimized kernel."""
    r = float(np.float32(np.float32(in_scale) / np.float32(out_scale)))
    return in_dtype == out_dtype and 2.0 ** -8 <= r <= 2.0 ** 7


def quantize(x, in_dtype: str, in_scale, in_zp, out_dtype: str, out_scale: float, out_zp: int,
             path: str) -> np.ndarray:
    """QUANTIZE on ``path`` (tflite/kernels/quantize.cc). ``x``: float32 values (``in_dtype``
    ``"float32"``: quantization) or int8/uint8 values as integers (requantization; ``in_scale``,
    ``in_zp`` its quantization); the output is ``out_dtype`` (int8 or uint8) values as int64.

    float32 -> int8/uint8, ``s = f32(out_scale)``, result clamped to the output type:

    - ``ref`` (``reference_ops::AffineQuantize``, reference/quantize.h): ``round(f32(x / s)) +
      zp``, the quotient in float32, ``std::round`` (ties away from zero);
    - ``opt`` (``optimized_ops::AffineQuantize``, optimized/optimized_ops.h): whole blocks of 8
      elements NEON code (NEON_2_SSE on x86): ``RoundToNearest(f32(x * f32(1 / s)))`` (ties to
      even: ``vcvtnq_s32_f32``); the last ``n mod 8`` the scalar ``round(x / double(s))`` (in
      double, ties away);
    - ``xnnpack`` (XNNPACK's f32 -> qs8/qu8 convert, ``xnn_init_f32_qs8_cvt_scalar_params`` and
      the f32-qs8-vcvt kernels): ``nearbyint(f32(x * f32(1 / s))) + zp``, ties to even,
      saturated in float (so infinities saturate too).

    On ``ref`` and ``opt`` the rounded value is converted to int32 and the zero point added in
    int32 (a wrap) before the clamp. A value whose ``|x / s|`` reaches ``2**31`` (or an
    infinity) is outside that conversion's defined range: x86 gives ``INT32_MIN``
    (:func:`_cvt_int32_x86`; measured: ``1e30`` quantizes to -128, and with zero point -128 the
    wrap makes it 127), ARM saturates. :func:`quantize_is_defined` says where the result is
    the same on every CPU. NaN is not modelled.

    int8/uint8 -> int8/uint8 (``M, shift = QuantizeMultiplier(double(s_in) / double(s_out))``
    in ``quantize.cc``'s Prepare):

    - ``ref`` (``reference_ops::Requantize``, reference/requantize.h):
      ``MultiplyByQuantizedMultiplier(q - zp_in, M, shift) + zp_out`` (the same-scale
      ``^ 0x80`` fast path computes the same values);
    - ``opt`` (``optimized_ops::Requantize``): whole blocks of 16 elements NEON code,
      ``SRDHM(wrap32((q - zp_in) << left), M)`` then a rounding right shift whose ties round up
      (:func:`~convgen.golden.quant.multiply_by_quantized_multiplier_opt`), the last ``n mod
      16`` the reference formula;
    - ``xnnpack``: where the delegate takes it (:func:`xnnpack_requantize_delegated`), XNNPACK's
      qs8/qu8 convert (``xnn_init_qs8_cvt_scalar_params``, the qs8-vcvt kernels): ``m =
      lrintf(256 * f32(s_in / s_out))``, ``((q - zp_in) * m + 128) >> 8`` (ties up) ``+
      zp_out``; otherwise (int8 <-> uint8, or a ratio out of range) as ``opt``.

    Measured against LiteRT 2.3.0 on all three paths (tests/test_tflite_ops.py)."""
    lo, hi = INT_RANGE[out_dtype]
    f = np.float32
    s = f(out_scale)
    if in_dtype == "float32":
        x = np.asarray(x, np.float32)
        if path == "ref":
            y = _round_half_away((x / s).astype(np.float32))
        else:
            vec = np.rint((x * f(1.0 / float(s))).astype(np.float32) if path == "opt" else
                          (x * f(f(1.0) / s)).astype(np.float32))
            if path == "opt":
                flat = x.ravel()
                tail = _round_half_away(flat.astype(np.float64) / float(s)).reshape(x.shape)
                idx = np.arange(x.size).reshape(x.shape)
                vec = np.where(idx < 8 * (x.size // 8), vec, tail)
            y = vec
        if path == "xnnpack":                   # clamped in float before the conversion
            return np.clip(y + int(out_zp), lo, hi).astype(np.int64)
        return np.clip(wrap32(_cvt_int32_x86(y) + int(out_zp)), lo, hi)
    q = np.asarray(x, np.int64) - int(in_zp)
    if path == "xnnpack" and xnnpack_requantize_delegated(in_dtype, out_dtype, in_scale, out_scale):
        m = int(np.rint(f(256.0) * f(f(in_scale) / s)))
        return np.clip(((q * m + 128) >> 8) + int(out_zp), lo, hi)
    m, shift = quantize_multiplier(float(f(in_scale)) / float(s))
    y = multiply_by_quantized_multiplier(q, m, shift)
    if path != "ref":
        idx = np.arange(q.size).reshape(q.shape)
        y = np.where(idx < 16 * (q.size // 16), multiply_by_quantized_multiplier_opt(q, m, shift), y)
    return np.clip(y + int(out_zp), lo, hi)


def dequantize(x, scale: float, zero_point: int, path: str, *, fused: bool = False) -> np.ndarray:
    """DEQUANTIZE of int8/uint8 values ``x`` to float32 on ``path`` (tflite/kernels/dequantize.h):

    - ``ref`` (``reference_integer_ops::Dequantize``; uint8: ``reference_ops::Dequantize``) and
      ``xnnpack`` (XNNPACK's qs8/qu8 -> f32 convert): ``f32((q - zp) * s)``, one rounding (the
      reference computes it in double, where the product is exact);
    - ``opt`` (``optimized_ops::Dequantize``, optimized/optimized_ops.h): whole blocks of 8
      elements NEON code: ``f32(f32(q * s) + f32(-zp * double(s)))``, a product and a sum each
      rounded (x86: NEON_2_SSE); on ARM with ``__ARM_FEATURE_FMA`` it is one ``vfmaq_f32``
      (``fused``: one rounding); the last ``n mod 8`` the reference formula."""
    f = np.float32
    q = np.asarray(x, np.int64)
    s = float(f(scale))
    y = ((q - int(zero_point)).astype(np.float64) * s).astype(np.float32)
    if path != "opt":
        return y
    zs = f(-int(zero_point) * s)
    if fused:
        vec = (q.astype(np.float64) * s + float(zs)).astype(np.float32)
    else:
        vec = ((q.astype(np.float32) * f(s)).astype(np.float32) + zs).astype(np.float32)
    idx = np.arange(q.size).reshape(q.shape)
    return np.where(idx < 8 * (q.size // 8), vec, y).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# MUL
# ---------------------------------------------------------------------------------------------

def xnnpack_mul_delegated(a_scale: float, b_scale: float, out_scale: float) -> bool:
    """Whether the XNNPACK delegate takes an int8 MUL: its product-to-output scale
    ``f32(f32(s_a * s_b) / s_out)`` in ``[2**-16, 2**8)`` (the delegate's ``VisitMulNode``);
    otherwise the node stays with TFLite's optimized kernel."""
    f = np.float32
    r = float(f(f(f(a_scale) * f(b_scale)) / f(out_scale)))
    return 2.0 ** -16 <= r < 2.0 ** 8


def _mul_real_multiplier(a_scale: float, b_scale: float, out_scale: float) -> np.float32:
    """MUL's real multiplier as TFLite and XNNPACK compute it: ``f32(f32(s_a * s_b) / s_out)``."""
    f = np.float32
    return f(f(f(a_scale) * f(b_scale)) / f(out_scale))


def _neon_int16_output(y32, out_zp: int) -> np.ndarray:
    """The optimized MUL's NEON output stage: the int32 result saturated to int16
    (``vqmovn_s32``), the zero point added in int16 with a wrap (``vaddq_s16``), saturated to
    int8 (``vqmovn_s16``)."""
    v = np.clip(np.asarray(y32, np.int64), -(1 << 15), (1 << 15) - 1) + int(out_zp)
    return np.clip(((v + (1 << 15)) & 0xFFFF) - (1 << 15), -128, 127)


def mul(a, b, a_scale: float, a_zp: int, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        activation: str, path: str) -> np.ndarray:
    """int8 MUL of two tensors (same shape, or broadcasting NumPy's way) on ``path``
    (tflite/kernels/mul.cc), measured against LiteRT 2.3.0 on designed saturation and ties and
    random data:

    - ``ref`` (``reference_integer_ops::MulElementwise`` / ``BroadcastMul6DSlow``):
      ``MultiplyByQuantizedMultiplier((a - zp_a) * (b - zp_b), M, shift) + zp_out``, clamped
      to the activation's bounds; ``M, shift = QuantizeMultiplier(double(f32(f32(s_a * s_b) /
      s_out)))``: the real multiplier is computed in float32 (``mul.cc``'s Prepare multiplies
      the float scales), measured: with ``s_a * s_b / s_out`` just below 0.25 in double but 0.25
      in float32 the float32 one is what LiteRT uses;
    - ``opt`` (``optimized_integer_ops::MulElementwise``, ``BroadcastMulDispatch``): the same
      int32 result; on the NEON code's elements it is narrowed to int16 with saturation
      (``vqmovn_s32``), the output zero point added in int16 **with a wrap** (``vaddq_s16``),
      then saturated to int8 and clamped; so a product far above the int8 range can come out
      as -128 when the zero point is positive. Which elements take the NEON code: the whole
      blocks of 16 of the flattened output; under broadcasting
      (:func:`broadcast_category`, as ADD) the blocks of 16 from the start of each run of
      ``y4`` elements, or with ``y4 == 1`` of each run of ``y3`` (``MulSimpleBroadcast``);
      a generic broadcast runs the reference formula;
    - ``xnnpack`` where the delegate takes it (:func:`xnnpack_mul_delegated`; XNNPACK's qs8
      vmul "fp32" kernels, ``xnn_init_qs8_mul_minmax_scalar_params``): ``nearbyint(f32((a -
      zp_a) * (b - zp_b)) * f32(f32(s_a * s_b) / s_out)) + zp_out`` (ties to even), clamped
      to the bounds XNNPACK derives (``xnnpack_activation_bounds``); otherwise as ``opt``."""
    from .quant import tflite_activation_bounds, xnnpack_activation_bounds
    from .tflite_fixtures import ACTIVATIONS

    a0, b0 = np.shape(a), np.shape(b)
    a, b = (np.asarray(v, dtype=np.int64) for v in np.broadcast_arrays(a, b))
    prod = (a - int(a_zp)) * (b - int(b_zp))
    f_min, f_max = ACTIVATIONS[activation]
    real = _mul_real_multiplier(a_scale, b_scale, out_scale)
    if path == "xnnpack" and xnnpack_mul_delegated(a_scale, b_scale, out_scale):
        lo, hi = xnnpack_activation_bounds(f_min, f_max, float(np.float32(out_scale)), int(out_zp))
        y = np.rint((prod.astype(np.float32) * real).astype(np.float32))
        return np.clip(y + int(out_zp), lo, hi).astype(np.int64)
    lo, hi = tflite_activation_bounds(f_min, f_max, float(np.float32(out_scale)), int(out_zp))
    m, shift = quantize_multiplier(float(real))
    y32 = multiply_by_quantized_multiplier(prod, m, shift)
    y = np.clip(y32 + int(out_zp), lo, hi)
    if path == "ref":
        return y
    vec = np.clip(_neon_int16_output(y32, out_zp), lo, hi)
    idx = np.arange(a.size).reshape(a.shape)
    category, fold = broadcast_category(a0, b0)
    if category == "none":
        neon = idx < 16 * (a.size // 16)
    elif category == "generic":
        neon = np.zeros(a.shape, bool)
    elif fold[4] > 1:
        neon = idx % fold[4] < 16 * (fold[4] // 16)
    else:
        neon = idx % fold[3] < 16 * (fold[3] // 16)
    return np.where(neon, vec, y)


# ---------------------------------------------------------------------------------------------
# LOGISTIC
# ---------------------------------------------------------------------------------------------

def logistic(x, in_scale: float, in_zp: int, path: str) -> np.ndarray:
    """int8 LOGISTIC (output scale 1/256, zero point -128: TFLite requires it) on ``path``, a
    256-entry table indexed by the input (tflite/kernels/activations.cc, ``SigmoidPrepare``):

    - ``ref`` and ``opt`` (both ``PopulateLookupTable<int8_t>`` with ``1.0f / (1.0f +
      std::exp(-v))``; ``BUILTIN_REF`` takes the same table): ``v = f32(s_in * (q - zp_in))``,
      ``t = f32(1 / f32(1 + expf(-v)))``, ``round(f32(t * f32(1 / s_out)))`` (ties away)
      ``- 128``, clamped;
    - ``xnnpack``: XNNPACK's quantized unary operators run its reference kernel over the 256
      input values to fill the table (``init_lut_op`` in src/operators/unary-elementwise-nc.c,
      ``SigmoidOp`` and ``unary_ukernel_quantized`` in src/reference/unary-elementwise.cc):
      ``v = f32((q - zp_in) * s_in)``, ``e = exp(double(v))``, ``t = f32(e / (1 + e))`` (1 above
      ``v > 100``, 0 below ``-100``), ``nearbyint(f32(t * f32(1 / s_out)) - 128)`` (ties to
      even), clamped. It differs from TFLite's table where the float32 and double formulas
      fall on either side of a half (measured: 1 of 76,800 table entries over 300 random input
      quantizations: ``s_in = 0.0011770652``, ``zp_in = -64``, ``q = 49``, where
      ``256 sigmoid(v)`` is 136.5000075; the older table formula of XNNPACK's qs8 sigmoid,
      ``1 - 1/(1 + expf(v))`` in float32, rounds ``s_in = 0.0051157083``, ``zp_in = 85``,
      ``q = 111`` the other way than LiteRT 2.3's XNNPACK).

    ``expf`` and ``exp`` are the C library's (:func:`_expf`, :func:`_exp`), the ones LiteRT
    calls; measured on x86 with glibc."""
    f = np.float32
    q = np.arange(-128, 128)
    v = (f(in_scale) * (q - int(in_zp)).astype(np.float32)).astype(np.float32)
    inv = f(f(1.0) / f(1.0 / 256))
    if path == "xnnpack":
        e = _exp(np.clip(v, -101, 101).astype(np.float64))
        t = np.where(v > 100, 1.0, np.where(v < -100, 0.0, e / (1.0 + e))).astype(np.float32)
        table = np.rint(((t * inv).astype(np.float32) + f(-128)).astype(np.float32)) + 128
    else:
        t = (f(1.0) / (f(1.0) + _expf(-v))).astype(np.float32)
        table = _round_half_away((t * inv).astype(np.float32))
    table = np.clip(table - 128, -128, 127).astype(np.int64)
    return table[np.asarray(x, np.int64) + 128]


# ---------------------------------------------------------------------------------------------
# HARD_SWISH
# ---------------------------------------------------------------------------------------------

def _srdhm16(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16: ``(a*b + nudge) / 2**15``
    (C division), nudge ``2**14`` or ``1 - 2**14``; ``-32768 * -32768`` saturates."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    v = a * b + np.where(a * b >= 0, 1 << 14, 1 - (1 << 14))
    q = np.where(v >= 0, v >> 15, -((-v) >> 15))
    return np.where((a == b) & (a == -(1 << 15)), (1 << 15) - 1, q)


def _sdhm16(a, b, *, floor: bool = False) -> np.ndarray:
    """TFLite's ``SaturatingDoublingHighMul`` (reference/hard_swish.h): ``a*b / 2**15``
    truncated toward zero (``floor``: toward minus infinity, as NEON's ``SQDMULH``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    q = ab >> 15 if floor else np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == b) & (a == -(1 << 15)), (1 << 15) - 1, q)


def _int16(v) -> np.ndarray:
    return ((np.asarray(v, np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def _rdbpot16(x, e: int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT`` instantiated for int16 as written: the mask ``(1 << e)
    - 1`` is converted to int16, so for ``e >= 16`` it is -1 and the result is -1 for a negative
    ``x`` and +1 otherwise (measured: an output exponent of -16 makes every output the zero
    point -1 or +1)."""
    x = np.asarray(x, np.int64)
    if e == 0:
        return x
    mask = int(_int16((1 << e) - 1))
    remainder = _int16(x & mask)
    threshold = _int16((mask >> 1) + (x < 0))
    return _int16((x >> e) + (remainder > threshold))


def _down_scale_to_int16(m: int) -> int:
    """TFLite's ``DownScaleInt32ToInt16Multiplier`` (kernels/internal/common.h)."""
    return (1 << 15) - 1 if m >= (1 << 31) - 1 - (1 << 15) else (m + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, out_scale: float) -> tuple[int, int, int, int]:
    """``HardSwishPrepare`` (tflite/kernels/activations.cc), in float32 as there:
    ``hires = f32(s_in / 128)``; the output multiplier ``f32(hires / s_out)`` and the
    "reluish" multiplier ``f32(hires / f32(3 / 32768))``, each ``QuantizeMultiplier`` then
    ``DownScaleInt32ToInt16Multiplier``. Returns ``(output_m16, output_exponent, reluish_m16,
    reluish_exponent)``; ConfigError where TFLite refuses (output exponent above 0)."""
    f = np.float32
    hires = f(f(1.0 / 128.0) * f(in_scale))
    om, oe = quantize_multiplier(float(f(hires / f(out_scale))))
    rm, re = quantize_multiplier(float(f(hires / f(f(3.0) / f(32768.0)))))
    if oe > 0:
        raise ConfigError(f"HARD_SWISH: input scale / (128 * output scale) = {float(hires / f(out_scale)):.3g} is "
                          "1 or more; TFLite refuses it (output_multiplier_exponent <= 0)")
    return _down_scale_to_int16(om), oe, _down_scale_to_int16(rm), re


def hard_swish(x, in_scale: float, in_zp: int, out_scale: float, out_zp: int, path: str, *,
               floor_product: bool = False) -> np.ndarray:
    """int8 HARD_SWISH, ``x * relu6(x + 3) / 6``, on ``path``: TFLite's int16 fixed point
    (``reference_ops::HardSwish``, tflite/kernels/internal/reference/hard_swish.h, parameters
    :func:`hard_swish_params`):

    ``v = (q - zp_in) * 128``; ``pre = SRDHM16(v, M_out)``; the "reluish" value ``r = v``
    left-shifted with saturation by ``e_r - 1``, ``SRDHM16(r, M_r)``, left-shifted by the last
    bit with saturation (``e_r > 0``) or ``RoundingDivideByPOT(r, -e_r)`` (``e_r < 0``), then
    ``(r + 2**15) >> 1`` into [0, 1]; ``p = SaturatingDoublingHighMul(r, pre)`` (truncating);
    ``RoundingDivideByPOT(p, -e_out) + zp_out``, clamped to int8. Each step in int16.

    Paths: ``ref`` is that code. ``opt`` (``optimized_ops::HardSwish``) measured equal to it on
    every output with LiteRT 2.3 on x86. ``xnnpack``: the delegate does not take an int8
    HARD_SWISH (measured: no DELEGATE node), TFLite's optimized kernel runs it. The optimized
    kernel's NEON code forms the last product with ``SQDMULH``, which rounds toward minus
    infinity rather than toward zero (``floor_product``); ARM was not measured."""
    del path    # one arithmetic on every path (docstring)
    om, oe, rm, re = hard_swish_params(in_scale, out_scale)

    def sat16(v):
        return np.clip(v, -(1 << 15), (1 << 15) - 1)

    v = (np.asarray(x, np.int64) - int(in_zp)) * 128
    pre = _srdhm16(v, om)
    r = v
    if re > 0:
        r = sat16(r * (1 << (re - 1)))
    r = _srdhm16(r, rm)
    if re > 0:
        r = sat16(r * 2)
    if re < 0:
        r = _rdbpot16(r, -re)
    r = (r + (1 << 15)) >> 1
    p = _sdhm16(r, pre, floor=floor_product)
    return np.clip(_rdbpot16(p, -oe) + int(out_zp), -128, 127)
