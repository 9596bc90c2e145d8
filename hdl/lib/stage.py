"""One-register stream stages: a pipeline register and a skid buffer."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PipelineStage", "SkidBuffer"]


class PipelineStage(wiring.Component):
    """A pipeline register on a stream: registered ``o.valid`` and ``o.payload``.

    Parameters
    ----------
    shape : shape-like
        Payload shape of both streams.

    Attributes
    ----------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
        The beats of ``i``, one cycle later.

    Protocol: amaranth.lib.stream. The register takes a beat when it is empty or being
    emptied: ``i.ready = ~o.valid | o.ready``. So ``i.ready`` depends combinationally on
    ``o.ready`` (a chain of stages has a ready path through all of them; use
    :class:`SkidBuffer` to cut it). The payload holds while ``o.valid & ~o.ready``.

    Timing: latency 1 cycle, one beat per cycle, one register of ``shape`` plus a valid bit.
    Reset (synchronous) empties the stage.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def shape(self):
        return self._shape

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class SkidBuffer(wiring.Component):
    """A pipeline register that also registers ``i.ready``: no combinational path between
    the two streams.

    Parameters
    ----------
    shape : shape-like
        Payload shape of both streams.

    Attributes
    ----------
    i : In(stream.Signature(shape))
        ``i.ready`` is a register: high while the skid register is empty.
    o : Out(stream.Signature(shape))
        The beats of ``i`` in order; ``o.valid`` and ``o.payload`` are registers.

    Protocol: amaranth.lib.stream. A beat accepted while ``o`` is stalled is kept in a second
    ("skid") register, since ``i.ready`` could not fall in time; ``i.ready`` is low while
    it is full, and the skid beat goes out before any new one.

    Timing: latency 1 cycle, one beat per cycle (with ``o.ready`` always high the skid
    register stays empty), two registers of ``shape``. Reset (synchronous) empties both.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def shape(self):
        return self._shape

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self._shape, name="skid_data")
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            # the output register is free this cycle: the skid beat goes first
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
