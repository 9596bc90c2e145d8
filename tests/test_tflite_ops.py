"""The host operators of ``run tflite`` (golden/tflite_ops.py): SOFTMAX, MEAN, CONCATENATION, PAD,
broadcasting ADD and MUL, LOGISTIC and HARD_SWISH, each on TFLite's three int8 paths against LiteRT 2.3.0
running the operator alone (one-operator models written with golden.tflite_net.write_model).

Counts of outputs compared and of outputs where the paths differ are printed; the paths
must differ where their kernels do (SOFTMAX ref vs opt, MEAN ref vs opt vs XNNPACK, ADD under
broadcasting, MUL's int16 output stage and XNNPACK's float MUL, XNNPACK's LOGISTIC table).
Injected bugs (a wrong gemmlowp constant, the optimized kernels' block widths, the optimized
ADD's broadcast split, XNNPACK's float MEAN or MUL rounded the other way, MUL's real
multiplier in double, a saturating int16 add in the optimized MUL, TFLite's LOGISTIC table on
XNNPACK, a truncated LOGISTIC table, HARD_SWISH's last product floored or rounded, its int16
RoundingDivideByPOT without the mask overflow) must each fail the same comparison.

CPU dependence (docs/tflite.md): the reference kernels and the integer NEON code are the same
everywhere. The optimized SOFTMAX (also run on the XNNPACK path) is modelled for LiteRT builds
other than ARM64's, whose wheels take a different algorithm (``SoftmaxInt8LUT``): there its
comparison is skipped. XNNPACK's MEAN is float32 arithmetic that an ARM64 build may contract
into FMAs: off x86 its outputs are compared only where the fused and unfused roundings agree.
XNNPACK's int8 MUL is its "fp32" kernel on x86 and a fixed-point ("rndnu") one on ARM: off x86
a MUL the delegate takes is not compared on ``xnnpack``. The LOGISTIC tables are built with the
C library's ``expf``/``exp``, which LiteRT calls too. HARD_SWISH's optimized kernel (also run
on ``xnnpack``: the delegate does not take it) equals the reference on x86; its NEON code's last
product is ``SQDMULH`` (rounds toward minus infinity): off x86 ``opt``/``xnnpack`` outputs are
compared only where both roundings agree. Cost: about 5 s.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

from convgen.golden import tflite_fixtures as F
from convgen.golden import tflite_net as N
from convgen.golden import tflite_ops as O

T = N.TensorInfo
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def q(name, shape, scale, zp, data=None, dtype="int8"):
    return T(name, tuple(shape), dtype, np.array([scale], np.float32), np.array([zp]), 0, data)


def run_both(kind, tensors, ins, outs, opts, inputs, path):
    """(golden, LiteRT) outputs of one operator on ``path``; the golden run reads the model back."""
    data = [i for i in ins if tensors[i].data is None]
    m = N.write_model(N.Graph(tensors, [N.OpInfo(0, kind, ins, outs, opts)], data, outs))
    g = N.parse_model(m)
    values = {i: np.asarray(v, np.int64) for i, v in zip(data, inputs)}
    for i, t in enumerate(g.tensors):
        if t.data is not None and t.dtype == "int8":
            values[i] = t.data.astype(np.int64)
    op = g.ops[0]
    if kind == "ADD":   # the ADD runs outside host_op
        t = g.tensors
        gold = N.add_int8(values[op.inputs[0]], values[op.inputs[1]], t[op.inputs[0]], t[op.inputs[1]],
                          t[op.outputs[0]], op.options["activation"], path)
    else:
        gold = N.host_op(g, op, values, path)
    return gold, N.run_litert(m, inputs, path, check_delegated=False)


# ---- the cases ----------------------------------------------------------------------------------

def softmax_cases():
    rng = np.random.default_rng(21)
    cases = []
    for shape, s_in, beta in [((1, 10), 0.19, 1.0), ((1, 1001), 0.22, 1.0), ((4, 37), 0.27, 0.5),
                              ((1, 3, 3, 17), 0.22, 2.0), ((3, 64), 0.02, 1.0), ((2, 50), 0.9, 3.0),
                              ((5, 8), 0.0625, 1.0)]:
        x = rng.integers(-128, 128, shape)
        if shape == (5, 8):   # rows of equal values, two maxima, one huge gap
            x[0] = 7
            x[1, :2] = 127
            x[2] = -128
            x[2, 3] = 127
        cases.append(([q("x", shape, float(np.float32(s_in)), int(rng.integers(-20, 20))), q("y", shape, 1 / 256, -128)],
                      [0], [1], {"beta": beta}, [x.astype(np.int8)]))
    # 200,000 outputs at a large input scale: the reference (gemmlowp) and optimized (float LUT)
    # kernels round a few of them differently (about 1 in 30,000 here)
    shape = (2000, 100)
    cases.append(([q("x", shape, 1.4441719, 0), q("y", shape, 1 / 256, -128)], [0], [1], {"beta": 1.0},
                  [np.random.default_rng(9).integers(-128, 128, shape).astype(np.int8)]))
    return cases


def mean_cases():
    rng = np.random.default_rng(22)
    cases = []
    for shape, axes, keep, ratio in [((1, 7, 7, 40), [1, 2], True, 0.7), ((1, 7, 7, 40), [1, 2], False, 0.7),
                                     ((1, 4, 5, 16), [2, 1], True, 1.3), ((1, 6, 6, 8), [3], True, 0.4),
                                     ((1, 8, 8, 33), [1, 2], True, 1.0), ((1, 4, 4, 20), [1, 2], True, 1.0),
                                     ((1, 5, 3, 12), [1], False, 0.9), ((1, 16, 16, 24), [1, 2], True, 0.25)]:
        s_in = float(np.float32(rng.uniform(0.01, 0.1)))
        oshape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        cases.append(([q("x", shape, s_in, int(rng.integers(-20, 20))),
                       T("axes", (len(axes),), "int32", data=np.array(axes, np.int32)),
                       q("y", oshape, float(np.float32(s_in * ratio)), int(rng.integers(-10, 10)))],
                      [0, 1], [2], {"axes": axes, "keep_dims": keep}, [rng.integers(-128, 128, shape).astype(np.int8)]))
    return cases


BROADCASTS = [((1, 16, 16, 64), (1, 16, 16, 1)), ((1, 5, 5, 24), (1, 1, 1, 24)), ((1, 1, 1, 24), (1, 5, 5, 24)), ((1, 5, 5, 20), (1, 5, 5, 1)),
              ((1, 5, 5, 20), (1, 1, 1, 1)), ((1, 5, 5, 20), (1, 5, 1, 20)), ((1, 4, 6, 35), (35,)),
              ((2, 1, 3), (1, 4, 3)), ((1, 3, 37), (1, 3, 1)), ((1, 2, 2, 40), (1, 2, 2, 1))]


def add_cases():
    rng = np.random.default_rng(23)
    cases = []
    for sa, sb in BROADCASTS:
        out = np.broadcast_shapes(sa, sb)
        for scales, act in (((0.5, 0.25, 1.0), "none"), ((0.013, 0.021, 0.03), "relu6"), ((0.25, 0.5, 0.5), "relu"),
                            ((0.037, 0.011, 0.02), "none")):
            cases.append(([q("a", sa, scales[0], 3), q("b", sb, scales[1], -7), q("o", out, scales[2], 1)], [0, 1], [2],
                          {"activation": act}, [rng.integers(-128, 128, sa).astype(np.int8),
                                                rng.integers(-128, 128, sb).astype(np.int8)]))
    # a constant second operand (a per-channel offset): stays a constant in the model
    c = rng.integers(-128, 128, (1, 1, 1, 20)).astype(np.int8)
    cases.append(([q("a", (1, 4, 4, 20), 0.5, 3), q("c", (1, 1, 1, 20), 0.25, -7, c), q("o", (1, 4, 4, 20), 1.0, 1)],
                  [0, 1], [2], {"activation": "none"}, [rng.integers(-128, 128, (1, 4, 4, 20)).astype(np.int8)]))
    return cases


def layout_cases():
    rng = np.random.default_rng(24)
    pads = np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)
    return [("PAD", [q("x", (1, 5, 5, 3), 0.05, 7), T("p", (4, 2), "int32", data=pads), q("y", (1, 8, 6, 3), 0.05, 7)],
             [0, 1], [2], {}, [rng.integers(-128, 128, (1, 5, 5, 3)).astype(np.int8)]),
            ("CONCATENATION", [q("a", (1, 4, 4, 3), 0.05, 7), q("b", (1, 4, 4, 5), 0.05, 7), q("y", (1, 4, 4, 8), 0.05, 7)],
             [0, 1], [2], {"axis": 3}, [rng.integers(-128, 128, (1, 4, 4, 3)).astype(np.int8),
                                        rng.integers(-128, 128, (1, 4, 4, 5)).astype(np.int8)]),
            ("CONCATENATION", [q("a", (1, 2, 4, 3), 0.1, -2), q("b", (1, 3, 4, 3), 0.1, -2), q("c", (1, 1, 4, 3), 0.1, -2),
                               q("y", (1, 6, 4, 3), 0.1, -2)],
             [0, 1, 2], [3], {"axis": 1}, [rng.integers(-128, 128, s).astype(np.int8) for s in
                                           ((1, 2, 4, 3), (1, 3, 4, 3), (1, 1, 4, 3))])]


MUL_BROADCASTS = [((1, 5, 5, 24), (1, 1, 1, 24)), ((1, 1, 1, 24), (1, 5, 5, 24)), ((1, 5, 5, 20), (1, 5, 5, 1)),
                  ((1, 5, 5, 20), (1, 5, 1, 20)), ((1, 4, 4, 40), (1, 4, 4, 1)), ((1, 1, 1, 1), (1, 4, 4, 40)),
                  ((2, 3, 4), (3, 1)), ((1, 300), (1, 300))]


def mul_cases():
    """Scales whose real multiplier is a power of two (exact ties), one just below 0.25 in double
    but 0.25 in float32, large multipliers (saturation at both ends, where the optimized kernel's
    int16 wrap shows), zero points at the extremes, all four activations."""
    rng = np.random.default_rng(25)
    cases = []
    for sa, sb in MUL_BROADCASTS:
        out = np.broadcast_shapes(sa, sb)
        for (s_a, z_a, s_b, z_b, s_o, z_o, act) in (
                (0.05, 3, 0.02, -7, 0.004, 1, "none"), (0.25, 0, 0.25, 0, 0.25, 0, "none"),
                (0.5, 3, 0.5, -2, 0.0001, 100, "none"), (0.5, 3, 0.5, -2, 0.0001, -100, "relu"),
                (0.1, -128, 0.1, 127, 0.01, -5, "relu6"), (0.037, 5, 0.021, -9, 0.0031, 127, "relu_n1_to_1")):
            cases.append(([q("a", sa, s_a, z_a), q("b", sb, s_b, z_b), q("o", out, s_o, z_o)], [0, 1], [2],
                          {"activation": act}, [rng.integers(-128, 128, sa).astype(np.int8),
                                                rng.integers(-128, 128, sb).astype(np.int8)]))
    # squeeze-excite: a [1, 1, 1, C] gate from a LOGISTIC (scale 1/256, zero point -128) times the features
    for c in (16, 24, 40):
        cases.append(([q("x", (1, 5, 5, c), 0.04, -3), q("g", (1, 1, 1, c), 1 / 256, -128),
                       q("o", (1, 5, 5, c), 0.03, -6)], [0, 1], [2], {"activation": "none"},
                      [rng.integers(-128, 128, (1, 5, 5, c)).astype(np.int8),
                       rng.integers(-128, 128, (1, 1, 1, c)).astype(np.int8)]))
    # a constant second operand stays a constant in the model
    c = rng.integers(-128, 128, (1, 1, 1, 20)).astype(np.int8)
    cases.append(([q("a", (1, 4, 4, 20), 0.5, 3), q("c", (1, 1, 1, 20), 0.25, -7, c), q("o", (1, 4, 4, 20), 0.5, 1)],
                  [0, 1], [2], {"activation": "none"}, [rng.integers(-128, 128, (1, 4, 4, 20)).astype(np.int8)]))
    return cases


def logistic_cases():
    """Every int8 input value at 28 input quantizations (scales 1e-3..3, zero points at both ends)
    and two found by a search (golden.tflite_ops.logistic): one where TFLite's and XNNPACK's tables
    differ, one where XNNPACK's older float32 table formula would."""
    rng = np.random.default_rng(26)
    quants = [(0.001177065190859139, -64), (0.005115708336234093, 85), (0.05, 3), (0.1, -128), (0.2, 127),
              (1.0, 0), (0.0625, 0)]
    quants += [(float(np.float32(10 ** rng.uniform(-3, 0.5))), int(rng.integers(-128, 128))) for _ in range(22)]
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    return [([q("x", (1, 256), s, z), q("y", (1, 256), 1 / 256, -128)], [0], [1], {}, [x]) for s, z in quants]


