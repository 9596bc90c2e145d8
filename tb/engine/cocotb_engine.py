"""cocotb protocol regression for ConvEngine: every port driven cycle by cycle from Python.

The configuration comes from the manifest named by ``CONVGEN_MANIFEST`` (set by
tb/engine/test_engine_cocotb.py); the seed from ``CONVGEN_SEED`` (else cocotb's own random
seed), printed at the start of every test so that a failure can be rerun.

What the bench drives:

- ``desc``: one beat per layer, several layers queued back to back, with random idle gaps; a
  beat once offered is held (valid and payload) until ``desc.ready``.
- ``x``/``w``/``p``: one memory model per read port. It refuses requests at random
  (``*_req.ready`` low), answers accepted requests in request order after a random latency,
  never loses or duplicates one, and answers an address outside every layer's image with
  random garbage (so a read that should not happen shows in the output).
- ``y_req``: random ``ready`` stalls.

What it checks, against computations that do not use the engine or its golden model:

- each layer's output bytes equal ``golden.engine.reference_conv(q)`` (the single conv
  oracle, golden/conv.py), lane by lane, unused lanes 0;
- every y address is written exactly once and only inside the layer's y region;
- the x, w and p request address sequences of a layer follow the documented loop nest
  (docs/engine.md), so their counts equal the plan's: ``p_words`` parameter reads,
  ``pixel_tiles * w_words`` weight reads and ``tiles*kh*kw*slice_words*rows`` activation reads;
  an activation read of an in-image tap has the documented address (padded taps and fill rows
  read an unspecified word, which must not matter);
- every response was consumed when a layer ends (none lost, none left over);
- protocol: every ``*_rsp.ready`` is 1 in every cycle (the engine reserves room); on
  ``x_req``, ``w_req``, ``p_req`` and ``y_req`` a valid beat stays valid with the same payload
  until it is taken; no request or write while ``busy`` is low; ``desc.ready == ~busy``;
- status: ``busy`` rises the cycle after the descriptor transfer and stays high until the
  layer ends; the cycle it falls, exactly one of ``done`` (one-cycle pulse, once per good
  layer) and ``error`` (bad descriptor) is high; ``cycles`` then equals the number of cycles
  ``busy`` was high; ``error`` stays high until the next descriptor transfer;
- a bad descriptor raises ``error`` with zero memory requests and zero writes, and the next
  good layer is exact; a reset in the middle of a layer (at several points) leaves the next
  layers exact;
- with memories that never stall and answer after 1 cycle, ``cycles`` equals
  ``EngineConfig.layer_cycles`` for compute-bound layers, and is not below it otherwise.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from convgen.core.layer import ConvLayer
from convgen.golden import engine as ge
from convgen.hdl.engine import EngineConfig
from convgen.sim.packing import pack

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
CFG = EngineConfig(**MANIFEST["parameters"])
STREAMS = MANIFEST["streams"]
if os.environ.get("CONVGEN_SEED"):
    SEED = int(os.environ["CONVGEN_SEED"])
else:
    SEED = int(getattr(cocotb, "RANDOM_SEED", None) or random.SystemRandom().randrange(1 << 31))
R, C, V = CFG.rows, CFG.cols, CFG.vec

#: layer name -> (layer, int8 activations?); small enough for per-cycle Python
LAYERS = {
    "1x1_cout6": (ConvLayer.square(4, 4, 8, 1, c_out=6), True),
    "3x3_pad1_uint8": (ConvLayer.square(4, 4, 4, 3, 1, 1, c_out=4), False),
    "3x3_s2_c3": (ConvLayer.square(5, 5, 3, 3, 2, 1, c_out=5), True),
    "5x5_s2_c3_uint8": (ConvLayer.square(5, 5, 3, 5, 2, 2, c_out=4), False),
    "c1": (ConvLayer.square(4, 4, 1, 3, 1, 1, c_out=3), True),
    "asym_pads": (ConvLayer.square(4, 5, 4, 3, 1, (0, 2, 1, 0), c_out=5), True),
    "dilation2": (ConvLayer.square(4, 4, 4, 3, 1, 2, 2, c_out=4), False),
    "grouped": (ConvLayer.square(4, 4, 8, 3, 1, 1, groups=2, c_out=8), True),
    "grouped_narrow": (ConvLayer.square(4, 4, 8, 3, 1, 1, groups=4, c_out=8), True),
    "depthwise": (ConvLayer.square(4, 4, 8, 3, 1, 1, groups=8, c_out=8), True),
    "depthwise_m2_s2_uint8": (ConvLayer.square(5, 5, 6, 3, 2, 1, groups=6, c_out=12), False),
}

#: descriptor changes that make a valid layer invalid (as tests/test_engine_rtl.py)
BAD_FIELDS = [{"kh": 0}, {"ntiles": 2}, {"x_zero_point": -5}, {"out_h": 3}, {"pad_top": 7},
              {"slice_words": 2}, {"c_slice": 3000}, {"ntiles": 9}, {"m_total": 7}]


def _fields(layout: dict) -> dict:
    return {name: (f["offset"], f["width"]) for name, f in layout["fields"].items()}


DESC_FIELDS = _fields(STREAMS["desc"]["layout"])
Y_FIELDS = _fields(STREAMS["y_req"]["layout"])
ADDR_MASK = (1 << Y_FIELDS["addr"][1]) - 1
Y_DATA_SHIFT = Y_FIELDS["data"][0]


def pack_desc(d: dict) -> int:
    for name, (_, width) in DESC_FIELDS.items():
        v = int(d[name])
        assert -(1 << width) < v < (1 << width), f"descriptor field {name}={v} does not fit {width} bits"
    return pack(STREAMS["desc"]["layout"], {k: np.array([int(d[k])]) for k in DESC_FIELDS}, 1)[0]


def bytes_word(values) -> int:
    w = 0
    for e, v in enumerate(values):
        w |= (int(v) & 0xFF) << (8 * e)
    return w


# -- layers -----------------------------------------------------------------------------------
@dataclass
class Layer:
    """One descriptor: the host's images and the expected traffic, and what was observed."""

    name: str
    q: ge.QuantConv | None
    plan: ge.EnginePlan
    desc: dict
    bad: bool = False
    payload: int = 0                                    # the descriptor beat
    x_expected: list = field(default_factory=list)      # address, or None: padded tap / fill row
    w_expected: list = field(default_factory=list)
    p_expected: list = field(default_factory=list)
    y_expected: dict = field(default_factory=dict)      # address -> word
    seen: dict = field(default_factory=lambda: {"x": [], "w": [], "p": []})   # request addresses
    y_seen: dict = field(default_factory=dict)
    status: str = "QUEUED"       # QUEUED, RUNNING, OK, ERROR, ABORTED
    accepted_at: int = -1
    ended_at: int = -1
    busy_cycles: int = 0
    cycles: int = -1

    @property
    def region(self) -> dict:
        p = self.plan
        return {"x": (self.desc["x_base"], p.x_words), "w": (self.desc["w_base"], p.w_words),
                "p": (self.desc["p_base"], p.p_words), "y": (self.desc["y_base"], p.y_words)}


