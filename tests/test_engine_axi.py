"""The ConvEngine AXI wrapper (hdl/engine_axi.py): cocotb with cocotbext-axi on Icarus and
Verilator (tb/engine_axi/cocotb_engine_axi.py), an injected fault caught, the register map,
header and driver that ``convgen generate engine --axi`` writes, and its bad options.

The engine is 2 x 4 with 4-channel words; Icarus runs a 32-bit AXI bus (x, w, y words one beat
each, the 97-bit parameter words 4-beat bursts), Verilator a 64-bit bus (x, w, y in byte
lanes of a beat, parameter words 2-beat bursts); ``-m slow`` runs the other width on each.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import lru_cache

import pytest

from convgen.hdl.engine import EngineConfig
from convgen.hdl.engine_axi import AxiConfig
from convgen.sim.build import run_cocotb
from convgen.sim.engine_axi import build_axi_cocotb
from convgen.tb.common.launch import run_regression

MODULE = "convgen.tb.engine_axi.cocotb_engine_axi"
TESTS = ["layers_back_to_back", "bad_descriptor_and_alignment", "cycle_counts", "axi_error_responses",
         "start_queued_while_busy"]
ENGINE = dict(rows=2, cols=4, vec=4, max_h=8, max_w=8, max_pixel_words=4, max_kernel=3, max_stride=2, max_pad=1,
              max_dilation=1, max_tiles=4, addr_width=16, fetch_banks=3, weight_fifo=8)
WIDTH = {"icarus": 32, "verilator": 64}


def _seed() -> int:
    return int(os.environ.get("CONVGEN_SEED", "1"))


@lru_cache(maxsize=None)
def _build(simulator: str, data_width: int, waves: bool = False, fault: str = ""):
    return build_axi_cocotb(AxiConfig(EngineConfig(**ENGINE), data_width=data_width, fault=fault), simulator,
                            waves=waves)


def _run(simulator, data_width, tmp_path):
    seed = _seed()
    res = run_regression(lambda waves: _build(simulator, data_width, waves), MODULE, str(tmp_path),
                         label=f"EngineAxi ({data_width}-bit) on {simulator} (CONVGEN_SEED={seed})",
                         extra_env={"CONVGEN_SEED": str(seed)})
    ran = sorted(case.get("name") for case in ET.parse(res.results_xml).iter("testcase"))
    assert ran == sorted(TESTS), f"ran {ran}; log {res.log_file}"
    return json.loads((tmp_path / "cycles.json").read_text())


# Verilator's run (a cold build of the engine, about 50 s of CPU) is under -m slow: the default
# suite's 15-minute budget on 2 cores (measured 16 min 58 s with it, 2026-11-28)
@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_engine_axi_cocotb(simulator, tmp_path):
    """Every cocotb test of the AXI bench in one simulator run."""
    cycles = _run(simulator, WIDTH[simulator], tmp_path)
    assert len(cycles["layers"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_engine_axi_cocotb_other_width(simulator, tmp_path):
    """The bus width the default test does not run on this simulator (and 128 bits: every word
    in the byte lanes of one beat)."""
    for dw in ({32, 64} - {WIDTH[simulator]}) | {128}:
        _run(simulator, dw, tmp_path / str(dw))


def test_injected_fault_is_caught(tmp_path):
    """Multi-beat parameter bursts that start one beat too high (``axi_fault=burst_addr``) give
    wrong requantization parameters: the bench must fail on the conv oracle comparison."""
    res = run_cocotb(_build("icarus", 32, fault="burst_addr"), MODULE, run_dir=tmp_path,
                     extra_env={"CONVGEN_SEED": str(_seed())}, testcase="layers_back_to_back")
    cases = list(ET.parse(res.results_xml).iter("testcase"))
    assert len(cases) == 1, f"ran {len(cases)} cocotb tests; log {res.log_file}"
    failure = cases[0].find("failure")
    assert failure is not None, f"the burst_addr fault was not caught; log {res.log_file}"
    text = (failure.get("message") or "") + (failure.text or "")
    assert "differ from the conv oracle" in text, f"failed for another reason: {text[:500]}"


# -- generate engine --axi ------------------------------------------------------------------------
GEN = ["generate", "engine", "--rows", "2", "--cols", "4", "--vec", "4", "--max-h", "8", "--max-w", "8",
       "--max-pixel-words", "4", "--max-kernel", "3", "--max-stride", "2", "--max-pad", "1", "--max-dilation", "1",
       "--max-tiles", "4", "--addr-width", "16", "--fetch-banks", "3"]


def test_generate_axi_writes_everything(tmp_path, capsys):
    """Verilog with AMBA port names, manifest with the register map, the Markdown map, the C
    header, the driver (a copy of sim/axi_driver.py), and the port table with the AXI ports."""
    from convgen.cli import main
    from convgen.hdl.engine_axi import register_map

    out = tmp_path / "ip"
    assert main([*GEN, "--axi", "--axi-data-width", "32", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out.strip().splitlines()[-1])
    module = summary["module"]
    text = (out / f"{module}.v").read_text()
    for port in ("ap_clk", "ap_rst_n", "interrupt", "s_axi_control_awaddr", "s_axi_control_rdata",
                 "m_axi_gmem_araddr", "m_axi_gmem_arlen", "m_axi_gmem_rid", "m_axi_gmem_wstrb", "m_axi_gmem_bresp"):
        assert port in text.split(");", 1)[0], port
        assert port in cap.err, f"{port} missing from the port table"
    assert "AXI4 master m_axi_gmem" in json.dumps(json.loads((out / f"{module}.json").read_text())["ports"])
    man = json.loads((out / f"{module}.json").read_text())
    cfg = AxiConfig(EngineConfig(**ENGINE), data_width=32)
    regs = register_map(cfg)
    assert man["axi"]["registers"]["ctrl"]["offset"] == 0 and man["axi"]["registers"]["h"]["offset"] == 0x10
    assert [r["offset"] for r in man["axi"]["registers"].values()] == [r.offset for r in regs]
    assert man["axi"]["strides"] == {"x": 4, "w": 4, "p": 16, "y": 4} and man["axi"]["beats"]["p"] == 4
    header = (out / f"{module}.h").read_text()
    for r in regs:
        assert f"#define CONVGEN_AXI_{r.name.upper()} " in header
    assert "#define CONVGEN_AXI_CTRL_AP_DONE" in header and "#define CONVGEN_AXI_IRQ_ERROR" in header
    md = (out / f"{module}_regs.md").read_text()
    assert "| 0x0C | ISR |" in md and "INCR burst of 4 beats" in md
    import convgen.sim.axi_driver as drv
    from pathlib import Path
    assert (out / "convgen_axi_driver.py").read_text() == Path(drv.__file__).read_text()
    # the copy runs without convgen: it imports nothing but the standard library
    code = "import sys; sys.path.insert(0, '.'); import convgen_axi_driver as d; print(d.pack_words([1, 2], 4).hex())"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code],
                       cwd=out, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "0100000002000000", r.stderr


@pytest.mark.parametrize("extra, message", [
    (["--axi", "--axi-data-width", "48"], "--axi-data-width must be one of 32, 64, 128, 256, 512, not 48"),
    (["--axi", "--axi-addr-width", "16"], "--axi-addr-width must be an integer in 32..64, not 16"),
    (["--axi-max-reads", "4"], "--axi-max-reads needs --axi"),
    (["--axi", "--bare"], "--bare cannot go with --axi"),
    (["--axi", "--axi-fault", "nope"], "--axi-fault must be one of"),
])
def test_generate_axi_bad_options(tmp_path, capsys, extra, message):
    """One line naming the flag and what is allowed, status 2, nothing written."""
    from convgen.cli import main

    out = tmp_path / "ip"
    assert main([*GEN, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_driver_protocol_against_a_register_model():
    """The driver's register protocol on plain callables (what a board gives it): the
    descriptor registers, the base addresses (two words for a 64-bit AXI address), the start,
    polling until ap_done, the ISR write-back, and y read back."""
    from convgen.hdl.engine_axi import regmap_dict
    from convgen.sim.axi_driver import AxiLayer, EngineAxiDriver

    cfg = AxiConfig(EngineConfig(**ENGINE), addr_width=64)
    rm = regmap_dict(cfg)
    off = {n: r["offset"] for n, r in rm["registers"].items()}
    regs = {off["config0"]: rm["config0"], off["config1"]: rm["config1"]}
    log, mem, polls = [], {}, {"n": 0}

    def read32(a):
        if a == off["ctrl"]:
            polls["n"] += 1
            return 0b1110 if polls["n"] == 3 else 0
        if a == off["isr"]:
            return 0b01
        return regs.get(a, 0)

    def write32(a, v):
        log.append((a, v))

    def mem_write(a, b):
        mem[a] = b

    def mem_read(a, n):
        return bytes(range(n))

    layer = AxiLayer({n: 1 for n, r in rm["registers"].items() if r["kind"] == "desc"} | {"x_zero_point": -3},
                     {"x": [1, 2], "w": [3], "p": [1 << 96]}, 2,
                     {"x": 0x1_0000_0000, "w": 0x2000, "p": 0x3000, "y": 0x4000})
    out = EngineAxiDriver(rm, read32=read32, write32=write32, mem_write=mem_write, mem_read=mem_read).run_layer(layer)
    assert out.ok and out.polls == 3 and out.y == [0x03020100, 0x07060504]
    assert mem[0x3000] == (1 << 96).to_bytes(16, "little") and mem[0x1_0000_0000] == bytes([1, 0, 0, 0, 2, 0, 0, 0])
    w = dict(log)
    assert w[off["x_addr"]] == 0 and w[off["x_addr_hi"]] == 1 and w[off["y_addr_hi"]] == 0
    assert w[off["x_zero_point"]] == (-3) & 0x1FF
    assert log[-2] == (off["ctrl"], 1) and log[-1] == (off["isr"], 1)


def test_lint(tmp_path):
    """Verilator ``--lint-only -Wall`` on the wrapper: no warning class beyond the accepted ones of
    Amaranth's code generation (sim.lint.ACCEPTED); the port name ``interrupt`` is waived in the
    file itself."""
    from convgen.sim.engine_axi import axi_verilog
    from convgen.sim.lint import ACCEPTED, lint

    cfg = AxiConfig(EngineConfig(**ENGINE), data_width=32)
    path = tmp_path / f"{cfg.module_name}.v"
    path.write_text(axi_verilog(cfg))
    counts = lint(path, cfg.module_name)
    assert not set(counts) - set(ACCEPTED), dict(counts)
