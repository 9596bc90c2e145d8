"""QUANTIZE and DEQUANTIZE (golden/tflite_ops.py) on TFLite's three paths against LiteRT 2.3.0
running the operator alone, and models with float32 or uint8 input and output
(golden.tflite_net.with_io) run whole.

Cases: float32 -> int8/uint8 with designed exact ties (``(k + 0.5) * s`` at power-of-two and
other scales), values far beyond both ends (saturation), zero points at both extremes, random
values, element counts with and without the optimized kernel's scalar tail; int8 <-> uint8 and
int8 -> int8 / uint8 -> uint8 requantization over every input value, with exact ties (scale
ratios 1/2, 1/8), ratios above 1, the same scale with a zero point shift of 128, and a ratio
outside XNNPACK's range (the node then stays with TFLite); int8/uint8 -> float32 over every
input value. Counts of outputs compared and where LiteRT's paths differ are printed; the paths
must differ where their kernels do. Injected bugs (ties away instead of to even in the
vectorized float QUANTIZE, the reference rounding on the optimized requantize's NEON blocks,
XNNPACK's 8-bit multiplier rounded up, the optimized DEQUANTIZE's product and sum fused) each
fail the same comparison.

CPU dependence (docs/tflite.md): the optimized DEQUANTIZE's NEON blocks are a product and a
sum (NEON_2_SSE on x86), one fused multiply-add on ARM with ``__ARM_FEATURE_FMA``: off x86 its
``opt`` outputs are compared only where both roundings agree. The reference and optimized float
QUANTIZE convert to int32 in a way that is undefined C++ beyond ``|x / s| >= 2**31`` (x86:
``INT32_MIN``, modelled; ARM saturates): off x86 those values (``+-1e30``) are not compared on
``ref`` and ``opt``. Everything else is integer code or one float32 operation rounded once.
Cost: about 3.5 s.
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
RANGE = O.INT_RANGE


def t(name, shape, dtype, scale=None, zp=None):
    if scale is None:
        return T(name, tuple(shape), dtype)
    return T(name, tuple(shape), dtype, np.array([scale], np.float32), np.array([zp]))


def one_op(kind, tin, tout):
    return N.write_model(N.Graph([tin, tout], [N.OpInfo(0, kind, [0], [1])], [0], [1]))


def run_case(case, path):
    """(golden, LiteRT, mask of outputs to compare) for one case on ``path``; the golden model
    runs on the graph read back from the written model."""
    kind, tin, tout, x = case
    m = one_op(kind, tin, tout)
    g = N.parse_model(m)
    gold = N.host_op(g, g.ops[0], {0: N.as_value(g.tensors[0], x)}, path)
    lit = N.run_litert(m, [x], path, check_delegated=False)
    mask = np.ones(lit.shape, bool)
    if kind == "QUANTIZE" and tin.dtype == "float32" and path != "xnnpack" and not X86:
        mask = O.quantize_is_defined(x, float(tout.scale[0])).reshape(lit.shape)
    if kind == "DEQUANTIZE" and path == "opt" and not X86:
        a = O.dequantize(x, float(tin.scale[0]), int(tin.zero_point[0]), "opt")
        b = O.dequantize(x, float(tin.scale[0]), int(tin.zero_point[0]), "opt", fused=True)
        mask = a.view(np.uint32) == b.view(np.uint32)
    return gold, lit, mask


def differ(gold, lit):
    if gold.dtype.kind == "f" or lit.dtype.kind == "f":
        return gold.astype(np.float32).view(np.uint32) != lit.astype(np.float32).view(np.uint32)
    return gold != lit


# ---- the cases ----------------------------------------------------------------------------------

def quantize_cases():
    """float32 -> int8/uint8."""
    rng = np.random.default_rng(31)
    cases = []
    for dtype, zp in (("int8", 3), ("int8", -128), ("int8", 127), ("uint8", 130), ("uint8", 0), ("uint8", 255)):
        for s in (0.25, 0.07, 1.7, 2.0 ** -9):
            s32 = float(np.float32(s))
            for n in ((1003, 7) if s != 0.07 else (1003, 7, 24)):
                ties = (np.arange(-300, 300) + 0.5) * s32                       # exact .5 ties, both signs
                # saturation at both ends, beyond int32 (x86: INT32_MIN, then the zero point wraps)
                far = np.array([-1e30, -3e5 * s32, 3e5 * s32, 1e30, 0.0, -0.0, np.inf, -np.inf])
                x = rng.permutation(np.concatenate([ties, rng.normal(0, 60 * s32, 400)]))
                x = np.concatenate([far, x])[:n] if n < 20 else np.concatenate([x[:n - 8], far])
                x = rng.permutation(x).astype(np.float32)
                cases.append(("QUANTIZE", t("x", (1, n), "float32"), t("y", (1, n), dtype, s32, zp), x.reshape(1, n)))
    return cases


REQUANT_SCALES = [(0.05, 0.1, 3, -7), (0.07, 0.56, 0, 0), (0.03, 0.017, 5, 2), (0.1, 0.1, 0, 0),
                  (0.1, 0.1, -128, 0), (0.1, 0.0251, 10, -3), (0.07, 0.61, -128, 127), (0.5, 0.001, 0, 0)]


def requantize_cases():
    """int8/uint8 -> int8/uint8, every input value four times plus a tail."""
    rng = np.random.default_rng(32)
    cases = []
    for din, dout in (("int8", "int8"), ("int8", "uint8"), ("uint8", "int8"), ("uint8", "uint8")):
        for s_in, s_out, zin, zout in REQUANT_SCALES:
            zin += 128 * (din == "uint8")
            zout = int(np.clip(zout + 128 * (dout == "uint8"), *RANGE[dout]))
            lo, hi = RANGE[din]
            for n in ((4 * 256 + 13, 24) if din == dout else (4 * 256 + 13,)):
                x = np.concatenate([rng.permutation(np.arange(lo, hi + 1)) for _ in range(4)]
                                   + [rng.integers(lo, hi + 1, 13)])[:n]
                cases.append(("QUANTIZE", t("x", (1, n), din, s_in, zin), t("y", (1, n), dout, s_out, zout),
                              x.reshape(1, n)))
    return cases


def dequantize_cases():
    cases = []
    for dtype in ("int8", "uint8"):
        lo, hi = RANGE[dtype]
        for s, zp in ((0.05, 3), (0.0123, -128), (0.1, 127), (1.7, -5), (1 / 255, 0), (3e-5, 60)):
            zp = int(np.clip(zp + 128 * (dtype == "uint8"), lo, hi))
            for n in (3 * 256 + 5, 7):
                x = np.concatenate([np.arange(lo, hi + 1)] * 3 + [np.array([lo, hi, zp, lo, hi])])[:n]
                cases.append(("DEQUANTIZE", t("x", (1, n), dtype, s, zp), t("y", (1, n), "float32"), x.reshape(1, n)))
    return cases


CASES = {"QUANTIZE float": quantize_cases, "QUANTIZE requantize": requantize_cases, "DEQUANTIZE": dequantize_cases}


@pytest.mark.parametrize("kind", list(CASES))
def test_equals_litert_on_every_path(kind):
    compared = {p: 0 for p in F.PATHS}
    outs = {p: [] for p in F.PATHS}
    for case in CASES[kind]():
        for p in F.PATHS:
            gold, lit, mask = run_case(case, p)
            outs[p].append(lit)
            assert gold.shape == lit.shape
            bad = differ(gold, lit) & mask
            assert not bad.any(), (f"{kind} {case[1].dtype}->{case[2].dtype} n={lit.size} on {p}: {int(bad.sum())} "
                                   f"outputs differ from LiteRT, first at {np.argwhere(bad)[0]}")
            compared[p] += int(mask.sum())
    d = {(a, b): sum(int(differ(x, y).sum()) for x, y in zip(outs[a], outs[b]))
         for a, b in (("ref", "opt"), ("ref", "xnnpack"), ("opt", "xnnpack"))}
    print(f"\n{kind}: outputs equal to LiteRT per path {compared}; LiteRT's paths differ on {d}")
    assert all(v > 4000 for v in compared.values())
    # the kernels really differ: float QUANTIZE ties (away vs even), the optimized requantize's
    # ties-up blocks and XNNPACK's 8-bit multiplier, the optimized DEQUANTIZE's two roundings
    if kind == "QUANTIZE float":
        assert d["ref", "opt"] > 100 and d["ref", "xnnpack"] > 100 and d["opt", "xnnpack"] > 0
    if kind == "QUANTIZE requantize":
        assert d["ref", "opt"] > 100 and d["ref", "xnnpack"] > 100 and d["opt", "xnnpack"] > 100
    if kind == "DEQUANTIZE":
        assert d["ref", "xnnpack"] == 0 and (d["ref", "opt"] > 100 or not X86)


def test_xnnpack_takes_what_it_is_modelled_to_take():
    """Which QUANTIZE/DEQUANTIZE nodes the XNNPACK delegate takes (:func:`xnnpack_requantize_delegated`
    for requantization): seen in LiteRT's node list, not assumed."""
    from ai_edge_litert import interpreter as litert

    def delegated(m):
        it = litert.Interpreter(model_content=m, num_threads=1,
                                experimental_op_resolver_type=litert.OpResolverType.AUTO)
        it.allocate_tensors()
        return "DELEGATE" in [o["op_name"] for o in it._get_ops_details()]

    seen = 0
    for _, tin, tout, _x in requantize_cases()[::2]:
        want = O.xnnpack_requantize_delegated(tin.dtype, tout.dtype, float(tin.scale[0]), float(tout.scale[0]))
        assert delegated(one_op("QUANTIZE", tin, tout)) == want, (tin.dtype, tout.dtype, tin.scale, tout.scale)
        seen += 1
    assert delegated(one_op("QUANTIZE", t("x", (1, 8), "float32"), t("y", (1, 8), "int8", 0.1, 0)))
    assert delegated(one_op("DEQUANTIZE", t("x", (1, 8), "int8", 0.1, 0), t("y", (1, 8), "float32")))
    assert seen >= 16


