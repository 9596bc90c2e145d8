"""cocotb regression for the Winograd blocks. The DUT and its configuration come from the
manifest named by ``CONVGEN_MANIFEST`` (set by tb/winograd/test_winograd.py): ``kind`` is
``conv3x3`` (WinogradConv3x3) or ``harness`` (the four stand-alone blocks side by side, see
tb/winograd/harness.py). Seed from ``CONVGEN_SEED``.

Expected values come from golden.winograd: the transforms from the integer matrices, the
1-D F(2,3) and the convolution from *direct* convolution (the independent oracle), never
from the RTL. Each sink checks every beat in order and that no surplus beat appears.
"""

import json
import os

import cocotb
import numpy as np

from convgen.golden.gemm import wrap
from convgen.golden.winograd import (conv3x3_direct, direct_1d, filter_transform, input_transform,
                                     output_transform)
from convgen.hdl.winograd import WinogradConfig, WinogradConv3x3
from convgen.sim.packing import pack, unpack
from convgen.sim.winograd import conv_beats
from convgen.sim.streams import StreamBench, random_pattern

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
CFG = WinogradConfig(**MANIFEST["parameters"])
KIND = MANIFEST["kind"]
STREAMS = MANIFEST["streams"]
SEED = int(os.environ.get("CONVGEN_SEED", "1234"))
DLO, DHI = CFG.d_range.lo, CFG.d_range.hi
GLO, GHI = CFG.g_range.lo, CFG.g_range.hi


def _layout(name):
    return STREAMS[name]["layout"]


# ---- stand-alone blocks (harness) -----------------------------------------------------------
def checker_tile(n, lo, hi, phase=0):
    """n x n alternating-sign tile (lo where (r + c + phase) is even, else hi)."""
    r, c = np.indices((n, n))
    return np.where((r + c + phase) % 2 == 0, lo, hi)


def transform_cases(rng, n_random):
    """Inputs and expected outputs for every block of the harness."""
    cases = {}
    # input transform: 4x4 tiles
    tiles = [rng.integers(DLO, DHI + 1, size=(4, 4)) for _ in range(n_random)]
    tiles += [np.full((4, 4), DLO), np.full((4, 4), DHI), checker_tile(4, DLO, DHI, 0),
              checker_tile(4, DLO, DHI, 1)]
    d = np.stack(tiles)
    cases["it"] = (d.reshape(-1, 16), np.array(input_transform(d), dtype=np.int64).reshape(-1, 16))
    # filter transform: 3x3 filters
    filt = [rng.integers(GLO, GHI + 1, size=(3, 3)) for _ in range(n_random)]
    filt += [np.full((3, 3), GLO), np.full((3, 3), GHI), checker_tile(3, GLO, GHI, 0),
             checker_tile(3, GLO, GHI, 1)]
    g = np.stack(filt)
    cases["ft"] = (g.reshape(-1, 9), np.array(filter_transform(g), dtype=np.int64).reshape(-1, 16))
    # output transform: realistic M4 (sums of U4 * V over a few channels) and raw extremes
    alo, ahi = -(1 << (CFG.acc_width - 1)), (1 << (CFG.acc_width - 1)) - 1
    ms = []
    for _ in range(n_random):
        c = int(rng.integers(1, 5))
        dd = rng.integers(DLO, DHI + 1, size=(c, 4, 4))
        gg = rng.integers(GLO, GHI + 1, size=(c, 3, 3))
        ms.append(np.array((filter_transform(gg) * input_transform(dd)).sum(axis=0), dtype=object))
    ms += [np.full((4, 4), alo, dtype=object), np.full((4, 4), ahi, dtype=object),
           checker_tile(4, alo, ahi, 0).astype(object), checker_tile(4, alo, ahi, 1).astype(object)]
    ms += [np.array(rng.integers(alo, ahi, size=(4, 4), dtype=np.int64), dtype=object) for _ in range(4)]
    m4 = np.stack(ms)
    y = wrap(output_transform(m4), CFG.out_width, True).reshape(-1, 4)
    cases["ot"] = (m4.reshape(-1, 16).astype(np.int64), np.asarray(y, dtype=np.int64))
    # 1-D F(2,3): direct FIR is the oracle
    dv = [rng.integers(DLO, DHI + 1, size=4) for _ in range(n_random)]
    gv = [rng.integers(GLO, GHI + 1, size=3) for _ in range(n_random)]
    for a in (DLO, DHI):
        for b in (GLO, GHI):
            dv.append(np.full(4, a))
            gv.append(np.full(3, b))
    dv += [np.array([DLO, DHI, DLO, DHI]), np.array([DHI, DLO, DHI, DLO])]
    gv += [np.array([GLO, GHI, GLO]), np.array([GLO, GHI, GLO])]
    dv, gv = np.stack(dv), np.stack(gv)
    cases["f23"] = ({"d": dv, "g": gv}, np.array([direct_1d(a, b) for a, b in zip(dv, gv)], dtype=np.int64))
    return cases