def x_request_addresses(p: ge.EnginePlan, d: dict) -> list:
    """The activation reads of a layer, from the loop nest of docs/engine.md and the
    convolution geometry alone (no im2col code): pixel tile, output-channel tile, tap (kh, kw),
    slice word, row. ``None`` for a padded tap or a fill row (address unspecified)."""
    L = p.layer
    out = []
    for pt in range(p.pixel_tiles):
        for t in range(p.ntiles):
            s = t // p.tiles_per_slice
            for kh in range(L.kh):
                for kw in range(L.kw):
                    for word in range(p.slice_words):
                        for r in range(R):
                            m = pt * R + r
                            if m >= p.m_total:
                                out.append(None)
                                continue
                            oh, ow = divmod(m, L.out_w)
                            ih = oh * L.stride_h - L.pad_top + kh * L.dil_h
                            iw = ow * L.stride_w - L.pad_left + kw * L.dil_w
                            if 0 <= ih < L.h and 0 <= iw < L.w:
                                out.append(d["x_base"] + (ih * L.w + iw) * p.pixel_words + s * p.slice_words + word)
                            else:
                                out.append(None)
    return out


def make_layer(name: str, rng: np.random.Generator, *, change: dict | None = None) -> Layer:
    layer, x_signed = LAYERS[name]
    q = ge.random_quant_conv(rng, layer, x_signed=x_signed, rounding=CFG.rounding, relu=rng.random() < 0.3)
    p = ge.plan(layer, R, C, V)
    d = ge.descriptor_fields(p, x_zero_point=q.x_zero_point, w_zero_point=q.w_zero_point, x_signed=q.x_signed)
    assert not ge.descriptor_errors(d, CFG.limits()), name
    lay = Layer(name, q, p, d)
    if change:
        d.update(change)
        assert ge.descriptor_errors(d, CFG.limits()), f"{change} should be invalid"   # the golden rules agree
        lay.name = f"{name}{change}"
        lay.bad = True
    return lay


