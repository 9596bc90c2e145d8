"""``convgen run tflite`` as a command: ``--layers``, the first-mismatch dump, ``--report`` and
bad output paths, in the default suite without building an engine.

The engine is replaced by a stand-in that returns each layer's golden output (the layers' RTL
runs are the ``-m slow`` tests of tests/test_tflite_network.py): what is checked here is the
runner's and the command's bookkeeping (which operators run where, what is compared, what is
saved, the exit status), each against something the code under test does not compute: LiteRT
running the operator alone, and the fault the test injects itself. Also ``--report`` as Markdown
and HTML, and a model with float32 input and output. Cost: about 4 s (most of it importing matplotlib
for the report's plot).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from convgen.cli import main
from convgen.golden import tflite_fixtures as F
from convgen.golden import tflite_net as N
from convgen.sim import tflite_network as sn

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    m, x = N.mobilenet_v2(2, head="keras")
    (d / "m.tflite").write_bytes(m)
    np.save(d / "x.npy", x)
    return d / "m.tflite", d / "x.npy", m, x


@pytest.fixture
def fake_engine(monkeypatch):
    """No simulation: each engine layer returns its golden output on the path, plus
    ``fault[k]`` on engine operator ``k``; ``calls`` lists the engine operators run."""
    state = SimpleNamespace(fault={}, calls=[], fixture=None, path=None)
    real_quant = N.quant_conv_for

    def quant_conv_for(fx, path):
        state.fixture, state.path = fx, path
        return real_quant(fx, path)

    def run_layers(build, jobs, **kw):
        state.calls.append(state.fixture.name)
        return SimpleNamespace(layers=[SimpleNamespace(status="OK", cycles=1000, y_words=None)])

    def y_from_words(words, job, signed):
        y = F.golden_path(state.fixture, state.path)[0]
        k = len(state.calls) - 1
        return np.clip(y + state.fault.get(k, 0), -128, 127) if k in state.fault else y

    monkeypatch.setattr(sn.N, "quant_conv_for", quant_conv_for)
    monkeypatch.setattr(sn, "build_engine", lambda cfg, sim: SimpleNamespace(build_seconds=0.0))
    monkeypatch.setattr(sn, "run_layers", run_layers)
    monkeypatch.setattr(sn, "y_from_words", y_from_words)
    monkeypatch.setattr(sn, "formula_cycles", lambda cfg, job: (1000, True))
    return state


def _run(capsys, argv):
    status = main(["run", "tflite", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_layers_run_part_on_the_engine(keras_model, fake_engine, capsys, tmp_path):
    mp, xp, m, x = keras_model
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", "opt", "--engine", "4x4", "--layers", "3-5",
                                     "--quiet", "--out", tmp_path / "y.npy"])
    assert status == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["bit_exact"] and s["convs"] == 12 and s["convs_rtl"] == 3 and s["layers"] == "3-5"
    assert len(fake_engine.calls) == 3
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in out.splitlines() if ln.startswith("| ")]
    on = {r[3]: r[5] for r in rows[1:] if r[3].isdigit()}
    assert on == {str(k): "RTL" if 3 <= k <= 5 else "golden" for k in range(12)}
    assert np.array_equal(np.load(tmp_path / "y.npy"), F.run_path(m, x, "opt"))


@pytest.mark.parametrize("value", ["12", "5-3", "a-b", "-1"])
def test_bad_layers_are_one_line(keras_model, fake_engine, capsys, value):
    mp, xp, _, _ = keras_model
    status, out, err = _run(capsys, [mp, "--input", xp, "--layers", value])
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "--layers must be A-B or N with convolution indices in 0..11" in err
    assert fake_engine.calls == []


def test_first_mismatch_is_saved(keras_model, fake_engine, capsys, tmp_path):
    """Engine operator #4 returns +1 on every output: the run exits 1 naming conv #4 in one
    stderr line and saves its input, LiteRT's output, the faulty output and the layer."""
    mp, xp, m, x = keras_model
    fake_engine.fault = {4: 1}
    mdir = tmp_path / "dump"
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", "xnnpack", "--engine", "4x4", "--quiet",
                                     "--mismatch-dir", mdir])
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convgen: first mismatch at conv #4 '6_conv_2d' (CONV_2D)"), err
    mm = json.loads(out.strip().splitlines()[-1])["first_mismatch"]
    files = {k: Path(v) for k, v in mm["tensors"].items()}
    assert set(files) == {"input", "expected", "got"} and all(f.parent == mdir for f in files.values())
    g = N.read_model(m)
    op = g.ops[6]
    x_in = np.load(files["input"])
    want = F.run_path(N.single_op_model(g, op), x_in, "xnnpack")           # LiteRT, the operator alone
    assert np.array_equal(np.load(files["expected"]), want)
    got = np.load(files["got"])
    assert int((got != want).sum()) == mm["mismatches"] > 0 and mm["max_diff"] == 1
    layer = np.load(mm["layer"])
    assert np.array_equal(layer["x"], x_in) and {"w", "B", "act_min", "act_max"} <= set(layer.files)
    # the network's input to operator 6 is what LiteRT's own golden chain gives (engine ops 0..3 exact)
    assert np.array_equal(x_in, N.run_golden(g, x, "xnnpack")[op.inputs[0]])


