"""Pipelined multi-lane requantizer: int32 accumulators to int8/uint8, bit-exact with a named
framework path, chosen by a parameter: TFLite's reference kernels (``tflite``), its optimized
kernels (``tflite_opt``), TFLM / CMSIS-NN single rounding (``tflite_single``), ONNX Runtime's
float32 path (``onnx``) or the XNNPACK delegate (``xnnpack``).

Per lane, every cycle: ``v = wrap32(acc + bias)``, ``y = scale(v)`` by ``rounding``, then
``out = clamp(y + zero_point, act_min, act_max)``. The semantics are those of
``convgen.golden.requant.requantize`` (see docs/requant.md); the float modes (``onnx``,
``xnnpack``) use the integer algorithm of ``convgen.golden.quant.scale_onnx_int``, checked
against float32 arithmetic there.

Per-channel parameters live in a parameter memory (one ``amaranth.lib.memory.Memory`` of ``groups``
entries per lane)
written through the ``p`` stream; each ``i`` beat names the entry (``group``) its lanes use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from convgen.core.intrange import IntRange
from convgen.core.fields import Config, param
from convgen.core.params import ConfigError
from convgen.core.quant import (FLOAT_ROUNDINGS, INT32, OPT_AWAY_BIT, OPT_MULTIPLIER_MAX, OUT_WIDTH_MAX, OUT_WIDTH_MIN,
                               ROUNDINGS, SHIFT_MAX, SHIFT_MIN, float_scale_ranges)
from .lib import FlatArrayLayout, index_range, partial_products, slices, step_queue, tree_sum
from .shapes import fits, range_of, shape_of

__all__ = ["RequantConfig", "Requantizer", "ROUNDINGS", "MULT_STYLES", "MAX_LANES", "MAX_GROUPS"]

MAX_LANES = 64
MAX_GROUPS = 1024
OUTPUT_FIFO_DEPTH = 4

# Pipeline stages from the input register to the FIFO write, per mode (see elaborate).
_STAGES = {"tflite": 7, "tflite_opt": 7, "tflite_single": 5, "onnx": 10, "xnnpack": 10}
#: of the float modes' stages, those added for Fmax (1b and 7, docs/requant.md); the area-first
#: ``serial`` lane has neither
_FMAX_STAGES = 2

#: how the scale product is built: ``dsp`` (Amaranth ``*``: a DSP block on FPGAs), ``dsp2`` (the
#: products of 17-bit operand slices, each a DSP, registered, and added in the next stage), ``lut``
#: (partial products added in two pipeline stages, no ``*``: LUTs and carry chains) or
#: ``serial`` (float modes: a digit-serial product over ``serial_digits`` steps, no ``*``; one
#: beat per ``serial_digits + 1`` steps)
MULT_STYLES = ("dsp", "lut", "serial", "dsp2")
#: the styles whose product takes two pipeline stages (registered parts, then their sum)
_TWO_STAGE = ("lut", "dsp2")
# partial-product groups registered in the first stage of a ``lut`` product
_LUT_GROUPS = 4
#: serial_digits used when mult_style="serial" leaves it at 0
DEFAULT_SERIAL_DIGITS = 4
#: bits of the float modes' scale significand, which a serial product takes in digits
_SIG_BITS = 24
#: the lowest product bit a serial product keeps (the float32 rounding reads bits 22 and 23 of
#: the 48-bit significand product and a sticky bit of those below)
_SERIAL_KEEP = 22


@dataclass(frozen=True)
class RequantConfig(Config):
    """Parameters of a :class:`Requantizer`, checked on construction.

    Parameters
    ----------
    lanes : int, 1..64
        Accumulators per beat (values per cycle).
    groups : int, 1..1024
        Parameter-memory entries per lane; channel ``group*lanes + lane``.
    rounding : "tflite", "tflite_opt", "tflite_single", "onnx" or "xnnpack"
        The framework path to match (docs/requant.md has the table).
    out_width : int, 2..16
        Output bits (default 8).
    out_signed : bool
        int8-like (default) or uint8-like output.
    mult_style : "dsp", "dsp2", "lut" or "serial"
        ``dsp`` (default): the scale product is an Amaranth ``*`` (DSP blocks on FPGAs, 4
        SB_MAC16 per lane on iCE40). ``dsp2``: the same product in two pipeline stages (one
        stage more latency): the four products of the operands' 17-bit slices
        (:func:`~convgen.hdl.lib.arith.slices`, each one 18x18 DSP, e.g. MULT18X18D), registered,
        then their sum, so no path runs from a DSP through the adders of the other slices
        (the ECP5 engine's critical path with ``dsp``, bench/results/synth_engine.md).
        ``lut``: the same exact product as partial products
        without ``*``, in two pipeline stages (one stage more latency), so that yosys maps it
        to LUTs and leaves the DSPs to other blocks. ``serial`` (``onnx`` and ``xnnpack``
        only): the 25 x 24-bit significand product one digit of ``ceil(24/serial_digits)``
        scale bits per step, LSB first, in one small adder; a beat then occupies the product
        for ``serial_digits`` steps, so the lanes take one beat every :attr:`interval` =
        ``serial_digits + 1`` steps (``serial_digits - 1`` stages more latency than ``dsp``).
    serial_digits : int, 0 or 2..24
        Steps of a ``serial`` product (0: 4 with ``serial``; must be 0 with the other styles).
    """

    # checked by Config.__post_init__ against these declarations
    lanes: int = param(4, "values per cycle", lo=1, hi=MAX_LANES)
    groups: int = param(4, "parameter entries per lane (channel = group*lanes + lane)", lo=1, hi=MAX_GROUPS)
    rounding: str = param("tflite", "the framework path to match bit for bit (docs/requant.md)",
                          choices=ROUNDINGS)
    out_width: int = param(8, "output bits", lo=OUT_WIDTH_MIN, hi=OUT_WIDTH_MAX)
    out_signed: bool = param(True, "int8-like output (--out-unsigned: uint8-like)",
                             flags=("--out-signed", "--out-unsigned"))
    mult_style: str = param("dsp", "scale product: dsp (Amaranth *, DSP blocks) or dsp2 (17-bit slice products on "
                                   "DSPs, registered, summed in one more pipeline stage: for Fmax) or lut (partial "
                                   "products without *, one more pipeline stage; keeps the DSPs free) or serial "
                                   "(onnx/xnnpack: digit-serial, one beat per serial_digits+1 cycles)",
                            choices=MULT_STYLES)
    serial_digits: int = param(0, "steps of a serial scale product (0: 4 with --mult-style serial)", lo=0,
                               hi=_SIG_BITS)

    #: left out of to_dict at 0: the manifests of the other styles are unchanged
    _OMITTED_AT_DEFAULT = ("serial_digits",)

    def __post_init__(self):
        super().__post_init__()
        if self.mult_style != "serial":
            if self.serial_digits != 0:
                raise ConfigError(f"serial_digits applies to mult_style 'serial' only (0 with "
                                  f"{self.mult_style!r}), not {self.serial_digits}")
            return
        if self.rounding not in FLOAT_ROUNDINGS:
            raise ConfigError(f"mult_style 'serial' needs rounding onnx or xnnpack (a float scale's 24-bit "
                              f"significand), not {self.rounding!r}")
        if self.serial_digits == 0:
            object.__setattr__(self, "serial_digits", DEFAULT_SERIAL_DIGITS)
        if not 2 <= self.serial_digits <= _SIG_BITS:
            raise ConfigError(f"serial_digits must be 2..{_SIG_BITS} with mult_style 'serial', not "
                              f"{self.serial_digits}")

    @property
    def serial_digit_bits(self) -> int:
        """Scale-significand bits per step of a ``serial`` product (0 otherwise)."""
        return -(-_SIG_BITS // self.serial_digits) if self.mult_style == "serial" else 0

    @property
    def interval(self) -> int:
        """Cycles between input beats in steady state with no stalls: 1, or ``serial_digits +
        1`` with ``mult_style="serial"`` (the product's steps and the step that hands it on)."""
        return self.serial_digits + 1 if self.mult_style == "serial" else 1

    @property
    def out_range(self) -> IntRange:
        return IntRange.of_operand(self.out_width, self.out_signed)

    @property
    def out_shape(self) -> Shape:
        return shape_of(self.out_range)

    @property
    def stages(self) -> int:
        """Pipeline registers of a beat, from the input register to the output register that
        feeds the FIFO, inclusive."""
        if self.mult_style == "serial":
            extra = self.serial_digits - 1 - _FMAX_STAGES
        else:
            extra = int(self.mult_style in _TWO_STAGE)
        return _STAGES[self.rounding] + extra

    @property
    def fifo_latency(self) -> int:
        return 2

    @property
    def latency(self) -> int:
        """Cycles from an input transfer to the transfer of its result, with no stalls (the
        input transfer's cycle is 0)."""
        return self.stages + self.fifo_latency

    @property
    def throughput(self) -> float:
        """Values per cycle in steady state with no stalls: ``lanes / interval``."""
        return self.lanes / self.interval if self.interval > 1 else self.lanes

    @property
    def module_name(self) -> str:
        s = "s" if self.out_signed else "u"
        mul = {"dsp": "", "dsp2": "_mdsp2", "lut": "_mlut", "serial": f"_mser{self.serial_digits}"}[self.mult_style]
        return f"convgen_requant_{self.rounding}_l{self.lanes}_g{self.groups}_o{s}{self.out_width}{mul}"

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in self._OMITTED_AT_DEFAULT:
            if d[k] == 0:
                del d[k]
        return d

    # -- layouts (defined once; tb/ and sim/ read them through the manifest) --------------
    @cached_property
    def i_layout(self) -> data.StructLayout:
        return data.StructLayout({"acc": data.ArrayLayout(signed(32), self.lanes),
                                  "group": unsigned(Shape.cast(index_range(self.groups)).width)})

    @cached_property
    def p_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "group": unsigned(Shape.cast(index_range(self.groups)).width),
            "lane": unsigned(Shape.cast(index_range(self.lanes)).width),
            "bias": signed(32),
            # tflite, tflite_single: int32 Q31 multiplier; tflite_opt: the multiplier in bits
            # 0..30, bit 31 = round_away; onnx, xnnpack: float32 bits of the scale
            "mult": unsigned(32),
            "shift": signed(6),     # tflite modes: -31..30, positive = left; float modes: ignored
            "zero_point": self.out_shape,
            "act_min": self.out_shape,
            "act_max": self.out_shape,
        })

    @cached_property
    def o_layout(self) -> data.ArrayLayout:
        return FlatArrayLayout(self.out_shape, self.lanes)