def queue_cases(bench, cases, p=0.0, seed=0):
    sinks = {}
    for k, (name, (inp, exp)) in enumerate(cases.items()):
        n = len(exp)
        idle = random_pattern(seed + 2 * k, p) if p else None
        stall = random_pattern(seed + 2 * k + 1, p) if p else None
        bench.source(f"{name}_i", pack(_layout(f"{name}_i"), inp, n), idle=idle)
        sinks[name] = (bench.sink(f"{name}_o", n, stall=stall), exp)
    return sinks


def check_sinks(sinks):
    for name, (snk, exp) in sinks.items():
        got = unpack(_layout(f"{name}_o"), snk.received)
        assert got.shape == exp.shape, f"{name}: {got.shape} beats != {exp.shape}"
        bad = np.nonzero(np.any(got != exp, axis=1))[0]
        if len(bad):
            i = bad[0]
            raise AssertionError(f"{name}: beat {i} RTL {list(got[i])} != golden {list(exp[i])} "
                                 f"({len(bad)} beats differ)")


async def fresh_bench(dut, sources, sinks):
    bench = StreamBench(dut)
    for s in sources:
        bench.source(s, [])
    for s in sinks:
        bench.sink(s, 0)
    await bench.reset()
    return bench


HARNESS_SRC = ["it_i", "ft_i", "ot_i", "f23_i", "c20_i"]
HARNESS_SNK = ["it_o", "ft_o", "ot_o", "f23_o", "c20_o"]


@cocotb.test(skip=KIND != "harness")
async def transforms_random_and_extreme(dut):
    """Every block on random and extreme inputs (all min, all max, alternating signs),
    first without stalls, then with random idle cycles and backpressure."""
    rng = np.random.default_rng(SEED)
    for p in (0.0, 0.4):
        bench = await fresh_bench(dut, HARNESS_SRC, HARNESS_SNK)
        sinks = queue_cases(bench, transform_cases(rng, 24), p=p, seed=SEED)
        await bench.run(5000, extra_cycles=10)
        check_sinks(sinks)


@cocotb.test(skip=KIND != "harness")
async def transforms_reset_mid_stream(dut):
    """Reset while beats are in flight (and outputs stalled); then a clean run is exact."""
    rng = np.random.default_rng(SEED + 1)
    bench = await fresh_bench(dut, HARNESS_SRC, HARNESS_SNK)
    for stop in (1, 2, 5):
        sinks = queue_cases(bench, transform_cases(rng, 6), p=0.5, seed=SEED + stop)
        await bench.run(1000, stop_after=stop)
        await bench.reset()
        for snk, _ in sinks.values():
            snk.received.clear()
            snk.expected = 0
        sinks = queue_cases(bench, transform_cases(rng, 6), p=0.3, seed=SEED + 10 * stop)
        await bench.run(2000, extra_cycles=10)
        check_sinks(sinks)
        for snk, _ in sinks.values():
            snk.received.clear()
            snk.expected = 0


# ---- WinogradConv3x3 --------------------------------------------------------------------
# the conv DUT: the top itself (kind conv3x3) or the harness's narrow conv (ports c20_*)
CONV_PORTS = ("i", "o") if KIND == "conv3x3" else ("c20_i", "c20_o")
if KIND == "conv3x3":
    CONV_CFG = CFG
else:
    from convgen.tb.winograd.harness import NARROW_CONV
    CONV_CFG = WinogradConfig(**{**CFG.to_dict(), **NARROW_CONV})


def queue_conv(bench, x, w, idle=None, stall=None):
    beats = conv_beats(x, w)
    n = len(beats["last"])
    bench.source(CONV_PORTS[0], pack(_layout(CONV_PORTS[0]),
                                     {"d": beats["d"], "g": beats["g"], "last": beats["last"]}, n), idle=idle)
    snk = bench.sink(CONV_PORTS[1], beats["out_beats"], stall=stall)
    return snk, n


def check_conv(snk, x, w, first=0):
    """Compare with *direct* convolution, tile by tile in conv_beats order."""
    from convgen.golden.winograd import assemble

    exp = wrap(conv3x3_direct(x, w), CONV_CFG.out_width, True)
    c_out = w.shape[0]
    _, h, wd = x.shape
    got = unpack(_layout(CONV_PORTS[1]), snk.received[first:])
    y = assemble(got.reshape(c_out, -1, 2, 2), c_out, h, wd)
    if not np.array_equal(y, exp):
        idx = tuple(np.argwhere(y != exp)[0])
        raise AssertionError(f"conv C_in={x.shape[0]} HxW={h}x{wd} C_out={c_out}: y{idx} RTL {y[idx]} "
                             f"!= direct {exp[idx]} ({int(np.sum(y != exp))} outputs differ)")


SHAPES = [(1, 1, 1, 1), (3, 5, 7, 2), (2, 6, 4, 3), (4, 3, 3, 1), (1, 2, 9, 2), (5, 4, 5, 1)]


