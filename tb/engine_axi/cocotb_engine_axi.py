"""cocotb regression of the ConvEngine AXI wrapper (hdl/engine_axi.py) with cocotbext-axi.

The configuration comes from the manifest named by ``CONVGEN_MANIFEST`` (set by
tb/engine_axi/test_engine_axi_cocotb.py), the seed from ``CONVGEN_SEED``.

The host side is the standalone driver (sim/axi_driver.py) exactly as a board runs it; its
register accesses go through cocotbext-axi's ``AxiLiteMaster`` on ``s_axi_control`` and its
memory through an ``AxiRam`` on ``m_axi_gmem`` whose five channels pause at random (the
pause generators of cocotbext-axi: AR/AW/W ready and R/B valid drop out), so reads and
writes meet backpressure and a varying latency.

What it checks, against computations that never use the RTL:

- every output of every layer equals ``golden.engine.reference_conv`` (the conv oracle),
  unused lanes 0 (``sim.engine.layer_mismatch``), layers back to back on one reset;
- the write channel writes exactly ``y_words`` words per layer, all inside the layer's y region
  and none outside it; reads stay inside the layer's x, w and p images;
- ``interrupt`` rises when a layer ends (GIE and IER set) and falls after the driver writes the
  ISR bits back; CTRL reads ap_idle and no ap_done afterwards (clear on read);
- a bad descriptor (the engine's checks) and a misaligned base address each end with that
  STATUS error bit, ``ISR.error``, no AXI read and no AXI write, and the y memory unchanged;
  the next layer is exact;
- a start written while a layer runs is held and taken when it ends (the next layer's registers
  written meanwhile), both outputs exact;
- an AXI SLVERR on a read or on a write sets ``read_error``/``write_error`` and ``ISR.error``;
- ``cycle_counts``: without pauses, the engine's cycle counter is at least the bare engine's
  ``EngineConfig.layer_cycles`` and TOTAL_CYCLES exceeds it; the figures go to ``cycles.json``
  in the run directory.
"""

from __future__ import annotations

import itertools
import logging
import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from convgen.core.layer import ConvLayer
from convgen.hdl.engine import EngineConfig
from convgen.hdl.engine_axi import AxiConfig, regmap_dict
from convgen.sim.axi_driver import DriverError, EngineAxiDriver, LayerOutcome, pack_words, unpack_words
from convgen.sim.engine import LayerResult, layer_mismatch, random_jobs
from convgen.sim.engine_axi import axi_layer, layer_addresses

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
_P = dict(MANIFEST["parameters"])
ENGINE = EngineConfig(**_P.pop("engine"))
CFG = AxiConfig(ENGINE, **{k[4:]: v for k, v in _P.items()})
REGMAP = regmap_dict(CFG)
SEED = int(os.environ.get("CONVGEN_SEED", "1"))
MEM_BYTES = 1 << 20
READS = ("x", "w", "p")     # ARID order

#: name -> (layer, int8 activations?); small, for per-cycle Python
LAYERS = {
    "1x1": (ConvLayer.square(3, 3, 4, 1, c_out=4), True),
    "3x3_s2_pad1_uint8": (ConvLayer.square(5, 5, 3, 3, 2, 1, c_out=5), False),
    "3x3_pad1": (ConvLayer.square(4, 4, 4, 3, 1, 1, c_out=4), True),
}


