"""EngineWithBuffers (hdl/engine_soc.py) on Amaranth's Python simulator: the host loads a small
layer through the host bus, sends the descriptor, waits for ``done``, reads y back, and the
result is compared with the convolution oracle ``golden.engine.reference_conv``. Also the
buffer-depth checks and ``soc_component``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError
from convgen.golden import engine as ge
from convgen.hdl.engine import EngineConfig
from convgen.hdl.engine_soc import (BUFFER_FIELDS, BUFFERS, BufferConfig, EngineWithBuffers, check_buffer_target,
                                    soc_component, soc_verilog)
from convgen.sim import engine as se

# non-powers of two in the engine on purpose (rows 3, vec 4, cols 4); buffers just large enough
ENGINE = dict(rows=3, cols=4, vec=4, max_h=8, max_w=8, max_pixel_words=2, max_kernel=3, max_stride=2,
              max_pad=1, max_dilation=1, max_tiles=2, addr_width=10, fetch_banks=3, weight_fifo=4)
WORDS = dict(x_words=64, w_words=128, p_words=16, y_words=64)


def _word(row) -> int:
    """int8/uint8 values -> one word, element e in bits 8e+7..8e."""
    return sum((int(v) & 0xFF) << (8 * e) for e, v in enumerate(row))


def _layer_job(cfg: EngineConfig, seed: int):
    rng = np.random.default_rng(seed)
    layer = ConvLayer.square(5, 5, 6, 3, 1, 1, c_out=6)          # 2 words per pixel, 2 channel tiles
    q = ge.random_quant_conv(rng, layer, x_signed=True)
    job = se.job_from_quant(q, cfg)
    job.desc.update(x_base=0, w_base=0, p_base=0, y_base=0)
    images = {
        "x": [_word(r) for r in job.x_words],
        "w": [_word(r) for r in job.w_words],
        "p": [se.pack_struct(cfg.param_layout, {k: job.params[k][i] for k in job.params})
              for i in range(job.plan.p_words)],
    }
    return q, job, images


def _run(bc: BufferConfig, images: dict, desc: int, y_words: int, max_cycles: int = 20_000):
    dut = EngineWithBuffers(bc)
    out = {}

    async def bench(ctx):
        async def access(sel, addr, we=0, wdata=0):
            ctx.set(dut.host_sel, sel)
            ctx.set(dut.host_addr, addr)
            ctx.set(dut.host_we, we)
            ctx.set(dut.host_wdata, wdata)
            ctx.set(dut.host_en, 1)
            await ctx.tick()
            ctx.set(dut.host_en, 0)
            return ctx.get(dut.host_rdata)

        PB, HW = bc.piece_bits, bc.host_data_width

        async def write_word(b, a, w):
            # one host access per piece (bc.host_width): word a is host words a*2**PB + k
            for k in range(bc.pieces(b)):
                await access(BUFFERS.index(b), (a << PB) | k, 1, (w >> (k * HW)) & ((1 << HW) - 1))

        async def read_word(b, a):
            v = 0
            for k in range(bc.pieces(b)):
                v |= await access(BUFFERS.index(b), (a << PB) | k) << (k * HW)
            return v

        for b, words in images.items():
            for a, w in enumerate(words):
                await write_word(b, a, w)
        # read back a few loaded words (host read latency 1)
        out["x_back"] = [await read_word("x", a) for a in range(4)]
        out["p_back"] = [await read_word("p", a) for a in range(2)]
        ctx.set(dut.desc.payload.as_value(), desc)
        ctx.set(dut.desc.valid, 1)
        while True:
            await ctx.tick()
            if ctx.get(dut.busy):
                break
        ctx.set(dut.desc.valid, 0)
        # host writes while busy are ignored: try to overwrite x word 0
        await write_word("x", 0, 0xDEADBEEF)
        done = 0
        for _ in range(max_cycles):
            await ctx.tick()
            done += ctx.get(dut.done)
            if not ctx.get(dut.busy):
                break
        out["done"], out["error"], out["cycles"] = done, ctx.get(dut.error), ctx.get(dut.cycles)
        out["y"] = [await read_word("y", a) for a in range(y_words)]
        out["x0_after"] = await read_word("x", 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("host_width", [0, 32, 24])
def test_layer_through_host_bus_matches_oracle(host_width):
    """The full-width host bus, and a 32-bit (24-bit) one on which a 97-bit p word is 4 (5)
    pieces written and read one by one (BufferConfig.host_width)."""
    cfg = EngineConfig(**ENGINE)
    bc = BufferConfig(cfg, **WORDS, host_width=host_width)
    assert bc.pieces("p") == {0: 1, 32: 4, 24: 5}[host_width]
    q, job, images = _layer_job(cfg, seed=3)
    p = job.plan
    assert p.x_words <= bc.x_words and p.w_words <= bc.w_words and p.y_words <= bc.y_words
    out = _run(bc, images, se.pack_struct(cfg.desc_layout, job.desc), p.y_words)
    assert out["x_back"] == images["x"][:4]
    assert out["p_back"] == images["p"][:2]
    assert out["done"] == 1 and out["error"] == 0, out
    assert out["x0_after"] == images["x"][0], "a host write while busy reached the buffer"
    ybytes = np.array([[(w >> (8 * c)) & 0xFF for c in range(cfg.cols)] for w in out["y"]], dtype=np.int64)
    y = se.y_from_words(ybytes, job, bool(q.params.act_min.min() < 0))
    expected = ge.reference_conv(q)
    bad = np.argwhere(y != expected)
    assert len(bad) == 0, f"{len(bad)} of {y.size} outputs differ, first at {bad[:5].tolist()}"
    # memory latency 1, never stalls: the engine's own cycle formula is a lower bound (exact when
    # compute-bound)
    L = p.layer
    f = cfg.layer_cycles(kh=L.kh, kw=L.kw, c_slice=p.c_slice, ntiles=p.ntiles, pixel_tiles=p.pixel_tiles)
    assert out["cycles"] >= f
    if cfg.compute_bound(kh=L.kh, kw=L.kw, c_slice=p.c_slice, slice_words=p.slice_words, ntiles=p.ntiles):
        assert out["cycles"] == f


def test_buffer_config_checks():
    e = EngineConfig(**ENGINE)
    with pytest.raises(ConfigError, match=r"^x_words must be a power of two in 16\.\.1024 \(addr_width 10\), not 1000"):
        BufferConfig(e, **{**WORDS, "x_words": 1000})
    with pytest.raises(ConfigError, match=r"^y_words must be a power of two in 16\.\.1024.*not 2048"):
        BufferConfig(e, **{**WORDS, "y_words": 2048})
    with pytest.raises(ConfigError, match=r"^p_words must be an integer in 16\.\.65536, not 8"):
        BufferConfig(e, **{**WORDS, "p_words": 8})
    with pytest.raises(ConfigError, match=r"^spram must be"):
        BufferConfig(e, **WORDS, spram="xz")
    with pytest.raises(TypeError):
        BufferConfig(dict(ENGINE))
    bc = BufferConfig(e, **WORDS, spram="yx")
    assert bc.spram == "xy"
    assert [bc.width(b) for b in BUFFERS] == [32, 32, e.param_layout.size, 32]
    assert (bc.host_addr_width, bc.host_data_width) == (7, e.param_layout.size)
    assert "host_width" not in bc.to_dict() and not bc.module_name.endswith("_h32")
    bc32 = BufferConfig(e, **WORDS, host_width=32)
    assert (bc32.host_addr_width, bc32.host_data_width, bc32.piece_bits) == (9, 32, 2)
    assert bc32.to_dict()["host_width"] == 32 and bc32.module_name.endswith("_h32")
    with pytest.raises(ConfigError, match=r"^host_width must be 0 \(the widest buffer word, 97 bits\) or a multiple of 8"):
        BufferConfig(e, **WORDS, host_width=12)
    with pytest.raises(ConfigError, match=r"^host_width 16 splits the words of the SPRAM buffer\(s\) x, y"):
        BufferConfig(e, **WORDS, spram="xy", host_width=16)


def test_soc_component_for_the_cli():
    e = EngineConfig(**ENGINE)
    assert [f.name for f in BUFFER_FIELDS] == ["x_words", "w_words", "p_words", "y_words", "spram"]
    comp, name = soc_component(e, {"x_words": 64, "w_words": 128, "p_words": 16, "y_words": 64, "spram": ""})
    comp._MustUse__used = True  # no UnusedElaboratable warning for the dropped component
    assert isinstance(comp, EngineWithBuffers) and name == comp.config.module_name
    assert name.startswith("convgen_engine_soc_r3c4v4_")
    with pytest.raises(ConfigError, match="^w_words"):
        soc_component(e, {**WORDS, "w_words": 4096})           # above 2**addr_width


def test_verilog_buffers_without_initial_contents():
    """The buffers' zero initial blocks are removed (yosys parses them for minutes on large
    buffers, and they forbid SPRAM); the engine's own memories keep theirs."""
    bc = BufferConfig(EngineConfig(**ENGINE), **WORDS, spram="xy")
    text = soc_verilog(EngineWithBuffers(bc), bc.module_name)
    for b in BUFFERS:
        assert f"{b}_buf[0] =" not in text
        assert f" {b}_buf [{bc.words(b) - 1}:0];" in text
    assert text.count('(* ram_style = "huge" *)') == 2
    assert "initial begin" in text                      # e.g. the engine's pointer buffer
    check_buffer_target("xy", "ice40")
    check_buffer_target("", "ecp5")
    with pytest.raises(ConfigError, match="^spram puts buffers in iCE40 UltraPlus SPRAM: it needs target ice40"):
        check_buffer_target("x", "ecp5")
