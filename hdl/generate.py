"""Verilog generation: one module per configuration, written atomically with its manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

from amaranth.back import verilog

from convgen.core.fileio import atomic_directory
from convgen.core.version import __version__

from .manifest import describe_ports
from .packaging import file_list, fusesoc_core

__all__ = ["to_verilog", "block_manifest", "write_block"]


def to_verilog(component, name: str) -> str:
    # The builtin yosys keeps the output independent of whatever yosys is on PATH.
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return verilog.convert(component, name=name, emit_src=False)


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
