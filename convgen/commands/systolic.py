"""CLI verbs of the systolic array: generate, run gemm, synth."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.cli import add_sim, load_matrix


def add_signedness(p, operand: str):
    g = p.add_mutually_exclusive_group()
    g.add_argument(f"--{operand}-signed", dest=f"{operand}_signed", action="store_true", default=True,
                   help=f"operand {operand.upper()} is two's complement, int8 (default)")
    g.add_argument(f"--{operand}-unsigned", dest=f"{operand}_signed", action="store_false",
                   help=f"operand {operand.upper()} is unsigned, uint8")


def add_systolic_args(p, *, defaults=(8, 8)):
    p.add_argument("--rows", type=int, default=defaults[0], help="array rows, 1..64 (default %(default)s)")
    p.add_argument("--cols", type=int, default=defaults[1], help="array columns, 1..64 (default %(default)s)")
    p.add_argument("--dataflow", default="os", help="os (output-stationary) or ws (weight-stationary)")
    p.add_argument("--a-width", type=int, default=8, help="bits of operand A, 1..32 (default 8)")
    p.add_argument("--b-width", type=int, default=8, help="bits of operand B, 1..32 (default 8)")
    add_signedness(p, "a")
    add_signedness(p, "b")
    p.add_argument("--acc-width", type=int, default=32, help="accumulator bits (default 32); wraps modulo 2**acc_width")
    p.add_argument("--no-pipeline-product", dest="pipeline_product", action="store_false",
                   help="do not register the product before the accumulator adder")
    p.add_argument("--pipeline-operands", action="store_true",
                   help="register both multiplier operands next to each multiplier (+1 cycle of latency)")


def systolic_config(args):
    from convgen.hdl.systolic import SystolicConfig

    return SystolicConfig(rows=args.rows, cols=args.cols, dataflow=args.dataflow, a_width=args.a_width,
                          b_width=args.b_width, a_signed=args.a_signed, b_signed=args.b_signed,
                          acc_width=args.acc_width, pipeline_product=args.pipeline_product,
                          pipeline_operands=args.pipeline_operands)


def cmd_generate(args) -> int:
    from convgen.sim.systolic import generate

    cfg = systolic_config(args)
    out = generate(cfg, args.output)
    m = out["manifest"]
    print(json.dumps({"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]),
                      "module": m["module"], "max_k_without_overflow": m["arithmetic"]["max_k_without_overflow"]}))
    return 0


def cmd_run_gemm(args) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.sim.systolic import run_gemm

    cfg = systolic_config(args)  # validate parameters before reading anything
    a = load_matrix(args.a, "a")
    b = load_matrix(args.b, "b")
    res = run_gemm(a, b, rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, simulator=args.sim,
                   a_width=cfg.a_width, b_width=cfg.b_width, a_signed=cfg.a_signed, b_signed=cfg.b_signed,
                   acc_width=cfg.acc_width, pipeline_product=cfg.pipeline_product,
                   pipeline_operands=cfg.pipeline_operands,
                   allow_wrap=args.allow_wrap, progress=args.progress)
    buf = io.BytesIO()
    np.save(buf, res.c)
    atomic_write_bytes(args.out, buf.getvalue())
    print(json.dumps({"out": args.out, "shape": list(res.c.shape), **res.summary()}))
    return 0


def cmd_synth(args) -> int:
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.systolic import SystolicArray
    from convgen.synth.flow import check_target_device, flow_markdown, run_flow

    cfg = systolic_config(args)
    check_target_device(args.target, args.device, args.pnr)  # before any work
    text = to_verilog(SystolicArray(cfg), cfg.module_name)
    doc = run_flow(text, cfg.module_name, args.target, block="systolic", parameters=cfg.to_dict(),
                   device=args.device, pnr=args.pnr, out_dir=args.out, freq_mhz=args.freq,
                   seed=args.seed)
    print(flow_markdown([doc]))
    return 0


def register(verbs) -> None:
    gs = verbs["generate"].add_parser("systolic", help="INT8 systolic GEMM array")
    add_systolic_args(gs)
    gs.add_argument("-o", "--output", required=True, help="output directory")
    gs.set_defaults(func=cmd_generate)

    rg = verbs["run"].add_parser("gemm", help="C = A @ B on the systolic array RTL, any M x K x N")
    rg.add_argument("--a", required=True, help="A as .npy (M x K integers)")
    rg.add_argument("--b", required=True, help="B as .npy (K x N integers)")
    rg.add_argument("--out", required=True, help="where to write C (.npy, int64)")
    add_systolic_args(rg)
    add_sim(rg)
    rg.add_argument("--allow-wrap", action="store_true",
                    help="accept a K that can overflow the accumulator (results wrap like the hardware)")
    rg.add_argument("--progress", action="store_true", help="print progress of long runs")
    rg.set_defaults(func=cmd_run_gemm)

    ss = verbs["synth"].add_parser("systolic", help="INT8 systolic GEMM array")
    add_systolic_args(ss)
    from convgen.synth.flow import add_synth_args

    add_synth_args(ss)
    ss.set_defaults(func=cmd_synth)