def hard_swish_cases():
    """Every int8 input value at 28 quantizations: zero points at both ends, input scales from
    1e-3 to 3 (the "reluish" multiplier's left-shift branch), an output exponent of -16 (where
    gemmlowp's int16 RoundingDivideByPOT mask overflows), MobileNetV3-like scales."""
    rng = np.random.default_rng(27)
    quants = [(0.003958716057240963, 126, 2.3376309871673584, -72), (0.05, 3, 0.03, -100), (0.1, -128, 0.05, -128),
              (0.2, 127, 0.1, -20), (3.0, 0, 0.5, 0), (0.0235, -10, 0.0119, -93)]
    while len(quants) < 28:
        s_in, s_out = (float(np.float32(10 ** rng.uniform(-3, 0.5))) for _ in range(2))
        if s_in < 128 * s_out:           # TFLite refuses the others (test_hard_swish_refused_where_tflite_refuses)
            quants.append((s_in, int(rng.integers(-128, 128)), s_out, int(rng.integers(-128, 128))))
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    return [([q("x", (1, 256), a, b), q("y", (1, 256), c, d)], [0], [1], {}, [x]) for a, b, c, d in quants]


CASES = {"SOFTMAX": softmax_cases, "MEAN": mean_cases, "ADD": add_cases, "MUL": mul_cases,
         "LOGISTIC": logistic_cases, "HARD_SWISH": hard_swish_cases}


