"""cocotb regression for Requantizer. The configuration comes from the manifest named by
``CONVGEN_MANIFEST``; the seed from ``CONVGEN_SEED``; the number of random beats from
``CONVGEN_REQUANT_BEATS``.

Every expected value comes from golden.requant.requantize (itself checked against ONNX
Runtime and against TFLite known answers in tests/), never from the RTL. The scoreboard checks
every output beat in order and that no surplus beat appears afterwards.
"""

import dataclasses
import json
import os

import cocotb
import numpy as np

from convgen.core.quant import (FLOAT_ROUNDINGS, INT32_MAX, INT32_MIN, ONNX_SCALE_MAX, ONNX_SCALE_MIN,
                               OPT_MULTIPLIER_MAX, XNNPACK_SCALE_MAX, XNNPACK_SCALE_MIN, entry_channel)
from convgen.golden.requant import RequantParams, requantize
from convgen.hdl.requant import RequantConfig
from convgen.sim.packing import pack, unpack
from convgen.sim.requant import param_fields
from convgen.sim.streams import StreamBench, random_pattern

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
CFG = RequantConfig(**MANIFEST["parameters"])
STREAMS = MANIFEST["streams"]
SEED = int(os.environ.get("CONVGEN_SEED", "1234"))
BEATS = int(os.environ.get("CONVGEN_REQUANT_BEATS", "2000"))
CHANNELS = CFG.lanes * CFG.groups
OUT = CFG.out_range
FLOAT = CFG.rounding in FLOAT_ROUNDINGS
SCALE_MIN, SCALE_MAX = ((XNNPACK_SCALE_MIN, XNNPACK_SCALE_MAX) if CFG.rounding == "xnnpack"
                        else (ONNX_SCALE_MIN, ONNX_SCALE_MAX))


def random_params(rng, *, relu=False) -> RequantParams:
    c = CHANNELS
    zp = rng.integers(OUT.lo, OUT.hi + 1, c)
    lo = rng.integers(OUT.lo, OUT.hi + 1, c)
    hi = rng.integers(OUT.lo, OUT.hi + 1, c)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    full = rng.random(c) < 0.5           # half the channels clamp to the full output range
    lo, hi = np.where(full, OUT.lo, lo), np.where(full, OUT.hi, hi)
    if relu:                              # fused ReLU / ReLU6-like clamps at the zero point
        lo = zp.copy()
        hi = np.where(rng.random(c) < 0.5, OUT.hi, np.minimum(zp + 6, OUT.hi))
    bias = rng.integers(INT32_MIN, INT32_MAX + 1, c) >> rng.integers(0, 32, c)
    kw = dict(bias=bias, zero_point=zp, act_min=lo, act_max=hi, out_width=CFG.out_width,
              out_signed=CFG.out_signed)
    if FLOAT:
        # half random float32 scales over [2**-126, 1) (mostly in the useful 2**-24..1; xnnpack:
        # up to 256, a quarter of them >= 1), half dyadic (odd * 2**-k): those put many results
        # exactly on .5
        e = rng.integers(-24, 0, c)
        if CFG.rounding == "xnnpack":
            e = np.where(rng.random(c) < 0.25, rng.integers(0, 8, c), e)
        rnd = np.ldexp(rng.uniform(1, 2, c), e).astype(np.float32)
        dy = (rng.choice([1, 3, 5, 7], c) * np.ldexp(1.0, -rng.integers(3, 12, c))).astype(np.float32)
        scale = np.where(rng.random(c) < 0.5, rnd, dy).astype(np.float32)
        scale = np.clip(scale, np.float32(SCALE_MIN), np.float32(SCALE_MAX))
        return RequantParams.make(CFG.rounding, c, scale=scale, **kw)
    mult = rng.integers(1 << 30, 1 << 31, c)
    mult = np.where(rng.random(c) < 0.3, 1 << 30, mult)  # 0.5: exact ties
    shift = np.where(rng.random(c) < 0.7, rng.integers(-20, 1, c), rng.integers(-31, 31, c))
    if CFG.rounding == "tflite_opt":   # half the channels round ties away (the scalar channels)
        kw["round_away"] = rng.random(c) < 0.5
    return RequantParams.make(CFG.rounding, c, multiplier=mult, shift=shift, **kw)


