"""Launch the cocotb regression of SystolicArray on Icarus and Verilator.

One pytest test per (configuration, simulator); each has its own build directory (keyed by
the generated Verilog) and its own run directory. A missing or too-old simulator fails the
test with the installation advice; it is never skipped. On a failure the configuration is
rebuilt with waveform tracing, the failing run repeated, and the waveform's path reported.
"""


import pytest

from convgen.hdl.systolic import SystolicConfig
from convgen.sim.systolic import build_systolic
from convgen.sim.tools import SIMULATORS
from convgen.tb.common.launch import run_regression

MODULE = "convgen.tb.systolic.cocotb_systolic"

CONFIGS = {
    "os-4x4": dict(rows=4, cols=4, dataflow="os"),
    "ws-4x4": dict(rows=4, cols=4, dataflow="ws"),
    "os-3x5": dict(rows=3, cols=5, dataflow="os"),
    "ws-5x3": dict(rows=5, cols=3, dataflow="ws"),
    "ws-2x5": dict(rows=2, cols=5, dataflow="ws"),          # cols > rows: tile throttle
    "os-1x1": dict(rows=1, cols=1, dataflow="os"),
    "ws-1x1": dict(rows=1, cols=1, dataflow="ws"),
    "os-1x6": dict(rows=1, cols=6, dataflow="os"),
    "ws-1x6": dict(rows=1, cols=6, dataflow="ws"),
    "os-4x3-u8u8": dict(rows=4, cols=3, dataflow="os", a_signed=False, b_signed=False),
    "ws-3x4-u8s8": dict(rows=3, cols=4, dataflow="ws", a_signed=False, b_signed=True),
    "os-3x3-acc20": dict(rows=3, cols=3, dataflow="os", acc_width=20),   # max_k = 31
    "ws-3x2-acc18-s8u8": dict(rows=3, cols=2, dataflow="ws", acc_width=18, b_signed=False),
    "os-4x4-noprodreg": dict(rows=4, cols=4, dataflow="os", pipeline_product=False),
    "ws-4x4-noprodreg": dict(rows=4, cols=4, dataflow="ws", pipeline_product=False),
    "os-3x4-opreg": dict(rows=3, cols=4, dataflow="os", pipeline_operands=True),
    "ws-2x3-opreg": dict(rows=2, cols=3, dataflow="ws", pipeline_operands=True),  # cols > rows
}


#: vendor multipliers (hdl/lib/dsp.py) in the PE: the same regression, with the primitives'
#: simulation models (ECP5 MULT18X18D from TN1267, yosys' SB_MAC16) compiled in. Two,
#: the ECP5 one on Icarus and the ECP5 one of multiplier latency 4 (pipeline_mult=2) with two of its
#: four rows on LUT multipliers (dsp_rows=2) on Verilator in the default suite (the default suite's time budget; DspMul itself is swept exhaustively on both
#: simulators in tests/test_vendor_dsp.py), the others under -m slow.
DSP_CONFIGS = {
    "os-3x4-ecp5": dict(rows=3, cols=4, dataflow="os", dsp="ecp5"),
    "os-3x4-ecp5-opreg-u8s8": dict(rows=3, cols=4, dataflow="os", dsp="ecp5", pipeline_operands=True, a_signed=False),
    "os-4x3-ice40": dict(rows=4, cols=3, dataflow="os", dsp="ice40"),       # odd cols: a half-used SB_MAC16
    "os-2x4-ice40-opreg-u8s8": dict(rows=2, cols=4, dataflow="os", dsp="ice40", pipeline_operands=True,
                                    a_signed=False),
    # pipeline_mult: multiplier latency 3 (every DSP register) and 4 (and a fabric register)
    "os-4x3-ecp5-m2": dict(rows=4, cols=3, dataflow="os", dsp="ecp5", pipeline_operands=True, pipeline_mult=2),
    "os-3x3-ecp5-m1-acc20": dict(rows=3, cols=3, dataflow="os", dsp="ecp5", pipeline_operands=True, pipeline_mult=1,
                                 acc_width=20),                        # max_k = 31: the overflow limit
    "os-2x5-ice40-m1-u8u8": dict(rows=2, cols=5, dataflow="os", dsp="ice40", pipeline_operands=True,
                                 pipeline_mult=1, a_signed=False, b_signed=False),
    "os-1x1-generic-m2": dict(rows=1, cols=1, dataflow="os", pipeline_operands=True, pipeline_mult=2),
    # dsp_rows: rows 0..dsp_rows-1 on the DSP variant, the rest on LUT multipliers (DspMul lut)
    "os-4x3-ecp5-m2-d2": dict(rows=4, cols=3, dataflow="os", dsp="ecp5", pipeline_operands=True, pipeline_mult=2,
                              dsp_rows=2),
    "os-3x2-lut-m1-u8s8": dict(rows=3, cols=2, dataflow="os", dsp="lut", pipeline_operands=True, pipeline_mult=1,
                               a_signed=False),
    "os-5x2-generic-m1-s8u8": dict(rows=5, cols=2, dataflow="os", pipeline_operands=True, pipeline_mult=1,
                                   b_signed=False),
}
DSP_DEFAULT = {("os-3x4-ecp5-opreg-u8s8", "icarus"), ("os-4x3-ecp5-m2-d2", "verilator")}


def _run(params, simulator, run_dir, extra_env=None, testcase=None):
    cfg = SystolicConfig(**params)
    run_regression(lambda waves: build_systolic(cfg, simulator, waves=waves), MODULE, run_dir,
                   label=f"{cfg.module_name} on {simulator}", extra_env=extra_env, testcase=testcase)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_systolic(name, simulator, tmp_path):
    _run(CONFIGS[name], simulator, str(tmp_path))


@pytest.mark.parametrize("name, simulator", [
    pytest.param(n, sim, marks=() if (n, sim) in DSP_DEFAULT else pytest.mark.slow)
    for n in DSP_CONFIGS for sim in SIMULATORS])
def test_systolic_vendor_dsp(name, simulator, tmp_path):
    _run(DSP_CONFIGS[name], simulator, str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("dataflow", ["os", "ws"])
def test_k_at_32bit_limit(dataflow, tmp_path):
    """K = 131071 (int8 x int8 into int32) and one past it, on Verilator."""
    _run(dict(rows=2, cols=2, dataflow=dataflow), "verilator", str(tmp_path),
         extra_env={"CONVGEN_SLOW": "1"}, testcase="k_at_overflow_limit")
