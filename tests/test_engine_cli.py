"""``convgen generate engine`` and ``convgen run conv``: one quantized layer from an .npz on the
ConvEngine RTL (Verilator, free-running), checked against independent oracles: ONNX Runtime's
QLinearConv for ONNX layers and LiteRT's reference kernels for TFLite CONV_2D and
DEPTHWISE_CONV_2D layers (NHWC/OHWI with ``--layout nhwc``, multiplier/shift with
``--rounding tflite``). Bad inputs: one line naming the flag, status 2, nothing written.

The layers are small and chosen so that each rounding mode needs one engine build (the
engine's maxima are rounded up to powers of two, ``sim.engine.engine_config_for``)."""

import json
import os

import numpy as np
import pytest

from convgen.cli import main
from convgen.core.layer import ConvLayer
from convgen.golden.engine import random_qlinearconv_arrays
from convgen.golden.ort import qlinear_conv

ROWS_COLS = ["--rows", "4", "--cols", "4"]

ONNX_LAYERS = {
    "3x3_pad1_int8": (ConvLayer.square(8, 8, 16, 3, 1, 1, c_out=16), True),
    "1x1_s2_uint8_cout6": (ConvLayer.square(9, 7, 8, 1, 2, 0, c_out=6), False),
    "depthwise_s2": (ConvLayer.square(9, 9, 12, 3, 2, 1, groups=12, c_out=12), True),
    "7x7_s2_c3_asym": (ConvLayer.square(12, 11, 3, 7, 2, (3, 2, 2, 3), c_out=8), False),
}


def _run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", list(ONNX_LAYERS))
def test_run_conv_equals_onnxruntime(name, tmp_path, capsys):
    layer, x_signed = ONNX_LAYERS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    arrays = random_qlinearconv_arrays(rng, layer, x_signed=x_signed, per_channel=name != "depthwise_s2")
    np.savez(tmp_path / "layer.npz", **arrays)
    status, out, err = _run(["run", "conv", "--layer", str(tmp_path / "layer.npz"), "--out", str(tmp_path / "y.npy"),
                             *ROWS_COLS], capsys)
    assert status == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    y = np.load(tmp_path / "y.npy")
    want = qlinear_conv(arrays)
    assert y.dtype == want.dtype and y.shape == want.shape
    np.testing.assert_array_equal(y, want)
    assert len(np.unique(want)) > 20                      # not saturated: the comparison means something
    assert summary["macs"] == layer.macs
    if summary["formula_exact"]:
        assert summary["cycles"] == summary["formula_cycles"]
    else:
        assert summary["cycles"] >= summary["formula_cycles"]
    assert "building" in err and "simulating" in err      # progress on stderr


def test_run_conv_with_memory_stalls_and_nhwc(tmp_path, capsys):
    """The same layer under random stalls and latency, given in NHWC/OHWI: the same y (NHWC)."""
    layer, _ = ONNX_LAYERS["3x3_pad1_int8"]
    arrays = random_qlinearconv_arrays(np.random.default_rng(7), layer)
    want = qlinear_conv(arrays).transpose(0, 2, 3, 1)
    nhwc = dict(arrays, x=arrays["x"].transpose(0, 2, 3, 1), w=arrays["w"].transpose(0, 2, 3, 1))
    np.savez(tmp_path / "layer.npz", **nhwc)
    status, out, err = _run(["run", "conv", "--layer", str(tmp_path / "layer.npz"), "--out", str(tmp_path / "y.npy"),
                             "--layout", "nhwc", "--stall", "30", "--latency", "4", "--jitter", "6", "--seed", "3",
                             "--quiet", *ROWS_COLS], capsys)
    assert status == 0, err
    assert err == ""
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["formula_exact"] is False and summary["cycles"] > summary["formula_cycles"]


def _tflite_layer(fx):
    """A TFLite fixture as ``run conv --layout nhwc --rounding tflite`` input (multiplier/shift
    as TFLite's reference path derives them) and the layer it describes."""
    from convgen.golden.tflite_fixtures import _pads, path_params

    p = path_params(fx, "ref")
    _, h, w, cin = fx.x.shape
    kh, kw = fx.w.shape[1:3]
    _, pt, pb = _pads(h, kh, fx.stride, fx.padding)
    _, pl, pr = _pads(w, kw, fx.stride, fx.padding)
    weights = fx.w if fx.op == "conv" else fx.w.transpose(3, 1, 2, 0)       # depthwise: [1,kh,kw,C] -> OHWI
    return {"x": fx.x, "w": weights, "x_zero_point": np.int8(fx.in_zp), "y_zero_point": np.int8(fx.out_zp),
            "B": fx.bias, "multiplier": p.multiplier, "shift": p.shift, "act_min": p.act_min, "act_max": p.act_max,
            "strides": np.array([fx.stride, fx.stride]), "pads": np.array([pt, pl, pb, pr]),
            "group": np.array(1 if fx.op == "conv" else cin)}