def _comparable(kind, path, case) -> np.ndarray | None:
    """Where the output cannot depend on the CPU (module doc); None: compare nothing."""
    if kind == "SOFTMAX" and path != "ref" and not O.softmax_opt_is_modelled():
        return None
    if kind == "HARD_SWISH" and path != "ref" and not X86:
        ts, _, _, _, (x,) = case
        args = (x, float(ts[0].scale[0]), int(ts[0].zero_point[0]), float(ts[1].scale[0]), int(ts[1].zero_point[0]))
        return O.hard_swish(*args, path) == O.hard_swish(*args, path, floor_product=True)
    if kind == "MUL" and path == "xnnpack" and not X86:
        ts = case[0]
        if O.xnnpack_mul_delegated(float(ts[0].scale[0]), float(ts[1].scale[0]), float(ts[2].scale[0])):
            return None    # XNNPACK's ARM qs8 vmul kernels are "rndnu" fixed point, not the fp32 ones modelled
    if kind == "MEAN" and path == "xnnpack" and not X86:
        ts, _, _, opts, (x,) = case
        xi, yi = ts[0], ts[2]
        args = (np.asarray(x, np.int64), sorted(a % x.ndim for a in opts["axes"]), float(xi.scale[0]),
                int(xi.zero_point[0]), float(yi.scale[0]), int(yi.zero_point[0]))
        agree = O._mean_xnnpack(*args) == O._mean_xnnpack(*args, fused=True)
        return agree if opts["keep_dims"] else agree.reshape(-1)
    return True


