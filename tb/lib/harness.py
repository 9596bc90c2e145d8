"""Test harness for hdl/lib: every piece side by side in one module, so one simulator build
covers all of them. Streams ``<piece>_i`` / ``<piece>_o``; each pair is independent.

- ``queue``: :class:`Queue` of a struct layout, depth 4; ``queue_s``: of ``signed(7)``, depth 3
  (the typed view through a signal rather than a layout view).
- ``stage``: :class:`PipelineStage` of a :class:`FlatArrayLayout`.
- ``skid``: :class:`SkidBuffer`.
- ``chain``: Queue -> SkidBuffer -> PipelineStage joined with ``wiring.connect``.
- ``stepc`` / ``stepr``: :class:`StepPipe`, a lock-step pipeline ending in a :class:`StepQueue`
  with the combinational / registered enable.
- ``reduce``: :class:`FrameSum`, a frame reduction built on :class:`ReducePipeline`.

``LibHarness(mutant=True)`` swaps in the broken variants of tb/lib/mutants.py: the same tests
must then fail, which shows that they can.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.hdl.lib import (FlatArrayLayout, PipelineStage, Queue, ReducePipeline, SkidBuffer,
                             StepQueue, index_range)

QUEUE_LAYOUT = data.StructLayout({"a": signed(5), "b": unsigned(6)})
STAGE_LAYOUT = FlatArrayLayout(signed(4), 3)
STEP_STAGES = 3
STEP_DEPTH = {"stepc": 3, "stepr": 5}
FRAME_IN = data.StructLayout({"x": signed(6), "last": 1})
FRAME_OUT = data.StructLayout({"sum": signed(12), "beats": unsigned(8)})
REDUCE_STAGES = 2


class Chain(wiring.Component):
    """Queue -> SkidBuffer -> PipelineStage, composed with ``wiring.connect`` only."""

    def __init__(self, shape, classes):
        self._shape = shape
        self._classes = classes
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        queue_cls, skid_cls, stage_cls = self._classes
        m.submodules.queue = queue = queue_cls(self._shape, 3)
        m.submodules.skid = skid = skid_cls(self._shape)
        m.submodules.stage = stage = stage_cls(self._shape)
        wiring.connect(m, wiring.flipped(self.i), queue.i)
        wiring.connect(m, queue.o, skid.i)
        wiring.connect(m, skid.o, stage.i)
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        return m


class StepPipe(wiring.Component):
    """A pipeline of ``STEP_STAGES`` registers that advances only on the step enable (the
    ``i.ready`` of its :class:`StepQueue`), as the systolic array and the requantizer do.
    ``o`` carries ``3 * x`` for each input ``x``."""

    def __init__(self, depth, registered, queue_cls=StepQueue):
        self._depth, self._registered, self._queue_cls = depth, registered, queue_cls
        super().__init__({"i": In(stream.Signature(signed(8))), "o": Out(stream.Signature(signed(10)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ofifo = ofifo = self._queue_cls(signed(10), self._depth,
                                                     registered_enable=self._registered)
        wiring.connect(m, ofifo.o, wiring.flipped(self.o))
        en = Signal()
        m.d.comb += [en.eq(ofifo.i.ready), self.i.ready.eq(en)]
        valid, value = self.i.valid, self.i.payload * 3
        for k in range(STEP_STAGES):
            v, x = Signal(name=f"v{k + 1}"), Signal(signed(10), name=f"x{k + 1}")
            with m.If(en):
                m.d.sync += [v.eq(valid), x.eq(value)]
            valid, value = v, x
        m.d.comb += [ofifo.i.valid.eq(valid), ofifo.i.payload.eq(value)]
        return m


class FrameSum(wiring.Component):
    """Per frame: ``sum(3*x + 1)`` modulo ``2**12`` and the number of beats modulo 256, on
    :class:`ReducePipeline` (stage 1: ``3*x``, stage 2: ``+ 1``, then the accumulator)."""

    def __init__(self, pipe_cls=ReducePipeline):
        self._pipe_cls = pipe_cls
        super().__init__({"i": In(stream.Signature(FRAME_IN)), "o": Out(stream.Signature(FRAME_OUT))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipe = pipe = self._pipe_cls(FRAME_IN, FRAME_OUT, stages=REDUCE_STAGES)
        wiring.connect(m, wiring.flipped(self.i), pipe.i)
        wiring.connect(m, pipe.o, wiring.flipped(self.o))
        x1, x2 = Signal(signed(8), name="x1"), Signal(signed(9), name="x2")
        with m.If(pipe.load[0]):
            m.d.sync += x1.eq(self.i.payload.x * 3)
        with m.If(pipe.load[1]):
            m.d.sync += x2.eq(x1 + 1)
        acc = Signal(signed(12), name="acc")
        beats = Signal(index_range(256), name="beats")
        total = Signal(signed(12))
        m.d.comb += [total.eq(acc + x2), pipe.result.sum.eq(total), pipe.result.beats.eq(beats + 1)]
        with m.If(pipe.take):
            with m.If(pipe.last):
                m.d.sync += [acc.eq(0), beats.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(total), beats.eq(beats + 1)]
        return m


def _pieces(mutant: bool) -> dict:
    if mutant:
        from . import mutants as M
        queue, stage, skid = M.LossyQueue, M.AlwaysReadyStage, M.OverwritingSkidBuffer
        stepq, pipe = M.LateStepQueue, M.OverwritingReducePipeline
    else:
        queue, stage, skid, stepq, pipe = Queue, PipelineStage, SkidBuffer, StepQueue, ReducePipeline
    return {
        "queue": queue(QUEUE_LAYOUT, 4),
        "queue_s": queue(signed(7), 3),
        "stage": stage(STAGE_LAYOUT),
        "skid": skid(unsigned(10)),
        "chain": Chain(unsigned(9), (queue, skid, stage)),
        "stepc": StepPipe(STEP_DEPTH["stepc"], False, stepq),
        "stepr": StepPipe(STEP_DEPTH["stepr"], True, stepq),
        "reduce": FrameSum(pipe),
    }


class LibHarness(wiring.Component):
    def __init__(self, *, mutant: bool = False):
        self.mutant = mutant
        self._blocks = _pieces(mutant)
        members = {}
        for name, blk in self._blocks.items():
            members[f"{name}_i"] = blk.signature.members["i"]
            members[f"{name}_o"] = blk.signature.members["o"]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for name, blk in self._blocks.items():
            m.submodules[name] = blk
            wiring.connect(m, wiring.flipped(getattr(self, f"{name}_i")), blk.i)
            wiring.connect(m, blk.o, wiring.flipped(getattr(self, f"{name}_o")))
        return m


def module_name(mutant: bool = False) -> str:
    return "convgen_lib_harness" + ("_mutant" if mutant else "")
