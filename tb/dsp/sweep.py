"""Exhaustive operand sweeps of :class:`convgen.hdl.lib.dsp.DspMul` variants and of the ECP5
MULT18X18D model, as plain-Verilog testbenches (Icarus and Verilator, no per-cycle Python).

**Wrapper sweep** (:func:`run_sweep`). One testbench holds several DspMul instances side by
side (each with two lanes) and drives them all with the same stimulus:

- enabled edge ``e`` (1, 2, ...) presents pair ``n = e - 1``: lane 0 gets the bytes
  ``(a, b) = (n[15:8], n[7:0])``, lane 1 the bytes of ``m = (n * 40503 + 12345) mod 2**16``
  (40503 is odd, so ``n -> m`` is a bijection): over ``n = 0 .. 65535`` each lane sees all
  65,536 byte pairs, and the two lanes of one DSP never carry the same pair;
- ``ce`` is low in about a quarter of the cycles (an LFSR), and then the operands are junk
  (the bitwise complement), so a register that ignores ``ce`` shifts or corrupts the results;
- at every enabled edge the testbench writes every instance's ``p`` as it was just before the
  edge, one line per edge. Record ``r`` of an instance with latency ``L`` must hold the
  product of pair ``r - L``.

Python (:func:`check_sweep`) compares each record with NumPy products of the same bytes read
as int8/uint8 (:func:`expected_products`), an independent computation.

**Model sweep** (:func:`run_model_sweep`). Eight MULT18X18D instances, one per combination
of the input (A and B), pipeline and output registers, get random full-width 18-bit operands
and random SIGNEDA/SIGNEDB per cycle (Verilog ``$random``; the testbench writes the
operands it presented), with the same junk-on-``ce``-low scheme; Python checks every product
against the 36-bit product of the operands extended as the flags say.

``model_overrides`` replaces a simulation model's text (the mutant tests use it).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convgen.hdl.generate import to_verilog
from convgen.hdl.lib.dsp import DspMul, simulation_sources
from convgen.sim.build import build_free_running
from convgen.sim.tools import simulator_env

N_PAIRS = 1 << 16
LANE1_MUL, LANE1_ADD = 40503, 12345
MAX_LATENCY = 4
LANES = 2


@dataclass(frozen=True)
class Dut:
    """One DspMul instance of a wrapper sweep (always 8-bit operands, two lanes)."""
    variant: str
    latency: int
    a_signed: bool = True
    b_signed: bool = True
    #: a class of tb/dsp/mutants.py instead of DspMul (a deliberately broken wrapper)
    mutant: str | None = None

    @property
    def name(self) -> str:
        sign = ("s" if self.a_signed else "u") + ("s" if self.b_signed else "u")
        return f"dsp_{self.variant}_l{self.latency}_{sign}" + (f"_{self.mutant}" if self.mutant else "")

    @property
    def cls(self):
        if self.mutant is None:
            return DspMul
        from . import mutants
        return getattr(mutants, self.mutant)

    def component(self) -> DspMul:
        return self.cls(variant=self.variant, a_width=8, b_width=8, a_signed=self.a_signed,
                   b_signed=self.b_signed, lanes=LANES, latency=self.latency)


#: every variant at every latency, int8 x int8
ALL_DUTS = tuple(Dut(v, lat) for v in ("generic", "ecp5", "ice40", "lut") for lat in (1, 2, 3, 4))
#: the default-suite subset: the latencies a PE uses (3: every DSP register, 4: and a fabric one)
DEFAULT_DUTS = tuple(d for d in ALL_DUTS if d.latency >= 3)
#: the other signedness combinations (uint8 x int8, uint8 x uint8) at latency 3
UNSIGNED_DUTS = tuple(Dut(v, 3, a_s, b_s) for v in ("generic", "ecp5", "ice40", "lut")
                      for a_s, b_s in ((False, True), (False, False)))

#: deliberately broken instances (tb/dsp/mutants.py): the sweep must find wrong products in each
MUTANT_DUTS = (
    Dut("ecp5", 3, mutant="PipelineIgnoresCeDspMul"),
    Dut("ice40", 3, mutant="LowAUnsignedDspMul"),
    Dut("ecp5", 2, mutant="ZeroExtendingDspMul"),
    Dut("lut", 3, mutant="UnsignedSelectorLutDspMul"),
)


def _ce_lfsr_verilog() -> str:
    # 16-bit Fibonacci LFSR x^16 + x^14 + x^13 + x^11 + 1; ce is low when its two low bits are 0
    return ("lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};")


def sweep_testbench(duts, top: str = "dsp_sweep_tb") -> str:
    """The testbench text (module ``top`` with input ``clk``, and ``<top>_clock`` for Icarus)."""
    lines = [f"module {top}(input clk);",
             "    integer fd;",
             "    reg [31:0] n = 0;",
             "    reg [15:0] lfsr = 16'hACE1;",
             # four idle cycles first: Icarus leaves some time-0 values unknown until then
             "    reg [2:0] warm = 0;",
             "    wire ce = (warm == 4) & (lfsr[0] | lfsr[1]);",
             "    wire [15:0] m = n[15:0] * 16'd%d + 16'd%d;" % (LANE1_MUL, LANE1_ADD),
             "    wire [15:0] pair0 = ce ? n[15:0] : ~n[15:0];",
             "    wire [15:0] pair1 = ce ? m : ~m;",
             # lane 0 in the low byte of a and b, lane 1 in the high byte
             "    wire [15:0] a = {pair1[15:8], pair0[15:8]};",
             "    wire [15:0] b = {pair1[7:0], pair0[7:0]};"]
    for i, d in enumerate(duts):
        lines.append(f"    wire [31:0] p{i};")
        lines.append(f"    {d.name} u{i} (.clk(clk), .rst(1'b0), .ce(ce), .a(a), .b(b), .p(p{i}));")
    fmt = " ".join(["%h"] * len(duts))
    args = ", ".join(f"p{i}" for i in range(len(duts)))
    lines += [
        "    initial begin",
        "        if (!$value$plusargs(\"out=%s\", path)) $fatal(1, \"+out=FILE missing\");",
        "        fd = $fopen(path, \"w\");",
        "    end",
        "    always @(posedge clk) begin",
        "        " + _ce_lfsr_verilog(),
        "        if (warm != 4) warm <= warm + 1;",
        "        if (ce) begin",
        f"            $fwrite(fd, \"{fmt}\\n\", {args});",
        "            n <= n + 1;",
        f"            if (n == {N_PAIRS + MAX_LATENCY}) begin",
        "                $fclose(fd);",
        "                $finish;",
        "            end",
        "        end",
        "    end",
        "endmodule",
        "",
        f"module {top}_clock;",
        "    reg clk = 0;",
        "    always #5 clk = ~clk;",
        f"    {top} tb (.clk(clk));",
        "endmodule",
        ""]
    lines.insert(1, "    reg [8*1024-1:0] path;")
    return "\n".join(lines)


def _run(kind: str, name: str, simulator: str, top: str, sources: dict[str, str], out: Path) -> None:
    b = build_free_running(kind, name, simulator, top, sources, what=name)
    env = dict(os.environ, **simulator_env(simulator))
    cmd = (["vvp", "-N", str(b.executable)] if simulator == "icarus" else [str(b.executable)]) + [f"+out={out}"]
    p = subprocess.run(cmd, cwd=b.directory, env=env, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{simulator} run of {name} failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")


def _models(variants, overrides) -> dict[str, str]:
    sources = {}
    for v in sorted(set(variants)):
        sources.update(simulation_sources(v))
    for fname, text in (overrides or {}).items():
        if fname not in sources:
            raise KeyError(f"no simulation model {fname!r} to override (have {sorted(sources)})")
        sources[fname] = text
    return sources


def run_sweep(simulator: str, duts=ALL_DUTS, *, model_overrides=None, name: str = "sweep") -> dict[str, np.ndarray]:
    """Run the wrapper sweep; returns ``{dut.name: records}``, ``records[r, lane]`` the raw
    16-bit product bits written at enabled edge ``r + 1``."""
    duts = list(duts)
    sources = {"dsp_sweep_tb.v": sweep_testbench(duts)}
    for d in duts:
        # the vendor primitives' unused inputs are left unconnected on purpose (hdl/lib/dsp.py)
        sources[f"{d.name}.v"] = "/* verilator lint_off PINMISSING */\n" + to_verilog(d.component(), d.name)
    sources.update(_models([d.variant for d in duts], model_overrides))
    for d in duts:
        if d.mutant:
            from .mutants import sources_of
            sources.update(sources_of(d.cls))
    with tempfile.TemporaryDirectory(prefix="convgen-dsp-") as tmp:
        out = Path(tmp) / "records.txt"
        _run("dsp_sweep", name, simulator, "dsp_sweep_tb", sources, out)
        words = parse_hex_words(out.read_bytes(), len(duts))
    return {d.name: np.stack([words[:, i] & 0xFFFF, (words[:, i] >> 16) & 0xFFFF], axis=1)
            for i, d in enumerate(duts)}


_HEX = np.full(256, -1, dtype=np.int64)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
_HEX[np.frombuffer(b"xXzZ", dtype=np.uint8)] = 15  # an unknown digit (a register not yet loaded)


def parse_hex_words(text: bytes, words: int) -> np.ndarray:
    """``[lines, words]`` int64 of lines of ``words`` space-separated 8-digit hex words."""
    width = 9 * words
    raw = np.frombuffer(text, dtype=np.uint8)
    if raw.size % width:
        raise ValueError(f"records are not lines of {words} 8-digit words")
    digits = _HEX[raw.reshape(-1, width).reshape(-1, words, 9)[:, :, :8]]
    if (digits < 0).any():
        raise ValueError("a record holds a character that is not a hex digit")
    return (digits << (4 * np.arange(7, -1, -1))).sum(axis=2)


def lane_pairs(lane: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw bytes ``(a, b)`` presented on ``lane`` for pairs ``n = 0 .. 65535``."""
    n = np.arange(N_PAIRS, dtype=np.int64)
    v = n if lane == 0 else (n * LANE1_MUL + LANE1_ADD) % N_PAIRS
    return v >> 8, v & 0xFF


