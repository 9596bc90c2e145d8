"""``convgen run conv --rounding tflite_opt|xnnpack`` on the ConvEngine RTL against LiteRT.

TFLite fixtures of golden/tflite_fixtures.py (a 3x3 SAME CONV_2D with power-of-two scales, so
exact ties go through the engine; a random MobileNet-like CONV_2D with ReLU6; the 1x1 depthwise
layer with effective scales 1..255, XNNPACK's positive shifts) are written as ``run conv``
layers in NHWC layout (TFLite's scales, zero points, bias, and that path's clamp bounds) and run
on the engine in the path's mode; the output must equal the LiteRT interpreter's on that path,
every value. The engine (one Verilator build per mode) is too costly for the default suite:
``-m slow``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from convgen.cli import main
from convgen.golden import tflite_fixtures as F
from convgen.golden import tflite_net as N

#: (path, fixture names); opt: CONV_2D only (every channel of an optimized CONV_2D ties up;
#: a depthwise layer with C mod 8 != 0 needs the per-channel round_away, which run conv's
#: --layer format does not carry)
CASES = {"opt": ("conv_pow2", "random0_conv"), "xnnpack": ("conv_pow2", "random0_conv", "positive_shift")}


def _fixtures():
    by = {fx.name: fx for fx in F.designed_fixtures() + F.random_fixtures(2, seed=5)}
    return by


@pytest.mark.slow
@pytest.mark.parametrize("path", list(CASES))
def test_run_conv_equals_litert(path, tmp_path, capsys):
    by = _fixtures()
    lines = []
    for name in CASES[path]:
        fx = by[name]
        want = F.run_path(F.build_model(fx), fx.x, path)[0]          # [OH, OW, C]
        layer = tmp_path / f"{name}.npz"
        np.savez(layer, **N.conv_arrays(fx, path))
        out = tmp_path / f"{name}_y.npy"
        status = main(["run", "conv", "--layer", str(layer), "--layout", "nhwc", "--rounding", F.PATH_MODE[path],
                       "--rows", "4", "--cols", "4", "--sim", "verilator", "--quiet", "--out", str(out)])
        stdout, err = capsys.readouterr()
        assert status == 0, err
        got = np.load(out)
        got = got[0] if got.ndim == 4 else got
        bad = int((got != want).sum())
        cycles = json.loads(stdout.strip().splitlines()[-1]).get("cycles")
        lines.append(f"{path} {name}: {want.size} outputs, {bad} differ from LiteRT; {cycles} cycles")
        assert got.shape == want.shape and bad == 0, lines[-1]
    print("\n" + "\n".join(lines))