class Memory:
    """Word memory of one read port: the layers' images, random garbage anywhere else."""

    def __init__(self, width: int, rng: random.Random):
        self.words: dict[int, int] = {}
        self.width = width
        self.rng = rng
        self.reads_outside = 0

    def read(self, addr: int) -> int:
        if addr not in self.words:
            self.reads_outside += 1
            self.words[addr] = self.rng.getrandbits(self.width)
        return self.words[addr]


# -- the bench --------------------------------------------------------------------------------
class Stall:
    """Seeded stall pattern: True with probability ``p``, in bursts of 1..4 cycles."""

    def __init__(self, rng: random.Random, p: float):
        self.rng, self.p, self.left = rng, p, 0

    def __call__(self) -> bool:
        if self.left:
            self.left -= 1
            return True
        if self.p and self.rng.random() < self.p:
            self.left = self.rng.randint(0, 3)
            return True
        return False


class _Drive:
    """A DUT input that is written only when its value changes (writes cost time)."""

    def __init__(self, handle, value=0):
        self.h, self.v = handle, None
        self.set(value)

    def set(self, v: int):
        if v != self.v:
            self.h.value = v
            self.v = v


class ReadPort:
    """Memory model on ``<name>_req`` / ``<name>_rsp``."""

    def __init__(self, dut, name: str, mem: Memory, rng: random.Random):
        self.name = name
        self.mem = mem
        self.rng = rng
        self.req_valid = getattr(dut, f"{name}_req__valid")
        self.req_payload = getattr(dut, f"{name}_req__payload")
        self.req_ready = _Drive(getattr(dut, f"{name}_req__ready"))
        self.rsp_valid = _Drive(getattr(dut, f"{name}_rsp__valid"))
        self.rsp_payload = _Drive(getattr(dut, f"{name}_rsp__payload"))
        self.rsp_ready = getattr(dut, f"{name}_rsp__ready")
        self.queue: deque = deque()          # (cycle the answer may leave, data)
        self.last_t = 0
        self.configure(0.0, 1, 0)
        self.ready_now = True
        self.req_ready.set(1)
        self.was_valid = False
        self.offering = False

    def configure(self, stall: float, latency: int, jitter: int):
        self.stall = Stall(self.rng, stall)
        self.latency, self.jitter = latency, jitter

    def reset(self):
        self.queue.clear()
        self.last_t = 0
        self.rsp_valid.set(0)
        self.was_valid = self.offering = False

    def drive(self, cycle: int):
        # A new stall decision only after a cycle with a request: input changes are what costs
        # simulation time (Icarus re-evaluates their fan-out), and ready matters only then.
        if self.was_valid:
            self.ready_now = not self.stall()
            self.req_ready.set(int(self.ready_now))
        q = self.queue
        if q and q[0][0] <= cycle:
            self.rsp_valid.set(1)
            self.rsp_payload.set(q[0][1])
            self.offering = True
        else:
            self.rsp_valid.set(0)
            self.offering = False

    def accept(self, cycle: int, addr: int):
        t = max(self.last_t, cycle + self.latency + (self.rng.randint(0, self.jitter) if self.jitter else 0))
        self.last_t = t
        self.queue.append((t, self.mem.read(addr)))


