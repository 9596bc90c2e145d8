"""golden/quant.py and golden/requant.py against known answers derived from the published
TFLite / gemmlowp definitions, and the integer ONNX emulation against float32 arithmetic.

Where the known answers come from (C semantics: ``/`` truncates toward zero):

- SRDHM, RDBPOT: google/gemmlowp ``fixedpoint/fixedpoint.h``
  ``SaturatingRoundingDoublingHighMul``: ``ab = a*b; nudge = ab >= 0 ? 1<<30 : 1-(1<<30);
  r = (ab + nudge) / (1ll<<31); overflow (a == b == INT32_MIN) -> INT32_MAX``.
  ``RoundingDivideByPOT``: ``mask = (1<<e)-1; rem = x & mask; thr = (mask>>1) + (x<0);
  r = (x >> e) + (rem > thr)``.
- MultiplyByQuantizedMultiplier (both bodies) and QuantizeMultiplier: tensorflow/tensorflow
  ``tensorflow/lite/kernels/internal/common.cc`` and ``quantization_util.cc``.

Each expected value below was worked out by hand from those lines (the arithmetic is in the
comment), not computed by the code under test.
"""

import math

import numpy as np
import pytest

from convgen.golden.quant import (INT32_MAX, INT32_MIN, ONNX_SCALE_MAX, ONNX_SCALE_MIN,
                                  multiply_by_quantized_multiplier as mbqm,
                                  multiply_by_quantized_multiplier_single as mbqm1,
                                  quantize_multiplier, rounding_divide_by_pot, scale_onnx_float,
                                  scale_onnx_int, srdhm)
from convgen.golden.requant import RequantParams, qconv2d, qgemm, requantize
from convgen.core.params import ConfigError

H = 1 << 30  # Q31 0.5

SRDHM_CASES = [
    # (a, b, expected, derivation)
    (INT32_MIN, INT32_MIN, INT32_MAX, "the overflow case"),
    (1, H, 1, "ab=2^30 (0.5): (2^30+2^30)/2^31 = 1"),
    (-1, H, 0, "ab=-2^30 (-0.5): (-2^30+1-2^30)/2^31 = -0.99.. -> 0: negative ties go toward zero"),
    (3, H, 2, "1.5: (3*2^30+2^30)/2^31 = 2"),
    (-3, H, -1, "-1.5: (-3*2^30+1-2^30)/2^31 = -1.99.. -> -1"),
    (H, H, 1 << 29, "2^60: (2^60+2^30)/2^31 = 2^29 + 0.5 -> 2^29"),
    (INT32_MIN, H, -H, "-2^61/2^31 = -2^30 exactly"),
    (INT32_MAX, INT32_MAX, INT32_MAX - 1, "(2^31-1)^2/2^31 = 2^31-2 + 2^-31 -> 2^31-2"),
    (INT32_MIN, INT32_MAX, -INT32_MAX, "-2^31*(2^31-1)/2^31 = -(2^31-1) exactly"),
]


@pytest.mark.parametrize("a, b, expected, why", SRDHM_CASES)
def test_srdhm_known_answers(a, b, expected, why):
    assert int(srdhm(a, b)) == expected, why


@pytest.mark.parametrize("x, e, expected", [
    (1, 1, 1),      # 0.5: rem 1 > thr 0 -> 0 + 1
    (-1, 1, -1),    # -0.5: (-1>>1) = -1, rem 1 > thr 1? no -> -1 (away from zero)
    (3, 1, 2),      # 1.5 -> 2
    (-3, 1, -2),    # -1.5: -3>>1 = -2, rem 1, thr 1 -> -2
    (5, 2, 1),      # 1.25 -> 1
    (6, 2, 2),      # 1.5 -> 2
    (-6, 2, -2),    # -1.5: -6>>2 = -2, rem 2, thr 1+1=2 -> -2
    (INT32_MIN, 31, -1),   # -1.0 exactly
    (-H, 31, -1),          # -0.5: -1 + (2^30 > 2^30) = -1
    (H, 31, 1),            # 0.5: 0 + (2^30 > 2^30-1) = 1
    (INT32_MAX, 31, 1),    # 0.99..
    (INT32_MAX, 0, INT32_MAX),
])
def test_rounding_divide_by_pot_known_answers(x, e, expected):
    assert int(rounding_divide_by_pot(x, e)) == expected


