"""Resource and Fmax tables of SystolicArray configurations through the synthesis flow.

    .venv/bin/python bench/synth_systolic.py [--sizes 4,8,16] [--targets generic,ice40,ecp5]
    .venv/bin/python bench/synth_systolic.py --sizes 8 --targets ecp5 --dataflows os --pnr
    .venv/bin/python bench/synth_systolic.py --sizes 2x4 --targets ice40 --dataflows os --acc-width 24 \\
        --pipeline-operands --pnr --name up5k
    .venv/bin/python bench/synth_systolic.py --sizes 8 --targets ecp5 --dataflows os --dsp ecp5 \\
        --pipeline-operands --pipeline-mult 2 --pnr --seeds 1,2,3 --name ecp5_m2
    .venv/bin/python bench/synth_systolic.py --sizes 16 --targets ecp5 --dataflows os --dsp ecp5 \\
        --pipeline-operands --pipeline-mult 2 --dsp-rows 9 --pnr --seeds 1 --name ecp5_m2_16x16

Prints a Markdown table and writes bench/results/synth_systolic.{md,json}; with --pnr,
synth_systolic_pnr.{md,json} (or synth_systolic_pnr_<name>.{md,json} with --name), adding
nextpnr's post-route Fmax and GMAC/s (a configuration that does not fit is listed as such).
With --seeds, every configuration is placed once per nextpnr seed and the summary gives each
seed's Fmax, the median and the spread (max - min), GMAC/s at the median, and the critical path
of the median seed (source, sink, logic and routing delay, from nextpnr's log).
Runs are cached (~/.cache/convgen), so a second invocation is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from convgen.core.cache import portable
from convgen.core.fileio import atomic_write_text
from convgen.hdl.generate import to_verilog
from convgen.hdl.systolic import SystolicArray, SystolicConfig
from convgen.synth import markdown_table, synthesize
from convgen.synth.flow import flow_markdown, run_flow
from convgen.synth.pnr import DoesNotFit


def _shapes(text: str):
    """'4,8' -> square arrays; '2x4' -> 2 rows, 4 columns."""
    for item in text.split(","):
        r, _, c = item.partition("x")
        yield int(r), int(c or r)


def _configs(args):
    for rows, cols in _shapes(args.sizes):
        for dataflow in args.dataflows.split(","):
            yield SystolicConfig(rows=rows, cols=cols, dataflow=dataflow, acc_width=args.acc_width,
                                 pipeline_operands=args.pipeline_operands, dsp=args.dsp,
                                 pipeline_mult=args.pipeline_mult, dsp_rows=args.dsp_rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4,8,16", help="comma-separated N (N x N) or RxC arrays")
    p.add_argument("--targets", default="generic,ice40,ecp5")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--dataflows", default="os,ws")
    p.add_argument("--acc-width", type=int, default=32)
    p.add_argument("--pipeline-operands", action="store_true")
    p.add_argument("--dsp", default="generic", help="PE multipliers: generic, ecp5 or ice40 (SystolicConfig.dsp)")
    p.add_argument("--pipeline-mult", type=int, default=0,
                   help="more multiplier stages: 1 = the DSP's pipeline register, 2 = and a fabric register")
    p.add_argument("--pnr", action="store_true", help="also place and route (ice40/ecp5 targets only)")
    p.add_argument("--device", default=None, help="device for --pnr (default: up5k / 85k)")
    p.add_argument("--name", default=None, help="suffix of the --pnr result files")
    p.add_argument("--seeds", default="1", help="comma-separated nextpnr seeds for --pnr (default 1)")
    p.add_argument("--dsp-rows", type=int, default=0,
                   help="rows on --dsp multipliers, the others on LUT multipliers (0: all rows)")
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
    atomic_write_text(out / "synth_systolic.json", json.dumps(portable(rows), indent=2, default=str) + "\n")
    return 0


def _critical_path(log_path) -> dict:
    """The post-route critical path of clk from nextpnr's log: source, sink, logic and routing ns."""
    import re
    try:
        text = Path(log_path).read_text(errors="replace")
    except (OSError, TypeError):
        return {}
    i = text.rfind("Critical path report for clock '")   # the harness has one clock
    if i < 0:
        return {}
    block = text[i:].split("\n")
    src = sink = None
    steps = []
    for ln in block[1:]:
        m = re.search(r"\b(Source|Sink) (\S+)", ln)
        if m and m.group(1) == "Source" and src is None:
            src = m.group(2)
        elif m and m.group(1) == "Sink":
            sink = m.group(2)
        m = re.match(r"^Info:\s+(clk-to-q|routing|logic|setup)\s+(\d+\.\d+)\s+\d+\.\d+\s+(.*)$", ln)
        if m:
            steps.append(f"{m.group(1)} {m.group(2)} ns: {m.group(3).strip()}")
        m = re.match(r"^Info: (\d+\.\d+) ns logic, (\d+\.\d+) ns routing", ln)
        if m:
            return {"source": src, "sink": sink, "logic_ns": float(m.group(1)), "routing_ns": float(m.group(2)),
                    "steps": steps}
    return {"source": src, "sink": sink, "steps": steps}


