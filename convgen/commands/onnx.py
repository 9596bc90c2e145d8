"""``convgen run onnx MODEL``: a quantized ONNX network with every convolution on the ConvEngine
RTL (one build, the simulator running free per layer) and the other quantized ops on the host
(golden models with ORT's integer semantics); every step compared with ONNX Runtime.

Prints a progress line per convolution on stderr, a per-layer table (``--report`` writes it as
Markdown) and a last JSON line with the totals and ``"bit_exact"``. Exit status 0 when every
step equals ORT, 1 otherwise (the first mismatching step is named), 2 for a bad model or option.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np

from convgen.core.fields import Field

from .common import SIM_FIELD, CLIError, add_fields, check_output_file, load_matrix, read_fields, remember_flags

FIELDS = (
    Field("input", None, "input tensor as .npy (float32, the model's input shape; default: seeded "
                         "standard-normal)", kind=str, metavar="X.npy"),
    Field("input_seed", 0, "seed of the default input", lo=0, hi=2**31 - 1),
    Field("input_shape", None, "input shape for a model with dynamic dimensions, e.g. 1x3x224x224", kind=str,
          metavar="NxCxHxW"),
    Field("out", None, "where to write the network's output (.npy)", kind=str, metavar="Y.npy"),
    Field("report", None, "write the per-layer table as Markdown here", kind=str, metavar="REPORT.md"),
    Field("engine", "8x8", "engine array size ROWSxCOLS, each 1..64", kind=str, metavar="RxC"),
    SIM_FIELD,
    Field("quiet", False, "no progress lines on stderr"),
)


def _dims(text: str, flag: str, n: int | None = None) -> tuple:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or (n is not None and len(dims) != n) or min(dims) < 1:
        shape = "x".join(["N"] * n) if n else "NxCxHxW"
        raise CLIError(f"{flag} must look like {shape} with positive integers, not {text!r}")
    return dims


def markdown(res) -> str:
    cfg = res.config
    t = res.totals()
    lines = [f"# {res.simulator}: {t['convs']} convolutions on a {cfg.rows}x{cfg.cols} ConvEngine", "",
             "| # | layer | kind | shape | MACs | cycles | formula | SCALE-Sim OS | utilization | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(res.convs, 1):
        f = f"{c.formula_cycles:,}" + ("" if c.formula_exact else " (bound)")
        lines.append(f"| {i} | {c.name} | {c.kind} | {c.shape} | {c.macs:,} | {c.cycles:,} | {f} | "
                     f"{c.scalesim_cycles:,} | {c.utilization:.1%} | {c.wall_seconds:.2f} |")
    lines.append(f"| | total | | | {t['macs']:,} | {t['cycles']:,} | {t['formula_cycles']:,} | "
                 f"{t['scalesim_cycles']:,} | {t['utilization']:.1%} | {t['wall_seconds']} |")
    lines += ["", f"Every step against ONNX Runtime: {t['steps_compared']} steps, "
              + ("bit-exact." if res.bit_exact else f"first mismatch: {res.first_mismatch}.")]
    return "\n".join(lines) + "\n"


def _run_onnx(args) -> int:
    from convgen.core.fileio import atomic_write_bytes, atomic_write_text
    from convgen.core.params import ConfigError
    from convgen.golden import network as gn
    from convgen.sim.network import run_network

    read_fields(args, FIELDS)
    rows, cols = _dims(args.engine, "--engine", 2)
    if rows > 64 or cols > 64:
        raise CLIError(f"--engine must be ROWSxCOLS with each in 1..64, not {args.engine!r}")
    shape = _dims(args.input_shape, "--input-shape") if args.input_shape else None
    if args.out is not None:
        check_output_file(args.out, "--out")
    if args.report is not None:
        check_output_file(args.report, "--report", "report.md")
    if not os.path.isfile(args.model):
        raise CLIError(f"MODEL: no such file: {args.model}")
    try:
        net = gn.load(args.model, shape)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    x = None
    if args.input:
        x = load_matrix(args.input, "input").astype(np.float32)
        if tuple(x.shape) != tuple(net.input_shape):
            raise CLIError(f"--input must have the model's input shape {tuple(net.input_shape)}, not {x.shape}")

    def progress(text):
        if not args.quiet:
            print(f"convgen: {text}", file=sys.stderr, flush=True)

    try:
        res = run_network(args.model, x, rows=rows, cols=cols, simulator=args.sim, progress=progress,
                          input_seed=args.input_seed, input_shape=shape)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    table = markdown(res)
    print(table, end="")
    if args.out:
        buf = io.BytesIO()
        np.save(buf, res.output)
        atomic_write_bytes(args.out, buf.getvalue())
    if args.report:
        atomic_write_text(args.report, table)
    print(json.dumps({"model": args.model, "engine": f"{rows}x{cols}", "simulator": args.sim, **res.totals(),
                      "first_mismatch": res.first_mismatch, "module": res.config.module_name}, default=str))
    return 0 if res.bit_exact else 1


def register(verbs: dict) -> None:
    p = verbs["run"].add_parser("onnx", help="a quantized ONNX network with every convolution on the ConvEngine RTL, "
                                             "checked against ONNX Runtime at every step",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("model", metavar="MODEL.onnx", help="quantized ONNX model (QOperator or QDQ, as "
                                                       "onnxruntime.quantization.quantize_static writes them)")
    add_fields(p, FIELDS)
    p.set_defaults(func=_run_onnx)
    remember_flags(p)
