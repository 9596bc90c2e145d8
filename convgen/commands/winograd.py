"""CLI verbs of the Winograd blocks: ``generate winograd``, ``run winograd-conv``, ``synth winograd``."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.core.fields import Field
from convgen.hdl.winograd import BLOCKS, WinogradConfig

from .common import KEEP, Block, Run, check_output_file, keep_directory, load_matrix, steps_for, waves_written

KIND = Field("kind", "conv3x3", "which block: the 3x3 convolution, one of its transforms, or the 1-D F(2,3) "
                                "datapath", choices=tuple(BLOCKS))


def _generate(cfg, out_dir, opts) -> dict:
    from convgen.sim.winograd import generate

    out = generate(cfg, out_dir, kind=opts["kind"])
    m = out["manifest"]
    return {"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]), "core": str(out["core"]), "module": m["module"],
            "max_channels_without_overflow": m["arithmetic"]["max_channels_without_overflow"]}


def _run_conv(args, cfg) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.sim.winograd import run_winograd_conv

    check_output_file(args.out, "--out", "y.npy")   # before any input is read or tool runs
    x = load_matrix(args.x, "x")
    w = load_matrix(args.w, "w")
    with steps_for(args) as steps:
        res = run_winograd_conv(x, w, simulator=args.sim, layout=args.layout, **cfg.to_dict(),
                                work_dir=keep_directory(args, "convgen-winograd-"), progress=steps, waves=args.waves)
        buf = io.BytesIO()
        np.save(buf, res.y)
        atomic_write_bytes(args.out, buf.getvalue())
        waves = waves_written(steps, args, BLOCK.runs[0].waves_formats)
    print(json.dumps({"out": args.out, "shape": list(res.y.shape), "layout": args.layout, **res.summary(),
                      **waves}))
    return 0


BLOCK = Block(
    name="winograd",
    help="exact integer Winograd F(2x2,3x3) blocks",
    config=WinogradConfig,
    component=lambda cfg, opts: (BLOCKS[opts["kind"]](cfg), cfg.module_name(opts["kind"])),
    generate=_generate,
    options=(KIND,),
    runs=(Run("winograd-conv", "3x3 stride-1 padding-1 convolution on the Winograd RTL", _run_conv, options=(
        Field("x", None, "input .npy: C_in x H x W (nchw, default) or H x W x C_in (nhwc); a leading batch "
                         "of 1 is accepted", kind=str, required=True, metavar="X.npy"),
        Field("w", None, "weights .npy: C_out x C_in x 3 x 3", kind=str, required=True, metavar="W.npy"),
        Field("out", None, "where to write y (.npy, int64, same layout as x, batch axis included)", kind=str,
              required=True, metavar="Y.npy"),
        Field("layout", "nchw", "layout of x and y", choices=("nchw", "nhwc")),
        KEEP,
    )),),
)
