"""cocotb regression for SystolicArray. The configuration comes from the manifest named by
``CONVGEN_MANIFEST`` (set by tb/systolic/test_systolic.py); the seed from ``CONVGEN_SEED``.

Every expected value comes from golden.gemm (int64 NumPy matmul, wrapped to the accumulator
width), never from the RTL. The scoreboard checks each output row in order, the ``last``
flag, and that no surplus row appears afterwards (StreamBench's extra cycles).
"""

import json
import os
import random

import cocotb
import numpy as np

from convgen.golden.gemm import gemm
from convgen.hdl.systolic import SystolicConfig
from convgen.sim.packing import pack, unpack
from convgen.sim.systolic import tile_streams
from convgen.sim.streams import StreamBench, random_pattern

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
CFG = SystolicConfig(**MANIFEST["parameters"])
STREAMS = MANIFEST["streams"]
SEED = int(os.environ.get("CONVGEN_SEED", "1234"))
SLOW = os.environ.get("CONVGEN_SLOW") == "1"


def golden(a_t, b_t):
    return gemm(a_t, b_t, a_width=CFG.a_width, b_width=CFG.b_width, a_signed=CFG.a_signed,
                b_signed=CFG.b_signed, acc_width=CFG.acc_width)


def random_tile(rng, k):
    a = rng.integers(CFG.a_range.lo, CFG.a_range.hi + 1, size=(CFG.rows, k))
    b = rng.integers(CFG.b_range.lo, CFG.b_range.hi + 1, size=(k, CFG.cols))
    return a, b


def const_tile(a_val, b_val, k):
    return (np.full((CFG.rows, k), a_val, dtype=np.int64), np.full((k, CFG.cols), b_val, dtype=np.int64))


def queue_tiles(bench, tiles, *, idle_a=None, idle_b=None, stall_o=None):
    """Queue every tile's beats; return the sink and the expected rows."""
    a_beats, b_data, b_last, expected = [], [], [], []
    for a_t, b_t in tiles:
        s = tile_streams(CFG, a_t, b_t)
        a_beats.append(s["a"])
        b_data.append(s["b_data"])
        b_last.append(s["b_last"])
        expected.append(golden(a_t, b_t))
    a_all = np.concatenate(a_beats)
    bd, bl = np.concatenate(b_data), np.concatenate(b_last)
    src_a = bench.source("a", pack(STREAMS["a"]["layout"], a_all, len(a_all)), idle=idle_a)
    src_b = bench.source("b", pack(STREAMS["b"]["layout"], {"data": bd, "last": bl}, len(bd)), idle=idle_b)
    snk = bench.sink("o", CFG.rows * len(tiles), stall=stall_o)
    return src_a, src_b, snk, expected


def check_rows(snk, expected, first_row=0):
    got = unpack(STREAMS["o"]["layout"], snk.received[first_row:])
    rows = got["data"]
    assert len(rows) == CFG.rows * len(expected), f"{len(rows)} rows received"
    for t, exp in enumerate(expected):
        block = rows[t * CFG.rows:(t + 1) * CFG.rows]
        if not np.array_equal(block.astype(object), np.asarray(exp, dtype=object)):
            raise AssertionError(f"tile {t}: RTL\n{block}\n!= golden\n{exp}")
        lasts = got["last"][t * CFG.rows:(t + 1) * CFG.rows]
        assert list(lasts) == [0] * (CFG.rows - 1) + [1], f"tile {t}: last flags {list(lasts)}"


def budget(tiles):
    beats = sum(CFG.a_beats(b.shape[0]) + b.shape[0] for _, b in tiles)
    return 20 * (beats + CFG.rows * len(tiles)) + 50 * (CFG.rows + CFG.cols) + 200


async def run_and_check(dut, tiles, **patterns):
    bench = StreamBench(dut)
    bench.source("a", [])
    bench.source("b", [])
    bench.sink("o", 0)
    await bench.reset()
    _, _, snk, expected = queue_tiles(bench, tiles, **patterns)
    await bench.run(budget(tiles), extra_cycles=2 * (CFG.rows + CFG.cols) + 10)
    check_rows(snk, expected)
    return bench


def k_choices(rng, n):
    top = max(2, 3 * max(CFG.rows, CFG.cols))
    ks = [1, CFG.rows, CFG.rows + 1, max(1, CFG.cols - 1)] + [int(rng.integers(1, top + 1)) for _ in range(n)]
    return [min(k, CFG.max_k) for k in ks]


@cocotb.test()
async def random_tiles_no_stalls(dut):
    """Random values and K (K=1 included), tiles back to back, no stalls."""
    rng = np.random.default_rng(SEED)
    await run_and_check(dut, [random_tile(rng, k) for k in k_choices(rng, 8)])


@cocotb.test()
async def random_tiles_random_stalls(dut):
    """Random idle cycles on a and b and random backpressure on o, independently."""
    rng = np.random.default_rng(SEED + 1)
    for trial, p in enumerate((0.2, 0.5)):
        tiles = [random_tile(rng, k) for k in k_choices(rng, 6)]
        await run_and_check(dut, tiles, idle_a=random_pattern(SEED + 10 * trial, p),
                            idle_b=random_pattern(SEED + 10 * trial + 1, p),
                            stall_o=random_pattern(SEED + 10 * trial + 2, p))


@cocotb.test()
async def short_tiles_heavy_backpressure(dut):
    """K=1 and K=2 tiles (shorter than the drain) while the output is stalled 70% of the time."""
    rng = np.random.default_rng(SEED + 2)
    tiles = [random_tile(rng, int(rng.integers(1, 3))) for _ in range(10)]
    await run_and_check(dut, tiles, stall_o=random_pattern(SEED + 3, 0.7),
                        idle_a=random_pattern(SEED + 4, 0.1))


