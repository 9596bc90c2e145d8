"""cocotb regression for Im2colAddressGenerator. The configuration comes from the manifest
named by ``CONVGEN_MANIFEST``; the layers from the JSON list at ``CONVGEN_LAYERS`` (written by
tb/im2col/test_im2col.py); the seed from ``CONVGEN_SEED``.

Expected streams come from golden.im2col.address_stream (closed-form index arithmetic), and
the end-to-end check rebuilds the patch matrix by reading a random memory at the RTL's
addresses and compares it with golden.im2col.im2col (slicing of a padded image: no address
arithmetic at all). Indirection-mode layers are compared with the loop-built
golden.im2col.indirection_buffer.
"""

import os

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from convgen.golden.im2col import STREAM_FIELDS, address_stream, gather, im2col, indirection_buffer
from convgen.core.layer import ConvLayer
from convgen.sim.runs.im2col import (HW, R, cfg_beats, decode, fresh_bench, load_layers, raw_of,
                                     stream_layers)
from convgen.sim.streams import random_pattern
from convgen.tb.im2col.layers import invalid_layers

SEED = int(os.environ.get("CONVGEN_SEED", "1234"))
LAYERS = load_layers()


def check_layer(lay: ConvLayer, got: dict, rng, where: str):
    exp = address_stream(lay, R)
    for f in STREAM_FIELDS:
        if len(got[f]) != len(exp[f]) or not np.array_equal(got[f], exp[f]):
            bad = np.nonzero(got[f] != exp[f])[0] if len(got[f]) == len(exp[f]) else []
            i = int(bad[0]) if len(bad) else -1
            raise AssertionError(f"{where} {lay}: field {f} differs (len RTL {len(got[f])} golden {len(exp[f])}, "
                                 f"first index {i}: RTL {got[f][max(i, 0):i + 4]} golden {exp[f][max(i, 0):i + 4]})")
    # end to end: a memory model read at the RTL's addresses
    if lay.indirect:
        ptr, _pad = indirection_buffer(lay)
        assert np.array_equal(gather(None, got, lay, R), ptr), f"{where} {lay}: indirection buffer differs"
    else:
        x = rng.integers(-128, 128, size=(lay.h, lay.w, lay.c))
        zp = int(rng.integers(-128, 128))
        rebuilt = gather(x.ravel(), got, lay, R, pad_value=zp)
        assert np.array_equal(rebuilt, im2col(x, lay, pad_value=zp)), f"{where} {lay}: patch matrix differs"


def split(lays, ints):
    out, off = [], 0
    for lay in lays:
        n = lay.elements(R)
        out.append(decode(ints[off:off + n]))
        off += n
    assert off == len(ints)
    return out


@cocotb.test()
async def layers_back_to_back(dut):
    """Every layer programmed back to back without reset, no stalls: each stream equals the
    golden one; the memory model rebuilds NumPy's im2col; exactly one element per cycle with
    no bubble inside a layer, and setup_cycles between a cfg transfer and the first element."""
    rng = np.random.default_rng(SEED)
    bench = await fresh_bench(dut)
    src, snk = await stream_layers(bench, LAYERS)
    for i, (lay, got) in enumerate(zip(LAYERS, split(LAYERS, snk.received))):
        check_layer(lay, got, rng, f"layer {i}")
    off = 0
    for i, lay in enumerate(LAYERS):
        n = lay.elements(R)
        cyc = snk.transfer_cycles[off:off + n]
        assert cyc[-1] - cyc[0] == n - 1, f"layer {i}: {n} elements took {cyc[-1] - cyc[0] + 1} cycles"
        gap = cyc[0] - src.transfer_cycles[i]
        assert gap == HW.setup_cycles, f"layer {i}: first element {gap} cycles after cfg, expected {HW.setup_cycles}"
        off += n
    assert dut.error.value == 0


@cocotb.test()
async def layers_random_stalls(dut):
    """Random idle on cfg and random backpressure on o (20% and 50%, bursts)."""
    rng = np.random.default_rng(SEED + 1)
    lays = LAYERS[::2] or LAYERS
    for trial, p in enumerate((0.2, 0.5)):
        bench = await fresh_bench(dut)
        _, snk = await stream_layers(bench, lays, idle=random_pattern(SEED + 10 * trial, p),
                                     stall=random_pattern(SEED + 10 * trial + 1, p))
        for i, (lay, got) in enumerate(zip(lays, split(lays, snk.received))):
            check_layer(lay, got, rng, f"stall p={p} layer {i}")


@cocotb.test()
async def invalid_configurations(dut):
    """Each invalid cfg raises error and emits nothing; the next valid layer clears error and
    streams correctly (no reset in between)."""
    rng = np.random.default_rng(SEED + 2)
    bench = await fresh_bench(dut)
    good = min(LAYERS, key=lambda x: x.elements(R))
    for name, raw in invalid_layers(HW):
        bench.source("cfg", cfg_beats([raw]))
        await bench.run(HW.setup_cycles + 10, extra_cycles=HW.setup_cycles + 5)  # a surplus o transfer fails
        await ReadOnly()
        assert dut.error.value == 1, f"{name}: error flag not raised for {raw}"
        assert dut.busy.value == 0, f"{name}: still busy"
        await RisingEdge(dut.clk)
        bench.cycle += 1
        snk = bench.sink("o", good.elements(R))
        bench.source("cfg", cfg_beats([raw_of(good)]))
        before = len(snk.received)
        await bench.run(4 * good.elements(R) + 100, extra_cycles=HW.setup_cycles + 5)
        await ReadOnly()
        assert dut.error.value == 0, f"{name}: error not cleared by a valid layer"
        await RisingEdge(dut.clk)
        bench.cycle += 1
        check_layer(good, decode(snk.received[before:]), rng, f"after {name}")


@cocotb.test()
async def reset_mid_layer(dut):
    """Reset at several points (during setup, early and late in a layer), then a clean layer
    comes out exactly with nothing left over."""
    rng = np.random.default_rng(SEED + 3)
    bench = await fresh_bench(dut)
    big = max(LAYERS, key=lambda x: x.elements(R))
    small = LAYERS[len(LAYERS) // 2]
    n = big.elements(R)
    for stop in sorted({1, HW.setup_cycles // 2, HW.setup_cycles + 1, HW.setup_cycles + n // 2,
                        HW.setup_cycles + n - 2}):
        snk = bench.sink("o", n)
        bench.source("cfg", cfg_beats([raw_of(big)]))
        await bench.run(10 * n + 100, stop_after=stop)
        await bench.reset(cycles=int(rng.integers(1, 4)))
        snk.received.clear()
        snk.expected = 0
        _, snk = await stream_layers(bench, [small], stall=random_pattern(SEED + stop, 0.3))
        check_layer(small, decode(snk.received), rng, f"after reset at {stop}")
        snk.received.clear()
        snk.expected = 0
