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


def _record_points(monkeypatch):
    from convgen.synth import explore as E

    ran = []

    def fake_run(block, point, target, *a):
        ran.append(dict(point))
        return {**point, "status": "ok", "macs_per_cycle": 1, "luts": 1, "dsps": 0, "seconds": 0.0}

    monkeypatch.setattr(E, "_run_point", fake_run)
    return ran


def test_a_cross_product_skips_and_reports_combinations_that_are_no_configuration(monkeypatch):
    """`--dataflow os,ws --dsp generic,ecp5 --pipeline-operands false,true --pipeline-mult 0,2`:
    the points the declarations allow one by one but SystolicConfig refuses as a whole (ecp5 or
    pipeline_mult with ws, pipeline_mult without pipeline_operands) are left out and named; the
    others run."""
    import io

    from convgen.hdl.systolic import SystolicConfig

    ran = _record_points(monkeypatch)
    log = io.StringIO()
    values = {"rows": [2], "dataflow": ["os", "ws"], "dsp": ["generic", "ecp5"], "pipeline_operands": [False, True],
              "pipeline_mult": [0, 2]}
    rows = explore("systolic", values, "ecp5", progress=log)
    valid = []
    for p in expand_grid(EXPLORABLE["systolic"], values):
        try:
            SystolicConfig(**p)
            valid.append(p)
        except ConfigError:
            pass
    assert ran == valid and len(rows) == len(valid) == 8   # os: 2 dsp x 3; ws: generic, pm 0
    assert log.getvalue().count("skipped") == 16 - 8
    assert "skipped rows=2 cols=2 dataflow=ws acc_width=32 dsp=ecp5" in log.getvalue()
    assert "is built for the output-stationary array only" in log.getvalue()


def test_vendor_primitives_are_swept_on_their_own_target_only(monkeypatch):
    import io

    ran = _record_points(monkeypatch)
    log = io.StringIO()
    explore("systolic", {"rows": [2], "dataflow": ["os"], "dsp": ["generic", "ecp5", "ice40"]}, "ice40",
            progress=log)
    assert [p["dsp"] for p in ran] == ["generic", "ice40"]
    assert "dsp=ecp5 pipeline_operands=False pipeline_mult=0: its vendor primitives need --target ecp5, not ice40" \
        in log.getvalue()


def test_a_sweep_with_no_valid_point_is_an_error_before_any_tool(monkeypatch):
    ran = _record_points(monkeypatch)
    with pytest.raises(ConfigError, match=r"dsp 'ecp5' is built for the output-stationary array only .*\(no point "
                                          r"of the sweep is a valid systolic configuration; the first: .*dataflow=ws"):
        explore("systolic", {"rows": [2], "dataflow": ["ws"], "dsp": ["ecp5"]}, "ecp5", progress=None)
    with pytest.raises(ConfigError, match="pipeline_mult must be an integer in 0..2, not 3"):
        explore("systolic", {"rows": [2], "pipeline_mult": [3]}, "ecp5", progress=None)
    assert ran == []


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("1", True), ("0", False),
                                         ("yes", True), ("off", False)])
def test_bool_values_parse_from_the_command_line(text, value):
    from convgen.hdl.systolic import SystolicConfig

    f = next(f for f in fields_of(SystolicConfig) if f.name == "pipeline_operands")
    assert f.check(f.parse(text)) is value


def test_explore_cli_takes_vendor_variants_and_refuses_a_bad_bool(monkeypatch, tmp_path, capsys):
    import convgen.synth.explore as se
    from convgen.cli import main

    seen = {}

    def fake_explore(block, values, target, **kw):
        seen.update(values)
        raise KeyboardInterrupt

    monkeypatch.setattr(se, "explore", fake_explore)
    out = str(tmp_path / "out")
    assert main(["explore", "systolic", "--rows", "2", "--dsp", "generic,ecp5", "--pipeline-operands", "true",
                 "--pipeline-mult", "0,2", "--out", out]) == 130
    assert seen["dsp"] == ["generic", "ecp5"] and seen["pipeline_operands"] == [True]
    assert seen["pipeline_mult"] == [0, 2]
    assert main(["explore", "systolic", "--pipeline-operands", "maybe", "--out", out]) == 2
    assert "--pipeline-operands must be True or False, not 'maybe'" in capsys.readouterr().err


def test_errors_in_the_csv_name_the_cache_not_this_machine(tmp_path):
    """explore writes its errors through core.cache.portable, as the bench scripts write their
    JSON: the cache as $CONVGEN_CACHE, any other absolute path as its file name."""
    from convgen.core.cache import portable

    msg = f"does not fit; read {tmp_path}/pnr/failed-ab12/nextpnr.log"
    assert portable(msg, tmp_path) == "does not fit; read $CONVGEN_CACHE/pnr/failed-ab12/nextpnr.log"
    doc = {"log": f"{tmp_path}/synth/x/yosys.log", "design": ["/srv/build/top.v", 3]}
    assert portable(doc, tmp_path) == {"log": "$CONVGEN_CACHE/synth/x/yosys.log", "design": ["top.v", 3]}