class EngineBench:
    def __init__(self, dut, seed: int):
        self.dut = dut
        self.seed = seed
        self.rng = random.Random(seed)
        self.cycle = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns", impl="gpi").start())
        widths = {"x": 8 * V, "w": 8 * C, "p": STREAMS["p_rsp"]["layout"]["width"]}
        self.mems = {k: Memory(w, random.Random(seed * 7 + i)) for i, (k, w) in enumerate(widths.items())}
        self.ports = {k: ReadPort(dut, k, self.mems[k], random.Random(seed * 13 + i))
                      for i, k in enumerate(widths)}
        self.desc_valid = _Drive(dut.desc__valid)
        self.desc_payload = _Drive(dut.desc__payload)
        self.desc_ready = dut.desc__ready
        self.y_valid = dut.y_req__valid
        self.y_payload = dut.y_req__payload
        self.y_ready = _Drive(dut.y_req__ready, 1)
        self.y_ready_now = True
        self.y_was_valid = False
        self.rst = _Drive(dut.rst, 1)
        self.busy, self.done, self.error, self.cycles = dut.busy, dut.done, dut.error, dut.cycles
        self.layers: list[Layer] = []
        self.pending: deque = deque()        # layers whose descriptor has not been taken
        self.offering = False
        self.desc_stall = Stall(self.rng, 0.0)
        self.y_stall = Stall(self.rng, 0.0)
        self.cur: Layer | None = None
        self.last_status = "OK"
        self.prev: dict = {}                 # Out stream -> (valid, ready, payload) last cycle
        self.next_base = {"x": 0, "w": 0, "p": 0, "y": 0}
        self.done_pulses = 0

    # -- set-up ---------------------------------------------------------------------------------
    def timing(self, *, stall: float = 0.0, latency: int = 1, jitter: int = 0, desc_gap: float = 0.0,
               y_stall: float | None = None):
        for port in self.ports.values():
            port.configure(stall, latency, jitter)
        self.desc_stall = Stall(self.rng, desc_gap)
        self.y_stall = Stall(self.rng, stall if y_stall is None else y_stall)

    def queue(self, lay: Layer):
        """Place the layer's images at fresh bases (a random gap of garbage before each) and
        queue its descriptor."""
        p, d = lay.plan, lay.desc
        for key, words in (("x", p.x_words), ("w", p.w_words), ("p", p.p_words), ("y", p.y_words)):
            base = self.next_base[key] + self.rng.randint(0, 5)
            d[f"{key}_base"] = base
            self.next_base[key] = base + words
        q = lay.q
        xw = ge.pack_x(q.x, p, q.x_zero_point)
        ww = ge.pack_w(q.w, p, q.w_zero_point)
        pw = ge.pack_params(q.params, p)
        pw_words = pack(STREAMS["p_rsp"]["layout"], pw, p.p_words)
        for i, row in enumerate(xw):
            self.mems["x"].words[d["x_base"] + i] = bytes_word(row)
        for i, row in enumerate(ww):
            self.mems["w"].words[d["w_base"] + i] = bytes_word(row)
        for i, word in enumerate(pw_words):
            self.mems["p"].words[d["p_base"] + i] = word
        if not lay.bad:
            lay.x_expected = x_request_addresses(p, d)
            lay.w_expected = [d["w_base"] + i for i in range(p.w_words)] * p.pixel_tiles
            lay.p_expected = [d["p_base"] + i for i in range(p.p_words)]
            ref = ge.reference_conv(q)                 # the conv oracle, not the engine model
            ref = ref.reshape(p.m_total, p.layer.c_out)
            for m in range(p.m_total):
                for t in range(p.ntiles):
                    lanes = [ref[m, n] if n >= 0 else 0 for n in p.lane_channel[t]]
                    lay.y_expected[d["y_base"] + m * p.ntiles + t] = bytes_word(lanes)
        lay.payload = pack_desc(d)
        self.layers.append(lay)
        self.pending.append(lay)

    # -- reset ----------------------------------------------------------------------------------
    async def reset(self, cycles: int = 2):
        """Synchronous reset for ``cycles`` cycles; the running layer is aborted, memory
        answers in flight are dropped, queued descriptors stay queued."""
        self.desc_valid.set(0)
        self.offering = False
        self.y_was_valid = False
        for port in self.ports.values():
            port.reset()
        self.rst.set(1)
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
            self.cycle += 1
        self.rst.set(0)
        if self.cur is not None:
            self.cur.status = "ABORTED"
            self.cur = None
        self.last_status = "OK"
        self.prev.clear()

    # -- one cycle ------------------------------------------------------------------------------
    def fail(self, msg: str):
        raise AssertionError(f"cycle {self.cycle} (seed {self.seed}): {msg}")

    async def step(self):
        cyc = self.cycle
        # drive
        if not self.offering:
            if self.pending and not self.desc_stall():
                self.desc_payload.set(self.pending[0].payload)
                self.desc_valid.set(1)
                self.offering = True
            else:
                self.desc_valid.set(0)
        ports = self.ports
        for port in ports.values():
            port.drive(cyc)
        if self.y_was_valid:
            self.y_ready_now = not self.y_stall()
            self.y_ready.set(int(self.y_ready_now))
        await ReadOnly()
        # sample and check the protocol
        busy = int(self.busy.value)
        done = int(self.done.value)
        error = int(self.error.value)
        if self.offering or busy:
            desc_ready = int(self.desc_ready.value)
            if desc_ready != 1 - busy:
                self.fail(f"desc.ready={desc_ready} with busy={busy}")
        reqs = []
        for k, port in ports.items():
            if int(port.rsp_ready.value) != 1:
                self.fail(f"{k}_rsp.ready is low (the engine must reserve room before it requests)")
            v = int(port.req_valid.value)
            port.was_valid = v
            reqs.append((k, v, port.ready_now, int(port.req_payload.value) if v else None))
        v = int(self.y_valid.value)
        self.y_was_valid = v
        reqs.append(("y", v, self.y_ready_now, int(self.y_payload.value) if v else None))
        prev = self.prev
        for k, v, r, payload in reqs:
            pv = prev.get(k)
            if pv is not None and pv[0] and not pv[1]:
                if not v:
                    self.fail(f"{k}_req dropped valid while stalled (payload {pv[2]:#x})")
                if payload != pv[2]:
                    self.fail(f"{k}_req payload changed while stalled: {pv[2]:#x} -> {payload:#x}")
            prev[k] = (v, r, payload)
            if v and not busy:
                self.fail(f"{k}_req valid while busy is low")
        lay = self.cur
        # status
        if lay is None:
            if busy:
                self.fail("busy high with no layer accepted")
            if done:
                self.fail("done high with no layer running")
            if error != (self.last_status == "ERROR"):
                self.fail(f"error={error} while idle after a layer that ended {self.last_status}")
        elif busy:
            lay.busy_cycles += 1
            if done:
                self.fail(f"done high while busy ({lay.name})")
            if error:
                self.fail(f"error high while busy ({lay.name})")
        else:
            self.end_layer(lay, done, error, int(self.cycles.value))
        # transfers (they happen at the coming edge)
        for k, v, r, payload in reqs:
            if v and r:
                if k == "y":
                    self.write(lay, payload & ADDR_MASK, payload >> Y_DATA_SHIFT)
                else:
                    ports[k].accept(cyc, payload)
                    lay.seen[k].append(payload)
        for port in ports.values():
            if port.offering:
                port.queue.popleft()
        if self.offering and not busy:
            nxt = self.pending.popleft()
            nxt.status = "RUNNING"
            nxt.accepted_at = cyc
            self.cur = nxt
            self.offering = False
        await RisingEdge(self.dut.clk)
        self.cycle += 1

    def write(self, lay: Layer, addr: int, data: int):
        base, n = lay.region["y"]
        if not base <= addr < base + n:
            self.fail(f"{lay.name}: y write at {addr}, outside its region {base}..{base + n - 1}")
        if addr in lay.y_seen:
            self.fail(f"{lay.name}: y address {addr} written twice")
        lay.y_seen[addr] = data

    def end_layer(self, lay: Layer, done: int, error: int, cycles: int):
        lay.ended_at = self.cycle
        lay.cycles = cycles
        self.cur = None
        if done and error:
            self.fail(f"{lay.name}: done and error together")
        if not done and not error:
            self.fail(f"{lay.name}: busy fell without done or error")
        lay.status = "OK" if done else "ERROR"
        self.last_status = lay.status
        self.done_pulses += done
        if cycles != lay.busy_cycles:
            self.fail(f"{lay.name}: cycles={cycles} but busy was high for {lay.busy_cycles} cycles")
        if lay.status == "ERROR":
            return
        left = {k: len(p.queue) for k, p in self.ports.items() if p.queue}
        if left:
            self.fail(f"{lay.name}: done with memory answers not taken: {left}")
        check_layer_traffic(lay)

    async def run(self, until, max_cycles: int):
        start = self.cycle
        while not until():
            if self.cycle - start >= max_cycles:
                states = {lay.name: lay.status for lay in self.layers if lay.status not in ("OK", "ERROR")}
                self.fail(f"timeout after {max_cycles} cycles; layers not finished: {states}")
            await self.step()

    async def run_all(self, max_cycles: int, tail: int = 30):
        """Until every queued layer has ended, then ``tail`` more cycles (nothing may happen)."""
        await self.run(lambda: not self.pending and self.cur is None, max_cycles)
        for _ in range(tail):
            await self.step()
        if self.cur is not None:
            self.fail("a layer started with no descriptor queued")


