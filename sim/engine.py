"""Free-running simulation of the ConvEngine: no Python in the clock loop.

A plain-Verilog testbench (:func:`testbench_verilog`) instantiates the engine and four
behavioural memories. NumPy writes the memory images and the descriptors as ``$readmemh``
files; the simulator runs until every descriptor has finished (``done``, or ``error``), then
dumps the output memory with ``$writememh`` and prints one line per layer (status, engine cycle
counter, writes). Each read memory answers in request order after ``latency`` + a random
0..``jitter`` cycles and refuses requests ``stall`` percent of the time, both from a seeded LFSR,
so random timing runs at full simulator speed too.

Builds (Icarus: iverilog; Verilator: ``--cc --exe --build`` with a small C++ main) are cached
under ``cache_root()/engine`` by a hash of the Verilog, the simulator and its version, with a
file lock (safe under pytest-xdist).

:func:`run_conv` runs one quantized layer (:class:`convgen.golden.engine.QuantConv`) and returns
the output and the measured cycles; :func:`run_layers` runs several back to back (and optional
resets mid-layer) on one model.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convgen.core.params import ConfigError, check_choice
from convgen.golden import engine as ge
from convgen.hdl.engine import ConvEngine, EngineConfig, manifest_extra

from .build import FREE_RUNNING_FLAGS, FREE_RUNNING_MAIN, FREE_RUNNING_MAIN_TRACE, VERILATOR_SIM_FLAGS, \
    SimulationFailed, build_free_running, cached_verilog, copy_waves, \
    work_directory
from .tools import SIMULATORS, simulator_env

__all__ = ["EngineBuild", "LayerJob", "LayerResult", "build_engine", "run_layers", "run_conv", "ConvResult",
           "testbench_verilog", "job_from_quant", "generate", "engine_verilog", "engine_config_for",
           "prepare_conv", "formula_cycles", "engine_form", "export_test", "expected_words"]

TB_TOP = "convgen_engine_tb"


# -- bit packing from the Amaranth layouts ---------------------------------------------------
def _layout_fields(layout) -> dict[str, tuple[int, int]]:
    from amaranth.hdl import Shape

    return {name: (f.offset, Shape.cast(f.shape).width) for name, f in layout}


def pack_struct(layout, values: dict) -> int:
    """One integer word from field values (two's complement into each field's width);
    ValueError if a value does not fit its field."""
    word = 0
    for name, (off, width) in _layout_fields(layout).items():
        v = int(values.get(name, 0))
        if not -(1 << width) < v < (1 << width):
            raise ConfigError(f"descriptor field {name}={v} does not fit its {width}-bit field")
        word |= (v & ((1 << width) - 1)) << off
    return word


def _bytes_words(a: np.ndarray) -> list[int]:
    """Rows of int8/uint8 values -> integers, element e in bits 8e+7..8e."""
    a = (np.asarray(a, dtype=np.int64) & 0xFF).astype(np.uint64)
    out = np.zeros(a.shape[0], dtype=object)
    for e in range(a.shape[1]):
        out = out + (a[:, e].astype(object) << (8 * e))
    return [int(v) for v in out]


def _write_hex(path: Path, words, width: int) -> None:
    digits = max(1, -(-width // 4))
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))


def _read_hex(path: Path) -> list[int]:
    out = []
    for line in path.read_text().split("\n"):
        line = line.strip()
        if not line or line.startswith("//") or line.startswith("@"):
            continue
        out.append(int(line.replace("x", "0").replace("X", "0").replace("z", "0"), 16))
    return out


# -- testbench -------------------------------------------------------------------------------
def testbench_verilog(cfg: EngineConfig, module: str, mem_words: int, *, check: bool = False,
                      trace: bool = False) -> str:
    """The free-running testbench top (``convgen_engine_tb``, input ``clk``) and a clock wrapper
    for Icarus (``convgen_engine_tb_clock``).

    ``check``: at the end, compare the output memory with ``y_expected.hex`` under the byte
    mask ``y_mask.hex`` and print ``CHECK PASS ...`` or ``CHECK FAIL ...`` (a layer that ends
    in ``error`` or a timeout fails too): the standalone test of :func:`export_test`.

    ``trace``: the top dumps every signal to ``waves.fst`` when the plusarg ``+fst`` is given
    (``$dumpfile``/``$dumpvars``, for a Verilator build with ``--trace-fst``; the Icarus clock
    wrapper has its own ``+vcd``). Without it the text is exactly the untraced testbench, so
    cached builds stay valid."""
    aw = cfg.addr_width
    mbits = max(1, (mem_words - 1).bit_length())
    dw = cfg.desc_layout.size
    pw = cfg.param_layout.size
    xw, cw = 8 * cfg.vec, 8 * cfg.cols
    check_decl = CHECK_DECL.replace("CHECK_COLS", str(cfg.cols)).replace("CHECK_WORDS", str(mem_words)) if check else ""
    check_error = CHECK_ERROR if check else ""
    trace_decl = TRACE_DECL.replace("TB_TOP", TB_TOP) if trace else ""
    check_end = CHECK_END if check else ""
    check_timeout, check_timeout_end = ("begin run_failed <= 1; ", " end") if check else ("", "")
    return f"""