def test_quantize_corner_values_by_hand():
    """A few values worked out by hand (not by the code under test): ties, saturation, -0.0."""
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e9, -1e9, -0.0, 0.49999997]], np.float32)   # scale 1, zp 0
    ref = [1, 2, 3, -1, -2, -3, 127, -128, 0, 0]        # std::round: ties away from zero
    even = [0, 2, 2, 0, -2, -2, 127, -128, 0, 0]        # nearbyint: ties to even
    assert O.quantize(x, "float32", None, None, "int8", 1.0, 0, "ref").ravel().tolist() == ref
    assert O.quantize(x, "float32", None, None, "int8", 1.0, 0, "xnnpack").ravel().tolist() == even
    # opt: the first 8 elements NEON (even), the last 2 the scalar tail (away)
    assert O.quantize(x, "float32", None, None, "int8", 1.0, 0, "opt").ravel().tolist() == even[:8] + ref[8:]
    assert O.quantize(x, "float32", None, None, "uint8", 1.0, 255, "ref").ravel().tolist() == \
        [255, 255, 255, 254, 253, 252, 255, 0, 255, 255]
    # requantize, ratio 1/2, zero points 0: -3 -> -1.5: reference SRDHM/RoundingDivideByPOT gives -1 (SRDHM
    # rounds the negative tie toward zero); XNNPACK (-3*128 + 128) >> 8 = -1; +3 -> 2 on both
    q = np.array([-3, -1, 1, 3, 127, -128])
    assert O.quantize(q, "int8", 0.2, 0, "int8", 0.4, 0, "ref").tolist() == [-1, 0, 1, 2, 64, -64]
    assert O.quantize(q, "int8", 0.2, 0, "int8", 0.4, 0, "xnnpack").tolist() == [-1, 0, 1, 2, 64, -64]
    # int8 -> uint8 at the same scale: q - zp_in + zp_out, clamped to 0..255
    assert O.quantize(q, "int8", 0.2, -5, "uint8", 0.2, 123, "ref").tolist() == [125, 127, 129, 131, 255, 0]


