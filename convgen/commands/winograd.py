"""CLI verbs of the Winograd blocks: generate winograd, run winograd-conv, synth winograd."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.cli import add_sim, load_matrix


def add_winograd_args(p):
    p.add_argument("--data-width", type=int, default=8, help="signed activation bits, 2..16 (default 8)")
    p.add_argument("--weight-width", type=int, default=8, help="signed weight bits, 2..16 (default 8)")
    p.add_argument("--out-width", type=int, default=32,
                   help="output bits (default 32); C_in up to max_channels can never overflow")


def winograd_config(args):
    from convgen.hdl.winograd import WinogradConfig

    return WinogradConfig(data_width=args.data_width, weight_width=args.weight_width, out_width=args.out_width)


def cmd_generate(args) -> int:
    from convgen.core.params import check_choice
    from convgen.hdl.winograd import BLOCKS
    from convgen.sim.winograd import generate

    cfg = winograd_config(args)
    check_choice("--kind", args.kind, BLOCKS)
    out = generate(cfg, args.output, kind=args.kind)
    m = out["manifest"]
    print(json.dumps({"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]),
                      "module": m["module"],
                      "max_channels_without_overflow": m["arithmetic"]["max_channels_without_overflow"]}))
    return 0


def cmd_run_conv(args) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.sim.winograd import run_winograd_conv

    cfg = winograd_config(args)  # validate parameters before reading anything
    x = load_matrix(args.x, "x")
    w = load_matrix(args.w, "w")
    res = run_winograd_conv(x, w, simulator=args.sim, layout=args.layout, data_width=cfg.data_width,
                            weight_width=cfg.weight_width, out_width=cfg.out_width)
    buf = io.BytesIO()
    np.save(buf, res.y)
    atomic_write_bytes(args.out, buf.getvalue())
    print(json.dumps({"out": args.out, "shape": list(res.y.shape), "layout": args.layout, **res.summary()}))
    return 0


def cmd_synth(args) -> int:
    from convgen.hdl.generate import to_verilog
    from convgen.core.params import check_choice
    from convgen.hdl.winograd import BLOCKS
    from convgen.synth import synthesize

    cfg = winograd_config(args)
    check_choice("--kind", args.kind, BLOCKS)
    name = cfg.module_name(args.kind)
    report = synthesize(to_verilog(BLOCKS[args.kind](cfg), name), name, args.target, out_dir=args.out)
    print(report.markdown())
    return 0


KINDS_HELP = "conv3x3 (default), input_transform, filter_transform, output_transform or f23"


def register(verbs) -> None:
    gs = verbs["generate"].add_parser("winograd", help="exact integer Winograd F(2x2,3x3) blocks")
    add_winograd_args(gs)
    gs.add_argument("--kind", default="conv3x3", help=KINDS_HELP)
    gs.add_argument("-o", "--output", required=True, help="output directory")
    gs.set_defaults(func=cmd_generate)

    rc = verbs["run"].add_parser("winograd-conv",
                                 help="3x3 stride-1 padding-1 convolution on the Winograd RTL")
    rc.add_argument("--x", required=True, help="input .npy: C_in x H x W (nchw, default) or H x W x C_in (nhwc); "
                                               "a leading batch of 1 is accepted")
    rc.add_argument("--w", required=True, help="weights .npy: C_out x C_in x 3 x 3")
    rc.add_argument("--out", required=True, help="where to write y (.npy, int64, same layout as x)")
    rc.add_argument("--layout", default="nchw", help="nchw (default) or nhwc")
    add_winograd_args(rc)
    add_sim(rc)
    rc.set_defaults(func=cmd_run_conv)

    ss = verbs["synth"].add_parser("winograd", help="exact integer Winograd F(2x2,3x3) blocks")
    add_winograd_args(ss)
    ss.add_argument("--kind", default="conv3x3", help=KINDS_HELP)
    ss.add_argument("--target", default="generic", help="generic, ice40 or ecp5")
    ss.add_argument("--out", default=None, help="directory for report.json, report.md and the yosys log")
    ss.set_defaults(func=cmd_synth)