def check_layer_traffic(lay: Layer):
    """Requests and writes of a layer that ended with done, against the expected ones."""
    where = f"{lay.name} (seed {SEED})"
    for k in ("p", "w"):
        exp, got = getattr(lay, f"{k}_expected"), lay.seen[k]
        if got != exp:
            i = next((i for i, (a, b) in enumerate(zip(got, exp)) if a != b), min(len(got), len(exp)))
            raise AssertionError(f"{where}: {len(got)} {k} requests, expected {len(exp)}; first difference at "
                                 f"request {i}: {got[i:i + 3]} vs {exp[i:i + 3]}")
    exp, got = lay.x_expected, lay.seen["x"]
    if len(got) != len(exp):
        raise AssertionError(f"{where}: {len(got)} x requests, expected {len(exp)} (tiles*kh*kw*slice_words*rows)")
    bad = [i for i, (a, b) in enumerate(zip(got, exp)) if b is not None and a != b]
    if bad:
        i = bad[0]
        raise AssertionError(f"{where}: {len(bad)} x requests at the wrong address; first, request {i}: "
                             f"{got[i]} instead of {exp[i]}")
    missing = sorted(set(lay.y_expected) - set(lay.y_seen))
    if missing:
        raise AssertionError(f"{where}: {len(missing)} of {len(lay.y_expected)} y words never written, "
                             f"first at {missing[:5]}")
    wrong = [a for a in sorted(lay.y_expected) if lay.y_seen[a] != lay.y_expected[a]]
    if wrong:
        a = wrong[0]
        got_b = [(lay.y_seen[a] >> (8 * j)) & 0xFF for j in range(C)]
        exp_b = [(lay.y_expected[a] >> (8 * j)) & 0xFF for j in range(C)]
        raise AssertionError(f"{where}: {len(wrong)} of {len(lay.y_expected)} y words differ from the conv "
                             f"oracle; first at address {a}: bytes {got_b} instead of {exp_b}")


