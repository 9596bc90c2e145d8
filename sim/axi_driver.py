"""Host driver of the ConvEngine AXI wrapper (``convgen generate engine --axi``).

This file is standalone: it imports only the Python standard library, so ``generate`` copies
it next to the Verilog and it runs on a board (PYNQ ``MMIO`` and a ``pynq.allocate`` buffer)
exactly as it runs in a cocotb simulation (cocotbext-axi ``AxiLiteMaster`` and ``AxiRam``).

Everything it knows about the hardware comes from the register map in the generated manifest
(``<module>.json``, key ``axi``; :func:`load_regmap`): register offsets, bits, the stride of
each tensor in memory and the parameter word's fields.

The register protocol is written once, as generators that yield the accesses they need
(``("write32", offset, value)``, ``("read32", offset)``, ``("mem_write", addr, data)``,
``("mem_read", addr, length)``, ``("wait",)``); :meth:`EngineAxiDriver.run_layer` performs them
with plain callables and :meth:`EngineAxiDriver.arun_layer` awaits them when they return
awaitables (cocotb). Example on a board::

    from pynq import Overlay, allocate
    drv = EngineAxiDriver(load_regmap("convgen_engine_axi_....json"),
                          read32=ip.read, write32=ip.write,
                          mem_write=lambda a, b: buf_view(a)[:] = b, ...)
    out = drv.run_layer(layer)

A :class:`AxiLayer` holds one layer's descriptor fields (as ``golden.engine.descriptor_fields``
gives them), its memory words as integers and the byte addresses to put them at;
``convgen.sim.engine_axi.axi_layer`` makes one from a quantized convolution.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field

__all__ = ["AxiLayer", "LayerOutcome", "EngineAxiDriver", "DriverError", "load_regmap", "pack_words", "unpack_words",
           "pack_param"]

TENSORS = ("x", "w", "p", "y")


class DriverError(RuntimeError):
    """The hardware did not answer as the register map says (wrong build, no done)."""


def load_regmap(manifest_path: str) -> dict:
    """The ``axi`` section of a generated manifest (``<module>.json``)."""
    with open(manifest_path) as f:
        return json.load(f)["axi"]


def pack_words(words, stride: int) -> bytes:
    """Words (non-negative integers) as memory bytes: word i at byte ``i*stride``, little-endian."""
    return b"".join(int(w).to_bytes(stride, "little") for w in words)


def unpack_words(data: bytes, stride: int, bits: int) -> list[int]:
    """The inverse of :func:`pack_words`, each word cut to ``bits`` bits."""
    mask = (1 << bits) - 1
    return [int.from_bytes(data[i:i + stride], "little") & mask for i in range(0, len(data), stride)]


def pack_param(regmap: dict, values: dict) -> int:
    """One parameter word from its field values (two's complement in each field's width)."""
    word = 0
    for name, f in regmap["param_fields"].items():
        v = int(values.get(name, 0))
        word |= (v & ((1 << f["width"]) - 1)) << f["offset"]
    return word


@dataclass
class AxiLayer:
    """One layer for the wrapper: ``desc`` (descriptor field -> int; the ``*_base`` fields are
    ignored), ``words`` (tensor -> list of word integers for x, w and p), ``y_words`` (output
    words the layer writes) and ``addr`` (tensor -> byte address of word 0)."""

    desc: dict
    words: dict
    y_words: int
    addr: dict


@dataclass
class LayerOutcome:
    status: int                     # the STATUS register
    errors: list                    # names of the STATUS error bits that are set
    engine_cycles: int
    total_cycles: int
    polls: int                      # CTRL reads until ap_done
    y: list = field(default_factory=list)   # output words (empty after an error)

    @property
    def ok(self) -> bool:
        return not self.errors


class EngineAxiDriver:
    """Runs layers through the register interface.

    ``read32(offset) -> int`` and ``write32(offset, value)``: the AXI4-Lite slave;
    ``mem_write(byte_addr, data: bytes)`` and ``mem_read(byte_addr, length) -> bytes``: the
    memory the AXI4 master reaches; ``wait()``: called between two polls of CTRL (a few clock
    cycles in simulation, a short sleep on a board). Any of them may return an awaitable when
    :meth:`arun_layer` is used."""

    def __init__(self, regmap: dict, *, read32, write32, mem_write, mem_read, wait=None, max_polls: int = 1_000_000):
        self.regmap = regmap
        self.io = {"read32": read32, "write32": write32, "mem_write": mem_write, "mem_read": mem_read,
                   "wait": wait or (lambda: None)}
        self.max_polls = max_polls
        self.reg = {n: r["offset"] for n, r in regmap["registers"].items()}

    # -- the protocol, once ---------------------------------------------------------------------
    def _check_build(self):
        for name in ("config0", "config1"):
            got = yield ("read32", self.reg[name])
            if got != self.regmap[name]:
                raise DriverError(f"{name.upper()} reads 0x{got:08x}, the register map says 0x{self.regmap[name]:08x}: "
                                  "the driver's manifest is not this build's")

    def _layer(self, layer: AxiLayer, *, load: bool = True, interrupts: bool = False):
        rm = self.regmap
        yield from self._check_build()
        strides = rm["strides"]
        if load:
            for t in ("x", "w", "p"):
                yield ("mem_write", layer.addr[t], pack_words(layer.words[t], strides[t]))
        for name, r in rm["registers"].items():
            if r["kind"] == "desc":
                yield ("write32", r["offset"], int(layer.desc[name]) & ((1 << r["width"]) - 1))
            elif r["kind"] == "addr":
                yield ("write32", r["offset"], (int(layer.addr[r["tensor"]]) >> (32 * r["part"])) & 0xFFFFFFFF)
        if interrupts:
            yield ("write32", self.reg["ier"], 0b11)
            yield ("write32", self.reg["gie"], 1)
        yield ("write32", self.reg["ctrl"], 1 << rm["ctrl_bits"]["ap_start"])
        done = 1 << rm["ctrl_bits"]["ap_done"]
        polls = 0
        while True:
            v = yield ("read32", self.reg["ctrl"])     # clears ap_done
            polls += 1
            if v & done:
                break
            if polls >= self.max_polls:
                raise DriverError(f"no ap_done after {polls} polls of CTRL")
            yield ("wait",)
        status = yield ("read32", self.reg["status"])
        ecyc = yield ("read32", self.reg["engine_cycles"])
        tcyc = yield ("read32", self.reg["total_cycles"])
        isr = yield ("read32", self.reg["isr"])
        if isr:
            yield ("write32", self.reg["isr"], isr)    # toggle-on-write: clears what was read
        errors = [n for n, b in rm["status_bits"].items() if n not in ("error", "busy") and status >> b & 1]
        y = []
        if not errors:
            data = yield ("mem_read", layer.addr["y"], layer.y_words * strides["y"])
            y = unpack_words(data, strides["y"], rm["word_bits"]["y"])
        return LayerOutcome(status, errors, ecyc, tcyc, polls, y)

    # -- runners --------------------------------------------------------------------------------
    def _sync(self, gen):
        result = None
        while True:
            try:
                op = gen.send(result)
            except StopIteration as stop:
                return stop.value
            result = self.io[op[0]](*op[1:])

    async def _async(self, gen):
        result = None
        while True:
            try:
                op = gen.send(result)
            except StopIteration as stop:
                return stop.value
            result = self.io[op[0]](*op[1:])
            if inspect.isawaitable(result):
                result = await result

    def run_layer(self, layer: AxiLayer, **kw) -> LayerOutcome:
        """Load x, w and p, program the descriptor, start, poll CTRL for ap_done, read the
        status, the cycle counters and (when there is no error) y. ``load=False`` skips
        loading the tensors; ``interrupts=True`` enables both interrupts first."""
        return self._sync(self._layer(layer, **kw))

    async def arun_layer(self, layer: AxiLayer, **kw) -> LayerOutcome:
        """:meth:`run_layer` for awaitable callables (cocotb)."""
        return await self._async(self._layer(layer, **kw))
