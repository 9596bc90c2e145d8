"""Python-level checks of hdl/lib (the cocotb regression is tb/lib): parameter errors, the
flat layout's bits and debug wires, index ranges, and that the blocks use the shared pieces
rather than copies of them."""

import re
from pathlib import Path

import pytest
from amaranth.hdl import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.core.params import ConfigError
from convgen.hdl.generate import to_verilog
from convgen.hdl.lib import (FlatArrayLayout, PipelineStage, Queue, ReducePipeline, SkidBuffer,
                             StepQueue, index_range, with_payload)

HDL = Path(__file__).resolve().parent.parent / "hdl"
# pieces built only to check their parameters are never elaborated
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def test_index_range_never_zero_width():
    assert index_range(0) == range(2)
    assert index_range(1) == range(2)
    assert index_range(2) == range(2)
    assert index_range(7) == range(7)
    assert Shape.cast(index_range(1)).width == 1
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="n must be"):
            index_range(bad)


def test_flat_array_layout_same_bits_as_array_layout():
    flat, plain = FlatArrayLayout(signed(5), 3), data.ArrayLayout(signed(5), 3)
    assert flat.size == plain.size == 15
    for values in ([0, 0, 0], [-16, 15, -1], [3, -7, 9]):
        assert flat.const(values).as_bits() == plain.const(values).as_bits()


class _Passthrough(wiring.Component):
    def __init__(self, layout):
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.stage = stage = PipelineStage(self.o.payload.shape())
        wiring.connect(m, wiring.flipped(self.i), stage.i)
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        return m


def test_flat_array_layout_emits_no_element_wires():
    """The reason the class exists (yosys' ABC reintegration on iCE40): no ``o__payload[k]``."""
    plain = to_verilog(_Passthrough(data.ArrayLayout(signed(5), 3)), "plain")
    flat = to_verilog(_Passthrough(FlatArrayLayout(signed(5), 3)), "flat")
    assert re.search(r"\\o__payload\[0\]", plain)
    assert not re.search(r"payload\[0\] ", flat)


def test_parameter_errors():
    with pytest.raises(ConfigError, match="depth"):
        Queue(8, 0)
    with pytest.raises(ConfigError, match="depth"):
        StepQueue(8, 2)
    with pytest.raises(ConfigError, match="depth"):
        StepQueue(8, 4, registered_enable=True)
    with pytest.raises(ConfigError, match="registered_enable"):
        StepQueue(8, 6, registered_enable=1)
    with pytest.raises(ConfigError, match="stages"):
        ReducePipeline(data.StructLayout({"x": 4, "last": 1}), 8, stages=0)
    with pytest.raises(TypeError, match="last"):
        ReducePipeline(data.StructLayout({"x": 4}), 8, stages=1)
    with pytest.raises(TypeError, match="last"):
        ReducePipeline(data.StructLayout({"x": 4, "last": 2}), 8, stages=1)


def test_step_queue_threshold():
    assert StepQueue(8, 6, registered_enable=True).threshold == 3
    assert StepQueue(8, 4).threshold is None