@pytest.mark.parametrize("kind", list(CASES))
def test_host_op_equals_litert_on_every_path(kind):
    compared, differ = {p: 0 for p in F.PATHS}, {}
    outs = {p: [] for p in F.PATHS}
    for case in CASES[kind]():
        for p in F.PATHS:
            gold, lit = run_both(kind, *case, p)
            outs[p].append(lit)
            mask = _comparable(kind, p, case)
            if mask is None:
                continue
            mask = np.broadcast_to(np.asarray(mask).reshape(lit.shape) if np.ndim(mask) else mask, lit.shape)
            bad = (gold != lit) & mask
            assert gold.shape == lit.shape and not bad.any(), \
                f"{kind} {case[0][0].shape} on {p}: {int(bad.sum())} of {lit.size} outputs differ from LiteRT"
            compared[p] += int(mask.sum())
    for a, b in (("ref", "opt"), ("ref", "xnnpack"), ("opt", "xnnpack")):
        differ[a, b] = sum(int((x != y).sum()) for x, y in zip(outs[a], outs[b]))
    print(f"\n{kind}: outputs equal to LiteRT per path {compared}; LiteRT's paths differ on {differ}")
    if kind == "SOFTMAX":
        assert differ["ref", "opt"] >= 3 and differ["opt", "xnnpack"] == 0
    if kind == "MEAN":
        assert differ["ref", "opt"] > 0 and differ["ref", "xnnpack"] > 0 and differ["opt", "xnnpack"] > 0
    if kind == "ADD":
        assert differ["ref", "opt"] > 0 and differ["ref", "xnnpack"] > 100
    if kind == "MUL":
        assert differ["ref", "opt"] > 1000 and differ["ref", "xnnpack"] > 100 and differ["opt", "xnnpack"] > 1000
    if kind == "LOGISTIC":
        assert differ["ref", "opt"] == 0 and differ["ref", "xnnpack"] >= 1
    if kind == "HARD_SWISH":      # one fixed-point arithmetic on every path (measured)
        assert differ["ref", "opt"] == 0 and differ["ref", "xnnpack"] == 0
    assert all(v > 200 for p, v in compared.items() if p == "ref" or O.softmax_opt_is_modelled())


