"""CLI verbs of the requantizer: generate requant, run requant, synth requant."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.cli import CLIError, add_sim, load_matrix


def add_block_args(p):
    p.add_argument("--lanes", type=int, default=4, help="values per cycle, 1..64 (default %(default)s)")
    p.add_argument("--rounding", default="tflite", help="tflite, tflite_single or onnx (default %(default)s)")
    p.add_argument("--out-width", type=int, default=8, help="output bits, 2..16 (default 8)")
    p.add_argument("--out-unsigned", dest="out_signed", action="store_false", help="uint8-like output")


def block_config(args, groups):
    from convgen.hdl.requant import RequantConfig

    return RequantConfig(lanes=args.lanes, groups=groups, rounding=args.rounding,
                         out_width=args.out_width, out_signed=args.out_signed)


def cmd_generate(args) -> int:
    from convgen.sim.requant import generate

    out = generate(block_config(args, args.groups), args.output)
    print(json.dumps({"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]),
                      "module": out["manifest"]["module"], **out["manifest"]["timing"]}))
    return 0


def _optional(path, name):
    return None if path is None else load_matrix(path, name)


def cmd_run(args) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.golden.requant import RequantParams
    from convgen.sim.requant import run_requant

    block_config(args, 1)  # validate the block parameters first
    acc = load_matrix(args.acc, "acc")
    channels = acc.shape[-1] if acc.ndim else 1
    bias = _optional(args.bias, "bias")
    kw = dict(bias=0 if bias is None else bias, zero_point=args.zero_point, act_min=args.act_min,
              act_max=args.act_max, out_width=args.out_width, out_signed=args.out_signed)
    if args.rounding == "onnx":
        if args.scale is None or args.multiplier is not None:
            raise CLIError("--rounding onnx needs --scale (float32 .npy) and no --multiplier")
        params = RequantParams.make("onnx", channels, scale=load_matrix(args.scale, "scale"), **kw)
    else:
        if args.multiplier is None or args.shift is None or args.scale is not None:
            raise CLIError(f"--rounding {args.rounding} needs --multiplier and --shift (.npy), not --scale")
        params = RequantParams.make(args.rounding, channels, multiplier=load_matrix(args.multiplier, "multiplier"),
                                    shift=load_matrix(args.shift, "shift"), **kw)
    res = run_requant(acc, params, lanes=args.lanes, simulator=args.sim)
    buf = io.BytesIO()
    np.save(buf, res.y)
    atomic_write_bytes(args.out, buf.getvalue())
    print(json.dumps({"out": args.out, "shape": list(res.y.shape), **res.summary()}))
    return 0


def cmd_synth(args) -> int:
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.requant import Requantizer
    from convgen.synth import synthesize

    cfg = block_config(args, args.groups)
    text = to_verilog(Requantizer(cfg), cfg.module_name)
    print(synthesize(text, cfg.module_name, args.target, out_dir=args.out).markdown())
    return 0


def register(verbs) -> None:
    g = verbs["generate"].add_parser("requant", help="INT32 -> INT8 requantizer (TFLite or ONNX Runtime exact)")
    add_block_args(g)
    g.add_argument("--groups", type=int, default=4, help="parameter entries per lane, 1..1024")
    g.add_argument("-o", "--output", required=True, help="output directory")
    g.set_defaults(func=cmd_generate)

    r = verbs["run"].add_parser("requant", help="requantize int32 accumulators on the RTL")
    r.add_argument("--acc", required=True, help="accumulators .npy, [rows, channels] int32")
    r.add_argument("--bias", help="bias .npy, one int32 per channel (default 0)")
    r.add_argument("--scale", help="onnx: float32 scale .npy, per channel or one value")
    r.add_argument("--multiplier", help="tflite modes: Q31 multiplier .npy in [2**30, 2**31)")
    r.add_argument("--shift", help="tflite modes: shift .npy in -31..30 (positive = left)")
    r.add_argument("--zero-point", type=int, default=0)
    r.add_argument("--act-min", type=int, default=None, help="clamp low (default: output minimum)")
    r.add_argument("--act-max", type=int, default=None, help="clamp high (default: output maximum)")
    r.add_argument("--out", required=True, help="where to write the outputs (.npy, int64)")
    add_block_args(r)
    add_sim(r)
    r.set_defaults(func=cmd_run)

    s = verbs["synth"].add_parser("requant", help="INT32 -> INT8 requantizer")
    add_block_args(s)
    s.add_argument("--groups", type=int, default=4, help="parameter entries per lane, 1..1024")
    s.add_argument("--target", default="generic", help="generic, ice40 or ecp5")
    s.add_argument("--out", default=None, help="directory for report.json, report.md and the yosys log")
    s.set_defaults(func=cmd_synth)