def test_first_mismatch_at_a_host_operator(keras_model, fake_engine, capsys, tmp_path, monkeypatch):
    """A MEAN that adds 1: the first mismatch is that host operator (default directory: beside --out)."""
    mp, xp, _, _ = keras_model
    real = N.O.mean
    monkeypatch.setattr(N.O, "mean", lambda *a, **k: np.minimum(real(*a, **k) + 1, 127))
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", "ref", "--quiet", "--out", tmp_path / "y.npy"])
    assert status == 1 and "first mismatch at '15_mean' (MEAN)" in err, err
    mm = json.loads(out.strip().splitlines()[-1])["first_mismatch"]
    assert mm["layer"] is None and Path(mm["tensors"]["got"]).parent == tmp_path / "m-mismatch"


def _bad_out_cases(tmp: Path):
    (tmp / "afile").write_text("x")
    (tmp / "adir").mkdir()
    return {
        "a directory": (["--out", tmp / "adir"], f"--out: {tmp / 'adir'} is a directory"),
        "under a file": (["--out", tmp / "afile" / "y.npy"], f"--out: {tmp / 'afile'} is not a directory"),
        "a missing directory": (["--out", tmp / "nope" / "y.npy"], "--out: the directory"),
        "report a directory": (["--report", tmp / "adir" / "r.md", "--out", tmp / "adir"], "--out:"),
        "mismatch dir a file": (["--mismatch-dir", tmp / "afile"], f"--mismatch-dir: {tmp / 'afile'} exists and is "
                                                                    "not a directory"),
    }


@pytest.mark.parametrize("case", ["a directory", "under a file", "a missing directory", "report a directory",
                                  "mismatch dir a file", "read-only"])
def test_bad_output_paths_refused_before_any_work(case, keras_model, capsys, tmp_path, monkeypatch):
    mp, xp, _, _ = keras_model
    monkeypatch.setattr(sn, "run_tflite", lambda *a, **k: pytest.fail("the run started"))
    monkeypatch.setattr(N, "read_model", lambda *a, **k: pytest.fail("the model was read"))
    if case == "read-only":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if ROOT:   # root ignores mode bits: answer for ro what os.access answers a normal user
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == ro else real_access(p, m, **k))
        argv, needle = ["--out", ro / "y.npy"], f"--out: the directory {ro} is not writable"
    else:
        argv, needle = _bad_out_cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    try:
        status, out, err = _run(capsys, [mp, "--input", xp, *argv])
    finally:
        if case == "read-only":
            ro.chmod(0o755)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("convgen: error: ") and needle in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("report", ["r.md", "r.html"])
def test_report_with_cycle_plot(report, keras_model, fake_engine, capsys, tmp_path):
    """--report as Markdown (the plot beside it) or one HTML page (the plot embedded), as run onnx."""
    import base64
    import re

    mp, xp, _, _ = keras_model
    rp = tmp_path / report
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", "ref", "--layers", "2-4", "--quiet",
                                     "--report", rp])
    assert status == 0, err
    text = rp.read_text()
    png = b"\x89PNG\r\n\x1a\n"
    if report.endswith(".md"):
        assert (tmp_path / "r-cycles.png").read_bytes().startswith(png) and "](r-cycles.png)" in text
        assert text.count("| golden |") == 9 and text.count("| RTL |") == 3
    else:
        img = re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)
        assert base64.b64decode(img).startswith(png)
        assert text.count("<td>golden</td>") == 9 and text.count("<td>RTL</td>") == 3 and "</table>" in text


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    """MobileNetV1-style with a converter's float I/O: QUANTIZE at the input, DEQUANTIZE at the output."""
    d = tmp_path_factory.mktemp("fmodel")
    m, x = N.with_io(*N.mobilenet(0), io="float32")
    (d / "f.tflite").write_bytes(m)
    np.save(d / "x.npy", x)
    return d / "f.tflite", d / "x.npy", m, x


