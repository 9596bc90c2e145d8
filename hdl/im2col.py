"""Im2col address generator: any 2-D convolution layer as a GEMM, straight from memory.

:class:`Im2colAddressGenerator` walks the patch matrix of a convolution (the im2col
matrix, never built) and streams, one element per clock cycle with no bubbles, the NHWC
memory address of each input element in the order the output-stationary
:class:`~convgen.hdl.systolic.SystolicArray` consumes its ``a`` operand, with a ``pad`` flag
for taps outside the image and first/last markers. In *indirection* mode it emits instead
one pointer per (output pixel, kh, kw) to the start of a C-vector (Dukhan 2019, "The
Indirect Convolution Algorithm").

Counter and address widths come from elaboration-time maxima (:class:`Im2colConfig`); the
layer itself is programmed at run time through the ``cfg`` stream, so one generator serves
every layer of a network. See docs/im2col.md for the ordering, the tile parameter, the
setup latency and the cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.core.intrange import IntRange
from convgen.core.layer import ConvLayer
from convgen.core.fields import Config, param
from convgen.core.params import ConfigError, check_int
from .lib import index_range
from .shapes import fits, shape_of

__all__ = ["Im2colConfig", "Im2colAddressGenerator", "MAX_EXTENT"]

MAX_EXTENT = 4096          # largest elaboration-time maximum of H, W or C


def _bits(max_value: int) -> int:
    return max(1, int(max_value).bit_length())


@dataclass(frozen=True)
class Im2colConfig(Config):
    """Elaboration-time parameters of an :class:`Im2colAddressGenerator`.

    Parameters
    ----------
    max_h, max_w, max_c : int, 1..4096
        Largest input height, width and channel count of any layer.
    max_kernel : int, 1..31
        Largest kernel height or width.
    max_stride, max_dilation : int, 1..15
        Largest stride and dilation (each axis).
    max_pad : int, 0..31
        Largest padding on any side.
    tile_rows : int, 1..64
        Output pixels per GEMM tile: the ``rows`` of the systolic array that consumes the
        stream (lanes of its ``a`` beat). 1 gives plain row-major im2col order.
    """

    # checked by Config.__post_init__ against these declarations
    max_h: int = param(64, "largest input height", lo=1, hi=MAX_EXTENT)
    max_w: int = param(64, "largest input width", lo=1, hi=MAX_EXTENT)
    max_c: int = param(64, "largest channel count", lo=1, hi=MAX_EXTENT)
    max_kernel: int = param(7, "largest kernel side", lo=1, hi=31)
    max_stride: int = param(4, "largest stride", lo=1, hi=15)
    max_pad: int = param(3, "largest padding", lo=0, hi=31)
    max_dilation: int = param(3, "largest dilation", lo=1, hi=15)
    tile_rows: int = param(8, "output pixels per GEMM tile = systolic rows (1 = row-major im2col)", lo=1, hi=64)

    @property
    def module_name(self) -> str:
        return (f"convgen_im2col_h{self.max_h}w{self.max_w}c{self.max_c}_k{self.max_kernel}"
                f"s{self.max_stride}p{self.max_pad}d{self.max_dilation}_t{self.tile_rows}")

    def to_dict(self) -> dict:
        return asdict(self)

    def check_layer(self, layer: ConvLayer) -> ConvLayer:
        """ConfigError unless every field of ``layer`` is within the generator's elaboration
        maxima (and the batch is 1); returns ``layer``."""
        if layer.n != 1:
            raise ConfigError(f"n (batch) must be 1 for the im2col generator, not {layer.n}")
        for name, top in (("h", self.max_h), ("w", self.max_w), ("c", self.max_c), ("kh", self.max_kernel),
                          ("kw", self.max_kernel), ("stride_h", self.max_stride), ("stride_w", self.max_stride),
                          ("pad_top", self.max_pad), ("pad_left", self.max_pad), ("pad_bottom", self.max_pad),
                          ("pad_right", self.max_pad), ("dil_h", self.max_dilation), ("dil_w", self.max_dilation),
                          ("groups", self.max_c)):
            v = getattr(layer, name)
            if v > top:
                lo = 0 if name.startswith("pad") else 1
                raise ConfigError(f"{name} must be an integer in {lo}..{top} (the generator's elaboration "
                                  f"maximum), not {v}")
        return layer

    # -- ranges and widths ----------------------------------------------------------------
    @property
    def address_range(self) -> IntRange:
        """Element addresses of one NHWC image: 0 .. max_h*max_w*max_c - 1."""
        return IntRange(0, max(1, self.max_h * self.max_w * self.max_c - 1))

    @property
    def addr_width(self) -> int:
        return self.address_range.width

    @property
    def div_cycles(self) -> int:
        """Cycles of the restoring divider that computes C / groups."""
        return _bits(self.max_c)

    @property
    def setup_cycles(self) -> int:
        """Cycles from the cycle of the configuration transfer to the cycle of the first
        element (transfer cycle, divider, two product stages, start). ``error`` of an invalid
        layer is high from ``setup_cycles - 1`` cycles after the transfer."""
        return self.div_cycles + 4

    @cached_property
    def cfg_layout(self) -> data.StructLayout:
        """Run-time layer description. Field widths hold the maxima (and, where the width
        allows, larger values, which the hardware rejects with ``error``)."""
        hb, wb, cb = _bits(self.max_h), _bits(self.max_w), _bits(self.max_c)
        kb, sb, pb, db = _bits(self.max_kernel), _bits(self.max_stride), _bits(max(self.max_pad, 1)), \
            _bits(self.max_dilation)
        return data.StructLayout({
            "h": hb, "w": wb, "c": cb, "kh": kb, "kw": kb,
            "stride_h": sb, "stride_w": sb,
            "pad_top": pb, "pad_left": pb, "pad_bottom": pb, "pad_right": pb,
            "dil_h": db, "dil_w": db, "groups": cb, "indirect": 1,
        })

    @cached_property
    def o_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "addr": unsigned(self.addr_width),
            "pad": 1,        # tap outside the image (or a fill row): use the input zero point
            "fill": 1,       # tile row past the last output pixel (pad is also set)
            "first": 1,      # first tap of the reduction (k = 0)
            "last": 1,       # last tap of the reduction (k = K-1): ends a GEMM tile
            "lane_last": 1,  # last tile row: completes one `a` beat of the systolic array
            "end": 1,        # last element of the layer
        })


class Im2colAddressGenerator(wiring.Component):
    """Streams the im2col addresses of one convolution layer per configuration beat.

    Parameters
    ----------
    config : Im2colConfig
        Default: ``Im2colConfig()``.

    Attributes
    ----------
    cfg : In(stream.Signature(Im2colConfig.cfg_layout))
        One beat programs one layer (see :class:`~convgen.core.layer.ConvLayer` for the fields). Accepted only
        while idle (``ready`` is low while a layer is being set up or streamed), so a new
        layer can be queued at any time and follows without reset.
    o : Out(stream.Signature(Im2colConfig.o_layout))
        One element per cycle while ``ready`` is high, ``valid`` high without a gap from the
        first element of the layer to the last. Order (``R = tile_rows``; in indirection mode
        ``groups`` and ``c`` loops have length 1)::

            for g in groups:                          # one GEMM per group
              for t in tiles (ceil(OH*OW / R)):       # R output pixels m = t*R + r
                for kh, kw, c in KH x KW x C/groups:  # reduction index k, c fastest
                  for r in 0..R-1:                    # lanes of one systolic `a` beat
                    emit addr of x[ih, iw, g*C/groups + c]  (NHWC, image base 0)

        with ``ih = oh*stride_h - pad_top + kh*dil_h`` (likewise ``iw``). ``pad`` marks taps
        outside the image (addr 0) and fill rows ``m >= OH*OW`` of a last partial tile
        (``fill``, addr 0). ``first``/``last`` mark k = 0 and k = K-1, ``lane_last`` r = R-1,
        ``end`` the last element. Indirection mode emits the pointer ``(ih*W + iw)*C``.
    error : Out(1)
        High from the end of setup of an invalid layer until the next configuration
        transfer; such a layer emits nothing. Invalid: a zero size, kernel, stride, dilation
        or group count; any field above its elaboration maximum; ``c`` not divisible by
        ``groups``; an output height or width below 1.
    busy : Out(1)
        A layer is being set up or streamed.

    Latency: :attr:`Im2colConfig.setup_cycles` from the configuration transfer to the first
    ``o.valid`` (or ``error``). Throughput: exactly one element per cycle without
    backpressure. Reset (``rst``, synchronous) aborts the layer.
    """

    def __init__(self, config: Im2colConfig | None = None):
        config = Im2colConfig() if config is None else config
        if not isinstance(config, Im2colConfig):
            raise TypeError(f"config must be an Im2colConfig, not {config!r}")
        self._config = config
        super().__init__({
            "cfg": In(stream.Signature(config.cfg_layout)),
            "o": Out(stream.Signature(config.o_layout)),
            "error": Out(1),
            "busy": Out(1),
        })

    @property
    def config(self) -> Im2colConfig:
        return self._config

    def elaborate(self, platform):
        hw = self._config
        m = Module()
        R = hw.tile_rows
        WC_MAX = hw.max_w * hw.max_c
        HWC_MAX = hw.max_h * WC_MAX
        ext_max = hw.max_dilation * (hw.max_kernel - 1)

        # -- latched layer --------------------------------------------------------------
        L = Signal(hw.cfg_layout, name="layer")
        # divider C / groups (restoring, one quotient bit per cycle)
        cb = _bits(hw.max_c)
        div_n = Signal(range(cb + 1), name="div_n")
        div_rem = Signal(cb + 1, name="div_rem")
        div_quo = Signal(cb, name="div_quo")
        div_src = Signal(cb, name="div_src")

        # -- derived per-layer constants (setup stages) ------------------------------------
        # Ranges (all derived from the maxima, never typed by hand)
        wc_shape = shape_of(IntRange(0, WC_MAX))
        row_step_shape = shape_of(IntRange(0, hw.max_stride * WC_MAX))
        drow_shape = shape_of(IntRange(0, hw.max_dilation * WC_MAX))
        ih_range = IntRange(-hw.max_pad, hw.max_h + hw.max_pad + hw.max_stride)
        iw_range = IntRange(-hw.max_pad, hw.max_w + hw.max_pad + hw.max_stride)
        off_range = IntRange(0, ext_max)
        row_addr_range = IntRange(-hw.max_pad * WC_MAX, (hw.max_h + hw.max_pad + hw.max_stride) * WC_MAX)
        col_addr_range = IntRange(-hw.max_pad * hw.max_c, (hw.max_w + hw.max_pad + hw.max_stride) * hw.max_c)
        kh_addr_range = IntRange(0, ext_max * WC_MAX)
        kw_addr_range = IntRange(0, ext_max * hw.max_c)
        chan_range = IntRange(0, 2 * hw.max_c)
        addr_sum_range = row_addr_range + kh_addr_range + col_addr_range + kw_addr_range + chan_range
        assert fits(IntRange(0, HWC_MAX - 1), unsigned(hw.addr_width))

        wc = Signal(wc_shape, name="wc")
        row_step = Signal(row_step_shape, name="row_step")   # stride_h * W * C
        drow = Signal(drow_shape, name="drow")               # dil_h * W * C
        col_step = Signal(shape_of(IntRange(0, hw.max_stride * hw.max_c)), name="col_step")
        dcol = Signal(shape_of(IntRange(0, hw.max_dilation * hw.max_c)), name="dcol")
        row0 = Signal(shape_of(row_addr_range), name="row0")     # -pad_top * W * C
        col0 = Signal(shape_of(col_addr_range), name="col0")     # -pad_left * C
        ext_h = Signal(shape_of(off_range), name="ext_h")
        ext_w = Signal(shape_of(off_range), name="ext_w")
        lim_h = Signal(shape_of(ih_range), name="lim_h")         # largest valid ih_base
        lim_w = Signal(shape_of(iw_range), name="lim_w")
        cg = Signal(cb, name="cg")                           # loop length of c
        ng = Signal(cb, name="ng")                           # loop length of groups
        bad = Signal(name="bad")

        # -- loop state -----------------------------------------------------------------
        g = Signal(cb, name="g")
        chan_base = Signal(shape_of(chan_range), name="chan_base")
        kh = Signal(range(hw.max_kernel + 1), name="kh_i")
        kw = Signal(range(hw.max_kernel + 1), name="kw_i")
        c = Signal(cb, name="c_i")
        kh_off = Signal(shape_of(off_range), name="kh_off")
        kw_off = Signal(shape_of(off_range), name="kw_off")
        kh_addr = Signal(shape_of(kh_addr_range), name="kh_addr")
        kw_addr = Signal(shape_of(kw_addr_range), name="kw_addr")
        r = Signal(index_range(R), name="r")

        def pixel_state(prefix):
            return {
                "ih": Signal(shape_of(ih_range), name=f"{prefix}_ih"),
                "iw": Signal(shape_of(iw_range), name=f"{prefix}_iw"),
                "row": Signal(shape_of(row_addr_range), name=f"{prefix}_row"),
                "col": Signal(shape_of(col_addr_range), name=f"{prefix}_col"),
                "done": Signal(name=f"{prefix}_done"),
            }
        cur = pixel_state("cur")     # pixel of the current tile row r
        start = pixel_state("tile")  # pixel of row 0 of the current tile

        def assign(dst, src):
            return [dst[k].eq(src[k]) for k in dst]

        # next pixel after `cur` in row-major output order (holds once past the end)
        nxt = pixel_state("next")
        wrap_w = Signal()
        m.d.comb += [
            wrap_w.eq(cur["iw"] + L.stride_w > lim_w),
        ]
        # (Mux, not If: Icarus does not evaluate an ``always @*`` block until an input changes)
        end_h = cur["ih"] + L.stride_h > lim_h
        step = ~cur["done"]
        m.d.comb += [
            nxt["iw"].eq(Mux(step, Mux(wrap_w, -L.pad_left, cur["iw"] + L.stride_w), cur["iw"])),
            nxt["col"].eq(Mux(step, Mux(wrap_w, col0, cur["col"] + col_step), cur["col"])),
            nxt["ih"].eq(Mux(step & wrap_w, cur["ih"] + L.stride_h, cur["ih"])),
            nxt["row"].eq(Mux(step & wrap_w, cur["row"] + row_step, cur["row"])),
            nxt["done"].eq(cur["done"] | (wrap_w & end_h)),
        ]

        initial = {"ih": -L.pad_top, "iw": -L.pad_left, "row": row0, "col": col0, "done": 0}

        # -- the current element -------------------------------------------------------
        ih = Signal(shape_of(IntRange(ih_range.lo, ih_range.hi + ext_max)))
        iw = Signal(shape_of(IntRange(iw_range.lo, iw_range.hi + ext_max)))
        addr_sum = Signal(shape_of(addr_sum_range))
        outside = Signal()
        m.d.comb += [
            ih.eq(cur["ih"] + kh_off),
            iw.eq(cur["iw"] + kw_off),
            outside.eq((ih < 0) | (ih >= L.h) | (iw < 0) | (iw >= L.w) | cur["done"]),
            addr_sum.eq(cur["row"] + kh_addr + cur["col"] + kw_addr + chan_base + c),
        ]
        kh_last = Signal()
        kw_last = Signal()
        c_last = Signal()
        k_last = Signal()
        r_last = Signal()
        g_last = Signal()
        m.d.comb += [
            kh_last.eq(kh == L.kh - 1), kw_last.eq(kw == L.kw - 1), c_last.eq(c == cg - 1),
            k_last.eq(kh_last & kw_last & c_last), r_last.eq(r == R - 1), g_last.eq(g == ng - 1),
        ]
        tile_end = Signal()
        layer_end = Signal()
        m.d.comb += [tile_end.eq(k_last & r_last),
                     layer_end.eq(tile_end & nxt["done"] & g_last)]
        m.d.comb += [
            self.o.payload.addr.eq(Mux(outside, 0, addr_sum)),
            self.o.payload.pad.eq(outside),
            self.o.payload.fill.eq(cur["done"]),
            self.o.payload.first.eq((kh == 0) & (kw == 0) & (c == 0)),
            self.o.payload.last.eq(k_last),
            self.o.payload.lane_last.eq(r_last),
            self.o.payload.end.eq(layer_end),
        ]

        error = Signal(name="error_flag")
        m.d.comb += self.error.eq(error)

        with m.FSM(name="im2col_fsm") as fsm:
            with m.State("IDLE"):
                with m.If(self.cfg.valid):
                    m.d.sync += [L.eq(self.cfg.payload), error.eq(0),
                                 div_n.eq(cb), div_rem.eq(0), div_quo.eq(0), div_src.eq(self.cfg.payload.c)]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                trial = Cat(div_src[cb - 1], div_rem[:cb])
                ge = trial >= L.groups
                m.d.sync += [
                    div_src.eq(div_src << 1),
                    div_rem.eq(Mux(ge, trial - L.groups, trial)),
                    div_quo.eq(Cat(ge, div_quo[:cb - 1])),
                    div_n.eq(div_n - 1),
                ]
                with m.If(div_n == 1):
                    m.next = "PRODUCTS"
            with m.State("PRODUCTS"):
                m.d.sync += [
                    wc.eq(L.w * L.c),
                    col_step.eq(L.stride_w * L.c),
                    dcol.eq(L.dil_w * L.c),
                    col0.eq(-(L.pad_left * L.c)),
                    ext_h.eq(L.dil_h * (L.kh - 1)),
                    ext_w.eq(L.dil_w * (L.kw - 1)),
                    cg.eq(Mux(L.indirect, 1, div_quo)),
                    ng.eq(Mux(L.indirect, 1, L.groups)),
                ]
                def above(value, top):
                    # only where the field can hold top + 1 (else Verilator: CMPCONST)
                    return value > top if top + 1 < (1 << len(value)) else Const(0)
                checks = [
                    (L.h == 0) | above(L.h, hw.max_h), (L.w == 0) | above(L.w, hw.max_w),
                    (L.c == 0) | above(L.c, hw.max_c),
                    (L.kh == 0) | above(L.kh, hw.max_kernel), (L.kw == 0) | above(L.kw, hw.max_kernel),
                    (L.stride_h == 0) | above(L.stride_h, hw.max_stride),
                    (L.stride_w == 0) | above(L.stride_w, hw.max_stride),
                    above(L.pad_top, hw.max_pad), above(L.pad_left, hw.max_pad),
                    above(L.pad_bottom, hw.max_pad), above(L.pad_right, hw.max_pad),
                    (L.dil_h == 0) | above(L.dil_h, hw.max_dilation),
                    (L.dil_w == 0) | above(L.dil_w, hw.max_dilation),
                    (L.groups == 0) | (L.groups > L.c) | (div_rem != 0),
                ]
                bad_now = 0
                for chk in checks:
                    bad_now = bad_now | chk
                m.d.sync += bad.eq(bad_now)
                m.next = "PRODUCTS2"
            with m.State("PRODUCTS2"):
                m.d.sync += [
                    row_step.eq(L.stride_h * wc),
                    drow.eq(L.dil_h * wc),
                    row0.eq(-(L.pad_top * wc)),
                    lim_h.eq(L.h + L.pad_bottom - 1 - ext_h),
                    lim_w.eq(L.w + L.pad_right - 1 - ext_w),
                ]
                # output size >= 1  <=>  h + pad_top + pad_bottom - 1 - ext_h >= 0
                small = ((L.h + L.pad_top + L.pad_bottom - 1 - ext_h).as_signed() < 0) | \
                        ((L.w + L.pad_left + L.pad_right - 1 - ext_w).as_signed() < 0)
                with m.If(bad | small):
                    m.d.sync += error.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "START"
            with m.State("START"):
                m.d.sync += [assign(cur, initial), assign(start, initial),
                             g.eq(0), chan_base.eq(0), kh.eq(0), kw.eq(0), c.eq(0),
                             kh_off.eq(0), kw_off.eq(0), kh_addr.eq(0), kw_addr.eq(0), r.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.o.ready):
                    with m.If(~r_last):
                        m.d.sync += [r.eq(r + 1), assign(cur, nxt)]
                    with m.Else():
                        m.d.sync += r.eq(0)
                        # advance the reduction index k = (kh, kw, c)
                        with m.If(~c_last):
                            m.d.sync += c.eq(c + 1)
                        with m.Else():
                            m.d.sync += c.eq(0)
                            with m.If(~kw_last):
                                m.d.sync += [kw.eq(kw + 1), kw_off.eq(kw_off + L.dil_w), kw_addr.eq(kw_addr + dcol)]
                            with m.Else():
                                m.d.sync += [kw.eq(0), kw_off.eq(0), kw_addr.eq(0)]
                                with m.If(~kh_last):
                                    m.d.sync += [kh.eq(kh + 1), kh_off.eq(kh_off + L.dil_h),
                                                 kh_addr.eq(kh_addr + drow)]
                                with m.Else():
                                    m.d.sync += [kh.eq(0), kh_off.eq(0), kh_addr.eq(0)]
                        with m.If(~k_last):
                            m.d.sync += assign(cur, start)          # same pixels, next k
                        with m.Elif(~nxt["done"]):
                            m.d.sync += [assign(cur, nxt), assign(start, nxt)]   # next tile
                        with m.Elif(~g_last):
                            m.d.sync += [assign(cur, initial), assign(start, initial),
                                         g.eq(g + 1), chan_base.eq(chan_base + cg)]
                        with m.Else():
                            m.next = "IDLE"
        # status as continuous assignments (see the Icarus note above)
        m.d.comb += [self.cfg.ready.eq(fsm.ongoing("IDLE")), self.busy.eq(~fsm.ongoing("IDLE")),
                     self.o.valid.eq(fsm.ongoing("RUN"))]
        return m


def manifest_extra(hw: Im2colConfig) -> dict:
    return {
        "timing": {
            "setup_cycles": hw.setup_cycles,
            "setup_formula": "bits(max_c) + 4 (cfg transfer cycle, restoring divider C/groups, 2 product stages, start); error valid one cycle earlier",
            "throughput": "1 element per cycle, no bubbles within a layer",
        },
        "ordering": ("for g in groups: for tile of tile_rows output pixels: for (kh, kw, c): "
                     "for r in tile_rows: NHWC address of x[oh*sh-pt+kh*dh, ow*sw-pl+kw*dw, g*C/groups+c]"),
        "memory_layout": "NHWC, one image, element address (ih*W + iw)*C + ch",
    }
