"""A free-running soak harness for any block with amaranth.lib.stream ports: no Python per cycle.

:func:`harness_verilog` reads a generated module's manifest (``streams``: name, direction,
payload width; ``ports``: the rest) and writes one plain-Verilog testbench around it, the same
for every block:

- every **input stream** plays its beats from a memory that NumPy fills (``$readmemh``
  ``in_<name>.hex``). Valid is a register that follows the amaranth.lib.stream rules: once
  raised it stays high, with the payload unchanged, until the block takes the beat. Before
  each new beat a seeded LFSR may withhold valid for a burst of cycles (a *valid dropout*,
  ``+pct_<name>`` percent of the decisions, bursts of 1..``+burst`` cycles);
- an input stream may be **gated** on another stream (``gates={"i": "p"}``): beat ``n`` of
  ``i`` is offered only once ``p`` has transferred ``wait_i[n]`` beats (``wait_<name>.hex``).
  That orders, for instance, parameter writes and the data that must see them, in both
  directions, without a Python loop;
- every **output stream** drives ready from its own LFSR (*ready dropouts*, same plusargs) and
  writes each transferred beat into a capture memory, dumped with ``$writememh`` at the end
  (``out_<name>.hex``). The beat counter keeps counting past the expected number and past
  the memory, so a duplicated beat shows as a surplus and a lost one as a shortfall;
- other 1-bit outputs (``error``) count the cycles they were high; other inputs are tied to 0.

The run ends when every input memory has been played and every output stream has at least its
expected beats (``+exp_<name>``); ready is then held high for ``+drain`` more cycles, so that
any surplus beat still comes out and is counted. Then it prints one line per port (beats,
injected dropout cycles, cycles the stream was active, backpressure cycles) and dumps the
captures. ``+max_cycles`` bounds a run that never finishes (a lost beat): it prints
``TIMEOUT`` and dumps what it has.

:func:`build_soak` compiles block + harness for Icarus (``iverilog``) or Verilator
(``--cc --exe --build`` with a small C++ main toggling the clock), cached under
``cache_root()/soak`` by a hash of both texts, the simulator and its version, with a file lock.
:func:`run_soak` writes the memory images, runs the model once and returns the counts and the
captured beats; :func:`compare` checks them against expected beats, value by value, with the
payload layouts of the manifest (:mod:`convgen.sim.packing`).

This is the generic form of the ConvEngine's free-running testbench (:mod:`convgen.sim.engine`),
which keeps its own because the engine's ports are memory request/response pairs, not plain
sources and sinks.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from convgen.core.params import ConfigError, check_choice

from .build import SimulationFailed, build_free_running, work_directory
from .packing import unpack
from .tools import SIMULATORS, simulator_env

__all__ = ["TB_TOP", "harness_verilog", "SoakBuild", "build_soak", "Stimulus", "SoakRun", "run_soak",
           "compare", "Comparison", "read_hex", "write_hex"]

TB_TOP = "convgen_soak_tb"

_LFSR_NEXT = "((lfsr == 32'd0) ? 32'h1 : ({lfsr[30:0], 1'b0} ^ (lfsr[31] ? 32'h04C11DB7 : 32'd0)) ^ (lfsr >> 7))"

_STALL_MODULE = f"""
// one dropout generator per port: a decision every burst; stall with pct percent probability
module convgen_soak_stall #(parameter [31:0] SALT = 32'h1) (
    input clk, input rst, input [31:0] seed, input [31:0] pct, input [31:0] burst, output reg stall);
    reg [31:0] lfsr;
    reg [31:0] left;
    always @(posedge clk) begin
        if (rst) begin
            lfsr <= seed ^ SALT;
            left <= 32'd0;
            stall <= 1'b0;
        end else begin
            lfsr <= {_LFSR_NEXT};
            if (left == 32'd0) begin
                stall <= ({{16'd0, lfsr[15:0]}} % 32'd100) < pct;
                left <= (burst <= 32'd1) ? 32'd0 : ({{16'd0, lfsr[31:16]}} % burst);
            end else begin
                left <= left - 32'd1;
            end
        end
    end
endmodule
"""


def _salt(name: str) -> int:
    return (zlib.crc32(name.encode()) * 0x9E3779B1 + 1) & 0xFFFFFFFF


def _abits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


def _check_ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"stream name {name!r} is not a Verilog identifier")
    return name


def harness_verilog(manifest: dict, *, depth: int, gates: dict[str, str] | None = None) -> str:
    """The testbench (module ``convgen_soak_tb``, input ``clk``) and an Icarus clock wrapper
    (``convgen_soak_tb_clock``) around ``manifest["module"]``. ``depth``: beats each stream
    memory holds (a power of two is not required). ``gates``: input stream -> the stream whose
    transfer count gates it."""
    gates = dict(gates or {})
    streams = manifest["streams"]
    module = manifest["module"]
    ins = [n for n, s in streams.items() if s["direction"] == "in"]
    outs = [n for n, s in streams.items() if s["direction"] == "out"]
    for n in streams:
        _check_ident(n)
    for s, t in gates.items():
        if s not in ins or t not in streams:
            raise ConfigError(f"gate {s!r} <- {t!r}: {s!r} must be an input stream and {t!r} a stream of {module}")
    if not outs:
        raise ConfigError(f"{module} has no output stream to check")
    aw = _abits(depth)
    stream_ports = {p for s in streams.values() for p in (s["valid"], s["ready"], s["payload"])}
    others = [p for p in manifest["ports"] if p["name"] not in stream_ports and p["name"] not in ("clk", "rst")]
    flags = [p for p in others if p["direction"] == "out" and p["width"] == 1]

    decl, avail, logic, conns, finish_terms, report, dumps, init = [], [], [], [], [], [], [], []
    for n in ins:
        w = streams[n]["layout"]["width"]
        init.append(f'        $readmemh("in_{n}.hex", si_{n}_mem);')
        init.append(f'        if (!$value$plusargs("n_{n}=%d", si_{n}_n)) si_{n}_n = 0;')
        init.append(f'        if (!$value$plusargs("pct_{n}=%d", si_{n}_pct)) si_{n}_pct = 0;')
        decl.append(f"""    reg [{w - 1}:0] si_{n}_mem [0:{depth}];
    reg [31:0] si_{n}_n, si_{n}_pct, si_{n}_idx, si_{n}_drop, si_{n}_active, si_{n}_bp;
    reg si_{n}_v;
    wire si_{n}_r, si_{n}_stall;
    wire si_{n}_fire = si_{n}_v && si_{n}_r;
    wire [31:0] si_{n}_next = si_{n}_idx + {{31'd0, si_{n}_fire}};""")
        if n in gates:
            init.append(f'        $readmemh("wait_{n}.hex", si_{n}_wait);')
            decl.append(f"    reg [31:0] si_{n}_wait [0:{depth}];")
            t = gates[n]
            count = f"si_{t}_idx" if t in ins else f"so_{t}_cnt"
            gate = f"(si_{n}_next < si_{n}_n) && (si_{n}_wait[si_{n}_next[{aw - 1}:0]] <= {count})"
        else:
            gate = f"(si_{n}_next < si_{n}_n)"
        avail.append(f"    wire si_{n}_avail = {gate};")
        logic.append(f"""        if (rst) begin
            si_{n}_idx <= 32'd0; si_{n}_v <= 1'b0; si_{n}_drop <= 32'd0; si_{n}_active <= 32'd0; si_{n}_bp <= 32'd0;
        end else begin
            si_{n}_idx <= si_{n}_next;
            if (!si_{n}_v || si_{n}_r) si_{n}_v <= si_{n}_avail && !si_{n}_stall;
            if ((!si_{n}_v || si_{n}_r) && si_{n}_avail && si_{n}_stall) si_{n}_drop <= si_{n}_drop + 32'd1;
            if (si_{n}_v || si_{n}_avail) si_{n}_active <= si_{n}_active + 32'd1;
            if (si_{n}_v && !si_{n}_r) si_{n}_bp <= si_{n}_bp + 32'd1;
        end""")
        conns += [f".{streams[n]['valid']}(si_{n}_v)", f".{streams[n]['ready']}(si_{n}_r)",
                  f".{streams[n]['payload']}(si_{n}_mem[si_{n}_idx[{aw - 1}:0]])"]
        finish_terms.append(f"(si_{n}_idx >= si_{n}_n)")
        report.append(f'            $display("IN {n} beats=%0d of=%0d drop=%0d active=%0d bp=%0d", '
                      f"si_{n}_idx, si_{n}_n, si_{n}_drop, si_{n}_active, si_{n}_bp);")
        decl.append(f"    convgen_soak_stall #(.SALT(32'h{_salt('in ' + n):08x})) si_{n}_gen (.clk(clk), .rst(rst), "
                    f".seed(seed), .pct(si_{n}_pct), .burst(burst), .stall(si_{n}_stall));")
    for n in outs:
        w = streams[n]["layout"]["width"]
        init.append(f'        if (!$value$plusargs("exp_{n}=%d", so_{n}_exp)) so_{n}_exp = 0;')
        init.append(f'        if (!$value$plusargs("pct_{n}=%d", so_{n}_pct)) so_{n}_pct = 0;')
        decl.append(f"""    reg [{w - 1}:0] so_{n}_mem [0:{depth - 1}];
    reg [31:0] so_{n}_exp, so_{n}_pct, so_{n}_cnt, so_{n}_drop, so_{n}_active, so_{n}_bp;
    wire so_{n}_v, so_{n}_stall;
    wire [{w - 1}:0] so_{n}_p;
    wire so_{n}_r = !rst && (finished || !so_{n}_stall);
    convgen_soak_stall #(.SALT(32'h{_salt('out ' + n):08x})) so_{n}_gen (.clk(clk), .rst(rst), .seed(seed),
        .pct(so_{n}_pct), .burst(burst), .stall(so_{n}_stall));""")
        logic.append(f"""        if (rst) begin
            so_{n}_cnt <= 32'd0; so_{n}_drop <= 32'd0; so_{n}_active <= 32'd0; so_{n}_bp <= 32'd0;
        end else begin
            if (so_{n}_v && so_{n}_r) begin
                if (so_{n}_cnt < 32'd{depth}) so_{n}_mem[so_{n}_cnt[{aw - 1}:0]] <= so_{n}_p;
                so_{n}_cnt <= so_{n}_cnt + 32'd1;
            end
            if (!finished && so_{n}_cnt < so_{n}_exp) begin
                so_{n}_active <= so_{n}_active + 32'd1;
                if (!so_{n}_r) so_{n}_drop <= so_{n}_drop + 32'd1;
                if (so_{n}_v && !so_{n}_r) so_{n}_bp <= so_{n}_bp + 32'd1;
            end
        end""")
        conns += [f".{streams[n]['valid']}(so_{n}_v)", f".{streams[n]['ready']}(so_{n}_r)",
                  f".{streams[n]['payload']}(so_{n}_p)"]
        finish_terms.append(f"(so_{n}_cnt >= so_{n}_exp)")
        report.append(f'            $display("OUT {n} beats=%0d of=%0d drop=%0d active=%0d bp=%0d", '
                      f"so_{n}_cnt, so_{n}_exp, so_{n}_drop, so_{n}_active, so_{n}_bp);")
        dumps.append(f'            if (so_{n}_cnt != 32\'d0) $writememh("out_{n}.hex", so_{n}_mem, 0, '
                     f"(so_{n}_cnt < 32'd{depth} ? so_{n}_cnt : 32'd{depth}) - 32'd1);")
    for p in others:
        if p["direction"] == "in":
            conns.append(f".{p['name']}({p['width']}'d0)")
        elif p in flags:
            f = p["name"]
            decl.append(f"    wire fl_{f};\n    reg [31:0] fl_{f}_high;")
            logic.append(f"        if (rst) fl_{f}_high <= 32'd0; else if (fl_{f}) fl_{f}_high <= fl_{f}_high + 32'd1;")
            conns.append(f".{f}(fl_{f})")
            report.append(f'            $display("FLAG {f} high=%0d", fl_{f}_high);')
        else:
            conns.append(f".{p['name']}()")
    nl = "\n"
    return f"""// generated by convgen.sim.soak: free-running soak harness of {module}
{_STALL_MODULE}
module {TB_TOP} (input clk);
    integer seed_i, burst_i;
    wire [31:0] seed = seed_i;
    wire [31:0] burst = burst_i;
    reg [31:0] max_cycles, drain_cycles, cyc, done_cyc, drain;
    reg rst, finished, timeout;
    reg [3:0] rst_hold;
{nl.join(decl)}
{nl.join(avail)}
    initial begin
        if (!$value$plusargs("seed=%d", seed_i)) seed_i = 1;
        if (!$value$plusargs("burst=%d", burst_i)) burst_i = 1;
        if (!$value$plusargs("max_cycles=%d", max_cycles)) max_cycles = 32'd100000000;
        if (!$value$plusargs("drain=%d", drain_cycles)) drain_cycles = 32'd200;
{nl.join(init)}
        cyc = 32'd0; done_cyc = 32'd0; drain = 32'd0; finished = 1'b0; timeout = 1'b0;
        rst = 1'b1; rst_hold = 4'd4;
    end
    {module} dut (
        .clk(clk), .rst(rst),
        {(',' + nl + '        ').join(conns)});
    always @(posedge clk) begin
{nl.join(logic)}
    end
    always @(posedge clk) begin
        if (rst_hold != 4'd0) begin
            rst_hold <= rst_hold - 4'd1;
            rst <= (rst_hold != 4'd1);
        end else begin
            cyc <= cyc + 32'd1;
        end
        if (!rst && !finished && ({' && '.join(finish_terms)} || cyc >= max_cycles)) begin
            finished <= 1'b1;
            done_cyc <= cyc;
            timeout <= !({' && '.join(finish_terms)});
        end
        if (finished) begin
            drain <= drain + 32'd1;
            if (drain == drain_cycles) begin
                if (timeout) $display("TIMEOUT at cycle %0d", done_cyc);
{nl.join(report)}
{nl.join(dumps)}
                $display("END cycles=%0d", done_cyc);
                $finish;
            end
        end
    end
endmodule

module {TB_TOP}_clock;
    reg clk = 0;
    always #5 clk = ~clk;
    {TB_TOP} tb (.clk(clk));
endmodule
"""


@dataclass(frozen=True)
class SoakBuild:
    """A compiled block + harness."""

    simulator: str
    module: str
    manifest: dict = field(repr=False)
    depth: int
    gates: dict
    directory: Path
    executable: Path
    build_seconds: float = 0.0
    cached: bool = True


def build_soak(verilog_text: str, manifest: dict, simulator: str, *, depth: int = 1 << 16,
               gates: dict[str, str] | None = None) -> SoakBuild:
    """Compile ``verilog_text`` (top ``manifest["module"]``) in the soak harness (cached).

    Fault-injection tests pass a mutated text: it hashes to its own build."""
    check_choice("simulator", simulator, SIMULATORS)
    module = manifest["module"]
    tb = harness_verilog(manifest, depth=depth, gates=gates)
    fb = build_free_running("soak", module, simulator, TB_TOP, {"tb.v": tb, "dut.v": verilog_text},
                            what=f"the {module} soak harness")
    return SoakBuild(simulator, module, manifest, depth, dict(gates or {}), fb.directory, fb.executable,
                     fb.seconds, fb.cached)


# -- memory images ----------------------------------------------------------------------------
def write_hex(path: Path, words, width: int) -> None:
    digits = max(1, -(-width // 4))
    mask = (1 << width) - 1
    path.write_text("".join(f"{int(w) & mask:0{digits}x}\n" for w in words))


def read_hex(path: Path) -> list[int]:
    out = []
    for line in path.read_text().split("\n"):
        line = line.strip()
        if not line or line.startswith("//") or line.startswith("@"):
            continue
        out.append(int(re.sub("[xXzZ]", "0", line), 16))
    return out


@dataclass
class Stimulus:
    """One run's traffic: packed beats per input stream, the gate thresholds of gated streams
    (``waits[s][n]``: transfers of the gating stream before beat ``n`` of ``s``), and the
    expected packed beats per output stream."""

    inputs: dict[str, list[int]]
    expected: dict[str, list[int]]
    waits: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class SoakRun:
    """What one run measured. ``ports[name]``: ``beats`` transferred, ``of`` (planned beats of an
    input, expected of an output), ``drop`` (injected dropout cycles: valid withheld from an
    input with a beat available, ready low on an output still owed beats), ``active`` (cycles
    the port was owed traffic: an input with valid high or a beat available, its gate open;
    an output with beats still expected), ``bp`` (valid high and ready low)."""

    cycles: int
    timeout: bool
    ports: dict[str, dict]
    flags: dict[str, int]
    outputs: dict[str, list[int]]
    sim_seconds: float
    log: str = field(repr=False, default="")


def run_soak(b: SoakBuild, stim: Stimulus, *, seed: int = 1, stall: dict[str, int] | None = None, burst: int = 4,
             max_cycles: int | None = None, drain: int = 200, run_dir=None, keep: bool = False) -> SoakRun:
    """Run ``stim`` once on the model. ``stall``: dropout percent per port name (0..100);
    ``burst``: dropout bursts last 1..``burst`` cycles; ``max_cycles``: default 50 cycles per
    beat plus 100,000; ``drain``: cycles with ready high after the last expected beat."""
    streams = b.manifest["streams"]
    stall = dict(stall or {})
    for name, pct in stall.items():
        if name not in streams or not 0 <= int(pct) <= 100:
            raise ConfigError(f"stall {name}={pct}: must name a stream of {b.module} with a percentage 0..100")
    for name in streams:
        if streams[name]["direction"] == "in":
            n = len(stim.inputs.get(name, []))
            if n > b.depth:
                raise ConfigError(f"{n} beats on {name} do not fit the harness memories ({b.depth} beats)")
            if name in b.gates and len(stim.waits.get(name, [])) != n:
                raise ConfigError(f"gated stream {name} needs one wait threshold per beat")
    beats = sum(len(v) for v in stim.inputs.values()) + sum(len(v) for v in stim.expected.values())
    if max_cycles is None:
        max_cycles = 50 * beats + 100_000
    args = [f"+seed={seed}", f"+burst={max(1, burst)}", f"+max_cycles={max_cycles}", f"+drain={drain}"]
    with work_directory("convgen-soak-", run_dir, keep=keep) as d:
        for name, s in streams.items():
            if s["direction"] == "in":
                words = list(stim.inputs.get(name, []))
                write_hex(d / f"in_{name}.hex", words + [0], s["layout"]["width"])
                if name in b.gates:
                    write_hex(d / f"wait_{name}.hex", list(stim.waits[name]) + [0], 32)
                args.append(f"+n_{name}={len(words)}")
            else:
                args.append(f"+exp_{name}={len(stim.expected.get(name, []))}")
            args.append(f"+pct_{name}={int(stall.get(name, 0))}")
        env = dict(os.environ, **simulator_env(b.simulator))
        cmd = (["vvp", "-n", str(b.executable)] if b.simulator == "icarus" else [str(b.executable)]) + args
        t1 = time.monotonic()
        p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True)
        sim_seconds = time.monotonic() - t1
        log = p.stdout + p.stderr
        (d / "sim.log").write_text(log)
        m = re.search(r"END cycles=(\d+)", log)
        if p.returncode != 0 or m is None:
            raise SimulationFailed(f"{b.simulator} soak run of {b.module} failed (status {p.returncode}); see "
                                   f"{d / 'sim.log'}:\n{log[-2000:]}")
        ports = {}
        for mm in re.finditer(r"(IN|OUT) (\w+) beats=(\d+) of=(\d+) drop=(\d+) active=(\d+) bp=(\d+)", log):
            ports[mm.group(2)] = {"direction": mm.group(1).lower(), "beats": int(mm.group(3)), "of": int(mm.group(4)),
                                  "drop": int(mm.group(5)), "active": int(mm.group(6)), "bp": int(mm.group(7))}
        flags = {mm.group(1): int(mm.group(2)) for mm in re.finditer(r"FLAG (\w+) high=(\d+)", log)}
        outputs = {}
        for name, s in streams.items():
            if s["direction"] == "out":
                f = d / f"out_{name}.hex"
                outputs[name] = read_hex(f) if f.exists() else []
        return SoakRun(int(m.group(1)), "TIMEOUT" in log, ports, flags, outputs, sim_seconds, log)


# -- checking -----------------------------------------------------------------------------------
def _leaves(desc: dict, value, prefix: str = ""):
    """(name, 2-D array [beats, lanes]) of every leaf field of an unpacked payload."""
    import numpy as np

    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(desc["fields"][k], v, f"{prefix}{k}.")
    else:
        arr = np.asarray(value)
        yield prefix.rstrip(".") or "value", arr.reshape(arr.shape[0], -1)


@dataclass
class Comparison:
    """The result of :func:`compare` for one run: per output stream the beats expected and
    received (``lost``/``surplus``: the difference; beats past the capture memory are counted
    but not compared) and ``mismatches``: leaf values that differ, in the beats both have."""

    beats_expected: dict[str, int]
    beats_received: dict[str, int]
    mismatches: int
    values_compared: int
    first: str = ""

    @property
    def lost(self) -> int:
        return sum(max(0, self.beats_expected[n] - self.beats_received[n]) for n in self.beats_expected)

    @property
    def surplus(self) -> int:
        return sum(max(0, self.beats_received[n] - self.beats_expected[n]) for n in self.beats_expected)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.lost == 0 and self.surplus == 0


def compare(manifest: dict, stim: Stimulus, run: SoakRun) -> Comparison:
    """Every captured beat against the expected one, leaf value by leaf value (unpacked with
    the manifest's layouts), and the beat counts against the expected counts."""
    import numpy as np

    streams = manifest["streams"]
    exp_n, got_n = {}, {}
    mismatches = values = 0
    first = ""
    for name, expected in stim.expected.items():
        got = run.outputs.get(name, [])
        exp_n[name] = len(expected)
        got_n[name] = run.ports[name]["beats"]
        n = min(len(expected), len(got))
        if n == 0:
            continue
        e = np.array(expected[:n], dtype=object)
        g = np.array(got[:n], dtype=object)
        differ = np.nonzero(e != g)[0]
        layout = streams[name]["layout"]
        leaves = sum(a.shape[1] for _, a in _leaves(layout, unpack(layout, [0])))
        values += n * leaves
        if len(differ):
            eu = dict(_leaves(layout, unpack(layout, [expected[i] for i in differ])))
            gu = dict(_leaves(layout, unpack(layout, [got[i] for i in differ])))
            for leaf in eu:
                bad = eu[leaf] != gu[leaf]
                mismatches += int(bad.sum())
                if not first and bad.any():
                    i, lane = np.argwhere(bad)[0]
                    first = (f"{name} beat {int(differ[i])} {leaf}[{int(lane)}]: expected {eu[leaf][i, lane]}, "
                             f"got {gu[leaf][i, lane]}")
    return Comparison(exp_n, got_n, mismatches, values, first)