def test_pad_and_concatenation_equal_litert():
    n = 0
    for kind, *case in layout_cases():
        for p in F.PATHS:
            gold, lit = run_both(kind, *case, p)
            assert np.array_equal(gold, lit), (kind, p)
            n += lit.size
    print(f"\nPAD, CONCATENATION: {n} outputs equal to LiteRT over the three paths")


def test_broadcast_categories():
    """ProcessBroadcastShapes' five-fold split, by hand."""
    assert O.broadcast_category((1, 5, 5, 24), (1, 1, 1, 24)) == ("second", [1, 1, 1, 25, 24])
    assert O.broadcast_category((1, 1, 1, 24), (1, 5, 5, 24)) == ("first", [1, 1, 1, 25, 24])
    assert O.broadcast_category((1, 5, 5, 24), (1, 5, 5, 24)) == ("none", None)
    assert O.broadcast_category((1, 5, 5, 20), (1, 5, 5, 1)) == ("second", [1, 1, 25, 20, 1])
    assert O.broadcast_category((1, 5, 5, 20), (1, 5, 1, 20)) == ("second", [1, 1, 5, 5, 20])
    assert O.broadcast_category((2, 1, 3), (1, 4, 3))[0] == "first"
    assert O.broadcast_category((2, 3, 4), (3, 1))[0] == "generic"


MUTANTS = {
    # (operator, path, what is changed, the function to patch, its replacement factory)
    "gemmlowp exp constant": ("SOFTMAX", "ref", lambda mp: mp.setattr(
        O, "_exp_on_interval", (lambda f: lambda a: f(a) + (1 << 20))(O._exp_on_interval))),
    "softmax rounds half up": ("SOFTMAX", "opt", lambda mp: mp.setattr(
        O, "softmax_optimized", (lambda f: lambda x, si, so, zp, b: f(x, si, so, zp, b) + (
            (np.asarray(x) % 3) == 0))(O.softmax_optimized))),
    "mean: no NEON channel blocks": ("MEAN", "opt", lambda mp: mp.setattr(
        O, "_mean_optimized_hw", _mean_blocks_of(1 << 30))),
    "mean: xnnpack ties away": ("MEAN", "xnnpack", lambda mp: mp.setattr(np, "rint", _round_half_away)),
    "add: broadcast split ignored": ("ADD", "opt", lambda mp: mp.setattr(
        O, "broadcast_category", lambda a, b: ("none", None))),
    "mul: real multiplier in double": ("MUL", "ref", lambda mp: mp.setattr(
        O, "_mul_real_multiplier", lambda a, b, o: float(np.float32(a)) * float(np.float32(b)) / float(np.float32(o)))),
    "mul: int16 zero-point add saturates": ("MUL", "opt", lambda mp: mp.setattr(
        O, "_neon_int16_output", lambda y, z: np.clip(np.clip(y, -32768, 32767) + z, -128, 127))),
    "mul: xnnpack ties away": ("MUL", "xnnpack", lambda mp: mp.setattr(np, "rint", _round_half_away)),
    "logistic: xnnpack uses TFLite's table": ("LOGISTIC", "xnnpack", lambda mp: mp.setattr(
        O, "logistic", (lambda f: lambda x, s, z, p: f(x, s, z, "ref"))(O.logistic))),
    "logistic: table truncated, not rounded": ("LOGISTIC", "ref", lambda mp: mp.setattr(
        O, "_round_half_away", np.trunc)),
    "hard_swish: last product floors (SQDMULH)": ("HARD_SWISH", "opt", lambda mp: mp.setattr(
        O, "_sdhm16", (lambda f: lambda a, b, floor=False: f(a, b, floor=True))(O._sdhm16))),
    "hard_swish: int16 mask without overflow": ("HARD_SWISH", "ref", lambda mp: mp.setattr(
        O, "_rdbpot16", lambda x, e: O.rounding_divide_by_pot(x, e) if e else np.asarray(x, np.int64))),
    "hard_swish: last product rounded (SRDHM)": ("HARD_SWISH", "ref", lambda mp: mp.setattr(
        O, "_sdhm16", (lambda f: lambda a, b, floor=False: f(a, b))(O._srdhm16))),
}


