"""CLI verbs of the requantizer: ``generate requant``, ``run requant``, ``synth requant``."""

from __future__ import annotations

import io
import json

import numpy as np

from convgen.core.fields import Field
from convgen.core.quant import FLOAT_ROUNDINGS
from convgen.hdl.requant import RequantConfig, Requantizer

from .common import KEEP, Block, CLIError, Run, check_output_file, keep_directory, load_matrix, steps_for, \
    waves_written


def _generate(cfg, out_dir, opts) -> dict:
    from convgen.sim.requant import generate

    out = generate(cfg, out_dir)
    return {"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]), "core": str(out["core"]),
            "module": out["manifest"]["module"], **out["manifest"]["timing"]}


def _optional(path, name):
    return None if path is None else load_matrix(path, name)


def _float32_scale(path):
    """``--scale`` as float32. Other float types are accepted when every value is exactly a
    float32 (ONNX Runtime computes and applies the scale in float32)."""
    scale = load_matrix(path, "scale")
    if scale.dtype != np.float32:
        if not np.issubdtype(scale.dtype, np.floating) and not np.issubdtype(scale.dtype, np.integer):
            raise CLIError(f"--scale: {path} must hold float32 values, not {scale.dtype}")
        as32 = scale.astype(np.float32)
        if not np.array_equal(as32.astype(np.float64), scale.astype(np.float64), equal_nan=True):
            raise CLIError(f"--scale: {path} holds {scale.dtype} values that are not float32 numbers; ONNX Runtime "
                           f"computes the scale in float32 (x_scale * w_scale, then / y_scale, each rounded to "
                           f"float32): save it as a float32 array")
        scale = as32
    return scale


def _run(args, cfg) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.golden.requant import RequantParams
    from convgen.sim.requant import run_requant

    check_output_file(args.out, "--out", "y.npy")   # before any input is read or tool runs
    acc = load_matrix(args.acc, "acc")
    channels = acc.shape[-1] if acc.ndim else 1
    bias = _optional(args.bias, "bias")
    kw = dict(bias=0 if bias is None else bias, zero_point=args.zero_point, act_min=args.act_min,
              act_max=args.act_max, out_width=cfg.out_width, out_signed=cfg.out_signed)
    if args.round_away is not None:
        if cfg.rounding != "tflite_opt":
            raise CLIError(f"--round-away applies to --rounding tflite_opt only, not {cfg.rounding}")
        away = load_matrix(args.round_away, "round_away")
        if away.dtype != bool and not (np.issubdtype(away.dtype, np.integer) and np.isin(away, (0, 1)).all()):
            raise CLIError(f"--round-away: {args.round_away} must hold booleans (or 0/1), one per channel")
        kw["round_away"] = away.astype(bool)
    if cfg.rounding in FLOAT_ROUNDINGS:
        if args.scale is None or args.multiplier is not None:
            raise CLIError(f"--rounding {cfg.rounding} needs --scale (float32 .npy) and no --multiplier")
        params = RequantParams.make(cfg.rounding, channels, scale=_float32_scale(args.scale), **kw)
    else:
        if args.multiplier is None or args.shift is None or args.scale is not None:
            raise CLIError(f"--rounding {cfg.rounding} needs --multiplier and --shift (.npy), not --scale")
        params = RequantParams.make(cfg.rounding, channels, multiplier=load_matrix(args.multiplier, "multiplier"),
                                    shift=load_matrix(args.shift, "shift"), **kw)
    with steps_for(args) as steps:
        res = run_requant(acc, params, lanes=cfg.lanes, simulator=args.sim,
                          work_dir=keep_directory(args, "convgen-requant-"), progress=steps, waves=args.waves)
        buf = io.BytesIO()
        np.save(buf, res.y)
        atomic_write_bytes(args.out, buf.getvalue())
        waves = waves_written(steps, args, BLOCK.runs[0].waves_formats)
    print(json.dumps({"out": args.out, "shape": list(res.y.shape), **res.summary(), **waves}))
    return 0


def _npy(name, help, **kw):
    return Field(name, None, help, kind=str, metavar=f"{name.upper()}.npy", **kw)


BLOCK = Block(
    name="requant",
    help="INT32 -> INT8 requantizer (exact with TFLite ref/opt, XNNPACK, TFLM or ONNX Runtime)",
    config=RequantConfig,
    component=lambda cfg, opts: (Requantizer(cfg), cfg.module_name),
    generate=_generate,
    runs=(Run("requant", "requantize int32 accumulators on the RTL", _run, options=(
        _npy("acc", "accumulators .npy, [rows, channels] int32", required=True),
        _npy("bias", "bias .npy, one int32 per channel (default 0)"),
        _npy("scale", "onnx, xnnpack: float32 scale .npy, per channel or one value (onnx below 1, xnnpack "
                      "below 256)"),
        _npy("multiplier", "tflite modes: Q31 multiplier .npy in [2**30, 2**31)"),
        _npy("shift", "tflite modes: shift .npy in -31..30 (positive = left)"),
        _npy("round_away", "tflite_opt: bool .npy per channel, the final shift rounds ties away from zero "
                           "(TFLite's scalar depthwise channels) instead of up (default all false)"),
        Field("zero_point", 0, "output zero point"),
        Field("act_min", None, "clamp low (default: output minimum)", kind=int),
        Field("act_max", None, "clamp high (default: output maximum)", kind=int),
        Field("out", None, "where to write the outputs (.npy, int64)", kind=str, required=True, metavar="Y.npy"),
        KEEP,
    ), exclude=("groups",), fixed={"groups": 1}),),  # run_requant sizes the parameter memory itself
)