// generated by convgen.sim.engine: free-running testbench of {module}
module convgen_engine_rdmem #(parameter DW = 8, parameter FILE = "x.hex", parameter SALT = 1) (
    input clk, input rst, input [31:0] seed, input [31:0] stall_pct, input [31:0] lat, input [31:0] jitter,
    input [31:0] now,
    input req_valid, output req_ready, input [{aw - 1}:0] req_addr,
    output rsp_valid, input rsp_ready, output [DW-1:0] rsp_data);
    reg [DW-1:0] mem [0:{mem_words - 1}];
    reg [DW-1:0] qd [0:15];
    reg [31:0] qt [0:15];
    reg [3:0] head, tail;
    reg [4:0] count;
    reg [31:0] last_t, lfsr;
    initial $readmemh(FILE, mem);
    wire stall = (lfsr[15:0] % 100) < stall_pct[15:0];
    assign req_ready = (count < 5'd14) && !stall && !rst;
    assign rsp_valid = (count != 5'd0) && (qt[head] <= now) && !rst;
    assign rsp_data = qd[head];
    wire push = req_valid && req_ready;
    wire pop = rsp_valid && rsp_ready;
    wire [31:0] extra = (jitter == 32'd0) ? 32'd0 : ({{16'd0, lfsr[31:16]}} % (jitter + 32'd1));
    wire [31:0] want = now + lat + extra;
    always @(posedge clk) begin
        if (rst) begin
            head <= 4'd0; tail <= 4'd0; count <= 5'd0; last_t <= 32'd0;
            lfsr <= seed ^ (32'h9E3779B9 * SALT) ^ 32'h1;
        end else begin
            lfsr <= (lfsr == 32'd0) ? 32'h1 : ({{lfsr[30:0], 1'b0}} ^ (lfsr[31] ? 32'h04C11DB7 : 32'd0)) ^ (lfsr >> 7);
            if (push) begin
                qd[tail] <= mem[req_addr[{mbits - 1}:0]];
                qt[tail] <= (want > last_t) ? want : last_t;
                last_t <= (want > last_t) ? want : last_t;
                tail <= tail + 4'd1;
            end
            if (pop) head <= head + 4'd1;
            count <= count + {{4'd0, push}} - {{4'd0, pop}};
        end
    end
endmodule

module {TB_TOP} (input clk);
    reg [{dw - 1}:0] dmem [0:255];
    reg [{cw - 1}:0] ymem [0:{mem_words - 1}];
    integer seed, stall_pct, lat, jitter, ndesc, max_cycles, reset_at, ywords, i;
    reg [31:0] cyc;
    reg rst;
    reg [7:0] rst_hold;
    reg [8:0] cur, fin;
    reg err_q, finished;
    reg [31:0] writes, lfsr_y;
    reg [31:0] drain;{check_decl}{trace_decl}
    initial begin
        for (i = 0; i < {mem_words}; i = i + 1) ymem[i] = {cw}'d0;
        $readmemh("y.hex", ymem);
        $readmemh("desc.hex", dmem);
        if (!$value$plusargs("seed=%d", seed)) seed = 1;
        if (!$value$plusargs("stall=%d", stall_pct)) stall_pct = 0;
        if (!$value$plusargs("lat=%d", lat)) lat = 1;
        if (!$value$plusargs("jitter=%d", jitter)) jitter = 0;
        if (!$value$plusargs("ndesc=%d", ndesc)) ndesc = 1;
        if (!$value$plusargs("max_cycles=%d", max_cycles)) max_cycles = 100000000;
        if (!$value$plusargs("reset_at=%d", reset_at)) reset_at = -1;
        if (!$value$plusargs("ywords=%d", ywords)) ywords = 1;
        cyc = 0; cur = 0; fin = 0; err_q = 0; writes = 0; finished = 0; drain = 0;
        rst = 1; rst_hold = 8'd4;
    end
    wire desc_valid = !rst && (cur < ndesc);
    wire desc_ready, busy, done, error;
    wire [31:0] cycles;
    wire xq_v, xq_r, xs_v, wq_v, wq_r, ws_v, pq_v, pq_r, ps_v, y_v;
    wire xs_r, ws_r, ps_r;
    wire [{aw - 1}:0] xq_a, wq_a, pq_a;
    wire [{xw - 1}:0] xs_d;
    wire [{cw - 1}:0] ws_d;
    wire [{pw - 1}:0] ps_d;
    wire [{aw + cw - 1}:0] y_p;
    wire y_stall = ((lfsr_y[15:0] % 100) < stall_pct[15:0]);
    wire y_r = !y_stall && !rst;
    {module} dut (
        .clk(clk), .rst(rst),
        .desc__valid(desc_valid), .desc__ready(desc_ready), .desc__payload(dmem[cur[7:0]]),
        .x_req__valid(xq_v), .x_req__ready(xq_r), .x_req__payload(xq_a),
        .x_rsp__valid(xs_v), .x_rsp__ready(xs_r), .x_rsp__payload(xs_d),
        .w_req__valid(wq_v), .w_req__ready(wq_r), .w_req__payload(wq_a),
        .w_rsp__valid(ws_v), .w_rsp__ready(ws_r), .w_rsp__payload(ws_d),
        .p_req__valid(pq_v), .p_req__ready(pq_r), .p_req__payload(pq_a),
        .p_rsp__valid(ps_v), .p_rsp__ready(ps_r), .p_rsp__payload(ps_d),
        .y_req__valid(y_v), .y_req__ready(y_r), .y_req__payload(y_p),
        .busy(busy), .done(done), .error(error), .cycles(cycles));
    convgen_engine_rdmem #(.DW({xw}), .FILE("x.hex"), .SALT(1)) mx (
        .clk(clk), .rst(rst), .seed(seed), .stall_pct(stall_pct), .lat(lat), .jitter(jitter), .now(cyc),
        .req_valid(xq_v), .req_ready(xq_r), .req_addr(xq_a), .rsp_valid(xs_v), .rsp_ready(xs_r), .rsp_data(xs_d));
    convgen_engine_rdmem #(.DW({cw}), .FILE("w.hex"), .SALT(2)) mw (
        .clk(clk), .rst(rst), .seed(seed), .stall_pct(stall_pct), .lat(lat), .jitter(jitter), .now(cyc),
        .req_valid(wq_v), .req_ready(wq_r), .req_addr(wq_a), .rsp_valid(ws_v), .rsp_ready(ws_r), .rsp_data(ws_d));
    convgen_engine_rdmem #(.DW({pw}), .FILE("p.hex"), .SALT(3)) mp (
        .clk(clk), .rst(rst), .seed(seed), .stall_pct(stall_pct), .lat(lat), .jitter(jitter), .now(cyc),
        .req_valid(pq_v), .req_ready(pq_r), .req_addr(pq_a), .rsp_valid(ps_v), .rsp_ready(ps_r), .rsp_data(ps_d));
    always @(posedge clk) begin
        cyc <= cyc + 32'd1;
        lfsr_y <= rst ? (seed ^ 32'h5bd1e995 ^ 32'h1) :
                  ((lfsr_y == 32'd0) ? 32'h1 : ({{lfsr_y[30:0], 1'b0}} ^ (lfsr_y[31] ? 32'h04C11DB7 : 32'd0)) ^ (lfsr_y >> 7));
        if (rst_hold != 8'd0) begin
            rst_hold <= rst_hold - 8'd1;
            rst <= (rst_hold != 8'd1);
        end
        if (!rst && cyc == reset_at) begin
            rst <= 1; rst_hold <= 8'd3;
            if (cur > fin) begin   // a layer was accepted and has not finished
                $display("LAYER %0d ABORT cycles=%0d writes=%0d", fin, cycles, writes);
                fin <= fin + 9'd1; writes <= 0;
            end
        end else if (!rst) begin
            err_q <= error;
            if (desc_valid && desc_ready) begin
                cur <= cur + 9'd1;
            end
            if (y_v && y_r) begin
                ymem[y_p[{aw - 1}:0]] <= y_p[{aw + cw - 1}:{aw}];
                writes <= writes + 32'd1;
            end
            if (done) begin
                $display("LAYER %0d OK cycles=%0d writes=%0d", fin, cycles, writes);
                fin <= fin + 9'd1; writes <= 0;
            end
            if (error && !err_q) begin{check_error}
                $display("LAYER %0d ERROR cycles=%0d writes=%0d", fin, cycles, writes);
                fin <= fin + 9'd1; writes <= 0;
            end
        end
        if (!finished && (fin >= ndesc || cyc >= max_cycles)) begin
            finished <= 1;
            if (fin < ndesc) {check_timeout}$display("TIMEOUT at cycle %0d", cyc);{check_timeout_end}
        end
        if (finished) begin
            drain <= drain + 32'd1;
            if (drain == 32'd20) begin
                $writememh("y_out.hex", ymem, 0, ywords - 1);{check_end}
                $display("END cycle=%0d", cyc);
                $finish;
            end
        end
    end
endmodule

module {TB_TOP}_clock;
    reg clk = 0;
    always #5 clk = ~clk;
    initial if ($test$plusargs("vcd")) begin $dumpfile("waves.vcd"); $dumpvars(0, tb); end
    {TB_TOP} tb (.clk(clk));
endmodule
"""


# the waveform of a tracing Verilator build (testbench_verilog(trace=True)), only when asked
TRACE_DECL = """
    initial if ($test$plusargs("fst")) begin
        $dumpfile("waves.fst");
        $dumpvars(0, TB_TOP);
    end"""

# the output check of an exported standalone test (testbench_verilog(check=True)); with the
# define CONVGEN_FATAL_ON_FAIL (CHECK_FAIL_DEFINE, which the export's FuseSoC core sets) a failed
# check ends with $fatal, a non-zero exit status on Icarus and Verilator; without the define the
# text stays Verilog-2005
CHECK_FAIL_DEFINE = "CONVGEN_FATAL_ON_FAIL"
CHECK_DECL = """
    reg [8 * CHECK_COLS - 1:0] yexp [0:CHECK_WORDS - 1];
    reg [8 * CHECK_COLS - 1:0] ymask [0:CHECK_WORDS - 1];
    integer bad, first_bad, k;
    reg run_failed;
    initial begin
        $readmemh("y_expected.hex", yexp);
        $readmemh("y_mask.hex", ymask);
        run_failed = 0;
    end"""
CHECK_ERROR = """
                run_failed <= 1;"""
CHECK_END = """
                bad = 0; first_bad = -1;
                for (k = 0; k < ywords; k = k + 1)
                    if ((ymem[k] & ymask[k]) != (yexp[k] & ymask[k])) begin
                        if (bad == 0) first_bad = k;
                        bad = bad + 1;
                    end
                if (bad == 0 && !run_failed)
                    $display("CHECK PASS: %0d output words equal y_expected.hex", ywords);
                else if (run_failed)
                    $display("CHECK FAIL: a layer ended in error or timed out");
                else
                    $display("CHECK FAIL: %0d of %0d output words differ, first at word %0d: got %h, want %h (mask %h)",
                             bad, ywords, first_bad, ymem[first_bad], yexp[first_bad], ymask[first_bad]);
`ifdef CONVGEN_FATAL_ON_FAIL
                if (bad != 0 || run_failed) $fatal(1, "CHECK FAIL");
`endif"""


# the free-running build (shared with sim/soak.py): sim.build.build_free_running
VERILATOR_MAIN, VERILATOR_MAIN_TRACE = FREE_RUNNING_MAIN, FREE_RUNNING_MAIN_TRACE
VERILATOR_BUILD_FLAGS = FREE_RUNNING_FLAGS


@dataclass(frozen=True)
class EngineBuild:
    config: EngineConfig
    simulator: str
    directory: Path
    executable: Path
    mem_words: int
    build_seconds: float = 0.0
    trace: bool = False         # Verilator: FST tracing compiled in (``+fst`` writes waves.fst)


def engine_verilog(cfg: EngineConfig, *, simulation: bool = False) -> str:
    """The engine's Verilog as ``generate`` writes it (cached: elaborating an 8x8 engine takes
    about 10 s); ``simulation``: the form the free-running models compile
    (:func:`convgen.hdl.generate.simulation_verilog`, the same circuit; its requantizer's data
    registers on a gated clock)."""
    return cached_verilog(lambda: ConvEngine(cfg), cfg.module_name, cfg.to_dict(), simulation=simulation)


def generate(cfg: EngineConfig, out_dir) -> dict:
    """Write ``<module>.v`` and ``<module>.json`` (ports and payload layouts, descriptor and
    parameter layouts, memory map, timing) into ``out_dir`` (atomically)."""
    from convgen.hdl.generate import write_block

    return write_block(ConvEngine(cfg), cfg.module_name, out_dir, block="engine", parameters=cfg.to_dict(),
                       extra=manifest_extra(cfg))


def build_engine(cfg: EngineConfig, simulator: str, *, mem_words: int = 1 << 16, verilog: str | None = None,
                 name: str | None = None, trace: bool = False) -> EngineBuild:
    """Compile the engine + testbench for ``simulator`` (cached). ``verilog`` overrides the
    generated engine text (fault-injection tests pass a mutated copy); ``name`` is its module.

    ``trace`` (Verilator): a separate build with FST tracing compiled in (``--trace-fst``, the
    testbench's ``$dumpvars`` behind the plusarg ``+fst``, a C++ main that advances time), for
    :func:`run_layers` ``waves``; it simulates slower, so the plain build stays the default.
    Icarus builds always can dump (``+vcd``), so ``trace`` changes nothing there."""
    check_choice("simulator", simulator, SIMULATORS)
    module = name or cfg.module_name
    # Verilator compiles the simulation form (the same circuit, faster to simulate); Icarus 11
    # cannot parse the functions yosys writes for one-hot multiplexers in it
    text = verilog if verilog is not None else engine_verilog(cfg, simulation=simulator == "verilator")
    trace = trace and simulator == "verilator"
    from convgen.hdl.lib.dsp import simulation_sources

    fb = build_free_running("engine", module, simulator, TB_TOP,
                            {"tb.v": testbench_verilog(cfg, module, mem_words, trace=trace), "engine.v": text,
                             **simulation_sources(cfg.dsp)},   # vendor primitive models (dsp="ecp5")
                            trace=trace, what=module)
    return EngineBuild(cfg, simulator, fb.directory, fb.executable, mem_words, fb.seconds, trace)


# -- jobs and runs -----------------------------------------------------------------------------
@dataclass
class LayerJob:
    """One layer's memory images and descriptor (``desc``: the field dict; bases filled in by
    :func:`run_layers`)."""

    plan: ge.EnginePlan
    x_words: np.ndarray
    w_words: np.ndarray
    params: dict
    desc: dict
    expected: np.ndarray | None = None      # y[OH, OW, C_out]

    @property
    def words(self) -> dict:
        return {"x": self.plan.x_words, "w": self.plan.w_words, "p": self.plan.p_words, "y": self.plan.y_words}


def job_from_quant(q: ge.QuantConv, cfg: EngineConfig) -> LayerJob:
    """Host side of one layer: plan, memory images, descriptor fields, expected output."""
    p = ge.plan(q.layer, cfg.rows, cfg.cols, cfg.vec)
    if q.params.rounding != cfg.rounding:
        raise ConfigError(f"the layer's rounding {q.params.rounding!r} differs from the engine's {cfg.rounding!r}")
    d = ge.descriptor_fields(p, x_zero_point=q.x_zero_point, w_zero_point=q.w_zero_point, x_signed=q.x_signed)
    d["out_h"], d["out_w"] = q.layer.out_h, q.layer.out_w
    errors = ge.descriptor_errors(d, cfg.limits())
    if errors:
        raise ConfigError(f"the engine cannot run this layer: {errors[0]}")
    return LayerJob(p, ge.pack_x(q.x, p, q.x_zero_point), ge.pack_w(q.w, p, q.w_zero_point),
                    ge.pack_params(q.params, p), d)


@dataclass
class LayerResult:
    status: str            # OK, ERROR, ABORT, MISSING
    cycles: int
    writes: int
    y_words: np.ndarray | None = None
    y: np.ndarray | None = None


@dataclass
class RunResult:
    layers: list[LayerResult]
    total_cycles: int
    wall_seconds: float
    sim_seconds: float
    log: str = field(repr=False, default="")


def _field_ok(cfg, d: dict):
    return pack_struct(cfg.desc_layout, d)


def run_layers(b: EngineBuild, jobs: list[LayerJob], *, seed: int = 1, stall: int = 0, latency: int = 1,
               jitter: int = 0, reset_at: int | None = None, max_cycles: int = 50_000_000,
               run_dir: str | os.PathLike | None = None, keep: bool = False,
               waves: str | os.PathLike | None = None) -> RunResult:
    """Run ``jobs`` back to back on one model; each layer's tensors live at their own bases.

    The memory images, the log and the output dump go to ``run_dir`` (kept), else to a
    temporary directory that is deleted afterwards unless ``keep`` or the simulation failed
    (:class:`~convgen.sim.build.SimulationFailed` names the log inside it).

    ``waves``: a file to copy the run's waveform to (every testbench and engine signal,
    memories excluded), written atomically. Icarus builds: VCD (the clock wrapper dumps
    ``waves.vcd`` with the plusarg ``+vcd``). Verilator: FST, from a build with ``trace=True``
    (:func:`build_engine`; ``+fst``); a plain Verilator build has no tracing (ConfigError)."""
    cfg = b.config
    if waves is not None and b.simulator != "icarus" and not b.trace:
        raise ConfigError(f"a waveform needs an Icarus build of the engine or a {b.simulator} build with "
                          f"tracing (build_engine(..., trace=True)); this one has none")
    t0 = time.monotonic()
    xs, ws, ps, bases = _pack_jobs(cfg, jobs, b.mem_words)
    with work_directory("convgen-engine-", run_dir, keep=keep) as d:
        r = _run_in(b, jobs, d, xs, ws, ps, bases, t0, seed=seed, stall=stall, latency=latency, jitter=jitter,
                    reset_at=reset_at, max_cycles=max_cycles, waves=waves is not None)
        if waves is not None:
            dump = d / ("waves.vcd" if b.simulator == "icarus" else "waves.fst")
            if not dump.is_file():
                raise SimulationFailed(f"the {b.simulator} run wrote no {dump.name} in {d}")
            copy_waves(dump, waves)
        return r


def _pack_jobs(cfg: EngineConfig, jobs, mem_words: int):
    """The layers' memory words (x, w, p) back to back, each job's descriptor bases filled in,
    and the words used per memory; ConfigError if they exceed ``mem_words``."""
    bases = {"x": 0, "w": 0, "p": 0, "y": 0}
    xs, ws, ps = [], [], []
    for j in jobs:
        for key in bases:
            j.desc[f"{key}_base"] = bases[key]
            bases[key] += j.words[key]
        xs += _bytes_words(j.x_words)
        ws += _bytes_words(j.w_words)
        n = len(next(iter(j.params.values())))
        ps += [pack_struct(cfg.param_layout, {k: j.params[k][i] for k in j.params}) for i in range(n)]
    for key, used in bases.items():
        if used > mem_words:
            raise ConfigError(f"the layers need {used} {key} words; the testbench memories hold {mem_words} "
                              "(build with a larger mem_words)")
    return xs, ws, ps, bases


def _write_images(run_dir: Path, cfg: EngineConfig, jobs, xs, ws, ps) -> None:
    """The ``$readmemh`` files the testbench loads."""
    _write_hex(run_dir / "x.hex", xs or [0], 8 * cfg.vec)
    _write_hex(run_dir / "w.hex", ws or [0], 8 * cfg.cols)
    _write_hex(run_dir / "p.hex", ps or [0], cfg.param_layout.size)
    _write_hex(run_dir / "y.hex", [0], 8 * cfg.cols)
    _write_hex(run_dir / "desc.hex", [pack_struct(cfg.desc_layout, j.desc) for j in jobs], cfg.desc_layout.size)


def _plusargs(njobs: int, ywords: int, *, seed, stall, latency, jitter, reset_at=None,
              max_cycles: int = 50_000_000) -> list[str]:
    return [f"+seed={seed}", f"+stall={stall}", f"+lat={max(1, latency)}", f"+jitter={jitter}",
            f"+ndesc={njobs}", f"+max_cycles={max_cycles}", f"+ywords={max(1, ywords)}",
            f"+reset_at={-1 if reset_at is None else reset_at}"]


def _run_in(b: EngineBuild, jobs, run_dir: Path, xs, ws, ps, bases, t0, *, seed, stall, latency, jitter, reset_at,
            max_cycles, waves: bool = False) -> RunResult:
    cfg = b.config
    _write_images(run_dir, cfg, jobs, xs, ws, ps)
    args = _plusargs(len(jobs), bases["y"], seed=seed, stall=stall, latency=latency, jitter=jitter,
                     reset_at=reset_at, max_cycles=max_cycles) + \
        ([("+vcd" if b.simulator == "icarus" else "+fst")] if waves else [])
    env = dict(os.environ, **simulator_env(b.simulator))
    cmd = (["vvp", "-n", str(b.executable)] if b.simulator == "icarus" else [str(b.executable)]) + args
    t1 = time.monotonic()
    p = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True)
    sim_seconds = time.monotonic() - t1
    log = p.stdout + p.stderr
    (run_dir / "sim.log").write_text(log)
    if p.returncode != 0 or "END cycle=" not in log:
        raise SimulationFailed(f"{b.simulator} run failed (status {p.returncode}); see {run_dir / 'sim.log'}:\n"
                               f"{log[-2000:]}")
    if "TIMEOUT" in log:
        raise SimulationFailed(f"engine timed out ({max_cycles} cycles); see {run_dir / 'sim.log'}")
    total = int(re.search(r"END cycle=(\d+)", log).group(1))
    found = {int(mm.group(1)): (mm.group(2), int(mm.group(3)), int(mm.group(4)))
             for mm in re.finditer(r"LAYER (\d+) (\w+) cycles=(\d+) writes=(\d+)", log)}
    yw_all = np.array(_read_hex(run_dir / "y_out.hex"), dtype=object)
    results = []
    for i, j in enumerate(jobs):
        status, cyc, writes = found.get(i, ("MISSING", 0, 0))
        base, n = j.desc["y_base"], j.words["y"]
        raw = yw_all[base:base + n]
        ybytes = np.array([[(int(v) >> (8 * c)) & 0xFF for c in range(cfg.cols)] for v in raw], dtype=np.int64)
        ybytes = ybytes.reshape(n, cfg.cols)
        results.append(LayerResult(status, cyc, writes, ybytes))
    return RunResult(results, total, time.monotonic() - t0, sim_seconds, log)


def random_jobs(cfg: EngineConfig, layers: dict, seed: int, names=None) -> list[LayerJob]:
    """One job per named layer (``layers``: name -> (ConvLayer, x_signed)) with random data,
    zero points and per-channel requantization (a ReLU clamp on about 30%), its expected output
    from the direct convolution (``golden.engine.reference_conv``) and ``out_signed``."""
    rng = np.random.default_rng(seed)
    jobs = []
    for name in names or layers:
        layer, x_signed = layers[name]
        q = ge.random_quant_conv(rng, layer, x_signed=x_signed, relu=rng.random() < 0.3)
        job = job_from_quant(q, cfg)
        job.expected = ge.reference_conv(q)
        job.out_signed = bool(q.params.act_min.min() < 0)
        jobs.append(job)
    return jobs


def layer_mismatch(job: LayerJob, res: LayerResult) -> str | None:
    """None when the layer ended OK, wrote each of its output words once and equals
    ``job.expected`` (from :func:`random_jobs`); otherwise what differs."""
    if res.status != "OK":
        return f"status {res.status}"
    y = y_from_words(res.y_words, job, job.out_signed)
    bad = np.argwhere(y != job.expected)
    if len(bad):
        return f"{len(bad)} of {y.size} outputs differ, first at {bad[:5].tolist()}"
    if res.writes != job.plan.y_words:
        return f"{res.writes} output writes, {job.plan.y_words} expected"
    return None


def y_from_words(ybytes: np.ndarray, job: LayerJob, out_signed: bool) -> np.ndarray:
    """Output bytes -> int values of the output type, ``y[OH, OW, C_out]``."""
    v = ybytes.astype(np.int64)
    if out_signed:
        v = np.where(v >= 128, v - 256, v)
    return ge.unpack_y(v, job.plan)


@dataclass
class ConvResult:
    """One layer on the RTL: ``y[OH, OW, C_out]`` and what the run measured.

    ``formula_cycles`` is :meth:`EngineConfig.layer_cycles` for the layer; ``formula_exact``
    says whether it must equal ``cycles`` (compute-bound layer, memories without stalls or
    jitter) or is a lower bound."""

    y: np.ndarray
    cycles: int
    formula_cycles: int
    formula_exact: bool
    macs: int
    rows: int
    cols: int
    sim_seconds: float
    build_seconds: float
    config: EngineConfig

    @property
    def utilization(self) -> float:
        """Useful MACs per PE-cycle."""
        return self.macs / (self.cycles * self.rows * self.cols)

    def summary(self) -> dict:
        return {"cycles": self.cycles, "formula_cycles": self.formula_cycles, "formula_exact": self.formula_exact,
                "macs": self.macs, "macs_per_cycle": round(self.macs / self.cycles, 3),
                "utilization": round(self.utilization, 4), "rows": self.rows, "cols": self.cols,
                "sim_seconds": round(self.sim_seconds, 3), "build_seconds": round(self.build_seconds, 1),
                "sim_cycles_per_second": int(self.cycles / self.sim_seconds) if self.sim_seconds > 0 else None,
                "module": self.config.module_name}


def formula_cycles(cfg: EngineConfig, job: LayerJob, *, latency: int = 1) -> tuple[int, bool]:
    """(:meth:`EngineConfig.layer_cycles`, whether it is exact) for ``job`` on ``cfg``."""
    p = job.plan
    L = p.layer
    f = cfg.layer_cycles(kh=L.kh, kw=L.kw, c_slice=p.c_slice, ntiles=p.ntiles, pixel_tiles=p.pixel_tiles,
                         latency=latency)
    exact = cfg.compute_bound(kh=L.kh, kw=L.kw, c_slice=p.c_slice, slice_words=p.slice_words, ntiles=p.ntiles,
                              latency=latency)
    return f, exact


def engine_form(q: ge.QuantConv, rows: int) -> ge.QuantConv:
    """The layer as the engine runs it: a fetch-bound strided layer with few input channels
    (the ResNet stem) is rewritten by space-to-depth on the host (``golden.engine.space_to_depth``,
    the same outputs); a standard stride-1 layer (after space-to-depth, or as given) with fewer
    channels than ``rows`` gets its pads written out (``golden.engine.pad_explicit``), its
    kernel width folded into the channels (``golden.engine.unfold_width``) and its channels
    padded to a multiple of ``rows`` with zero-point taps (``golden.engine.pad_channels``), which
    makes it compute-bound; anything else is returned as it is."""
    s = ge.space_to_depth_factor(q.layer, rows)
    if s > 1:
        q = ge.space_to_depth(q, s)
    elif not (q.layer.stride_h == q.layer.stride_w == 1 and q.layer.dil_h == q.layer.dil_w == 1
              and q.layer.groups == 1):
        return q
    # fewer channels than rows (12 on a 16-row array after space-to-depth, or a stride-1 layer
    # over 3 channels): write the pads out and fold the kernel width into the channels
    if q.layer.c < rows and q.layer.kw > 1:
        q = ge.unfold_width(ge.pad_explicit(q))
        # and every activation chunk at least `rows` channels (EngineConfig.compute_bound):
        # pad the channels with zero-point taps (9 -> 16 on 16 rows)
        return ge.pad_channels(q, rows)
    return q


def prepare_conv(q: ge.QuantConv, *, rows: int = 8, cols: int = 8, config: EngineConfig | None = None,
                 space_to_depth: bool = True) -> tuple[EngineConfig, LayerJob, int]:
    """Everything :func:`run_conv` checks before any build: the engine configuration (from the
    layer unless given), the layer's job (ConfigError if the engine cannot run it) and the
    testbench memory size. With ``space_to_depth`` the job is that of :func:`engine_form`."""
    qe = engine_form(q, config.rows if config is not None else rows) if space_to_depth else q
    if config is None:
        config = engine_config_for([qe.layer], rows=rows, cols=cols, rounding=q.params.rounding)
    job = job_from_quant(qe, config)
    words = max(job.words.values())
    return config, job, _pow2_at_least(words, 1 << 16)


def run_conv(q: ge.QuantConv, *, rows: int = 8, cols: int = 8, simulator: str = "verilator",
             config: EngineConfig | None = None, seed: int = 1, stall: int = 0, latency: int = 1,
             jitter: int = 0, progress=None, run_dir=None, keep: bool = False,
             space_to_depth: bool = True, waves=None) -> ConvResult:
    """One quantized layer on the RTL (free-running, no Python in the clock loop).

    ``y`` is in the output type (int8, or uint8 when the clamp range is uint8). ``config``:
    the engine (default: the smallest cached-friendly engine of ``rows x cols`` that holds the
    layer, :func:`engine_config_for`). ``stall``/``latency``/``jitter``: the memory model's
    timing (percent of refused requests, cycles to answer, random extra cycles).
    ``progress(text)`` is called before the build and before the simulation.
    ``space_to_depth``: run a fetch-bound strided layer in its :func:`engine_form`.
    ``waves``: a file to copy the run's waveform to (every signal of the testbench and the
    engine): FST from a tracing Verilator build (built and cached separately, slower to
    simulate), VCD from Icarus. Both grow with the cycles (a 4x4 engine dumps several kB per
    cycle as VCD), so keep such runs small."""
    check_choice("simulator", simulator, SIMULATORS)
    say = progress or (lambda text: None)
    config, job, mem_words = prepare_conv(q, rows=rows, cols=cols, config=config, space_to_depth=space_to_depth)
    simulator_env(simulator)   # a missing or old simulator: one error, before any step is announced
    trace = waves is not None and simulator == "verilator"
    say(f"building the {config.rows}x{config.cols} engine for {simulator}{' with tracing' if trace else ''} "
        f"(cached after the first time)")
    b = build_engine(config, simulator, mem_words=mem_words, trace=trace)
    say(f"simulating {q.layer.macs:,} MACs on {simulator}")
    r = run_layers(b, [job], seed=seed, stall=stall, latency=latency, jitter=jitter, run_dir=run_dir, keep=keep,
                   waves=waves)
    lr = r.layers[0]
    if lr.status != "OK":
        raise SimulationFailed(f"the engine ended a valid layer with status {lr.status}")
    out_signed = bool(q.params.act_min.min() < 0)
    y = y_from_words(lr.y_words, job, out_signed)
    f, exact = formula_cycles(config, job, latency=max(1, latency))
    return ConvResult(y, lr.cycles, f, exact and stall == 0 and jitter == 0, q.layer.macs, config.rows,
                      config.cols, r.sim_seconds, b.build_seconds, config)


def _pow2_at_least(v: int, lo: int) -> int:
    return max(lo, 1 << max(0, (v - 1).bit_length()))


def engine_config_for(layers, *, rows: int, cols: int, rounding: str = "onnx", vec: int = 0) -> EngineConfig:
    """An engine whose maxima hold every layer of ``layers`` (rounded up to powers of two, so
    that nearby layer sets share one cached build)."""
    vec = vec or max(rows, 4)
    plans = [ge.plan(L, rows, cols, vec) for L in layers]
    return EngineConfig(
        rows=rows, cols=cols, vec=vec, rounding=rounding,
        max_h=_pow2_at_least(max(L.h for L in layers), 16), max_w=_pow2_at_least(max(L.w for L in layers), 16),
        max_pixel_words=_pow2_at_least(max(p.pixel_words for p in plans), 8),
        max_kernel=max(7, max(max(L.kh, L.kw) for L in layers)),
        max_stride=max(4, max(max(L.stride_h, L.stride_w) for L in layers)),
        max_pad=max(3, max(max(L.pads) for L in layers)),
        max_dilation=max(3, max(max(L.dil_h, L.dil_w) for L in layers)),
        max_tiles=_pow2_at_least(max(p.ntiles for p in plans), 8))


# -- a standalone HDL test of one layer ------------------------------------------------------
EXPORT_SCRIPTS = {
    "run_icarus.sh": """#!/bin/sh
# Runs this layer on Icarus Verilog: exit status 0 when the engine's output equals
# y_expected.hex (the testbench prints CHECK PASS), 1 otherwise.
cd "$(dirname "$0")" || exit 2
iverilog -g2012 -s {top}_clock -o sim.vvp -f files.f || exit 2
vvp -n sim.vvp $(cat plusargs.txt) > sim.log 2>&1
cat sim.log
grep -q "^CHECK PASS" sim.log
""",
    "run_verilator.sh": """#!/bin/sh
# Runs this layer on Verilator (5.x): exit status 0 when the engine's output equals
# y_expected.hex (the testbench prints CHECK PASS), 1 otherwise.
cd "$(dirname "$0")" || exit 2
verilator --cc --exe --build {flags} --top-module {top} -Mdir obj -o V{top} \\
    {warnings} main.cpp -f files.f > build.log 2>&1 || {{ cat build.log; exit 2; }}
obj/V{top} $(cat plusargs.txt) > sim.log 2>&1
cat sim.log
grep -q "^CHECK PASS" sim.log
""",
}

EXPORT_README = """# Standalone test of one convolution layer on {module}

Written by `convgen export-test`. Nothing here needs Python: the testbench loads the memory
images with `$readmemh`, runs the engine until the layer is done, compares the output memory
with `y_expected.hex` (bytes under `y_mask.hex`; the expected output is convgen's direct
convolution golden model of the layer as given) and prints `CHECK PASS` or `CHECK FAIL`.

    sh run_icarus.sh        # Icarus Verilog (iverilog -g2012)
    sh run_verilator.sh     # Verilator 5

Other simulators: compile `files.f` (`tb.v`, `engine.v`; plain Verilog-2005), elaborate
`{top}_clock` (it makes a 10-time-unit clock), run with the plusargs of `plusargs.txt`,
and look for `CHECK PASS` in the log. For example Questa: `vlog -f files.f; vsim -c
{top}_clock -do "run -all" <plusargs>`; Vivado xsim: `xvlog -f files.f; xelab
{top}_clock; xsim work.{top}_clock -R -testplusarg ...`.

| file | what |
|---|---|
| engine.v | the ConvEngine ({rows}x{cols}, vec {vec}, rounding {rounding}), as `convgen generate engine --bare` writes it |
| tb.v | the free-running testbench: behavioural memories answering after `+lat` cycles plus a random 0..`+jitter`, refusing `+stall` percent of requests (a seeded LFSR, `+seed`) |
| x.hex, w.hex, p.hex | activations (NHWC words of {vec} channels), weights, requantization parameters |
| desc.hex | the layer descriptor (one word) |
| y.hex | the output memory's initial contents |
| y_expected.hex, y_mask.hex | the expected output words and which bytes of them are outputs |
| plusargs.txt | this layer's plusargs |
| main.cpp | the C++ main of the Verilator build |
| {core} | FuseSoC core `{vlnv}`: targets `sim_icarus`, `sim_verilator` |

With FuseSoC (Edalize runs the simulator in its build directory and copies the `.hex` files
there; the define `CONVGEN_FATAL_ON_FAIL` makes a failed check end with `$fatal`, so the run
fails with a non-zero status; each plusarg is a parameter, e.g. `--stall 20`):

    fusesoc --cores-root . run --target sim_icarus {vlnv}
    fusesoc --cores-root . run --target sim_verilator {vlnv}

Layer: {layer}. {words} output words, {cycles} cycles expected with the memory timing of
plusargs.txt when it never stalls ({formula_note}).
"""


def expected_words(y: np.ndarray, plan: ge.EnginePlan) -> tuple[list[int], list[int]]:
    """``y[OH, OW, C_out]`` as the engine's output memory words (``golden.engine.pack_y``) and
    the byte mask of the lanes that hold outputs, as words."""
    yw, mask = ge.pack_y(y, plan)
    return _bytes_words(yw), _bytes_words(mask)


#: the ``$readmemh`` files of an exported test, which the FuseSoC core copies next to the simulator
EXPORT_IMAGES = ["x.hex", "w.hex", "p.hex", "y.hex", "desc.hex", "y_expected.hex", "y_mask.hex"]


def _export_core(module: str, plus: list[str]) -> str:
    """The FuseSoC core of an exported test (``hdl.packaging.export_test_core``): the Verilator
    target builds with the flags of ``run_verilator.sh`` (``-MAKEFLAGS X`` becomes the model's
    make option ``X``, since Edalize runs make itself) and both targets take the plusargs of
    ``plusargs.txt`` as parameters."""
    from convgen.hdl.packaging import export_test_core

    vflags, make = [], []
    it = iter(VERILATOR_BUILD_FLAGS)
    for f in it:
        if f == "-MAKEFLAGS":
            make.append(next(it))
        else:
            vflags.append(f)
    defaults = {a[1:].split("=", 1)[0]: int(a.split("=", 1)[1]) for a in plus}
    return export_test_core(
        module, description=f"convgen export-test: one conv layer on {module}, self-checking",
        sources=["tb.v", "engine.v"], top=TB_TOP, images=EXPORT_IMAGES, plusargs=defaults,
        fail_define=CHECK_FAIL_DEFINE, cpp_main="main.cpp",
        verilator_options=[*vflags, *VERILATOR_SIM_FLAGS, "-Wno-UNUSEDSIGNAL"], make_options=make)


def export_test(q: ge.QuantConv, out_dir, *, config: EngineConfig | None = None, rows: int = 8, cols: int = 8,
                seed: int = 1, stall: int = 0, latency: int = 1, jitter: int = 0) -> dict:
    """Write a standalone HDL test of layer ``q`` into ``out_dir`` (all files or none): the
    engine's Verilog, the free-running testbench with an output check, the memory images, the
    expected output (``golden.engine.reference_conv`` of ``q``, the direct convolution), run
    scripts for Icarus and Verilator and a FuseSoC core ``<module>_test.core`` with the targets
    ``sim_icarus`` and ``sim_verilator`` (see ``EXPORT_README``). Returns a summary."""
    from convgen.core.fileio import atomic_directory

    config, job, mem_words = prepare_conv(q, rows=rows, cols=cols, config=config)
    xs, ws, ps, bases = _pack_jobs(config, [job], mem_words)
    want = ge.reference_conv(q)
    yexp, ymask = expected_words(want, job.plan)
    module = config.module_name
    plus = _plusargs(1, bases["y"], seed=seed, stall=stall, latency=latency, jitter=jitter)
    formula, exact = formula_cycles(config, job, latency=latency)
    fields = dict(top=TB_TOP, flags=" ".join(VERILATOR_BUILD_FLAGS),
                  warnings=" ".join([*VERILATOR_SIM_FLAGS, "-Wno-UNUSEDSIGNAL"]))
    from convgen.hdl.packaging import export_test_vlnv

    out_dir = Path(out_dir)
    core = f"{module}_test.core"
    with atomic_directory(out_dir) as d:
        (d / "engine.v").write_text(engine_verilog(config))
        (d / "tb.v").write_text(testbench_verilog(config, module, mem_words, check=True))
        _write_images(d, config, [job], xs, ws, ps)
        _write_hex(d / "y_expected.hex", yexp, 8 * config.cols)
        _write_hex(d / "y_mask.hex", ymask, 8 * config.cols)
        (d / "plusargs.txt").write_text("\n".join(plus) + "\n")
        (d / "files.f").write_text("tb.v\nengine.v\n")
        (d / "main.cpp").write_text(VERILATOR_MAIN % {"top": TB_TOP})
        (d / core).write_text(_export_core(module, plus))
        for name, text in EXPORT_SCRIPTS.items():
            (d / name).write_text(text.format(**fields))
            (d / name).chmod(0o755)
        L = q.layer
        (d / "README.md").write_text(EXPORT_README.format(
            module=module, top=TB_TOP, core=core, vlnv=export_test_vlnv(module),
            rows=config.rows, cols=config.cols, vec=config.vec, rounding=config.rounding,
            layer=f"{L.h}x{L.w}x{L.c} k{L.kh}x{L.kw}/{L.stride_h} -> {L.out_h}x{L.out_w}x{L.c_out}"
                  f"{f' g{L.groups}' if L.groups > 1 else ''}",
            words=len(yexp), cycles=f"{formula:,}",
            formula_note="EngineConfig.layer_cycles, exact for this layer" if exact else
            "EngineConfig.layer_cycles, a lower bound for this fetch-bound layer"))
    return {"out": str(out_dir), "module": module, "core": core, "vlnv": export_test_vlnv(module),
            "config": config.to_dict(), "output_words": len(yexp),
            "outputs": int(want.size), "formula_cycles": formula, "formula_exact": exact,
            "files": sorted(["engine.v", "tb.v", "x.hex", "w.hex", "p.hex", "y.hex", "desc.hex", "y_expected.hex",
                             "y_mask.hex", "plusargs.txt", "files.f", "main.cpp", "README.md", core,
                             *EXPORT_SCRIPTS])}
