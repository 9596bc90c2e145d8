"""DspMul (hdl/lib/dsp.py): the generic, ECP5 MULT18X18D and iCE40 SB_MAC16 (two 8x8 lanes)
variants against NumPy products of every int8/uint8 operand pair, and the MULT18X18D model
(hdl/lib/dsp_models/ecp5_mult18x18d.v) against 36-bit products at full width.

Default suite (about 30 s of CPU with an empty cache): interface checks; the exhaustive int8 x
int8 sweep of the MULT18X18D variant at latency 3 on Icarus, and of every variant (generic, ecp5,
ice40, lut) at latency 3 and 4 on Verilator with, in the same build, four injected bugs (a
MULT18X18D pipeline register ignoring CE, an SB_MAC16 whose low multiplier ignores A_SIGNED, a
wrapper zero-extending signed operands, a LUT multiplier reading its signed selector as
unsigned), each caught. SystolicConfig's multiplier latency (pipeline_mult), dsp_rows and their
checks.
``-m slow``: every variant at latency 1..4 on both simulators, the mutant build on Icarus, uint8
operands on both simulators, the MULT18X18D model sweep (8 register combinations, 18-bit
operands) on both simulators with its own mutants, and yosys mapping counts.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import signed, unsigned

from convgen.core.params import ConfigError
from convgen.hdl.generate import to_verilog
from convgen.hdl.lib.dsp import DspMul, simulation_sources
from convgen.tb.dsp import sweep as S
from convgen.tb.dsp.mutants import mutant_model

def _unused(mul):
    """A DspMul built only to read its attributes (no UnusedElaboratable warning)."""
    mul._MustUse__silence = True
    return mul


def _assert_clean(records, duts):
    msgs = [m for d in duts for m in S.check_sweep(d, records[d.name])]
    assert not msgs, "\n".join(msgs)


# -- interface --------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["generic", "ecp5", "ice40", "lut"])
@pytest.mark.parametrize("latency", [1, 2, 3, 4])
def test_interface(variant, latency):
    mul = DspMul(variant=variant, lanes=3, latency=latency)
    assert mul.latency == latency
    assert mul.p_shape == signed(16)
    assert mul.dsp_blocks == {"generic": 0, "ecp5": 3, "ice40": 2, "lut": 0}[variant]
    if latency not in (3, 4):
        _unused(mul)
        return  # the other latencies are elaborated by the sweeps
    text = to_verilog(mul, f"m_{variant}_{latency}")
    primitive = {"generic": None, "ecp5": "MULT18X18D", "ice40": "SB_MAC16", "lut": None}[variant]
    if primitive:
        assert text.count(f"  {primitive} #(") == mul.dsp_blocks
    if variant == "lut":
        assert " * " not in text     # no $mul cell: nothing for yosys to put on a DSP block


def test_product_shapes():
    assert _unused(DspMul(a_signed=False, b_signed=False)).p_shape == unsigned(16)
    assert _unused(DspMul(a_signed=False, b_signed=True)).p_shape == signed(16)
    assert _unused(DspMul(variant="ecp5", a_width=18, b_width=18)).p_shape == signed(36)


def test_ecp5_registers_by_latency():
    def params(latency):
        text = to_verilog(DspMul(variant="ecp5", latency=latency), "m")
        return {k: ('"CLK0"' in line) for line in text.splitlines()
                for k in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK")
                if f".{k}(" in line}
    assert params(1) == {"REG_INPUTA_CLK": False, "REG_INPUTB_CLK": False, "REG_PIPELINE_CLK": False,
                         "REG_OUTPUT_CLK": True}
    assert params(3) == dict.fromkeys(("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK"),
                                      True)


@pytest.mark.parametrize("kwargs, match", [
    (dict(variant="ice40", a_width=9), "a_width"),
    (dict(variant="ecp5", b_width=19), "b_width"),
    (dict(variant="xilinx"), "variant"),
    (dict(latency=0), "latency"),
    (dict(latency=5), "latency"),
    (dict(lanes=0), "lanes"),
    (dict(a_signed=1), "a_signed"),
])
@pytest.mark.filterwarnings("ignore:.*created but never used")  # the constructor raised
def test_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DspMul(**kwargs)


def test_simulation_sources():
    assert simulation_sources("generic") == {}
    assert "module MULT18X18D" in simulation_sources("ecp5")["ecp5_mult18x18d.v"]
    assert "MODE_8x8" in simulation_sources("ice40")["ice40_sb_mac16.v"]


# -- exhaustive sweeps --------------------------------------------------------------------------

def test_sweep_icarus_ecp5_latency3():
    """All 65,536 int8 pairs per lane through the MULT18X18D model with every DSP register,
    Icarus (every other instance on Icarus: -m slow, to keep the default suite near 30 s)."""
    duts = [S.Dut("ecp5", 3)]
    _assert_clean(S.run_sweep("icarus", duts, name="sweep_ecp5_l3"), duts)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_sweep_unsigned_operands(simulator):
    """uint8 x int8 and uint8 x uint8: all pairs, every variant at latency 3."""
    _assert_clean(S.run_sweep(simulator, S.UNSIGNED_DUTS, name="sweep_unsigned"), S.UNSIGNED_DUTS)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_mult18x18d_model_every_register_option(simulator):
    """The model at full width: 18-bit operands, random SIGNEDA/SIGNEDB, all 8 combinations of
    the input, pipeline and output registers, against Python's 36-bit products."""
    msgs = S.run_model_sweep(simulator)
    assert not msgs, "\n".join(msgs)