@pytest.mark.parametrize("x, m, shift, expected, why", [
    (1, H, 0, 1, "srdhm 0.5 -> 1"),
    (-1, H, 0, 0, "srdhm -0.5 -> 0 (negative tie toward zero)"),
    (3, H, -1, 1, "srdhm 1.5 -> 2, RDBPOT(2,1) = 1"),
    (5, H, -1, 2, "srdhm 2.5 -> 3, RDBPOT(3,1) = 1.5 -> 2: double rounding of 1.25 gives 2"),
    (-4, H, -2, -1, "srdhm -2, RDBPOT(-2,2) = -0.5 -> -1 (away from zero)"),
    (-6, H, -2, -1, "srdhm -3, RDBPOT(-3,2) = -0.75 -> -1"),
    (INT32_MIN, H, 0, -H, "INT32_MIN * 0.5"),
    (INT32_MIN, INT32_MIN, 0, INT32_MAX, "the SRDHM overflow case"),
    (1, H, 30, 1 << 29, "largest shift: 1<<30 = 2^30, srdhm(2^30, 2^30) = 2^29"),
    (2, H, 30, -H, "2<<30 wraps to INT32_MIN (convgen's definition of TFLite's UB), * 0.5"),
    (INT32_MAX, INT32_MAX, -31, 1, "smallest shift: srdhm = 2^31-2, RDBPOT(.,31): rem > 2^30-1 -> 1"),
    (INT32_MIN, H, -31, -1, "srdhm = -2^30, RDBPOT(-2^30,31) = -0.5 -> -1"),
    (H, H, -31, 0, "srdhm = 2^29, /2^31 = 0.25 -> 0"),
])
def test_mbqm_double_rounding_known_answers(x, m, shift, expected, why):
    assert int(mbqm(x, m, shift)) == expected, why


@pytest.mark.parametrize("x, m, shift, expected, why", [
    (5, H, -1, 1, "(5*2^30 + 2^31) >> 32 = floor(1.75) = 1: single rounding of 1.25"),
    (3, H, -1, 1, "(3*2^30 + 2^31) >> 32 = floor(1.25) = 1"),
    (-2, H, -1, 0, "-0.5: (-2^31 + 2^31) >> 32 = 0 (ties toward +inf)"),
    (-6, H, -1, -1, "-1.5: (-6*2^30 + 2^31) >> 32 = floor(-1) = -1"),
    (2, H, -1, 1, "0.5: (2^31+2^31) >> 32 = 1"),
    (1, INT32_MAX, 30, 1 << 30, "largest shift: (2^31-1 + 1) >> 1 = 2^30"),
    (3, INT32_MAX, 30, INT32_MAX, "(3*(2^31-1)+1) >> 1 = 3221225471 saturates to INT32_MAX"),
    (-3, INT32_MAX, 30, INT32_MIN, "(-3*(2^31-1)+1) >> 1 = -3221225471 saturates to INT32_MIN"),
    (INT32_MIN, H, -31, 0, "smallest shift: (-2^61 + 2^61) >> 62 = 0"),
    (INT32_MIN, H + 1, -31, -1, "(-2^61 - 2^31 + 2^61) >> 62 = -1"),
    (INT32_MIN, INT32_MIN, 0, INT32_MAX, "(2^62 + 2^30) >> 31 = 2^31 saturates"),
])
def test_mbqm_single_rounding_known_answers(x, m, shift, expected, why):
    assert int(mbqm1(x, m, shift)) == expected, why


