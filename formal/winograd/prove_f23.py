"""Proof that the RTL 1-D F(2,3) datapath equals direct convolution for ALL inputs, by
exhaustive simulation of the generated Verilog at reduced operand widths.

    .venv/bin/python formal/winograd/prove_f23.py [--data-width 3] [--weight-width 3]

Generates WinogradF23Core for the widths (the same generator code as for int8; every width
in it is derived from the operand widths), compiles it with Verilator together with
exhaustive_f23.cpp, which enumerates every (d0..d3, g0..g2) and compares with a direct FIR in
64-bit C++ integers. 3+3 bits: 2**21 inputs (seconds); 4+4 bits: 2**28 (tens of seconds).
Why not SAT: see docs/winograd.md ("Proof"). Exit status 0 = proved, 1 = counterexample.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def prove(data_width: int, weight_width: int, work_dir=None, mutation=None) -> tuple[bool, str]:
    """Returns (proved, report). ``mutation=(old, new)`` edits the generated Verilog once
    (used by the tests to show that a wrong datapath is caught)."""
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.winograd import WinogradConfig, WinogradF23Core
    from convgen.sim.build import work_directory
    from convgen.sim.tools import simulator_env

    cfg = WinogradConfig(data_width=data_width, weight_width=weight_width, out_width=64)
    yw = cfg.y1_range.width
    # a temporary folder is deleted afterwards (a given work_dir is kept)
    with work_directory("convgen-f23-proof-", work_dir) as work:
        text = to_verilog(WinogradF23Core(cfg), "core")
        if mutation is not None:
            if mutation[0] not in text:
                raise ValueError(f"mutation target {mutation[0]!r} not in the generated Verilog")
            text = text.replace(mutation[0], mutation[1], 1)
        (work / "core.v").write_text(text)
        env = {**os.environ, **simulator_env("verilator")}
        cmd = ["verilator", "--cc", "--exe", "--build", "-O3", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
               "--top-module", "core", "-CFLAGS", f"-O2 -DDW={data_width} -DGW={weight_width} -DYW={yw}",
               "--Mdir", str(work / "obj"), str(work / "core.v"), str(HERE / "exhaustive_f23.cpp")]
        build = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if build.returncode != 0:
            raise RuntimeError(f"verilator build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
        run = subprocess.run([str(work / "obj" / "Vcore")], capture_output=True, text=True)
        return run.returncode == 0, run.stdout.strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-width", type=int, default=3)
    p.add_argument("--weight-width", type=int, default=3)
    args = p.parse_args(argv)
    ok, text = prove(args.data_width, args.weight_width)
    print(text)
    print("PROVED" if ok else "COUNTEREXAMPLE FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
