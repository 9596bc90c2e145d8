"""CLI verbs of the im2col address generator: ``generate im2col``, ``run im2col``, ``synth im2col``."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.core.fields import Field
from convgen.hdl.im2col import Im2colAddressGenerator, Im2colConfig

from .common import KEEP, Block, CLIError, Run, check_output_file, keep_directory, steps_for, waves_written


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


def layer_config(args):
    from convgen.core.layer import ConvLayer

    kh, kw = _pair(args.kernel, "kernel")
    sh, sw = _pair(args.stride, "stride")
    pads = _pair(args.pad, "pad", 4) if "," in str(args.pad) else _pair(args.pad, "pad", 1) * 4
    dh, dw = _pair(args.dilation, "dilation")
    return ConvLayer(args.h, args.w, args.c, kh, kw, sh, sw, *pads, dh, dw, args.groups, args.indirect)


def _generate(hw, out_dir, opts) -> dict:
    from convgen.sim.im2col import generate

    out = generate(hw, out_dir)
    return {"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]), "core": str(out["core"]),
            "module": out["manifest"]["module"], "setup_cycles": hw.setup_cycles}


def _run(args, hw) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.golden.im2col import STREAM_FIELDS
    from convgen.sim.im2col import run_im2col

    check_output_file(args.out, "--out", "addr.npz")
    if not args.out.endswith(".npz"):
        raise CLIError(f"--out must name an .npz file (several arrays: addr, pad, ...), not {args.out}")
    lay = hw.check_layer(layer_config(args))  # every check before any simulation
    with steps_for(args) as steps:
        res = run_im2col([lay], hw, simulator=args.sim, work_dir=keep_directory(args, "convgen-im2col-"),
                         progress=steps, waves=args.waves)
        s = res.streams[0]
        buf = io.BytesIO()
        np.savez(buf, **{f: s[f] for f in STREAM_FIELDS}, layer=json.dumps(lay.to_dict()),
                 generator=json.dumps(hw.to_dict()))
        atomic_write_bytes(args.out, buf.getvalue())
        waves = waves_written(steps, args, BLOCK.runs[0].waves_formats)
    print(json.dumps({"out": args.out, "elements": res.elements, "cycles": res.cycles[0],
                      "addresses_per_cycle": round(res.addresses_per_cycle, 4), "out_h": lay.out_h,
                      "out_w": lay.out_w, "gemm_k": lay.gemm_k, "pad_elements": int(s["pad"].sum()),
                      "simulator": args.sim, "wall_seconds": round(res.wall_seconds, 2), **waves}))
    return 0


BLOCK = Block(
    name="im2col",
    help="im2col / indirection address generator",
    config=Im2colConfig,
    component=lambda hw, opts: (Im2colAddressGenerator(hw), hw.module_name),
    generate=_generate,
    runs=(Run("im2col", "one convolution layer's address stream from the RTL", _run, options=(
        Field("h", None, "input height", kind=int, lo=1, required=True),
        Field("w", None, "input width", kind=int, lo=1, required=True),
        Field("c", None, "input channels", kind=int, lo=1, required=True),
        Field("kernel", "3", "KH,KW or one value", metavar="KH[,KW]"),
        Field("stride", "1", "SH,SW or one value", metavar="SH[,SW]"),
        Field("pad", "0", "TOP,LEFT,BOTTOM,RIGHT or one value", metavar="P[,P,P,P]"),
        Field("dilation", "1", "DH,DW or one value", metavar="DH[,DW]"),
        Field("groups", 1, "groups (C for depthwise)", lo=1),
        Field("indirect", False, "emit the indirection buffer (one pointer per output pixel and tap) instead"),
        Field("out", None, "where to write the arrays: an .npz archive (the name must end in .npz) of addr, pad, "
                           "fill, first, last, lane_last, end", kind=str, required=True, metavar="OUT.npz"),
        KEEP,
    )),),
)