@pytest.mark.parametrize("real, single, expected, why", [
    (0.5, False, (H, 0), "frexp(0.5) = (0.5, 0), 0.5*2^31 = 2^30"),
    (1.0, False, (H, 1), "frexp(1) = (0.5, 1)"),
    (0.75, False, (3 << 29, 0), "0.75*2^31"),
    (2.0 ** -32, False, (H, -31), "frexp = (0.5, -31): still representable"),
    (2.0 ** -33, False, (0, 0), "shift -32 < -31 flushes to zero"),
    (1 - 2.0 ** -40, False, (H, 1), "q*2^31 = 2^31 - 2^-9 rounds to 2^31: halved, shift + 1"),
    (0.5 + 2.0 ** -32, False, (H + 1, 0), "q*2^31 = 2^30 + 0.5: half away from zero -> 2^30+1"),
    (0.5 + 2.0 ** -33, False, (H, 0), "q*2^31 = 2^30 + 0.25 -> 2^30"),
    (0.0, False, (0, 0), "zero"),
    (2.0 ** 31, False, (H, 32), "frexp = (0.5, 32)"),
    (2.0 ** 31, True, (INT32_MAX, 30), "single rounding saturates shift > 30"),
])
def test_quantize_multiplier_known_answers(real, single, expected, why):
    assert quantize_multiplier(real, single_rounding=single) == expected, why


def test_quantize_multiplier_against_fractions():
    """M * 2**(shift-31) is the real multiplier rounded half away from zero to 31 bits, checked
    with exact rationals on random reals."""
    from fractions import Fraction

    rng = np.random.default_rng(3)
    for real in np.concatenate([rng.uniform(1e-9, 1.0, 2000), 2.0 ** rng.uniform(-31, 5, 2000)]):
        m, s = quantize_multiplier(float(real))
        assert (1 << 30) <= m < (1 << 31)
        err = abs(Fraction(m) * Fraction(2) ** (s - 31) - Fraction(float(real)))
        assert err <= Fraction(2) ** (s - 32)


def test_onnx_integer_emulation_equals_float32():
    """The integer algorithm of the hardware equals float32 arithmetic (NumPy, IEEE RNE) on
    1.5M random (value, scale) pairs over the whole accepted range, exact ties included."""
    rng = np.random.default_rng(5)
    n = 500_000
    v = rng.integers(INT32_MIN, INT32_MAX + 1, n) >> rng.integers(0, 32, n)
    bits = rng.integers(np.float32(ONNX_SCALE_MIN).view(np.uint32),
                        np.float32(ONNX_SCALE_MAX).view(np.uint32) + 1, n).astype(np.uint32)
    s = bits.view(np.float32)
    assert np.array_equal(scale_onnx_int(v, s), scale_onnx_float(v, s))
    # exact ties: power-of-two scales and odd values (1 in 2 of them lands on .5)
    e = rng.integers(1, 32, n)
    s2 = np.ldexp(np.ones(n), -e).astype(np.float32)
    v2 = rng.integers(INT32_MIN, INT32_MAX + 1, n)
    ties = np.abs(np.ldexp(v2.astype(np.float64), -e) % 1 - 0.5) == 0
    assert ties.sum() > n // 40
    assert np.array_equal(scale_onnx_int(v2, s2), scale_onnx_float(v2, s2))
    # values above 2**24: the int32 -> float32 conversion rounds
    v3 = rng.integers(1 << 24, 1 << 31, n) * rng.choice([-1, 1], n)
    s3 = rng.uniform(0.0, 1.0, n).astype(np.float32)
    s3 = np.clip(s3, np.float32(ONNX_SCALE_MIN), np.float32(ONNX_SCALE_MAX))
    assert np.array_equal(scale_onnx_int(v3, s3), scale_onnx_float(v3, s3))


def test_onnx_corners():
    for v in (0, 1, -1, INT32_MAX, INT32_MIN, (1 << 24) + 1, -((1 << 24) + 3), (1 << 25) + 2):
        for s in (ONNX_SCALE_MIN, ONNX_SCALE_MAX, 0.5, 2.0 ** -31, 2.0 ** -32, 1 / 3):
            assert scale_onnx_int(v, np.float32(s)) == scale_onnx_float(v, np.float32(s)), (v, s)
    # 2**31 * (1 - 2**-24) = 2**31 - 128: the largest magnitude, exactly representable
    assert int(scale_onnx_float(INT32_MIN, np.float32(ONNX_SCALE_MAX))) == -(1 << 31) + 128
    assert int(scale_onnx_float(3, np.float32(0.5))) == 2     # 1.5 -> 2 (half to even)
    assert int(scale_onnx_float(5, np.float32(0.5))) == 2     # 2.5 -> 2
    assert int(scale_onnx_float(-5, np.float32(0.5))) == -2


