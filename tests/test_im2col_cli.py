"""convgen run/generate im2col: RTL arrays equal the golden stream on both simulators; bad
layers exit with status 2 and one line, before any simulation."""

import json
import subprocess
import sys

import numpy as np
import pytest

from convgen.golden.im2col import STREAM_FIELDS, address_stream
from convgen.core.layer import ConvLayer
from convgen.sim.tools import SIMULATORS

# the "t4" generator of tb/im2col/test_im2col.py, so the simulation builds are shared
HW_ARGS = ["--max-h", "12", "--max-w", "12", "--max-c", "6", "--max-kernel", "5", "--max-stride", "4",
           "--max-pad", "5", "--max-dilation", "3", "--tile-rows", "4"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "convgen", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_run_im2col_matches_golden(simulator, tmp_path):
    out = tmp_path / "addr.npz"
    r = cli("run", "im2col", "--h", "6", "--w", "5", "--c", "4", "--kernel", "3,2", "--stride", "2,1",
            "--pad", "1,0,2,1", "--dilation", "1,2", "--groups", "2", *HW_ARGS, "--sim", simulator, "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["addresses_per_cycle"] == 1.0
    got = np.load(out)
    exp = address_stream(ConvLayer(6, 5, 4, 3, 2, 2, 1, 1, 0, 2, 1, 1, 2, 2), 4)
    for f in STREAM_FIELDS:
        assert np.array_equal(got[f], exp[f]), f


@pytest.mark.parametrize("args, message", [
    (["--h", "6", "--w", "5", "--c", "3", "--groups", "2"], "groups must divide c=3"),
    (["--h", "2", "--w", "5", "--c", "3", "--kernel", "3"], "output height must be >= 1"),
    (["--h", "20", "--w", "5", "--c", "3"], "--h must be an integer in 1..12"),
    (["--h", "0", "--w", "5", "--c", "3"], "--h must be an integer >= 1, not 0"),
    (["--h", "6", "--w", "5", "--c", "3", "--pad", "1,2"], "--pad"),
])
def test_run_im2col_rejects_bad_layers(args, message, tmp_path):
    r = cli("run", "im2col", *args, *HW_ARGS, "--sim", "icarus", "--out", str(tmp_path / "x.npz"))
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.npz").exists()


def test_generate_im2col(tmp_path):
    r = cli("generate", "im2col", *HW_ARGS, "-o", str(tmp_path / "gen"))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    manifest = json.loads(open(info["manifest"]).read())
    assert manifest["block"] == "im2col" and set(manifest["streams"]) == {"cfg", "o"}
    assert manifest["timing"]["setup_cycles"] == info["setup_cycles"]
    r = cli("generate", "im2col", "--tile-rows", "0", "-o", str(tmp_path / "bad"))
    assert r.returncode == 2 and "--tile-rows must be an integer in 1..64" in r.stderr