def budget(layers, factor: float = 1.0) -> int:
    total = 0
    for lay in layers:
        p, L = lay.plan, lay.plan.layer
        f = CFG.layer_cycles(kh=L.kh, kw=L.kw, c_slice=p.c_slice, ntiles=p.ntiles, pixel_tiles=p.pixel_tiles)
        total += max(f, len(lay.x_expected)) + 50
    return int(total * factor) + 500


async def fresh_bench(dut, salt: int) -> EngineBench:
    seed = SEED + salt
    dut._log.info("seed %d (CONVGEN_SEED=%d reruns this test with the same stimulus)", seed, SEED)
    bench = EngineBench(dut, seed)
    await bench.reset(4)
    return bench


def layer_rng(bench: EngineBench) -> np.random.Generator:
    return np.random.default_rng(bench.seed)


# -- tests ------------------------------------------------------------------------------------
@cocotb.test()
async def layers_back_to_back_random_stalls(dut):
    """Every layer category queued back to back; every port stalls at random, memories answer
    after 1..7 cycles, descriptors arrive with random gaps."""
    bench = await fresh_bench(dut, 0)
    rng = layer_rng(bench)
    bench.timing(stall=0.25, latency=1, jitter=6, desc_gap=0.5, y_stall=0.25)
    names = [n for n in LAYERS if n not in ("asym_pads", "dilation2")]   # those two: cycle_counts_without_stalls
    for name in names:
        bench.queue(make_layer(name, rng))
    await bench.run_all(budget(bench.layers, 4))
    assert [lay.status for lay in bench.layers] == ["OK"] * len(names)
    assert bench.done_pulses == len(names)
    dut._log.info("%d layers in %d cycles; memory reads outside every image (padded taps): x %d",
                  len(names), bench.cycle, bench.mems["x"].reads_outside)


