"""cocotb regression of the hdl/lib stream pieces (DUT: tb/lib/harness.py, manifest at
``CONVGEN_MANIFEST``). One test per piece; each drives only that piece's streams.

Expected values come from Python models written here, independent of the RTL: the queues and
stages pass beats through unchanged and in order, ``stepc``/``stepr`` output ``3*x``,
``reduce`` outputs ``sum(3*x + 1) mod 2**12`` and the beat count per frame. Every test:

- checks the exact latency and one beat per cycle with no stalls;
- streams random payloads with random idle cycles and random backpressure (bursts), at several
  rates, and compares every beat in order; the StreamBench catches surplus (duplicated) beats,
  a short or reordered output fails the comparison;
- checks the output protocol every cycle: once ``valid`` is high without ``ready``, ``valid``
  stays high and the payload holds;
- resets in the middle of a stalled stream and then runs clean.

``ready_paths`` checks which pieces have a combinational path from ``o.ready`` to ``i.ready``
(flipping ``o.ready`` inside a cycle), as their docstrings state.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from convgen.sim.packing import pack, unpack
from convgen.sim.streams import StreamBench, StreamError, never, random_pattern
from convgen.tb.lib.harness import REDUCE_STAGES, STEP_STAGES

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
STREAMS = MANIFEST["streams"]
SEED = int(os.environ.get("CONVGEN_SEED", "2024"))
PIECES = ["queue", "queue_s", "stage", "skid", "chain", "stepc", "stepr", "reduce"]
# cycles from an input transfer to the output transfer of the same beat (no stalls)
LATENCY = {"queue": 2, "queue_s": 2, "stage": 1, "skid": 1, "chain": 4,
           "stepc": STEP_STAGES + 2, "stepr": STEP_STAGES + 2, "reduce": REDUCE_STAGES + 1}
# (idle probability of the source, stall probability of the sink)
RATES = [(0.3, 0.3), (0.0, 0.8), (0.7, 0.0), (0.4, 0.9)]


def _width(name):
    return STREAMS[name]["layout"]["width"]


# ---- Python models ------------------------------------------------------------------------
def make_case(piece, rng, n):
    """(input payloads as ints, expected output payloads as ints, expected output beats)."""
    if piece in ("stepc", "stepr"):
        x = [rng.randint(-128, 127) for _ in range(n)]
        x[:2] = [-128, 127]
        return (pack(STREAMS[f"{piece}_i"]["layout"], x, n),
                pack(STREAMS[f"{piece}_o"]["layout"], [3 * v for v in x], n))
    if piece == "reduce":
        xs, lasts, sums, counts = [], [], [], []
        while len(xs) < n:
            k = rng.choice([1, 1, 2, 3, 5, 8, 40])
            frame = [rng.choice([-32, 31, rng.randint(-32, 31)]) for _ in range(k)]
            xs += frame
            lasts += [0] * (k - 1) + [1]
            s = sum(3 * v + 1 for v in frame) % (1 << 12)
            sums.append(s - (1 << 12) if s >= 1 << 11 else s)
            counts.append(k % 256)
        m = len(xs)
        return (pack(STREAMS["reduce_i"]["layout"], {"x": xs, "last": lasts}, m),
                pack(STREAMS["reduce_o"]["layout"], {"sum": sums, "beats": counts}, len(sums)))
    w = _width(f"{piece}_i")
    data = [rng.getrandbits(w) for _ in range(n)]
    data[:2] = [0, (1 << w) - 1]
    return data, list(data)


# ---- protocol monitor ---------------------------------------------------------------------
def _bit(sig) -> int:
    """A 1-bit signal's value; X/Z (before the first reset) read as 0."""
    try:
        return int(sig.value)
    except ValueError:
        return 0


