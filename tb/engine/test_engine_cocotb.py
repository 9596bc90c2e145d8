"""Launch the cocotb protocol regression of ConvEngine (tb/engine/cocotb_engine.py) on Icarus
and Verilator.

One build per simulator of the small engine of tests/test_engine_rtl.py (3 x 4 PEs,
4-channel words, 3 chunk banks); one pytest test per simulator runs the four cocotb tests
(TESTS). A missing simulator fails the test (never skipped); on a failure the run is repeated
with waveform tracing and the waveform's path reported.

The seed is ``CONVGEN_SEED`` (default 1); each failure message names it, and
``CONVGEN_SEED=<n> .venv/bin/pytest tb/engine`` reruns that stimulus.

``test_injected_fault_is_caught`` builds the engine with each ``debug_fault`` (``pad_value``:
padded taps read memory instead of giving the zero point; ``tile_edge``: the last output pixel
is never written) and requires the regression to fail for that reason.
"""

import os
import xml.etree.ElementTree as ET
from functools import lru_cache

import pytest

from convgen.hdl.engine import EngineConfig
from convgen.sim.build import run_cocotb
from convgen.sim.engine_cocotb import build_engine_cocotb
from convgen.sim.tools import SIMULATORS
from convgen.tb.common.launch import run_regression

MODULE = "convgen.tb.engine.cocotb_engine"
TESTS = ["layers_back_to_back_random_stalls", "cycle_counts_without_stalls", "bad_descriptors", "reset_mid_layer"]
CFG = dict(rows=3, cols=4, vec=4, max_h=32, max_w=32, max_pixel_words=8, max_kernel=11, max_stride=4,
           max_pad=5, max_dilation=3, max_tiles=8, fetch_banks=3, weight_fifo=8)


def _seed() -> int:
    return int(os.environ.get("CONVGEN_SEED", "1"))


@lru_cache(maxsize=None)
def _build(simulator: str, waves: bool = False, fault: str = ""):
    # elaborating the engine takes seconds: once per (pytest worker, simulator)
    return build_engine_cocotb(EngineConfig(**CFG, debug_fault=fault), simulator, waves=waves)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_engine_cocotb(simulator, tmp_path):
    """Every cocotb test of tb/engine/cocotb_engine.py in one simulator run (starting the
    simulator and importing the bench takes several seconds)."""
    seed = _seed()
    res = run_regression(lambda waves: _build(simulator, waves), MODULE, str(tmp_path),
                         label=f"ConvEngine on {simulator} (CONVGEN_SEED={seed})",
                         extra_env={"CONVGEN_SEED": str(seed)})
    ran = sorted(case.get("name") for case in ET.parse(res.results_xml).iter("testcase"))
    assert ran == sorted(TESTS), f"ran {ran}; log {res.log_file}"


#: fault -> (simulator, cocotb test, what the failure must say)
FAULTS = {
    "pad_value": ("icarus", "layers_back_to_back_random_stalls", "differ from the conv oracle"),
    "tile_edge": ("icarus", "bad_descriptors", "never written"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_injected_fault_is_caught(fault, tmp_path):
    """The regression against an engine with an injected fault must fail, and for the right
    reason: padded taps that read memory give outputs that differ from the conv oracle; the
    last output pixel never written is reported as missing writes. (On Icarus, whose build
    takes seconds: a Verilator build of each faulty engine would take minutes of the suite.)"""
    simulator, testcase, reason = FAULTS[fault]
    res = run_cocotb(_build(simulator, fault=fault), MODULE, run_dir=tmp_path,
                     extra_env={"CONVGEN_SEED": str(_seed())}, testcase=testcase)
    cases = list(ET.parse(res.results_xml).iter("testcase"))
    assert len(cases) == 1, f"ran {len(cases)} cocotb tests; log {res.log_file}"
    failure = cases[0].find("failure")
    assert failure is not None, f"the {fault} fault was not caught; log {res.log_file}"
    text = (failure.get("message") or "") + (failure.text or "")
    assert reason in text, f"failed for another reason: {text[:500]}; log {res.log_file}"