def test_run_conv_tflite_equals_litert_reference(tmp_path, capsys):
    """CONV_2D and DEPTHWISE_CONV_2D with TFLite's double rounding, against LiteRT's reference
    kernels (BUILTIN_REF: the path whose rounding the ``tflite`` mode is)."""
    from convgen.golden.tflite_fixtures import build_model, random_fixtures, run_path

    fixtures = random_fixtures(6, seed=11)
    assert {fx.op for fx in fixtures} == {"conv", "depthwise"}
    for i, fx in enumerate(fixtures):
        want = run_path(build_model(fx), fx.x, "ref")
        np.savez(tmp_path / f"l{i}.npz", **_tflite_layer(fx))
        status, out, err = _run(["run", "conv", "--layer", str(tmp_path / f"l{i}.npz"), "--out",
                                 str(tmp_path / f"y{i}.npy"), "--layout", "nhwc", "--rounding", "tflite", "--quiet",
                                 *ROWS_COLS], capsys)
        assert status == 0, (fx.name, err)
        np.testing.assert_array_equal(np.load(tmp_path / f"y{i}.npy"), want, err_msg=fx.name)


@pytest.mark.parametrize("bare", [False, True])
def test_generate_engine(bare, tmp_path, capsys):
    """By default the engine with on-chip buffers and a host bus; --bare the engine alone."""
    status, out, err = _run(["generate", "engine", "--rows", "2", "--cols", "3", "--max-h", "16", "--max-w", "16",
                             "--max-tiles", "4", "--x-words", "256", "-o", str(tmp_path / "out"),
                             *(["--bare"] if bare else [])], capsys)
    assert status == 0, err
    info = json.loads(out)
    assert info["buffers"] is (not bare)
    man = json.loads((tmp_path / "out" / f"{info['module']}.json").read_text())
    text = (tmp_path / "out" / f"{info['module']}.v").read_text()
    assert f"module {info['module']}(" in text or f"module {info['module']} (" in text
    assert man["block"] == "engine"
    assert {"memory_map", "timing", "engine"} <= set(man)
    ports = json.dumps(man)
    for field in ("x_zero_point", "w_base", "pad_left"):      # the descriptor layout
        assert field in ports
    if bare:
        assert "x_req" in ports and "act_max" in ports and "host_addr" not in ports
    else:
        assert man["buffers"]["x"]["words"] == 256 and "host_addr" in ports and "x_req" not in ports


@pytest.mark.parametrize("argv, message", [
    (["generate", "engine", "--rows", "0", "-o", "{tmp}/g"], "--rows must be an integer in 1..64, not 0"),
    (["generate", "engine", "--rounding", "fast", "-o", "{tmp}/g"], "--rounding must be one of"),
    (["generate", "engine", "--x-words", "100", "-o", "{tmp}/g"], "--x-words must be a power of two in 16..65536"),
    (["synth", "engine", "--spram", "xy", "--target", "ecp5"], "--spram puts buffers in iCE40 UltraPlus SPRAM"),
    (["synth", "engine", "--spram", "xy", "--bare", "--target", "ice40"], "cannot go with --bare"),
    (["run", "conv", "--layer", "{tmp}/missing.npz", "--out", "{tmp}/y.npy"], "--layer: no such file"),
    (["run", "conv", "--layer", "{tmp}/one.npy", "--out", "{tmp}/y.npy"], "--layer: "),
    (["run", "conv", "--layer", "{tmp}/badkey.npz", "--out", "{tmp}/y.npy"], "--layer: unknown array 'bias'"),
    (["run", "conv", "--layer", "{tmp}/good.npz", "--out", "{tmp}"], "--out: "),
    (["run", "conv", "--layer", "{tmp}/good.npz", "--out", "{tmp}/nodir/y.npy"], "--out: the directory"),
    (["run", "conv", "--layer", "{tmp}/good.npz", "--out", "{tmp}/y.npy", "--stall", "100"],
     "--stall must be an integer in 0..90, not 100"),
    (["run", "conv", "--layer", "{tmp}/good.npz", "--out", "{tmp}/y.npy", "--max-h", "8"], "unrecognized arguments"),
    (["run", "conv", "--layer", "{tmp}/mult.npz", "--out", "{tmp}/y.npy"], "--layer: multiplier/shift arrays need"),
    (["run", "conv", "--layer", "{tmp}/batch2.npz", "--out", "{tmp}/y.npy"], "--layer: batch must be 1"),
    (["run", "conv", "--layer", "{tmp}/x300.npz", "--out", "{tmp}/y.npy"], "--layer: "),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    good = random_qlinearconv_arrays(np.random.default_rng(0), ConvLayer.square(4, 4, 4, 3, 1, 1, c_out=4))
    np.savez(tmp_path / "good.npz", **good)
    np.savez(tmp_path / "badkey.npz", **good, bias=np.zeros(4, np.int32))
    np.savez(tmp_path / "mult.npz", **good, multiplier=np.ones(4, np.int32), shift=np.zeros(4, np.int32))
    np.savez(tmp_path / "batch2.npz", **dict(good, x=np.concatenate([good["x"]] * 2)))
    np.savez(tmp_path / "x300.npz", **dict(good, x=good["x"].astype(np.int32) + 300))
    np.save(tmp_path / "one.npy", np.zeros(3))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SystemExit) if "unrecognized" in message else _nothing() as e:
        status = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    status = e.value.code if "unrecognized" in message else status
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and message in lines[0], err
    assert sorted(os.listdir(tmp_path)) == before


class _nothing:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_demo_checks_its_options_first(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for argv, needle in [(["--size", "0"], "--size must be an integer in 1..56, not 0"),
                         (["--size", "57"], "--size must be an integer in 1..56, not 57"),
                         (["--out", str(tmp_path / "file")], "--out: "),
                         (["--cols", "65"], "--cols must be an integer in 1..64, not 65")]:
        assert main(["demo", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["file"]