def random_conv(rng, c_in, h, w, c_out):
    return (rng.integers(DLO, DHI + 1, size=(c_in, h, w)), rng.integers(GLO, GHI + 1, size=(c_out, c_in, 3, 3)))


@cocotb.test(skip=KIND != "conv3x3")
async def conv_random_feature_maps(dut):
    """Random int feature maps of several shapes (odd H and W, multi-channel) against direct
    convolution, with no stalls and with random idle cycles and backpressure."""
    rng = np.random.default_rng(SEED + 2)
    for k, shape in enumerate(SHAPES):
        for p in (0.0, 0.4):
            bench = await fresh_bench(dut, ["i"], ["o"])
            x, w = random_conv(rng, *shape)
            snk, n = queue_conv(bench, x, w, idle=random_pattern(SEED + k, p) if p else None,
                                stall=random_pattern(SEED + 100 + k, p) if p else None)
            await bench.run(20 * n + 100, extra_cycles=10)
            check_conv(snk, x, w)


@cocotb.test(skip=KIND != "conv3x3")
async def conv_extremes(dut):
    """All-min/all-max data and weights (largest |y| of each sign) and alternating signs."""
    c_in = min(CFG.max_channels, 16)
    cases = []
    for a in (DLO, DHI):
        for b in (GLO, GHI):
            cases.append((np.full((c_in, 4, 5), a), np.full((2, c_in, 3, 3), b)))
    xa = np.stack([checker_tile(6, DLO, DHI, c % 2)[:5, :6] for c in range(c_in)])
    wa = np.stack([np.stack([checker_tile(3, GLO, GHI, (c + o) % 2) for c in range(c_in)]) for o in range(2)])
    cases.append((xa, wa))
    for x, w in cases:
        bench = await fresh_bench(dut, ["i"], ["o"])
        snk, n = queue_conv(bench, x, w, stall=random_pattern(SEED + 7, 0.3))
        await bench.run(20 * n + 100, extra_cycles=10)
        check_conv(snk, x, w)


@cocotb.test(skip=KIND != "conv3x3")
async def conv_reset_mid_stream(dut):
    """Reset in the middle of a channel group (accumulator partly filled, beats in flight);
    the next feature map must come out exactly."""
    rng = np.random.default_rng(SEED + 3)
    bench = await fresh_bench(dut, ["i"], ["o"])
    for stop in (1, 2, 3, 7, 13):
        x, w = random_conv(rng, 4, 4, 4, 2)
        snk, _ = queue_conv(bench, x, w, stall=random_pattern(SEED + stop, 0.5))
        await bench.run(1000, stop_after=stop)
        await bench.reset(cycles=1 + stop % 3)
        snk.received.clear()
        snk.expected = 0
        x, w = random_conv(rng, 3, 3, 5, 2)
        snk, n = queue_conv(bench, x, w, idle=random_pattern(SEED + stop + 1, 0.2))
        await bench.run(20 * n + 100, extra_cycles=10)
        check_conv(snk, x, w)
        snk.received.clear()
        snk.expected = 0


@cocotb.test(skip=KIND != "conv3x3")
async def conv_timing(dut):
    """No stalls: one beat accepted per cycle, and each tile comes out LATENCY cycles after
    its last beat was accepted."""
    rng = np.random.default_rng(SEED + 4)
    x, w = random_conv(rng, 3, 4, 4, 2)
    bench = await fresh_bench(dut, ["i"], ["o"])
    snk, n = queue_conv(bench, x, w)
    await bench.run(20 * n + 100, extra_cycles=10)
    check_conv(snk, x, w)
    src = bench._sources["i"]
    assert np.all(np.diff(src.transfer_cycles) == 1), "input beats were not accepted every cycle"
    lasts = [c for c, last in zip(src.transfer_cycles, conv_beats(x, w)["last"]) if last]
    lat = [o - i for i, o in zip(lasts, snk.transfer_cycles)]
    assert all(v == WinogradConv3x3.LATENCY for v in lat), f"latencies {lat}"


@cocotb.test(skip=CONV_CFG.max_channels > 64)
async def conv_at_overflow_limit(dut):
    """Narrow outputs: C_in = max_channels at the worst-case operands is exact; one channel
    more wraps modulo 2**out_width exactly like golden's wrap (the modular accumulator)."""
    for c_in in (CONV_CFG.max_channels, CONV_CFG.max_channels + 1):
        for a, b in ((DLO, GLO), (DLO, GHI)):
            x, w = np.full((c_in, 3, 4), a), np.full((1, c_in, 3, 3), b)
            bench = await fresh_bench(dut, [CONV_PORTS[0]], [CONV_PORTS[1]])
            snk, n = queue_conv(bench, x, w)
            await bench.run(20 * n + 100, extra_cycles=10)
            check_conv(snk, x, w)
        exact = conv3x3_direct(np.full((c_in, 3, 4), DLO), np.full((1, c_in, 3, 3), GLO))
        fits = np.array_equal(exact, wrap(exact, CONV_CFG.out_width, True))
        assert fits == (c_in <= CONV_CFG.max_channels), f"C_in={c_in}: fits={fits}"
