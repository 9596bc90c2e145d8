"""Verilator ``--lint-only -Wall`` report for generated Verilog.

Simulation builds disable only WIDTHEXPAND, WIDTHTRUNC and CASEINCOMPLETE (see sim/build.py).
This full lint run lists every warning class; ``ACCEPTED`` names the classes that Amaranth's
code generation produces by design, with the reason, and tests/test_lint.py fails when any
other class (a latch, a multi-driven net, a combinational loop, ...) appears.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
from pathlib import Path

from convgen.hdl.packaging import LINT_WAIVERS

from .tools import simulator_env

__all__ = ["ACCEPTED", "lint"]

ACCEPTED = LINT_WAIVERS


def lint(verilog: str | os.PathLike, top: str) -> collections.Counter:
    """Run ``verilator --lint-only -Wall`` and count warnings by class."""
    env = dict(os.environ, **simulator_env("verilator"))
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top,
                           str(Path(verilog))], capture_output=True, text=True, env=env)
    counts = collections.Counter(re.findall(r"%Warning-([A-Z0-9_]+)", proc.stderr))
    errors = re.findall(r"%Error(?:-[A-Z0-9_]+)?:.*", proc.stderr)
    if errors:
        counts["ERROR"] += len(errors)
    return counts