def test_injected_bug_is_caught(monkeypatch):
    """Each mutant of the golden model differs from LiteRT on the path it breaks."""
    real_rint = np.rint

    def cases_bad(kind, path):       # every other case is enough to show a mutant
        return sum(int((differ(*run_case(c, path)[:2])).sum()) for c in CASES[kind]()[::2])

    found = {}
    with monkeypatch.context() as mp:        # vectorized float QUANTIZE rounds ties away from zero
        mp.setattr(O.np, "rint", lambda v, *a, **k: O._round_half_away(v))
        found["opt float ties away"] = cases_bad("QUANTIZE float", "opt")
        found["xnnpack float ties away"] = cases_bad("QUANTIZE float", "xnnpack")
    assert np.rint is real_rint
    with monkeypatch.context() as mp:        # the optimized requantize rounded like the reference
        mp.setattr(O, "multiply_by_quantized_multiplier_opt", O.multiply_by_quantized_multiplier)
        found["opt requantize reference rounding"] = cases_bad("QUANTIZE requantize", "opt")
    with monkeypatch.context() as mp:        # XNNPACK's requantize ties rounded down
        real = O.quantize

        def floor_ties(x, din, si, zi, dout, so, zo, path):
            y = real(x, din, si, zi, dout, so, zo, path)
            if path == "xnnpack" and din != "float32" and O.xnnpack_requantize_delegated(din, dout, si, so):
                m = int(np.rint(np.float32(256.0) * np.float32(np.float32(si) / np.float32(so))))
                lo, hi = RANGE[dout]
                y = np.clip(((np.asarray(x, np.int64) - zi) * m + 127) >> 8, lo - zo, hi - zo) + zo
            return y
        mp.setattr(O, "quantize", floor_ties)
        found["xnnpack requantize ties down"] = cases_bad("QUANTIZE requantize", "xnnpack")
    if X86:
        with monkeypatch.context() as mp:    # the optimized DEQUANTIZE's product and sum fused
            real_d = O.dequantize
            mp.setattr(O, "dequantize", lambda x, s, z, p, fused=False: real_d(x, s, z, p, fused=True))
            found["opt dequantize fused"] = cases_bad("DEQUANTIZE", "opt")
    print(f"\nmutants: outputs that differ from LiteRT {found}")
    assert all(v > 0 for v in found.values()), found


