"""``gate_enabled_registers`` (hdl/generate.py): a bank of registers with one enable moves onto a
gated clock in the free-running Verilator models. The text rules here; the behaviour on a small
design in Verilator, against the same design on ``clk`` alone, cycle by cycle; and two wrong gates
that the comparison catches. Every Verilator engine run (tests/test_engine*.py, bench/sim_speed.py)
checks the engine's gated requantizer against the golden model and the cycle formula. The two
wrong gates run under ``-m slow``."""

import subprocess

import pytest

from convgen.hdl.generate import GATE_MIN_REGISTERS, gate_enabled_registers, simulation_verilog
from convgen.sim.build import build_free_running
from convgen.sim.tools import simulator_env

N = GATE_MIN_REGISTERS + 2


def _bank(module: str = "bank") -> str:
    """A module in the form yosys' write_verilog gives the simulation netlist: N registers that
    load a shared combinational value under one enable ``en`` (a function of the state), a
    register with a synchronous reset (``if (rst) ... else ...``: not an enable) and an
    always-running state register."""
    regs = "".join(f"  reg [15:0] r{k} = 16'h0;\n" for k in range(N))
    loads = "".join(f"  always @(posedge clk)\n    if (en) r{k} <= \\$sum  + 16'd{k};\n" for k in range(N))
    outs = " ^ ".join(f"r{k}" for k in range(N))
    return f"""module {module}(clk, rst, y);
  input clk;
  input rst;
  output [15:0] y;
  reg [15:0] s = 16'h1;
  reg [15:0] c = 16'h0;
  wire en;
  wire [15:0] \\$sum ;
{regs}  assign en = s[3] ^ s[9];
  assign \\$sum  = (s * 16'd5) ^ (s >> 2);
  always @(posedge clk)
    s <= {{ s[14:0], s[15] ^ s[13] ^ s[12] ^ s[10] }};
  always @(posedge clk)
    if (rst) c <= 16'h0;
    else c <= c + 16'd1;
{loads}  assign y = {outs} ^ c;
endmodule
"""


def _tb(n_cycles: int = 3000) -> str:
    return f"""module gating_tb(input clk);
  reg [31:0] cyc = 0;
  reg [31:0] bad = 0;
  wire rst = (cyc % 97) < 3;
  wire [15:0] y_ref, y_gated;
  bank_ref ref_ (.clk(clk), .rst(rst), .y(y_ref));
  bank_gated dut (.clk(clk), .rst(rst), .y(y_gated));
  always @(posedge clk) begin
    cyc <= cyc + 1;
    if (y_ref != y_gated) bad <= bad + 1;
    if (cyc == {n_cycles}) begin $display("END mismatches=%0d", bad); $finish; end
  end
endmodule
"""


def _mismatches(gated_text: str, name: str) -> int:
    sources = {"tb.v": _tb(), "ref.v": _bank("bank_ref"), "gated.v": gated_text}
    b = build_free_running("gating", name, "verilator", "gating_tb", sources)
    p = subprocess.run([str(b.executable)], cwd=b.directory, env=simulator_env("verilator"), capture_output=True,
                       text=True, timeout=60)
    assert "END mismatches=" in p.stdout, p.stdout + p.stderr
    return int(p.stdout.split("END mismatches=")[1].split()[0])


def test_an_enabled_bank_goes_on_a_gated_clock_and_a_reset_does_not():
    out = gate_enabled_registers(_bank())
    assert out.count("  always @(posedge en_gclk)\n    if (en) r") == N
    assert "  always @(posedge clk)\n    if (rst) c <= 16'h0;\n    else" in out
    assert "  reg en_gate = 1'h1;\n  always @(negedge clk) en_gate <= en;\n  wire en_gclk = clk & en_gate;\n" \
           "endmodule" in out


def test_texts_it_cannot_vouch_for_stay_as_they_are():
    few = _bank().replace(f"  always @(posedge clk)\n    if (en) r{N - 1} <=", f"  always @(posedge clk)\n    r{N - 1} <=")
    for text in (_bank().replace("s <= {", "s <= ~{").replace("always @(posedge clk)\n    s", "always @(negedge clk)\n    s"),
                 _bank().replace("reg [15:0] c =", "reg en_gate = 1'h0;\n  reg [15:0] c ="),
                 _bank().replace("  always @(posedge clk)\n    if (rst)", "  always @(posedge clk2)\n    if (rst)")):
        assert gate_enabled_registers(text) == text
    assert gate_enabled_registers(_bank(), min_registers=N + 1) == _bank()
    assert "en_gclk" in gate_enabled_registers(_bank(), min_registers=N)
    assert "en_gclk" in gate_enabled_registers(few, min_registers=N - 1)
    assert "en_gclk" not in gate_enabled_registers(few, min_registers=N)


def test_gated_bank_simulates_as_the_original():
    gated = gate_enabled_registers(_bank("bank_gated"))
    assert "en_gclk" in gated
    assert _mismatches(gated, "good") == 0


@pytest.mark.slow
def test_wrong_gates_are_caught():
    """Under -m slow (two more Verilator builds; both caught when last run)."""
    gated = gate_enabled_registers(_bank("bank_gated"))
    # a gate sampled at the rising edge: the bank misses the edges where the enable turns on
    late = gated.replace("always @(negedge clk) en_gate", "always @(posedge clk) en_gate")
    assert _mismatches(late, "late_gate") > 0
    # the synchronous reset on the gated clock: the counter stops whenever reset is low
    reset = gated.replace("  always @(posedge clk)\n    if (rst)", "  always @(posedge en_gclk)\n    if (rst)")
    assert _mismatches(reset, "gated_reset") > 0


def test_the_engine_requantizer_is_gated():
    """The 8x8 engine's requantizer data pipeline is what the gating is for."""
    from convgen.hdl.engine import ConvEngine, EngineConfig

    cfg = EngineConfig(rows=2, cols=2, vec=2, max_h=4, max_w=4, max_pixel_words=2, max_kernel=3, max_stride=1,
                       max_pad=1, max_dilation=1, max_tiles=2, addr_width=10)
    text = simulation_verilog(ConvEngine(cfg), cfg.module_name)
    assert text.count("always @(posedge active_gclk)") >= GATE_MIN_REGISTERS
    assert "always @(negedge clk) active_gate <= active;" in text