def _median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _pnr(args) -> int:
    seeds = [int(x) for x in str(args.seeds).split(",")]
    docs, rows, misfits, summary = [], [], [], []
    for cfg in _configs(args):
        text = to_verilog(SystolicArray(cfg), cfg.module_name)
        pes = cfg.rows * cfg.cols
        for target in args.targets.split(","):
            per_seed = []
            for seed in seeds:
                t0 = time.monotonic()
                try:
                    doc = run_flow(text, cfg.module_name, target, block="systolic", parameters=cfg.to_dict(),
                                   device=args.device, pnr=True, seed=seed)
                except DoesNotFit as e:
                    misfits.append(f"- {cfg.module_name} on {target}: does not fit ({e})")
                    print(misfits[-1], file=sys.stderr)
                    break
                print(f"{cfg.module_name} {target} seed {seed}: {doc['fmax_mhz']} MHz, "
                      f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
                docs.append(doc)
                r = doc["resources"]
                path = _critical_path((doc.get("pnr") or {}).get("log_path"))
                rows.append({"rows": cfg.rows, "cols": cfg.cols, "dataflow": cfg.dataflow, "target": target,
                             "dsp": cfg.dsp, "mult_latency": cfg.mult_latency, "pe_latency": cfg.pe_latency,
                             "seed": seed, "luts_per_pe": round(r["luts"] / pes, 1),
                             "ffs_per_pe": round(r["ffs"] / pes, 1), "fmax_mhz": doc["fmax_mhz"],
                             "gmacs": round(pes * doc["fmax_mhz"] / 1000, 3), "critical_path": path, **doc})
                per_seed.append(rows[-1])
            if not per_seed:
                continue
            fmax = [x["fmax_mhz"] for x in per_seed]
            med = _median(fmax)
            mid = min(per_seed, key=lambda x: abs(x["fmax_mhz"] - med))
            r = per_seed[0]["resources"]
            cp = mid["critical_path"]
            summary.append({
                "top": cfg.module_name, "target": target, "device": per_seed[0]["device_name"],
                "dsp": cfg.dsp, "dsp_rows": cfg.dsp_rows, "mult_latency": cfg.mult_latency,
                "pe_latency": cfg.pe_latency, "macs": pes,
                "luts": r["luts"], "ffs": r["ffs"], "dsps": r["dsps"], "luts_per_pe": round(r["luts"] / pes, 1),
                "seeds": seeds[:len(fmax)], "fmax_mhz": fmax, "fmax_median": round(med, 2),
                "fmax_spread": round(max(fmax) - min(fmax), 2), "gmacs_median": round(pes * med / 1000, 3),
                "critical_path_of_median_seed": {"seed": mid["seed"], **cp}})
    lines = ["| top | device | multiplier, latency | LUT4 | FF | DSP | LUT4/PE | Fmax MHz per seed | "
             "median (spread) | GMAC/s at median | critical path (median seed) |", "|" + "---|" * 11]
    for x in summary:
        cp = x["critical_path_of_median_seed"]
        path = (f"seed {cp['seed']}: {cp.get('source')} -> {cp.get('sink')}"
                + (f", {cp['logic_ns']} ns logic + {cp['routing_ns']} ns routing" if "logic_ns" in cp else ""))
        mult = f"{x['dsp']} {x['mult_latency']}" + (f", rows {x['dsp_rows']}+ on lut" if x["dsp_rows"] else "")
        lines.append(f"| `{x['top']}` | {x['device']} | {mult} | {x['luts']} | {x['ffs']} | "
                     f"{x['dsps']} | {x['luts_per_pe']} | "
                     + ", ".join(f"{f:.1f}" for f in x["fmax_mhz"])
                     + f" | **{x['fmax_median']:.1f}** ({x['fmax_spread']:.1f}) | {x['gmacs_median']} | {path} |")
    table = ("Seeds " + ",".join(map(str, seeds)) + "; Fmax is nextpnr's post-route figure, GMAC/s = MACs/cycle x "
             "median Fmax.\n\n" + "\n".join(lines) + "\n\nPer run:\n\n" + flow_markdown(docs)
             + ("\n" + "\n".join(misfits) + "\n" if misfits else ""))
    print(table)
    out = Path(args.out)
    stem = "synth_systolic_pnr" + (f"_{args.name}" if args.name else "")
    atomic_write_text(out / f"{stem}.md", table + "\n")
    atomic_write_text(out / f"{stem}.json", json.dumps(portable({"summary": summary, "runs": rows}), indent=2,
                                                        default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
