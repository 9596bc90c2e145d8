"""``convgen export-test``: a standalone HDL test of one layer that reruns without Python.

The exported directory is run by its own shell scripts on Icarus and on Verilator, and by
FuseSoC through its ``<module>_test.core`` (targets ``sim_icarus``, ``sim_verilator``); the
testbench compares the engine's output memory with ``y_expected.hex``. The expected words are
checked here against ONNX Runtime's QLinearConv of the same layer (an independent oracle), an
engine with an injected fault and a wrong expected word must make the script and the FuseSoC
run fail, and bad options write nothing. One export (``exported``) serves every test that does
not change the engine."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="module")
def exported(layer_npz, tmp_path_factory):
    """One export of the layer; a test that changes a file works on a copy (``_copy``)."""
    out = tmp_path_factory.mktemp("exported") / "tb"
    assert _export(layer_npz, out) == 0
    return out


def _copy(exported, tmp_path):
    out = tmp_path / "tb"
    shutil.copytree(exported, out)
    return out


def _flip_expected_word(out, i=3):
    """One output's low bit in ``y_expected.hex`` word ``i``."""
    words = (out / "y_expected.hex").read_text().split()
    words[i] = format(int(words[i], 16) ^ 0x01, f"0{len(words[i])}x")
    (out / "y_expected.hex").write_text("\n".join(words) + "\n")


def _export(layer_npz, out, *extra):
    return main(["export-test", "--layer", str(layer_npz), "--out", str(out), "--rows", "2", "--cols", "4",
                 "--stall", "15", "--jitter", "2", *extra])


def _run(out, sim):
    return subprocess.run(["sh", str(out / f"run_{sim}.sh")], capture_output=True, text=True,
                          env=dict(os.environ, **simulator_env(sim)))


def _hex(path):
    return [int(line, 16) for line in path.read_text().split()]


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_exported_layer_passes_on_its_own(layer_npz, exported, tmp_path, sim):
    out = _copy(exported, tmp_path)
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


def test_a_wrong_expected_word_fails(exported, tmp_path):
    out = _copy(exported, tmp_path)
    _flip_expected_word(out)
    p = _run(out, "icarus")
    assert p.returncode == 1 and "CHECK FAIL: 1 of" in p.stdout and "first at word 3" in p.stdout, p.stdout


# -- the exported core through FuseSoC and Edalize ---------------------------------------------
FUSESOC = Path(sys.executable).parent / "fusesoc"


def _vlnv(out):
    core = next(out.glob("*_test.core"))
    return next(line.split(": ", 1)[1] for line in core.read_text().splitlines() if line.startswith("name:"))


def _fusesoc(out, work, *args, sim=None):
    """``fusesoc --cores-root <out> ...`` with FuseSoC's cache and config inside ``work``."""
    env = dict(os.environ, **(simulator_env(sim) if sim else {}))
    env.update(XDG_CACHE_HOME=str(work / "cache"), XDG_CONFIG_HOME=str(work / "config"),
               XDG_DATA_HOME=str(work / "data"))
    return subprocess.run([str(FUSESOC), "--cores-root", str(out), *args], cwd=work, capture_output=True,
                          text=True, env=env)


def _fusesoc_run(out, work, target, sim, *extra):
    return _fusesoc(out, work, "run", "--build-root", str(work / "build"), "--target", target, *extra, _vlnv(out),
                    sim=sim)


def test_core_show_lists_the_sim_targets(exported, tmp_path):
    p = _fusesoc(exported, tmp_path, "core", "show", _vlnv(exported))
    assert p.returncode == 0, p.stdout + p.stderr
    for target in ("default", "sim_icarus", "sim_verilator"):
        assert f"\n{target}" in p.stdout, p.stdout


def _passes_then_fails(exported, tmp_path, target: str, tool: str, *, fatal: str) -> str:
    """``fusesoc run`` of ``target`` passes the check on the export and fails it (non-zero
    exit, ``fatal`` in the log) on a copy with one expected word flipped; returns the passing
    run's log."""
    p = _fusesoc_run(exported, tmp_path, target, tool)
    log = p.stdout + p.stderr
    assert p.returncode == 0 and "CHECK PASS: 24 output words" in log, log[-3000:]
    bad = tmp_path / "bad"
    bad.mkdir()
    out = _copy(exported, bad)
    _flip_expected_word(out)
    p = _fusesoc_run(out, bad, target, tool)
    bad_log = p.stdout + p.stderr
    assert p.returncode != 0 and "CHECK FAIL: 1 of 24" in bad_log and fatal in bad_log, bad_log[-3000:]
    return log


def test_fusesoc_icarus_target_runs_the_layer(exported, tmp_path):
    """Edalize runs vvp in its build directory: the copied $readmemh images are found, the
    check passes and the run exits 0; a wrong expected word makes the run itself fail."""
    log = _passes_then_fails(exported, tmp_path, "sim_icarus", "icarus", fatal="FATAL")
    assert "+stall=15" in log and "+jitter=2" in log              # the export's memory timing


@pytest.mark.slow
def test_fusesoc_verilator_target_runs_the_layer(exported, tmp_path):
    """Under -m slow (two Verilator builds of the engine through Edalize, about 20 s each on 2
    cores): the C++ main toggles the clock, the check passes; a wrong expected word fails the
    run through $fatal."""
    _passes_then_fails(exported, tmp_path, "sim_verilator", "verilator", fatal="%Fatal")


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
