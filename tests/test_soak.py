"""The generic soak harness (convgen.sim.soak, bench/soak.py) with small counts: a block on
both simulators, the requantizer's gated parameter rewrites, and proof that it can fail: an
injected datapath bug gives mismatches, a lost beat and a duplicated beat show in the counts."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from convgen.hdl.generate import block_manifest, to_verilog
from convgen.hdl.lib import Queue
from convgen.sim import soak
from convgen.sim.soak_blocks import block
from convgen.sim.tools import SIMULATORS
from convgen.tb.lib.mutants import LossyQueue

ROOT = Path(__file__).resolve().parents[1]
STALLS = {"i": 30, "o": 40}


def _winograd_run(simulator, values, verilog=None, seed=1):
    blk = block("winograd")
    manifest = blk.manifest()
    b = soak.build_soak(verilog or blk.verilog(), manifest, simulator, depth=blk.depth)
    rd = blk.round(np.random.default_rng(seed), values, manifest)
    run = soak.run_soak(b, rd.stim, seed=seed, stall=STALLS, burst=4)
    return rd, run, soak.compare(manifest, rd.stim, run)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_winograd_soak_is_exact_with_random_stalls(simulator):
    rd, run, c = _winograd_run(simulator, 25_000)
    assert c.ok and c.mismatches == 0, c
    n_in = len(rd.stim.inputs["i"])
    assert run.ports["i"]["beats"] == n_in and run.ports["o"]["beats"] == len(rd.stim.expected["o"])
    # the LFSRs really dropped valid and ready, and the block really pushed back
    assert run.ports["i"]["drop"] > 0.1 * run.ports["i"]["active"]
    assert run.ports["o"]["drop"] > 0.1 * run.ports["o"]["active"]
    assert run.ports["o"]["bp"] > 0 and not run.timeout


def test_requant_parameter_rewrites_gated_both_ways():
    """Parameter writes and the accumulators that must see them, ordered by the harness's gates."""
    blk = block("requant_onnx")
    manifest = blk.manifest()
    b = soak.build_soak(blk.verilog(), manifest, "icarus", depth=blk.depth, gates=blk.gates)
    rd = blk.round(np.random.default_rng(7), 12_000, manifest)
    assert len(rd.stim.inputs["p"]) > blk.cfg.lanes * blk.cfg.groups      # rewrites after the first set
    run = soak.run_soak(b, rd.stim, seed=3, stall={"i": 30, "p": 50, "o": 30})
    c = soak.compare(manifest, rd.stim, run)
    assert c.ok, c


def test_injected_datapath_bug_is_caught():
    """One sign flipped in the generated input transform (B^T d, row 1): mismatches."""
    good = block("winograd").verilog()
    line = "assign bt_l1_3 = $signed(i__payload[63:56]) + $signed(i__payload[95:88]);"
    assert line in good
    _, run, c = _winograd_run("icarus", 10_000, good.replace(line, line.replace(" + ", " - ")))
    assert c.mismatches > 0 and c.lost == 0 and c.surplus == 0, c


def _pass_through(component, name):
    component._MustUse__silence = True
    manifest = block_manifest(component, name, block="lib", parameters={}, extra={})
    return to_verilog(component, name), manifest


def _identity_run(component, name, stall, max_cycles=None):
    verilog, manifest = _pass_through(component, name)
    b = soak.build_soak(verilog, manifest, "icarus", depth=4096)
    rng = np.random.default_rng(5)
    values = rng.integers(0, 256, 3000).tolist()
    stim = soak.Stimulus(inputs={"i": values}, expected={"o": values})
    run = soak.run_soak(b, stim, seed=9, stall=stall, burst=3, max_cycles=max_cycles)
    return run, soak.compare(manifest, stim, run)


class DuplicatingStage(wiring.Component):
    """A register stage that never clears ``o.valid``: once its input runs dry, the beat it holds
    goes out again, every cycle."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
        return m


def test_good_queue_passes_and_lost_beats_are_counted():
    run, c = _identity_run(Queue(8, 4), "soak_queue", {"i": 30, "o": 50})
    assert c.ok, c
    # reads its FIFO whatever o.ready says: beats vanish under backpressure
    run, c = _identity_run(LossyQueue(8, 4), "soak_lossy_queue", {"i": 30, "o": 50}, max_cycles=30_000)
    assert run.timeout and c.lost > 0 and c.surplus == 0, c


def test_duplicated_beat_is_counted_even_when_every_value_matches():
    # no input dropouts: the stage only repeats its last beat, after the stream ended, so every
    # expected value arrives in order and only the beat count shows the duplicate
    run, c = _identity_run(DuplicatingStage(), "soak_dup_stage", {"i": 0, "o": 50})
    assert c.mismatches == 0 and c.lost == 0 and c.surplus > 0, c
    assert not c.ok


def test_compare_counts_a_dropped_and_a_duplicated_beat():
    manifest = {"streams": {"o": {"direction": "out", "layout": {"kind": "int", "width": 8, "signed": False}}}}
    expected = list(range(10))
    stim = soak.Stimulus(inputs={}, expected={"o": expected})
    for got, lost, surplus in ((expected[:4] + expected[5:], 1, 0), (expected[:4] + [4] + expected[4:], 0, 1)):
        run = soak.SoakRun(0, False, {"o": {"beats": len(got)}}, {}, {"o": got}, 0.0)
        c = soak.compare(manifest, stim, run)
        assert (c.lost, c.surplus) == (lost, surplus) and c.mismatches > 0 and not c.ok


def test_bench_script_writes_the_report(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    status = mod.main(["--blocks", "winograd", "--sims", "icarus", "--values", "3000", "--icarus-minutes", "1",
                       "--out", str(tmp_path)])
    assert status == 0
    md = (tmp_path / "soak.md").read_text()
    assert "| WinogradConv3x3" in md and "**0** of" in md and "Machine:" in md