class TB:
    """Clock, reset, the AXI-Lite master, the paused AXI RAM, the driver and a bus monitor."""

    def __init__(self, dut, *, pauses: bool, seed: int):
        self.dut = dut
        self.rng = random.Random(seed)
        cocotb.start_soon(Clock(dut.ap_clk, 10, unit="ns").start())
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_control"), dut.ap_clk, dut.ap_rst_n,
                                  reset_active_level=False)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_gmem"), dut.ap_clk, dut.ap_rst_n,
                          reset_active_level=False, size=MEM_BYTES)
        for log in (self.lite.write_if.log, self.ram.write_if.log):
            log.setLevel(logging.WARNING)    # one INFO line per access otherwise
        if pauses:
            chans = [self.ram.write_if.aw_channel, self.ram.write_if.w_channel, self.ram.write_if.b_channel,
                     self.ram.read_if.ar_channel, self.ram.read_if.r_channel]
            for ch in chans:
                pattern = [self.rng.random() < 0.35 for _ in range(self.rng.randrange(50, 150))]
                ch.set_pause_generator(itertools.cycle(pattern))
        self.drv = EngineAxiDriver(REGMAP, read32=self.lite.read_dword, write32=self.lite.write_dword,
                                   mem_write=self.ram.write, mem_read=self.ram.read,
                                   wait=lambda: ClockCycles(dut.ap_clk, 3), max_polls=4000)
        self.writes = []        # AW addresses
        self.reads = []         # AR addresses
        self.irq_seen = False
        self.gathered = 0       # read bursts of more than one word
        self.read_latency = []  # cycles from each AR handshake to its first R beat

    async def start(self):
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, 5)
        self.dut.ap_rst_n.value = 1
        await ClockCycles(self.dut.ap_clk, 2)
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        d = self.dut
        cycle = 0
        pending = {}            # ARID -> AR handshake cycles, in order
        in_burst = set()
        while True:
            await RisingEdge(d.ap_clk)
            await ReadOnly()
            cycle += 1
            if int(d.m_axi_gmem_awvalid.value) and int(d.m_axi_gmem_awready.value):
                self.writes.append((int(d.m_axi_gmem_awaddr.value), int(d.m_axi_gmem_awlen.value)))
            if int(d.m_axi_gmem_arvalid.value) and int(d.m_axi_gmem_arready.value):
                rid = int(d.m_axi_gmem_arid.value)
                self.reads.append((int(d.m_axi_gmem_araddr.value), int(d.m_axi_gmem_arlen.value), rid))
                pending.setdefault(rid, []).append(cycle)
            if int(d.m_axi_gmem_rvalid.value) and int(d.m_axi_gmem_rready.value):
                rid = int(d.m_axi_gmem_rid.value)
                if rid not in in_burst and pending.get(rid):
                    self.read_latency.append(cycle - pending[rid].pop(0))    # AR to first R beat
                    in_burst.add(rid)
                if int(d.m_axi_gmem_rlast.value):
                    in_burst.discard(rid)
            if int(d.interrupt.value):
                self.irq_seen = True


def _internal(dut) -> str:
    """The wrapper's and the engine's states, for a failure message."""
    out = []
    for path in ("state", "engine.state", "gmem.reads_in_flight", "gmem.b_outstanding", "gmem.ar_valid",
                 "gmem.aw_valid", "gmem.w_busy"):
        h = dut
        try:
            for part in path.split("."):
                h = getattr(h, part)
            out.append(f"{path}={h.value}")
        except AttributeError:
            out.append(f"{path}=?")
    return ", ".join(out)


async def _run(tb, layer, **kw):
    try:
        return await tb.drv.arun_layer(layer, **kw)
    except DriverError as e:
        raise AssertionError(f"{e}; {_internal(tb.dut)}") from None


def _jobs(names, seed):
    return random_jobs(ENGINE, LAYERS, seed, names)