class OutputMonitor:
    """Every cycle, in ReadOnly: a stalled output (valid and not ready) keeps valid and its
    payload in the next cycle (amaranth.lib.stream rules)."""

    def __init__(self, dut, name):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name = name
        self.errors = []
        self.enabled = True
        self._task = cocotb.start_soon(self._run(dut.clk))

    async def _run(self, clk):
        held = None
        while True:
            await RisingEdge(clk)
            await ReadOnly()
            if not self.enabled:
                held = None
                continue
            valid = _bit(self.valid)
            if held is not None:
                if not valid:
                    self.errors.append(f"{self.name}: valid dropped while stalled")
                elif self.payload.value.to_unsigned() != held:
                    self.errors.append(f"{self.name}: payload changed while stalled")
            ready = _bit(self.ready)
            held = self.payload.value.to_unsigned() if valid and not ready else None

    def check(self):
        assert not self.errors, f"{len(self.errors)} protocol errors, first: {self.errors[0]}"


async def new_bench(dut, piece):
    """A StreamBench driving only ``piece``'s streams (the fewer streams, the faster each
    cycle); the other pieces stay idle."""
    bench = StreamBench(dut)
    for p in PIECES:
        if p != piece:
            getattr(dut, f"{p}_i__valid").value = 0
            getattr(dut, f"{p}_o__ready").value = 0
    if piece is not None:
        bench.source(f"{piece}_i", [])
        bench.sink(f"{piece}_o", 0)
    await bench.reset()
    return bench


def clear(bench, piece):
    snk = bench._sinks[f"{piece}_o"]
    src = bench._sources[f"{piece}_i"]
    snk.received.clear()
    snk.transfer_cycles.clear()
    snk.expected = 0
    src.transfer_cycles.clear()
    return src, snk


def check_beats(piece, got, exp):
    if got != exp:
        bad = next((k for k, (a, b) in enumerate(zip(got, exp)) if a != b), min(len(got), len(exp)))
        raise AssertionError(f"{piece}: {len(got)} beats out, {len(exp)} expected; first difference "
                             f"at beat {bad}: RTL {got[bad] if bad < len(got) else None} != "
                             f"model {exp[bad] if bad < len(exp) else None}")


async def piece_test(dut, piece, n=150):
    rng = random.Random(f"{SEED}-{piece}")
    bench = await new_bench(dut, piece)
    mon = OutputMonitor(dut, f"{piece}_o")

    # 1. exact latency and one beat per cycle, no stalls
    inp, exp = make_case(piece, rng, 40)
    src, snk = clear(bench, piece)
    bench.source(f"{piece}_i", inp, idle=never())
    bench.sink(f"{piece}_o", len(exp), stall=never())
    await bench.run(400, extra_cycles=8)
    check_beats(piece, snk.received, exp)
    cyc_in, cyc_out = src.transfer_cycles, snk.transfer_cycles
    assert cyc_in == list(range(cyc_in[0], cyc_in[0] + len(cyc_in))), f"{piece}: input not taken every cycle"
    if piece == "reduce":
        lasts = unpack(STREAMS["reduce_i"]["layout"], inp)["last"]
        ends = [c for c, last in zip(cyc_in, lasts) if last]
        lat = [o - e for o, e in zip(cyc_out, ends)]
    else:
        lat = [o - i for o, i in zip(cyc_out, cyc_in)]
    assert set(lat) == {LATENCY[piece]}, f"{piece}: latencies {sorted(set(lat))} != {LATENCY[piece]}"

    # 2. random idle and backpressure at several rates
    for k, (p_idle, p_stall) in enumerate(RATES):
        inp, exp = make_case(piece, rng, n)
        src, snk = clear(bench, piece)
        bench.source(f"{piece}_i", inp, idle=random_pattern(rng.getrandbits(32), p_idle))
        bench.sink(f"{piece}_o", len(exp), stall=random_pattern(rng.getrandbits(32), p_stall))
        await bench.run(60 * len(inp) + 200, extra_cycles=20)
        check_beats(f"{piece} (idle {p_idle}, stall {p_stall})", snk.received, exp)

    # 3. reset with beats in flight and the output stalled, then a clean run
    for stop in (3, 7, 20):
        inp, _ = make_case(piece, rng, 30)
        src, snk = clear(bench, piece)
        bench.source(f"{piece}_i", inp, idle=never())
        bench.sink(f"{piece}_o", 10 ** 6, stall=random_pattern(rng.getrandbits(32), 0.7))
        await bench.run(1000, stop_after=stop)
        mon.enabled = False
        await bench.reset()
        mon.enabled = True
        inp, exp = make_case(piece, rng, 60)
        src, snk = clear(bench, piece)
        bench.source(f"{piece}_i", inp, idle=random_pattern(rng.getrandbits(32), 0.3))
        bench.sink(f"{piece}_o", len(exp), stall=random_pattern(rng.getrandbits(32), 0.3))
        await bench.run(4000, extra_cycles=20)
        check_beats(f"{piece} after reset", snk.received, exp)
    mon.check()