def as_int8(raw: np.ndarray, is_signed: bool) -> np.ndarray:
    return np.where(raw >= 128, raw - 256, raw) if is_signed else raw


def expected_products(dut: Dut) -> np.ndarray:
    """``[65536, lanes]`` exact products (NumPy int64) of the pairs of each lane."""
    cols = []
    for lane in range(LANES):
        a, b = lane_pairs(lane)
        cols.append(as_int8(a, dut.a_signed) * as_int8(b, dut.b_signed))
    return np.stack(cols, axis=1)


def check_sweep(dut: Dut, records: np.ndarray) -> list[str]:
    """Mismatches (at most 5 described, then a count) of one instance's records."""
    want = expected_products(dut)
    got = records[dut.latency:dut.latency + N_PAIRS]
    if got.shape != want.shape:
        return [f"{dut.name}: {len(records)} records, need {dut.latency + N_PAIRS}"]
    # the products are 16-bit patterns: compare modulo 2**16 (the exact value fits in 16 bits)
    bad = np.argwhere((got & 0xFFFF) != (want & 0xFFFF))
    msgs = []
    for n, lane in bad[:5]:
        a, b = (x[n] for x in lane_pairs(lane))
        msgs.append(f"{dut.name} lane {lane} pair {n}: a={as_int8(a, dut.a_signed)} b={as_int8(b, dut.b_signed)} "
                    f"p=0x{got[n, lane]:04x}, want {want[n, lane]} (0x{want[n, lane] & 0xFFFF:04x})")
    if len(bad):
        msgs.append(f"{dut.name}: {len(bad)} of {want.size} products wrong")
    return msgs


