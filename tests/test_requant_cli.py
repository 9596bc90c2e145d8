"""convgen generate/run requant: bad parameters exit with status 2 and one line naming the
parameter and its range, writing nothing; generate writes exactly the .v and the .json; run
on both simulators equals the golden model for every rounding mode.

The run tests use the configurations of tb/requant/test_requant.py (lanes, groups = channels /
lanes, output type), so their simulation builds are the regression's (same Verilog => cached
build), not new ones.
"""

import json
import os
import zlib

import numpy as np
import pytest

from convgen.cli import main
from convgen.golden.requant import RequantParams, quantize_multiplier, requantize
from convgen.sim.tools import SIMULATORS


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


@pytest.mark.parametrize("argv, needle", [
    (["--lanes", "0"], "--lanes must be an integer in 1..64, not 0"),
    (["--lanes", "65"], "--lanes must be an integer in 1..64, not 65"),
    (["--groups", "1025"], "--groups must be an integer in 1..1024, not 1025"),
    (["--rounding", "floor"], "--rounding must be one of 'tflite', 'tflite_single', 'onnx', 'tflite_opt', 'xnnpack', not 'floor'"),
    (["--out-width", "1"], "--out-width must be an integer in 2..16, not 1"),
])
def test_generate_bad_parameters(capsys, tmp_path, argv, needle):
    out_dir = tmp_path / "out"
    status, out, err = run(capsys, "generate", "requant", *argv, "-o", out_dir)
    assert status == 2, err
    assert needle in err and err.startswith("convgen: error: ") and len(err.strip().splitlines()) == 1, err
    assert out == "" and not out_dir.exists()
    assert os.listdir(tmp_path) == []  # no temporary directories left either


# (extra CLI arguments, multiplier, shift, needle); 4 channels of int8
@pytest.mark.parametrize("extra, mult, shift, needle", [
    ([], 1 << 29, -3, "multiplier must be in 1073741824..2147483647"),
    ([], 1 << 30, 31, "shift must be in -31..30, not 31"),
    ([], 1 << 30, -32, "shift must be in -31..30, not -32"),
    (["--act-min", "10", "--act-max", "5"], 1 << 30, -3, "act_min"),
    (["--zero-point", "200"], 1 << 30, -3, "--zero-point must be in -128..127"),
    (["--zero-point", "x"], 1 << 30, -3, "--zero-point must be an integer, not 'x'"),
    (["--lanes", "0"], 1 << 30, -3, "--lanes must be an integer in 1..64, not 0"),
])
def test_run_bad_parameters(capsys, tmp_path, extra, mult, shift, needle):
    acc = _save(tmp_path, "acc.npy", np.zeros((2, 4), dtype=np.int64))
    m = _save(tmp_path, "m.npy", np.full(4, mult, dtype=np.int64))
    s = _save(tmp_path, "s.npy", np.full(4, shift, dtype=np.int64))
    out = tmp_path / "y.npy"
    status, stdout, err = run(capsys, "run", "requant", "--acc", acc, "--multiplier", m, "--shift", s,
                              "--out", out, "--sim", "icarus", *extra)
    assert status == 2, err
    assert needle in err and err.startswith("convgen: error: ") and len(err.strip().splitlines()) == 1, err
    assert stdout == "" and not out.exists()


def test_run_bad_onnx_scale(capsys, tmp_path):
    acc = _save(tmp_path, "acc.npy", np.zeros((2, 4), dtype=np.int64))
    sc = _save(tmp_path, "sc.npy", np.full(4, 1.5, dtype=np.float32))
    out = tmp_path / "y.npy"
    status, _, err = run(capsys, "run", "requant", "--acc", acc, "--scale", sc, "--rounding", "onnx",
                         "--out", out, "--sim", "icarus")
    assert status == 2 and "scale must be a float32 in [2**-126, 1)" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("rounding, files, needle", [
    ("xnnpack", {"scale": np.full(4, 256.0, np.float32)}, "scale must be a float32 in [2**-126, 256)"),
    ("xnnpack", {"multiplier": np.full(4, 1 << 30), "shift": np.zeros(4, np.int64)},
     "--rounding xnnpack needs --scale (float32 .npy) and no --multiplier"),
    ("tflite", {"multiplier": np.full(4, 1 << 30), "shift": np.zeros(4, np.int64), "round_away": np.ones(4, bool)},
     "--round-away applies to --rounding tflite_opt only, not tflite"),
    ("tflite_opt", {"multiplier": np.full(4, 1 << 30), "shift": np.zeros(4, np.int64), "round_away": np.full(4, 2)},
     "must hold booleans (or 0/1), one per channel"),
    ("tflite_opt", {"multiplier": np.full(4, 1 << 30), "shift": np.zeros(4, np.int64), "round_away": np.ones(3, bool)},
     "--round-away must have 1 or 4 values (one per channel), not 3"),
])
def test_run_bad_new_mode_parameters(capsys, tmp_path, rounding, files, needle):
    acc = _save(tmp_path, "acc.npy", np.zeros((2, 4), dtype=np.int64))
    args = []
    for name, arr in files.items():
        args += [f"--{name.replace('_', '-')}", _save(tmp_path, f"{name}.npy", arr)]
    out = tmp_path / "y.npy"
    status, stdout, err = run(capsys, "run", "requant", "--acc", acc, "--rounding", rounding, *args,
                              "--out", out, "--sim", "icarus")
    assert status == 2, err
    assert needle in err and err.startswith("convgen: error: ") and len(err.strip().splitlines()) == 1, err
    assert stdout == "" and not out.exists()