# -- injected bugs ------------------------------------------------------------------------------

def _assert_mutants_caught(records):
    for dut in S.MUTANT_DUTS:
        msgs = S.check_sweep(dut, records[dut.name])
        assert msgs and "products wrong" in msgs[-1], f"{dut.name}: the bug was not caught"
    # the SB_MAC16 mutant breaks lane 0 (its bottom multiplier) and only lane 0
    ice = next(d for d in S.MUTANT_DUTS if d.variant == "ice40")
    got = records[ice.name][ice.latency:ice.latency + S.N_PAIRS]
    ok = got == (S.expected_products(ice) & 0xFFFF)
    assert ok[:, 1].all() and not ok[:, 0].all()


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_sweep_every_latency(simulator):
    """All 65,536 int8 pairs per lane, every variant x latency 1..4."""
    _assert_clean(S.run_sweep(simulator, S.ALL_DUTS, name="sweep_every_latency"), S.ALL_DUTS)


def test_sweep_verilator_all_and_mutants():
    """All 65,536 int8 pairs per lane, every variant at latency 3 and 4, Verilator;
    in the same build, four broken instances (a MULT18X18D pipeline register that ignores CE,
    an SB_MAC16 whose low multiplier ignores A_SIGNED, a wrapper zero-extending signed
    operands, a LUT multiplier reading its signed selector as unsigned), each of which the
    sweep must catch."""
    records = S.run_sweep("verilator", S.DEFAULT_DUTS + S.MUTANT_DUTS, name="sweep_all")
    _assert_clean(records, S.DEFAULT_DUTS)
    _assert_mutants_caught(records)


@pytest.mark.slow
def test_sweep_icarus_all_and_mutants():
    records = S.run_sweep("icarus", S.DEFAULT_DUTS + S.MUTANT_DUTS, name="sweep_all")
    _assert_clean(records, S.DEFAULT_DUTS)
    _assert_mutants_caught(records)


@pytest.mark.slow
@pytest.mark.parametrize("mutant, broken", [("ecp5_pipeline_ignores_ce", "pipe=1"),
                                            ("ecp5_ignores_signeda", "mode")])
def test_model_mutants_caught_by_model_sweep(mutant, broken):
    (text,) = mutant_model(mutant).values()
    msgs = S.run_model_sweep("verilator", model_text=text)
    assert any(broken in m for m in msgs), "the model sweep did not catch " + mutant
    if mutant == "ecp5_pipeline_ignores_ce":
        assert not any("pipe=0" in m for m in msgs)


# -- synthesis: the primitives are what yosys keeps ----------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant, target, cell, blocks", [("ecp5", "ecp5", "MULT18X18D", 4),
                                                          ("ice40", "ice40", "SB_MAC16", 2)])
def test_yosys_keeps_the_primitives(variant, target, cell, blocks):
    from convgen.synth import synthesize

    text = to_verilog(DspMul(variant=variant, lanes=4, latency=3), f"dspmul_{variant}_x4")
    r = synthesize(text, f"dspmul_{variant}_x4", target)
    assert r.cells.get(cell) == blocks
    assert r.dsps == blocks
    assert r.luts == 0  # no fabric logic: the registers are the DSP's own