def random_acc(rng, n):
    """Accumulators spread over every magnitude (a shift of a full-range value), with some
    small ones (ties with the dyadic scales) and the int32 extremes."""
    acc = rng.integers(INT32_MIN, INT32_MAX + 1, (n, CFG.lanes)) >> rng.integers(0, 32, (n, CFG.lanes))
    pick = rng.random((n, CFG.lanes))
    acc = np.where(pick < 0.02, INT32_MIN, np.where(pick > 0.98, INT32_MAX, acc))
    return acc


class Scoreboard:
    """Queues parameter writes and accumulator beats; knows the expected outputs."""

    def __init__(self, bench):
        self.bench = bench
        self.p_src = bench.source("p", [])
        self.i_src = bench.source("i", [])
        self.snk = bench.sink("o", 0)
        self.beats = []  # (acc lanes, group)

    def write_params(self, p: RequantParams, idle=None):
        f = param_fields(CFG, p)
        self.bench.source("p", pack(STREAMS["p"]["layout"], f, len(f["group"])), idle=idle)

    def send(self, acc, groups, idle=None, stall=None):
        self.beats += list(zip(acc, groups))
        self.bench.source("i", pack(STREAMS["i"]["layout"], {"acc": acc, "group": groups}, len(acc)), idle=idle)
        self.bench.sink("o", len(acc), stall=stall)

    def check(self, params):
        """``params``: one RequantParams for every beat, or a list with one per beat."""
        got = unpack(STREAMS["o"]["layout"], self.snk.received)
        assert len(got) == len(self.beats), f"{len(got)} outputs for {len(self.beats)} beats"
        acc = np.array([a for a, _ in self.beats], dtype=np.int64).reshape(len(self.beats), CFG.lanes)
        ch = entry_channel(np.array([g for _, g in self.beats], dtype=np.int64)[:, None], np.arange(CFG.lanes), CFG.lanes)
        if isinstance(params, RequantParams):
            exp = requantize(acc, params, channel=ch)
        else:
            exp = np.stack([requantize(acc[k], p, channel=ch[k]) for k, p in enumerate(params)])
        bad = np.flatnonzero(np.any(got != exp, axis=1))
        for k in bad[:5]:
            cocotb.log.error(f"beat {k} group {ch[k, 0] // CFG.lanes}: acc {acc[k].tolist()} "
                             f"RTL {got[k].tolist()} golden {exp[k].tolist()}")
        assert len(bad) == 0, f"{len(bad)} of {len(self.beats)} beats differ from the golden model"


async def fresh(dut):
    bench = StreamBench(dut)
    sb = Scoreboard(bench)
    await bench.reset()
    return bench, sb


@cocotb.test()
async def random_values_random_stalls(dut):
    """BEATS random beats (BEATS*lanes values) with random parameters per channel, random idle
    cycles on p and i and random backpressure on o (each 30%, independent)."""
    rng = np.random.default_rng(SEED)
    bench, sb = await fresh(dut)
    p = random_params(rng)
    sb.write_params(p, idle=random_pattern(SEED + 1, 0.3))
    await bench.run(20 * CHANNELS + 50)
    acc = random_acc(rng, BEATS)
    groups = rng.integers(0, CFG.groups, BEATS)
    sb.send(acc, groups, idle=random_pattern(SEED + 2, 0.3), stall=random_pattern(SEED + 3, 0.3))
    await bench.run(10 * CFG.interval * BEATS + 200, extra_cycles=CFG.latency + 10)
    sb.check(p)
    dut._log.info("%d values checked", BEATS * CFG.lanes)