def test_requantize_full_path_and_qgemm():
    p = RequantParams.make("tflite", 2, bias=[10, -10], multiplier=H, shift=-1, zero_point=[3, -3],
                           act_min=[-128, 0], act_max=[127, 6])
    # channel 0: (100+10)*0.25 = 27.5 -> srdhm(110, 2^30)=55, RDBPOT(55,1)=27.5->28; +3 = 31
    # channel 1: (100-10)*0.25 = 22.5 -> 45 -> 23; -3 = 20 -> ReLU6 clamp 6
    assert requantize(np.array([[100, 100]]), p).tolist() == [[31, 6]]
    x = np.array([[1, 2, 3]])
    w = np.array([[1], [1], [1]])
    p1 = RequantParams.make("tflite_single", 1, multiplier=H, shift=0, zero_point=0)
    # (1-1)+(2-1)+(3-1) = 3 with zx=1; 3*0.5 = 1.5 -> 2 (single rounding, tie up)
    assert qgemm(x, w, 1, 0, p1).tolist() == [[2]]
    xc = np.arange(9).reshape(1, 1, 3, 3)
    wc = np.ones((1, 1, 3, 3), dtype=np.int64)
    p2 = RequantParams.make("onnx", 1, scale=np.float32(0.25), zero_point=0)
    # sum(0..8) = 36 -> 9.0
    assert qconv2d(xc, wc, 0, 0, p2).tolist() == [[[[9]]]]


@pytest.mark.parametrize("kwargs, needle", [
    (dict(rounding="tflite", multiplier=1 << 29, shift=0), "multiplier must be in 1073741824..2147483647"),
    (dict(rounding="tflite", multiplier=H, shift=31), "shift must be in -31..30"),
    (dict(rounding="tflite_single", multiplier=H, shift=-32), "shift must be in -31..30"),
    (dict(rounding="tflite", multiplier=H, shift=0, act_min=5, act_max=4), "act_min must be <= act_max"),
    (dict(rounding="tflite", multiplier=H, shift=0, act_min=-129), "act_min must be in -128..127"),
    (dict(rounding="tflite", multiplier=H, shift=0, zero_point=300), "zero_point must be in -128..127"),
    (dict(rounding="onnx", scale=np.float32(1.0)), "scale must be a float32 in [2**-126, 1)"),
    (dict(rounding="onnx", scale=np.float32(0.0)), "scale must be a float32 in [2**-126, 1)"),
    (dict(rounding="onnx", scale=np.float32(-0.5)), "scale must be a float32 in [2**-126, 1)"),
    (dict(rounding="onnx", scale=np.float32(1e-39)), "scale must be a float32 in [2**-126, 1)"),
    (dict(rounding="onnx", scale=0.1), "scale must be float32 values"),
    (dict(rounding="onnx", multiplier=H, shift=0), "rounding 'onnx' needs scale"),
    (dict(rounding="tflite", scale=np.float32(0.5)), "takes multiplier and shift, not scale"),
    (dict(rounding="round", multiplier=H, shift=0), "rounding must be one of"),
    (dict(rounding="tflite", multiplier=H, shift=0, bias=1 << 31), "bias must be in"),
])
def test_bad_parameters(kwargs, needle):
    rounding = kwargs.pop("rounding")
    with pytest.raises(ConfigError, match=None) as e:
        RequantParams.make(rounding, 1, **kwargs)
    assert needle in str(e.value)


def test_tests_can_fail():
    """A deliberately wrong rounding (half to even in SRDHM) disagrees with a known answer."""
    def wrong_srdhm(a, b):
        return int(np.rint(a * b / 2 ** 31))
    assert any(wrong_srdhm(a, b) != e for a, b, e, _ in SRDHM_CASES if (a, b) != (INT32_MIN, INT32_MIN))
    assert math.isclose(ONNX_SCALE_MAX, 1 - 2 ** -24)