def test_generate_writes_verilog_and_manifest(capsys, tmp_path):
    status, out, err = run(capsys, "generate", "requant", "--lanes", "2", "--groups", "3", "--rounding",
                           "tflite_single", "--out-unsigned", "-o", tmp_path)
    assert status == 0, err
    info = json.loads(out)
    assert info["module"] == "convgen_requant_tflite_single_l2_g3_ou8"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{info['module']}{ext}" for ext in (".v", ".json", ".f", ".core"))
    manifest = json.loads((tmp_path / f"{info['module']}.json").read_text())
    assert manifest["parameters"] == {"lanes": 2, "groups": 3, "rounding": "tflite_single",
                                      "out_width": 8, "out_signed": False, "mult_style": "dsp"}
    assert info["latency"] == manifest["timing"]["latency"] == 7
    assert f"module {info['module']}" in (tmp_path / f"{info['module']}.v").read_text()


# the regression's configurations (tb/requant/test_requant.py CONFIGS): channels = lanes * groups
RUN_CASES = {
    "tflite": dict(channels=12, out_signed=True),
    "tflite_single": dict(channels=8, out_signed=False),
    "onnx": dict(channels=12, out_signed=True),
    "tflite_opt": dict(channels=12, out_signed=True),
    "xnnpack": dict(channels=12, out_signed=True),
}
# as in tb/requant/test_requant.py, the new modes' Verilator builds run under -m slow
_VERILATOR_SLOW = ("tflite_opt", "xnnpack")


def _run_cases():
    for rounding in RUN_CASES:
        for simulator in SIMULATORS:
            marks = [pytest.mark.slow] if simulator == "verilator" and rounding in _VERILATOR_SLOW else []
            yield pytest.param(rounding, simulator, marks=marks, id=f"{simulator}-{rounding}")


@pytest.mark.parametrize("rounding, simulator", list(_run_cases()))
def test_run_matches_golden(capsys, tmp_path, rounding, simulator):
    case = RUN_CASES[rounding]
    c = case["channels"]
    rng = np.random.default_rng(zlib.crc32(f"{rounding}-{simulator}".encode()))
    acc = rng.integers(-(1 << 31), 1 << 31, (7, c)) >> rng.integers(0, 32, (7, c))
    bias = rng.integers(-(1 << 20), 1 << 20, c)
    out_lo, out_hi = (-128, 127) if case["out_signed"] else (0, 255)
    zp = int(rng.integers(out_lo, out_hi + 1))
    kw = dict(bias=bias, zero_point=zp, act_min=out_lo + 3, act_max=out_hi - 2, out_signed=case["out_signed"])
    args = ["--acc", _save(tmp_path, "acc.npy", acc), "--bias", _save(tmp_path, "bias.npy", bias),
            "--zero-point", zp, "--act-min", out_lo + 3, "--act-max", out_hi - 2, "--rounding", rounding,
            "--lanes", 4, "--sim", simulator]
    if not case["out_signed"]:
        args.append("--out-unsigned")
    if rounding in ("onnx", "xnnpack"):
        # xnnpack: scales up to 256 (a third of them >= 1)
        top = 0.9 if rounding == "onnx" else 255.0
        scale = np.exp(rng.uniform(np.log(1e-6), np.log(top), c)).astype(np.float32)
        args += ["--scale", _save(tmp_path, "scale.npy", scale)]
        params = RequantParams.make(rounding, c, scale=scale, **kw)
    else:
        ms = [quantize_multiplier(x, single_rounding=rounding == "tflite_single")
              for x in rng.uniform(1e-6, 0.9, c)]
        mult = np.array([m for m, _ in ms])
        shift = np.array([s for _, s in ms])
        args += ["--multiplier", _save(tmp_path, "m.npy", mult), "--shift", _save(tmp_path, "s.npy", shift)]
        if rounding == "tflite_opt":
            mult[::3] = 1 << 30          # power-of-two scales: exact ties, both roundings
            kw["round_away"] = rng.random(c) < 0.5
            args += ["--round-away", _save(tmp_path, "away.npy", kw["round_away"])]
            args[args.index("--multiplier") + 1] = _save(tmp_path, "m.npy", mult)
        params = RequantParams.make(rounding, c, multiplier=mult, shift=shift, **kw)
    out = tmp_path / "y.npy"
    status, stdout, err = run(capsys, "run", "requant", *args, "--out", out)
    assert status == 0, err
    summary = json.loads(stdout)
    assert summary["simulator"] == simulator and summary["values"] == acc.size
    y = np.load(out)
    assert y.shape == acc.shape
    assert np.array_equal(y, requantize(acc, params))