@pytest.mark.parametrize("io", ["float32", "uint8"])
def test_model_with_float_or_uint8_io_equals_litert(io):
    """MobileNetV1 and (float32 I/O) the MobileNetV2-style Keras model (PAD, MEAN, SOFTMAX) with a
    converter's I/O boundary: every path's golden run equals LiteRT's whole-model output and every operator
    LiteRT running it alone."""
    n_out = n_layer = 0
    bases = [(N.mobilenet(0), F.PATHS)]
    if io == "float32":
        bases.append((N.mobilenet_v2(2, head="keras"), F.PATHS if O.softmax_opt_is_modelled() else ("ref",)))
    for base, paths in bases:
        m, x = N.with_io(*base, io=io)
        g = N.read_model(m)
        assert g.tensors[g.inputs[0]].dtype == io and g.tensors[g.outputs[0]].dtype == io
        assert g.ops[0].kind == "QUANTIZE" and g.ops[-1].kind == ("DEQUANTIZE" if io == "float32" else "QUANTIZE")
        for p in paths:
            v = N.run_golden(g, x, p)
            out = v[g.outputs[0]]
            assert out.dtype == (np.float32 if io == "float32" else np.int64)
            assert N.count_differ(out, F.run_path(m, x, p, check_delegated=False)) == 0, (io, p)
            n_out += out.size
            for op in (g.ops[0], g.ops[-1]):
                if op.kind == "DEQUANTIZE" and p == "opt" and not X86:
                    continue                       # ARM may fuse the product and sum (module doc)
                want = N.litert_op(g, op, v, p)
                assert N.count_differ(v[op.outputs[0]], want) == 0, (io, p, op.kind)
                n_layer += want.size
    print(f"\n{io} I/O: {n_out} model outputs and {n_layer} QUANTIZE/DEQUANTIZE outputs equal to LiteRT")


def test_reader_limits():
    from convgen.core.params import ConfigError

    with pytest.raises(ConfigError, match="float32 to float32 is not supported"):
        N.parse_model(one_op("QUANTIZE", t("x", (1, 4), "float32"), t("y", (1, 4), "float32")))
    with pytest.raises(ConfigError, match="float32 to int8 is not supported"):
        N.parse_model(one_op("DEQUANTIZE", t("x", (1, 4), "float32"), t("y", (1, 4), "int8", 0.1, 0)))
    bad = T("y", (1, 4), "int8", np.array([0.1, 0.2], np.float32), np.array([0, 0]))
    with pytest.raises(ConfigError, match="one scale"):
        N.parse_model(one_op("QUANTIZE", t("x", (1, 4), "float32"), bad))
