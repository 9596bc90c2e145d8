"""Direct 3x3 convolution engine with the same stream interface and output throughput as
:class:`~convgen.hdl.winograd.WinogradConv3x3`: the baseline of the Winograd benchmark.

Per beat (one input channel's 4x4 tile and 3x3 filter) it forms the 4 outputs of the 2x2
tile with 36 data x weight multiplies (9 per output), the same PE arithmetic as the systolic
array (int8 x int8 products, registered, then accumulated), and accumulates over the channel
group modulo ``2**out_width``. Same pipeline depth (3), same ports, same layouts.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .lib import ReducePipeline
from .shapes import shape_of
from .winograd import KSIZE, OUT_TILE, TILE, WinogradConfig, _Block, _lin_expr

__all__ = ["DirectConv3x3"]


class DirectConv3x3(_Block):
    KIND = "direct3x3"
    LATENCY = 3
    MULTIPLIERS = OUT_TILE * OUT_TILE * KSIZE * KSIZE

    def __init__(self, config: WinogradConfig | None = None):
        super().__init__(config, lambda c: {
            "i": In(stream.Signature(c.conv_in_layout)),
            "o": Out(stream.Signature(c.conv_out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.pipe = pipe = ReducePipeline(cfg.conv_in_layout, cfg.conv_out_layout, stages=2)
        wiring.connect(m, wiring.flipped(self.i), pipe.i)
        wiring.connect(m, pipe.o, wiring.flipped(self.o))

        # stage 1: the input tile and the filter
        d1 = [Signal(cfg.d_shape, name=f"s1_d{k}") for k in range(TILE * TILE)]
        g1 = [Signal(cfg.g_shape, name=f"s1_g{k}") for k in range(KSIZE * KSIZE)]
        with m.If(pipe.load[0]):
            m.d.sync += [d1[k].eq(self.i.payload.d[k]) for k in range(TILE * TILE)]
            m.d.sync += [g1[k].eq(self.i.payload.g[k]) for k in range(KSIZE * KSIZE)]
        # stage 2: the 36 products
        pshape = shape_of(cfg.direct_product_range)
        p2 = [[Signal(pshape, name=f"s2_p{o}_{k}") for k in range(KSIZE * KSIZE)] for o in range(4)]
        with m.If(pipe.load[1]):
            for oy in range(OUT_TILE):
                for ox in range(OUT_TILE):
                    for ky in range(KSIZE):
                        for kx in range(KSIZE):
                            m.d.sync += p2[oy * 2 + ox][ky * 3 + kx].eq(
                                d1[(oy + ky) * TILE + ox + kx] * g1[ky * KSIZE + kx])
        # channel accumulator, modulo 2**out_width
        acc = [Signal(signed(cfg.out_width), name=f"acc{o}") for o in range(4)]
        total = [Signal(signed(cfg.out_width), name=f"sum{o}") for o in range(4)]
        m.d.comb += [total[o].eq(acc[o] + _lin_expr([1] * 9, p2[o])) for o in range(4)]
        m.d.comb += [pipe.result[o].eq(total[o]) for o in range(4)]
        with m.If(pipe.take):
            with m.If(pipe.last):
                m.d.sync += [a.eq(0) for a in acc]
            with m.Else():
                m.d.sync += [acc[o].eq(total[o]) for o in range(4)]
        return m
