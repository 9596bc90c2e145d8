"""Exact integer Winograd F(2,3) / F(2x2,3x3) convolution on valid/ready streams.

Transforms (Lavin & Gray 2016, eq. 7; matrices in :mod:`convgen.golden.winograd`, which also
records the cross-check against wincnn):

- :class:`WinogradInputTransform`  ``V = B^T d B`` on a 4x4 tile;
- :class:`WinogradFilterTransform` ``U4 = (2G) g (2G)^T = 4 G g G^T`` on a 3x3 filter; the
  factor 2 makes every entry of G integer, the resulting factor 4 is carried to the output;
- :class:`WinogradOutputTransform` ``Y = (A^T M4 A) >> 2``, 2x2 outputs;
- :class:`WinogradF23` the 1-D F(2,3) datapath (4 multiplies for 2 outputs);
- :class:`WinogradConv3x3` input transform, filter transform, 16 element-wise multiplies,
  accumulation over input channels and output transform: one 2x2 output tile of a stride-1
  3x3 convolution per group of beats (one beat per input channel).

Widths are derived from the operand widths by exact interval arithmetic
(:class:`~convgen.core.intrange.IntRange`), per element, and checked at elaboration. For int8
data and weights: transformed input 10 bits ([-512, 510]), scaled transformed filter 12 bits
([-1152, 1143]), products 21 bits ([-587520, 589824]); see docs/winograd.md.

Accumulation is modular on purpose: the channel sum ``M4`` and the output transform are
computed modulo ``2**(out_width + 2)``. Because every step is an integer-linear map, the
result is ``Y mod 2**out_width`` exactly, so the output is the exact convolution whenever the
true ``Y`` fits ``out_width`` bits (``max_channels`` input channels for any operands), with no
accumulator width that grows with the channel count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from amaranth.hdl import Const, Module, Shape, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.core.winograd import AT, BT, FILTER_SHIFT, G2

from convgen.core.intrange import IntRange
from convgen.core.fields import Config, param
from convgen.core.params import ConfigError, check_int
from .lib import FlatArrayLayout, PipelineStage, ReducePipeline, with_payload
from .shapes import fits, range_of, shape_of

__all__ = ["WinogradConfig", "WinogradInputTransform", "WinogradFilterTransform",
           "WinogradOutputTransform", "WinogradF23", "WinogradF23Core", "WinogradConv3x3",
           "TILE", "OUT_TILE", "lin_range", "manifest_extra"]

TILE = 4        # input tile edge (m + r - 1)
OUT_TILE = 2    # output tile edge (m)
KSIZE = 3       # kernel edge (r)


# ---- exact linear combinations ------------------------------------------------------------
def lin_range(coeffs, ranges) -> IntRange:
    """Exact range of ``sum(c * x)`` for independent ``x`` in ``ranges``."""
    lo = hi = 0
    for c, r in zip(coeffs, ranges):
        c = int(c)
        lo += min(c * r.lo, c * r.hi)
        hi += max(c * r.lo, c * r.hi)
    return IntRange(lo, hi)


def _lin_expr(coeffs, values):
    """``sum(c * v)`` for small integer c; powers of two become shifts (no multiplier cells).
    Amaranth widens additions, so the expression itself never overflows."""
    total = None
    for c, v in zip(coeffs, values):
        c = int(c)
        if c == 0:
            continue
        mag = abs(c)
        if mag & (mag - 1):
            term = v * mag
        else:
            term = v << (mag.bit_length() - 1) if mag > 1 else v
        if total is None:
            total = -term if c < 0 else term
        else:
            total = total - term if c < 0 else total + term
    return Const(0) if total is None else total


def _fit(m, name, expr, rng: IntRange, shape: Shape | None = None, domain="comb"):
    """A signal of ``shape`` (default: the exact shape of ``rng``) assigned ``expr``; the range
    must fit the shape (checked here, at elaboration)."""
    shape = shape_of(rng) if shape is None else shape
    if not fits(rng, shape):
        raise AssertionError(f"{name}: range {rng.lo}..{rng.hi} does not fit {shape}")
    sig = Signal(shape, name=name)
    getattr(m.d, domain).__iadd__(sig.eq(expr))
    return sig


def _matmul(m, prefix, left, xs, x_ranges, right=None):
    """``left @ X @ right^T`` for a matrix X given as a list of rows of signals with their
    ranges. Returns (rows of signals, rows of ranges), exact widths per element."""
    rows = len(left)
    inner = len(xs)
    cols_in = len(xs[0])
    tmp, tmp_r = [], []
    for i in range(rows):
        row, row_r = [], []
        for j in range(cols_in):
            coeffs = [left[i][k] for k in range(inner)]
            vals = [xs[k][j] for k in range(inner)]
            rng = lin_range(coeffs, [x_ranges[k][j] for k in range(inner)])
            row.append(_fit(m, f"{prefix}_l{i}_{j}", _lin_expr(coeffs, vals), rng))
            row_r.append(rng)
        tmp.append(row)
        tmp_r.append(row_r)
    if right is None:
        return tmp, tmp_r
    out, out_r = [], []
    for i in range(rows):
        row, row_r = [], []
        for k in range(len(right)):
            coeffs = list(right[k])
            rng = lin_range(coeffs, tmp_r[i])
            row.append(_fit(m, f"{prefix}_{i}_{k}", _lin_expr(coeffs, tmp[i]), rng))
            row_r.append(rng)
        out.append(row)
        out_r.append(row_r)
    return out, out_r


def _union(ranges) -> IntRange:
    flat = [r for row in ranges for r in row] if isinstance(ranges[0], list) else list(ranges)
    return IntRange(min(r.lo for r in flat), max(r.hi for r in flat))


# ---- configuration ------------------------------------------------------------------------
def min_out_width(data_width: int, weight_width: int) -> int:
    """Bits of one exact 3x3 dot product (C_in = 1) of signed operands."""
    product = IntRange.of_operand(data_width, True) * IntRange.of_operand(weight_width, True)
    return product.scale(KSIZE * KSIZE).width


@dataclass(frozen=True)
class WinogradConfig(Config):
    """Parameters of the Winograd blocks, checked on construction.

    Parameters
    ----------
    data_width : int, 2..16
        Signed (two's complement) activation width (default 8, int8).
    weight_width : int, 2..16
        Signed weight width (default 8).
    out_width : int
        Output width (default 32). At least the width of one 3x3 dot product (so C_in = 1 is
        exact), at most 64. :attr:`max_channels` is the largest C_in that can never overflow.
    """

    # checked by Config.__post_init__ against these declarations
    data_width: int = param(8, "signed activation bits", lo=2, hi=16)
    weight_width: int = param(8, "signed weight bits", lo=2, hi=16)
    out_width: int = param(32, "output bits; C_in up to max_channels can never overflow",
                           lo=lambda v: min_out_width(v["data_width"], v["weight_width"]),
                           lo_text="the width of one 3x3 dot product", hi=64)

    # -- arithmetic ----------------------------------------------------------------------
    @property
    def d_range(self) -> IntRange:
        return IntRange.of_operand(self.data_width, True)

    @property
    def g_range(self) -> IntRange:
        return IntRange.of_operand(self.weight_width, True)

    @property
    def direct_product_range(self) -> IntRange:
        return self.d_range * self.g_range

    @cached_property
    def v_ranges(self) -> list[list[IntRange]]:
        """Exact range of each element of ``V = B^T d B``."""
        return _ranges_2d(BT, self.d_range, TILE)

    @cached_property
    def u_ranges(self) -> list[list[IntRange]]:
        """Exact range of each element of ``U4 = (2G) g (2G)^T``."""
        return _ranges_2d(G2, self.g_range, KSIZE)

    @property
    def v_range(self) -> IntRange:
        return _union(self.v_ranges)

    @property
    def u_range(self) -> IntRange:
        return _union(self.u_ranges)

    @cached_property
    def p_ranges(self) -> list[list[IntRange]]:
        return [[self.v_ranges[i][j] * self.u_ranges[i][j] for j in range(TILE)] for i in range(TILE)]

    @property
    def p_range(self) -> IntRange:
        return _union(self.p_ranges)

    @property
    def acc_width(self) -> int:
        """Modular width of the channel sum M4 and of the output transform."""
        return self.out_width + FILTER_SHIFT

    @property
    def out_range(self) -> IntRange:
        return IntRange.of_operand(self.out_width, True)

    @property
    def max_channels(self) -> int:
        """Largest C_in for which no output can overflow ``out_width`` bits."""
        return self.direct_product_range.max_terms(self.out_range) // (KSIZE * KSIZE)

    # 1-D F(2,3)
    @property
    def v1_ranges(self) -> list[IntRange]:
        return [lin_range(row, [self.d_range] * TILE) for row in BT]

    @property
    def u1_ranges(self) -> list[IntRange]:
        return [lin_range(row, [self.g_range] * KSIZE) for row in G2]

    @property
    def y1_range(self) -> IntRange:
        return self.direct_product_range.scale(KSIZE)

    # -- multiplies ------------------------------------------------------------------------
    @property
    def multiplier_shape(self) -> tuple[int, int]:
        """Operand widths of the element-wise multipliers (transformed input x filter)."""
        return (self.v_range.width, self.u_range.width)

    # -- naming / layouts ----------------------------------------------------------------
    @property
    def module_suffix(self) -> str:
        return f"d{self.data_width}_g{self.weight_width}_o{self.out_width}"

    def module_name(self, kind: str = "conv3x3") -> str:
        return f"convgen_winograd_{kind}_{self.module_suffix}"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def d_shape(self):
        return signed(self.data_width)

    @property
    def g_shape(self):
        return signed(self.weight_width)

    @cached_property
    def conv_in_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "d": data.ArrayLayout(self.d_shape, TILE * TILE),
            "g": data.ArrayLayout(self.g_shape, KSIZE * KSIZE),
            "last": 1,
        })

    @cached_property
    def conv_out_layout(self) -> data.ArrayLayout:
        return FlatArrayLayout(signed(self.out_width), OUT_TILE * OUT_TILE)


def _ranges_2d(mat, elem: IntRange, n_in: int) -> list[list[IntRange]]:
    left = [lin_range(row, [elem] * n_in) for row in mat]      # rows of mat @ x: per row i
    # (mat @ x)[i][j] has range left[i] for every j; then @ mat^T along j
    return [[lin_range(mat[k], [left[i]] * n_in) for k in range(len(mat))] for i in range(len(mat))]


# ---- combinational transforms (shared by the components) ------------------------------------
def _grid(values, n):
    return [[values[r * n + c] for c in range(n)] for r in range(n)]


def input_transform_comb(m, cfg: WinogradConfig, d_flat, prefix="bt"):
    d = _grid(d_flat, TILE)
    rng = [[cfg.d_range] * TILE for _ in range(TILE)]
    return _matmul(m, prefix, BT.tolist(), d, rng, right=BT.tolist())


def filter_transform_comb(m, cfg: WinogradConfig, g_flat, prefix="g2"):
    g = _grid(g_flat, KSIZE)
    rng = [[cfg.g_range] * KSIZE for _ in range(KSIZE)]
    return _matmul(m, prefix, G2.tolist(), g, rng, right=G2.tolist())


def output_transform_comb(m, m4, acc_width: int, out_width: int, prefix="at"):
    """``((A^T M4 A) mod 2**acc_width) >> FILTER_SHIFT`` truncated to ``out_width`` bits.
    Intermediates are kept modulo ``2**acc_width`` (see the module docstring)."""
    acc_shape = signed(acc_width)
    full = range_of(acc_shape)
    tmp = []
    for i in range(OUT_TILE):
        row = []
        for j in range(TILE):
            coeffs = [AT[i][k] for k in range(TILE)]
            sig = Signal(acc_shape, name=f"{prefix}_l{i}_{j}")
            m.d.comb += sig.eq(_lin_expr(coeffs, [m4[k][j] for k in range(TILE)]))  # mod 2**acc
            row.append(sig)
        tmp.append(row)
    out = []
    for i in range(OUT_TILE):
        for k in range(OUT_TILE):
            sig = Signal(acc_shape, name=f"{prefix}_{i}_{k}")
            m.d.comb += sig.eq(_lin_expr(list(AT[k]), tmp[i]))
            shifted = Signal(signed(out_width), name=f"{prefix}_y{i}_{k}")
            m.d.comb += shifted.eq(sig >> FILTER_SHIFT)
            out.append(shifted)
    del full
    return out


# ---- single-register stream stage ---------------------------------------------------------
def _stage(m, i_stream, o_stream, result):
    """``result`` (a combinational function of ``i_stream.payload``) registered onto
    ``o_stream`` by a :class:`~convgen.hdl.lib.PipelineStage`: latency 1 cycle, one beat per
    cycle, ``i.ready = ~o.valid | o.ready``."""
    m.submodules.stage = stage = PipelineStage(o_stream.payload.shape())
    wiring.connect(m, with_payload(i_stream, result), stage.i)
    wiring.connect(m, stage.o, wiring.flipped(o_stream))


class _Block(wiring.Component):
    def __init__(self, config: WinogradConfig | None, signature):
        config = WinogradConfig() if config is None else config
        if not isinstance(config, WinogradConfig):
            raise TypeError(f"config must be a WinogradConfig, not {config!r}")
        self._config = config
        super().__init__(signature(config))

    @property
    def config(self) -> WinogradConfig:
        return self._config


class WinogradInputTransform(_Block):
    """``V = B^T d B`` of one 4x4 tile per beat.

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(signed(data_width), 16)))
        The tile, row-major: lane ``4*r + c`` is ``d[r][c]``.
    o : Out(stream.Signature(ArrayLayout(signed(vw), 16)))
        ``V`` row-major; ``vw`` = width of ``config.v_range`` (10 for int8).

    Latency 1 cycle, one tile per cycle; payload registered; ``i.ready = ~o.valid | o.ready``.
    """

    KIND = "input_transform"

    def __init__(self, config: WinogradConfig | None = None):
        super().__init__(config, lambda c: {
            "i": In(stream.Signature(data.ArrayLayout(c.d_shape, TILE * TILE))),
            "o": Out(stream.Signature(FlatArrayLayout(shape_of(c.v_range), TILE * TILE))),
        })

    def elaborate(self, platform):
        m = Module()
        v, _ = input_transform_comb(m, self.config, list(self.i.payload))
        res = Signal(self.o.payload.shape())
        for r in range(TILE):
            for c in range(TILE):
                m.d.comb += res[r * TILE + c].eq(v[r][c])
        _stage(m, self.i, self.o, res)
        return m


class WinogradFilterTransform(_Block):
    """``U4 = (2G) g (2G)^T`` (= 4 G g G^T, exact integers) of one 3x3 filter per beat.

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(signed(weight_width), 9)))
        Row-major filter: lane ``3*r + c`` is ``g[r][c]``.
    o : Out(stream.Signature(ArrayLayout(signed(uw), 16)))
        ``U4`` row-major; ``uw`` = width of ``config.u_range`` (12 for int8).

    Latency 1 cycle, one filter per cycle.
    """

    KIND = "filter_transform"

    def __init__(self, config: WinogradConfig | None = None):
        super().__init__(config, lambda c: {
            "i": In(stream.Signature(data.ArrayLayout(c.g_shape, KSIZE * KSIZE))),
            "o": Out(stream.Signature(FlatArrayLayout(shape_of(c.u_range), TILE * TILE))),
        })

    def elaborate(self, platform):
        m = Module()
        u, _ = filter_transform_comb(m, self.config, list(self.i.payload))
        res = Signal(self.o.payload.shape())
        for r in range(TILE):
            for c in range(TILE):
                m.d.comb += res[r * TILE + c].eq(u[r][c])
        _stage(m, self.i, self.o, res)
        return m


class WinogradOutputTransform(_Block):
    """``Y = ((A^T M4 A) mod 2**acc_width) >> 2``, wrapped to ``out_width`` bits.

    With ``M4 = sum_c U4 (.) V`` this is the exact convolution output whenever it fits
    ``out_width`` bits (the shift drops two zero bits). For an arbitrary ``M4`` it is the floor
    division, modulo ``2**out_width`` (what golden.winograd.output_transform + wrap computes).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(signed(acc_width), 16)))
        ``M4`` row-major, ``acc_width = out_width + 2``.
    o : Out(stream.Signature(ArrayLayout(signed(out_width), 4)))
        ``Y`` row-major (lane ``2*r + c``).

    Latency 1 cycle, one tile per cycle.
    """

    KIND = "output_transform"

    def __init__(self, config: WinogradConfig | None = None):
        super().__init__(config, lambda c: {
            "i": In(stream.Signature(data.ArrayLayout(signed(c.acc_width), TILE * TILE))),
            "o": Out(stream.Signature(c.conv_out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m4 = _grid(list(self.i.payload), TILE)
        y = output_transform_comb(m, m4, cfg.acc_width, cfg.out_width)
        res = Signal(cfg.conv_out_layout)
        for k in range(OUT_TILE * OUT_TILE):
            m.d.comb += res[k].eq(y[k])
        _stage(m, self.i, self.o, res)
        return m


class WinogradF23Core(wiring.Component):
    """Combinational 1-D F(2,3): ``y = (A^T [(2G g) (.) (B^T d)]) >> 1``, 4 multiplies.

    Ports are plain vectors (``d0..d3``, ``g0..g2`` in, ``y0``, ``y1`` out) so that the formal
    equivalence check (formal/winograd/) can compare it with a direct 3-tap FIR."""

    def __init__(self, config: WinogradConfig | None = None):
        cfg = config if config is not None else WinogradConfig()
        self._config = cfg
        sig = {f"d{k}": In(cfg.d_shape) for k in range(TILE)}
        sig.update({f"g{k}": In(cfg.g_shape) for k in range(KSIZE)})
        sig.update({f"y{k}": Out(shape_of(cfg.y1_range)) for k in range(OUT_TILE)})
        super().__init__(sig)

    @property
    def config(self) -> WinogradConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        d = [getattr(self, f"d{k}") for k in range(TILE)]
        g = [getattr(self, f"g{k}") for k in range(KSIZE)]
        v = [_fit(m, f"v{a}", _lin_expr(BT[a], d), cfg.v1_ranges[a]) for a in range(TILE)]
        u = [_fit(m, f"u{a}", _lin_expr(G2[a], g), cfg.u1_ranges[a]) for a in range(TILE)]
        p_r = [cfg.v1_ranges[a] * cfg.u1_ranges[a] for a in range(TILE)]
        p = [_fit(m, f"p{a}", v[a] * u[a], p_r[a]) for a in range(TILE)]
        for o in range(OUT_TILE):
            s_r = lin_range(AT[o], p_r)
            s = _fit(m, f"s{o}", _lin_expr(AT[o], p), s_r)
            # 2*y exactly; y fits its direct-convolution range (proved in formal/winograd)
            m.d.comb += getattr(self, f"y{o}").eq(s >> 1)
        return m


class WinogradF23(_Block):
    """1-D F(2,3) on a stream: 2 outputs of a 3-tap filter per beat, 4 multiplies.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"d": ArrayLayout(signed(data_width), 4),
                                          "g": ArrayLayout(signed(weight_width), 3)})))
    o : Out(stream.Signature(ArrayLayout(signed(yw), 2)))
        ``y[k] = d[k] g[0] + d[k+1] g[1] + d[k+2] g[2]``, ``yw`` = width of ``3 * d * g``
        (18 for int8): never overflows.

    Latency 1 cycle, one beat per cycle.
    """

    KIND = "f23"

    def __init__(self, config: WinogradConfig | None = None):
        super().__init__(config, lambda c: {
            "i": In(stream.Signature(data.StructLayout({
                "d": data.ArrayLayout(c.d_shape, TILE), "g": data.ArrayLayout(c.g_shape, KSIZE)}))),
            "o": Out(stream.Signature(FlatArrayLayout(shape_of(c.y1_range), OUT_TILE))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = WinogradF23Core(self.config)
        for k in range(TILE):
            m.d.comb += getattr(core, f"d{k}").eq(self.i.payload.d[k])
        for k in range(KSIZE):
            m.d.comb += getattr(core, f"g{k}").eq(self.i.payload.g[k])
        res = Signal(self.o.payload.shape())
        m.d.comb += [res[k].eq(getattr(core, f"y{k}")) for k in range(OUT_TILE)]
        _stage(m, self.i, self.o, res)
        return m


class WinogradConv3x3(_Block):
    """One 2x2 output tile of a stride-1 3x3 convolution per group of beats, F(2x2,3x3).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"d": ArrayLayout(signed(data_width), 16),
                                          "g": ArrayLayout(signed(weight_width), 9),
                                          "last": 1})))
        One beat per input channel ``c``: the 4x4 input tile of channel ``c`` (row-major) and
        the 3x3 filter ``w[o, c]`` (row-major). ``last`` marks the final channel of the tile.
        A group may have any number of beats (C_in = 1 .. ``max_channels`` is exact).
    o : Out(stream.Signature(ArrayLayout(signed(out_width), 4)))
        ``y[o, oy:oy+2, ox:ox+2]`` row-major, one beat per ``last`` input beat.

    Pipeline: transforms (registered) -> 16 products (registered) -> channel accumulator,
    which on ``last`` loads the output transform into the output register. One beat per
    cycle; a tile of C beats comes out 3 cycles after its last beat was accepted (no stalls).
    ``i.ready`` depends combinationally on ``o.ready``. Reset (synchronous, active high)
    drops every beat in flight and clears the accumulator.
    """

    KIND = "conv3x3"
    LATENCY = 3
    MULTIPLIERS = TILE * TILE

    def __init__(self, config: WinogradConfig | None = None):
        super().__init__(config, lambda c: {
            "i": In(stream.Signature(c.conv_in_layout)),
            "o": Out(stream.Signature(c.conv_out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n = TILE * TILE
        v, v_r = input_transform_comb(m, cfg, list(self.i.payload.d))
        u, u_r = filter_transform_comb(m, cfg, list(self.i.payload.g))

        m.submodules.pipe = pipe = ReducePipeline(cfg.conv_in_layout, cfg.conv_out_layout, stages=2)
        wiring.connect(m, wiring.flipped(self.i), pipe.i)
        wiring.connect(m, pipe.o, wiring.flipped(self.o))

        # stage 1: transformed tile and filter
        v1 = [[Signal(shape_of(v_r[i][j]), name=f"s1_v{i}_{j}") for j in range(TILE)] for i in range(TILE)]
        u1 = [[Signal(shape_of(u_r[i][j]), name=f"s1_u{i}_{j}") for j in range(TILE)] for i in range(TILE)]
        with m.If(pipe.load[0]):
            for i in range(TILE):
                for j in range(TILE):
                    m.d.sync += [v1[i][j].eq(v[i][j]), u1[i][j].eq(u[i][j])]
        # stage 2: products
        p2 = [[Signal(shape_of(cfg.p_ranges[i][j]), name=f"s2_p{i}_{j}") for j in range(TILE)] for i in range(TILE)]
        with m.If(pipe.load[1]):
            for i in range(TILE):
                for j in range(TILE):
                    m.d.sync += p2[i][j].eq(v1[i][j] * u1[i][j])

        # channel accumulator, modulo 2**acc_width; the output transform of acc + p2 is the
        # frame's result
        acc = [[Signal(signed(cfg.acc_width), name=f"acc{i}_{j}") for j in range(TILE)] for i in range(TILE)]
        total = [[Signal(signed(cfg.acc_width), name=f"sum{i}_{j}") for j in range(TILE)] for i in range(TILE)]
        for i in range(TILE):
            for j in range(TILE):
                m.d.comb += total[i][j].eq(acc[i][j] + p2[i][j])   # modulo 2**acc_width
        y = output_transform_comb(m, total, cfg.acc_width, cfg.out_width)
        m.d.comb += [pipe.result[k].eq(y[k]) for k in range(OUT_TILE * OUT_TILE)]
        with m.If(pipe.take):
            with m.If(pipe.last):
                m.d.sync += [acc[i][j].eq(0) for i in range(TILE) for j in range(TILE)]
            with m.Else():
                m.d.sync += [acc[i][j].eq(total[i][j]) for i in range(TILE) for j in range(TILE)]
        assert n == self.MULTIPLIERS
        return m


BLOCKS = {cls.KIND: cls for cls in (WinogradConv3x3, WinogradInputTransform, WinogradFilterTransform,
                                    WinogradOutputTransform, WinogradF23)}


def manifest_extra(cfg: WinogradConfig, kind: str = "conv3x3") -> dict:
    """Arithmetic and timing facts for the JSON manifest next to the Verilog."""
    return {
        "kind": kind,
        "arithmetic": {
            "transformed_input_range": [cfg.v_range.lo, cfg.v_range.hi],
            "transformed_input_width": cfg.v_range.width,
            "scaled_filter_range": [cfg.u_range.lo, cfg.u_range.hi],
            "scaled_filter_width": cfg.u_range.width,
            "product_range": [cfg.p_range.lo, cfg.p_range.hi],
            "product_width": cfg.p_range.width,
            "filter_scale": "U4 = (2G) g (2G)^T = 4 U; output Y = (A^T M4 A) >> 2 (exact)",
            "accumulator": {"width": cfg.acc_width, "overflow": "modulo 2**acc_width; the output is "
                            "Y mod 2**out_width, exact while Y fits"},
            "out_width": cfg.out_width,
            "max_channels_without_overflow": cfg.max_channels,
            "multipliers": WinogradConv3x3.MULTIPLIERS if kind == "conv3x3" else (4 if kind == "f23" else 0),
            "multiplies_per_output": {"winograd": 4, "direct": 9},
        },
        "timing": {"latency_cycles": WinogradConv3x3.LATENCY if kind == "conv3x3" else 1,
                   "throughput": "one beat per cycle"},
        "streams_semantics": {
            "conv3x3": {"i": "beat = (4x4 tile d of one input channel, 3x3 filter w[o, c], last = final channel)",
                        "o": "2x2 output tile, row-major"},
        }.get(kind, {}),
    }