# -- the MULT18X18D model on its own, at full width -------------------------------------------

MODEL_EDGES = 20000
#: (input registers, pipeline register, output register) of each instance
MODEL_MODES = tuple((i, p, o) for i in (0, 1) for p in (0, 1) for o in (0, 1))


def model_testbench(top: str = "mult18_model_tb") -> str:
    # the testbench leaves the outputs it does not check (ROA, SROB, SIGNEDP, ...) unconnected
    lines = ["/* verilator lint_off PINMISSING */",
             f"module {top}(input clk);",
             "    reg [8*1024-1:0] path;",
             "    integer fd;",
             "    reg [31:0] n = 0;",
             "    reg [15:0] lfsr = 16'hBEEF;",
             "    wire ce = lfsr[0] | lfsr[1];",
             "    reg [17:0] a = 0, b = 0;",
             "    reg sa = 0, sb = 0;",
             # junk while ce is low: complemented operands, flipped signedness
             "    wire [17:0] ai = ce ? a : ~a, bi = ce ? b : ~b;",
             "    wire sai = ce ? sa : ~sa, sbi = ce ? sb : ~sb;"]
    for k, (i, p, o) in enumerate(MODEL_MODES):
        clk = lambda on: '"CLK0"' if on else '"NONE"'  # noqa: E731
        bits_a = ", ".join(f".A{j}(ai[{j}])" for j in range(18))
        bits_b = ", ".join(f".B{j}(bi[{j}])" for j in range(18))
        bits_p = ", ".join(f".P{j}(p{k}[{j}])" for j in range(36))
        lines += [f"    wire [35:0] p{k};",
                  f"    MULT18X18D #(.REG_INPUTA_CLK({clk(i)}), .REG_INPUTB_CLK({clk(i)}), "
                  f".REG_PIPELINE_CLK({clk(p)}), .REG_OUTPUT_CLK({clk(o)})) m{k} (",
                  f"        {bits_a},", f"        {bits_b},", f"        {bits_p},",
                  "        .SIGNEDA(sai), .SIGNEDB(sbi), .SOURCEA(1'b0), .SOURCEB(1'b0),",
                  "        .CLK0(clk), .CE0(ce), .RST0(1'b0));"]
    fmt = " ".join(["%h"] * (4 + len(MODEL_MODES)))
    args = ", ".join(["a", "b", "sa", "sb"] + [f"p{k}" for k in range(len(MODEL_MODES))])
    lines += [
        "    initial begin",
        "        if (!$value$plusargs(\"out=%s\", path)) $fatal(1, \"+out=FILE missing\");",
        "        fd = $fopen(path, \"w\");",
        "    end",
        "    always @(posedge clk) begin",
        "        " + _ce_lfsr_verilog(),
        "        if (ce) begin",
        f"            $fwrite(fd, \"{fmt}\\n\", {args});",
        "            a <= $random; b <= $random; sa <= $random; sb <= $random;",
        # corner operands now and then: the extremes of both readings
        "            if (n % 7 == 3) a <= (n % 2) ? 18'h20000 : 18'h3FFFF;",
        "            if (n % 11 == 5) b <= (n % 3) ? 18'h20000 : 18'h1FFFF;",
        "            n <= n + 1;",
        f"            if (n == {MODEL_EDGES}) begin $fclose(fd); $finish; end",
        "        end",
        "    end",
        "endmodule",
        "",
        f"module {top}_clock;",
        "    reg clk = 0;",
        "    always #5 clk = ~clk;",
        f"    {top} tb (.clk(clk));",
        "endmodule",
        ""]
    return "\n".join(lines)


