"""Launch the cocotb regression of Im2colAddressGenerator on Icarus and Verilator.

One pytest test per (generator configuration, simulator). Each run streams every random
layer category (tb/im2col/layers.py) plus the Conv layers of the onnx wheel's
pytorch-converted test_Conv2d_* models (im2col and indirection mode), back to back without
reset. A missing simulator fails the test, never skips it. On a failure the configuration is
rebuilt with waveform tracing, the failing run repeated, and the waveform's path reported.
"""

import json
import os

import pytest

from convgen.hdl.im2col import Im2colConfig
from convgen.sim.im2col import build_im2col, layers_payload
from convgen.sim.tools import SIMULATORS
from convgen.tb.common.launch import run_regression
from convgen.tb.im2col.layers import onnx_conv_fixtures, random_layers

TEST_MODULE = "convgen.tb.im2col.cocotb_im2col"

CONFIGS = {
    # row-major im2col order (tile_rows=1); maxima cover every ONNX fixture and 7x7 kernels
    "t1": dict(max_h=16, max_w=16, max_c=8, max_kernel=7, max_stride=3, max_pad=3, max_dilation=3, tile_rows=1),
    # systolic order with 4-pixel tiles (partial last tiles), padding up to 5
    "t4": dict(max_h=12, max_w=12, max_c=6, max_kernel=5, max_stride=4, max_pad=5, max_dilation=3, tile_rows=4),
}
SEEDS = {"t1": 11, "t4": 12}


def layer_set(name: str, per_category: int = 1, max_elements: int = 2000, seed: int | None = None):
    hw = Im2colConfig(**CONFIGS[name])
    lays = random_layers(SEEDS[name] if seed is None else seed, hw, per_category=per_category,
                         max_elements=max_elements)
    fixtures = []
    for fname, lay in onnx_conv_fixtures() + [(f"{n}[indirect]", lay) for n, lay in onnx_conv_fixtures(indirect=True)]:
        try:
            fixtures.append((fname, hw.check_layer(lay)))
        except Exception:
            pass
    return hw, lays + fixtures


def _run(name, simulator, run_dir, **layer_args):
    hw, lays = layer_set(name, **layer_args)
    os.makedirs(run_dir, exist_ok=True)
    layers_file = os.path.join(run_dir, "layers.json")
    with open(layers_file, "w") as f:
        json.dump(layers_payload([lay for _, lay in lays]), f)
    env = {"CONVGEN_LAYERS": layers_file}
    res = run_regression(lambda waves: build_im2col(hw, simulator, waves=waves), TEST_MODULE, run_dir,
                         label=f"{hw.module_name} on {simulator}", extra_env=env)
    assert res.tests == 4, f"expected 4 cocotb tests, {res.tests} ran"


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_im2col(name, simulator, tmp_path):
    _run(name, simulator, str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_im2col_sweep(name, simulator, tmp_path):
    """Four more random layers of every category, larger ones, another seed."""
    _run(name, simulator, str(tmp_path), per_category=4, max_elements=6000, seed=SEEDS[name] + 100)
