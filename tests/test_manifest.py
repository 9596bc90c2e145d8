"""generate()/write_block output: files, ports against the Verilog text, timing, atomicity."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import stat
from pathlib import Path

import pytest

import convgen.hdl.generate as G
from convgen.core.fileio import atomic_write_bytes, atomic_write_text
from convgen.hdl.systolic import SystolicConfig
from convgen.sim.systolic import generate

CONFIGS = [
    SystolicConfig(rows=1, cols=1),
    SystolicConfig(rows=2, cols=3, dataflow="ws", b_signed=False, acc_width=20),
    SystolicConfig(rows=3, cols=2, a_signed=False, b_signed=False, acc_width=64, pipeline_product=False),
    SystolicConfig(rows=4, cols=2, dataflow="ws", a_width=4, b_width=12, a_signed=False, acc_width=40),
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return out, [generate(cfg, out) for cfg in CONFIGS]


def _top_ports(verilog: str, module: str) -> set[tuple[str, str, int]]:
    """(name, direction, width) of the top module's ports, read from its declarations."""
    lines = verilog.splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(rf"module\s+{re.escape(module)}\s*\(", l))
    header = re.match(rf"module\s+{re.escape(module)}\s*\(([^)]*)\);", lines[start]).group(1)
    listed = {p.strip() for p in header.split(",")}
    ports = set()
    for line in lines[start + 1:]:
        if line.strip() == "endmodule":
            break
        m = re.match(r"\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?(\w+)\s*;", line)
        if m:
            width = int(m.group(2)) - int(m.group(3)) + 1 if m.group(2) else 1
            ports.add((m.group(4), "in" if m.group(1) == "input" else "out", width))
    assert {p[0] for p in ports} == listed
    return ports


def test_writes_exactly_verilog_manifest_file_list_and_core(generated):
    out, results = generated
    names = [cfg.module_name for cfg in CONFIGS]
    assert len(set(names)) == len(names)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}{ext}" for n in names for ext in (".v", ".json", ".f", ".core"))
    for cfg, res in zip(CONFIGS, results):
        assert res["verilog"] == out / f"{cfg.module_name}.v"
        assert res["manifest_path"] == out / f"{cfg.module_name}.json"
        assert res["filelist"].read_text() == f"{cfg.module_name}.v\n"
        assert f"name: convgen:systolic:{cfg.module_name}:" in res["core"].read_text()
        manifest = json.loads(res["manifest_path"].read_text())
        assert manifest == res["manifest"]
        assert manifest["module"] == cfg.module_name
        assert manifest["block"] == "systolic"
        # every field, except those to_dict leaves out at their default 0 (SystolicConfig.pipeline_mult,
        # dsp_rows: manifests of existing configurations unchanged)
        full = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        assert manifest["parameters"] == {k: v for k, v in full.items() if k in manifest["parameters"] or v != 0}
        assert SystolicConfig(**manifest["parameters"]) == cfg


def test_one_config_per_directory_listing(tmp_path):
    res = generate(CONFIGS[0], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{CONFIGS[0].module_name}{ext}" for ext in (".core", ".f", ".json", ".v"))
    text = res["verilog"].read_text()
    assert re.search(rf"^module {CONFIGS[0].module_name}\(", text, re.M)
    assert text.rstrip().endswith("endmodule")


def test_module_names_unique_over_parameter_space():
    names = {}
    space = itertools.product([1, 2, 12], [1, 2, 21], ["os", "ws"], [1, 8, 18], [8, 1, 18],
                              [True, False], [True, False], [40, 64], [True, False])
    for rows, cols, df, aw, bw, asg, bsg, acc, pp in space:
        cfg = SystolicConfig(rows=rows, cols=cols, dataflow=df, a_width=aw, b_width=bw, a_signed=asg,
                             b_signed=bsg, acc_width=acc, pipeline_product=pp)
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.module_name)
        assert names.setdefault(cfg.module_name, cfg) == cfg, cfg.module_name


def test_ports_match_verilog_declarations(generated):
    _, results = generated
    for cfg, res in zip(CONFIGS, results):
        manifest = res["manifest"]
        json_ports = {(p["name"], p["direction"], p["width"]) for p in manifest["ports"]}
        assert len(json_ports) == len(manifest["ports"])
        assert json_ports == _top_ports(res["verilog"].read_text(), cfg.module_name)
        # widths from the parameters, independently of any layout object
        widths = {p["name"]: p["width"] for p in manifest["ports"]}
        assert widths["a__payload"] == cfg.rows * cfg.a_width
        assert widths["b__payload"] == cfg.cols * cfg.b_width + 1
        assert widths["o__payload"] == cfg.cols * cfg.acc_width + 1
        assert {n for n, w in widths.items() if w == 1} >= {
            "clk", "rst", "a__valid", "a__ready", "b__valid", "b__ready", "o__valid", "o__ready"}
        for s in ("a", "b", "o"):
            st = manifest["streams"][s]
            assert st["layout"]["width"] == widths[st["payload"]]
            assert st["direction"] == ("out" if s == "o" else "in")


