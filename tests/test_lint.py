"""Full Verilator lint of generated Verilog: only the documented warning classes may appear."""

import pytest

from convgen.hdl.systolic import SystolicConfig
from convgen.sim.lint import ACCEPTED, lint
from convgen.sim.systolic import generate


@pytest.mark.parametrize("params", [
    dict(rows=3, cols=4, dataflow="os"),
    dict(rows=3, cols=4, dataflow="ws", a_signed=False),
    dict(rows=1, cols=1, dataflow="ws", pipeline_product=False),
])
def test_only_documented_lint_classes(params, tmp_path):
    cfg = SystolicConfig(**params)
    out = generate(cfg, tmp_path)
    counts = lint(out["verilog"], cfg.module_name)
    unexpected = {k: v for k, v in counts.items() if k not in ACCEPTED}
    assert not unexpected, f"new Verilator lint classes for {cfg.module_name}: {unexpected}"


def _tops():
    """Every generated top other than the systolic array: (name, component factory, module)."""
    from convgen.hdl.engine import ConvEngine, EngineConfig
    from convgen.hdl.engine_soc import BufferConfig, EngineWithBuffers
    from convgen.hdl.im2col import Im2colAddressGenerator, Im2colConfig
    from convgen.hdl.requant import RequantConfig, Requantizer
    from convgen.hdl.winograd import BLOCKS, WinogradConfig

    eng = EngineConfig(rows=2, cols=3, vec=4, max_h=8, max_w=8, max_pixel_words=4, max_kernel=3, max_stride=2,
                       max_pad=1, max_dilation=1, max_tiles=2)
    tops = []
    for rounding in ("tflite", "tflite_single", "onnx"):
        c = RequantConfig(lanes=2, groups=3, rounding=rounding)
        tops.append((f"requant-{rounding}", lambda c=c: Requantizer(c), c.module_name))
    c = RequantConfig(lanes=2, groups=1, rounding="tflite")     # one entry per lane: no zero-width address
    tops.append(("requant-groups1", lambda c=c: Requantizer(c), c.module_name))
    ic = Im2colConfig(8, 8, 4, 3, 2, 1, 1)
    tops.append(("im2col", lambda: Im2colAddressGenerator(ic), ic.module_name))
    wc = WinogradConfig()
    for kind, cls in BLOCKS.items():
        tops.append((f"winograd-{kind}", lambda cls=cls: cls(wc), wc.module_name(kind)))
    tops.append(("engine", lambda: ConvEngine(eng), eng.module_name))
    bc = BufferConfig(eng, x_words=64, w_words=64, p_words=16, y_words=64)
    tops.append(("engine-soc", lambda: EngineWithBuffers(bc), bc.module_name))
    return tops


@pytest.mark.parametrize("name, make, module", _tops(), ids=[t[0] for t in _tops()])
def test_every_block_top_has_only_documented_lint_classes(name, make, module, tmp_path):
    from convgen.hdl.generate import to_verilog

    path = tmp_path / f"{module}.v"
    path.write_text(to_verilog(make(), module))
    counts = lint(path, module)
    unexpected = {k: v for k, v in counts.items() if k not in ACCEPTED}
    assert not unexpected, f"new Verilator lint classes for {module}: {unexpected}"


def test_lint_detects_real_problems(tmp_path):
    """The lint run must be able to fail: a latch and a multiply-driven net are reported."""
    bad = tmp_path / "bad.v"
    bad.write_text(
        "module bad(input a, input b, output reg y, output z);\n"
        "  always @* if (a) y = b;\n"          # latch
        "  assign z = a; assign z = b;\n"      # multiple drivers
        "endmodule\n")
    counts = lint(bad, "bad")
    assert set(counts) - set(ACCEPTED), counts
