"""``--waves FILE`` and ``--quiet`` on every ``convgen run`` verb, and the progress display
(issue 15, item 4).

- ``--waves``: the run writes its waveform to FILE and names it on stderr; the file holds the
  design's signals (read from the VCD header, or from the FST hierarchy block). gemm and conv on
  both simulators (conv: FST from a tracing Verilator build of the engine, VCD from Icarus),
  im2col, requant and winograd-conv on Icarus.
- A bad ``--waves`` (a directory, a missing directory, the suffix of the other format, the same
  file as ``--out``): one line naming ``--waves``, status 2, nothing written, before any work.
- ``--quiet``: nothing on stderr on success. stdout is exactly one JSON line, with the progress
  display on a terminal (a pty) and without it.
- ``commands.progress.Steps``: a spinner line per step on a terminal, plain lines otherwise,
  nothing when quiet.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from convgen.cli import main

CONVGEN = Path(sys.executable).with_name("convgen")
CLI = [str(CONVGEN)] if CONVGEN.exists() else [sys.executable, "-m", "convgen"]


# ---- reading a waveform's signal names ------------------------------------------------------------
def _lz4(src: bytes, size: int) -> bytes:
    """LZ4 block decompression through liblz4 (Verilator's FST writer links it, so it is there
    wherever Verilator writes FST)."""
    lib = ctypes.CDLL(ctypes.util.find_library("lz4") or "liblz4.so.1")
    out = ctypes.create_string_buffer(size)
    got = lib.LZ4_decompress_safe(src, out, len(src), size)
    assert got == size, f"LZ4 block: {got} bytes, want {size}"
    return out.raw


def signal_names(path: Path) -> set[str]:
    """The scope and variable names of a VCD (its header) or an FST file (its hierarchy block:
    gzip, LZ4 or double LZ4 compressed, as GTKWave's fstapi writes them)."""
    data = path.read_bytes()
    if data.startswith(b"$") or data[:1].isspace():
        header = data.split(b"$enddefinitions", 1)[0].decode()
        return set(re.findall(r"\$(?:var\s+\S+\s+\d+\s+\S+|scope\s+\S+)\s+([^\s\[]+)", header))
    i = 0
    while i < len(data):
        kind, length = data[i], struct.unpack(">Q", data[i + 1:i + 9])[0]
        body = data[i + 9:i + 1 + length]
        i += 1 + length
        size = struct.unpack(">Q", body[:8])[0]
        if kind == 4:          # FST_BL_HIER: gzip
            raw = zlib.decompress(body[8:], 47)
        elif kind == 6:        # FST_BL_HIER_LZ4
            raw = _lz4(body[8:], size)
        elif kind == 7:        # FST_BL_HIER_LZ4DUO
            first = struct.unpack(">Q", body[8:16])[0]
            raw = _lz4(_lz4(body[16:], first), size)
        else:
            continue
        return {s.decode() for s in re.findall(rb"[A-Za-z_][A-Za-z0-9_$]*", raw)}
    raise AssertionError(f"{path}: no FST hierarchy block")


# ---- inputs ----------------------------------------------------------------------------------------
@pytest.fixture
def inp(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "A.npy", rng.integers(-128, 128, (3, 5)).astype(np.int8))
    np.save(d / "B.npy", rng.integers(-128, 128, (5, 2)).astype(np.int8))
    np.save(d / "acc.npy", rng.integers(-1000, 1000, (2, 3)).astype(np.int32))
    np.save(d / "scale.npy", np.full(3, 0.01, np.float32))
    np.save(d / "x.npy", rng.integers(-128, 128, (2, 4, 4)).astype(np.int8))
    np.save(d / "w.npy", rng.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8))
    from convgen.core.layer import ConvLayer
    from convgen.golden.engine import random_qlinearconv_arrays

    np.savez(d / "layer.npz", **random_qlinearconv_arrays(rng, ConvLayer.square(4, 4, 4, 3, 1, 1, c_out=4)))
    return d


RUNS = {
    "gemm": lambda i: ["run", "gemm", "--a", i / "A.npy", "--b", i / "B.npy", "--rows", "2", "--cols", "2"],
    "im2col": lambda i: ["run", "im2col", "--h", "4", "--w", "4", "--c", "2"],
    "requant": lambda i: ["run", "requant", "--acc", i / "acc.npy", "--scale", i / "scale.npy", "--rounding", "onnx"],
    "winograd-conv": lambda i: ["run", "winograd-conv", "--x", i / "x.npy", "--w", i / "w.npy"],
    "conv": lambda i: ["run", "conv", "--layer", i / "layer.npz", "--rows", "2", "--cols", "2"],
}
#: signals each design must show in its waveform (ports of the block; the engine's testbench and ports)
SIGNALS = {
    "gemm": {"clk", "a__valid", "b__payload", "o__ready"},
    "im2col": {"clk", "cfg__valid", "o__payload"},
    "requant": {"clk", "p__valid", "i__payload", "o__valid"},
    "winograd-conv": {"clk", "i__valid", "o__payload"},
    "conv": {"clk", "dut", "mx", "desc__valid", "x_req__valid", "y_req__payload", "busy"},
}
#: the format each run writes per simulator (the --waves help says the same)
FORMAT = {job: {"verilator": "fst", "icarus": "vcd" if job == "conv" else "fst"} for job in RUNS}


