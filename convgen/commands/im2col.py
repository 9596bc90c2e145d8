"""CLI verbs of the im2col address generator: generate im2col, run im2col, synth im2col."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.cli import CLIError, add_sim


def _pair(text: str, name: str, n: int = 2) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise CLIError(f"--{name}: expected an integer or {n} comma-separated integers, not {text!r}") from None
    if len(vals) == 1:
        return vals * n
    if len(vals) != n:
        raise CLIError(f"--{name}: expected 1 or {n} comma-separated integers, not {text!r}")
    return vals


def add_hw_args(p):
    p.add_argument("--max-h", type=int, default=64, help="largest input height, 1..4096 (default %(default)s)")
    p.add_argument("--max-w", type=int, default=64, help="largest input width, 1..4096 (default %(default)s)")
    p.add_argument("--max-c", type=int, default=64, help="largest channel count, 1..4096 (default %(default)s)")
    p.add_argument("--max-kernel", type=int, default=7, help="largest kernel side, 1..31 (default %(default)s)")
    p.add_argument("--max-stride", type=int, default=4, help="largest stride, 1..15 (default %(default)s)")
    p.add_argument("--max-pad", type=int, default=3, help="largest padding, 0..31 (default %(default)s)")
    p.add_argument("--max-dilation", type=int, default=3, help="largest dilation, 1..15 (default %(default)s)")
    p.add_argument("--tile-rows", type=int, default=8,
                   help="output pixels per GEMM tile = systolic rows, 1..64 (default %(default)s; 1 = row-major im2col)")


def hw_config(args):
    from convgen.hdl.im2col import Im2colConfig

    return Im2colConfig(max_h=args.max_h, max_w=args.max_w, max_c=args.max_c, max_kernel=args.max_kernel,
                        max_stride=args.max_stride, max_pad=args.max_pad, max_dilation=args.max_dilation,
                        tile_rows=args.tile_rows)


def layer_config(args):
    from convgen.core.layer import ConvLayer

    kh, kw = _pair(args.kernel, "kernel")
    sh, sw = _pair(args.stride, "stride")
    pads = _pair(args.pad, "pad", 4) if "," in str(args.pad) else _pair(args.pad, "pad", 1) * 4
    dh, dw = _pair(args.dilation, "dilation")
    return ConvLayer(args.h, args.w, args.c, kh, kw, sh, sw, *pads, dh, dw, args.groups, args.indirect)


def cmd_generate(args) -> int:
    from convgen.sim.im2col import generate

    hw = hw_config(args)
    out = generate(hw, args.output)
    print(json.dumps({"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]),
                      "module": out["manifest"]["module"], "setup_cycles": hw.setup_cycles}))
    return 0


def cmd_run(args) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.golden.im2col import STREAM_FIELDS
    from convgen.sim.im2col import run_im2col

    hw = hw_config(args)
    lay = hw.check_layer(layer_config(args))  # every check before any simulation
    res = run_im2col([lay], hw, simulator=args.sim)
    s = res.streams[0]
    buf = io.BytesIO()
    np.savez(buf, **{f: s[f] for f in STREAM_FIELDS}, layer=json.dumps(lay.to_dict()),
             generator=json.dumps(hw.to_dict()))
    atomic_write_bytes(args.out, buf.getvalue())
    print(json.dumps({"out": args.out, "elements": res.elements, "cycles": res.cycles[0],
                      "addresses_per_cycle": round(res.addresses_per_cycle, 4), "out_h": lay.out_h,
                      "out_w": lay.out_w, "gemm_k": lay.gemm_k, "pad_elements": int(s["pad"].sum()),
                      "simulator": args.sim, "wall_seconds": round(res.wall_seconds, 2)}))
    return 0


def cmd_synth(args) -> int:
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.im2col import Im2colAddressGenerator
    from convgen.synth import synthesize

    hw = hw_config(args)
    text = to_verilog(Im2colAddressGenerator(hw), hw.module_name)
    report = synthesize(text, hw.module_name, args.target, out_dir=args.out)
    print(report.markdown())
    return 0


def register(verbs) -> None:
    gs = verbs["generate"].add_parser("im2col", help="im2col / indirection address generator")
    add_hw_args(gs)
    gs.add_argument("-o", "--output", required=True, help="output directory")
    gs.set_defaults(func=cmd_generate)

    rg = verbs["run"].add_parser("im2col", help="one convolution layer's address stream from the RTL")
    rg.add_argument("--h", type=int, required=True, help="input height")
    rg.add_argument("--w", type=int, required=True, help="input width")
    rg.add_argument("--c", type=int, required=True, help="input channels")
    rg.add_argument("--kernel", default="3", help="KH,KW or one value (default 3)")
    rg.add_argument("--stride", default="1", help="SH,SW or one value (default 1)")
    rg.add_argument("--pad", default="0", help="TOP,LEFT,BOTTOM,RIGHT or one value (default 0)")
    rg.add_argument("--dilation", default="1", help="DH,DW or one value (default 1)")
    rg.add_argument("--groups", type=int, default=1, help="groups (C for depthwise; default 1)")
    rg.add_argument("--indirect", action="store_true",
                    help="emit the indirection buffer (one pointer per output pixel and tap) instead")
    rg.add_argument("--out", required=True, help="where to write the arrays (.npz: addr, pad, fill, first, last, "
                                                 "lane_last, end)")
    add_hw_args(rg)
    add_sim(rg)
    rg.set_defaults(func=cmd_run)

    ss = verbs["synth"].add_parser("im2col", help="im2col / indirection address generator")
    add_hw_args(ss)
    ss.add_argument("--target", default="generic", help="generic, ice40 or ecp5")
    ss.add_argument("--out", default=None, help="directory for report.json, report.md and the yosys log")
    ss.set_defaults(func=cmd_synth)
