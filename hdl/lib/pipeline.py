"""Handshake skeleton of a pipeline that reduces frames of beats to one output beat."""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.core.params import check_int

from .stage import PipelineStage
from .streams import with_payload

__all__ = ["ReducePipeline"]


class ReducePipeline(wiring.Component):
    """Valid/ready control of ``stages`` pipeline registers followed by a reduction that
    emits one output beat per frame (a frame is the beats up to one with ``last`` set).

    The component holds only the control: one valid bit and the ``last`` flag per stage (a
    chain of :class:`PipelineStage`), and the output register. The block keeps its datapath
    registers and loads them with :attr:`load`; it accumulates the beat leaving the last stage
    when :attr:`take` is high, and presents the frame's result on :attr:`result`, which is
    loaded into ``o.payload`` when the frame's last beat is taken. The Winograd engine and its
    direct baseline are built on it.

    Parameters
    ----------
    i_shape : StructLayout
        Payload of the input stream; it must have a 1-bit field ``last``.
    o_shape : shape-like
        Payload of the output stream (and of :attr:`result`).
    stages : int, >= 1
        Pipeline registers between ``i`` and the reduction.

    Attributes
    ----------
    i : In(stream.Signature(i_shape))
        Beats in. ``i.ready`` depends combinationally on ``o.ready`` (and on the ``last``
        flag in the final stage): a beat that does not end a frame can always be taken by
        the reduction, a frame's last beat only when the output register is free.
    o : Out(stream.Signature(o_shape))
        One beat per frame; ``o.valid`` and ``o.payload`` are registers.
    result : In(o_shape)
        The frame's result, given the beat in the final stage and the accumulated state.
    load : Out(stages)
        Bit ``k``: the registers of stage ``k + 1`` take a new beat this cycle (stage 1 from
        ``i.payload``, stage ``k + 1`` from stage ``k``).
    take : Out(1)
        The reduction takes the beat in the final stage this cycle.
    last : Out(1)
        The beat in the final stage ends its frame (``o`` is loaded with :attr:`result`
        when ``take & last``).

    Timing: one beat per cycle; a frame comes out ``stages + 1`` cycles after its last beat
    was accepted, with no stalls. Reset (synchronous) empties every stage and the output.
    """

    def __init__(self, i_shape, o_shape, *, stages: int):
        if not isinstance(i_shape, data.StructLayout) or "last" not in i_shape.members \
                or Shape.cast(i_shape["last"].shape) != unsigned(1):
            raise TypeError(f"i_shape must be a StructLayout with a 1-bit field 'last', not {i_shape!r}")
        self._stages = check_int("stages", stages, 1)
        super().__init__({
            "i": In(stream.Signature(i_shape)),
            "o": Out(stream.Signature(o_shape)),
            "result": In(o_shape),
            "load": Out(self._stages),
            "take": Out(1),
            "last": Out(1),
        })

    @property
    def stages(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        # stage k carries the valid bit and the last flag of the beat whose data the block
        # keeps in its own stage-k registers
        chain = []
        for k in range(self._stages):
            m.submodules[f"s{k + 1}"] = stage = PipelineStage(1)
            chain.append(stage)
        last_in = Signal(name="last_in")
        m.d.comb += last_in.eq(self.i.payload.last)
        wiring.connect(m, with_payload(self.i, last_in), chain[0].i)
        for prev, nxt in zip(chain, chain[1:]):
            wiring.connect(m, prev.o, nxt.i)
        m.d.comb += [self.load[k].eq(stage.i.valid & stage.i.ready) for k, stage in enumerate(chain)]

        final = chain[-1].o
        out_free = Signal()
        m.d.comb += [
            out_free.eq(~self.o.valid | self.o.ready),
            final.ready.eq(~final.payload | out_free),
            self.take.eq(final.valid & final.ready),
            self.last.eq(final.payload),
        ]
        emit = self.take & self.last
        with m.If(emit):
            m.d.sync += [self.o.payload.eq(self.result), self.o.valid.eq(1)]
        with m.If(~emit & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