def _out(job):
    return "y.npz" if job == "im2col" else "y.npy"


def _cli(capsys, argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _one_json_line(out: str) -> dict:
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


# ---- --waves on every run verb -------------------------------------------------------------------
WAVE_RUNS = [("gemm", "verilator", False), ("gemm", "icarus", True), ("conv", "verilator", True),
             ("conv", "icarus", False), ("im2col", "icarus", True), ("requant", "icarus", False),
             ("winograd-conv", "icarus", True)]
#: the engine's tracing Verilator build takes about 2 minutes cold: -m slow (gemm covers Verilator FST)
SLOW_WAVE_RUNS = {("conv", "verilator", True)}


@pytest.mark.parametrize("job, sim, quiet", [
    pytest.param(*r, marks=[pytest.mark.slow] if r in SLOW_WAVE_RUNS else [],
                 id=f"{r[0]}-{r[1]}{'-quiet' if r[2] else ''}") for r in WAVE_RUNS])
def test_waves(job, sim, quiet, inp, tmp_path, capsys):
    fmt = FORMAT[job][sim]
    waves = tmp_path / f"run.{fmt}"
    status, out, err = _cli(capsys, [*RUNS[job](inp), "--sim", sim, "--out", tmp_path / _out(job),
                                     "--waves", waves, *(["--quiet"] if quiet else [])])
    assert status == 0, err
    summary = _one_json_line(out)
    assert summary["waves"] == str(waves) and summary["waves_format"] == fmt
    if quiet:
        assert err == ""
    else:
        assert err.strip().splitlines()[-1] == f"convgen: waveform ({fmt.upper()}) written to {waves}", err
        assert "building" in err and "simulating" in err
    assert waves.stat().st_size > 0
    if fmt == "fst":
        assert waves.read_bytes()[:1] == b"\x00"          # an FST header block, not text
    else:
        assert waves.read_bytes().lstrip().startswith(b"$date")
    names = signal_names(waves)
    assert SIGNALS[job] <= names, sorted(SIGNALS[job] - names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary file left


# ---- bad --waves paths -----------------------------------------------------------------------------
BAD_WAVES = {
    "directory": (lambda r, fmt: r / "outdir", "is a directory; give a file name such as"),
    "missing_directory": (lambda r, fmt: r / "nowhere" / f"w.{fmt}", "does not exist"),
    "other_format": (lambda r, fmt: r / f"w.{'vcd' if fmt == 'fst' else 'fst'}", "name the file"),
    "same_as_out": (lambda r, fmt: r / "SAME", "is also --out"),
}


@pytest.fixture
def no_work(monkeypatch):
    """Any build or simulation fails the test: --waves is checked first."""
    import convgen.sim.engine
    import convgen.sim.im2col
    import convgen.sim.requant
    import convgen.sim.systolic
    import convgen.sim.winograd

    def refuse(*a, **k):
        raise AssertionError("work started before --waves was checked")

    for mod, name in [(convgen.sim.systolic, "run_gemm"), (convgen.sim.im2col, "run_im2col"),
                      (convgen.sim.requant, "run_requant"), (convgen.sim.winograd, "run_winograd_conv"),
                      (convgen.sim.engine, "run_conv"), (convgen.sim.engine, "build_engine")]:
        monkeypatch.setattr(mod, name, refuse)


@pytest.mark.parametrize("case", list(BAD_WAVES))
@pytest.mark.parametrize("job", list(RUNS))
def test_bad_waves_path(job, case, inp, tmp_path, capsys, no_work):
    root = tmp_path / "r"
    (root / "outdir").mkdir(parents=True)
    sim = "icarus" if case == "other_format" and job == "conv" else "verilator"
    path, message = BAD_WAVES[case]
    waves = path(root, FORMAT[job][sim])
    out = waves if case == "same_as_out" else root / _out(job)
    before = sorted(root.rglob("*"))
    status, stdout, err = _cli(capsys, [*RUNS[job](inp), "--sim", sim, "--out", out, "--waves", waves])
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convgen: error: --waves: ") and message in lines[0], err
    assert stdout == "" and sorted(root.rglob("*")) == before


def test_every_run_verb_has_waves_and_quiet(capsys):
    for job in RUNS:
        with pytest.raises(SystemExit):
            main(["run", job, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--waves FILE" in text and "--quiet" in text, job
        fmts = FORMAT[job]
        want = ("FST on both simulators" if len(set(fmts.values())) == 1 else
                "FST from Verilator, VCD from Icarus")
        assert want in text, (job, text)


# ---- progress --------------------------------------------------------------------------------------
def test_steps_on_a_terminal():
    from convgen.commands.progress import Steps

    buf = io.StringIO()
    with Steps(stream=buf, tty=True, delay=0.1) as steps:
        steps("building a thing")
        time.sleep(0.5)
        steps.detail("cycle 50000")
        time.sleep(0.3)
        steps("cached, too short to show")
        steps.message("done")
    text = buf.getvalue()
    assert "\rconvgen: 00:00 | building a thing" in text and "\rconvgen: 00:00 / building a thing" in text
    assert "\rconvgen: 00:00   building a thing, cycle 50000\n" in text   # the step's line stays, with its time
    assert "too short" not in text                                         # shown only after `delay`
    assert text.endswith("\nconvgen: done\n")


def test_steps_cleared_on_failure():
    from convgen.commands.progress import Steps

    buf = io.StringIO()
    with pytest.raises(KeyboardInterrupt), Steps(stream=buf, tty=True, delay=0.05) as steps:
        steps("simulating")
        time.sleep(0.3)
        raise KeyboardInterrupt
    assert not buf.getvalue().endswith("\n")                    # the step's line was cleared, not left


def test_steps_plain_and_quiet():
    from convgen.commands.progress import Steps

    buf = io.StringIO()
    with Steps(stream=buf, tty=False) as steps:
        steps("building")
        steps.detail("not shown without details")
        steps("simulating")
    assert buf.getvalue() == "convgen: building\nconvgen: simulating\n"
    buf = io.StringIO()
    with Steps(stream=buf, tty=False, details=True) as steps:
        steps("simulating")
        steps.detail("cycle 50000")
    assert buf.getvalue() == "convgen: simulating\nconvgen: cycle 50000\n"
    buf = io.StringIO()
    with Steps(stream=buf, tty=True, quiet=True) as steps:
        steps("building")
        steps.message("waveform")
    assert buf.getvalue() == ""


def test_quiet_and_plain_progress(inp, tmp_path, capsys):
    """Without a terminal: plain step lines on stderr, or nothing with --quiet; stdout one JSON line."""
    argv = [*RUNS["gemm"](inp), "--sim", "verilator", "--out", tmp_path / "C.npy"]
    status, out, err = _cli(capsys, argv)
    assert status == 0, err
    _one_json_line(out)
    assert [line.split(" ")[1] for line in err.splitlines()] == ["building", "simulating"], err
    status, out, err = _cli(capsys, [*argv, "--quiet", "--progress"])
    assert status == 0 and err == ""
    _one_json_line(out)


def test_progress_on_a_terminal_stays_off_stdout(inp, tmp_path):
    """stderr a terminal (a pty), stdout a pipe: the spinner on the terminal, exactly one JSON line
    on stdout."""
    master, slave = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    argv = [str(a) for a in [*RUNS["winograd-conv"](inp), "--sim", "verilator", "--out", tmp_path / "y.npy"]]
    try:
        p = subprocess.run([*CLI, *argv], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                           text=True, timeout=300)
    finally:
        os.close(slave)
    reader.join(timeout=5)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert p.returncode == 0, terminal
    _one_json_line(p.stdout)
    assert "convgen: " not in p.stdout and "\r" not in p.stdout
    assert "simulating" in terminal, terminal


def test_engine_tracing_testbench_only_adds_the_dump():
    """The tracing Verilator build's testbench is the plain one plus the ``+fst`` dump, so the
    plain text (and every cached plain build) is unchanged; the tracing build has its own main."""
    from convgen.hdl.engine import EngineConfig
    from convgen.sim import engine as se

    cfg = EngineConfig(rows=2, cols=2)
    plain = se.testbench_verilog(cfg, "m", 1 << 16)
    traced = se.testbench_verilog(cfg, "m", 1 << 16, trace=True)
    dump = se.TRACE_DECL.replace("TB_TOP", se.TB_TOP)
    assert dump in traced and traced.replace(dump, "") == plain
    assert '$test$plusargs("fst")' in dump and "$dumpvars" not in plain.split(f"module {se.TB_TOP}_clock")[0]
    assert "traceEverOn" in se.VERILATOR_MAIN_TRACE and "traceEverOn" not in se.VERILATOR_MAIN
