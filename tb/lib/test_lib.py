"""Launch the cocotb regression of hdl/lib (tb/lib/cocotb_lib.py) on Icarus and Verilator.

One build per simulator (the harness holds every piece, tb/lib/harness.py); one pytest test
per (piece, simulator), each running that piece's cocotb test. A missing simulator fails the
test (never skipped); on a failure the run is repeated with waveform tracing.

``test_mutants_are_caught`` builds the harness with the broken variants of tb/lib/mutants.py
and requires the tests of exactly those pieces to fail, on both simulators.
"""

import xml.etree.ElementTree as ET

import pytest

from convgen.sim.build import build_component, run_cocotb
from convgen.sim.tools import SIMULATORS
from convgen.tb.common.launch import run_regression
from convgen.tb.lib.harness import LibHarness, module_name

MODULE = "convgen.tb.lib.cocotb_lib"
PIECE_TESTS = ["queue", "pipeline_stage", "skid_buffer", "chain", "step_queue_comb",
               "step_queue_registered", "reduce_pipeline", "ready_paths"]
# the harness with mutants breaks these pieces; step_queue_comb keeps the real StepQueue
MUTATED = ["queue", "pipeline_stage", "skid_buffer", "chain", "step_queue_registered", "reduce_pipeline"]
CONTROL = ["step_queue_comb"]


def _build(simulator, waves=False, mutant=False):
    return build_component(LibHarness(mutant=mutant), module_name(mutant), simulator, block="lib",
                           parameters={"mutant": mutant}, extra={"kind": "harness"}, waves=waves)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("test", PIECE_TESTS)
def test_lib(test, simulator, tmp_path):
    run_regression(lambda waves: _build(simulator, waves), MODULE, str(tmp_path),
                   label=f"hdl/lib {test} on {simulator}", testcase=test)


# Verilator's mutant build under -m slow (the default suite's budget): the mutants are the
# same Verilog on both simulators, and Icarus shows each is caught
@pytest.mark.parametrize("simulator", [s if s != "verilator" else pytest.param(s, marks=pytest.mark.slow)
                                       for s in SIMULATORS])
def test_mutants_are_caught(simulator, tmp_path):
    res = run_cocotb(_build(simulator, mutant=True), MODULE, run_dir=tmp_path, testcase=MUTATED + CONTROL)
    outcome = {}
    for case in ET.parse(res.results_xml).iter("testcase"):
        outcome[case.get("name")] = case.find("failure") is None and case.find("error") is None
    assert set(outcome) == set(MUTATED + CONTROL), f"ran {sorted(outcome)}; log {res.log_file}"
    survived = [t for t in MUTATED if outcome[t]]
    assert not survived, f"mutants not caught by {survived}; log {res.log_file}"
    assert all(outcome[t] for t in CONTROL), f"control test failed on the mutant harness; log {res.log_file}"
