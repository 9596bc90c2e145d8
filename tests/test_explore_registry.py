"""Every block registered for `convgen explore` elaborates at its first grid point, and its
functions can be sent to worker processes."""

import pickle

import pytest

from convgen.synth.explore import EXPLORABLE, expand_grid


def test_every_block_is_registered():
    assert {"systolic", "requant", "im2col", "conv3x3"} <= set(EXPLORABLE)


@pytest.mark.parametrize("name", sorted(EXPLORABLE))
def test_first_point_builds(name):
    spec = EXPLORABLE[name]
    first = {p: [defaults[0]] for p, (_, defaults, _) in spec.params.items() if defaults}
    point = expand_grid(spec, first)[0]
    verilog, top, params = spec.build(point)
    assert f"module {top}" in verilog
    assert spec.macs_per_cycle(point) >= 1
    pickle.dumps((spec.build, spec.macs_per_cycle))
