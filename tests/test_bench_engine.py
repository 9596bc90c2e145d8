"""bench/engine.py's core (``measure``) on a tiny set of layers, on Verilator: every output
bit-exact against ``reference_conv``, ``layer_cycles`` equal to the measurement and
engine/array <= 1.05 on the compute-bound layers, depthwise at >= cols useful MACs per cycle.

The engine is the 3x4 one of tests/test_engine_rtl.py (same configuration and memory size),
so the cached Verilator model is shared with that test and this one stays well under 30 s."""

import importlib.util
from pathlib import Path

import pytest

from convgen.core.layer import ConvLayer
from convgen.hdl.engine import EngineConfig

ROOT = Path(__file__).resolve().parents[1]

# = tests/test_engine_rtl.py's CFG and mem_words (one cached build for both tests)
CFG = dict(rows=3, cols=4, vec=4, max_h=32, max_w=32, max_pixel_words=8, max_kernel=11, max_stride=4,
           max_pad=5, max_dilation=3, max_tiles=8, fetch_banks=3, weight_fifo=8)
MEM_WORDS = 1 << 12

LAYERS = [
    ("resnet50", "3x3 16>16", ConvLayer.square(12, 12, 16, 3, 1, 1, c_out=16)),
    ("resnet50", "1x1/2 32>32", ConvLayer.square(20, 20, 32, 1, 2, c_out=32)),
    ("resnet50", "3x3/2 8>12", ConvLayer.square(16, 16, 8, 3, 2, 1, c_out=12)),
    ("depthwise", "dw 3x3 C16", ConvLayer.square(12, 12, 16, 3, 1, 1, groups=16, c_out=16)),
    ("cin3", "7x7/2 C3", ConvLayer.square(12, 12, 3, 7, 2, 3, c_out=4)),
]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow   # a Verilator engine build and six layers, about 30 s (the default suite's budget)
def test_bench_engine_core_tiny_set():
    bench = _bench()
    cfg = EngineConfig(**CFG)
    out = bench.measure(cfg, MEM_WORDS, LAYERS, simulator="verilator", seed=3, io_baseline=False,
                        progress=lambda text: None)
    recs = {r["name"]: r for r in out["records"]}
    assert len(recs) == len(LAYERS) and all(r["correct"] for r in recs.values())
    for section, name, _ in LAYERS:
        r = recs[name]
        assert r["cycles"] >= r["formula_cycles"], (name, r["cycles"], r["formula_cycles"])
        if section == "cin3":   # 3 channels fill a chunk of rows = 3 lanes: compute-bound on this array
            continue
        assert r["compute_bound"], name
        assert r["cycles"] == r["formula_cycles"], (name, r["cycles"], r["formula_cycles"])
        assert r["ratio_engine_array"] <= 1.05, (name, r["ratio_engine_array"])
        if section == "depthwise":
            assert r["macs_per_cycle"] >= 0.95 * cfg.rows, (name, r["macs_per_cycle"])
        assert r["start_seconds"] is not None and r["start_seconds"] < 10


def test_bench_engine_catches_a_wrong_result(monkeypatch):
    """The comparison can fail: a reference that differs in one output raises Mismatch."""
    from convgen.golden import engine as ge
    bench = _bench()
    real = ge.reference_conv

    def off_by_one(q):
        y = real(q).copy()
        y.flat[-1] += 1
        return y

    monkeypatch.setattr(ge, "reference_conv", off_by_one)
    with pytest.raises(bench.Mismatch):
        bench.measure(EngineConfig(**CFG), MEM_WORDS, LAYERS[:1], simulator="verilator", io_baseline=False,
                      progress=lambda text: None)
