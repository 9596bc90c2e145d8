"""Launch the cocotb regression of Requantizer on Icarus and Verilator.

One pytest test per (configuration, simulator). The default suite streams 25,000 random beats
of 4 lanes (100,000 values) per rounding mode on Verilator and 5,000 beats on Icarus
(``random_values_random_stalls``),
besides corners, ReLU clamps, reset mid-stream, parameter writes mid-stream and the exact
latency/throughput. A missing simulator fails the test; it is never skipped. On a failure the
configuration is rebuilt with waveform tracing, the run repeated, and the waveform's path
reported.
"""


import pytest

from convgen.hdl.requant import RequantConfig, manifest_extra
from convgen.sim.build import build_component, run_cocotb
from convgen.sim.requant import build_requant
from convgen.sim.tools import SIMULATORS
from convgen.tb.common.launch import run_regression
from convgen.tb.requant.mutants import mutant_requantizer

MODULE = "convgen.tb.requant.cocotb_requant"

CONFIGS = {
    "tflite-l4g3-s8": dict(lanes=4, groups=3, rounding="tflite"),
    "tflite_single-l4g2-u8": dict(lanes=4, groups=2, rounding="tflite_single", out_signed=False),
    "onnx-l4g3-s8": dict(lanes=4, groups=3, rounding="onnx"),
    "tflite_opt-l4g3-s8": dict(lanes=4, groups=3, rounding="tflite_opt"),
    "xnnpack-l4g3-s8": dict(lanes=4, groups=3, rounding="xnnpack"),
    # the scale product as partial products without `*` (mult_style="lut": no DSP blocks), one
    # more pipeline stage; 2 lanes keep the builds small
    "tflite-l2g3-s8-lut": dict(lanes=2, groups=3, rounding="tflite", mult_style="lut"),
    "tflite_single-l2g2-u8-lut": dict(lanes=2, groups=2, rounding="tflite_single", out_signed=False,
                                      mult_style="lut"),
    "onnx-l2g3-s8-lut": dict(lanes=2, groups=3, rounding="onnx", mult_style="lut"),
    # the scale product as four 17-bit slice products, registered, then summed (mult_style="dsp2",
    # one more stage; the ECP5 engine's fast requantizer): the 32x32 signed, 32x31 unsigned and
    # 25x24 unsigned products
    "tflite-l2g3-s8-dsp2": dict(lanes=2, groups=3, rounding="tflite", mult_style="dsp2"),
    "tflite_opt-l2g3-s8-dsp2": dict(lanes=2, groups=3, rounding="tflite_opt", mult_style="dsp2"),
    "tflite_single-l2g2-u8-dsp2": dict(lanes=2, groups=2, rounding="tflite_single", out_signed=False,
                                       mult_style="dsp2"),
    "onnx-l2g3-s8-dsp2": dict(lanes=2, groups=3, rounding="onnx", mult_style="dsp2"),
    # the digit-serial significand product (one beat per serial_digits + 1 cycles): 4 digits of
    # 6 bits, and 5 of 5 (the top digit padded), with xnnpack's scales >= 1
    "onnx-l2g3-s8-ser4": dict(lanes=2, groups=3, rounding="onnx", mult_style="serial", serial_digits=4),
    "xnnpack-l1g5-u8-ser5": dict(lanes=1, groups=5, rounding="xnnpack", out_signed=False, mult_style="serial",
                                 serial_digits=5),
}
# random beats of 4 lanes: 100,000 values per mode on Verilator, 20,000 on Icarus (slower)
BEATS = {"verilator": 25_000, "icarus": 5_000, "slow": 250_000}
# the default suite's budget: these configurations run on Verilator (a build of about 25 s of
# CPU each) under -m slow only; Icarus runs them in the default suite, and
# tests/test_tflite_rtl.py compares the same builds with LiteRT
VERILATOR_SLOW = ("tflite_opt-l4g3-s8", "xnnpack-l4g3-s8", "xnnpack-l1g5-u8-ser5")
# and their Icarus runs stream 1,000 random beats (4,000 values) instead of 5,000; they are
# also compared with LiteRT itself there (tests/test_tflite_rtl.py)
ICARUS_BEATS = {name: 1_000 for name in VERILATOR_SLOW}
# also for the default suite's budget (15 min on 2 cores; 15:56 with them, 2026-11-29): two of the
# three lut modes and the serial lane run on Verilator under -m slow only (onnx lut stays in the
# default suite on both simulators; the others keep their full Icarus runs)
VERILATOR_SLOW += ("tflite-l2g3-s8-lut", "tflite_single-l2g2-u8-lut", "onnx-l2g3-s8-ser4")
# the dsp2 modes: all four on Icarus with 1,000 beats, on Verilator under -m slow (the budget:
# the default suite was at 14:54 on 2 cores with onnx-dsp2 on Verilator; the onnx dsp2 lanes run on
# Verilator in tests/test_engine_rtl.py::test_ecp5_dsp_engine, inside the engine)
VERILATOR_SLOW += tuple(name for name, c in CONFIGS.items() if c.get("mult_style") == "dsp2")
ICARUS_BEATS.update({name: 1_000 for name, c in CONFIGS.items() if c.get("mult_style") == "dsp2"})
# a serial requantizer takes a beat every serial_digits + 1 cycles: 1,000 beats keep its Icarus
# runs as short as the others
ICARUS_BEATS.update({name: 1_000 for name, c in CONFIGS.items() if c.get("mult_style") == "serial"})


def _cases():
    for name in CONFIGS:
        for simulator in SIMULATORS:
            marks = [pytest.mark.slow] if simulator == "verilator" and name in VERILATOR_SLOW else []
            yield pytest.param(name, simulator, marks=marks, id=f"{name}-{simulator}")


def _run(params, simulator, run_dir, beats, testcase=None):
    cfg = RequantConfig(**params)
    env = {"CONVGEN_REQUANT_BEATS": str(beats)}
    run_regression(lambda waves: build_requant(cfg, simulator, waves=waves), MODULE, run_dir,
                   label=f"{cfg.module_name} on {simulator}", extra_env=env, testcase=testcase)


@pytest.mark.parametrize("name, simulator", list(_cases()))
def test_requant(name, simulator, tmp_path):
    beats = ICARUS_BEATS.get(name, BEATS[simulator]) if simulator == "icarus" else BEATS[simulator]
    _run(CONFIGS[name], simulator, str(tmp_path), beats)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_requant_million_values(name, tmp_path):
    """1,000,000 random values per mode, on Verilator."""
    _run(CONFIGS[name], "verilator", str(tmp_path), BEATS["slow"], testcase="random_values_random_stalls")


@pytest.mark.parametrize("mutant", ["serial_spacing", "float_ties_away"])
def test_serial_mutant_is_caught(mutant, tmp_path):
    """A serial requantizer that takes the next beat one step too early, or whose rounding
    (from the half and sticky bits) breaks ties away from zero (tb/requant/mutants.py), fails the random regression
    (the whole cocotb regression: back-to-back beats with stalls, corner values with exact
    ties) against the golden model."""
    cfg = RequantConfig(**CONFIGS["onnx-l2g3-s8-ser4"])
    block, name = mutant_requantizer(mutant, cfg)
    bld = build_component(block, name, "icarus", block="requant", parameters=cfg.to_dict(),
                          extra=manifest_extra(cfg))
    res = run_cocotb(bld, MODULE, run_dir=tmp_path, extra_env={"CONVGEN_REQUANT_BEATS": "300"})
    assert res.tests > 1 and not res.passed, f"the {mutant} mutant was not caught"