def run_model_sweep(simulator: str, *, model_text: str | None = None) -> list[str]:
    """Run the MULT18X18D model sweep; returns the mismatches (empty: every product right)."""
    sources = {"mult18_model_tb.v": model_testbench()}
    sources.update(_models(["ecp5"], {"ecp5_mult18x18d.v": model_text} if model_text else None))
    with tempfile.TemporaryDirectory(prefix="convgen-dsp-") as tmp:
        out = Path(tmp) / "records.txt"
        _run("dsp_model", "mult18", simulator, "mult18_model_tb", sources, out)
        rows = [[int(w, 16) for w in line.split()] for line in out.read_text().splitlines()]
    # Python ints: 36-bit products do not fit NumPy int64 products of 36-bit extended operands
    a, b, sa, sb = ([r[k] for r in rows] for k in range(4))

    def ext(x, s):
        return x - (1 << 18) if s and x >= (1 << 17) else x

    want = [(ext(a[r], sa[r]) * ext(b[r], sb[r])) % (1 << 36) for r in range(len(rows))]
    msgs = []
    for k, (i, p, o) in enumerate(MODEL_MODES):
        lat = i + p + o
        bad = [r for r in range(lat, len(rows)) if rows[r][4 + k] != want[r - lat]]
        for r in bad[:3]:
            msgs.append(f"mode in={i} pipe={p} out={o}, edge {r}: P=0x{rows[r][4 + k]:09x}, "
                        f"want 0x{want[r - lat]:09x} (a=0x{a[r - lat]:05x} s{sa[r - lat]} b=0x{b[r - lat]:05x} "
                        f"s{sb[r - lat]})")
        if bad:
            msgs.append(f"mode in={i} pipe={p} out={o}: {len(bad)} of {len(rows) - lat} products wrong")
    return msgs
