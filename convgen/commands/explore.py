"""`convgen explore <block>`: sweep a block's main parameters through the synthesis flow.

One sub-command per block registered in ``convgen.synth.explore.EXPLORABLE``; each of the
block's sweepable parameters becomes a comma-separated option (``--rows 2,4,8``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _list_of(kind, name):
    def parse(text: str):
        out = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            if kind is int:
                try:
                    out.append(int(item))
                except ValueError:
                    raise argparse.ArgumentTypeError(
                        f"--{name.replace('_', '-')} must be comma-separated integers, not {text!r}") from None
            else:
                out.append(item)
        if not out:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} needs at least one value")
        return out
    return parse


def cmd_explore(args) -> int:
    from convgen.cli import CLIError
    from convgen.core.fileio import atomic_write_text
    from convgen.synth.explore import EXPLORABLE, explore, pareto, plot, rows_to_csv

    spec = EXPLORABLE[args.block]
    if args.jobs < 1:
        raise CLIError(f"jobs must be an integer >= 1, not {args.jobs}")
    values = {n: getattr(args, n) for n in spec.params}
    rows = explore(args.block, values, args.target, device=args.device, pnr=args.pnr,
                   jobs=args.jobs, freq=args.freq, seed=args.seed)
    out = Path(args.out)
    stem = f"explore_{args.block}_{args.target}" + ("_pnr" if args.pnr else "")
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    atomic_write_text(csv_path, rows_to_csv(spec, rows))
    dev = rows[0].get("device") if rows else ""
    plot(spec, rows, png_path, f"convgen explore {args.block} --target {args.target}"
         + (f" ({dev}, nextpnr post-route)" if args.pnr else " (yosys only)"))
    front = pareto(rows)
    thr = "GMAC/s" if front and front[0].get("gmacs") is not None else "MACs/cycle"
    print(f"Pareto-optimal points (LUTs, DSPs vs {thr}):")
    names = list(spec.params)
    head = names + ["MACs/cycle", "LUTs", "FFs", "DSPs", "Fmax (MHz)", "GMAC/s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in front:
        cells = [r.get(n, "") for n in names] + [r["macs_per_cycle"], r["luts"], r["ffs"], r["dsps"],
                                                 r.get("fmax_mhz") or "-", r.get("gmacs") or "-"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    bad = [r for r in rows if r["status"] != "ok"]
    for r in bad:
        print(f"{r['status']}: {r.get('error')}", file=sys.stderr)
    print(json.dumps({"csv": str(csv_path), "plot": str(png_path), "points": len(rows),
                      "ok": len(rows) - len(bad), "pareto": len(front)}))
    return 0


def register(verbs) -> None:
    from convgen.synth.explore import EXPLORABLE
    from convgen.synth.flow import add_synth_args

    ex = verbs["top"].add_parser("explore", help="sweep a block's parameters: CSV, plot, Pareto points")
    blocks = ex.add_subparsers(dest="block", required=True)
    for name, spec in EXPLORABLE.items():
        p = blocks.add_parser(name, help=f"sweep {name}")
        for pname, (kind, default, help_text) in spec.params.items():
            d = ",".join(map(str, default)) if default else "see help"
            p.add_argument(f"--{pname.replace('_', '-')}", dest=pname, type=_list_of(kind, pname),
                           default=None, help=f"{help_text}; comma-separated (default {d})")
        add_synth_args(p, out_help="directory for the CSV and PNG (default: the current one)")
        p.set_defaults(out=".")
        p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
        p.set_defaults(func=cmd_explore)
