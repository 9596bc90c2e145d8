"""Every block registered for `convgen explore` elaborates at its first grid point, its functions
can be sent to worker processes, and its swept parameters are the block's declared config
fields (type, help, range, default from the declaration, not written again)."""

import pickle

import pytest

from convgen.core.fields import fields_of
from convgen.core.params import ConfigError
from convgen.synth.explore import CHOICES, DEFAULT, EXPLORABLE, expand_grid, explore


def test_every_block_is_registered():
    assert {"systolic", "requant", "im2col", "conv3x3"} <= set(EXPLORABLE)


@pytest.mark.parametrize("name", sorted(EXPLORABLE))
def test_first_point_builds(name):
    spec = EXPLORABLE[name]
    first = {p: [spec.defaults(p)[0]] for p in spec.params if spec.defaults(p)}
    point = expand_grid(spec, first)[0]
    spec.check(point)
    verilog, top, params = spec.build(point)
    assert f"module {top}" in verilog
    assert spec.macs_per_cycle(point) >= 1
    pickle.dumps((spec.build, spec.macs_per_cycle, spec.config))


@pytest.mark.parametrize("name", sorted(EXPLORABLE))
def test_swept_parameters_come_from_the_declarations(name):
    spec = EXPLORABLE[name]
    declared = {f.name: f for f in fields_of(spec.config)}
    extra = {f.name for f in spec.extra}
    for pname, f in spec.params.items():
        assert pname in declared or pname in extra
        if pname in declared:
            assert f is declared[pname]  # the config's own declaration, not a copy
        assert f.help
        v = spec.sweep[pname]
        if v == DEFAULT:
            assert spec.defaults(pname) == (f.default,)
        elif v == CHOICES:
            assert spec.defaults(pname) == f.choices and f.choices
        for value in spec.defaults(pname):
            f.check(value)  # every default sweep value is allowed by the declaration
    for follower, leader in spec.follows.items():
        assert spec.defaults(follower) == () and leader in spec.params


@pytest.mark.parametrize("name", sorted(EXPLORABLE))
def test_every_default_point_is_valid(name):
    spec = EXPLORABLE[name]
    for point in expand_grid(spec, {}):
        spec.check(point)


@pytest.mark.parametrize("block, values, needle", [
    ("requant", {"lanes": [0]}, "lanes must be an integer in 1..64, not 0"),
    ("im2col", {"max_c": [5000]}, "max_c must be an integer in 1..4096, not 5000"),
    ("conv3x3", {"engine": ["fft"]}, "engine must be one of 'winograd', 'direct', not 'fft'"),
    ("systolic", {"acc_width": [8]}, "acc_width must be an integer in 16..64, not 8"),
    ("systolic", {"rows": [2]}, None),
])
def test_every_point_is_checked_before_any_tool(block, values, needle, monkeypatch):
    from convgen.synth import explore as E

    monkeypatch.setattr(E, "_run_point", lambda *a, **k: pytest.fail("no tool may run"))
    if needle is None:  # a good grid with a bad flow option
        with pytest.raises(ConfigError, match="freq must be a number in 1..2000"):
            explore(block, values, "ice40", pnr=True, freq=0, progress=None)
        return
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        explore(block, values, "generic", progress=None)


def test_explore_defaults_to_ecp5(monkeypatch, tmp_path):
    """A sweep on the generic target has no LUT/DSP figures, so explore's --target defaults to ecp5
    (synth keeps generic)."""
    import convgen.commands.explore as ce
    import convgen.synth.explore as se
    from convgen.cli import main

    seen = {}

    def fake_explore(block, values, target, **kw):
        seen["target"] = target
        raise KeyboardInterrupt   # stop before any tool runs

    monkeypatch.setattr(se, "explore", fake_explore)
    assert main(["explore", "systolic", "--rows", "1", "--cols", "1", "--out", str(tmp_path / "out")]) == 130
    assert seen["target"] == "ecp5"
    assert next(f for f in ce.explore_flow_fields() if f.name == "target").default == "ecp5"