@cocotb.test()
async def cycle_counts_without_stalls(dut):
    """Memories that never stall and answer after 1 cycle, descriptors always offered:
    ``cycles`` equals the formula for compute-bound layers and is not below it otherwise;
    a layer's descriptor is taken in the cycle the previous one's ``done`` pulses."""
    bench = await fresh_bench(dut, 1)
    rng = layer_rng(bench)
    bench.timing()
    names = ["1x1_cout6", "asym_pads", "c1", "dilation2", "depthwise_m2_s2_uint8", "3x3_s2_c3"]
    for name in names:
        bench.queue(make_layer(name, rng))
    await bench.run_all(budget(bench.layers, 2))
    exact = 0
    for i, lay in enumerate(bench.layers):
        assert lay.status == "OK", (lay.name, lay.status)
        p, L = lay.plan, lay.plan.layer
        f = CFG.layer_cycles(kh=L.kh, kw=L.kw, c_slice=p.c_slice, ntiles=p.ntiles, pixel_tiles=p.pixel_tiles)
        if CFG.compute_bound(kh=L.kh, kw=L.kw, c_slice=p.c_slice, slice_words=p.slice_words, ntiles=p.ntiles):
            assert lay.cycles == f, f"{lay.name}: {lay.cycles} cycles, formula {f} (seed {bench.seed})"
            exact += 1
        else:
            assert lay.cycles >= f, f"{lay.name}: {lay.cycles} cycles, below the lower bound {f}"
        if i:
            # accepted in the done cycle of the previous layer: no idle cycle between layers
            assert lay.accepted_at == bench.layers[i - 1].ended_at, (lay.name, lay.accepted_at)
        dut._log.info("%s: %d cycles (formula %d)", lay.name, lay.cycles, f)
    assert exact >= 3


@cocotb.test()
async def bad_descriptors(dut):
    """Each invalid descriptor raises ``error`` (held until the next descriptor) with no memory
    request and no write; the good layers around them are exact."""
    bench = await fresh_bench(dut, 2)
    rng = layer_rng(bench)
    bench.timing(stall=0.3, latency=1, jitter=4, desc_gap=0.5, y_stall=0.3)
    bench.queue(make_layer("3x3_pad1_uint8", rng))
    for change in BAD_FIELDS:
        bench.queue(make_layer("3x3_pad1_uint8", rng, change=change))
    bench.queue(make_layer("grouped_narrow", rng))
    await bench.run_all(budget(bench.layers, 4))
    statuses = [lay.status for lay in bench.layers]
    assert statuses == ["OK"] + ["ERROR"] * len(BAD_FIELDS) + ["OK"], statuses
    for lay in bench.layers[1:-1]:
        traffic = {k: len(lay.seen[k]) for k in "xwp"} | {"y": len(lay.y_seen)}
        assert not any(traffic.values()), f"{lay.name}: memory traffic {traffic}"
    assert bench.done_pulses == 2


@cocotb.test()
async def reset_mid_layer(dut):
    """A reset at several points of a layer (descriptor just taken, parameters loading, first
    activation read, half of the output written); the layers queued after it are exact."""
    bench = await fresh_bench(dut, 3)
    rng = layer_rng(bench)
    bench.timing(stall=0.2, latency=1, jitter=3, desc_gap=0.2, y_stall=0.2)
    triggers = {
        "accepted": lambda lay: lay.status == "RUNNING",
        "params": lambda lay: len(lay.seen["p"]) >= 2,
        "first_x": lambda lay: len(lay.seen["x"]) >= 1,
        "half_written": lambda lay: len(lay.y_seen) >= lay.plan.y_words // 2,
    }
    for (point, trigger), nxt in zip(triggers.items(), ["grouped", "3x3_pad1_uint8", "depthwise", "1x1_cout6"]):
        first = make_layer("1x1_cout6", rng)
        victim = make_layer("3x3_s2_c3", rng)
        after = [make_layer(nxt, rng)]
        for lay in [first, victim]:
            bench.queue(lay)
        await bench.run(lambda: victim.status == "RUNNING" and trigger(victim), budget([first, victim], 4))
        await bench.reset(int(bench.rng.randint(1, 3)))
        assert victim.status == "ABORTED", (point, victim.status)
        for lay in after:
            bench.queue(lay)
        await bench.run_all(budget(after, 4))
        assert [lay.status for lay in (first, *after)] == ["OK"] * 2, (point, first.status, after[0].status)
        dut._log.info("reset at %s: next layers exact", point)
