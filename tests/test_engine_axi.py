"""The ConvEngine AXI wrapper (hdl/engine_axi.py): cocotb with cocotbext-axi on Icarus and
Verilator (tb/engine_axi/cocotb_engine_axi.py), an injected fault caught, the register map,
header and driver that ``convgen generate engine --axi`` writes, and its bad options.

The engine is 2 x 4 with 4-channel words; Icarus runs a 32-bit AXI bus (x, w, y words one beat
each, the 97-bit parameter words 4-beat bursts), Verilator a 64-bit bus (x, w, y in byte
lanes of a beat, parameter words 2-beat bursts); ``-m slow`` runs the other width on each.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache

import pytest

from convgen.hdl.engine import EngineConfig
from convgen.hdl.engine_axi import AxiConfig
from convgen.sim.build import run_cocotb
from convgen.sim.engine_axi import build_axi_cocotb
from convgen.tb.common.launch import run_regression

MODULE = "convgen.tb.engine_axi.cocotb_engine_axi"
TESTS = ["layers_back_to_back", "bad_descriptor_and_alignment", "cycle_counts"]
ENGINE = dict(rows=2, cols=4, vec=4, max_h=8, max_w=8, max_pixel_words=4, max_kernel=3, max_stride=2, max_pad=1,
              max_dilation=1, max_tiles=4, addr_width=16, fetch_banks=3, weight_fifo=8)
WIDTH = {"icarus": 32, "verilator": 64}


def _seed() -> int:
    return int(os.environ.get("CONVGEN_SEED", "1"))


@lru_cache(maxsize=None)
def _build(simulator: str, data_width: int, waves: bool = False, fault: str = ""):
    return build_axi_cocotb(AxiConfig(EngineConfig(**ENGINE), data_width=data_width, fault=fault), simulator,
                            waves=waves)


def _run(simulator, data_width, tmp_path):
    seed = _seed()
    res = run_regression(lambda waves: _build(simulator, data_width, waves), MODULE, str(tmp_path),
                         label=f"EngineAxi ({data_width}-bit) on {simulator} (CONVGEN_SEED={seed})",
                         extra_env={"CONVGEN_SEED": str(seed)})
    ran = sorted(case.get("name") for case in ET.parse(res.results_xml).iter("testcase"))
    assert ran == sorted(TESTS), f"ran {ran}; log {res.log_file}"
    return json.loads((tmp_path / "cycles.json").read_text())


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_engine_axi_cocotb(simulator, tmp_path):
    """Every cocotb test of the AXI bench in one simulator run."""
    cycles = _run(simulator, WIDTH[simulator], tmp_path)
    assert len(cycles["layers"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_engine_axi_cocotb_other_width(simulator, tmp_path):
    """The bus width the default test does not run on this simulator (and 128 bits: every word
    in the byte lanes of one beat)."""
    for dw in ({32, 64} - {WIDTH[simulator]}) | {128}:
        _run(simulator, dw, tmp_path / str(dw))


def test_injected_fault_is_caught(tmp_path):
    """Multi-beat parameter bursts that start one beat too high (``axi_fault=burst_addr``) give
    wrong requantization parameters: the bench must fail on the conv oracle comparison."""
    res = run_cocotb(_build("icarus", 32, fault="burst_addr"), MODULE, run_dir=tmp_path,
                     extra_env={"CONVGEN_SEED": str(_seed())}, testcase="layers_back_to_back")
    cases = list(ET.parse(res.results_xml).iter("testcase"))
    assert len(cases) == 1, f"ran {len(cases)} cocotb tests; log {res.log_file}"
    failure = cases[0].find("failure")
    assert failure is not None, f"the burst_addr fault was not caught; log {res.log_file}"
    text = (failure.get("message") or "") + (failure.text or "")
    assert "differ from the conv oracle" in text, f"failed for another reason: {text[:500]}"
