"""cocotb driving of amaranth.lib.stream ports (``<name>__valid/__ready/__payload``).

One coroutine drives every stream of the DUT cycle by cycle, which is both the cheapest way
to run Python-driven simulation and the easiest to reason about:

- a *source* offers its next payload when its idle pattern allows, and then holds valid and
  the payload until the DUT takes it (amaranth.lib.stream rules);
- a *sink* drives ready from its stall pattern and records every transfer;
- the handshake is sampled in the ReadOnly phase before the clock edge, so what we record is
  exactly what the DUT saw at that edge, on Icarus and Verilator alike.

Patterns are iterators of booleans (True = idle / stall this cycle), as in cocotbext-axi's
pause generators. ``random_pattern`` makes seeded ones.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamBench", "random_pattern", "never", "StreamError"]


class StreamError(AssertionError):
    pass


def never():
    return itertools.repeat(False)


def random_pattern(seed: int, probability: float):
    """Seeded iterator: True with the given probability, in bursts of 1..4 cycles."""
    rng = random.Random(seed)

    def gen():
        while True:
            if rng.random() < probability:
                for _ in range(rng.randint(1, 4)):
                    yield True
            else:
                yield False
    return gen()


@dataclass
class _Source:
    valid: object
    ready: object
    payload: object
    items: deque
    idle: object
    offering: bool = False
    sent: int = 0
    transfer_cycles: list = field(default_factory=list)


@dataclass
class _Sink:
    valid: object
    ready: object
    payload: object
    expected: int
    stall: object
    received: list = field(default_factory=list)
    transfer_cycles: list = field(default_factory=list)
    ready_now: bool = False


class StreamBench:
    """Clock, reset and valid/ready driving for one DUT."""

    def __init__(self, dut, period_ns: int = 10):
        self.dut = dut
        self.clk = dut.clk
        self.cycle = 0
        self._sources: dict[str, _Source] = {}
        self._sinks: dict[str, _Sink] = {}
        cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())

    def _sig(self, name):
        return getattr(self.dut, name)

    def idle_all(self, sources=(), sinks=()):
        for name in sources:
            self._sig(f"{name}__valid").value = 0
        for name in sinks:
            self._sig(f"{name}__ready").value = 0

    async def reset(self, cycles: int = 2):
        """Synchronous active-high reset; streams idle, queued items dropped."""
        for src in self._sources.values():
            src.valid.value = 0
            src.items.clear()
            src.offering = False
        for snk in self._sinks.values():
            snk.ready.value = 0
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
            self.cycle += 1
        self.dut.rst.value = 0

    def source(self, name: str, payloads, idle=None) -> _Source:
        """Queue ``payloads`` (ints) on input stream ``name``."""
        src = self._sources.get(name)
        if src is None:
            src = _Source(self._sig(f"{name}__valid"), self._sig(f"{name}__ready"),
                          self._sig(f"{name}__payload"), deque(), never())
            src.valid.value = 0
            self._sources[name] = src
        src.items.extend(payloads)
        if idle is not None:
            src.idle = idle
        return src

    def sink(self, name: str, expected: int, stall=None) -> _Sink:
        """Expect ``expected`` more transfers on output stream ``name``."""
        snk = self._sinks.get(name)
        if snk is None:
            snk = _Sink(self._sig(f"{name}__valid"), self._sig(f"{name}__ready"),
                        self._sig(f"{name}__payload"), 0, never())
            snk.ready.value = 0
            self._sinks[name] = snk
        snk.expected += expected
        if stall is not None:
            snk.stall = stall
        return snk

    def _finished(self) -> bool:
        return (all(not s.items and not s.offering for s in self._sources.values())
                and all(len(k.received) >= k.expected for k in self._sinks.values()))

    async def run(self, max_cycles: int, *, stop_after: int | None = None, extra_cycles: int = 0,
                  progress=None, progress_every: int = 100_000):
        """Drive until every source is empty and every sink has its transfers, then keep
        ready high for ``extra_cycles`` to catch any surplus (duplicated) output.

        ``stop_after``: return after that many cycles even if not finished (to reset mid-way).
        Raises StreamError on a timeout or a surplus transfer."""
        start = self.cycle
        tail = None
        while True:
            if stop_after is not None and self.cycle - start >= stop_after:
                return
            if tail is None and self._finished():
                tail = extra_cycles
            if tail is not None:
                if tail == 0:
                    break
                tail -= 1
            if self.cycle - start >= max_cycles:
                state = {n: f"{len(k.received)}/{k.expected}" for n, k in self._sinks.items()}
                left = {n: len(s.items) + s.offering for n, s in self._sources.items()}
                raise StreamError(f"timeout after {max_cycles} cycles: received {state}, "
                                  f"inputs left {left}")
            for src in self._sources.values():
                if not src.offering:
                    if src.items and not next(src.idle):
                        src.payload.value = src.items[0]
                        src.valid.value = 1
                        src.offering = True
                    else:
                        src.valid.value = 0
            for snk in self._sinks.values():
                snk.ready_now = tail is not None or not next(snk.stall)
                snk.ready.value = int(snk.ready_now)
            await ReadOnly()
            fired_src = [s for s in self._sources.values() if s.offering and s.ready.value]
            fired_snk = []
            for snk in self._sinks.values():
                if snk.ready_now and snk.valid.value:
                    fired_snk.append((snk, snk.payload.value.to_unsigned()))
            await RisingEdge(self.clk)
            for src in fired_src:
                src.items.popleft()
                src.offering = False
                src.sent += 1
                src.transfer_cycles.append(self.cycle)
            for snk, value in fired_snk:
                if len(snk.received) >= snk.expected:
                    raise StreamError(f"surplus transfer on {snk.payload._name}: "
                                      f"{len(snk.received) + 1} > {snk.expected} expected")
                snk.received.append(value)
                snk.transfer_cycles.append(self.cycle)
            self.cycle += 1
            if progress is not None and (self.cycle - start) % progress_every == 0:
                progress(self)
        for src in self._sources.values():
            src.valid.value = 0
        for snk in self._sinks.values():
            snk.ready.value = 0
