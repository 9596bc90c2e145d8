"""Whole quantized networks on the ConvEngine RTL, every step compared with ONNX Runtime.

    .venv/bin/python bench/network.py --net mobilenet_v2 --size 96 --engine 8x8
    .venv/bin/python bench/network.py --net resnet50 --size 224 --engine 16x16

The models come from golden/netzoo.py (seeded float models quantized by ORT's quantize_static,
int8 activations, per-channel int8 weights, QOperator format; cached). The run is
``convgen.sim.network.run_network``: one engine build (cached), every convolution on the RTL
with the simulator running free, the other ops on the host. Writes
``bench/results/network_<net>_<size>_<engine>.{md,json}``: the per-layer table (cycles, cycle
formula, SCALE-Sim OS cycles, utilization), totals, wall time split into planning, build and
run, the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from convgen.commands.onnx import markdown
from convgen.golden import netzoo
from convgen.sim.network import run_network
from convgen.sim.tools import cpu_model

NETS = {
    "every_kind": lambda size: netzoo.every_kind("qoperator", size=size),
    "short_resnet": lambda size: netzoo.resnet("qoperator", size=size),
    "mobilenet_v2": lambda size: netzoo.mobilenet_v2("qoperator", size=size),
    "resnet50": lambda size: netzoo.resnet("qoperator", size=size, blocks=[3, 4, 6, 3], width=64, classes=1000),
    # the onnx wheel's light models with seeded weights (golden/netzoo.py), at their own size
    "squeezenet": lambda size: netzoo.light("squeezenet", "qoperator"),
    "shufflenet": lambda size: netzoo.light("shufflenet", "qoperator"),
}
DEFAULT_SIZE = {"every_kind": 12, "short_resnet": 64, "mobilenet_v2": 96, "resnet50": 224, "squeezenet": 224,
                "shufflenet": 224}


def _cpu() -> str:
    return cpu_model() or platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", choices=sorted(NETS), default="mobilenet_v2")
    p.add_argument("--size", type=int, default=None, help="input height and width (default per network)")
    p.add_argument("--engine", default="8x8", help="ROWSxCOLS (default 8x8)")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    rows, cols = (int(v) for v in args.engine.lower().split("x"))
    size = args.size or DEFAULT_SIZE[args.net]
    t0 = time.monotonic()

    def say(text):
        print(f"[{time.monotonic() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    say(f"building/quantizing {args.net} at {size}x{size} (cached)")
    model = NETS[args.net](size)
    t_model = time.monotonic() - t0
    res = run_network(model, rows=rows, cols=cols, simulator=args.sim, progress=say)
    wall = time.monotonic() - t0
    table = markdown(res)
    tot = res.totals()
    cmd = f".venv/bin/python bench/network.py --net {args.net} --size {size} --engine {rows}x{cols} --sim {args.sim}"
    head = (f"Command: `{cmd}`\n\nMachine: {_cpu()}, {time.strftime('%Y-%m-%d')}. Wall time {wall:.0f} s in all: "
            f"model {t_model:.0f} s (quantization, cached after the first run), engine build "
            f"{res.build_seconds:.0f} s (0 when cached), the rest planning (one golden pass), the RTL layers and "
            f"the comparison with ONNX Runtime.\n\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"network_{args.net}_{size}_{rows}x{cols}"
    stem.with_suffix(".md").write_text(head + table)
    stem.with_suffix(".json").write_text(json.dumps({"net": args.net, "size": size, "engine": [rows, cols],
                                                     "simulator": args.sim, **tot, "wall_total_seconds": round(wall, 1),
                                                     "model_seconds": round(t_model, 1), "cpu": _cpu(),
                                                     "convs": [c.to_dict() for c in res.convs],
                                                     "first_mismatch": res.first_mismatch}, indent=1, default=str))
    print(table)
    print(json.dumps({**tot, "wall_total_seconds": round(wall, 1)}))
    return 0 if res.bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