def _round_half_away(v, *args, **kw):
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _mean_blocks_of(width):
    def mutant(x, in_scale, in_zp, out_scale, out_zp):
        y = _MEAN_HW(x, in_scale, in_zp, out_scale, out_zp)
        c = x.shape[-1]
        tail = np.arange(c) >= width * (c // width)
        ref = O._mean_reference(x, [1, 2], True, in_scale, in_zp, out_scale, out_zp)
        return np.where(tail, ref, y)
    return mutant


_MEAN_HW = O._mean_optimized_hw


@pytest.mark.parametrize("name", list(MUTANTS))
def test_injected_bug_is_caught(name, monkeypatch):
    kind, path, patch = MUTANTS[name]
    if kind == "SOFTMAX" and path != "ref" and not O.softmax_opt_is_modelled():
        pytest.skip("the optimized SOFTMAX of this CPU's LiteRT is not modelled")
    if kind == "HARD_SWISH" and path != "ref" and not X86:
        ts, _, _, _, (x,) = case
        args = (x, float(ts[0].scale[0]), int(ts[0].zero_point[0]), float(ts[1].scale[0]), int(ts[1].zero_point[0]))
        return O.hard_swish(*args, path) == O.hard_swish(*args, path, floor_product=True)
    if kind == "MUL" and path == "xnnpack" and not X86:
        pytest.skip("XNNPACK's ARM qs8 MUL kernels are not the fp32 ones modelled")
    patch(monkeypatch)
    bad = 0
    for case in CASES[kind]():
        gold, lit = run_both(kind, *case, path)
        bad += int((gold != lit).sum())
    print(f"\nmutant {name!r}: {bad} outputs differ from LiteRT on {path}")
    assert bad > 0


def test_hard_swish_not_delegated_and_refused_where_tflite_refuses():
    """XNNPACK does not take an int8 HARD_SWISH (LiteRT's node list: no DELEGATE), so the
    ``xnnpack`` path runs TFLite's kernel. An input scale of 128 output scales or more: TFLite's
    HardSwishPrepare fails (``output_multiplier_exponent <= 0``; LiteRT raises at
    allocate_tensors), and reading the model is a ConfigError naming the operator."""
    from ai_edge_litert import interpreter as litert

    from convgen.core.params import ConfigError

    ok = N.write_model(N.Graph([q("x", (1, 8), 0.05, 0), q("y", (1, 8), 0.03, 0)],
                               [N.OpInfo(0, "HARD_SWISH", [0], [1])], [0], [1]))
    it = litert.Interpreter(model_content=ok, experimental_op_resolver_type=litert.OpResolverType.AUTO)
    it.allocate_tensors()
    assert "DELEGATE" not in [o["op_name"] for o in it._get_ops_details()]

    m = N.write_model(N.Graph([q("x", (1, 8), 2.0, 0), q("y", (1, 8), 0.01, 0)],
                              [N.OpInfo(0, "HARD_SWISH", [0], [1])], [0], [1]))
    with pytest.raises(Exception):
        N.run_litert(m, [np.zeros((1, 8), np.int8)], "ref", check_delegated=False)
    with pytest.raises(ConfigError, match=r"operator 0 \(HARD_SWISH\): .*TFLite refuses it"):
        N.parse_model(m)


def test_reference_softmax_abort_is_an_error():
    """A row of 512 equal values, or a tiny input scale, makes TFLite's reference SOFTMAX abort
    the process (TFLITE_CHECKs; both seen with LiteRT 2.3.0): the golden model refuses
    it with a ConfigError instead, before any interpreter runs it; the optimized kernel
    computes it (1/512 rounds to 1 LSB)."""
    from convgen.core.params import ConfigError

    x = np.zeros((1, 512), np.int64)
    with pytest.raises(ConfigError, match="reference kernel aborts"):
        O.softmax(x, 0.05, 1 / 256, -128, 1.0, "ref")
    # an input scale so small that beta * scale * 2**26 <= 1 (untrained Keras models' logits):
    # QuantizeMultiplierGreaterThanOne aborts too
    with pytest.raises(ConfigError, match=r"is not above 1 .*reference kernel aborts"):
        O.softmax(np.zeros((1, 10), np.int64), 7.84e-9, 1 / 256, -128, 1.0, "ref")
    assert (O.softmax(x, 0.05, 1 / 256, -128, 1.0, "opt") == -127).all()
