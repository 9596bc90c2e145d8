"""Launch the cocotb regression of the Winograd blocks on Icarus and Verilator.

Two DUTs per simulator: WinogradConv3x3 (int8, 32-bit outputs) and the harness holding the
four stand-alone blocks (input/filter/output transform, 1-D F(2,3)) and a narrow-output
conv (out_width=20, max_channels=3) that checks the overflow limit and the modular
accumulator; four builds in all, which is what dominates the run time. A missing simulator fails (never skipped); on a failure the run is repeated with
waveform tracing and the waveform's path reported.
"""


import pytest

from convgen.hdl.winograd import WinogradConfig, manifest_extra
from convgen.sim.build import build_component
from convgen.sim.tools import SIMULATORS
from convgen.sim.winograd import build_winograd
from convgen.tb.common.launch import run_regression
from convgen.tb.winograd.harness import WinogradHarness, module_name

MODULE = "convgen.tb.winograd.cocotb_winograd"

CONFIGS = {
    "conv3x3": ("conv3x3", {}),
    "harness": ("harness", {}),
}


def _build(kind, cfg, simulator, waves=False):
    if kind == "harness":
        return build_component(WinogradHarness(cfg), module_name(cfg), simulator, block="winograd",
                               parameters=cfg.to_dict(), extra=manifest_extra(cfg, "harness"), waves=waves)
    return build_winograd(cfg, simulator, kind=kind, waves=waves)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_winograd(name, simulator, tmp_path):
    kind, params = CONFIGS[name]
    cfg = WinogradConfig(**params)
    run_regression(lambda waves: _build(kind, cfg, simulator, waves=waves), MODULE, str(tmp_path),
                   label=f"{name} on {simulator}")