class Requantizer(wiring.Component):
    """Requantize ``lanes`` int32 accumulators per cycle.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"acc": ArrayLayout(signed(32), lanes), "group": ...})))
        Accumulators; lane ``l`` uses parameter entry ``(group, l)``.
    p : In(stream.Signature(StructLayout({"group", "lane", "bias", "mult", "shift",
        "zero_point", "act_min", "act_max"})))
        Parameter writes, one lane entry per beat; always ready. An ``i`` beat reads the
        parameters when it is transferred: a write in the same cycle is seen by later beats
        only. The memory is not cleared by reset.
    o : Out(stream.Signature(ArrayLayout(out_shape, lanes)))
        Results, in input order.

    Protocol: amaranth.lib.stream. ``i.ready`` comes from the output FIFO's level (never
    combinationally from ``o.ready``): every pipeline register advances only when the FIFO
    can take a beat, so backpressure loses or duplicates nothing. Reset (``rst``,
    synchronous, active high) empties the pipeline and the FIFO.

    Timing: ``lanes`` values per ``config.interval`` cycles (1, or ``serial_digits + 1`` with
    ``mult_style="serial"``, whose ``i.ready`` is also low while the previous beat is in its
    first ``serial_digits`` stages); latency ``config.latency`` cycles.
    """

    def __init__(self, config: RequantConfig | None = None):
        config = RequantConfig() if config is None else config
        if not isinstance(config, RequantConfig):
            raise TypeError(f"config must be a RequantConfig, not {config!r}")
        self._config = config
        super().__init__({
            "i": In(stream.Signature(config.i_layout)),
            "p": In(stream.Signature(config.p_layout)),
            "o": Out(stream.Signature(config.o_layout)),
        })

    @property
    def config(self) -> RequantConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        # the output queue's i.ready is the global step enable (combinational from its level)
        en, write_beat = step_queue(m, self.o, cfg.o_layout, OUTPUT_FIFO_DEPTH)
        m.d.comb += self.p.ready.eq(1)
        if cfg.interval == 1:
            m.d.comb += self.i.ready.eq(en)

        # Data registers advance only while the pipeline holds a beat (``active``); a beat's
        # data is used only where its valid flag is, so this changes no output, and an idle
        # requantizer (most cycles of a layer with a large K) then costs a Verilator model
        # almost nothing. The valid flags advance with ``en`` alone.
        active = Signal(name="active")

        def reg(value, name, shape=None, *, reset=False, when=None):
            """``value`` registered in cycles where the pipeline advances (``en``; data
            registers: ``active``). Only the valid flags are ``reset``: the data registers need
            none, and a reset-less register costs less (logic and a Verilator model's work).
            ``when``: load only in steps where ``when`` is high (the register then holds its
            beat until the next one; a ``serial`` product reads it over several steps)."""
            if shape is None:
                shape = value.shape()
            r = Signal(shape, name=name, reset_less=not reset)
            with m.If(en & when if when is not None else (en if reset else active)):
                m.d.sync += r.eq(value)
            return r

        # ---- parameter memory: one Memory per lane, ``groups`` entries, not reset --------
        # Written from the p stream; read synchronously with the pipeline's enable, so the
        # read register is the first pipeline stage of the parameters (as a register of an
        # Array mux would be, but block or LUT RAM on an FPGA and an array in simulation).
        fields = ["bias", "mult", "zero_point", "act_min", "act_max"]
        if cfg.rounding not in FLOAT_ROUNDINGS:
            fields.append("shift")
        p = self.p.payload
        entry = data.StructLayout({f: cfg.p_layout[f].shape for f in fields})

        take = Signal()
        valids = [reg(take, "v0", reset=True)]
        for k in range(1, cfg.stages):
            valids.append(reg(valids[-1], f"v{k}", reset=True))
        if cfg.interval > 1:
            # a serial product holds its beat for serial_digits steps: a beat is taken only
            # when the previous one is at least `interval` steps ahead (valid flags 0 ..
            # interval - 2 are clear), so two beats never share the product
            m.d.comb += self.i.ready.eq(en & ~Cat(*valids[:self._serial_spacing(cfg.interval) - 1]).any())
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        m.d.comb += active.eq(en & Cat(take, *valids[:-1]).any())
        results = []
        for lane in range(cfg.lanes):
            # depth >= 2: a one-entry memory would have a zero-width address ("wire [-1:0]")
            m.submodules[f"pmem{lane}"] = mem = Memory(shape=entry, depth=max(cfg.groups, 2), init=[])
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(p.group), wp.en.eq(self.p.valid & (p.lane == lane))]
            m.d.comb += [wp.data[f].eq(p[f]) for f in fields]
            rp = mem.read_port(domain="sync")    # not transparent: a write is seen by later beats
            # serial: read only at a transfer, so the read register holds the beat's parameters
            # until the next transfer (at least `interval` steps later) and no pipeline register
            # has to carry them to stage 3 (_onnx)
            m.d.comb += [rp.addr.eq(self.i.payload.group), rp.en.eq(take if cfg.interval > 1 else en)]
            prm = {f: rp.data[f] for f in fields}
            acc = reg(self.i.payload.acc[lane], f"l{lane}_acc0", signed(32))
            results.append(self._lane(m, reg, lane, acc, prm, valids, en))
        # lanes concatenated in o_layout order (lane 0 in the low bits). Not through a
        # Signal(o_layout): its per-element debug wires "out[k]" collide with the bit names
        # that yosys' ABC reintegration gives "out" (ice40 assertion count_id(wire->name) == 0)
        m.d.comb += write_beat(valids[-1], Cat(*results))
        return m

    # -------------------------------------------------------------------------------------
    def _lane(self, m, reg, lane, acc, prm, valids, en):
        """One lane's datapath; returns its clamped output, ``stages - 1`` registers after
        the input register. Every width comes from an IntRange of ``WIDTHS`` (see
        :func:`datapath_ranges`), checked there at elaboration."""
        cfg = self._config
        R = datapath_ranges(cfg)
        n = f"l{lane}_"
        keep = {}
        late = ["zero_point", "act_min", "act_max"]   # used only by the last stage

        def carry(names, k, when=None):
            """Carry parameters one stage further: ``mult``/``shift`` in a register each
            (``{n}{f}{k}``), the ``late`` ones together in one (``{n}late{k}``; the same
            flip-flops, one variable instead of three in a Verilator model)."""
            for f in names:
                if f not in late:
                    keep[f] = reg(keep.get(f, prm.get(f)), f"{n}{f}{k}", when=when)
            packed = [f for f in late if f in names]
            if packed:
                values = [Value.cast(keep.get(f, prm.get(f))) for f in packed]
                r, pos = reg(Cat(*values), f"{n}late{k}", when=when), 0
                for f, v in zip(packed, values):
                    keep[f] = r[pos:pos + len(v)].as_signed() if v.shape().signed else r[pos:pos + len(v)]
                    pos += len(v)

        def wire(value, key, name):
            """``value`` as a combinational signal of the shape of range ``R[key]``."""
            w = Signal(shape_of(R[key]), name=f"{n}{name}")
            m.d.comb += w.eq(value)
            return w

        # stage 1: v = wrap32(acc + bias) (the sum range R["acc_bias"] is wrapped to int32)
        s = reg((acc + prm["bias"])[:32].as_signed(), f"{n}v1", shape_of(R["v"]))
        if cfg.interval == 1:
            carry(late + ["mult"] + (["shift"] if "shift" in prm else []), 1)

        if cfg.rounding in ("tflite", "tflite_opt"):
            # tflite_opt differs in two places: the multiplier is the word's low 31 bits (so
            # SRDHM cannot saturate) and the final shift rounds ties up unless the channel's
            # round_away bit (bit 31) is set
            opt = cfg.rounding == "tflite_opt"
            shift = keep["shift"]
            # stage 2: x << left_shift, wrapped to int32 (TFLite's int32 shift)
            ls = wire(Mux(shift > 0, shift, 0), "left_shift", "ls")
            rs = Mux(shift < 0, -shift, 0)
            x = reg((s << ls)[:32].as_signed(), f"{n}x2", shape_of(R["x"]))
            rsh = reg(rs, f"{n}rs2", shape_of(R["right_shift"]))
            carry(late + ["mult"], 2)
            if opt:
                mult = keep["mult"][:OPT_AWAY_BIT]
                flag = keep["mult"][OPT_AWAY_BIT]           # round_away
            else:
                mult = keep["mult"].as_signed()
                flag = (x == INT32.lo) & (mult == INT32.lo)  # SRDHM's saturation
            tag = "away" if opt else "ovf"
            if cfg.mult_style in _TWO_STAGE:
                # stage 3a: partial-product group sums or slice products; the other values wait one stage
                parts = self._parts(reg, x, mult, f"{n}pp3")
                flag, rsh = reg(flag, f"{n}{tag}3a"), reg(rsh, f"{n}rs3a")
                carry(late, "3a")
                product = tree_sum(parts)
            else:
                product = x * mult
            flag = reg(flag, f"{n}{tag}3")
            # stage 3: the 32x32 product
            ab = reg(product, f"{n}ab3", shape_of(R["product"]))
            rsh = reg(rsh, f"{n}rs3")
            carry(late, 3)
            # stage 4: SRDHM: (ab + nudge) / 2**31, truncating toward zero; the quotient fits
            # int32 except for INT32_MIN * INT32_MIN, which saturates
            v = wire(ab + Mux(ab >= 0, 1 << 30, 1 - (1 << 30)), "nudged", "nudged")
            trunc = Mux(v < 0, (v + ((1 << 31) - 1)) >> 31, v >> 31)
            if opt:
                high = reg(trunc[:32].as_signed(), f"{n}high4", shape_of(R["high"]))
                flag = reg(flag, f"{n}away4")
            else:
                high = reg(Mux(flag, INT32.hi, trunc[:32].as_signed()), f"{n}high4", shape_of(R["high"]))
            rsh = reg(rsh, f"{n}rs4")
            carry(late, 4)
            # stage 5: RoundingDivideByPOT(high, right_shift), right_shift 0..31 (tflite_opt:
            # ties up, (high + 2**(rs-1)) >> rs, unless round_away)
            # 2**rs - 1 as all-ones >> (31 - rs): no widening left shift
            mask = wire(Const(R["mask"].hi, shape_of(R["mask"])) >> _complement(R["right_shift"].hi, rsh), "mask", "mask")
            remainder = (high.as_unsigned() & mask)
            y = reg((high >> rsh) + (remainder > self._shift_threshold(mask, high, flag if opt else None)),
                    f"{n}y5", shape_of(R["y"]))
            carry(late, 5)
        elif cfg.rounding == "tflite_single":
            shift = keep["shift"]
            # stage 2: the 32x32 product; total shift ts = 31 - shift in 1..62, kept as ts - 1
            k = 30 - shift
            if cfg.mult_style in _TWO_STAGE:
                parts = self._parts(reg, s, keep["mult"].as_signed(), f"{n}pp2")   # stage 2a
                k = reg(k, f"{n}k2a", shape_of(R["half_shift"]))
                carry(late, "2a")
                product = tree_sum(parts)
            else:
                product = s * keep["mult"].as_signed()
            ab = reg(product, f"{n}ab2", shape_of(R["product"]))
            k = reg(k, f"{n}k2", shape_of(R["half_shift"]))
            carry(late, 2)
            # stage 3: (ab + 2**(ts-1)) >> ts == ((ab >> (ts-1)) + 1) >> 1 (floor division
            # throughout), saturated to int32. Saturating q = ab >> (ts-1) to
            # [2*INT32_MIN, 2*INT32_MAX] first leaves the final (q + 1) >> 1 in int32: no
            # 64-bit rounding constant or adder, and a 33-bit increment.
            q = wire(ab >> k, "shifted", "q")
            qs = wire(Mux(q > R["q_sat"].hi, R["q_sat"].hi, Mux(q < R["q_sat"].lo, R["q_sat"].lo, q)),
                      "q_sat", "qs")
            y = reg((qs + 1) >> 1, f"{n}y3", shape_of(R["y"]))
            carry(late, 3)
        else:
            y = self._onnx(m, reg, n, s, keep, carry, late, R, wire, valids, en)

        # last stage: + zero point, clamp (exact: the sum's width comes from the ranges)
        t = wire(y + keep["zero_point"], "with_zero_point", "t")
        lo, hi = keep["act_min"], keep["act_max"]
        out = Mux(t < lo, lo, Mux(t > hi, hi, t))
        return reg(out, f"{n}out", cfg.out_shape)

    # The two rounding decisions, as methods so that tb/requant/mutants.py can show that the
    # fixture and regression tests catch a wrong one.
    @staticmethod
    def _shift_threshold(mask, high, away):
        """The remainder above which the final right shift of the tflite modes rounds up:
        RoundingDivideByPOT (ties away from zero) when ``away`` is None (``tflite``) or set,
        ties up otherwise (``tflite_opt``)."""
        negative = high < 0
        return (mask >> 1) + (negative if away is None else negative & away)

    @staticmethod
    def _float_round_up_bits(above, tie, quotient):
        """Round half to even (float modes), from the comparisons of the remainder with the
        half (``above``: greater; ``tie``: equal, with a nonzero shift; registered in the
        two-stage form, from the half and sticky bits in the ``serial`` lane): above half, or
        exactly half with an odd quotient."""
        return above | (tie & quotient[0])

    def _parts(self, reg, a, b, name):
        """The first stage of a two-stage product ``a * b`` (``mult_style`` in ``_TWO_STAGE``):
        registered values whose sum (``tree_sum``, the next stage) is exactly ``a * b``."""
        return (self._lut_parts if self._config.mult_style == "lut" else self._dsp2_parts)(reg, a, b, name)

    @staticmethod
    def _dsp2_parts(reg, a, b, name):
        """The first stage of a ``dsp2`` product ``a * b``: the product of every pair of 17-bit
        slices (:func:`~convgen.hdl.lib.arith.slices`: four 18x18 products for the requantizer's
        operands, at most 32 bits), each registered, then shifted into place (wiring)."""
        return [reg(x * y, f"{name}_{i}_{j}") << (sx + sy)
                for i, (x, sx) in enumerate(slices(a)) for j, (y, sy) in enumerate(slices(b))]

    @staticmethod
    def _lut_parts(reg, a, b, name):
        """The first stage of a ``lut`` product ``a * b``: the partial products of ``b``'s bits
        (hdl/lib/arith.py) in ``_LUT_GROUPS`` contiguous groups, each group's sum registered
        (exact widths); the next stage adds the group sums with ``tree_sum``."""
        rows = partial_products(a, b)
        size = -(-len(rows) // _LUT_GROUPS)
        return [reg(tree_sum(rows[i:i + size]), f"{name}_{i // size}") for i in range(0, len(rows), size)]

    @staticmethod
    def _serial_spacing(interval):
        """Steps from one input beat to the next that a ``serial`` product allows (a method so
        that tb/requant/mutants.py can show that an off-by-one spacing is caught)."""
        return interval

    def _serial_product(self, m, n, a, b, steps):
        """``a * b`` (unsigned, ``b`` of at most ``_SIG_BITS`` bits) digit-serially, LSB first:
        in the step where ``steps[k]`` is high (one-hot, one step per digit, in order), ``acc +
        a * digit_k`` (radix-4 rows) is split into its low ``d`` bits, shifted into ``low``, and the rest, the
        next ``acc`` (the first step starts from 0). Invariant ``acc <= a``, so ``acc`` is as
        wide as ``a`` and the adder ``d`` bits wider. Returns ``acc``, ``low``, the adder's
        sum and ``d``; the product is ``Cat(low, acc)`` from the step after the last digit
        until the next beat's first step (the caller updates ``acc`` and ``low``)."""
        cfg = self._config
        D, d = cfg.serial_digits, cfg.serial_digit_bits
        padded = Cat(b, Const(0, D * d - len(b)))
        digit = Signal(d, name=f"{n}digit")
        parts = [Mux(f, padded[k * d:(k + 1) * d], 0) for k, f in enumerate(steps)]
        value = parts[0]
        for p in parts[1:]:
            value = value | p
        m.d.comb += digit.eq(value)
        acc = Signal(len(a), name=f"{n}sacc", reset_less=True)
        # of the low product bits only those from _SERIAL_KEEP up are kept (the float32
        # rounding reads bits 22 and 23 and whether any bit below 22 is set: `sticky`)
        low = Signal(D * d - _SERIAL_KEEP, name=f"{n}slow", reset_less=True)
        total = Signal(len(a) + d, name=f"{n}ssum")
        # radix 4: each 2-bit group g of the digit selects 0, a, 2a or 3a (3a = a + 2a, once
        # per beat), so a digit of d bits adds ceil(d/2) rows instead of d (one adder and one
        # AND per bit fewer per pair; 3a's adder is shared by every step)
        a3 = Signal(len(a) + 2, name=f"{n}a3")
        m.d.comb += a3.eq(a + (a << 1))
        rows = [Mux(digit[j + 1], Mux(digit[j], a3, a << 1), Mux(digit[j], a, 0)) << j for j in range(0, d - 1, 2)]
        if d % 2:
            rows.append(Mux(digit[d - 1], a << (d - 1), 0))
        m.d.comb += total.eq(tree_sum([Mux(steps[0], 0, acc), *rows]))
        return acc, low, total, d

    def _onnx(self, m, reg, n, s, keep, carry, late, R, wire, valids, en):
        """round_half_even(float32(s) * scale) in integers (golden/quant.py scale_onnx_int)."""
        serial = self._config.mult_style == "serial"
        if serial:
            # the small-area lane (its stage numbers and valid flags below assume no 1b stage)
            neg = s < 0
            # |s| with -s = ~(s - 1): the decrement's sum and the select fit one LUT per bit
            mag = wire(Mux(neg, ~(s - 1), s), "magnitude", "mag")
        else:
            # stage 1b: sign and magnitude (registered: the negation's carry chain and the
            # normaliser's five levels in one stage were a critical path on ECP5, docs/requant.md)
            neg = reg(s < 0, f"{n}neg1b")
            mag = reg(Mux(s < 0, -s, s), f"{n}mag1b", shape_of(R["magnitude"]))
            carry(late + ["mult"], "1b")
        # stage 2: normalisation by the leading-zero count
        # A logarithmic normalizer: at level k, if the top 2**k bits are zero, shift left by
        # 2**k; the shifts taken are the bits of the leading-zero count lz, and the result is
        # (mag << lz)[:32]. (mag == 0 gives lz = 31 = R["lz"].hi and 0.) Five 2:1 mux levels
        # instead of a 32-way priority encoder followed by a barrel shifter.
        width = R["magnitude"].width
        assert width == 1 << (width.bit_length() - 1), "the normalizer needs a power-of-two width"
        v, lz_bits = mag, []
        for k in reversed(range(width.bit_length() - 1)):
            top_zero = Signal(name=f"{n}lz_b{k}")
            shifted = Signal(width, name=f"{n}norm{k}")
            m.d.comb += [top_zero.eq(v[width - (1 << k):] == 0), shifted.eq(Mux(top_zero, v << (1 << k), v))]
            v, lz_bits = shifted, [top_zero] + lz_bits
        lz = wire(Cat(*lz_bits), "lz", "lz")
        nm = reg(v, f"{n}nm2", shape_of(R["normalised"]))
        lz2 = reg(lz, f"{n}lz2")
        neg2 = reg(neg, f"{n}neg2")
        if not serial:
            carry(late + ["mult"], 2)
        # stage 3: float32(|s|) = fm * 2**(8-lz), fm rounded half to even to 24 bits (<= 2**24)
        # serial: the stage-3 registers load only with a beat and hold it while the product
        # reads them (serial_digits steps) and the step after it reads u_pre, neg and late;
        # mult and late load straight from the parameter memory's read register, which holds
        # them from the beat's transfer (step 0) until the next transfer (step >= interval =
        # serial_digits + 1 > 3)
        hold = valids[2] if serial else None
        q, rem = nm[8:32], nm[0:8]
        fm = reg(q + ((rem > 0x80) | ((rem == 0x80) & q[0])), f"{n}fm3", shape_of(R["fm"]), when=hold)
        lz3, neg3 = reg(lz2, f"{n}lz3", when=hold), reg(neg2, f"{n}neg3", when=hold)
        carry(late + ["mult"], 3, when=hold)
        bits = keep["mult"]
        sig = Cat(bits[0:23], Const(1, 1))     # 24-bit significand of the (normal) scale
        eb = bits[23:31]                       # biased exponent
        # u = 127 + lz - hi - eb: the right shift that takes R * 2**8 to the integer grid
        u_pre = 127 + lz3 - eb
        if serial:
            # steps 4 .. 3 + D (valid flags 3 .. 2 + D): one digit each; the product is then
            # in sacc/slow while the beat's flag is at 3 + D, the "p4" step of the other styles
            D = self._config.serial_digits
            steps = valids[3:3 + D]
            acc, low, total, d = self._serial_product(m, n, fm, sig, steps)
            step_en = Signal(name=f"{n}sstep")
            m.d.comb += step_en.eq(Cat(*steps).any() & en)
            # digit k's bit j is product bit k*d + j: from _SERIAL_KEEP up it goes to its place
            # in `low` (loaded by that digit's step only), below it into the sticky bit
            sticky = Signal(name=f"{n}ssticky", reset_less=True)
            below = []
            with m.If(step_en):
                m.d.sync += acc.eq(total[d:])
                for k, f in enumerate(steps):
                    for j in range(d):
                        pos = k * d + j
                        if pos >= _SERIAL_KEEP:
                            with m.If(f):
                                m.d.sync += low[pos - _SERIAL_KEEP].eq(total[j])
                        else:
                            below.append(f & total[j])
                m.d.sync += sticky.eq((sticky & ~steps[0]) | Cat(*below).any())
            # product bits from _SERIAL_KEEP up
            prod_top = Signal(R["sig_product"].width - _SERIAL_KEEP, name=f"{n}p4")
            m.d.comb += prod_top.eq(Cat(low, acc))
            u_pre = wire(u_pre, "u_pre", "u4")
            neg4 = neg3
        elif self._config.mult_style in _TWO_STAGE:
            # stage 4a: partial-product group sums (rows: the scale's 24 significand bits) or slice products
            parts = self._parts(reg, fm, sig, f"{n}pp4")
            u_pre, neg3 = reg(u_pre, f"{n}u4a", shape_of(R["u_pre"])), reg(neg3, f"{n}neg4a")
            carry(late, "4a")
            product = tree_sum(parts)
        else:
            product = fm * sig
        if not serial:
            # stage 4: exact product of the significands, in [2**46, 2**48) (or 0)
            prod = reg(product, f"{n}p4", shape_of(R["sig_product"]))
            u_pre = reg(u_pre, f"{n}u4", shape_of(R["u_pre"]))
            neg4 = reg(neg3, f"{n}neg4")
            carry(late, 4)
        # stage 5: the float32 product: keep the top 24 bits, half to even
        if serial:
            # from bits 22, 23 and the sticky bit of the bits below 22 (the same comparisons
            # as below), one increment after the mux
            P, k = prod_top, _SERIAL_KEEP
            hi = P[47 - k]
            b22, b23 = P[22 - k], P[23 - k]
            q_hi, q_lo = P[24 - k:48 - k], P[23 - k:48 - k]
            up_hi = b23 & (b22 | sticky | q_hi[0])      # r_hi > 2**23, or == 2**23 with q_hi odd
            up_lo = b22 & (sticky | q_lo[0])            # r_lo > 2**22, or == 2**22 with q_lo odd
            r_next = Mux(hi, q_hi, q_lo) + Mux(hi, up_hi, up_lo)
        else:
            hi = prod[47]
            q_hi, r_hi = prod[24:48], prod[0:24]
            q_lo, r_lo = prod[23:48], prod[0:23]
            up_hi = (r_hi > (1 << 23)) | ((r_hi == (1 << 23)) & q_hi[0])
            up_lo = (r_lo > (1 << 22)) | ((r_lo == (1 << 22)) & q_lo[0])
            r_next = Mux(hi, q_hi + up_hi, q_lo + up_lo)
        if serial:
            # the small-area lane keeps only what its last stage reads: the bits of R from
            # R["r_cut"] up and whether any bit below is set (all of them lie below the half
            # bit of every shift the last stage computes, see there)
            cut = R["r_cut"].lo
            r_top = reg(r_next[cut:], f"{n}r5", shape_of(R["r_top"]))
            r_low = reg(r_next[:cut] != 0, f"{n}rlow5")
        else:
            r_val = reg(r_next, f"{n}r5", shape_of(R["r"]))
        u = u_pre - hi
        cap = R["u_sat"].hi
        u_sat = reg(Mux(u > cap, cap, Mux(u < 0, 0, u)), f"{n}u5", shape_of(R["u_sat"]))
        neg5 = reg(neg4, f"{n}neg5")
        # serial: late5 loads with the beat and holds it for `interval` steps, so the last stage
        # (two steps later) reads it without a stage-6 copy
        carry(late, 5, when=valids[3 + self._config.serial_digits] if serial else None)
        if serial:
            # stage 6: to an integer, half to even: y = round((R << 8) / 2**u), then saturated
            # at S = R["y_sat"].hi = out.hi - out.lo + 1. Saturating changes no output: a
            # zero point and clamp bounds in the output range map every |y| >= S to the same
            # bound as S (y + zero_point lies beyond the output range on the same side).
            # A nonzero R is at least 2**23, so every u <= u_lo = R["u_window"].lo - 1 gives
            # |y| >= S: only the shifts u in R["u_window"] are computed, on the top bits
            # r_top = R >> cut (cut = u_lo + 1 - 9): t = r_top >> w (w = u - u_lo - 1) holds
            # the quotient above its lowest bit, the half bit; the bits below the half bit
            # are r_low (R's bits below cut, below the half bit for every u of the window)
            # and r_top's bits below w. Equal to the mask form below (the tests compare both
            # with the golden model) with an r_top-wide shifter instead of a 33-bit one.
            u_lo = R["u_window"].lo - 1
            w = Signal(shape_of(R["u_offset"]), name=f"{n}w6")
            m.d.comb += w.eq(u_sat - (u_lo + 1))
            big = (r_top != 0) & (u_sat <= u_lo)
            t = Signal(len(r_top), name=f"{n}t6")
            m.d.comb += t.eq(r_top >> w)
            below = r_top & ~(Const((1 << len(r_top)) - 1, len(r_top)) << w)[:len(r_top)]
            sticky = r_low | (below != 0)
            qv = t[1:]
            # above half: the half bit and a sticky bit; exactly half: the half bit alone
            up = self._float_round_up_bits(t[0] & sticky, t[0] & ~sticky, qv)
            mag_y = wire(Mux(big, R["y_sat"].hi, qv + up), "y_magnitude", "ymag")
            return reg(Mux(neg5, -mag_y, mag_y), f"{n}y6", shape_of(R["y"]))
        x = wire(r_val << 8, "x", "x")
        # stage 6: to an integer, half to even: (R << 8) >> u. The shift and the comparisons of
        # the remainder with the half are registered here, the rounding increment and the sign
        # in stage 7: one barrel shifter and one comparator per stage (in one stage, they were
        # the requantizer's critical path on ECP5, docs/requant.md)
        qv = wire(x >> u_sat, "x", "q")
        mask = wire(Const(R["mask"].hi, shape_of(R["mask"])) >> _complement(cap, u_sat), "mask", "mask")  # 2**u - 1
        remv = x & mask
        half = mask & ~(mask >> 1)  # 2**(u-1) (the top bit of the mask), 0 when u == 0
        q6 = reg(qv, f"{n}q6", shape_of(R["x"]))
        above, tie = reg(remv > half, f"{n}above6"), reg((remv == half) & (u_sat != 0), f"{n}tie6")
        neg6 = reg(neg5, f"{n}neg6")
        carry(late, 6)
        # stage 7: + round-up (half to even), then the sign
        up = self._float_round_up_bits(above, tie, q6)
        mag_y = wire(q6 + up, "y_magnitude", "ymag")
        y = reg(Mux(neg6, -mag_y, mag_y), f"{n}y7", shape_of(R["y"]))
        carry(late, 7)
        return y


def _complement(k: int, amount):
    """``k - amount`` for ``amount`` in ``0..k``, as an unsigned shift amount of k's width."""
    return (k - amount)[:IntRange(0, k).width]


class WidthError(ConfigError):
    """A derived datapath range does not fit the width the design gives it."""


def _fits(ranges: dict, key: str, shape: Shape, why: str) -> None:
    rng = ranges[key]
    if not fits(rng, shape):
        raise WidthError(f"requant datapath: {key} range {rng.lo}..{rng.hi} does not fit {shape} ({why})")


def datapath_ranges(cfg: RequantConfig) -> dict[str, IntRange]:
    """The value range of every datapath signal of one lane, derived from the parameters, and
    checked (``WidthError``) where a width is fixed by an interface or a proof. Each signal's
    width is ``shape_of(ranges[name])``; docs/requant.md has the table."""
    P = cfg.p_layout
    out = cfg.out_range
    R = {"acc": INT32, "bias": range_of(P["bias"].shape)}
    R["acc_bias"] = R["acc"] + R["bias"]            # wrapped to int32 (documented)
    R["v"] = INT32
    if cfg.rounding not in FLOAT_ROUNDINGS:
        R["shift"] = IntRange(SHIFT_MIN, SHIFT_MAX)
        _fits(R, "shift", P["shift"].shape, "the p.shift field")
        if cfg.rounding == "tflite_opt":
            # the word's low 31 bits; bit 31 is round_away
            R["mult"] = IntRange(0, OPT_MULTIPLIER_MAX)
            _fits(R, "mult", unsigned(OPT_AWAY_BIT), "the multiplier bits of p.mult below round_away")
        else:
            R["mult"] = range_of(signed(P["mult"].shape.width))   # any int32 is accepted
        R["product"] = R["v"] * R["mult"]
    if cfg.rounding in ("tflite", "tflite_opt"):
        R["left_shift"] = IntRange(0, max(R["shift"].hi, 0))
        R["right_shift"] = IntRange(0, max(-R["shift"].lo, 0))
        R["x"] = INT32                                   # v << left_shift, wrapped to int32
        R["nudged"] = R["product"] + IntRange(1 - (1 << 30), 1 << 30)
        # the product without INT32_MIN * INT32_MIN (saturated separately; tflite_opt's
        # multiplier is never negative): its quotient fits
        top = R["product"].hi if cfg.rounding == "tflite_opt" else INT32.lo * (INT32.lo + 1)
        unsat = IntRange(R["product"].lo, top) + IntRange(1 - (1 << 30), 1 << 30)
        R["quotient"] = IntRange(-((-unsat.lo) >> 31), unsat.hi >> 31)
        _fits(R, "quotient", signed(32), "SRDHM high half, truncated to int32")
        R["high"] = INT32
        R["mask"] = IntRange(0, (1 << R["right_shift"].hi) - 1)
        _fits(R, "mask", unsigned(32), "RoundingDivideByPOT mask of the int32 operand")
        R["y"] = R["high"] + IntRange(0, 1)              # (high >> rs) + round bit
    elif cfg.rounding == "tflite_single":
        R["total_shift"] = IntRange(31 - R["shift"].hi, 31 - R["shift"].lo)
        R["half_shift"] = IntRange(R["total_shift"].lo - 1, R["total_shift"].hi - 1)
        if R["half_shift"].lo < 0:
            raise WidthError("requant datapath: total shift 31 - shift must be >= 1")
        R["shifted"] = R["product"]                      # ab >> k with k >= 0
        R["q_sat"] = IntRange(2 * INT32.lo, 2 * INT32.hi)
        R["rounded"] = IntRange(R["q_sat"].lo + 1, R["q_sat"].hi + 1)
        R["y"] = IntRange(R["rounded"].lo >> 1, R["rounded"].hi >> 1)
        _fits(R, "y", signed(32), "int32 result after saturation")
    else:
        fr = float_scale_ranges(cfg.rounding)
        R["magnitude"] = IntRange(0, -INT32.lo)
        _fits(R, "magnitude", unsigned(32), "|v|, normalised within 32 bits")
        R["lz"] = IntRange(0, R["magnitude"].width - 1)
        R["normalised"] = IntRange(0, (1 << 32) - 1)
        R["fm"] = IntRange(0, 1 << 24)                   # 24-bit significand, may round up to 2**24
        R["sig"] = IntRange(1 << 23, (1 << 24) - 1)     # the scale's significand, hidden bit set
        R["sig_product"] = R["fm"] * R["sig"]
        _fits(R, "sig_product", unsigned(48), "the float32 product rounding reads bit 47")
        R["exponent"] = IntRange(0, 255)                 # the field: any 8 bits
        R["u_pre"] = IntRange(127, 127) + R["lz"] + IntRange(-R["exponent"].hi, -R["exponent"].lo)
        # for the accepted scales (exponent field in eb): u = 127 + lz - hi - eb, derived here
        # and in core.quant.float_scale_ranges (135 - hi - fexp - eb); the two must agree
        R["eb"] = fr["eb"]
        R["u"] = IntRange(127, 127) + R["lz"] + IntRange(-1, 0) + IntRange(-R["eb"].hi, -R["eb"].lo)
        if R["u"] != fr["u"]:
            raise WidthError(f"requant datapath: u range {R['u'].lo}..{R['u'].hi} differs from "
                             f"float_scale_ranges {fr['u'].lo}..{fr['u'].hi}")
        R["r"] = IntRange(0, 1 << 24)                    # product significand after rounding
        R["x"] = IntRange(0, R["r"].hi << 8)
        # a right shift u >= bit_length(x.hi) + 1 gives 0 with no round-up (half > x), so
        # the shift saturates there without changing any result
        R["u_sat"] = IntRange(0, R["x"].hi.bit_length() + 1)
        # A negative u (xnnpack: scales in [1, 256) give u down to -8) is an exact left shift
        # of x by -u; the datapath saturates u at 0 instead and outputs y = x. That changes no
        # output: a nonzero r is at least 2**23 (a normalised significand), so |y| and the
        # exact |x << -u| are both >= 2**31, beyond the output span, and the clamp of
        # y + zero_point gives act_max (act_min) either way. Checked here:
        if R["u"].lo < 0:
            R["x_nonzero_min"] = IntRange(1 << 31, 1 << 31)   # (2**23) << 8
            if R["x_nonzero_min"].lo <= out.hi - out.lo:
                raise WidthError(f"requant datapath: saturating u at 0 needs |y| >= 2**31 beyond the "
                                 f"output span {out.hi - out.lo}")
        R["mask"] = IntRange(0, (1 << R["u_sat"].hi) - 1)
        R["y_magnitude"] = R["x"] + IntRange(0, 1)
        if cfg.mult_style == "serial":
            # the small-area lane saturates |y| at S = out.hi - out.lo + 1 (exact after the
            # clamp: zero point and bounds lie in the output range) and computes only the
            # shifts u > u_lo, the largest u at which the smallest nonzero x, 2**31, still
            # gives |y| >= S; its shifter takes R's bits from r_cut = u_lo + 1 - 8 - 1 up
            R["y_sat"] = IntRange(0, out.hi - out.lo + 1)
            x_min = 1 << 31                              # (2**23) << 8, the smallest nonzero x
            u_lo = max(u for u in range(R["u_sat"].hi + 1) if (x_min >> u) >= R["y_sat"].hi)
            R["u_window"] = IntRange(u_lo + 1, R["u_sat"].hi)
            R["u_offset"] = IntRange(0, R["u_window"].hi - R["u_window"].lo)
            R["r_cut"] = IntRange(u_lo + 1 - 9, u_lo + 1 - 9)
            if R["r_cut"].lo < 0:
                raise WidthError(f"requant datapath: the serial lane's shift window starts at u = {u_lo + 1} < 9")
            R["r_top"] = IntRange(0, R["r"].hi >> R["r_cut"].lo)
            R["y_magnitude"] = IntRange(0, max(R["y_sat"].hi, (R["x"].hi >> R["u_window"].lo) + 1))
        R["y"] = IntRange(-R["y_magnitude"].hi, R["y_magnitude"].hi)
    R["with_zero_point"] = R["y"] + out
    R["out"] = out
    _fits(R, "out", cfg.out_shape, "output type")
    return R


_MULT_FIELD = {
    "onnx": "IEEE float32 bits of the scale, accepted range [2**-126, 1)",
    "xnnpack": "IEEE float32 bits of the scale, accepted range [2**-126, 256)",
    "tflite": "int32 Q31 multiplier, [2**30, 2**31) from quantize_multiplier",
    "tflite_single": "int32 Q31 multiplier, [2**30, 2**31) from quantize_multiplier",
    "tflite_opt": (f"bits 0..{OPT_AWAY_BIT - 1}: Q31 multiplier, [2**30, 2**31) from quantize_multiplier; "
                   f"bit {OPT_AWAY_BIT}: round_away (1: the final shift rounds ties away from zero, 0: up)"),
}


def manifest_extra(cfg: RequantConfig) -> dict:
    """Timing and arithmetic facts for the JSON manifest next to the Verilog."""
    return {
        "arithmetic": {
            "rounding": cfg.rounding,
            "bias_add": "wrap32(acc + bias)",
            "output": {"width": cfg.out_width, "signed": cfg.out_signed,
                       "range": [cfg.out_range.lo, cfg.out_range.hi]},
            "mult_field": _MULT_FIELD[cfg.rounding],
        },
        "timing": {"stages": cfg.stages, "fifo_latency": cfg.fifo_latency, "latency": cfg.latency,
                   "values_per_cycle": cfg.throughput,
                   "latency_formula": "stages + fifo_latency cycles from input transfer to output transfer"},
        "parameters_memory": {"entries_per_lane": cfg.groups, "channel": "group * lanes + lane",
                              "write": "p stream, always ready; an i beat reads at its transfer"},
    }