def _check_regions(tb, job, layer, n_reads, n_writes):
    """Writes: exactly y_words, inside y; reads inside x/w/p (the bus address of a narrow word is
    aligned down to the bus width)."""
    bb = CFG.data_width // 8
    writes, reads = tb.writes[n_writes:], tb.reads[n_reads:]
    ys, yn, sy = layer.addr["y"], job.words["y"] * CFG.stride("y"), CFG.stride("y")
    # a narrow word's beat may reach past the region (its strobes do not: the caller checks the
    # bytes after y), a burst of whole words may not
    end = ys + yn if sy >= bb else -(-(ys + yn) // bb) * bb
    bad_w = [a for a, ln in writes if not (ys // bb * bb <= a and a + (ln + 1) * bb <= end)]
    assert not bad_w, f"writes outside the y region [{ys:#x}, {ys + yn:#x}): {[hex(a) for a in bad_w[:4]]}"
    assert all(a % 4096 + (ln + 1) * bb <= 4096 for a, ln in writes), "a write burst crosses 4 KiB"
    if sy >= bb:
        # every y word written exactly once, by bursts of whole words
        covered = [w for a, ln in writes for w in range((a - ys) // sy, (a - ys + (ln + 1) * bb) // sy)]
        assert sorted(covered) == list(range(job.words["y"])), \
            f"y words written {len(covered)} times in all, not each of the {job.words['y']} once"
    else:
        assert len(writes) == job.words["y"], f"{len(writes)} AXI writes, {job.words['y']} y words expected"
    for a, ln, rid in reads:
        assert ln + 1 <= max(CFG.max_burst, REGMAP["beats"][READS[rid]]), f"a burst of {ln + 1} beats"
        assert a % 4096 + (ln + 1) * bb <= 4096, f"a burst at {a:#x} of {ln + 1} beats crosses 4 KiB"
        ok = any(layer.addr[t] // bb * bb <= a and a + (ln + 1) * bb <= layer.addr[t] + max(
            bb, job.words[t] * CFG.stride(t)) + bb for t in ("x", "w", "p"))
        assert ok, f"read at {a:#x} (len {ln}) outside the layer's x, w and p images"


def _result(job, out) -> LayerResult:
    cols = ENGINE.cols
    yb = np.array([[(w >> (8 * c)) & 0xFF for c in range(cols)] for w in out.y], dtype=np.int64).reshape(-1, cols)
    return LayerResult("OK" if out.ok else "ERROR", out.engine_cycles, job.words["y"], yb)


@cocotb.test()
async def layers_back_to_back(dut):
    """Three layers (1x1; 3x3 stride 2 pad 1 uint8 with two channel tiles; 3x3 pad 1) on one
    reset under random AXI pauses, with interrupts; outputs against the conv oracle."""
    dut._log.info(f"CONVGEN_SEED={SEED}; AXI data width {CFG.data_width}, strides {REGMAP['strides']}, "
                  f"beats {REGMAP['beats']}")
    tb = TB(dut, pauses=True, seed=SEED)
    await tb.start()
    jobs = _jobs(list(LAYERS), SEED)
    at = 0x1000
    for name, job in zip(LAYERS, jobs):
        addr, at = layer_addresses(CFG, job, at, gap=64)
        layer = axi_layer(CFG, job, addr)
        yn = job.words["y"] * CFG.stride("y")
        tb.ram.write(addr["y"], b"\x5a" * (yn + 64))
        nr, nw = len(tb.reads), len(tb.writes)
        tb.irq_seen = False
        out = await _run(tb, layer, interrupts=True)
        assert out.ok, f"layer {name}: STATUS errors {out.errors} (0x{out.status:x})"
        bad = layer_mismatch(job, _result(job, out))
        assert bad is None, f"layer {name}: outputs differ from the conv oracle: {bad} (CONVGEN_SEED={SEED})"
        _check_regions(tb, job, layer, nr, nw)
        assert tb.ram.read(addr["y"] + yn, 64) == b"\x5a" * 64, f"layer {name}: bytes after y were written"
        assert tb.irq_seen, f"layer {name}: interrupt never rose"
        await ClockCycles(dut.ap_clk, 2)
        await ReadOnly()
        assert int(dut.interrupt.value) == 0, f"layer {name}: interrupt still high after the ISR write"
        await RisingEdge(dut.ap_clk)
        ctrl = await tb.lite.read_dword(REGMAP["registers"]["ctrl"]["offset"])
        assert ctrl & 0b110 == 0b100, f"CTRL 0x{ctrl:x} after the layer: want ap_idle, no ap_done"
        gathered = sum(ln + 1 > REGMAP["beats"][READS[i]] for _, ln, i in tb.reads[nr:])
        dut._log.info(f"layer {name}: OK, engine {out.engine_cycles} cycles, total {out.total_cycles}, "
                      f"{len(tb.reads) - nr} AXI reads ({gathered} of several words), {len(tb.writes) - nw} writes "
                      f"for {job.words['y']} words")
        tb.gathered += gathered
    if CFG.max_burst > max(REGMAP["beats"].values()):
        assert tb.gathered > 0, "no read burst gathered several words"


@cocotb.test()
async def bad_descriptor_and_alignment(dut):
    """A descriptor the engine rejects and a misaligned base address: the error bit, ISR.error,
    no AXI read or write, y unchanged; then a good layer is exact."""
    tb = TB(dut, pauses=True, seed=SEED + 1)
    await tb.start()
    job, good = _jobs(["3x3_pad1", "1x1"], SEED + 1)
    addr, at = layer_addresses(CFG, job, 0x20000)
    ylen = job.words["y"] * CFG.stride("y")
    isr_off = REGMAP["registers"]["isr"]["offset"]
    cases = []
    bad_desc = axi_layer(CFG, job, addr)
    bad_desc.desc["m_total"] += 1                      # not out_h*out_w: CHECK2 rejects it
    cases.append(("desc_error", bad_desc))
    if CFG.stride("x") > 1:
        mis = axi_layer(CFG, job, dict(addr, x=addr["x"] + 1))
        cases.append(("align_error", mis))
    mis_y = axi_layer(CFG, job, dict(addr, y=addr["y"] + CFG.stride("y") // 2 if CFG.stride("y") > 1 else addr["y"]))
    if CFG.stride("y") > 1:
        cases.append(("align_error", mis_y))
    for want, layer in cases:
        tb.ram.write(addr["y"], b"\xa5" * (ylen + CFG.stride("y")))
        nr, nw = len(tb.reads), len(tb.writes)
        # see the ISR before the driver clears it
        out = await _run(tb, layer, interrupts=True)
        assert out.errors == [want], f"STATUS errors {out.errors} (0x{out.status:x}), want [{want!r}]"
        assert out.status & 1, "STATUS.error not set"
        assert len(tb.writes) == nw, f"{len(tb.writes) - nw} AXI writes after a {want}"
        assert len(tb.reads) == nr, f"{len(tb.reads) - nr} AXI reads after a {want}"
        assert tb.ram.read(addr["y"], ylen + CFG.stride("y")) == b"\xa5" * (ylen + CFG.stride("y")), \
            f"y memory changed after a {want}"
        assert await tb.lite.read_dword(isr_off) == 0, "ISR not cleared by the driver"
        dut._log.info(f"{want}: STATUS 0x{out.status:x}, no AXI traffic, total {out.total_cycles} cycles")
    # ISR.error: run one more bad layer without the driver's clearing, read ISR directly
    tb.irq_seen = False
    gen = tb.drv._layer(bad_desc, load=False, interrupts=True)
    res = None
    try:
        while True:
            op = gen.send(res)
            if op[0] == "read32" and op[1] == isr_off:
                res = await tb.lite.read_dword(isr_off)
                assert res == 0b11, f"ISR 0x{res:x} after a bad descriptor: want done and error"
                continue
            r = tb.drv.io[op[0]](*op[1:])
            res = await r if hasattr(r, "__await__") else r
    except StopIteration:
        pass
    assert tb.irq_seen, "interrupt never rose for the error"
    gaddr, _ = layer_addresses(CFG, good, at)
    out = await _run(tb, axi_layer(CFG, good, gaddr))
    bad = layer_mismatch(good, _result(good, out))
    assert out.ok and bad is None, f"the good layer after the errors: {out.errors} {bad}; outputs differ " \
                                   f"from the conv oracle"


@cocotb.test()
async def cycle_counts(dut):
    """No pauses: the engine's counter against the bare engine's formula; figures to cycles.json."""
    tb = TB(dut, pauses=False, seed=SEED + 2)
    await tb.start()
    jobs = _jobs(list(LAYERS), SEED + 2)
    at = 0x40000
    rows = []
    for name, job in zip(LAYERS, jobs):
        addr, at = layer_addresses(CFG, job, at)
        nr = len(tb.reads)
        out = await _run(tb, axi_layer(CFG, job, addr))
        bad = layer_mismatch(job, _result(job, out))
        assert out.ok and bad is None, f"layer {name}: {out.errors} {bad}"
        L = job.plan.layer
        formula = ENGINE.layer_cycles(kh=L.kh, kw=L.kw, c_slice=job.plan.c_slice, ntiles=job.plan.ntiles,
                                      pixel_tiles=job.plan.pixel_tiles, latency=1)
        assert out.engine_cycles >= formula, f"{name}: {out.engine_cycles} cycles, below the formula {formula}"
        assert out.total_cycles > out.engine_cycles
        rows.append({"layer": name, "engine_cycles": out.engine_cycles, "total_cycles": out.total_cycles,
                     "formula_latency1": formula, "ar_transfers": len(tb.reads) - nr})
        dut._log.info(f"{name}: engine {out.engine_cycles}, total {out.total_cycles}, formula (latency 1) {formula}")
    lat = tb.read_latency
    dut._log.info(f"AxiRam read latency (AR handshake to first R beat): min {min(lat)}, mean "
                  f"{sum(lat) / len(lat):.2f}, max {max(lat)} cycles over {len(lat)} reads")
    with open("cycles.json", "w") as f:
        json.dump({"data_width": CFG.data_width, "layers": rows,
                   "read_latency": {"min": min(lat), "mean": sum(lat) / len(lat), "max": max(lat)}}, f)


@cocotb.test()
async def axi_error_responses(dut):
    """A read answered SLVERR (AxiRam's read of the weights raises) sets STATUS.read_error, a write
    answered SLVERR sets write_error; the layer still ends (the engine has no abort), ISR.error
    is set, and the next layer is exact."""
    tb = TB(dut, pauses=False, seed=SEED + 3)
    await tb.start()
    jobs = _jobs(["1x1", "1x1", "1x1"], SEED + 3)
    at = 0x60000
    layers = []
    for job in jobs:
        addr, at = layer_addresses(CFG, job, at)
        layers.append(axi_layer(CFG, job, addr))
    isr_off = REGMAP["registers"]["isr"]["offset"]
    for want, side, region in (("read_error", tb.ram.read_if, "w"), ("write_error", tb.ram.write_if, "y")):
        layer = layers.pop(0)
        lo = layer.addr[region]
        plain = side._read if side is tb.ram.read_if else side._write

        async def poisoned(address, arg, plain=plain, lo=lo):
            if lo <= address < lo + 4096:
                raise ValueError("injected slave error")
            return await plain(address, arg)

        if side is tb.ram.read_if:
            side._read = poisoned
        else:
            side._write = poisoned
        gen = tb.drv._layer(layer, interrupts=True)
        res, isr = None, None
        try:
            while True:
                op = gen.send(res)
                r = tb.drv.io[op[0]](*op[1:])
                res = await r if hasattr(r, "__await__") else r
                if op[0] == "read32" and op[1] == isr_off:
                    isr = res
        except StopIteration as stop:
            out = stop.value
        if side is tb.ram.read_if:
            side._read = plain
        else:
            side._write = plain
        assert out.errors == [want], f"STATUS errors {out.errors} (0x{out.status:x}), want [{want!r}]"
        assert isr == 0b11, f"ISR 0x{isr:x} after an AXI {want}: want done and error"
        dut._log.info(f"{want}: STATUS 0x{out.status:x}, engine {out.engine_cycles} cycles")
    job = jobs[2]
    out = await _run(tb, layers.pop(0))
    bad = layer_mismatch(job, _result(job, out))
    assert out.ok and bad is None, f"the layer after the AXI errors: {out.errors} {bad}"


@cocotb.test()
async def start_queued_while_busy(dut):
    """HLS behaviour: the next layer's registers are written while a layer runs and its
    ap_start is held until the running layer ends; then it starts by itself. Both outputs
    against the conv oracle (the running layer kept its descriptor and base addresses)."""
    tb = TB(dut, pauses=True, seed=SEED + 4)
    await tb.start()
    regs = REGMAP["registers"]
    bits = REGMAP["ctrl_bits"]
    job_a, job_b = _jobs(["3x3_pad1", "1x1"], SEED + 4)
    at = 0x80000
    layers = []
    for job in (job_a, job_b):
        addr, at = layer_addresses(CFG, job, at)
        layer = axi_layer(CFG, job, addr)
        for t in ("x", "w", "p"):
            tb.ram.write(addr[t], pack_words(layer.words[t], REGMAP["strides"][t]))
        layers.append(layer)

    async def program(layer):
        for name, r in regs.items():
            if r["kind"] == "desc":
                await tb.lite.write_dword(r["offset"], int(layer.desc[name]) & ((1 << r["width"]) - 1))
            elif r["kind"] == "addr":
                await tb.lite.write_dword(r["offset"], (layer.addr[r["tensor"]] >> (32 * r["part"])) & 0xFFFFFFFF)

    await program(layers[0])
    await tb.lite.write_dword(regs["ctrl"]["offset"], 1 << bits["ap_start"])
    await program(layers[1])                        # while layer A runs
    status = await tb.lite.read_dword(regs["status"]["offset"])
    assert status >> REGMAP["status_bits"]["busy"] & 1, "layer A ended before layer B was queued (test too slow)"
    await tb.lite.write_dword(regs["ctrl"]["offset"], 1 << bits["ap_start"])
    ctrl = await tb.lite.read_dword(regs["ctrl"]["offset"])
    assert ctrl >> bits["ap_start"] & 1 and not ctrl >> bits["ap_idle"] & 1, \
        f"CTRL 0x{ctrl:x}: ap_start should wait while layer A runs"
    dones = 0
    for _ in range(4000):
        ctrl = await tb.lite.read_dword(regs["ctrl"]["offset"])
        dones += ctrl >> bits["ap_done"] & 1
        if dones == 2:
            break
        await ClockCycles(dut.ap_clk, 3)
    assert dones == 2, f"{dones} ap_done seen, two layers expected"
    status = await tb.lite.read_dword(regs["status"]["offset"])
    assert status == 0, f"STATUS 0x{status:x}"
    for name, job, layer in (("A", job_a, layers[0]), ("B", job_b, layers[1])):
        y = unpack_words(tb.ram.read(layer.addr["y"], job.words["y"] * REGMAP["strides"]["y"]),
                         REGMAP["strides"]["y"], REGMAP["word_bits"]["y"])
        out = LayerOutcome(0, [], 0, 0, 0, y)
        bad = layer_mismatch(job, _result(job, out))
        assert bad is None, f"layer {name}: outputs differ from the conv oracle: {bad}"