@pytest.mark.parametrize("threshold, lossless", [(None, True), (4, False)])
def test_step_queue_two_enable_stages(threshold, lossless):
    """enable_stages=2: en(t) = [level(t-2) <= depth - 4], and no beat is lost or duplicated
    under random valid and heavy backpressure; a bound of depth - 2 loses beats."""
    import random

    from amaranth.hdl import Signal
    from amaranth.sim import Simulator

    from convgen.hdl.lib import step_queue

    with pytest.raises(ConfigError, match="enable_stages"):
        step_queue(Module(), stream.Signature(8).create(), 8, 6, enable_stages=2)
    with pytest.raises(ConfigError, match="depth"):
        step_queue(Module(), stream.Signature(8).create(), 8, 5, registered_enable=True, enable_stages=2)
    m = Module()
    o = stream.Signature(8).create()
    en, write = step_queue(m, o, 8, 6, registered_enable=True, enable_stages=2, threshold=threshold)
    valid, count = Signal(), Signal(8)
    m.d.comb += write(valid, count)
    with m.If(en & valid):
        m.d.sync += count.eq(count + 1)
    level = m.submodules["ofifo"].level
    seen = {"levels": [], "ens": [], "got": []}

    async def bench(ctx):
        rng = random.Random(14)
        for _ in range(600):
            ctx.set(valid, rng.random() < 0.9)
            ctx.set(o.ready, rng.random() < 0.35)
            seen["levels"].append(ctx.get(level))
            seen["ens"].append(ctx.get(en))
            if ctx.get(o.valid) and ctx.get(o.ready):
                seen["got"].append(ctx.get(o.payload))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    lv, ens, got = seen["levels"], seen["ens"], seen["got"]
    assert len(got) > 100
    if lossless:
        assert all(ens[t] == (lv[t - 2] <= 2) for t in range(2, len(ens)))
        assert got == [i % 256 for i in range(len(got))]
    else:
        assert got != [i % 256 for i in range(len(got))]


@pytest.mark.parametrize("shape", [unsigned(9), signed(9), range(300), data.StructLayout({"a": signed(4), "b": 5})])
def test_pieces_elaborate_for_any_shape(shape):
    for piece in (Queue(shape, 3), StepQueue(shape, 3), StepQueue(shape, 5, registered_enable=True),
                  PipelineStage(shape), SkidBuffer(shape)):
        to_verilog(piece, "piece")


def test_with_payload_keeps_the_handshake():
    src = stream.Signature(8).create()
    payload = data.ArrayLayout(4, 2)(src.payload)  # any signal or view
    out = with_payload(src, payload)
    assert out.valid is src.valid and out.ready is src.ready and out.payload is payload


@pytest.mark.parametrize("path", ["systolic.py", "requant.py", "winograd.py", "winograd_direct.py", "im2col.py"])
def test_blocks_use_the_shared_pieces(path):
    """No block keeps its own copy of a hdl/lib piece."""
    text = (HDL / path).read_text()
    for copy in (r"def _index\(", r"class \w+\(data\.ArrayLayout\)", r"SyncFIFOBuffered\(",
                 r"\.ready\.eq\(~\w+\.valid \| \w+\.ready\)",   # a hand-written pipeline register
                 r"take2\.eq\(val2"):                               # the 3x3 engines' skeleton
        assert not re.search(copy, text), f"{path} still has its own {copy!r}"


@pytest.mark.parametrize("a_shape, b_shape", [(signed(32), signed(32)), (signed(32), unsigned(31)),
                                              (unsigned(25), unsigned(24)), (signed(35), unsigned(35))])
def test_slices_give_the_exact_product(a_shape, b_shape):
    """The products of every pair of slices, shifted and summed, equal Python's product at the
    corners and at random operands; every slice fits a signed 18-bit multiplier input."""
    import random

    from amaranth.sim import Simulator

    from convgen.hdl.lib import slices, tree_sum

    a, b = Signal(a_shape), Signal(b_shape)
    for s in (a_shape, b_shape):
        for v, _ in slices(Signal(s)):
            assert len(v) + (not v.shape().signed) <= 18, (s, v.shape())
    m = Module()
    out = Signal(signed(80))
    m.d.comb += out.eq(tree_sum([(x * y) << (sx + sy) for x, sx in slices(a) for y, sy in slices(b)]))
    rnd = random.Random(7)

    def values(s):
        lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else (0, (1 << s.width) - 1)
        return [lo, hi, 0, 1, (1 << 17) - 1, 1 << 17, hi >> 1] + [rnd.randint(lo, hi) for _ in range(40)]

    async def bench(ctx):
        for x in values(a_shape):
            for y in values(b_shape):
                ctx.set(a, x)
                ctx.set(b, y)
                assert ctx.get(out) == x * y, (x, y)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
