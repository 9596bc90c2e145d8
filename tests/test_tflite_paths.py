"""The golden rounding modes against a real TFLite interpreter (LiteRT 2.3.0), path by path.

Every fixture of golden/tflite_fixtures.py (designed corners + random MobileNet-like layers) is
written as a .tflite flatbuffer and run on TFLite's three int8 paths:

- ``ref``: ``BUILTIN_REF``, the reference kernels                    -> mode ``tflite``
- ``opt``: ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, optimized kernels  -> mode ``tflite_opt``
  (DEPTHWISE_CONV_2D: ``tflite`` on the last ``C mod 8`` channels)
- ``xnnpack``: ``AUTO``, the XNNPACK delegate                       -> mode ``xnnpack``

Each path must equal its golden mode on every output; the other modes must not (counts printed).
CPU dependence (docs/requant.md): ``ref`` is portable C; XNNPACK's per-channel (qc8w) int8
kernels use fp32 requantization on every CPU; the optimized CONV_2D runs ruy, whose x86 AVX,
AVX2+FMA, AVX-512 and ARM NEON kernels all round ties up, but TFLite uses gemmlowp instead of
ruy on an x86 CPU without AVX. There the ``opt`` CONV_2D outputs are compared only where the
candidate roundings agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from convgen.core.params import ConfigError
from convgen.core.quant import GOLDEN_ROUNDINGS, MULTIPLIER_MIN, ROUNDINGS
from convgen.golden import tflite_fixtures as F
from convgen.golden.quant import (multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_opt,
                                  rounding_divide_by_pot, rounding_shift_right_half_up, scale_onnx_float,
                                  scale_onnx_int, srdhm, tflite_activation_bounds, wrap32,
                                  xnnpack_activation_bounds)
from convgen.golden.requant import RequantParams, requantize


FIXTURES = F.designed_fixtures() + F.random_fixtures(24, seed=5)


@pytest.fixture(scope="module")
def runs():
    """{(fixture name, path): interpreter output} for every fixture on every path."""
    return F.litert_outputs(FIXTURES)


def _golden(fx, mode: str) -> np.ndarray:
    """Fixture ``fx`` requantized in golden ``mode`` with that mode's path parameters
    (``tflite_opt``: ties up on every channel, no ``round_away``)."""
    path = {v: k for k, v in F.PATH_MODE.items()}.get(mode)
    if path is not None and mode != "tflite_opt":
        return requantize(F.accumulators(fx), F.path_params(fx, path))
    p = F.path_params(fx, "ref")  # tflite_single, tflite_opt: TFLite's multiplier and bounds
    q = RequantParams.make(mode, fx.channels, bias=p.bias, multiplier=p.multiplier, shift=p.shift,
                           zero_point=p.zero_point, act_min=p.act_min, act_max=p.act_max)
    return requantize(F.accumulators(fx), q)


def _comparable(fx, path: str) -> np.ndarray:
    """Outputs whose value on ``path`` cannot depend on the CPU (all of them, except the
    optimized CONV_2D on an x86 CPU without AVX)."""
    shape = F.accumulators(fx).shape
    if path == "opt" and fx.op == "conv" and F.x86_without_avx():
        a, b, c = (_golden(fx, m) for m in ("tflite", "tflite_opt", "tflite_single"))
        return (a == b) & (b == c)
    return np.ones(shape, dtype=bool)


@pytest.mark.parametrize("path", F.PATHS)
def test_each_path_equals_its_golden_mode(runs, path):
    compared = 0
    for fx in FIXTURES:
        got = runs[fx.name, path]
        want = F.golden_path(fx, path)
        mask = _comparable(fx, path)
        bad = (got != want) & mask
        assert not bad.any(), (f"{fx.name} on {path}: {int(bad.sum())} of {got.size} outputs differ from "
                               f"golden {F.PATH_MODE[path]}; first at {np.argwhere(bad)[0].tolist()}: "
                               f"TFLite {int(got[bad][0])}, golden {int(want[bad][0])}")
        compared += int(mask.sum())
    total = sum(runs[fx.name, path].size for fx in FIXTURES)
    print(f"\n{path}: {compared} of {total} outputs compared, all equal to golden {F.PATH_MODE[path]}")
    assert compared >= total // 2


def test_the_modes_really_differ(runs):
    """Mismatch counts of every path against every golden mode: zero on the diagonal only."""
    modes = ("tflite", "tflite_opt", "xnnpack", "tflite_single")
    counts = {(p, m): 0 for p in F.PATHS for m in modes}
    total = 0
    for fx in FIXTURES:
        gold = {m: _golden(fx, m) for m in modes}
        for p in F.PATHS:
            got = runs[fx.name, p]
            for m in modes:
                counts[p, m] += int((got != gold[m]).sum())
        total += runs[fx.name, "ref"].size
    lines = [f"outputs per path: {total}", "path     " + " ".join(f"{m:>14}" for m in modes)]
    lines += [f"{p:8} " + " ".join(f"{counts[p, m]:14d}" for m in modes) for p in F.PATHS]
    print("\n" + "\n".join(lines))
    assert counts["ref", "tflite"] == 0 and counts["xnnpack", "xnnpack"] == 0
    # the opt path is tflite_opt on every CONV_2D channel and the first 8*(C//8) depthwise channels
    assert counts["opt", "tflite_opt"] < counts["opt", "tflite"]
    for p in F.PATHS:
        for m in modes:
            if F.PATH_MODE.get(p) != m and not (p == "opt" and m == "tflite_opt"):
                assert counts[p, m] >= 50, f"path {p} vs mode {m}: only {counts[p, m]} differences"


def test_ruy_x86_paths_agree(runs):
    """Not CPU-dependent on x86 with AVX: the opt CONV_2D outputs equal tflite_opt on every channel
    (ruy's AVX, AVX2+FMA and AVX-512 kernels were each checked with RUY_PATHS=0x10/0x20/0x40;
    the portable kernel, RUY_PATHS=0x1, rounds once like tflite_single and TFLite never selects it)."""
    convs = [fx for fx in FIXTURES if fx.op == "conv"]
    assert len(convs) >= 10
    if F.x86_without_avx():
        pytest.skip("x86 CPU without AVX: TFLite's CONV_2D runs gemmlowp here")
    for fx in convs:
        assert np.array_equal(runs[fx.name, "opt"], _golden(fx, "tflite_opt")), fx.name


def test_depthwise_opt_channel_rule(runs):
    """The optimized DEPTHWISE_CONV_2D rounds ties up in its vector blocks of 8 channels and like
    the reference kernels in the C mod 8 remaining channels: both halves are seen."""
    fx = next(f for f in FIXTURES if f.name == "ties_pow2_w3")
    assert fx.channels == 10
    got = runs[fx.name, "opt"]
    opt, ref = _golden(fx, "tflite_opt"), _golden(fx, "tflite")
    differ = opt != ref
    assert differ[..., :8].sum() > 50 and differ[..., 8:].sum() > 10
    assert np.array_equal(got[..., :8], opt[..., :8]) and np.array_equal(got[..., 8:], ref[..., 8:])


def test_designed_corners_are_reached(runs):
    by = {fx.name: fx for fx in FIXTURES}
    # exact ties: power-of-two scales, negative and positive ties in range
    fx = by["ties_pow2"]
    acc = F.accumulators(fx) + fx.bias
    e = np.arange(1, 9)  # channel c has scale 2**-(c+1)
    ties = (acc % (1 << e)) == (1 << (e - 1))
    assert (ties & (acc < 0)).sum() > 100 and (ties & (acc > 0)).sum() > 100
    # QuantizeMultiplier's carry: M = 2**30 after the carry, on every channel
    p = F.path_params(by["carry_conv"], "ref")
    assert (p.multiplier == MULTIPLIER_MIN).all()
    assert np.array_equal(p.shift, 1 - np.arange(8))  # real = 2**-j (1 - eps): carried into shift 1-j
    # positive shifts
    assert (F.path_params(by["positive_shift"], "ref").shift > 0).sum() >= 7
    # saturation at both ends on every path
    for path in F.PATHS:
        y = runs["saturate", path]
        assert (y == -128).sum() > 100 and (y == 127).sum() > 100
    # ReLU6 / ReLU_N1_TO_1 bounds at exactly .5: TFLite and XNNPACK bounds differ by one
    for name in ("relu6_tie_12", "relu6_tie_40", "relu_n1_tie_20", "relu_n1_tie_50"):
        fx = by[name]
        t, x = F.path_params(fx, "ref"), F.path_params(fx, "xnnpack")
        assert (t.act_max - x.act_max == 1).all(), name
        for path in F.PATHS:
            assert (runs[name, path] == F.path_params(fx, path).act_max[0]).sum() > 100
    # left-shift overflow: TFLite wraps, XNNPACK saturates
    fx = by["left_shift_wrap"]
    assert (runs[fx.name, "ref"] != runs[fx.name, "xnnpack"]).sum() > 1000


# ---------------------------------------------------------------------------------------------
# the golden primitives alone (no interpreter)
# ---------------------------------------------------------------------------------------------

def test_rounding_shift_right_half_up_by_hand():
    x = np.array([5, -5, 6, -6, 7, -7, 4, -4, 0, -1, 1])
    assert rounding_shift_right_half_up(x, 1).tolist() == [3, -2, 3, -3, 4, -3, 2, -2, 0, 0, 1]
    assert rounding_divide_by_pot(x, 1).tolist() == [3, -3, 3, -3, 4, -4, 2, -2, 0, -1, 1]
    assert rounding_shift_right_half_up(np.array([-12, -11, -13, 12]), 3).tolist() == [-1, -1, -2, 2]
    assert rounding_shift_right_half_up(np.array([2 ** 31 - 1, -(2 ** 31)]), 31).tolist() == [1, -1]
    assert rounding_shift_right_half_up(np.array([7, -7]), 0).tolist() == [7, -7]
    with pytest.raises(ConfigError):
        rounding_shift_right_half_up(1, 32)


def test_opt_differs_from_reference_only_on_negative_ties():
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.integers(-(2 ** 31), 2 ** 31, n)
    x[: n // 2] = rng.integers(-5000, 5000, n // 2)
    m = rng.integers(2 ** 30, 2 ** 31, n)
    m[: n // 4] = 2 ** 30  # power-of-two scales: many exact ties
    s = rng.integers(-31, 31, n)
    s[: n // 2] = rng.integers(-12, 1, n // 2)
    ref = multiply_by_quantized_multiplier(x, m, s)
    opt = multiply_by_quantized_multiplier_opt(x, m, s)
    h = srdhm(wrap32(x << np.maximum(s, 0)), m)
    e = np.maximum(-s, 0)
    neg_tie = (h < 0) & (e > 0) & ((h & ((1 << e) - 1)) == (1 << np.maximum(e - 1, 0)))
    assert neg_tie.sum() > 1000
    assert np.array_equal(opt - ref, neg_tie.astype(np.int64))


def test_activation_bounds_by_hand():
    # 6 / s == 12.5 exactly: TFLite rounds away from zero (13), XNNPACK to even (12)
    s = F.relu6_tie_scale(12)
    assert np.float32(6.0) / np.float32(s) == np.float32(12.5)
    assert tflite_activation_bounds(0.0, 6.0, s, 0) == (0, 13)
    assert xnnpack_activation_bounds(0.0, 6.0, s, 0) == (0, 12)
    assert xnnpack_activation_bounds(0.0, 6.0, s, 1) == (1, 14)  # 13.5 -> 14 (even)
    assert tflite_activation_bounds(0.0, 6.0, s, 1) == (1, 14)
    s1 = F.relu6_tie_scale(20, 1.0)
    assert tflite_activation_bounds(-1.0, 1.0, s1, 4) == (4 - 21, 4 + 21)
    assert xnnpack_activation_bounds(-1.0, 1.0, s1, 4) == (4 - 20, 4 + 20)
    assert tflite_activation_bounds(None, None, 0.1, 3) == (-128, 127)
    assert xnnpack_activation_bounds(0.0, None, 0.1, -3) == (-3, 127)
    assert tflite_activation_bounds(0.0, 6.0, 0.01, 100) == (100, 127)  # intersected with int8
    assert xnnpack_activation_bounds(0.0, 6.0, 0.01, 100) == (100, 127)
    assert tflite_activation_bounds(0.0, None, 0.1, 7, out_width=8, out_signed=False) == (7, 255)


def test_rounding_names():
    """Every golden mode has RTL (hdl/requant.py builds all of them)."""
    assert set(ROUNDINGS) == set(GOLDEN_ROUNDINGS)
    assert {"tflite", "tflite_single", "onnx", "tflite_opt", "xnnpack"} == set(ROUNDINGS)


def test_xnnpack_scale_range():
    big = np.float32(255.99998)
    p = RequantParams.make("xnnpack", 2, scale=[big, np.float32(1.0)], act_min=-128, act_max=127)
    v = np.array([[3, -3], [-(2 ** 31), 2 ** 31 - 1]])
    assert requantize(v, p).tolist() == [[127, -3], [-128, 127]]
    with pytest.raises(ConfigError, match="below 256"):
        RequantParams.make("xnnpack", 1, scale=np.float32(256.0))
    with pytest.raises(ConfigError, match="below 1"):
        RequantParams.make("onnx", 1, scale=np.float32(1.0))
    with pytest.raises(ConfigError, match="takes scale"):
        RequantParams.make("xnnpack", 1, scale=np.float32(0.5), multiplier=2 ** 30, shift=0)


def test_integer_float_emulation_covers_xnnpack_scales():
    """scale_onnx_int (the hardware algorithm) equals float32 arithmetic for scales in [1, 256)."""
    rng = np.random.default_rng(11)
    n = 200_000
    v = rng.integers(-(2 ** 31), 2 ** 31, n)
    v[: n // 2] = rng.integers(-40_000, 40_000, n // 2)
    s = np.exp2(rng.uniform(0, 8, n)).astype(np.float32)
    s[: n // 8] = np.float32(255.99998)
    s[n // 8: n // 4] = np.exp2(rng.integers(0, 8, n // 8)).astype(np.float32)  # exact ties
    s = np.minimum(s, np.float32(255.99998))
    assert np.array_equal(scale_onnx_int(v, s), scale_onnx_float(v, s))


@pytest.mark.parametrize("mode", ["onnx", "xnnpack"])
def test_float_scale_ranges_hold_and_are_reached(mode):
    """core.quant.float_scale_ranges: the rounded product stays in ``y`` and reaches both ends;
    ``eb`` is the exponent field of the largest scale."""
    from convgen.core.quant import ONNX_SCALE_MAX, XNNPACK_SCALE_MAX, float_scale_ranges
    r = float_scale_ranges(mode)
    smax = np.float32(ONNX_SCALE_MAX if mode == "onnx" else XNNPACK_SCALE_MAX)
    assert int((smax.view(np.uint32) >> 23) & 0xFF) == r["eb"].hi
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.integers(-(2 ** 31), 2 ** 31, 100_000), [-(2 ** 31), 2 ** 31 - 1]])
    s = np.concatenate([np.exp2(rng.uniform(-30, np.log2(float(smax)), 100_000)).astype(np.float32),
                        [smax, smax]]).astype(np.float32)
    s = np.minimum(s, smax)
    y = scale_onnx_float(v, s)
    assert y.min() >= r["y"].lo and y.max() <= r["y"].hi
    assert y[-2] == r["y"].lo and scale_onnx_float(2 ** 31 - 1, smax) <= r["y"].hi
    assert np.array_equal(scale_onnx_int(v, s), y)
    assert r["u"].lo == (0 if mode == "onnx" else -8)
