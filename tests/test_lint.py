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
