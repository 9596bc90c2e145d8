"""Resource table of SystolicArray configurations through the yosys flow (convgen.synth).

    .venv/bin/python bench/synth_systolic.py [--sizes 4,8,16] [--targets generic,ice40,ecp5]

Prints a Markdown table and writes bench/results/synth_systolic.{md,json}. Runs are cached
(~/.cache/convgen/synth), so a second invocation is instant.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="4,8,16")
    p.add_argument("--targets", default="generic,ice40,ecp5")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
