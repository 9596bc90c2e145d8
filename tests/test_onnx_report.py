"""``convgen run onnx`` beyond a full run: ``--layers`` (part of the network on the RTL, the rest
on the golden model), ``--report`` as Markdown or HTML with a cycle plot, and the first
mismatching layer saved with its tensors and a waveform.

Every check is against something the code under test does not compute: ONNX Runtime's tensors
(the whole network, and a single-node QLinearConv for the saved layer), and, for which layer is
the first bad one, each convolution run alone on the faulty engine with ORT's input."""

import base64
import dataclasses
import json
import re

import numpy as np
import pytest

from convgen.cli import main
from convgen.golden import netzoo
from convgen.golden import network as gn
from convgen.golden import ort
from convgen.sim import network as sn
from convgen.sim.engine import EngineBuild, build_engine, run_layers

PNG = b"\x89PNG\r\n\x1a\n"


def _model():
    return netzoo.build_path("every_kind", "qoperator")


def _x(path, seed=7):
    import onnx

    return netzoo.calibration_inputs(onnx.load(str(path)), 1, seed)[0]


def _table(out: str) -> dict:
    """Per-layer rows of the printed table: index -> cells."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            rows[int(cells[0])] = cells
    return rows


@pytest.mark.parametrize("layers, first, last, report", [("2-4", 2, 4, "r.html"), ("5", 5, 5, "r.md")])
def test_layers_run_part_on_the_rtl_and_report(layers, first, last, report, tmp_path, capsys):
    path = _model()
    x = _x(path)
    np.save(tmp_path / "x.npy", x)
    status = main(["run", "onnx", str(path), "--input", str(tmp_path / "x.npy"), "--engine", "4x4",
                   "--layers", layers, "--out", str(tmp_path / "y.npy"), "--report", str(tmp_path / report)])
    out, err = capsys.readouterr()
    assert status == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["bit_exact"] is True and summary["convs"] == 8
    assert summary["convs_rtl"] == last - first + 1 and summary["layers"] == f"{first}-{last}"
    # the table numbers the convolutions 0..7 in execution order; only first..last ran on the RTL
    rows = _table(out)
    assert sorted(rows) == list(range(8))
    names = [s.name for s in gn.load(path).conv_steps]
    for i, cells in rows.items():
        assert cells[1] == names[i]
        on_rtl = first <= i <= last
        assert cells[4] == ("RTL" if on_rtl else "golden"), cells
        assert (cells[6] != "-") == on_rtl and cells[11] == "exact"
        if on_rtl:   # compute-bound on this engine: the measured cycles are the formula's
            assert cells[6] == cells[7].split()[0]
    assert len(re.findall(r"\(#\d\) .*cycles, utilization", err)) == last - first + 1
    # the output is ORT's: the golden layers hand the RTL layers the right inputs and vice versa
    want = gn.ort_tensors(path, x, [gn.load(path).output_names[0]])
    assert np.array_equal(np.load(tmp_path / "y.npy"), next(iter(want.values())))
    text = (tmp_path / report).read_text()
    assert "conv24_quant" in text and "golden" in text and "SCALE-Sim" in text
    if report.endswith(".html"):
        assert text.startswith("<!DOCTYPE html>") and "<table>" in text
        png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1))
    else:
        assert "](r-cycles.png)" in text
        png = (tmp_path / "r-cycles.png").read_bytes()
    assert png.startswith(PNG) and len(png) > 5000
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["x.npy", "y.npy", report] + ([] if report.endswith(".html") else ["r-cycles.png"]))


@pytest.mark.parametrize("value", ["8", "9", "x", "3-1", "-1", "1-8", "1-2-3", "", "0-"])
def test_bad_layers_refused_before_any_build(value, tmp_path, capsys, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("built an engine for a bad --layers")

    monkeypatch.setattr(sn, "build_engine", no_build)
    status = main(["run", "onnx", str(_model()), "--engine", "4x4", "--layers", value,
                   "--out", str(tmp_path / "y.npy"), "--report", str(tmp_path / "r.md")])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--layers" in lines[0] and "0..7" in lines[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["r.txt", "r", "r.pdf"])
def test_report_suffix_refused(name, tmp_path, capsys):
    status = main(["run", "onnx", str(_model()), "--engine", "4x4", "--report", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--report" in lines[0] and ".html" in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_waves_need_an_icarus_build(tmp_path):
    cfg, _ = sn.plan_network(gn.load(_model()), _x(_model()), rows=4, cols=4)
    b = EngineBuild(cfg, "verilator", tmp_path, tmp_path / "none", 1 << 16)
    with pytest.raises(Exception, match="Icarus"):
        run_layers(b, [], waves=tmp_path / "w.vcd")


def test_first_mismatch_saves_tensors_and_a_waveform(tmp_path, capsys, monkeypatch):
    """An engine with a fault (padded taps read memory instead of the zero point) runs
    convolutions 0..2 on Icarus: the run names the first bad convolution, saves its tensors and
    re-runs it alone with a waveform."""
    path = _model()
    x = _x(path)
    net = gn.load(path)
    real_plan = sn.plan_network

    def faulty_plan(*a, **k):
        cfg, convs = real_plan(*a, **k)
        return dataclasses.replace(cfg, debug_fault="pad_value"), convs

    monkeypatch.setattr(sn, "plan_network", faulty_plan)
    np.save(tmp_path / "x.npy", x)
    mdir = tmp_path / "bad"
    status = main(["run", "onnx", str(path), "--input", str(tmp_path / "x.npy"), "--engine", "4x4", "--sim",
                   "icarus", "--layers", "0-2", "--mismatch-dir", str(mdir), "--quiet"])
    out, err = capsys.readouterr()
    assert status == 1, err
    m = json.loads(out.strip().splitlines()[-1])["first_mismatch"]

    # which convolution is the first bad one, independently: each alone on the faulty engine,
    # with ORT's input, against ORT's output
    convs = net.conv_steps
    ref = gn.ort_tensors(path, x, [t for s in convs for t in (s.inputs[0], s.output)], net=net)
    cfg, _ = faulty_plan(net, x, rows=4, cols=4)
    ex = sn.EngineExecutor(build_engine(cfg, "icarus", mem_words=1 << 16))
    layers = sn.layer_inputs(path, x)
    first = None
    for i, (q, _) in enumerate(layers[:3]):
        assert np.array_equal(q.x, ref[convs[i].inputs[0]])       # the golden chain is ORT's
        if not np.array_equal(ex(q), ref[convs[i].output]):
            first = i
            break
    assert first is not None, "the fault changed none of convolutions 0..2"
    assert m["conv"] == first and m["name"] == convs[first].name and m["on_rtl"] is True

    # one line on stderr naming the convolution and every saved path
    line = [ln for ln in err.splitlines() if "first mismatch" in ln]
    assert len(line) == 1 and f"conv #{first} '{convs[first].name}'" in line[0]
    for p in [*m["tensors"].values(), m["layer"], m["waveform"]]:
        assert p in line[0] and p.startswith(str(mdir))
    # the tensors: ORT's input and output, and an RTL output that differs from it
    t = {k: np.load(v) for k, v in m["tensors"].items()}
    assert np.array_equal(t["input"], ref[convs[first].inputs[0]])
    assert np.array_equal(t["expected"], ref[convs[first].output])
    assert t["got"].shape == t["expected"].shape
    assert int((t["got"] != t["expected"]).sum()) == m["mismatches"] > 0
    # the saved layer is that convolution: ORT's single-node QLinearConv of it gives the expected output
    with np.load(m["layer"]) as z:
        assert np.array_equal(ort.qlinear_conv(dict(z)), t["expected"])
    # the waveform: the engine's signals over the whole layer
    vcd = (mdir / m["waveform"].rsplit("/", 1)[-1]).read_text()
    assert "$scope module dut $end" in vcd and "$enddefinitions" in vcd
    for signal in ("desc__valid", "busy", "done", "x_req__valid", "y_req__payload"):
        assert re.search(rf"\$var \w+ \d+ \S+ {signal}\b", vcd), signal
    cycles = int(_table(out)[first][6].replace(",", ""))
    assert int(re.findall(r"^#(\d+)$", vcd, re.M)[-1]) >= 10 * cycles     # 10 time units per clock
    assert m["waveform_reproduces"] is True
    # all or nothing: exactly these files, no temporary folder left beside them
    assert sorted(p.name for p in mdir.iterdir()) == sorted(
        v.rsplit("/", 1)[-1] for v in [*m["tensors"].values(), m["layer"], m["waveform"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "x.npy"]


def test_first_mismatch_at_a_host_op_saves_its_tensors(tmp_path, capsys, monkeypatch):
    """A QLinearAdd that adds 1 (a host op, not an RTL step): the first mismatch is the first add,
    its inputs and outputs are saved, and there is no layer or waveform to give."""
    path = _model()
    x = _x(path, 3)
    net = gn.load(path)
    real_add = gn.qlinear_add
    monkeypatch.setattr(gn, "qlinear_add", lambda *a, **k: np.minimum(real_add(*a, **k) + 1, 127))
    np.save(tmp_path / "x.npy", x)
    status = main(["run", "onnx", str(path), "--input", str(tmp_path / "x.npy"), "--engine", "4x4", "--layers", "0",
                   "--out", str(tmp_path / "y.npy"), "--quiet"])
    out, err = capsys.readouterr()
    assert status == 1, err
    m = json.loads(out.strip().splitlines()[-1])["first_mismatch"]
    k, add = next((k, s) for k, s in enumerate(net.steps) if s.op == "QLinearAdd")
    assert m["name"] == add.name and m["conv"] is None and m["layer"] is None and m["waveform"] is None
    mdir = tmp_path / f"{path.stem}-mismatch"          # default: beside --out
    assert sorted(p.name for p in mdir.iterdir()) == sorted(
        f"step{k}-{add.name}.{w}.npy" for w in ("input0", "input1", "expected", "got"))
    ref = gn.ort_tensors(path, x, [*add.inputs, add.output], net=net)
    t = {w: np.load(mdir / f"step{k}-{add.name}.{w}.npy") for w in ("input0", "input1", "expected", "got")}
    assert np.array_equal(t["input0"], ref[add.inputs[0]]) and np.array_equal(t["input1"], ref[add.inputs[1]])
    assert np.array_equal(t["expected"], ref[add.output])
    assert np.array_equal(t["got"], np.minimum(ref[add.output].astype(np.int64) + 1, 127))
    line = [ln for ln in err.splitlines() if "first mismatch" in ln]
    assert len(line) == 1 and f"'{add.name}' (QLinearAdd)" in line[0] and "not a step run on the RTL" in line[0]


def test_mismatch_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    status = main(["run", "onnx", str(_model()), "--engine", "4x4", "--mismatch-dir", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "--mismatch-dir" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
