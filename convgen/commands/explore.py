"""`convgen explore <block>`: sweep a block's main parameters through the synthesis flow.

One sub-command per block registered in ``convgen.synth.explore.EXPLORABLE``; each of the
block's sweepable parameters becomes a comma-separated option (``--rows 2,4,8``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from convgen.core.fields import Field

from .common import CLIError, add_fields, allowed_text, check_output_dir, read_fields, remember_flags


def _values(spec, args) -> dict[str, list]:
    """The comma-separated values of each swept option, parsed and checked one by one
    against the field's declaration (errors name the flag); whole points are checked later,
    by ``explore``, before any tool runs."""
    values = {}
    for name, f in spec.params.items():
        text = getattr(args, name)
        if text is None:
            continue
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise CLIError(f"{f.flag} needs at least one value")
        values[name] = [f.check(f.parse(t), label=f.flag) for t in items]
    return values


def cmd_explore(args) -> int:
    from convgen.core.fileio import atomic_write_text
    from convgen.synth.explore import EXPLORABLE, explore, pareto, plot, rows_to_csv
    from convgen.synth.flow import check_flow_options

    FLOW_FIELDS = explore_flow_fields()
    spec = EXPLORABLE[args.block]
    values = _values(spec, args)
    flow = read_fields(args, FLOW_FIELDS)
    check_flow_options(**flow, label={f.name: f.flag for f in FLOW_FIELDS}.get)
    jobs = JOBS.check(JOBS.parse(args.jobs), label=JOBS.flag)
    check_output_dir(args.out, OUT.flag)   # before the sweep
    rows = explore(args.block, values, flow["target"], device=flow["device"], pnr=flow["pnr"],
                   jobs=jobs, freq=flow["freq"], seed=flow["seed"])
    out = Path(args.out)
    stem = f"explore_{args.block}_{flow['target']}" + ("_pnr" if flow["pnr"] else "")
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    atomic_write_text(csv_path, rows_to_csv(spec, rows))
    dev = rows[0].get("device") if rows else ""
    plot(spec, rows, png_path, f"convgen explore {args.block} --target {flow['target']}"
         + (f" ({dev}, nextpnr post-route)" if flow["pnr"] else " (yosys only)"))
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


JOBS = Field("jobs", 1, "parallel worker processes", lo=1)
OUT = Field("out", ".", "directory for the CSV and PNG", kind=str, metavar="DIR")


def explore_flow_fields():
    """The synthesis flow options, with ``--target`` defaulting to ecp5: a sweep on the generic
    target would compare blocks with no LUT or DSP figures at all."""
    import dataclasses

    from convgen.synth.flow import FLOW_FIELDS

    return tuple(dataclasses.replace(f, default="ecp5") if f.name == "target" else f for f in FLOW_FIELDS)


def register(verbs) -> None:
    from convgen.synth.explore import EXPLORABLE

    FLOW_FIELDS = explore_flow_fields()

    ex = verbs["top"].add_parser("explore", help="sweep a block's parameters: CSV, plot, Pareto points")
    blocks = ex.add_subparsers(dest="block", required=True, metavar="BLOCK")
    for name, spec in EXPLORABLE.items():
        p = blocks.add_parser(name, help=f"sweep {name}: " + ", ".join(spec.params),
                              description=f"sweep {name}: every combination of the comma-separated values")
        for pname, f in spec.params.items():
            notes = [allowed_text(f), "comma-separated"]
            if spec.defaults(pname):
                notes.append("default " + ",".join(map(str, spec.defaults(pname))))
            p.add_argument(f.flag, dest=pname, default=None, metavar="V[,V...]",
                           help=f"{spec.help(pname)} ({', '.join(n for n in notes if n)})".replace("%", "%%"))
        add_fields(p, (*FLOW_FIELDS, OUT, JOBS))
        p.set_defaults(func=cmd_explore)
        remember_flags(p)