@cocotb.test()
async def queue(dut):
    """Queue of a struct layout (depth 4) and of signed(7) (depth 3)."""
    await piece_test(dut, "queue")
    await piece_test(dut, "queue_s")


@cocotb.test()
async def pipeline_stage(dut):
    await piece_test(dut, "stage")


@cocotb.test()
async def skid_buffer(dut):
    await piece_test(dut, "skid")


@cocotb.test()
async def chain(dut):
    """Queue -> SkidBuffer -> PipelineStage joined by wiring.connect."""
    await piece_test(dut, "chain")


@cocotb.test()
async def step_queue_comb(dut):
    await piece_test(dut, "stepc")


@cocotb.test()
async def step_queue_registered(dut):
    await piece_test(dut, "stepr")


@cocotb.test()
async def reduce_pipeline(dut):
    await piece_test(dut, "reduce")


# pieces whose i.ready must not depend combinationally on o.ready, and those documented to
REGISTERED_READY = ["queue", "queue_s", "skid", "chain", "stepc", "stepr"]
COMBINATIONAL_READY = ["stage", "reduce"]


@cocotb.test()
async def ready_paths(dut):
    """Flip ``o.ready`` inside a cycle (random traffic, protocol-respecting source) and watch
    ``i.ready``: it must never follow for REGISTERED_READY pieces, and does follow at least
    once for COMBINATIONAL_READY ones (which shows the check can see a path)."""
    rng = random.Random(SEED)
    bench = await new_bench(dut, None)
    del bench
    for piece in REGISTERED_READY + COMBINATIONAL_READY:
        iv, ir, ip = (getattr(dut, f"{piece}_i__{s}") for s in ("valid", "ready", "payload"))
        orr = getattr(dut, f"{piece}_o__ready")
        w = _width(f"{piece}_i")
        offering, followed = False, 0
        for _ in range(300):
            await RisingEdge(dut.clk)
            await Timer(1, unit="ns")
            if not offering:
                offering = rng.random() < 0.7
                iv.value = int(offering)
                if offering:
                    ip.value = rng.getrandbits(w)
            first = rng.random() < 0.5
            orr.value = int(first)
            await ReadOnly()
            a = int(ir.value)
            await Timer(1, unit="ns")
            orr.value = int(not first)
            await ReadOnly()
            b = int(ir.value)
            if a != b:
                followed += 1
                assert piece not in REGISTERED_READY, f"{piece}: i.ready follows o.ready combinationally"
            if offering and b:
                offering = False   # transferred at the coming edge
        await RisingEdge(dut.clk)
        iv.value = 0
        orr.value = 0
        if piece in COMBINATIONAL_READY:
            assert followed, f"{piece}: i.ready never followed o.ready (documented combinational path)"
        dut._log.info(f"{piece}: i.ready followed o.ready in {followed} of 300 cycles")
