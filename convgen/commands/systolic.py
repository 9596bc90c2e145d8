"""CLI verbs of the systolic array: ``generate systolic``, ``run gemm``, ``synth systolic``."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.core.fields import Field
from convgen.hdl.systolic import SystolicArray, SystolicConfig

from .common import KEEP, Block, Run, check_output_file, keep_directory, load_matrix, steps_for, waves_written


def _generate(cfg, out_dir, opts) -> dict:
    from convgen.sim.systolic import generate

    out = generate(cfg, out_dir)
    m = out["manifest"]
    return {"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]), "core": str(out["core"]), "module": m["module"],
            "max_k_without_overflow": m["arithmetic"]["max_k_without_overflow"]}


def _run_gemm(args, cfg) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.sim.systolic import run_gemm

    check_output_file(args.out, "--out", "C.npy")   # before any input is read or tool runs
    a = load_matrix(args.a, "a")
    b = load_matrix(args.b, "b")
    with steps_for(args) as steps:
        res = run_gemm(a, b, simulator=args.sim, **cfg.to_dict(), allow_wrap=args.allow_wrap,
                       progress=steps, work_dir=keep_directory(args, "convgen-gemm-"), waves=args.waves)
        buf = io.BytesIO()
        np.save(buf, res.c)
        atomic_write_bytes(args.out, buf.getvalue())
        waves = waves_written(steps, args, BLOCK.runs[0].waves_formats)
    print(json.dumps({"out": args.out, "shape": list(res.c.shape), **res.summary(), **waves}))
    return 0


BLOCK = Block(
    name="systolic",
    help="INT8 systolic GEMM array",
    config=SystolicConfig,
    component=lambda cfg, opts: (SystolicArray(cfg), cfg.module_name),
    generate=_generate,
    runs=(Run("gemm", "C = A @ B on the systolic array RTL, any M x K x N", _run_gemm, options=(
        Field("a", None, "A as .npy (M x K integers)", kind=str, required=True, metavar="A.npy"),
        Field("b", None, "B as .npy (K x N integers)", kind=str, required=True, metavar="B.npy"),
        Field("out", None, "where to write C (.npy, int64)", kind=str, required=True, metavar="C.npy"),
        Field("allow_wrap", False, "accept a K that can overflow the accumulator (results wrap like the hardware)"),
        Field("progress", False, "also print the simulation's progress every 50,000 cycles when stderr is not a "
                                 "terminal (on a terminal it shows beside the step anyway; --quiet wins)"),
        KEEP,
    )),),
)