@cocotb.test()
async def no_stalls_relu_clamps(dut):
    """Fused ReLU / ReLU6-style clamps at the zero point, full rate, no stalls."""
    rng = np.random.default_rng(SEED + 10)
    bench, sb = await fresh(dut)
    p = random_params(rng, relu=True)
    sb.write_params(p)
    await bench.run(CHANNELS + 10)
    n = max(200, BEATS // 4)
    acc = random_acc(rng, n)
    groups = rng.integers(0, CFG.groups, n)
    sb.send(acc, groups)
    await bench.run(4 * CFG.interval * n + 200, extra_cycles=CFG.latency + 10)
    sb.check(p)


def corner_params():
    """Per-channel corner parameters, cycled over the channels."""
    c = CHANNELS
    idx = np.arange(c)
    kw = dict(out_width=CFG.out_width, out_signed=CFG.out_signed)
    bias = np.array([0, INT32_MAX, INT32_MIN, -1, 1, 0, 0, 0])[idx % 8]
    zp = np.array([0, OUT.lo, OUT.hi, 0, 1, -1 if OUT.lo < 0 else 3, 0, 0])[idx % 8]
    if CFG.rounding == "onnx":
        scale = np.array([0.5, ONNX_SCALE_MAX, ONNX_SCALE_MIN, 2.0 ** -31, 2.0 ** -32, 0.25, 3 / 8, 1 / 3],
                         dtype=np.float32)[idx % 8]
        return RequantParams.make("onnx", c, bias=bias, scale=scale, zero_point=zp, **kw)
    if CFG.rounding == "xnnpack":
        # the extremes of XNNPACK's range, 1 (u = 0..8 left shifts begin), 1.5, 255
        scale = np.array([0.5, XNNPACK_SCALE_MAX, XNNPACK_SCALE_MIN, 1.0, 2.0 ** -32, 1.5, 255.0, 1 / 3],
                         dtype=np.float32)[idx % 8]
        return RequantParams.make("xnnpack", c, bias=bias, scale=scale, zero_point=zp, **kw)
    if CFG.rounding == "tflite_opt":
        # the multiplier field's extremes (0 and 2**31 - 1), both roundings of the final shift
        mult = np.array([1 << 30, OPT_MULTIPLIER_MAX, 0, 1 << 30, 1 << 30, OPT_MULTIPLIER_MAX, 1 << 30, 1 << 30])[idx % 8]
        shift = np.array([0, -31, 0, 30, -31, 30, -1, -2])[idx % 8]
        return RequantParams.make(CFG.rounding, c, bias=bias, multiplier=mult, shift=shift, zero_point=zp,
                                  check_multiplier=False, round_away=(idx // 8) % 2 == 1, **kw)
    if CFG.rounding == "tflite":
        # INT32_MIN as multiplier reaches SRDHM's saturation (TFLite never produces it; the
        # hardware implements SRDHM in full, so it is checked anyway)
        mult = np.array([1 << 30, INT32_MAX, INT32_MIN, 1 << 30, 1 << 30, INT32_MAX, 1 << 30, -(1 << 30)])[idx % 8]
        shift = np.array([0, -31, 0, 30, -31, 30, -1, -2])[idx % 8]
    else:
        mult = np.array([1 << 30, INT32_MAX, INT32_MIN, 1 << 30, 1 << 30, INT32_MAX, 1 << 30, 1 << 30])[idx % 8]
        shift = np.array([0, -31, 0, 30, -31, 30, -1, -2])[idx % 8]
    return RequantParams.make(CFG.rounding, c, bias=bias, multiplier=mult, shift=shift, zero_point=zp,
                              check_multiplier=False, **kw)


@cocotb.test()
async def corner_values(dut):
    """int32 extremes, wrap of acc + bias, ties (+-0.5, +-1.5, +-2.5), the largest and
    smallest shifts, the SRDHM INT32_MIN * INT32_MIN saturation, the smallest and largest
    accepted ONNX scales; every accumulator on every channel, with o stalled 50%."""
    p = corner_params()
    base = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1,
            1 << 24, (1 << 24) + 1, (1 << 24) + 3, -((1 << 24) + 1), (1 << 30), -(1 << 30), 127, -128,
            255, 256, 1 << 29, (1 << 25) + 2]
    bench, sb = await fresh(dut)
    sb.write_params(p)
    await bench.run(CHANNELS + 10)
    acc, groups = [], []
    for g in range(CFG.groups):
        for v in base:
            acc.append([v] * CFG.lanes)
            groups.append(g)
    acc = np.array(acc, dtype=np.int64)
    sb.send(acc, np.array(groups), stall=random_pattern(SEED + 20, 0.5))
    await bench.run(10 * CFG.interval * len(acc) + 200, extra_cycles=CFG.latency + 10)
    sb.check(p)


@cocotb.test()
async def reset_mid_stream(dut):
    """A reset at several points of a stream drops everything in flight (nothing of it comes
    out afterwards); the parameter memory keeps its contents; a clean stream then matches."""
    rng = np.random.default_rng(SEED + 30)
    bench, sb = await fresh(dut)
    p = random_params(rng)
    sb.write_params(p)
    await bench.run(CHANNELS + 10)
    for stop in (1, 2, CFG.stages, CFG.stages + 3, 20):
        acc = random_acc(rng, 30)
        sb.send(acc, rng.integers(0, CFG.groups, 30), stall=random_pattern(SEED + stop, 0.3))
        await bench.run(1000, stop_after=stop)
        await bench.reset(cycles=int(rng.integers(1, 4)))
        sb.snk.received.clear()
        sb.snk.expected = 0
        sb.beats = []
        acc = random_acc(rng, 40)
        sb.send(acc, rng.integers(0, CFG.groups, 40), idle=random_pattern(SEED + stop + 1, 0.2),
                stall=random_pattern(SEED + stop + 2, 0.3))
        await bench.run(1000 * CFG.interval, extra_cycles=CFG.latency + 10)
        sb.check(p)
        sb.snk.received.clear()
        sb.snk.expected = 0
        sb.beats = []


@cocotb.test()
async def parameter_writes_mid_stream(dut):
    """Parameter writes interleaved with data (both with random idles): each beat must use the
    parameters written in cycles before its own transfer (the documented ordering)."""
    rng = np.random.default_rng(SEED + 40)
    bench, sb = await fresh(dut)
    p0 = random_params(rng)
    sb.write_params(p0)
    await bench.run(CHANNELS + 10)
    p_src = sb.p_src
    writes_before = p_src.sent
    p1 = random_params(rng)
    sb.write_params(p1, idle=random_pattern(SEED + 41, 0.6))
    n = 4 * CHANNELS + 20
    acc = random_acc(rng, n)
    groups = rng.integers(0, CFG.groups, n)
    sb.send(acc, groups, idle=random_pattern(SEED + 42, 0.3), stall=random_pattern(SEED + 43, 0.3))
    await bench.run(20 * CFG.interval * n + 200, extra_cycles=CFG.latency + 10)
    write_cycles = p_src.transfer_cycles[writes_before:]
    f1 = param_fields(CFG, p1)
    # the parameters each beat saw: p0 overwritten by the p1 writes transferred before it
    per_channel = ("bias", "multiplier", "shift", "scale", "zero_point", "act_min", "act_max", "round_away")
    seen = []
    for cyc in sb.i_src.transfer_cycles[-n:]:
        done = sum(1 for w in write_cycles if w < cyc)
        mixed = {name: getattr(p0, name).copy() for name in per_channel if getattr(p0, name) is not None}
        for k in range(done):
            ch = entry_channel(f1["group"][k], f1["lane"][k], CFG.lanes)
            for name in mixed:
                mixed[name][ch] = getattr(p1, name)[ch]
        seen.append(dataclasses.replace(p0, **mixed))
    assert 0 < sum(1 for cyc in sb.i_src.transfer_cycles[-n:] if cyc < write_cycles[-1]) < n, \
        "the writes should overlap the data stream"
    sb.check(seen)


@cocotb.test()
async def latency_and_throughput(dut):
    """No stalls: the first result transfers exactly ``latency`` cycles after its input, and
    n beats take exactly ``(n - 1) * interval + 1 + latency`` cycles (``lanes`` values per
    ``interval`` cycles; ``interval`` is 1 except for a ``serial`` product). The inputs are
    offered back to back, so a serial requantizer's own ``i.ready`` paces them."""
    rng = np.random.default_rng(SEED + 50)
    bench, sb = await fresh(dut)
    p = random_params(rng)
    sb.write_params(p)
    await bench.run(CHANNELS + 10)
    n = 64
    sb.send(random_acc(rng, n), rng.integers(0, CFG.groups, n))
    await bench.run(10 * CFG.interval * n, extra_cycles=CFG.latency + 10)
    sb.check(p)
    first_in, first_out = sb.i_src.transfer_cycles[0], sb.snk.transfer_cycles[0]
    assert first_out - first_in == CFG.latency, f"latency {first_out - first_in}, formula {CFG.latency}"
    total = sb.snk.transfer_cycles[-1] - first_in + 1
    want = (n - 1) * CFG.interval + 1 + CFG.latency
    assert total == want, f"{n} beats took {total} cycles, formula {want}"
    gaps = set(np.diff(sb.i_src.transfer_cycles[-n:]).tolist())
    assert gaps == {CFG.interval}, f"input transfers {gaps} cycles apart, interval {CFG.interval}"
