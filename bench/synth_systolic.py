"""Resource table of SystolicArray configurations through the yosys flow (convgen.synth).

    .venv/bin/python bench/synth_systolic.py [--sizes 4,8,16] [--targets generic,ice40,ecp5]
    .venv/bin/python bench/synth_systolic.py --sizes 8 --targets ecp5 --pnr [--device 85k]

Prints a Markdown table and writes bench/results/synth_systolic.{md,json} (with --pnr:
synth_systolic_pnr.{md,json}, adding nextpnr's post-route Fmax; a configuration that does not
fit the device is listed as such). Runs are cached (~/.cache/convgen/synth and .../pnr), so a
second invocation is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from convgen.fileio import atomic_write_text
from convgen.hdl.generate import to_verilog
from convgen.hdl.systolic import SystolicArray, SystolicConfig
from convgen.synth import markdown_table, synthesize
from convgen.synth.flow import flow_markdown, run_flow
from convgen.synth.pnr import DoesNotFit


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4,8,16")
    p.add_argument("--targets", default="generic,ice40,ecp5")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--dataflows", default="os,ws")
    p.add_argument("--acc-width", type=int, default=32)
    p.add_argument("--pnr", action="store_true", help="also place and route (ice40/ecp5 targets only)")
    p.add_argument("--device", default=None, help="device for --pnr (default: up5k / 85k)")
    args = p.parse_args(argv)
    if args.pnr:
        return _pnr(args)
    reports, rows = [], []
    for size in (int(s) for s in args.sizes.split(",")):
        for dataflow in ("os", "ws"):
            cfg = SystolicConfig(rows=size, cols=size, dataflow=dataflow)
            text = to_verilog(SystolicArray(cfg), cfg.module_name)
            for target in args.targets.split(","):
                t0 = time.monotonic()
                r = synthesize(text, cfg.module_name, target)
                print(f"{cfg.module_name} {target}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
                reports.append(r)
                rows.append({"size": size, "dataflow": dataflow, "target": target,
                             "luts_per_pe": round(r.luts / size**2, 1), "ffs_per_pe": round(r.ffs / size**2, 1),
                             "dsps_per_pe": r.dsps / size**2, **r.to_dict()})
    table = markdown_table(reports)
    print(table)
    out = Path(args.out)
    atomic_write_text(out / "synth_systolic.md", table + "\n")
    atomic_write_text(out / "synth_systolic.json", json.dumps(rows, indent=2, default=str) + "\n")
    return 0


def _pnr(args) -> int:
    docs, rows, misfits = [], [], []
    for size in (int(s) for s in args.sizes.split(",")):
        for dataflow in args.dataflows.split(","):
            cfg = SystolicConfig(rows=size, cols=size, dataflow=dataflow, acc_width=args.acc_width)
            text = to_verilog(SystolicArray(cfg), cfg.module_name)
            for target in args.targets.split(","):
                t0 = time.monotonic()
                try:
                    doc = run_flow(text, cfg.module_name, target, block="systolic", parameters=cfg.to_dict(),
                                   device=args.device, pnr=True)
                except DoesNotFit as e:
                    misfits.append(f"- {cfg.module_name} on {target}: does not fit ({e})")
                    print(misfits[-1], file=sys.stderr)
                    continue
                print(f"{cfg.module_name} {target}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
                docs.append(doc)
                r = doc["resources"]
                rows.append({"size": size, "dataflow": dataflow, "target": target,
                             "luts_per_pe": round(r["luts"] / size**2, 1), "ffs_per_pe": round(r["ffs"] / size**2, 1),
                             "fmax_mhz": doc["fmax_mhz"],
                             "gmacs": round(size * size * doc["fmax_mhz"] / 1000, 3), **doc})
    table = flow_markdown(docs) + ("\n" + "\n".join(misfits) + "\n" if misfits else "")
    print(table)
    out = Path(args.out)
    atomic_write_text(out / "synth_systolic_pnr.md", table + "\n")
    atomic_write_text(out / "synth_systolic_pnr.json", json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