@pytest.mark.parametrize("path", ["opt", pytest.param("ref", marks=pytest.mark.slow),
                                  pytest.param("xnnpack", marks=pytest.mark.slow)])
def test_float_io_model(path, float_model, fake_engine, capsys, tmp_path):
    """A float32 input and output: the output file is float32 and equals LiteRT's bit for bit;
    QUANTIZE and DEQUANTIZE are host rows compared with LiteRT; the default input (seeded floats
    over the QUANTIZE's range) runs too. ``ref`` and ``xnnpack`` under ``-m slow`` (tests/test_tflite_quantize.py
    compares the same model's golden runs with LiteRT on every path in the default suite)."""
    mp, xp, m, x = float_model
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", path, "--quiet", "--out", tmp_path / "y.npy"])
    assert status == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["bit_exact"] and s["outputs"] == 10 and s["layer_mismatches"] == 0
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and N.count_differ(y, F.run_path(m, x, path)) == 0
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in out.splitlines() if ln.startswith("| ")]
    host = {r[2]: r[-1] for r in rows[1:] if r[5] == "host"}
    assert host["QUANTIZE"] == "exact" and host["DEQUANTIZE"] == "exact"
    if path == "opt":                # the optimized QUANTIZE's NEON blocks and scalar tail both see the default
        status, out, err = _run(capsys, [mp, "--path", path, "--quiet"])
        assert status == 0 and json.loads(out.strip().splitlines()[-1])["bit_exact"], err


def test_float_io_mismatch_and_bad_input(float_model, fake_engine, capsys, tmp_path, monkeypatch):
    """A DEQUANTIZE one float32 step off is the first mismatch, saved as float32; a non-finite
    or wrongly shaped float input is one line with status 2."""
    mp, xp, m, x = float_model
    bad = tmp_path / "nan.npy"
    np.save(bad, np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x))
    status, out, err = _run(capsys, [mp, "--input", bad])
    assert status == 2 and out == "" and "--input must hold finite float32 values" in err, err
    np.save(bad, x[..., :2])
    status, out, err = _run(capsys, [mp, "--input", bad])
    assert status == 2 and "--input must have the model's input shape (1, 16, 16, 3)" in err, err
    real = N.O.dequantize
    monkeypatch.setattr(N.O, "dequantize", lambda *a, **k: np.nextafter(real(*a, **k), np.float32(np.inf)))
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", "opt", "--quiet", "--mismatch-dir", tmp_path / "d"])
    assert status == 1 and "(DEQUANTIZE)" in err, err
    mm = json.loads(out.strip().splitlines()[-1])["first_mismatch"]
    got, want = (np.load(mm["tensors"][k]) for k in ("got", "expected"))
    assert got.dtype == want.dtype == np.float32 and mm["mismatches"] == 10
    assert np.array_equal(np.load(mm["tensors"]["input"]), N.run_golden(N.read_model(m), x, "opt")[
        N.read_model(m).ops[-1].inputs[0]].astype(np.int8))


def test_uint8_io_model(fake_engine, capsys, tmp_path):
    """uint8 input and output (a QUANTIZE requantizing at each end): the output file holds uint8
    values equal to LiteRT's; an input outside 0..255 is one line with status 2."""
    m, x = N.with_io(*N.mobilenet(0), io="uint8")
    mp, xp, yp = tmp_path / "u.tflite", tmp_path / "x.npy", tmp_path / "y.npy"
    mp.write_bytes(m)
    np.save(xp, x)
    status, out, err = _run(capsys, [mp, "--input", xp, "--path", "xnnpack", "--quiet", "--out", yp])
    assert status == 0 and json.loads(out.strip().splitlines()[-1])["bit_exact"], err
    y = np.load(yp)
    assert np.array_equal(y, F.run_path(m, x, "xnnpack")) and y.min() >= 0 and y.max() <= 255
    np.save(xp, x.astype(np.int64) - 1)
    status, out, err = _run(capsys, [mp, "--input", xp])
    assert status == 2 and "--input must hold uint8 values (0..255), not int64 in -1..254" in err, err
