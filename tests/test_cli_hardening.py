"""The command line tried as a new user would (issue 13 section 2).

- A bad output path (``--out`` a directory, under a file, under /dev/null, in a read-only
  directory, a device) gives one line naming the flag and status 2, **before any simulation,
  synthesis or model loading** (the work functions are replaced by ones that fail the test),
  and writes nothing: neither next to the output nor in the temporary directory.
- Ctrl-C mid-simulation: one line ``convgen: interrupted``, status 130, no traceback, no
  temporary folder and no simulator process left (a real ``convgen`` process and SIGINT).
- Verilator without perl: ``doctor`` says so, a run fails with one line naming perl (status 3).
- Temporary folders: deleted after a run, kept (and named) with ``--keep``; every run verb has it.
- Smaller problems: unreadable .npy files, float64 scales, ``im2col --out x.npy``, a symlinked
  ``--out`` (written through), Winograd's batch axis, OSError on output as one line.

Read-only directories: the suite may run as root, and root ignores permission bits, so a
``chmod 555`` directory is really read-only only for other users. The check
(``commands.common.check_output_file``) asks ``os.access`` and then creates and removes a probe
file, as the writer will. The tests exercise (a) ``chmod 555`` for real when not root, and as
root with ``os.access`` answering for that directory what it would answer to a normal user
(the ``os.access`` branch; the probe is not reached), and (b) ``/sys``, where ``os.access``
says yes even to root but creating a file fails: the probe branch, for real.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from convgen.cli import main
from convgen.core.fileio import atomic_write_bytes

CONVGEN = Path(sys.executable).with_name("convgen")
CLI = [str(CONVGEN)] if CONVGEN.exists() else [sys.executable, "-m", "convgen"]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _sys_refuses_files() -> bool:
    try:
        fd, p = tempfile.mkstemp(dir="/sys")
    except OSError:
        return True
    os.close(fd)
    os.unlink(p)
    return False


SYS_REFUSES = os.path.isdir("/sys") and _sys_refuses_files()


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def work(tmp_path, monkeypatch):
    """Inputs in ``tmp_path/in``, an empty temporary directory for the runs, and a
    ``listing()`` of everything under ``tmp_path`` to show nothing was written."""
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    np.save(inp / "A.npy", rng.integers(-128, 128, (3, 5)).astype(np.int8))
    np.save(inp / "B.npy", rng.integers(-128, 128, (5, 2)).astype(np.int8))
    np.save(inp / "acc.npy", rng.integers(-1000, 1000, (2, 3)).astype(np.int32))
    np.save(inp / "scale.npy", np.full(3, 0.01, np.float32))
    np.save(inp / "x.npy", rng.integers(-128, 128, (2, 4, 4)).astype(np.int8))
    np.save(inp / "w.npy", rng.integers(-128, 128, (3, 2, 3, 3)).astype(np.int8))
    from convgen.core.layer import ConvLayer
    from convgen.golden.engine import random_qlinearconv_arrays

    np.savez(inp / "layer.npz", **random_qlinearconv_arrays(rng, ConvLayer.square(4, 4, 4, 3, 1, 1, c_out=4)))
    (tmp_path / "outdir").mkdir()
    (tmp_path / "file").write_text("x")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))

    def listing():
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    return SimpleNamespace(root=tmp_path, inp=inp, tmp=tmpdir, listing=listing)


@pytest.fixture
def no_work(monkeypatch):
    """Every simulation, synthesis, generation and model loading fails the test: the checks
    must come first."""
    import convgen.analyze
    import convgen.sim.engine
    import convgen.sim.im2col
    import convgen.sim.requant
    import convgen.sim.systolic
    import convgen.sim.winograd
    import convgen.synth.explore
    import convgen.synth.flow

    def forbidden(*a, **k):
        raise AssertionError("work started before the output path was checked")

    for mod, names in [(convgen.sim.systolic, ("run_gemm", "generate")), (convgen.sim.im2col, ("run_im2col",)),
                       (convgen.sim.requant, ("run_requant",)), (convgen.sim.winograd, ("run_winograd_conv",)),
                       (convgen.sim.engine, ("run_conv", "generate")), (convgen.synth.flow, ("run_flow",)),
                       (convgen.synth.explore, ("explore",)), (convgen.analyze, ("load_layers",))]:
        for name in names:
            monkeypatch.setattr(mod, name, forbidden)


def _cli(capsys, argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---- bad output paths, before any work ------------------------------------------------------------
RUNS = {
    "gemm": lambda i: ["run", "gemm", "--a", i / "A.npy", "--b", i / "B.npy", "--rows", "2", "--cols", "2"],
    "im2col": lambda i: ["run", "im2col", "--h", "4", "--w", "4", "--c", "2"],
    "requant": lambda i: ["run", "requant", "--acc", i / "acc.npy", "--scale", i / "scale.npy", "--rounding", "onnx"],
    "winograd-conv": lambda i: ["run", "winograd-conv", "--x", i / "x.npy", "--w", i / "w.npy"],
    "conv": lambda i: ["run", "conv", "--layer", i / "layer.npz", "--rows", "2", "--cols", "2"],
}

#: bad --out for a file output: (path from the test root, expected message after "--out: ")
BAD_FILE_OUT = {
    "directory": (lambda r: r / "outdir", lambda r: f"{r / 'outdir'} is a directory; give a file name such as"),
    "under_a_file": (lambda r: r / "in" / "A.npy" / "C.OUT", lambda r: f"{r / 'in' / 'A.npy'} is not a directory"),
    "under_dev_null": (lambda r: Path("/dev/null/C.OUT"), lambda r: "/dev/null is not a directory"),
    "a_device": (lambda r: Path("/dev/null"), lambda r: "/dev/null exists and is not a regular file"),
    "missing_directory": (lambda r: r / "nodir" / "C.OUT", lambda r: f"the directory {r / 'nodir'} does not exist"),
}


def _suffix(job):
    return ".npz" if job == "im2col" else ".npy"


@pytest.mark.parametrize("case", list(BAD_FILE_OUT))
@pytest.mark.parametrize("job", list(RUNS))
def test_run_bad_out_is_one_line_before_any_simulation(job, case, work, no_work, capsys):
    path, message = BAD_FILE_OUT[case]
    out = str(path(work.root)).replace(".OUT", _suffix(job))
    before = work.listing()
    status, stdout, err = _cli(capsys, [*RUNS[job](work.inp), "--sim", "icarus", "--out", out])
    assert status == 2, err
    assert _one_line(err).startswith("convgen: error: --out: " + message(work.root)), err
    assert stdout == "" and work.listing() == before


@pytest.mark.parametrize("job", list(RUNS))
def test_run_out_in_read_only_directory(job, work, no_work, capsys, monkeypatch):
    ro = work.root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if ROOT:  # root ignores the mode bits: answer for ro what os.access answers a normal user
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == ro else real_access(p, m, **k))
        before = work.listing()
        status, _, err = _cli(capsys, [*RUNS[job](work.inp), "--sim", "icarus", "--out", ro / f"y{_suffix(job)}"])
        assert status == 2, err
        assert _one_line(err) == f"convgen: error: --out: the directory {ro} is not writable", err
        assert work.listing() == before
    finally:
        ro.chmod(0o755)


@pytest.mark.skipif(not SYS_REFUSES, reason="needs a /sys that refuses new files (Linux)")
@pytest.mark.parametrize("job", list(RUNS))
def test_run_out_where_files_cannot_be_created(job, work, no_work, capsys):
    """/sys: os.access says writable (to root), creating a file fails: the probe catches it."""
    status, _, err = _cli(capsys, [*RUNS[job](work.inp), "--sim", "icarus", "--out", f"/sys/y{_suffix(job)}"])
    assert status == 2, err
    assert _one_line(err).startswith("convgen: error: --out: the directory /sys is not writable"), err
    assert os.listdir(work.tmp) == []


#: verbs with an output directory: argv before the flag, the flag
DIR_VERBS = {
    "generate": (["generate", "systolic", "--rows", "2", "--cols", "2"], "-o"),
    "synth": (["synth", "systolic", "--rows", "1", "--cols", "1"], "--out"),
    "explore": (["explore", "systolic", "--rows", "1", "--cols", "1"], "--out"),
    "demo": (["demo", "--sim", "icarus"], "--out"),
}

BAD_DIR_OUT = {
    "existing_file": (lambda r: r / "file", lambda r: f"{r / 'file'} exists and is not a directory"),
    "under_a_file": (lambda r: r / "file" / "sub", lambda r: f"{r / 'file'} is not a directory"),
    "under_dev_null": (lambda r: Path("/dev/null/sub"), lambda r: "/dev/null is not a directory"),
}


@pytest.mark.parametrize("case", list(BAD_DIR_OUT))
@pytest.mark.parametrize("verb", list(DIR_VERBS))
def test_output_directory_checked_first(verb, case, work, no_work, capsys):
    argv, flag = DIR_VERBS[verb]
    path, message = BAD_DIR_OUT[case]
    before = work.listing()
    status, stdout, err = _cli(capsys, [*argv, flag, path(work.root)])
    assert status == 2, err
    assert _one_line(err) == f"convgen: error: --out: {message(work.root)}", err
    assert work.listing() == before


@pytest.mark.parametrize("verb", list(DIR_VERBS))
def test_output_directory_read_only(verb, work, no_work, capsys, monkeypatch):
    argv, flag = DIR_VERBS[verb]
    ro = work.root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if ROOT:
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == ro else real_access(p, m, **k))
        status, _, err = _cli(capsys, [*argv, flag, ro / "new" / "dir"])   # created below ro: refused
        assert status == 2, err
        assert _one_line(err) == f"convgen: error: --out: the directory {ro} is not writable", err
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)
    if SYS_REFUSES:
        status, _, err = _cli(capsys, [*argv, flag, "/sys/convgen-out"])
        assert status == 2 and _one_line(err).startswith("convgen: error: --out: the directory /sys is not writable")


def test_analyze_plot_checked_before_the_model_is_read(work, no_work, capsys):
    pytest.importorskip("matplotlib")
    for plot, message in [(work.root / "outdir", "is a directory; give a file name such as"),
                          (work.root / "file" / "p.png", f"{work.root / 'file'} is not a directory"),
                          ("/dev/null/p.png", "/dev/null is not a directory")] + \
                         ([("/sys/p.png", "the directory /sys is not writable")] if SYS_REFUSES else []):
        status, stdout, err = _cli(capsys, ["analyze", work.inp / "missing.onnx", "--plot", plot])
        assert status == 2, err
        assert _one_line(err).startswith("convgen: error: --plot: ") and message in err, err
        assert stdout == ""


def test_demo_out_existing_file_real_cli(work):
    """The real entry point: one line, status 2, before anything is generated."""
    r = subprocess.run([*CLI, "demo", "--out", str(work.root / "file")], capture_output=True, text=True,
                       env=dict(os.environ, TMPDIR=str(work.tmp)), timeout=60)
    assert r.returncode == 2 and r.stderr == f"convgen: error: --out: {work.root / 'file'} exists and is not a directory\n"
    assert r.stdout == "" and os.listdir(work.tmp) == []


def test_generate_out_existing_file_real_cli(work):
    r = subprocess.run([*CLI, "generate", "systolic", "-o", str(work.root / "file")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr == f"convgen: error: --out: {work.root / 'file'} exists and is not a directory\n"
    assert (work.root / "file").read_text() == "x"


# ---- Ctrl-C --------------------------------------------------------------------------------------
def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)
                comm = fields[0].split("(", 1)[1]
                if int(fields[1].split()[1]) == pid:
                    found.append((int(d), comm))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the simulator process through /proc")
@pytest.mark.parametrize("whole_group", [True, False], ids=["terminal_ctrl_c", "sigint_to_convgen_only"])
def test_ctrl_c_mid_simulation(whole_group, tmp_path):
    """A long GEMM on Icarus (2x2 array, K=8192: about 500k cycles, far more than the test
    waits); SIGINT once the simulator process runs. A terminal's Ctrl-C signals the whole
    process group; ``kill -INT`` only convgen."""
    rng = np.random.default_rng(3)
    np.save(tmp_path / "A.npy", rng.integers(-128, 128, (16, 8192)).astype(np.int8))
    np.save(tmp_path / "B.npy", rng.integers(-128, 128, (8192, 16)).astype(np.int8))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    t0 = time.monotonic()
    p = subprocess.Popen([*CLI, "run", "gemm", "--a", str(tmp_path / "A.npy"), "--b", str(tmp_path / "B.npy"),
                          "--out", str(tmp_path / "C.npy"), "--rows", "2", "--cols", "2", "--sim", "icarus"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env=dict(os.environ, TMPDIR=str(tmpdir)),
                         # a background process may inherit SIGINT ignored; a terminal's convgen would not
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        sim = []
        while not sim and time.monotonic() - t0 < 15 and p.poll() is None:
            time.sleep(0.1)
            sim = [pid for pid, comm in _children(p.pid) if comm.startswith("vvp")]
        assert sim, f"the simulator did not start within 15 s (exit {p.poll()})"
        time.sleep(0.3)
        if whole_group:
            os.killpg(p.pid, signal.SIGINT)
        else:
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "convgen: interrupted", err
    assert err.count("interrupted") == 1, err
    assert out == "" and not (tmp_path / "C.npy").exists()
    assert os.listdir(tmpdir) == []                               # the run's temporary folder is gone
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in sim) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in sim), "the simulator survived Ctrl-C"


def test_ctrl_c_while_starting_up(monkeypatch, capsys):
    """Building the parser imports every block (a second or so): Ctrl-C there is handled too."""
    import convgen.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(convgen.cli, "build_parser", interrupted)
    assert main(["doctor"]) == 130
    assert capsys.readouterr().err == "convgen: interrupted\n"


def test_ctrl_c_while_importing(monkeypatch, capsys):
    """The console script (``convgen.entry``) imports the command line inside its own handler:
    Ctrl-C while numpy and Amaranth are still loading is one line and status 130 too."""
    import builtins

    import convgen.entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "convgen.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert convgen.entry.main() == 130
    assert capsys.readouterr().err == "convgen: interrupted\n"


def test_console_script_is_the_guarded_entry():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["convgen"] == "convgen.entry:main"


# ---- Verilator without perl --------------------------------------------------------------------
@pytest.fixture
def path_without_perl(tmp_path):
    """A PATH directory with make, c++ and Icarus (when installed) but no perl."""
    import shutil

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("make", "c++", "iverilog", "vvp"):
        found = shutil.which(tool)
        if found:
            (bin_ / tool).symlink_to(os.path.realpath(found))
    assert shutil.which("perl", path=str(bin_)) is None
    return str(bin_)


def test_doctor_reports_missing_perl(path_without_perl):
    r = subprocess.run([*CLI, "doctor"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PATH=path_without_perl))
    assert r.returncode == 3, r.stdout + r.stderr
    line = next(line for line in r.stdout.splitlines() if line.startswith("verilator"))
    assert "MISSING" in line and "needs perl" in line, r.stdout


def test_verilator_run_without_perl_is_one_line(path_without_perl, work, monkeypatch, capsys):
    """Checked before the build (a cold build used to end in "return code: 127")."""
    monkeypatch.setenv("PATH", path_without_perl)
    status, _, err = _cli(capsys, [*RUNS["gemm"](work.inp), "--sim", "verilator", "--out", work.root / "C.npy"])
    assert status == 3, err
    assert _one_line(err).startswith("convgen: error: Verilator needs perl on PATH"), err
    assert not (work.root / "C.npy").exists() and os.listdir(work.tmp) == []


# ---- temporary folders and --keep ---------------------------------------------------------------
def test_every_run_verb_has_keep():
    from convgen.commands import block_command_modules

    runs = [run for m in block_command_modules() if getattr(m, "BLOCK", None) for run in m.BLOCK.runs]
    assert {r.name for r in runs} >= set(RUNS)
    for run in runs:
        assert "keep" in [f.name for f in run.options], run.name


@pytest.mark.parametrize("job", ["gemm", "im2col", "requant", "winograd-conv"])
def test_run_deletes_its_temporary_folder(job, work, capsys):
    out = work.root / f"y{_suffix(job)}"
    status, stdout, err = _cli(capsys, [*RUNS[job](work.inp), "--sim", "icarus", "--out", out])
    assert status == 0, err
    assert out.exists() and os.listdir(work.tmp) == [] and "keeping" not in err


@pytest.mark.parametrize("job", ["gemm", "im2col", "requant", "winograd-conv"])
def test_run_keep_keeps_and_names_its_folder(job, work, capsys):
    status, stdout, err = _cli(capsys, [*RUNS[job](work.inp), "--sim", "icarus", "--out", work.root / f"y{_suffix(job)}",
                                        "--keep"])
    assert status == 0, err
    kept = os.listdir(work.tmp)
    assert len(kept) == 1 and kept[0].startswith("convgen-")
    assert f"convgen: keeping the run folder {work.tmp / kept[0]}" in err
    assert (work.tmp / kept[0] / "run").is_dir()                      # the simulator's files are there


# ---- smaller problems ----------------------------------------------------------------------------
def test_unreadable_npy_messages(work, no_work, capsys):
    (work.inp / "random.npy").write_bytes(np.random.default_rng(0).bytes(200))
    np.save(work.inp / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(work.inp / "archive.npy", a=np.zeros(2))   # np.savez appends .npz
    for name, message in [("random.npy", "is not a NumPy .npy file (it does not start with the .npy header)"),
                          ("objects.npy", "holds Python objects, not numbers"),
                          ("archive.npy.npz", "must hold a single array (.npy), not an archive"),
                          ("missing.npy", "no such file"),
                          ("", "is a directory, not a .npy file")]:
        status, _, err = _cli(capsys, ["run", "gemm", "--a", work.inp / name, "--b", work.inp / "B.npy",
                                       "--out", work.root / "C.npy", "--sim", "icarus"])
        line = _one_line(err)
        assert status == 2 and line.startswith("convgen: error: --a: ") and message in line, err
        assert "pickle" not in line and "allow_" not in line


def test_requant_float64_scale_message(work, no_work, capsys):
    np.save(work.inp / "s64.npy", np.full(3, 0.01, np.float64))
    status, _, err = _cli(capsys, ["run", "requant", "--acc", work.inp / "acc.npy", "--scale", work.inp / "s64.npy",
                                   "--rounding", "onnx", "--sim", "icarus", "--out", work.root / "y.npy"])
    line = _one_line(err)
    assert status == 2 and line.startswith("convgen: error: --scale: ") and "float32" in line, err
    assert "ort_scale" not in line and "()" not in line      # no Python function to call


def test_requant_float64_scale_exactly_float32_is_accepted(work):
    from convgen.commands.requant import _float32_scale

    np.save(work.inp / "s.npy", np.full(3, 0.25, np.float64))
    s = _float32_scale(str(work.inp / "s.npy"))
    assert s.dtype == np.float32 and np.all(s == 0.25)


def test_im2col_out_must_be_npz(work, no_work, capsys):
    status, _, err = _cli(capsys, [*RUNS["im2col"](work.inp), "--sim", "icarus", "--out", work.root / "addr.npy"])
    assert status == 2 and _one_line(err).startswith("convgen: error: --out must name an .npz file"), err
    assert not (work.root / "addr.npy").exists()


def test_atomic_write_through_symlink(tmp_path):
    (tmp_path / "target_dir").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "target_dir" / "C.npy"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "links" / "C.npy"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / "target_dir") == ["C.npy"] and os.listdir(tmp_path / "links") == ["C.npy"]
    dangling = tmp_path / "links" / "new.npy"
    dangling.symlink_to(tmp_path / "target_dir" / "new.npy")
    atomic_write_bytes(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "target_dir" / "new.npy").read_bytes() == b"made"


def test_atomic_write_never_replaces_a_directory_or_fifo(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write_bytes(tmp_path / "d", b"x")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write_bytes(tmp_path / "fifo", b"x")
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode) and sorted(os.listdir(tmp_path)) == ["d", "fifo"]


def test_run_gemm_writes_through_a_symlinked_out(work, capsys):
    (work.root / "results").mkdir()
    link = work.root / "C.npy"
    link.symlink_to(work.root / "results" / "C.npy")
    status, _, err = _cli(capsys, [*RUNS["gemm"](work.inp), "--sim", "icarus", "--out", link])
    assert status == 0, err
    assert link.is_symlink()
    c = np.load(work.root / "results" / "C.npy")
    assert np.array_equal(c, np.load(work.inp / "A.npy").astype(np.int64) @ np.load(work.inp / "B.npy"))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_winograd_conv_keeps_the_batch_axis(layout, work, capsys):
    import convgen.golden.winograd as gw

    x = np.load(work.inp / "x.npy")                                  # C, H, W
    w = np.load(work.inp / "w.npy")
    xb = x[None] if layout == "nchw" else x.transpose(1, 2, 0)[None]
    np.save(work.inp / "xb.npy", xb)
    status, stdout, err = _cli(capsys, ["run", "winograd-conv", "--x", work.inp / "xb.npy", "--w", work.inp / "w.npy",
                                        "--layout", layout, "--sim", "icarus", "--out", work.root / "y.npy"])
    assert status == 0, err
    want = gw.conv3x3_direct(x, w)                                   # C_out, H, W
    want = want[None] if layout == "nchw" else want.transpose(1, 2, 0)[None]
    y = np.load(work.root / "y.npy")
    assert y.shape == want.shape and np.array_equal(y, want)
    assert json.loads(stdout)["shape"] == list(want.shape)


def test_os_error_on_output_is_one_line_naming_the_path(work, monkeypatch, capsys):
    """The file system failing after the checks (disk full): one line, status 1."""
    import convgen.core.fileio
    import convgen.sim.systolic

    monkeypatch.setattr(convgen.sim.systolic, "run_gemm",
                        lambda *a, **k: SimpleNamespace(c=np.zeros((3, 2), np.int64), summary=lambda: {}))

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(convgen.core.fileio, "atomic_write_bytes", full)
    out = work.root / "C.npy"
    status, _, err = _cli(capsys, [*RUNS["gemm"](work.inp), "--sim", "icarus", "--out", out])
    assert status == 1 and _one_line(err) == f"convgen: error: {out}: No space left on device", err


def test_programming_errors_keep_their_traceback(work, monkeypatch):
    import convgen.sim.systolic

    def bug(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(convgen.sim.systolic, "run_gemm", bug)
    with pytest.raises(TypeError, match="a bug"):
        main([str(a) for a in [*RUNS["gemm"](work.inp), "--sim", "icarus", "--out", work.root / "C.npy"]])