def _tile_cycles_doc(cfg: SystolicConfig, k: int) -> int:
    """The formulas of the SystolicConfig documentation, written out here."""
    p = 2 if cfg.pipeline_product else 1
    f = 2
    if cfg.dataflow == "os":
        return k + cfg.rows + cfg.cols + p + f - 1
    a_beats = cfg.rows * (-(-k // cfg.rows))
    return 2 * cfg.rows + a_beats + cfg.cols + p + f


def _tile_period_doc(cfg: SystolicConfig, k: int) -> int:
    if cfg.dataflow == "os":
        return max(k, cfg.rows, cfg.cols)
    return cfg.rows * (-(-k // cfg.rows)) + max(0, cfg.cols - cfg.rows)


def test_timing_examples(generated):
    _, results = generated
    for cfg, res in zip(CONFIGS, results):
        timing = res["manifest"]["timing"]
        ks = {1, cfg.rows, cfg.cols, 2 * max(cfg.rows, cfg.cols), 64}
        assert set(timing["examples"]) == {str(k) for k in ks}
        for k in ks:
            ex = timing["examples"][str(k)]
            assert ex["tile_cycles"] == cfg.tile_cycles(k) == _tile_cycles_doc(cfg, k)
            assert ex["tile_period"] == cfg.tile_period(k) == _tile_period_doc(cfg, k)
        assert timing["pe_latency"] == (2 if cfg.pipeline_product else 1)


def test_arithmetic_section(generated):
    _, results = generated
    for cfg, res in zip(CONFIGS, results):
        ar = res["manifest"]["arithmetic"]
        alo, ahi = (-(2 ** (cfg.a_width - 1)), 2 ** (cfg.a_width - 1) - 1) if cfg.a_signed else (0, 2 ** cfg.a_width - 1)
        blo, bhi = (-(2 ** (cfg.b_width - 1)), 2 ** (cfg.b_width - 1) - 1) if cfg.b_signed else (0, 2 ** cfg.b_width - 1)
        prods = [x * y for x in (alo, ahi) for y in (blo, bhi)]
        assert ar["product_range"] == [min(prods), max(prods)]
        sgn = cfg.a_signed or cfg.b_signed
        assert ar["accumulator"] == {"width": cfg.acc_width, "signed": sgn,
                                     "overflow": "wraps modulo 2**acc_width"}
        amin, amax = (-(2 ** (cfg.acc_width - 1)), 2 ** (cfg.acc_width - 1) - 1) if sgn else (0, 2 ** cfg.acc_width - 1)
        k = ar["max_k_without_overflow"]
        fits = lambda n: n * max(prods) <= amax and n * min(prods) >= amin  # noqa: E731
        assert fits(k) and not fits(k + 1)


# ----------------------------------------------------------------------------- atomicity

def _leftovers(parent: Path, out_name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != out_name)


def test_failure_in_to_verilog_leaves_no_files(tmp_path, monkeypatch):
    def boom(component, name):
        component._MustUse__used = True  # no UnusedElaboratable warning for the dropped component
        raise RuntimeError("injected failure in to_verilog")

    monkeypatch.setattr(G, "to_verilog", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        generate(CONFIGS[0], out)
    assert not out.exists() or list(out.iterdir()) == []
    assert _leftovers(tmp_path, "out") == []


def test_failure_after_verilog_written_leaves_no_files(tmp_path, monkeypatch):
    """The Verilog file is already written into the staging directory when the manifest
    fails: neither file may appear, and an existing output directory is untouched."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")

    class BadJson:
        @staticmethod
        def dumps(*a, **k):
            raise RuntimeError("injected failure in the manifest")

    monkeypatch.setattr(G, "json", BadJson)
    with pytest.raises(RuntimeError, match="injected"):
        generate(CONFIGS[1], out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "keep"
    assert _leftovers(tmp_path, "out") == []


def test_failure_while_moving_into_place_leaves_no_files(tmp_path):
    cfg = CONFIGS[0]
    out = tmp_path / "out"
    (out / f"{cfg.module_name}.v").mkdir(parents=True)
    (out / f"{cfg.module_name}.v" / "x").write_text("blocks the rename")
    with pytest.raises(OSError):
        generate(cfg, out)
    assert _leftovers(tmp_path, "out") == []
    assert sorted(p.name for p in out.iterdir()) == [f"{cfg.module_name}.v"]


@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield lambda m: os.umask(m)
    finally:
        os.umask(old)


def test_atomic_write_text_mode_and_no_temp_files(tmp_path, umask):
    umask(0o022)
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode("utf-8")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]
    atomic_write_text(p, "second")
    assert p.read_text() == "second"
    assert [x.name for x in p.parent.iterdir()] == ["f.txt"]
    umask(0o077)
    q = tmp_path / "g.bin"
    atomic_write_bytes(q, b"\x00\x01")
    assert stat.S_IMODE(q.stat().st_mode) == 0o600
    assert q.read_bytes() == b"\x00\x01"


def test_generated_files_have_normal_mode(tmp_path, umask):
    umask(0o022)
    res = generate(CONFIGS[0], tmp_path / "o")
    for key in ("verilog", "manifest_path"):
        assert stat.S_IMODE(res[key].stat().st_mode) == 0o644


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch, umask):
    import convgen.core.fileio as F

    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")

    def bad_replace(src, dst):
        raise OSError("injected replace failure")

    monkeypatch.setattr(F.os, "replace", bad_replace)
    with pytest.raises(OSError, match="injected"):
        atomic_write_text(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_port_table_lists_every_port_with_protocol_and_reset_polarity(tmp_path):
    from convgen.hdl.manifest import port_table

    res = generate(CONFIGS[0], tmp_path)
    table = port_table(res["manifest"])
    lines = table.splitlines()
    ports = [p["name"] for p in res["manifest"]["ports"]]
    body = [line.split()[0] for line in lines[3:]]
    assert body == ports                                   # every port once, in order
    assert "reset: synchronous, active high" in table and "rising edge" in table
    row = next(line for line in lines if line.split()[0] == "b__payload")
    w = CONFIGS[0].cols * CONFIGS[0].b_width
    assert f"data {CONFIGS[0].cols} x s{CONFIGS[0].b_width} @0; last u1 @{w}" in row
