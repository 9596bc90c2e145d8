"""Stream-protocol property sets of every block, as SymbiYosys jobs.

Each property set generates one small configuration of a block, wraps it with
:func:`formal.common.wrapper` (port names from the manifest) and adds the block's own checks:

- ``protocol`` (prove mode, k-induction): the amaranth.lib.stream rules on every port
  (assumed on inputs, asserted on outputs), reset returns to idle, and, for blocks with a step
  queue, no write into a full output FIFO (an assertion added inside the FIFO module).
- ``beats`` (BMC, stated depth): beat accounting against the tile size. Counters of the
  wrapper, cleared by reset, count the units in (tiles, frames, beats) and the beats out;
  asserted: never more out than in x ratio (no duplicated or invented beat, also none from
  before a reset), at most the block's capacity in flight, and after ``drain`` cycles with no
  input offered and ``o.ready`` high, out == in x ratio (no lost beat). Reset may be raised in
  any cycle, so beats in flight at a reset must vanish. Framing flags (``last``) are checked
  against the beat index.

The k-induction of a beat count needs an invariant tying the wrapper's counters to the
block's internal state, which the block does not expose; the beat properties are therefore
bounded (docs/formal.md). Im2col exposes ``busy``, which is such an invariant: its layer
accounting is proved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from amaranth.hdl import signed

from .common import (Dut, Mutant, SbyJob, counter_bits, generate, replace_once, replace_re,
                     with_fifo_overflow_checks, wrapper)


@dataclass
class PropertySet:
    name: str
    mode: str
    depth: int
    build: Callable[[Callable[[str], str] | None], SbyJob]   # mutate -> job
    quick: bool = True       # part of the default-suite subset
    mutants: list[Mutant] = field(default_factory=list)   # bugs it must catch (status FAIL)

    def job(self, mutate=None) -> SbyJob:
        return self.build(mutate)


def _job(dut: Dut, props: str, mode: str, depth: int, *, idle: str = "", fifo_checks: int = 0) -> SbyJob:
    if fifo_checks:
        dut, found = with_fifo_overflow_checks(dut)
        if found != fifo_checks:
            raise RuntimeError(f"{dut.name}: expected {fifo_checks} step-queue FIFO(s), found {found}")
    return SbyJob({f"{dut.name}.v": dut.verilog,
                   "formal_top.sv": wrapper(dut, props=props, idle_after_reset=idle)},
                  "formal_top", mode, depth)


def _any_valid(dut: Dut) -> str:
    ins = [s["valid"] for s in dut.manifest["streams"].values() if s["direction"] == "in"]
    return " || ".join(ins) if ins else "1'b0"


def beat_accounting(dut: Dut, *, unit_in: str, units: str, out: str = "o", out_unit: str | None = None,
                    capacity: int, drain: int, depth: int, drain_when: str = "1'b1",
                    quiet_ignores: tuple[str, ...] = ()) -> str:
    """Verilog for the beat accounting described in the module docstring.

    ``unit_in``: condition (besides ``!rst``) under which input units arrive, ``units`` how many
    output beats they owe (a Verilog expression); ``out_unit``: an output beat counts when this
    holds (default: every transfer on ``out``); ``capacity``: most beats owed but not yet out;
    ``drain``: quiet cycles after which nothing is owed, when ``drain_when`` holds too;
    ``quiet_ignores``: input streams whose ``valid`` does not break a quiet period.
    """
    s = dut.stream(out)
    w = counter_bits(max(capacity, 64)) + 1
    fire = f"({s['valid']} && {s['ready']}{' && ' + out_unit if out_unit else ''})"
    ins = [st["valid"] for n, st in dut.manifest["streams"].items() if st["direction"] == "in" and n not in quiet_ignores]
    offered = " || ".join(ins) if ins else "1'b0"
    return f"""
  // ---- beat accounting: f_owed = output beats due for the input units taken since reset,
  // minus the output beats sent (one signed counter: no wrap-around for k-induction to exploit)
  reg signed [{w - 1}:0] f_owed = 0;
  reg [7:0] f_quiet = 0;
  wire f_out_fire = {fire};
  always @(posedge clk) begin
    if (rst) f_owed <= 0;
    else f_owed <= f_owed + (({unit_in}) ? ({units}) : 0) - (f_out_fire ? 1 : 0);
    if (rst || {offered} || !{s['ready']}) f_quiet <= 0;
    else if (f_quiet != 8'hff) f_quiet <= f_quiet + 1;
  end
  always @(posedge clk) if (f_past && !f_rst_q) begin
    assert(f_owed >= 0);                            // no duplicated or invented beat
    assert(f_owed <= {capacity});                   // bounded number in flight
    if (f_quiet >= {drain} && ({drain_when}))
      assert(f_owed == 0);                          // no lost beat
  end
"""


def last_framing(dut: Dut, *, out: str = "o", field: str = "last", period: int, depth: int) -> str:
    """``last`` is set exactly on every ``period``-th output beat (counted from reset)."""
    s = dut.stream(out)
    w = counter_bits(period)
    return f"""
  // ---- framing: {field} marks beat {period - 1} of every {period}
  reg [{w - 1}:0] f_idx = 0;
  always @(posedge clk)
    if (rst) f_idx <= 0;
    else if ({s['valid']} && {s['ready']}) f_idx <= (f_idx == {period - 1}) ? 0 : f_idx + 1;
  always @(posedge clk) if (f_past && !f_rst_q && {s['valid']}) assert({dut.field(out, field)} == (f_idx == {period - 1}));
"""


# ----------------------------------------------------------------------------------------------
# blocks
def _systolic(dataflow: str, rows: int, cols: int):
    from convgen.hdl.systolic import SystolicArray, SystolicConfig
    cfg = SystolicConfig(rows=rows, cols=cols, dataflow=dataflow, a_width=2, b_width=2, acc_width=8)
    return cfg, SystolicArray(cfg)


def systolic_protocol(dataflow, rows, cols, depth):
    def build(mutate):
        cfg, comp = _systolic(dataflow, rows, cols)
        dut = generate(comp, cfg.module_name, mutate=mutate)
        return _job(dut, "", "prove", depth, fifo_checks=1)
    return build


def systolic_beats(dataflow, rows, cols, depth):
    def build(mutate):
        from convgen.hdl.systolic import OUTPUT_FIFO_DEPTH
        cfg, comp = _systolic(dataflow, rows, cols)
        dut = generate(comp, cfg.module_name, mutate=mutate)
        a, b = dut.stream("a"), dut.stream("b")
        b_last = dut.field("b", "last")
        take_b_last = f"!rst && {b['valid']} && {b['ready']} && {b_last}"
        # after the last input: the pipeline of a tile, then a full output FIFO
        drain = cfg.tile_cycles(1) + rows + 2
        extra, when = "", "1'b1"
        if dataflow == "ws":
            # the last chunk of a tile computes once its `rows` a-beats are in: the drain
            # condition requires every b tile complete and rows a-beats for each of its chunks
            wc = counter_bits(depth * 4)
            extra = f"""
  reg [{wc - 1}:0] f_chunks = 0, f_abeats = 0;
  reg [{counter_bits(rows) - 1}:0] f_bk = 0;
  reg f_bpart = 0;
  always @(posedge clk)
    if (rst) begin f_chunks <= 0; f_abeats <= 0; f_bk <= 0; f_bpart <= 0; end
    else begin
      if ({b['valid']} && {b['ready']}) begin
        if (f_bk == 0) f_chunks <= f_chunks + 1;
        f_bk <= ({b_last} || f_bk == {rows - 1}) ? 0 : f_bk + 1;
        f_bpart <= !{b_last};
      end
      if ({a['valid']} && {a['ready']}) f_abeats <= f_abeats + 1;
    end
"""
            when = f"!f_bpart && f_abeats == {rows} * f_chunks"
        props = extra + beat_accounting(
            dut, unit_in=take_b_last, units=str(rows), capacity=OUTPUT_FIFO_DEPTH + rows * (cfg.tile_cycles(1) + 2), drain=drain,
            depth=depth, drain_when=when) + last_framing(dut, period=rows, depth=depth)
        return _job(dut, props, "bmc", depth, fifo_checks=1)
    return build


def _requant(rounding: str, lanes: int):
    from convgen.hdl.requant import RequantConfig, Requantizer
    cfg = RequantConfig(lanes=lanes, groups=2, rounding=rounding, out_width=4)
    return cfg, Requantizer(cfg)


def requant_protocol(rounding, lanes, depth):
    def build(mutate):
        cfg, comp = _requant(rounding, lanes)
        return _job(generate(comp, cfg.module_name, mutate=mutate), "", "prove", depth, fifo_checks=1)
    return build


def requant_beats(rounding, lanes, depth):
    def build(mutate):
        from convgen.hdl.requant import OUTPUT_FIFO_DEPTH
        cfg, comp = _requant(rounding, lanes)
        dut = generate(comp, cfg.module_name, mutate=mutate)
        i = dut.stream("i")
        props = beat_accounting(dut, unit_in=f"!rst && {i['valid']} && {i['ready']}", units="1",
                                capacity=cfg.stages + OUTPUT_FIFO_DEPTH, drain=cfg.latency + 2, depth=depth,
                                quiet_ignores=("p",))
        return _job(dut, props, "bmc", depth, fifo_checks=1)
    return build


def _im2col():
    from convgen.hdl.im2col import Im2colAddressGenerator, Im2colConfig
    cfg = Im2colConfig(max_h=3, max_w=3, max_c=2, max_kernel=2, max_stride=2, max_pad=1, max_dilation=2,
                       tile_rows=2)
    return cfg, Im2colAddressGenerator(cfg)


def im2col_layers(depth, mode="prove"):
    """Layer accounting: every accepted configuration ends in exactly one ``end`` beat or one
    rise of ``error``; ``busy`` is high exactly while one is owed; ``o.valid`` only while busy."""
    def build(mutate):
        cfg, comp = _im2col()
        dut = generate(comp, cfg.module_name, mutate=mutate)
        c, o = dut.stream("cfg"), dut.stream("o")
        end = dut.field("o", "end")
        props = f"""
  // f_open: configurations taken minus layers finished (end beat sent or error raised)
  reg signed [3:0] f_open = 0;
  reg f_err_q = 0;
  wire f_rise = error && !f_err_q;
  wire f_cfg_fire = {c['valid']} && {c['ready']};
  wire f_done = ({o['valid']} && {o['ready']} && {end}) || f_rise;
  always @(posedge clk) begin
    f_err_q <= rst ? 1'b0 : error;
    if (rst) f_open <= 0;
    else f_open <= f_open + (f_cfg_fire ? 1 : 0) - (f_done ? 1 : 0);
  end
  always @(posedge clk) if (f_past && !f_rst_q) begin
    assert(busy == !{c['ready']});
    assert(!{o['valid']} || busy);
    assert(f_open == f_rise + busy);                // one end beat or one error per layer
  end
"""
        return _job(dut, props, mode, depth, idle=f"{c['ready']} && !busy && !error")
    return build


def _winograd(kind: str, **widths):
    from convgen.hdl.winograd import BLOCKS, WinogradConfig
    cfg = WinogradConfig(**widths)
    return cfg, BLOCKS[kind](cfg)


def winograd_protocol(kind, depth, **widths):
    def build(mutate):
        cfg, comp = _winograd(kind, **widths)
        dut = generate(comp, cfg.module_name(kind), mutate=mutate)
        i = dut.stream("i")
        if kind == "conv3x3":
            unit = f"!rst && {i['valid']} && {i['ready']} && {dut.field('i', 'last')}"
            cap = 3
        else:
            unit, cap = f"!rst && {i['valid']} && {i['ready']}", 1
        props = beat_accounting(dut, unit_in=unit, units="1", capacity=cap, drain=6, depth=depth)
        if kind != "conv3x3":   # a PipelineStage: the one beat owed is the one in its register
            props += f"  always @(posedge clk) if (f_past && !f_rst_q) assert(f_owed == {dut.stream('o')['valid']});\n"
        return _job(dut, props, "prove" if kind != "conv3x3" else "bmc", depth)
    return build


# ---- hdl/lib pieces ----------------------------------------------------------------------------
def lib_piece(kind: str, depth: int, mode: str):
    def build(mutate):
        from convgen.hdl import lib
        shape = 4
        fifo_checks = 0
        if kind == "PipelineStage":
            comp, cap, name = lib.PipelineStage(shape), 1, "lib_pipeline_stage"
        elif kind == "SkidBuffer":
            comp, cap, name = lib.SkidBuffer(shape), 2, "lib_skid_buffer"
        elif kind.startswith("Queue"):
            d = int(kind[5:])
            comp, cap, name = lib.Queue(shape, d), d, f"lib_queue_d{d}"
        elif kind == "StepQueue":
            comp, cap, name = lib.StepQueue(shape, 5, registered_enable=True), 5, "lib_step_queue_d5r"
            fifo_checks = 0   # its FIFO is the submodule "ofifo" of a StepQueue: checked below
        elif kind == "ReducePipeline":
            from amaranth.lib import data
            comp = lib.ReducePipeline(data.StructLayout({"x": 2, "last": 1}), 3, stages=2)
            cap, name = 3, "lib_reduce_pipeline_s2"
        else:
            raise ValueError(kind)
        dut = generate(comp, name, mutate=mutate)
        if kind == "StepQueue":
            dut, found = with_fifo_overflow_checks(dut)
            assert found == 1, found
        i = dut.stream("i")
        if kind in ("StepQueue", "Queue3") and mode == "prove":
            # its beat count needs the inner FIFO level, which no port shows: bounded below
            return _job(dut, "", mode, depth)
        unit = f"!rst && {i['valid']} && {i['ready']}"
        if kind == "ReducePipeline":
            unit += f" && {dut.field('i', 'last')}"
        props = beat_accounting(dut, unit_in=unit, units="1", capacity=cap, drain=cap + 2, depth=depth)
        o = dut.stream("o")
        # the invariant that makes the count inductive, from ports only
        held = {"PipelineStage": o["valid"], "SkidBuffer": f"{o['valid']} + !{i['ready']}",
                "Queue1": "level", "Queue2": "level", "Queue3": "level"}.get(kind)
        if held is not None:
            props += f"  always @(posedge clk) if (f_past && !f_rst_q) assert(f_owed == {held});\n"
        return _job(dut, props, mode, depth, fifo_checks=fifo_checks)
    return build


# ---- mutants: one plausible bug per property set, each an edit of the generated Verilog ----------
#: SystolicArray's registered step enable stalls at FIFO level > depth - 3 (6 - 3 = 3); at
#: > depth - 1 the pipeline still advances after the FIFO has filled and a row is dropped
M_SYSTOLIC_THRESHOLD = Mutant("step-enable threshold depth-1 instead of depth-3 (FIFO overflow)",
                              replace_once("level > 2'h3;", "level > 3'h5;"))
#: Requantizer's combinational step enable is the output FIFO's w_rdy; tied high, the pipeline
#: advances while the FIFO is full and the beat written into it is dropped
M_REQUANT_ENABLE = Mutant("step enable ignores a full output FIFO",
                          replace_once("assign en = i__ready;", "assign en = 1'h1;"))
#: Requantizer writes its output FIFO in every enabled cycle, not only for a valid beat: bubbles
#: become invented beats (caught within a few cycles; M_REQUANT_ENABLE needs a full FIFO and a
#: drain, more cycles than the beats BMC depth)
M_REQUANT_BUBBLE = Mutant("output FIFO written without a valid beat (bubbles become beats)",
                          replace_re(r"assign w_en = i__ready & v\d+;", "assign w_en = i__ready;"))
#: im2col flags the end of the layer after the last tile of any group, not of the last group
M_IM2COL_END = Mutant("end flag without the last-group condition",
                      replace_re(r"(assign layer_end = \\\$\d+ ) & g_last;", r"\1;"))
#: a PipelineStage (first one in the text) that is always ready: a stalled beat is overwritten
M_STAGE_ALWAYS_READY = Mutant("pipeline stage always ready (stalled beat overwritten)",
                              replace_once("assign i__ready = \\$1  | o__ready;", "assign i__ready = 1'h1;"))
M_STAGE_DROPS_VALID = Mutant("pipeline stage drops valid while stalled",
                             replace_re(r"end else if \(o__ready\) begin\n(\s+\\\$\d+  = 1'h0;)",
                                        r"end else begin\n\1"))
M_STAGE_RESET = Mutant("reset does not clear the pipeline stage's valid",
                       replace_re(r"(= 1'h0;\n    end)\n    if \(rst\) begin\n\s+\\\$\d+  = 1'h0;\n    end", r"\1"))
M_SKID_OVERWRITE = Mutant("skid buffer always ready (skid register overwritten)",
                          replace_once("assign i__ready = ~ skid_valid;", "assign i__ready = 1'h1;"))
M_OUT_FIFO_LOSSY = Mutant("output FIFO read ignoring o.ready (valid dropped while stalled)",
                          replace_once(".r_en(o__ready),", ".r_en(1'h1),"))
M_QUEUE_LOSSY = Mutant("queue reads its FIFO ignoring o.ready (beats lost)",
                       replace_once(".r_en(o__ready),", ".r_en(1'h1),"))
M_STEPQUEUE_LATE = Mutant("registered enable at level > depth-1 (LateStepQueue, FIFO overflow)",
                          replace_once("level > 2'h2;", "level > 3'h4;"))


def property_sets() -> list[PropertySet]:
    P = PropertySet
    sets = []
    stage = [M_STAGE_ALWAYS_READY]
    for df in ("os", "ws"):
        sets.append(P(f"systolic {df} 2x2: protocol, FIFO", "prove", 6, systolic_protocol(df, 2, 2, 6),
                      mutants=[M_OUT_FIFO_LOSSY, M_SYSTOLIC_THRESHOLD]))
        d = 20 if df == "os" else 24
        sets.append(P(f"systolic {df} 2x2: beats, last", "bmc", d, systolic_beats(df, 2, 2, d), quick=False,
                      mutants=[M_SYSTOLIC_THRESHOLD]))
    sets.append(P("systolic os 1x3: beats, last", "bmc", 20, systolic_beats("os", 1, 3, 20), quick=False,
                  mutants=[M_SYSTOLIC_THRESHOLD]))
    sets.append(P("systolic ws 3x1: beats, last", "bmc", 24, systolic_beats("ws", 3, 1, 24), quick=False,
                  mutants=[M_SYSTOLIC_THRESHOLD]))
    for rounding in ("tflite", "tflite_single", "onnx"):
        for lanes in (1, 2):
            q = lanes == 1
            sets.append(P(f"requant {rounding} l{lanes}: protocol, FIFO", "prove", 4,
                          requant_protocol(rounding, lanes, 4), quick=q, mutants=[M_OUT_FIFO_LOSSY]))
            sets.append(P(f"requant {rounding} l{lanes}: beats", "bmc", 20,
                          requant_beats(rounding, lanes, 20), quick=q, mutants=[M_REQUANT_BUBBLE]))
    sets.append(P("im2col 3x3x2 k2 t2: protocol, layers", "prove", 8, im2col_layers(8), mutants=[M_IM2COL_END]))
    for kind in ("input_transform", "filter_transform", "output_transform", "f23"):
        sets.append(P(f"winograd {kind}: protocol, beats", "prove", 4,
                      winograd_protocol(kind, 4, data_width=4, weight_width=4, out_width=16), mutants=stage))
    sets.append(P("winograd conv3x3 d3g3: protocol, frames", "bmc", 16,
                  winograd_protocol("conv3x3", 16, data_width=3, weight_width=3, out_width=16), mutants=stage))
    lib_mutants = {"PipelineStage": [M_STAGE_ALWAYS_READY, M_STAGE_DROPS_VALID, M_STAGE_RESET],
                   "SkidBuffer": [M_SKID_OVERWRITE], "Queue1": [M_QUEUE_LOSSY], "Queue2": [M_QUEUE_LOSSY]}
    for kind in ("PipelineStage", "SkidBuffer", "Queue1", "Queue2"):
        sets.append(P(f"lib {kind}: protocol, beats", "prove", 8, lib_piece(kind, 8, "prove"),
                      mutants=lib_mutants[kind]))
    sets.append(P("lib Queue3: protocol", "prove", 8, lib_piece("Queue3", 8, "prove"), mutants=[M_QUEUE_LOSSY]))
    sets.append(P("lib Queue3: beats", "bmc", 20, lib_piece("Queue3", 20, "bmc"), mutants=[M_QUEUE_LOSSY]))
    sets.append(P("lib StepQueue d5 registered: protocol, FIFO", "prove", 6, lib_piece("StepQueue", 6, "prove"),
                  mutants=[M_STEPQUEUE_LATE]))
    sets.append(P("lib StepQueue d5 registered: beats", "bmc", 20, lib_piece("StepQueue", 20, "bmc"),
                  mutants=[M_STEPQUEUE_LATE]))
    sets.append(P("lib ReducePipeline s2: protocol, frames", "bmc", 20, lib_piece("ReducePipeline", 20, "bmc"),
                  mutants=stage))
    return sets
