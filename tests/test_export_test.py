"""``convgen export-test``: a standalone HDL test of one layer that reruns without Python.

The exported directory is run by its own shell scripts on Icarus and on Verilator; the
testbench compares the engine's output memory with ``y_expected.hex``. The expected words are
checked here against ONNX Runtime's QLinearConv of the same layer (an independent oracle), an
engine with an injected fault must make the script fail, and bad options write nothing."""

import os
import subprocess

import numpy as np
import pytest

from convgen.cli import main
from convgen.core.layer import ConvLayer
from convgen.golden.engine import quant_conv_from_arrays, random_qlinearconv_arrays
from convgen.golden.ort import qlinear_conv
from convgen.sim.engine import expected_words, prepare_conv
from convgen.sim.tools import simulator_env

#: strided, asymmetric pads, C_out not a multiple of the 4 columns
LAYER = ConvLayer.square(7, 6, 5, 3, 2, (1, 0, 1, 2), c_out=6)


@pytest.fixture(scope="module")
def layer_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("layer") / "layer.npz"
    np.savez(path, **random_qlinearconv_arrays(np.random.default_rng(11), LAYER))
    return path


def _export(layer_npz, out, *extra):
    return main(["export-test", "--layer", str(layer_npz), "--out", str(out), "--rows", "2", "--cols", "4",
                 "--stall", "15", "--jitter", "2", *extra])


def _run(out, sim):
    return subprocess.run(["sh", str(out / f"run_{sim}.sh")], capture_output=True, text=True,
                          env=dict(os.environ, **simulator_env(sim)))


def _hex(path):
    return [int(line, 16) for line in path.read_text().split()]


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_exported_layer_passes_on_its_own(layer_npz, tmp_path, sim, capsys):
    out = tmp_path / "tb"
    assert _export(layer_npz, out) == 0
    capsys.readouterr()
    # the expected output is ORT's, packed as the engine writes it
    arrays = dict(np.load(layer_npz))
    cfg, job, _ = prepare_conv(quant_conv_from_arrays(arrays), rows=2, cols=4)
    want, mask = expected_words(qlinear_conv(arrays)[0].transpose(1, 2, 0), job.plan)
    assert _hex(out / "y_expected.hex") == want and _hex(out / "y_mask.hex") == mask
    p = _run(out, sim)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"CHECK PASS: {len(want)} output words" in p.stdout


def test_an_engine_fault_makes_the_exported_test_fail(layer_npz, tmp_path, capsys):
    out = tmp_path / "tb"
    assert _export(layer_npz, out, "--debug-fault", "pad_value") == 0
    capsys.readouterr()
    p = _run(out, "icarus")
    assert p.returncode == 1 and "CHECK FAIL:" in p.stdout and "output words differ" in p.stdout, p.stdout


def test_a_wrong_expected_word_fails(layer_npz, tmp_path, capsys):
    out = tmp_path / "tb"
    assert _export(layer_npz, out) == 0
    capsys.readouterr()
    words = (out / "y_expected.hex").read_text().split()
    words[3] = format(int(words[3], 16) ^ 0x01, f"0{len(words[3])}x")       # one output's low bit
    (out / "y_expected.hex").write_text("\n".join(words) + "\n")
    p = _run(out, "icarus")
    assert p.returncode == 1 and "CHECK FAIL: 1 of" in p.stdout and "first at word 3" in p.stdout, p.stdout


@pytest.mark.parametrize("args, flag", [
    (["--rows", "0"], "--rows"),
    (["--stall", "95"], "--stall"),
    (["--layout", "nhcw"], "--layout"),
])
def test_bad_options_write_nothing(layer_npz, tmp_path, capsys, args, flag):
    out = tmp_path / "tb"
    assert _export(layer_npz, out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"convgen: error: {flag}") and err.count("\n") == 1, err
    assert not out.exists()


def test_out_is_a_file(layer_npz, tmp_path, capsys):
    out = tmp_path / "tb"
    out.write_text("keep me")
    assert _export(layer_npz, out) == 2
    assert "--out" in capsys.readouterr().err and out.read_text() == "keep me"
