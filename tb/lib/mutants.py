"""Deliberately broken variants of the hdl/lib pieces. tests of tb/lib/test_lib.py build the
harness with them and require the cocotb tests of those pieces to fail, so the testbench is
shown to catch each bug. Each bug is one a designer could plausibly make."""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered

from convgen.hdl.lib import PipelineStage, Queue, ReducePipeline, SkidBuffer, StepQueue
from convgen.hdl.lib.streams import with_payload


class LossyQueue(Queue):
    """Reads the FIFO whenever it has data, ignoring ``o.ready``: beats are lost under
    backpressure."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=Shape.cast(self.shape).width, depth=self.depth)
        m.d.comb += [fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid), self.i.ready.eq(fifo.w_rdy),
                     self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(1),
                     self.level.eq(fifo.level)]
        return m


class AlwaysReadyStage(PipelineStage):
    """Always ready: a stalled beat is overwritten by the next one."""

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        with m.If(self.i.valid):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class OverwritingSkidBuffer(SkidBuffer):
    """``i.ready`` stays high while the skid register is full: its beat is overwritten."""

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self.shape, name="skid_data")
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(1)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class LateStepQueue(StepQueue):
    """Registered enable that is merely a registered "not full": ``en(t) = [level(t-1) <
    depth]`` (threshold ``depth - 1``). After a step into the last free entry the next write
    finds the inner FIFO full, and the beat is dropped while the pipeline advances."""

    @property
    def threshold(self):
        return None if not self.registered_enable else self.depth - 1


class OverwritingReducePipeline(ReducePipeline):
    """Takes a frame's last beat even while the output register is stalled: the previous
    frame's result is overwritten."""

    def elaborate(self, platform):
        m = Module()
        chain = []
        for k in range(self.stages):
            m.submodules[f"s{k + 1}"] = stage = PipelineStage(1)
            chain.append(stage)
        last_in = Signal(name="last_in")
        m.d.comb += last_in.eq(self.i.payload.last)
        wiring.connect(m, with_payload(self.i, last_in), chain[0].i)
        for prev, nxt in zip(chain, chain[1:]):
            wiring.connect(m, prev.o, nxt.i)
        m.d.comb += [self.load[k].eq(stage.i.valid & stage.i.ready) for k, stage in enumerate(chain)]
        final = chain[-1].o
        m.d.comb += [final.ready.eq(1), self.take.eq(final.valid), self.last.eq(final.payload)]
        emit = self.take & self.last
        with m.If(emit):
            m.d.sync += [self.o.payload.eq(self.result), self.o.valid.eq(1)]
        with m.If(~emit & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