# -- the systolic array's multiplier latency (SystolicConfig.pipeline_mult) ---------------------

def test_systolic_multiplier_latency():
    """pe_latency and the cycle formulas follow pipeline_mult; the expected figures are counted
    here from the register stages, not read from the configuration."""
    from convgen.hdl.systolic import SystolicConfig, manifest_extra

    for dsp in ("generic", "ecp5", "ice40"):
        for pm, stages in ((0, 2), (1, 3), (2, 4)):   # operands + product (+ pipeline) (+ fabric)
            cfg = SystolicConfig(rows=8, cols=8, dsp=dsp, pipeline_operands=True, pipeline_mult=pm)
            assert cfg.mult_latency == stages and cfg.pe_latency == 1 + stages
            readout = 1 if pm else 0                         # the fast PE's read-out register
            assert cfg.tile_cycles(64) == 64 + 8 + 8 + (1 + stages) + 2 - 1 + readout
            assert cfg.tile_period(64) == 64                 # throughput does not change
            mult = manifest_extra(cfg)["timing"]["multiplier"]
            assert mult["latency"] == stages and mult["dsp"] == dsp
            assert mult["dspmul"] == (dsp != "generic" or pm > 0)
    # existing configurations keep their names, latencies and parameter dicts
    assert "pipeline_mult" not in SystolicConfig().to_dict() and "dsp_rows" not in SystolicConfig().to_dict()
    assert SystolicConfig(**SystolicConfig(dsp="ecp5", pipeline_operands=True, pipeline_mult=2,
                                           dsp_rows=3).to_dict()).dsp_rows == 3
    assert SystolicConfig().module_name == "convgen_systolic_os_r8c8_as8_bs8_acc32_p1"
    assert SystolicConfig().pe_latency == 2
    assert SystolicConfig(dsp="ecp5", pipeline_operands=True, pipeline_mult=2).module_name.endswith("_p1om2_ecp5")


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataflow="ws", pipeline_operands=True, pipeline_mult=1), "output-stationary"),
    (dict(pipeline_mult=1), "needs pipeline_product and pipeline_operands"),
    (dict(pipeline_operands=True, pipeline_product=False, pipeline_mult=2, dsp="ecp5"), "pipeline_product"),
    (dict(pipeline_operands=True, pipeline_mult=3), "pipeline_mult"),
    (dict(pipeline_operands=True, pipeline_mult=-1), "pipeline_mult"),
    (dict(rows=4, dsp="ecp5", dsp_rows=5), "more than the array's 4 rows"),
    (dict(dsp_rows=2), "needs a vendor dsp"),
])
def test_systolic_bad_pipeline_mult(kwargs, match):
    from convgen.hdl.systolic import SystolicConfig

    with pytest.raises(ConfigError, match=match):
        SystolicConfig(**kwargs)


@pytest.mark.parametrize("dsp, primitive, count", [("ecp5", '.REG_PIPELINE_CLK("CLK0")', 12),
                                                   ("ice40", ".TOPOUTPUT_SELECT(2'h1)", 6)])
def test_systolic_pipeline_mult_instantiates_every_register(dsp, primitive, count):
    """pipeline_mult=2 on a 3x4 array: every DSP has its pipeline (ECP5) / output (iCE40) register,
    and each row's DspMul its fabric register after the DSP."""
    from convgen.hdl.systolic import SystolicArray, SystolicConfig

    cfg = SystolicConfig(rows=3, cols=4, dsp=dsp, pipeline_operands=True, pipeline_mult=2)
    text = to_verilog(SystolicArray(cfg), cfg.module_name)
    assert text.count(primitive) == count
    assert text.count("wire [63:0] p_fabric;") == 3      # 4 lanes x signed(16), one per row


@pytest.mark.slow
def test_systolic_ecp5_lut4_per_pe():
    """issue 14: the 8x8 array with the fast ECP5 PE maps to at most 60 LUT4 per PE (yosys 0.70)."""
    from convgen.hdl.systolic import SystolicArray, SystolicConfig
    from convgen.synth import synthesize

    cfg = SystolicConfig(rows=8, cols=8, dsp="ecp5", pipeline_operands=True, pipeline_mult=2)
    r = synthesize(to_verilog(SystolicArray(cfg), cfg.module_name), cfg.module_name, "ecp5")
    assert r.dsps == 64
    assert r.luts / 64 <= 60, f"{r.luts} LUT4"
