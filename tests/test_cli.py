"""The convgen command line: errors, atomic outputs, and `run gemm` on both simulators."""

import json
import zlib
import os

import numpy as np
import pytest

from convgen.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv, needle", [
    (["--rows", "0"], "--rows must be an integer in 1..64, not 0"),
    (["--cols", "65"], "--cols must be an integer in 1..64, not 65"),
    (["--dataflow", "xs"], "--dataflow must be one of 'os', 'ws', not 'xs'"),
    (["--a-width", "0"], "--a-width must be an integer in 1..32, not 0"),
    (["--acc-width", "8"], "--acc-width must be an integer in 16..64, not 8"),
    (["--rows", "eight"], "--rows must be an integer in 1..64, not 'eight'"),
])
def test_generate_bad_parameters(capsys, tmp_path, argv, needle):
    out_dir = tmp_path / "out"
    status, _, err = run(capsys, "generate", "systolic", *argv, "-o", str(out_dir))
    assert status == 2
    assert needle in err and err.startswith("convgen: error: ") and "Traceback" not in err
    assert not out_dir.exists()
    assert os.listdir(tmp_path) == []  # no temporary directories left either


def test_generate_writes_verilog_and_manifest(capsys, tmp_path):
    status, out, _ = run(capsys, "generate", "systolic", "--rows", "2", "--cols", "3", "--dataflow", "ws",
                         "--a-unsigned", "-o", str(tmp_path))
    assert status == 0
    info = json.loads(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{info['module']}{ext}" for ext in (".v", ".json", ".f", ".core"))
    assert info["core"] == str(tmp_path / f"{info['module']}.core")
    manifest = json.loads((tmp_path / f"{info['module']}.json").read_text())
    assert manifest["parameters"]["a_signed"] is False and manifest["parameters"]["dataflow"] == "ws"
    assert info["max_k_without_overflow"] == 65793  # (2**31) // (255 * 128), the binding side


def _save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


@pytest.mark.parametrize("argv, needle", [
    (["--b", "missing.npy"], "--b: no such file"),
    (["--dataflow", "xs"], "--dataflow must be one of"),
    (["--sim", "modelsim"], "--sim must be one of 'icarus', 'verilator'"),
])
def test_run_gemm_user_errors(capsys, tmp_path, argv, needle):
    rng = np.random.default_rng(0)
    a = _save(tmp_path, "a.npy", rng.integers(-128, 128, (4, 5)))
    b = _save(tmp_path, "b.npy", rng.integers(-128, 128, (5, 3)))
    args = {"--a": a, "--b": b}
    for i in range(0, len(argv), 2):
        args[argv[i]] = argv[i + 1]
    flat = [x for kv in args.items() if kv[0] in ("--a", "--b") for x in kv]
    flat += [x for kv in args.items() if kv[0] not in ("--a", "--b") for x in kv]
    out = tmp_path / "c.npy"
    status, _, err = run(capsys, "run", "gemm", *flat, "--out", str(out), "--rows", "2", "--cols", "2")
    assert status == 2 and needle in err, err
    assert not out.exists()


def test_run_gemm_operand_checks(capsys, tmp_path):
    rng = np.random.default_rng(1)
    a = _save(tmp_path, "a.npy", rng.integers(-128, 128, (4, 5)))
    out = tmp_path / "c.npy"
    for b_arr, needle in [(rng.integers(-128, 128, (4, 3)), "inner dimensions must match"),
                          (np.full((5, 3), 200), "b values must be in -128..127"),
                          (rng.random((5, 3)), "b must hold integers")]:
        b = _save(tmp_path, "b.npy", b_arr)
        status, _, err = run(capsys, "run", "gemm", "--a", a, "--b", b, "--out", str(out))
        assert status == 2 and needle in err, err
        assert not out.exists()


def test_run_gemm_refuses_possible_overflow(capsys, tmp_path):
    a = _save(tmp_path, "a.npy", np.full((2, 40), -128))    # acc_width 20: max_k = 31
    b = _save(tmp_path, "b.npy", np.full((40, 2), -128))
    out = tmp_path / "c.npy"
    status, _, err = run(capsys, "run", "gemm", "--a", a, "--b", b, "--out", str(out), "--acc-width", "20",
                         "--rows", "2", "--cols", "2", "--sim", "icarus")
    assert status == 2 and "K must be in 1..31" in err and "--allow-wrap" in err
    assert not out.exists()


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
@pytest.mark.parametrize("dataflow, signs", [("os", ("--a-signed", "--b-signed")),
                                             ("ws", ("--a-unsigned", "--b-signed"))])
def test_run_gemm_matches_numpy(capsys, tmp_path, sim, dataflow, signs):
    """Random shapes that do not divide the 3x4 array, results against numpy int64 matmul."""
    rng = np.random.default_rng(zlib.crc32(f"{sim}-{dataflow}".encode()))  # reproducible
    m, k, n = (int(x) for x in rng.integers(1, 12, size=3))
    a_lo = -128 if signs[0] == "--a-signed" else 0
    a_np = rng.integers(a_lo, a_lo + 256, (m, k))
    b_np = rng.integers(-128, 128, (k, n))
    a, b = _save(tmp_path, "a.npy", a_np), _save(tmp_path, "b.npy", b_np)
    out = tmp_path / "c.npy"
    status, stdout, err = run(capsys, "run", "gemm", "--a", a, "--b", b, "--out", str(out), "--rows", "3",
                              "--cols", "4", "--dataflow", dataflow, *signs, "--sim", sim)
    assert status == 0, err
    summary = json.loads(stdout)
    c = np.load(out)
    assert c.shape == (m, n)
    assert np.array_equal(c, a_np.astype(np.int64) @ b_np.astype(np.int64))
    assert summary["cycles"] >= summary["ideal_cycles"] > 0


def test_run_gemm_fast_ecp5_pe(capsys, tmp_path):
    """The fast ECP5 PE (MULT18X18D with every register, a fabric register, multiplier latency 4)
    through `run gemm` on Icarus: two tiles of a 2x3 array (M=3 does not divide the rows), results
    against numpy int64 matmul. run_gemm once lacked pipeline_mult/dsp_rows (a TypeError)."""
    rng = np.random.default_rng(14)
    a_np = rng.integers(-128, 128, (3, 5))
    b_np = rng.integers(-128, 128, (5, 2))
    a, b = _save(tmp_path, "a.npy", a_np), _save(tmp_path, "b.npy", b_np)
    out = tmp_path / "c.npy"
    status, stdout, err = run(capsys, "run", "gemm", "--a", a, "--b", b, "--out", str(out), "--rows", "2",
                              "--cols", "3", "--dsp", "ecp5", "--pipeline-operands", "--pipeline-mult", "2",
                              "--sim", "icarus")
    assert status == 0, err
    assert json.loads(stdout)["tiles"] == 2
    assert np.array_equal(np.load(out), a_np.astype(np.int64) @ b_np.astype(np.int64))


def test_run_gemm_allow_wrap(capsys, tmp_path):
    """K past the limit with --allow-wrap: results wrap modulo 2**20 like the hardware."""
    k = 40
    a_np = np.full((2, k), -128)
    b_np = np.full((k, 2), -128)
    a, b = _save(tmp_path, "a.npy", a_np), _save(tmp_path, "b.npy", b_np)
    out = tmp_path / "c.npy"
    status, _, err = run(capsys, "run", "gemm", "--a", a, "--b", b, "--out", str(out), "--acc-width", "20",
                         "--rows", "2", "--cols", "2", "--sim", "icarus", "--allow-wrap")
    assert status == 0, err
    exact = k * 128 * 128                      # 655360 does not fit in int20
    wrapped = (exact + 2**19) % 2**20 - 2**19  # two's complement wrap, computed independently
    assert np.all(np.load(out) == wrapped)


def test_doctor(capsys):
    status, out, _ = run(capsys, "doctor")
    assert status == 0
    assert "verilator  ok" in out and "icarus     ok" in out and "yosys      ok" in out
