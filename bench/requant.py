"""Requantizer numbers: synthesis per rounding mode and target, throughput and latency.

    .venv/bin/python bench/requant.py [--targets ice40,ecp5] [--lanes 1] [--groups 1] [--sim verilator]

Resources come from convgen.synth.synthesize (LUT/FF/DSP); throughput and latency are measured
on the RTL with run_requant (no stalls) and checked against the golden model (a mismatch
aborts with status 1). Writes bench/results/requant.{md,json} atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from convgen.core.fileio import atomic_write_text
from convgen.golden.requant import RequantParams, requantize
from convgen.hdl.generate import to_verilog
from convgen.hdl.requant import ROUNDINGS, RequantConfig, Requantizer
from convgen.sim.requant import run_requant
from convgen.synth import SynthError, synthesize


def params(rounding, channels, rng):
    if rounding == "onnx":
        return RequantParams.make("onnx", channels, scale=rng.uniform(1e-4, 0.9, channels).astype(np.float32))
    if rounding == "xnnpack":
        return RequantParams.make("xnnpack", channels, scale=rng.uniform(1e-4, 255.0, channels).astype(np.float32))
    kw = {"round_away": rng.random(channels) < 0.5} if rounding == "tflite_opt" else {}
    return RequantParams.make(rounding, channels, multiplier=rng.integers(1 << 30, 1 << 31, channels),
                              shift=rng.integers(-31, 1, channels), **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="ice40,ecp5")
    ap.add_argument("--lanes", type=int, default=1)
    ap.add_argument("--groups", type=int, default=1)
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    rows = []
    for rounding in ROUNDINGS:
        cfg = RequantConfig(lanes=args.lanes, groups=args.groups, rounding=rounding)
        text = to_verilog(Requantizer(cfg), cfg.module_name)
        row = {"rounding": rounding, "lanes": cfg.lanes, "groups": cfg.groups, "stages": cfg.stages,
               "latency_cycles": cfg.latency}
        for target in args.targets.split(","):
            try:
                r = synthesize(text, cfg.module_name, target)
            except SynthError as e:  # recorded, not hidden: the table says which run failed
                row[target] = {"luts": "-", "ffs": "-", "dsps": "-", "error": str(e).split(";")[0]}
                print(f"{rounding} {target}: FAILED {e}", file=sys.stderr)
                continue
            row[target] = {"luts": r.luts, "ffs": r.ffs, "dsps": r.dsps}
            print(f"{rounding} {target}: {r.luts} LUT {r.ffs} FF {r.dsps} DSP", file=sys.stderr)
        p = params(rounding, 4, rng)
        acc = rng.integers(-(1 << 31), 1 << 31, (256, 4))
        res = run_requant(acc, p, lanes=4, simulator=args.sim)
        if not np.array_equal(res.y, requantize(acc, p)):
            print(f"{rounding}: RTL != golden", file=sys.stderr)
            return 1
        row["measured"] = {"lanes": 4, "beats": 256, "cycles": res.cycles,
                           "values_per_cycle": round(res.values / res.cycles, 3)}
        rows.append(row)
    targets = args.targets.split(",")
    lines = ["| rounding | stages | latency (cycles) | " + " | ".join(f"{t} LUT/FF/DSP" for t in targets)
             + " | measured values/cycle (4 lanes, 256 beats) |",
             "|---|---|---|" + "---|" * len(targets) + "---|"]
    for r in rows:
        res = " | ".join(f"{r[t]['luts']}/{r[t]['ffs']}/{r[t]['dsps']}" for t in targets)
        lines.append(f"| {r['rounding']} | {r['stages']} | {r['latency_cycles']} | {res} | "
                     f"{r['measured']['values_per_cycle']} ({r['measured']['cycles']} cycles) |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    atomic_write_text(out / "requant.md", f"Requantizer, lanes={args.lanes}, groups={args.groups}\n\n{table}\n")
    atomic_write_text(out / "requant.json", json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
