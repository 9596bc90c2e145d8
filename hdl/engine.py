"""ConvEngine: a whole quantized convolution layer in hardware, from a descriptor to int8 output.

The engine composes the verified blocks: the :class:`~convgen.hdl.im2col.Im2colAddressGenerator`
in indirection mode (one pointer per output pixel and tap), an activation fetch unit that turns
pixel vectors read from memory into array beats, a weight fetch unit, the output-stationary
:class:`~convgen.hdl.systolic.SystolicArray` on 9-bit operands (zero points subtracted before
it), the :class:`~convgen.hdl.requant.Requantizer` with per-channel parameters loaded at layer
start, and a write-back unit. A sequencer tiles the layer (docs/engine.md has the loop nest,
the memory map, the descriptor, the cycle formula and every design decision).

Memory is reached through latency-tolerant request/response streams (``amaranth.lib.stream``),
one per tensor; responses come back in request order with any latency and any stalls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from convgen.core.fields import Config, param
from convgen.core.params import ConfigError
from convgen.core.quant import ROUNDINGS
from .im2col import Im2colAddressGenerator, Im2colConfig
from .lib.dsp import simulation_sources
from .requant import MAX_GROUPS, MULT_STYLES, RequantConfig, Requantizer

#: the array multipliers an engine can use (hdl/lib/dsp.py VARIANTS less ice40: 8-bit operands only)
ENGINE_DSP_VARIANTS = ("generic", "ecp5")
from .systolic import OUTPUT_FIFO_DEPTH as ARRAY_FIFO_DEPTH, SystolicArray, SystolicConfig
from .lib import index_range, lut_product

__all__ = ["EngineConfig", "ConvEngine", "manifest_extra"]

OPERAND_WIDTH = 9     # int8/uint8 minus a zero point of the same type: -255..255
PARAM_OUT_WIDTH = 9   # requantizer output: int8 and uint8 are both clamp ranges of signed 9
STATES = ("IDLE", "CHECK1", "CHECK2", "DECIDE", "WAITG", "PARAMS", "RUN")
# with mult_style "lut", "serial" or "dsp2" the descriptor checks' chained products take two more cycles
LUT_CHECK_STATES = ("CHECKA", "CHECKB")


def _bits(v: int) -> int:
    return max(1, int(v).bit_length())


def _above(value, top: int):
    """``value > top``, or constant 0 when ``value``'s width cannot exceed ``top`` (Verilator's
    CMPCONST is fatal on a comparison that is always false)."""
    if (1 << len(value)) - 1 <= top:
        return Const(0)
    return value > top


def _select(values, index):
    """``values[index]`` as a tree of ``Mux`` (continuous assignments). Amaranth lowers ``Array``
    indexing to an ``always @*`` block, which Icarus does not evaluate until one of its inputs
    changes, so its output can stay X after reset (docs/adding-a-block.md)."""
    values = list(values)
    bit = 0
    while len(values) > 1:
        values = [Mux(index[bit], values[i + 1], values[i]) if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
        bit += 1
    return values[0]


def _cdiv(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class EngineConfig(Config):
    """Elaboration-time parameters of a :class:`ConvEngine`.

    Parameters
    ----------
    rows, cols : int, 1..64
        Systolic array: ``rows`` output pixels x ``cols`` output channels per GEMM tile.
    vec : int, 1..64
        int8 channels per activation memory word (0: ``max(rows, 4)``). ``vec >= rows`` keeps
        the activation fetch at one array beat per cycle (docs/engine.md).
    max_h, max_w : int, 1..4096
        Largest input height and width.
    max_pixel_words : int, 1..4096
        Largest activation words per pixel (channel stride of x in words).
    max_kernel (1..31), max_stride (1..15), max_pad (0..31), max_dilation (1..15)
    max_tiles : int, 1..1024
        Largest number of output-channel tiles of a layer (requantizer parameter entries per lane).
    addr_width : int, 8..32
        Word address width of every memory port.
    rounding : "onnx", "tflite", "tflite_single", "tflite_opt" or "xnnpack"
        The requantizer's rounding (elaboration time, as in :class:`RequantConfig`).
    fetch_banks : int, 2..8
        Activation chunk buffers (each ``rows x vec`` bytes): chunks in flight, which hide the
        memory latency.
    weight_fifo : int, 3..64
        Weight words in flight or buffered. At least 3: the weight FIFO (Amaranth's
        ``SyncFIFOBuffered`` of this depth) takes a write only while its memory part, one word
        smaller, has room, and the weight responses are written without waiting (the credit
        counts words in flight or buffered). With 2, a response arriving the cycle after another
        found the one-word memory still holding the first word, and was lost: the layer hung
        (found on a 2x4 engine at memory latency 1; 2 is refused since).
    requant_lanes : int, 0..64
        Requantizer lanes (0: ``cols``). Fewer lanes than columns time-multiplex each array row
        of ``cols`` accumulators over ``cols / requant_lanes`` cycles (it must divide ``cols``);
        the engine then stays compute-bound while ``rows * cols / requant_lanes`` does not
        exceed the tile period ``max(K, rows, cols)`` (:meth:`compute_bound`).
    dsp : "generic" or "ecp5"
        The array's PE multipliers (:attr:`SystolicConfig.dsp`): ``ecp5`` instantiates one
        MULT18X18D per PE, its product register inside the DSP, same latency as ``generic``
        (the cycle formulas do not change). iCE40's two-per-SB_MAC16 variant takes 8-bit operands
        and the engine's are 9-bit (``x - x_zero_point``), so it is not offered here.
    pipeline_mult : int, 0..2
        The array's fast PE (:attr:`SystolicConfig.pipeline_mult`, with ``pipeline_operands``):
        1 adds the DSP's pipeline register, 2 also a fabric register after the DSP and a
        registered read-out row (the configuration that places fastest on ECP5, docs/systolic.md).
        The array's latency per tile grows by ``SystolicConfig.pe_latency`` and
        ``readout_latency``; the engine's cycle formula takes both from :attr:`systolic`.
    mult_style : "dsp", "dsp2", "lut" or "serial"
        ``dsp`` (default): the requantizer's scale product and the descriptor checks' products
        are Amaranth ``*`` (DSP blocks on FPGAs). ``dsp2``: as ``dsp``, but the requantizer's
        product in two stages (17-bit slice products registered, then summed: one more stage,
        :class:`RequantConfig`) and the checks' chained products one per cycle as with ``lut``
        (two more check cycles), for Fmax on ECP5 (bench/results/synth_engine.md). ``lut``: both
        are partial-product sums without ``*`` (hdl/lib/arith.py), so yosys leaves every DSP
        block to the array's PEs (the iCE40UP5K has exactly 8); the requantizer gets one more pipeline stage and the checks two more
        cycles (:attr:`check_cycles`). ``serial`` (rounding ``onnx``/``xnnpack``): the checks
        as with ``lut``, the requantizer's product digit-serial (:class:`RequantConfig`), a beat
        every ``serial_digits + 1`` cycles: about 1,000 LUT4 less than ``lut`` per lane on iCE40,
        compute-bound while ``rows * cols / requant_lanes * (serial_digits + 1)`` does not exceed
        the tile period.
    serial_digits : int, 0 or 2..24
        Steps of the requantizer's ``serial`` product (0: 4 with ``serial``; 0 otherwise).
    acc_width : int, 0 or 18..32
        The array's accumulator bits (default 32). 0: the fewest bits with which no K the maxima
        allow (``max_kernel**2 * max_pixel_words * vec``) can overflow (25 for 3x3 kernels and
        16 channels); a width below that is an error. The requantizer still adds the bias in
        int32 (the accumulator sign-extended), so results do not change; the array's adders,
        registers and output queue get narrower.
    """

    # Config.__post_init__ checks each field against its declaration, in this order.
    rows: int = param(8, "array rows: output pixels per GEMM tile", lo=1, hi=64)
    cols: int = param(8, "array columns: output channels per GEMM tile", lo=1, hi=64)
    vec: int = param(0, "int8 channels per activation memory word (0: max(rows, 4))", lo=0, hi=64)
    max_h: int = param(64, "largest input height", lo=1, hi=4096)
    max_w: int = param(64, "largest input width", lo=1, hi=4096)
    max_pixel_words: int = param(64, "largest activation words per pixel", lo=1, hi=4096)
    max_kernel: int = param(11, "largest kernel height or width", lo=1, hi=31)
    max_stride: int = param(4, "largest stride", lo=1, hi=15)
    max_pad: int = param(5, "largest pad on any side", lo=0, hi=31)
    max_dilation: int = param(3, "largest dilation", lo=1, hi=15)
    max_tiles: int = param(64, "largest number of output-channel tiles of a layer", lo=1, hi=1024)
    addr_width: int = param(24, "word address bits of every memory port", lo=8, hi=32)
    rounding: str = param("onnx", "requantizer rounding: onnx, tflite, tflite_single, tflite_opt or xnnpack (docs/requant.md)", choices=ROUNDINGS)
    fetch_banks: int = param(4, "activation chunk buffers (chunks in flight)", lo=2, hi=8)
    weight_fifo: int = param(8, "weight words in flight or buffered", lo=3, hi=64)
    debug_fault: str = param("", "inject a known fault, to show that a testbench catches it "
                             "(pad_value: padded taps read memory; tile_edge: the last output pixel "
                             "is never written; requant_lane: with requant_lanes < cols, the second "
                             "time slot of a row requantizes the first slot's accumulators)",
                             choices=("", "pad_value", "tile_edge", "requant_lane"))
    requant_lanes: int = param(0, "requantizer lanes (0: cols); fewer time-multiplex each array row over "
                                  "cols/requant_lanes cycles (must divide cols)", lo=0, hi=64)
    mult_style: str = param("dsp", "requantizer and descriptor-check products: dsp (Amaranth *, DSP blocks) or "
                                   "dsp2 (as dsp, the requantizer's product in two stages and the checks' products "
                                   "one per cycle: one more requantizer stage, two more check cycles, for Fmax) or "
                                   "lut (partial products without *, every DSP left to the array; one more "
                                   "requantizer stage, two more check cycles) or serial (checks as lut, a "
                                   "digit-serial requantizer product: one beat per serial_digits+1 cycles; "
                                   "onnx/xnnpack)", choices=MULT_STYLES)
    dsp: str = param("generic", "the array's multipliers: generic (Amaranth *, mapped by the synthesizer) or ecp5 "
                                "(one MULT18X18D per PE with its output register, hdl/lib/dsp.py; simulation "
                                "builds compile its model)", choices=ENGINE_DSP_VARIANTS)
    pipeline_mult: int = param(0, "the array's fast PE (SystolicConfig.pipeline_mult, with its operand registers): "
                                  "1 = the DSP's pipeline register, 2 = and a fabric register after the DSP; "
                                  "more array latency per tile, the same throughput (0: the default PE)", lo=0, hi=2)
    serial_digits: int = param(0, "steps of the requantizer's serial product (0: 4 with --mult-style serial)",
                               lo=0, hi=24)
    acc_width: int = param(32, "array accumulator bits (0: the fewest that no K the maxima allow can overflow)",
                           lo=0, hi=32)

    def __post_init__(self):
        super().__post_init__()
        if self.vec == 0:
            object.__setattr__(self, "vec", max(self.rows, 4))
        if self.requant_lanes == 0:
            object.__setattr__(self, "requant_lanes", self.cols)
        if self.requant_lanes > self.cols or self.cols % self.requant_lanes:
            divisors = [d for d in range(1, self.cols + 1) if self.cols % d == 0]
            raise ConfigError(f"requant_lanes must divide cols={self.cols} (one of {divisors}, or 0 for cols), "
                              f"not {self.requant_lanes}")
        if self.max_tiles * self.requant_slots > MAX_GROUPS:
            raise ConfigError(f"max_tiles * cols / requant_lanes (requantizer parameter entries per lane) must be "
                              f"at most {MAX_GROUPS}, not {self.max_tiles} * {self.requant_slots}")
        if self.debug_fault == "requant_lane" and self.requant_slots < 2:
            raise ConfigError("debug_fault 'requant_lane' needs requant_lanes < cols (a time-multiplexed row)")
        self.requant    # its own checks (mult_style 'serial' with the rounding, serial_digits), here
        need = self.min_acc_width
        if self.acc_width == 0:
            object.__setattr__(self, "acc_width", need)
        elif self.acc_width < need:
            raise ConfigError(f"acc_width must be {need}..32 for these maxima (K up to {self.max_k_allowed} "
                              f"= max_kernel**2 * max_pixel_words * vec), or 0 for {need}; not {self.acc_width}")

    @property
    def max_k_allowed(self) -> int:
        """The largest K = kh*kw*c_slice that the other maxima let a descriptor ask for."""
        return self.max_kernel ** 2 * self.max_pixel_words * self.vec

    @property
    def min_acc_width(self) -> int:
        """The fewest accumulator bits for which :attr:`max_k` covers :attr:`max_k_allowed`
        (capped at 32, where the descriptor check ``K <= max_k`` takes over)."""
        for w in range(2, 33):
            if self._systolic(w).max_k >= self.max_k_allowed:
                return w
        return 32

    def _systolic(self, acc_width: int) -> SystolicConfig:
        return SystolicConfig(self.rows, self.cols, "os", a_width=OPERAND_WIDTH, b_width=OPERAND_WIDTH,
                              acc_width=max(acc_width, 18), dsp=self.dsp, pipeline_operands=self.pipeline_mult > 0,
                              pipeline_mult=self.pipeline_mult)

    @property
    def requant_slots(self) -> int:
        """Cycles (requantizer beats) per array row: ``cols / requant_lanes``."""
        return self.cols // self.requant_lanes

    # -- the blocks it composes ------------------------------------------------------------
    @cached_property
    def systolic(self) -> SystolicConfig:
        return self._systolic(self.acc_width)

    @cached_property
    def requant(self) -> RequantConfig:
        # entry t*slots + j of physical lane l holds the parameters of column j*requant_lanes + l
        return RequantConfig(lanes=self.requant_lanes, groups=self.max_tiles * self.requant_slots,
                             rounding=self.rounding, out_width=PARAM_OUT_WIDTH, out_signed=True,
                             mult_style=self.mult_style, serial_digits=self.serial_digits)

    @cached_property
    def im2col(self) -> Im2colConfig:
        return Im2colConfig(self.max_h, self.max_w, self.max_pixel_words, self.max_kernel, self.max_stride,
                            self.max_pad, self.max_dilation, tile_rows=self.rows)

    @property
    def max_k(self) -> int:
        """Largest reduction length K that cannot overflow the int32 accumulator (9-bit operands)."""
        return self.systolic.max_k

    def limits(self) -> dict:
        """The limits the descriptor rules use (golden.engine.descriptor_errors)."""
        return {"vec": self.vec, "rows": self.rows, "max_h": self.max_h, "max_w": self.max_w,
                "max_kernel": self.max_kernel, "max_stride": self.max_stride, "max_pad": self.max_pad,
                "max_dilation": self.max_dilation, "max_pixel_words": self.max_pixel_words,
                "max_tiles": self.max_tiles, "max_k": self.max_k}

    @property
    def module_name(self) -> str:
        f = f"_fault_{self.debug_fault}" if self.debug_fault else ""
        q = f"q{self.requant_lanes}" if self.requant_lanes != self.cols else ""
        mul = ({"dsp": "", "dsp2": "_mdsp2", "lut": "_mlut",
                "serial": f"_mser{self.requant.serial_digits}"}[self.mult_style]
               + ("" if self.dsp == "generic" else f"_{self.dsp}")
               + ("" if self.acc_width == 32 else f"_acc{self.acc_width}")
               + (f"_pm{self.pipeline_mult}" if self.pipeline_mult else ""))
        return (f"convgen_engine_r{self.rows}c{self.cols}v{self.vec}_{self.rounding}"
                f"_h{self.max_h}w{self.max_w}pw{self.max_pixel_words}k{self.max_kernel}s{self.max_stride}"
                f"p{self.max_pad}d{self.max_dilation}t{self.max_tiles}a{self.addr_width}"
                f"b{self.fetch_banks}f{self.weight_fifo}{q}{mul}{f}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["serial_digits"] == 0:     # the other styles' manifests are unchanged
            del d["serial_digits"]
        if d["acc_width"] == 32:
            del d["acc_width"]
        return d

    # -- layouts -----------------------------------------------------------------------------
    @property
    def max_out(self) -> int:
        """Largest output height (or width): 1x1 kernel, stride 1, all pads."""
        return max(self.max_h, self.max_w) + 2 * self.max_pad

    @cached_property
    def desc_layout(self) -> data.StructLayout:
        hb, wb = _bits(self.max_h), _bits(self.max_w)
        kb, sb, pb, db = (_bits(self.max_kernel), _bits(self.max_stride), _bits(max(self.max_pad, 1)),
                          _bits(self.max_dilation))
        pwb, tb = _bits(self.max_pixel_words), _bits(self.max_tiles)
        ob = _bits(self.max_out)
        mb = _bits(self.max_out * self.max_out)
        a = self.addr_width
        return data.StructLayout({
            "h": hb, "w": wb, "c_in": 16, "c_out": 16, "kh": kb, "kw": kb,
            "stride_h": sb, "stride_w": sb, "pad_top": pb, "pad_left": pb, "pad_bottom": pb, "pad_right": pb,
            "dil_h": db, "dil_w": db, "groups": 16,
            "c_slice": 16, "slice_words": pwb, "slices": pwb, "pixel_words": pwb,
            "tiles_per_slice": tb, "ntiles": tb, "out_h": ob, "out_w": ob, "pixel_tiles": mb, "m_total": mb,
            "x_base": a, "w_base": a, "p_base": a, "y_base": a,
            "x_zero_point": signed(9), "w_zero_point": signed(8), "x_signed": 1,
        })

    @cached_property
    def param_layout(self) -> data.StructLayout:
        o = signed(PARAM_OUT_WIDTH)
        return data.StructLayout({"bias": signed(32), "mult": unsigned(32), "shift": signed(6),
                                  "zero_point": o, "act_min": o, "act_max": o})

    @cached_property
    def addr_layout(self) -> data.StructLayout:
        return data.StructLayout({"addr": unsigned(self.addr_width)})

    @cached_property
    def y_layout(self) -> data.StructLayout:
        return data.StructLayout({"addr": unsigned(self.addr_width), "data": unsigned(8 * self.cols)})

    # -- timing ----------------------------------------------------------------------------
    @property
    def check_cycles(self) -> int:
        """CHECK1, CHECK2, DECIDE (and CHECKA, CHECKB between CHECK1 and CHECK2 with
        :attr:`staged_checks`: the chained products K = taps*c_slice and ntiles*K, one per
        cycle)."""
        return 3 + (len(LUT_CHECK_STATES) if self.staged_checks else 0)

    @property
    def staged_checks(self) -> bool:
        """The descriptor checks' chained products take one cycle each, in the states CHECKA
        and CHECKB (``mult_style`` not ``dsp``): with ``lut``/``serial`` so that no cycle adds
        more than one partial-product tree, with ``dsp2`` so that no cycle chains three DSP
        products (taps, K, ntiles*K: 25.2 ns, the critical path of the 8x8 ECP5 engine once the
        requantizer's product had two stages, bench/results/synth_engine.md)."""
        return self.mult_style != "dsp"

    @property
    def lut_checks(self) -> bool:
        """The descriptor checks' products are built without ``*`` (``mult_style`` ``lut`` or ``serial``)."""
        return self.mult_style in ("lut", "serial")

    @property
    def derived_widths(self) -> bool:
        """The control's registers take widths derived from the maxima (``mult_style`` ``lut``
        or ``serial``, the small-FPGA styles; the ``dsp`` engine keeps its earlier hardware):
        the descriptor's 16-bit ``c_in``/``c_out``/``groups`` are kept only as whether one of
        them is zero, ``c_slice`` in :attr:`max_c_slice`'s bits (a larger value, always
        invalid, is remembered as such), and the checks' products and the weight counters in
        the widths of their operands' largest values (:meth:`ConvEngine.check_ranges`)."""
        return self.mult_style in ("lut", "serial")

    @property
    def max_c_slice(self) -> int:
        """The largest valid ``c_slice``: ``slice_words * vec`` with ``slice_words <=
        pixel_words <= max_pixel_words``."""
        return self.max_pixel_words * self.vec

    @property
    def params_start(self) -> int:
        """Cycle (descriptor transfer = 0) of the first parameter request: CHECK1, CHECK2,
        DECIDE (im2col programmed), then WAITG until the generator's first pointer."""
        return self.check_cycles + 1 + self.im2col.setup_cycles

    def compute_bound(self, *, kh: int, kw: int, c_slice: int, slice_words: int, ntiles: int,
                      latency: int = 1) -> bool:
        """The regime in which :meth:`layer_cycles` is exact: every activation chunk has at
        least ``rows`` channels (fetching a chunk takes ``rows`` requests, emitting it one
        beat per channel), the next pixel tile's pointers (``taps*rows``) are captured while
        the current one computes (``ntiles*K`` beats), and the chunk banks and the weight FIFO
        cover the memory latency. With ``requant_lanes < cols`` or a ``serial`` requantizer
        also: the requantizer takes a tile's ``rows`` rows (``rows * slots`` beats, one per
        :attr:`RequantConfig.interval` cycles) within one tile period, and no more rows wait in
        the array's output queue than its step enable allows (``rows <= depth - 3``), so the
        array never stalls on it."""
        c_last = c_slice - (slice_words - 1) * self.vec
        k = kh * kw * c_slice
        beats = self.rows * self.requant_slots
        requant_ok = (self.requant_slots == 1 and self.requant.interval == 1) or (
            beats * self.requant.interval <= self.systolic.tile_period(k) and self.rows <= ARRAY_FIFO_DEPTH - 3)
        return (min(c_last, self.vec) >= self.rows and kh * kw * self.rows <= ntiles * k
                and latency <= (self.fetch_banks - 2) * self.rows and latency + 3 <= self.weight_fifo
                and requant_ok)

    def layer_cycles(self, *, kh: int, kw: int, c_slice: int, ntiles: int, pixel_tiles: int,
                     latency: int = 1) -> int:
        """Cycles of one layer as ``cycles`` counts them (descriptor transfer excluded, last
        output write included), with memories that answer every request ``latency`` cycles
        later and never stall. Exact in the :meth:`compute_bound` regime, a lower bound
        otherwise. The array part reuses :meth:`SystolicConfig.tile_period` and
        :meth:`SystolicConfig.tile_cycles` (docs/engine.md derives every term)."""
        s = self.systolic
        k = kh * kw * c_slice
        start = self.params_start
        # fetch starts when the first pixel tile's pointers are captured (capture runs from
        # `start`) and the parameters are loaded (last response + 1 cycle to leave PARAMS)
        fetch = max(start + kh * kw * self.rows, start + ntiles * self.cols + latency + 1)
        # request stage + `rows` requests, the last answered `latency` later, chunk marked full
        first_beat = fetch + self.rows + latency + 1
        tiles = pixel_tiles * ntiles
        array = (tiles - 1) * s.tile_period(k) + s.tile_cycles(k)
        # tile_cycles counts the first beat's cycle; the write leaves with the requantizer output.
        # A time-multiplexed requantizer takes the last tile's rows (which leave the array on
        # consecutive cycles) one per `slots` cycles: the last row's last beat enters it
        # rows*(slots-1) cycles later. A serial one takes a beat every `interval` cycles: its
        # rows*slots beats, the first when the first row leaves the array, end (rows*slots - 1)
        # * interval cycles later, (rows*slots - 1) * (interval - 1) more than at one a cycle
        beats = self.rows * self.requant_slots
        return (first_beat - 1 + array + self.rows * (self.requant_slots - 1)
                + (beats - 1) * (self.requant.interval - 1) + self.requant.latency)


class ConvEngine(wiring.Component):
    """One quantized convolution layer per descriptor beat.

    Attributes
    ----------
    desc : In(stream.Signature(EngineConfig.desc_layout))
        One beat per layer; accepted while idle (``ready`` low while a layer runs), so the
        next layer can be queued at any time and follows without reset.
    x_req, w_req, p_req : Out(stream.Signature(StructLayout({"addr"})))
        Read requests (word addresses) for activations, weights and parameters.
    x_rsp : In(stream.Signature(unsigned(8*vec)))
        Activation words in request order: ``vec`` int8/uint8 channels, channel e in bits 8e+7..8e.
    w_rsp : In(stream.Signature(unsigned(8*cols)))
        Weight words in request order: ``cols`` int8 weights (one k row of a tile).
    p_rsp : In(stream.Signature(EngineConfig.param_layout))
        Requantization parameter words in request order.
    y_req : Out(stream.Signature(StructLayout({"addr", "data"})))
        Output writes: ``cols`` int8/uint8 channels of one pixel (low byte of each lane).
    busy : Out(1)
        A layer is being checked or computed.
    done : Out(1)
        One-cycle pulse: the last output word of a layer has been written.
    error : Out(1)
        The last descriptor was invalid: nothing was read or written; high until the next
        descriptor transfer.
    cycles : Out(32)
        Cycles of the current (or last) layer: the number of cycles ``busy`` has been high.

    Every ``*_rsp`` stream is always ready (the engine reserves room before it requests).
    """

    def __init__(self, config: EngineConfig | None = None, **kwargs):
        if config is None:
            config = EngineConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an EngineConfig or keyword parameters, not both")
        self._config = config
        cfg = config
        super().__init__({
            "desc": In(stream.Signature(cfg.desc_layout)),
            "x_req": Out(stream.Signature(cfg.addr_layout)),
            "x_rsp": In(stream.Signature(unsigned(8 * cfg.vec))),
            "w_req": Out(stream.Signature(cfg.addr_layout)),
            "w_rsp": In(stream.Signature(unsigned(8 * cfg.cols))),
            "p_req": Out(stream.Signature(cfg.addr_layout)),
            "p_rsp": In(stream.Signature(cfg.param_layout)),
            "y_req": Out(stream.Signature(cfg.y_layout)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "cycles": Out(32),
        })

    @property
    def config(self) -> EngineConfig:
        return self._config

    @staticmethod
    def check_ranges(cfg: EngineConfig) -> dict[str, range]:
        """With :attr:`EngineConfig.derived_widths`: the value range of each register of the
        descriptor checks, from the largest value every operand field can hold (its layout
        width; ``c_slice`` at most :attr:`EngineConfig.max_c_slice`, larger ones are flagged
        at the transfer), so that no check value can wrap, whatever the descriptor: every
        check compares the exact value and an invalid descriptor raises ``error`` as with the
        16-24-bit registers of the ``dsp`` engine (tests/test_engine_lut.py,
        tests/test_engine_serial.py)."""
        L = {name: (1 << Shape.cast(f.shape).width) - 1 for name, f in cfg.desc_layout}
        cs = cfg.max_c_slice
        k = L["kh"] * L["kw"] * cs
        def span(h, p, dl, kk):
            # h + pad_a + pad_b - dil*(kh - 1) - 1 (the pad fields have one width), kh from 0
            # (a zero kh is an im2col error)
            return range(-L[dl] * (L[kk] - 1) - 1, L[h] + 2 * L[p] + L[dl])
        r = {
            "k_total": range(k + 1),
            "ntiles_k": range(L["ntiles"] * k + 1),
            "span_h": span("h", "pad_top", "dil_h", "kh"),
            "span_w": span("w", "pad_left", "dil_w", "kw"),
            "oh_stride": range(L["out_h"] * L["stride_h"] + 1),
            "ow_stride": range(L["out_w"] * L["stride_w"] + 1),
            "oh_ow": range(L["out_h"] * L["out_w"] + 1),
            "slice_words_vec": range(L["slice_words"] * cfg.vec + 1),
            "slices_slice_words": range(L["slices"] * L["slice_words"] + 1),
            "slices_tps": range(L["slices"] * L["tiles_per_slice"] + 1),
            "pixel_tiles_rows": range(L["pixel_tiles"] * cfg.rows + 1),
        }
        return r

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        R, C, V, NB = cfg.rows, cfg.cols, cfg.vec, cfg.fetch_banks
        AW = cfg.addr_width
        TM = cfg.max_kernel * cfg.max_kernel          # taps per pixel, at most
        m.submodules.im2col = i2c = Im2colAddressGenerator(cfg.im2col)
        m.submodules.array = arr = SystolicArray(cfg.systolic)
        m.submodules.requant = rq = Requantizer(cfg.requant)

        # The descriptor register, one register per field (the same flip-flops as one
        # desc_layout-wide register, but every field is its own variable in a Verilator model
        # rather than a slice of a 260-bit word, which costs a wide extraction at every use).
        narrow = cfg.derived_widths
        # derived widths: c_in, c_out, groups only as "one is zero" and c_slice in the bits of
        # its largest valid value, with "c_slice too large" (both folded into d_over, a rule)
        dropped = ("c_in", "c_out", "groups") if narrow else ()
        d = SimpleNamespace(**{name: Signal(field.shape, name=f"d_{name}") for name, field in cfg.desc_layout
                               if name not in dropped})
        over = []
        if narrow:
            d.c_slice = Signal(range(cfg.max_c_slice + 1), name="d_c_slice")
            d_over = Signal(name="d_over")
            over = [d_over]
        staged = cfg.staged_checks
        states = STATES + (LUT_CHECK_STATES if staged else ())
        state = Signal(range(len(states)), name="state")
        S = {name: i for i, name in enumerate(states)}
        # products of descriptor fields: `*` (DSP blocks), or partial products without `*`
        mul = lut_product if cfg.lut_checks else (lambda a, b: a * b)

        def in_state(*names):
            return Cat(*(state == S[n] for n in names)).any()

        # -- status ---------------------------------------------------------------------------
        err = Signal(name="err")
        done = Signal(name="done_r")
        cycles = Signal(32, name="cycles_r")
        m.d.comb += [self.busy.eq(~in_state("IDLE")), self.error.eq(err), self.done.eq(done),
                     self.cycles.eq(cycles), self.desc.ready.eq(in_state("IDLE"))]
        m.d.sync += done.eq(0)
        with m.If(~in_state("IDLE")):
            m.d.sync += cycles.eq(cycles + 1)

        # -- descriptor checks (docs/engine.md; golden.engine.descriptor_errors) --------------
        if narrow:
            cr = self.check_ranges(cfg)
            k_max = cr["k_total"].stop - 1
            kk, ntk, span_h, span_w, ohs, ows, mtot, sw_v, sl_sw, sl_tps, pt_r = (
                Signal(cr[n], name=n) for n in ("k_total", "ntiles_k", "span_h", "span_w", "oh_stride", "ow_stride",
                                                "oh_ow", "slice_words_vec", "slices_slice_words", "slices_tps",
                                                "pixel_tiles_rows"))
        else:
            k_max = cfg.max_kernel * cfg.max_kernel * ((1 << 16) - 1)
            kk = Signal(range(k_max + 1), name="k_total")
            ntk = Signal(range(cfg.max_tiles * (k_max + 1) + 1), name="ntiles_k")
            span_h = Signal(signed(24), name="span_h")
            span_w = Signal(signed(24), name="span_w")
            ohs = Signal(range((1 << 12) * 16 + 1), name="oh_stride")
            ows = Signal(range((1 << 12) * 16 + 1), name="ow_stride")
            mtot = Signal(range((1 << 24)), name="oh_ow")
            sw_v = Signal(range((1 << 12) * 64 + 1), name="slice_words_vec")
            sl_sw = Signal(range((1 << 24)), name="slices_slice_words")
            sl_tps = Signal(range((1 << 22)), name="slices_tps")
            pt_r = Signal(range((1 << 24)), name="pixel_tiles_rows")
        taps = Signal(range(TM + 1), name="taps")
        trows = Signal(range(TM * R + 1), name="taps_rows")
        c_last = Signal(range(V + 1), name="c_last")                  # channels of a slice's last word
        rnt = Signal(range(R * cfg.max_tiles + 1), name="rows_ntiles")
        bad = Signal(name="bad")

        if not staged:
            with m.If(in_state("CHECK1")):
                m.d.sync += [
                    kk.eq(d.kh * d.kw * d.c_slice), taps.eq(d.kh * d.kw), trows.eq(d.kh * d.kw * R),
                    c_last.eq(d.c_slice - (d.slice_words - 1) * V),
                    ntk.eq(d.ntiles * d.kh * d.kw * d.c_slice), rnt.eq(d.ntiles * R),
                    span_h.eq(d.h + d.pad_top + d.pad_bottom - d.dil_h * (d.kh - 1) - 1),
                    span_w.eq(d.w + d.pad_left + d.pad_right - d.dil_w * (d.kw - 1) - 1),
                    ohs.eq(d.out_h * d.stride_h), ows.eq(d.out_w * d.stride_w), mtot.eq(d.out_h * d.out_w),
                    sw_v.eq(d.slice_words * V), sl_sw.eq(d.slices * d.slice_words),
                    sl_tps.eq(d.slices * d.tiles_per_slice), pt_r.eq(d.pixel_tiles * R),
                ]
        else:
            # the same values (without `*` unless dsp2); the chained products K = taps*c_slice
            # (with out_h*out_w) and ntiles*K take one cycle each (CHECKA, CHECKB), so that no
            # cycle adds more than one partial-product tree or chains DSP products
            taps_now = mul(d.kh, d.kw)
            with m.If(in_state("CHECK1")):
                m.d.sync += [
                    taps.eq(taps_now), trows.eq(mul(taps_now, R)),
                    c_last.eq(d.c_slice - mul(d.slice_words - 1, V)),
                    rnt.eq(mul(d.ntiles, R)),
                    span_h.eq(d.h + d.pad_top + d.pad_bottom - mul(d.dil_h, d.kh - 1) - 1),
                    span_w.eq(d.w + d.pad_left + d.pad_right - mul(d.dil_w, d.kw - 1) - 1),
                    ohs.eq(mul(d.out_h, d.stride_h)), ows.eq(mul(d.out_w, d.stride_w)),
                    sw_v.eq(mul(d.slice_words, V)), sl_sw.eq(mul(d.slices, d.slice_words)),
                    sl_tps.eq(mul(d.slices, d.tiles_per_slice)), pt_r.eq(mul(d.pixel_tiles, R)),
                ]
            with m.If(in_state("CHECKA")):
                m.d.sync += [kk.eq(mul(taps, d.c_slice)), mtot.eq(mul(d.out_h, d.out_w))]
            with m.If(in_state("CHECKB")):
                m.d.sync += ntk.eq(mul(d.ntiles, kk))
        zero = Cat(*(getattr(d, f) == 0 for f in ("c_in", "c_out", "groups", "c_slice", "slice_words", "slices",
                                                  "tiles_per_slice", "ntiles", "pixel_tiles", "m_total",
                                                  "out_h", "out_w") if f not in dropped), *over).any()
        xz_lo = Mux(d.x_signed, -128, 0)
        xz_hi = Mux(d.x_signed, 127, 255)
        rules = [
            zero,
            _above(d.ntiles, cfg.max_tiles),
            _above(kk, cfg.max_k) if narrow else kk > cfg.max_k,
            span_h < 0, span_w < 0,
            ohs - d.stride_h > span_h, ohs <= span_h,              # out_h = span_h // stride_h + 1
            ows - d.stride_w > span_w, ows <= span_w,
            mtot != d.m_total,
            sw_v - V >= d.c_slice, sw_v < d.c_slice,                # slice_words = ceil(c_slice / vec)
            sl_sw > d.pixel_words,
            sl_tps - d.tiles_per_slice >= d.ntiles, sl_tps < d.ntiles,
            pt_r - R >= d.m_total, pt_r < d.m_total,                # pixel_tiles = ceil(m_total / rows)
            d.x_zero_point < xz_lo, d.x_zero_point > xz_hi,
        ]
        with m.If(in_state("CHECK2")):
            m.d.sync += bad.eq(Cat(*rules).any())

        # -- im2col programming ----------------------------------------------------------------
        geo = {f: getattr(d, f) for f in ("h", "w", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left",
                                          "pad_bottom", "pad_right", "dil_h", "dil_w")}
        m.d.comb += [getattr(i2c.cfg.payload, f).eq(v) for f, v in geo.items()]
        m.d.comb += [i2c.cfg.payload.c.eq(d.pixel_words), i2c.cfg.payload.groups.eq(1),
                     i2c.cfg.payload.indirect.eq(1),
                     i2c.cfg.valid.eq(in_state("DECIDE") & ~bad)]

        # -- parameters: p_req -> p_rsp -> requantizer p --------------------------------------
        p_total = Signal(range(cfg.max_tiles * C + 1), name="p_total")
        p_iss = Signal(range(cfg.max_tiles * C + 1), name="p_issued")
        p_rcv = Signal(range(cfg.max_tiles * C + 1), name="p_received")
        p_lane = Signal(index_range(C), name="p_lane")
        p_grp = Signal(index_range(cfg.max_tiles), name="p_group")
        L, F = cfg.requant_lanes, cfg.requant_slots
        m.d.comb += [self.p_req.valid.eq(in_state("PARAMS") & (p_iss != p_total)),
                     self.p_req.payload.addr.eq(d.p_base + p_iss),
                     self.p_rsp.ready.eq(1),
                     rq.p.valid.eq(self.p_rsp.valid)]
        p_regs = []
        if F == 1:
            m.d.comb += [rq.p.payload.group.eq(p_grp), rq.p.payload.lane.eq(p_lane)]
        else:
            # column c = j*L + l of tile t -> physical lane l, entry t*F + j: in p order
            # (t, c) the lane counts 0..L-1 and the entry advances after every L words
            p_pl = Signal(index_range(L), name="p_phys_lane")
            p_ent = Signal(index_range(cfg.requant.groups), name="p_entry")
            m.d.comb += [rq.p.payload.group.eq(p_ent), rq.p.payload.lane.eq(p_pl)]
            with m.If(self.p_rsp.valid):
                with m.If(p_pl == L - 1):
                    m.d.sync += [p_pl.eq(0), p_ent.eq(p_ent + 1)]
                with m.Else():
                    m.d.sync += p_pl.eq(p_pl + 1)
            p_regs = [p_pl, p_ent]
        for f in ("bias", "mult", "shift", "zero_point", "act_min", "act_max"):
            m.d.comb += getattr(rq.p.payload, f).eq(getattr(self.p_rsp.payload, f))
        with m.If(self.p_req.valid & self.p_req.ready):
            m.d.sync += p_iss.eq(p_iss + 1)
        with m.If(self.p_rsp.valid):
            m.d.sync += p_rcv.eq(p_rcv + 1)
            with m.If(p_lane == C - 1):
                m.d.sync += [p_lane.eq(0), p_grp.eq(p_grp + 1)]
            with m.Else():
                m.d.sync += p_lane.eq(p_lane + 1)

        # -- pointer capture: im2col.o -> pointer buffer (two banks of taps*rows) --------------
        PW = cfg.im2col.addr_width
        ptr_layout = data.StructLayout({"ptr": unsigned(PW), "pad": 1})
        m.submodules.ptrbuf = ptrbuf = Memory(shape=ptr_layout, depth=2 * TM * R, init=[])
        pw_port = ptrbuf.write_port()
        pr_port = ptrbuf.read_port()
        cap_idx = Signal(range(TM * R + 1), name="cap_idx")
        cap_bank = Signal(name="cap_bank")
        bank_full = Signal(2, name="ptr_bank_full")
        run = Signal(name="run")
        m.d.comb += run.eq(in_state("RUN"))
        cap_ok = in_state("PARAMS", "RUN") & ~bank_full.bit_select(cap_bank, 1)
        m.d.comb += [
            i2c.o.ready.eq(cap_ok),
            pw_port.en.eq(i2c.o.valid & cap_ok),
            pw_port.addr.eq(Mux(cap_bank, TM * R, 0) + cap_idx),
            pw_port.data.ptr.eq(i2c.o.payload.addr),
            pw_port.data.pad.eq(i2c.o.payload.pad),
        ]
        bank_set = Signal(2, name="ptr_bank_set")
        bank_clr = Signal(2, name="ptr_bank_clr")
        cap_fire = i2c.o.valid & cap_ok
        # (continuous expressions, not comb statements under If: see docs/adding-a-block.md, Icarus)
        m.d.comb += bank_set.eq(Mux(cap_fire & (cap_idx == trows - 1), Mux(cap_bank, 2, 1), 0))
        with m.If(cap_fire):
            with m.If(cap_idx == trows - 1):
                m.d.sync += [cap_idx.eq(0), cap_bank.eq(~cap_bank)]
            with m.Else():
                m.d.sync += cap_idx.eq(cap_idx + 1)
        m.d.sync += bank_full.eq((bank_full | bank_set) & ~bank_clr)

        # -- activation fetch: issue ----------------------------------------------------------
        pwb = len(d.pixel_words)
        f_pt = Signal.like(d.pixel_tiles, name="f_pt")
        f_nt = Signal.like(d.ntiles, name="f_nt")
        f_tsub = Signal.like(d.tiles_per_slice, name="f_tsub")
        f_soff = Signal(range(1 << (2 * pwb)), name="f_soff")       # slice word offset
        f_tap = Signal(range(TM + 1), name="f_tap")
        f_tapbase = Signal(range(TM * R + 1), name="f_tapbase")
        f_ch = Signal.like(d.slice_words, name="f_ch")
        f_r = Signal(index_range(R), name="f_r")
        f_bank = Signal(name="f_bank")
        f_done = Signal(name="f_done")
        in_use = Signal(range(NB + 1), name="chunks_in_use")
        iss_cb = Signal(index_range(NB), name="issue_chunk_bank")
        s1_valid = Signal(name="s1_valid")
        s1_off = Signal(AW, name="s1_off")
        s1_lane = Signal(index_range(R), name="s1_lane")
        s1_cb = Signal(index_range(NB), name="s1_chunk_bank")
        adv = Signal(name="f_adv")
        go = Signal(name="f_go")
        alloc = Signal(name="f_alloc")
        m.d.comb += [
            adv.eq(~s1_valid | self.x_req.ready),
            go.eq(adv & run & ~f_done & bank_full.bit_select(f_bank, 1) & ((f_r != 0) | (in_use < NB))),
            alloc.eq(go & (f_r == 0)),
            pr_port.en.eq(adv),
            pr_port.addr.eq(Mux(f_bank, TM * R, 0) + f_tapbase + f_r),
            self.x_req.valid.eq(s1_valid),
            self.x_req.payload.addr.eq(s1_off + pr_port.data.ptr),
        ]
        with m.If(adv):
            m.d.sync += [s1_valid.eq(go), s1_off.eq(d.x_base + f_soff + f_ch), s1_lane.eq(f_r), s1_cb.eq(iss_cb)]
        last_r = f_r == R - 1
        last_ch = f_ch == d.slice_words - 1
        last_tap = f_tap == taps - 1
        last_nt = f_nt == d.ntiles - 1
        last_pt = f_pt == d.pixel_tiles - 1
        m.d.comb += bank_clr.eq(Mux(go & last_r & last_ch & last_tap & last_nt, Mux(f_bank, 2, 1), 0))
        with m.If(go):
            m.d.sync += f_r.eq(Mux(last_r, 0, f_r + 1))
            with m.If(last_r):
                m.d.sync += [iss_cb.eq(Mux(iss_cb == NB - 1, 0, iss_cb + 1)), f_ch.eq(Mux(last_ch, 0, f_ch + 1))]
                with m.If(last_ch):
                    m.d.sync += [f_tap.eq(Mux(last_tap, 0, f_tap + 1)),
                                 f_tapbase.eq(Mux(last_tap, 0, f_tapbase + R))]
                    with m.If(last_tap):
                        with m.If(last_nt):
                            m.d.sync += [f_nt.eq(0), f_tsub.eq(0), f_soff.eq(0), f_bank.eq(~f_bank),
                                         f_pt.eq(f_pt + 1)]
                            with m.If(last_pt):
                                m.d.sync += f_done.eq(1)
                        with m.Else():
                            m.d.sync += f_nt.eq(f_nt + 1)
                            with m.If(f_tsub == d.tiles_per_slice - 1):
                                m.d.sync += [f_tsub.eq(0), f_soff.eq(f_soff + d.slice_words)]
                            with m.Else():
                                m.d.sync += f_tsub.eq(f_tsub + 1)

        # -- activation chunk banks -------------------------------------------------------------
        words = [[Signal(8 * V, name=f"xb{b}_{r}") for r in range(R)] for b in range(NB)]
        pads = [Signal(R, name=f"xpad{b}") for b in range(NB)]
        with m.If(self.x_req.valid & self.x_req.ready):
            pad_bit = pr_port.data.pad
            if cfg.debug_fault == "pad_value":
                pad_bit = Const(0)   # injected fault: padded taps read memory word 0 instead of zero point
            with m.Switch(s1_cb):
                for b in range(NB):
                    with m.Case(b):
                        m.d.sync += pads[b].bit_select(s1_lane, 1).eq(pad_bit)
        r_lane = Signal(index_range(R), name="rcv_lane")
        r_cb = Signal(index_range(NB), name="rcv_chunk_bank")
        full_cnt = Signal(range(NB + 1), name="chunks_full")
        full_inc = Signal(name="full_inc")
        m.d.comb += [self.x_rsp.ready.eq(1), full_inc.eq(self.x_rsp.valid & (r_lane == R - 1))]
        with m.If(self.x_rsp.valid):
            with m.Switch(r_cb):
                for b in range(NB):
                    with m.Case(b):
                        with m.Switch(r_lane):
                            for r in range(R):
                                with m.Case(r):
                                    m.d.sync += words[b][r].eq(self.x_rsp.payload)
            with m.If(r_lane == R - 1):
                m.d.sync += [r_lane.eq(0), r_cb.eq(Mux(r_cb == NB - 1, 0, r_cb + 1))]
            with m.Else():
                m.d.sync += r_lane.eq(r_lane + 1)

        # -- emit: chunk bank -> array a (one channel per beat, rows lanes) --------------------
        e_cb = Signal(index_range(NB), name="emit_chunk_bank")
        e_j = Signal(index_range(V), name="emit_beat")
        e_ch = Signal.like(d.slice_words, name="emit_word")
        e_end = Signal(name="emit_chunk_end")
        vc_last = Mux(e_ch == d.slice_words - 1, c_last - 1, V - 1)
        a_fire = arr.a.valid & arr.a.ready
        m.d.comb += [arr.a.valid.eq(full_cnt != 0), e_end.eq(a_fire & (e_j == vc_last))]
        xz = d.x_zero_point
        for r in range(R):
            byte = _select([words[b][r] for b in range(NB)], e_cb).word_select(e_j, 8)
            val = Mux(d.x_signed, byte.as_signed(), byte.as_unsigned())
            pad = _select([pads[b][r] for b in range(NB)], e_cb)
            m.d.comb += arr.a.payload[r].eq(Mux(pad, 0, val - xz))
        with m.If(a_fire):
            m.d.sync += e_j.eq(Mux(e_end, 0, e_j + 1))
            with m.If(e_end):
                m.d.sync += [e_cb.eq(Mux(e_cb == NB - 1, 0, e_cb + 1)),
                             e_ch.eq(Mux(e_ch == d.slice_words - 1, 0, e_ch + 1))]
        m.d.sync += [full_cnt.eq(full_cnt + full_inc - e_end), in_use.eq(in_use + alloc - e_end)]

        # -- weights: w_req -> w_rsp -> FIFO -> array b ---------------------------------------
        WD = cfg.weight_fifo
        m.submodules.wfifo = wfifo = SyncFIFOBuffered(width=8 * C, depth=WD)
        w_off = Signal(range(cfg.max_tiles * (k_max + 1) + 1), name="w_off")
        w_pt = Signal.like(d.pixel_tiles, name="w_pt")
        w_done = Signal(name="w_done")
        w_credit = Signal(range(WD + 1), name="w_credit")
        b_k = Signal(range(k_max + 1), name="b_k")
        b_fire = arr.b.valid & arr.b.ready
        w_fire = self.w_req.valid & self.w_req.ready
        m.d.comb += [self.w_req.valid.eq(run & ~w_done & (w_credit < WD)),
                     self.w_req.payload.addr.eq(d.w_base + w_off),
                     self.w_rsp.ready.eq(1),
                     wfifo.w_en.eq(self.w_rsp.valid), wfifo.w_data.eq(self.w_rsp.payload),
                     arr.b.valid.eq(wfifo.r_rdy), wfifo.r_en.eq(arr.b.ready),
                     arr.b.payload.last.eq(b_k == kk - 1)]
        for c in range(C):
            m.d.comb += arr.b.payload.data[c].eq(wfifo.r_data.word_select(c, 8).as_signed() - d.w_zero_point)
        m.d.sync += w_credit.eq(w_credit + w_fire - b_fire)
        with m.If(w_fire):
            with m.If(w_off == ntk - 1):
                m.d.sync += [w_off.eq(0), w_pt.eq(w_pt + 1)]
                with m.If(w_pt == d.pixel_tiles - 1):
                    m.d.sync += w_done.eq(1)
            with m.Else():
                m.d.sync += w_off.eq(w_off + 1)
        with m.If(b_fire):
            m.d.sync += b_k.eq(Mux(b_k == kk - 1, 0, b_k + 1))

        # -- array o -> requantizer i (parameter entry = output-channel tile) --------------------
        q_r = Signal(index_range(R), name="q_row")
        q_nt = Signal.like(d.ntiles, name="q_tile")
        q_regs = []
        if F == 1:
            m.d.comb += [rq.i.valid.eq(arr.o.valid), arr.o.ready.eq(rq.i.ready),
                         rq.i.payload.group.eq(q_nt)]
            for c in range(C):
                m.d.comb += rq.i.payload.acc[c].eq(arr.o.payload.data[c])
            row_taken = rq.i.valid & rq.i.ready
        else:
            # one array row = F requantizer beats (slot j: columns j*L .. j*L+L-1, entry
            # t*F + j); the row leaves the array's queue with its last slot
            q_j = Signal(index_range(F), name="q_slot")
            q_base = Signal(index_range(cfg.requant.groups), name="q_entry_base")
            last_slot = q_j == F - 1
            m.d.comb += [rq.i.valid.eq(arr.o.valid), arr.o.ready.eq(rq.i.ready & last_slot),
                         rq.i.payload.group.eq(q_base + q_j)]
            slot = q_j
            if cfg.debug_fault == "requant_lane":
                slot = Mux(q_j == 1, 0, q_j)   # injected fault: slot 1 requantizes slot 0's columns
            for lane in range(L):
                m.d.comb += rq.i.payload.acc[lane].eq(_select([arr.o.payload.data[j * L + lane] for j in range(F)],
                                                              slot))
            beat = rq.i.valid & rq.i.ready
            row_taken = beat & last_slot
            with m.If(beat):
                m.d.sync += q_j.eq(Mux(last_slot, 0, q_j + 1))
            with m.If(row_taken & (q_r == R - 1)):
                m.d.sync += q_base.eq(Mux(q_nt == d.ntiles - 1, 0, q_base + F))
            q_regs = [q_j, q_base]
        with m.If(row_taken):
            m.d.sync += q_r.eq(Mux(q_r == R - 1, 0, q_r + 1))
            with m.If(q_r == R - 1):
                m.d.sync += q_nt.eq(Mux(q_nt == d.ntiles - 1, 0, q_nt + 1))

        # -- write-back: requantizer o -> y_req (rows past the last pixel are dropped) ----------
        y_r = Signal(index_range(R), name="y_row")
        y_nt = Signal.like(d.ntiles, name="y_tile")
        y_pt = Signal.like(d.pixel_tiles, name="y_pt")
        y_m0 = Signal(len(d.m_total) + 1, name="y_m0")
        y_m = Signal(len(d.m_total) + 1, name="y_m")
        y_a0 = Signal(AW, name="y_addr0")
        y_a = Signal(AW, name="y_addr")
        keep = Signal(name="y_keep")
        limit = d.m_total
        if cfg.debug_fault == "tile_edge":
            limit = d.m_total - 1   # injected fault: the last output pixel of the layer is never written
        m.d.comb += keep.eq(y_m < limit)
        y_regs = []
        if F == 1:
            y_row_end = Const(1)
            y_bytes = [rq.o.payload[c][:8] for c in range(C)]
        else:
            # a row's F requantizer beats are collected; the y word is written with the last
            y_j = Signal(index_range(F), name="y_slot")
            y_held = [Signal(8 * L, name=f"y_slot{j}") for j in range(F - 1)]
            y_row_end = y_j == F - 1
            with m.If(rq.o.valid & ~y_row_end):
                with m.Switch(y_j):
                    for j in range(F - 1):
                        with m.Case(j):
                            m.d.sync += y_held[j].eq(Cat(*(rq.o.payload[lane][:8] for lane in range(L))))
            with m.If(rq.o.valid & rq.o.ready):
                m.d.sync += y_j.eq(Mux(y_row_end, 0, y_j + 1))
            y_bytes = [*y_held, *(rq.o.payload[lane][:8] for lane in range(L))]
            y_regs = [y_j]
        m.d.comb += [self.y_req.valid.eq(rq.o.valid & keep & y_row_end),
                     rq.o.ready.eq(self.y_req.ready | ~keep | ~y_row_end),
                     self.y_req.payload.addr.eq(y_a + y_nt),
                     self.y_req.payload.data.eq(Cat(*y_bytes))]
        y_last = Signal(name="y_last")
        m.d.comb += y_last.eq((y_r == R - 1) & (y_nt == d.ntiles - 1) & (y_pt == d.pixel_tiles - 1) & y_row_end)
        with m.If(rq.o.valid & rq.o.ready & y_row_end):
            with m.If(y_r == R - 1):
                m.d.sync += y_r.eq(0)
                with m.If(y_nt == d.ntiles - 1):
                    m.d.sync += [y_nt.eq(0), y_pt.eq(y_pt + 1), y_m0.eq(y_m0 + R), y_m.eq(y_m0 + R),
                                 y_a0.eq(y_a0 + rnt), y_a.eq(y_a0 + rnt)]
                with m.Else():
                    m.d.sync += [y_nt.eq(y_nt + 1), y_m.eq(y_m0), y_a.eq(y_a0)]
            with m.Else():
                m.d.sync += [y_r.eq(y_r + 1), y_m.eq(y_m + 1), y_a.eq(y_a + d.ntiles)]

        # -- sequencer ------------------------------------------------------------------------
        loop_regs = [p_iss, p_rcv, p_lane, p_grp, cap_idx, cap_bank, bank_full, f_pt, f_nt, f_tsub, f_soff, f_tap,
                     f_tapbase, f_ch, f_r, f_bank, f_done, in_use, iss_cb, s1_valid, r_lane, r_cb, full_cnt,
                     e_cb, e_j, e_ch, w_off, w_pt, w_done, w_credit, b_k, q_r, q_nt, y_r, y_nt, y_pt, y_m0, y_m,
                     *p_regs, *q_regs, *y_regs]
        with m.Switch(state):
            with m.Case(S["IDLE"]):
                with m.If(self.desc.valid):
                    m.d.sync += [*(getattr(d, f).eq(self.desc.payload[f]) for f, _ in cfg.desc_layout
                                   if f not in dropped),
                                 state.eq(S["CHECK1"]), err.eq(0), cycles.eq(0)]
                    if narrow:
                        pl = self.desc.payload
                        m.d.sync += d_over.eq(Cat(pl.c_in == 0, pl.c_out == 0, pl.groups == 0,
                                                  _above(pl.c_slice, cfg.max_c_slice)).any())
            with m.Case(S["CHECK1"]):
                m.d.sync += state.eq(S["CHECKA"] if staged else S["CHECK2"])
            if staged:
                with m.Case(S["CHECKA"]):
                    m.d.sync += state.eq(S["CHECKB"])
                with m.Case(S["CHECKB"]):
                    m.d.sync += state.eq(S["CHECK2"])
            with m.Case(S["CHECK2"]):
                m.d.sync += state.eq(S["DECIDE"])
            with m.Case(S["DECIDE"]):
                m.d.sync += [r.eq(0) for r in loop_regs]
                m.d.sync += [p_total.eq(mul(d.ntiles, C)), y_a0.eq(d.y_base), y_a.eq(d.y_base)]
                with m.If(bad):
                    m.d.sync += [err.eq(1), state.eq(S["IDLE"])]
                with m.Elif(i2c.cfg.ready):
                    m.d.sync += state.eq(S["WAITG"])
            with m.Case(S["WAITG"]):
                with m.If(i2c.error):
                    m.d.sync += [err.eq(1), state.eq(S["IDLE"])]
                with m.Elif(i2c.o.valid):
                    m.d.sync += state.eq(S["PARAMS"])
            with m.Case(S["PARAMS"]):
                with m.If(p_rcv == p_total):
                    m.d.sync += state.eq(S["RUN"])
            with m.Case(S["RUN"]):
                with m.If(rq.o.valid & rq.o.ready & y_last):
                    m.d.sync += [done.eq(1), state.eq(S["IDLE"])]
        return m


def manifest_extra(cfg: EngineConfig) -> dict:
    return {
        "engine": {
            "rows": cfg.rows, "cols": cfg.cols, "vec": cfg.vec, "max_k": cfg.max_k,
            "limits": cfg.limits(),
            "requant": cfg.requant.to_dict(), "systolic": cfg.systolic.to_dict(), "im2col": cfg.im2col.to_dict(),
        },
        "memory_map": {
            "x": "word (ih*W + iw)*pixel_words + slice*slice_words + i at x_base: vec channels i*vec.. of the "
                 "slice, channel e in bits 8e+7..8e; positions past the slice hold x_zero_point",
            "w": "word t*K + (kh*KW + kw)*c_slice + c at w_base: cols int8 weights of tile t (lane j in bits "
                 "8j+7..8j); lanes of other groups and unused lanes hold w_zero_point",
            "p": "word t*cols + j at p_base: the param layout of tile t lane j",
            "y": "word m*ntiles + t at y_base: cols output bytes of pixel m, tile t",
        },
        "timing": {
            "check_cycles": cfg.check_cycles,
            "im2col_setup_cycles": cfg.im2col.setup_cycles,
            "tile_period": "max(K, rows, cols) (SystolicConfig.tile_period)",
            "requant_latency": cfg.requant.latency,
            "multiplier": {"dsp": cfg.dsp, "pipeline_mult": cfg.pipeline_mult, "pe_latency": cfg.systolic.pe_latency,
                           "readout_latency": cfg.systolic.readout_latency,
                           "simulation_models": sorted(simulation_sources(cfg.dsp))},
        },
    }
