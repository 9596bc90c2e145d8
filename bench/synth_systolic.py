"""Resource and Fmax tables of SystolicArray configurations through the synthesis flow.

    .venv/bin/python bench/synth_systolic.py [--sizes 4,8,16] [--targets generic,ice40,ecp5]
    .venv/bin/python bench/synth_systolic.py --sizes 8 --targets ecp5 --dataflows os --pnr
    .venv/bin/python bench/synth_systolic.py --sizes 2x4 --targets ice40 --dataflows os --acc-width 24 \\
        --pipeline-operands --pnr --name up5k

Prints a Markdown table and writes bench/results/synth_systolic.{md,json}; with --pnr,
synth_systolic_pnr.{md,json} (or synth_systolic_pnr_<name>.{md,json} with --name), adding
nextpnr's post-route Fmax and GMAC/s (a configuration that does not fit is listed as such).
Runs are cached (~/.cache/convgen), so a second invocation is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from convgen.core.fileio import atomic_write_text
from convgen.hdl.generate import to_verilog
from convgen.hdl.systolic import SystolicArray, SystolicConfig
from convgen.synth import markdown_table, synthesize
from convgen.synth.flow import flow_markdown, run_flow
from convgen.synth.pnr import DoesNotFit


def _portable(obj):
    """JSON-ready copy with machine paths made relative to the cache ($CONVGEN_CACHE) or
    reduced to a file name, so committed results do not name this machine's directories."""
    from convgen.core.cache import cache_root

    root = str(cache_root())
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_portable(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        return "$CONVGEN_CACHE" + obj[len(root):] if obj.startswith(root) else Path(obj).name
    return obj


def _shapes(text: str):
    """'4,8' -> square arrays; '2x4' -> 2 rows, 4 columns."""
    for item in text.split(","):
        r, _, c = item.partition("x")
        yield int(r), int(c or r)


def _configs(args):
    for rows, cols in _shapes(args.sizes):
        for dataflow in args.dataflows.split(","):
            yield SystolicConfig(rows=rows, cols=cols, dataflow=dataflow, acc_width=args.acc_width,
                                 pipeline_operands=args.pipeline_operands)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4,8,16", help="comma-separated N (N x N) or RxC arrays")
    p.add_argument("--targets", default="generic,ice40,ecp5")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--dataflows", default="os,ws")
    p.add_argument("--acc-width", type=int, default=32)
    p.add_argument("--pipeline-operands", action="store_true")
    p.add_argument("--pnr", action="store_true", help="also place and route (ice40/ecp5 targets only)")
    p.add_argument("--device", default=None, help="device for --pnr (default: up5k / 85k)")
    p.add_argument("--name", default=None, help="suffix of the --pnr result files")
    args = p.parse_args(argv)
    if args.pnr:
        return _pnr(args)
    reports, rows = [], []
    for cfg in _configs(args):
        text = to_verilog(SystolicArray(cfg), cfg.module_name)
        pes = cfg.rows * cfg.cols
        for target in args.targets.split(","):
            t0 = time.monotonic()
            r = synthesize(text, cfg.module_name, target)
            print(f"{cfg.module_name} {target}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
            reports.append(r)
            rows.append({"rows": cfg.rows, "cols": cfg.cols, "dataflow": cfg.dataflow, "target": target,
                         "luts_per_pe": round(r.luts / pes, 1), "ffs_per_pe": round(r.ffs / pes, 1),
                         "dsps_per_pe": r.dsps / pes, **r.to_dict()})
    table = markdown_table(reports)
    print(table)
    out = Path(args.out)
    atomic_write_text(out / "synth_systolic.md", table + "\n")
    atomic_write_text(out / "synth_systolic.json", json.dumps(_portable(rows), indent=2, default=str) + "\n")
    return 0


def _pnr(args) -> int:
    docs, rows, misfits = [], [], []
    for cfg in _configs(args):
        text = to_verilog(SystolicArray(cfg), cfg.module_name)
        pes = cfg.rows * cfg.cols
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
            rows.append({"rows": cfg.rows, "cols": cfg.cols, "dataflow": cfg.dataflow, "target": target,
                         "luts_per_pe": round(r["luts"] / pes, 1), "ffs_per_pe": round(r["ffs"] / pes, 1),
                         "fmax_mhz": doc["fmax_mhz"],
                         "gmacs": round(pes * doc["fmax_mhz"] / 1000, 3), **doc})
    gmacs = "\n".join(f"- {d['top']}: {row['gmacs']} GMAC/s peak ({row['rows'] * row['cols']} MACs/cycle "
                      f"x {row['fmax_mhz']:.1f} MHz)" for d, row in zip(docs, rows))
    table = flow_markdown(docs) + "\n" + gmacs + "\n" + ("\n".join(misfits) + "\n" if misfits else "")
    print(table)
    out = Path(args.out)
    stem = "synth_systolic_pnr" + (f"_{args.name}" if args.name else "")
    atomic_write_text(out / f"{stem}.md", table + "\n")
    atomic_write_text(out / f"{stem}.json", json.dumps(_portable(rows), indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