@cocotb.test()
async def corner_values(dut):
    """Extremes of the operand ranges: all-min x all-min, max x min, and so on."""
    a_lo, a_hi, b_lo, b_hi = CFG.a_range.lo, CFG.a_range.hi, CFG.b_range.lo, CFG.b_range.hi
    k = min(CFG.max_k, 2 * max(CFG.rows, CFG.cols) + 1)
    tiles = [const_tile(x, y, kk) for x in (a_lo, a_hi) for y in (b_lo, b_hi) for kk in (1, k)]
    # alternating signs along K
    a_alt = np.tile(np.array([a_lo, a_hi]), (CFG.rows, k))[:, :k]
    b_alt = np.tile(np.array([[b_hi], [b_lo]]), (k, CFG.cols))[:k]
    tiles.append((a_alt, b_alt))
    await run_and_check(dut, tiles, stall_o=random_pattern(SEED + 5, 0.3))


@cocotb.test(skip=CFG.max_k > 4096 and not SLOW)
async def k_at_overflow_limit(dut):
    """K = max_k with the operands of the largest |product| of each sign (no overflow), then
    K = max_k + 1 (wrap-around, compared with the golden model's modular arithmetic).
    Runs in the default suite for narrow accumulators; for 32-bit ones (max_k > 4096) only
    with CONVGEN_SLOW=1 (pytest -m slow)."""
    pr = CFG.product_range
    worst = []
    for target in (pr.hi, pr.lo):
        for x in (CFG.a_range.lo, CFG.a_range.hi):
            for y in (CFG.b_range.lo, CFG.b_range.hi):
                if x * y == target and target != 0:
                    worst.append((x, y))
                    break
            else:
                continue
            break
    tiles = [const_tile(x, y, CFG.max_k) for x, y in worst]
    tiles += [const_tile(x, y, CFG.max_k + 1) for x, y in worst]
    for a_t, b_t in tiles[:len(worst)]:
        exact = gemm(a_t, b_t, a_width=CFG.a_width, b_width=CFG.b_width,
                     a_signed=CFG.a_signed, b_signed=CFG.b_signed)
        assert np.all(exact == golden(a_t, b_t)), "max_k must not wrap"
    # max_k is bound by one sign of the product; at max_k + 1 that extreme must wrap
    wrapped = [np.any(gemm(a_t, b_t, a_width=CFG.a_width, b_width=CFG.b_width,
                           a_signed=CFG.a_signed, b_signed=CFG.b_signed) != golden(a_t, b_t))
               for a_t, b_t in tiles[len(worst):]]
    assert any(wrapped), "max_k + 1 must be able to wrap"
    await run_and_check(dut, tiles)


@cocotb.test()
async def reset_mid_tile(dut):
    """Abort tiles part-way through with a reset (at several points), then a clean tile
    must come out exactly, with nothing left over from the aborted ones."""
    rng = np.random.default_rng(SEED + 6)
    bench = StreamBench(dut)
    bench.source("a", [])
    bench.source("b", [])
    snk = bench.sink("o", 0)
    await bench.reset()
    k = 2 * max(CFG.rows, CFG.cols) + 1
    for stop in sorted({1, 2, CFG.rows, CFG.a_beats(k) // 2, CFG.a_beats(k) + CFG.rows}):
        _, _, snk, _ = queue_tiles(bench, [random_tile(rng, k), random_tile(rng, k)])
        await bench.run(budget([random_tile(rng, k)] * 2), stop_after=stop)
        await bench.reset(cycles=int(rng.integers(1, 4)))
        snk.received.clear()
        snk.expected = 0
        tiles = [random_tile(rng, int(rng.integers(1, k + 1))) for _ in range(2)]
        _, _, snk, expected = queue_tiles(bench, tiles, stall_o=random_pattern(SEED + stop, 0.3))
        await bench.run(budget(tiles), extra_cycles=2 * (CFG.rows + CFG.cols) + 10)
        check_rows(snk, expected)
        snk.received.clear()
        snk.expected = 0


@cocotb.test()
async def cycle_counts_match_formula(dut):
    """No stalls: a single tile into an idle array takes exactly tile_cycles(K) cycles, and
    tiles streamed back to back come out tile_period(K) cycles apart in steady state."""
    rng = np.random.default_rng(SEED + 7)
    for k in sorted({1, 2, CFG.rows, CFG.cols, 2 * max(CFG.rows, CFG.cols) + 3}):
        k = min(k, CFG.max_k)
        bench = await run_and_check(dut, [random_tile(rng, k)])
        src_a, src_b = bench._sources["a"], bench._sources["b"]
        snk = bench._sinks["o"]
        first = min(src_a.transfer_cycles[0], src_b.transfer_cycles[0])
        measured = snk.transfer_cycles[-1] - first + 1
        assert measured == CFG.tile_cycles(k), \
            f"K={k}: single tile took {measured} cycles, formula says {CFG.tile_cycles(k)}"

        n_tiles = 6
        bench = await run_and_check(dut, [random_tile(rng, k) for _ in range(n_tiles)])
        ends = bench._sinks["o"].transfer_cycles[CFG.rows - 1::CFG.rows]
        periods = np.diff(ends)[2:]  # skip the fill
        assert all(p == CFG.tile_period(k) for p in periods), \
            f"K={k}: tile periods {list(periods)}, formula says {CFG.tile_period(k)}"
        dut._log.info("K=%d: tile_cycles=%d period=%d (%.0f%% of peak MACs)", k, measured,
                      CFG.tile_period(k), 100 * k / CFG.tile_period(k))
