"""``convgen run tflite MODEL.tflite``: an int8 TFLite model with every CONV_2D and
DEPTHWISE_CONV_2D (and FULLY_CONNECTED, except on ref) on the ConvEngine RTL, in the
requantizer mode of the TFLite path named by ``--path`` (ref: reference kernels, ``tflite``;
opt: optimized kernels, ``tflite_opt``; xnnpack: the XNNPACK delegate, ``xnnpack``), the other
operators (ADD, AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE) on the host; every operator and the output compared with
the TFLite interpreter (LiteRT) on that path.

Prints a progress line per convolution on stderr, a per-layer table on stdout (``--report``
writes it as Markdown) and a last JSON line with the totals and ``"bit_exact"``. Exit status 0
when every layer and the output equal LiteRT, 1 otherwise, 2 for a bad model or option.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np

from convgen.core.fields import Field

from .common import SIM_FIELD, CLIError, add_fields, check_output_file, load_matrix, read_fields, remember_flags

PATHS = ("ref", "opt", "xnnpack")

FIELDS = (
    Field("input", None, "input tensor as .npy (int8 values, the model's input shape, NHWC; default: seeded "
                         "uniform int8)", kind=str, metavar="X.npy"),
    Field("input_seed", 0, "seed of the default input", lo=0, hi=2**31 - 1),
    Field("path", "xnnpack", "the TFLite execution path to match: ref (BUILTIN_REF, rounding tflite), opt "
                             "(BUILTIN_WITHOUT_DEFAULT_DELEGATES, tflite_opt) or xnnpack (the XNNPACK delegate, "
                             "the interpreters' default, xnnpack)", choices=PATHS),
    Field("engine", "8x8", "engine array size ROWSxCOLS, each 1..64", kind=str, metavar="RxC"),
    Field("out", None, "where to write the network's output (.npy, int8 values as int64)", kind=str, metavar="Y.npy"),
    Field("report", None, "write the per-layer table here (Markdown)", kind=str, metavar="REPORT.md"),
    SIM_FIELD,
    Field("quiet", False, "no progress lines on stderr"),
)

HEAD = ["#", "operator", "kind", "shape", "on", "MACs", "cycles", "formula", "SCALE-Sim OS", "utilization",
        "wall s", "vs LiteRT"]


def _engine(text: str) -> tuple[int, int]:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 2 or not all(1 <= d <= 64 for d in dims):
        raise CLIError(f"--engine must be ROWSxCOLS with each in 1..64, not {text!r}")
    return dims


def _cell(r) -> str:
    if r.mismatches is None:
        return ""
    return "exact" if r.mismatches == 0 else ("shape differs" if r.mismatches < 0 else f"{r.mismatches:,} differ")


def markdown(res, model: str) -> str:
    """The per-layer table, the totals and the output comparison as Markdown."""
    t = res.totals()
    cfg = res.config
    lines = [f"# {os.path.basename(model)} on a {cfg.rows}x{cfg.cols} ConvEngine ({res.simulator}), TFLite path "
             f"{res.path} (requantizer {t['mode']})", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in res.layers:
        if r.on == "RTL":
            cells = [str(r.index), r.name, r.kind, r.shape, "RTL", f"{r.macs:,}", f"{r.cycles:,}",
                     f"{r.formula_cycles:,}", f"{r.scalesim_cycles:,}", f"{r.utilization:.1%}",
                     f"{r.wall_seconds:.2f}", _cell(r)]
        else:
            cells = [str(r.index), r.name, r.kind, r.shape, "host", "-", "-", "-", "-", "-",
                     f"{r.wall_seconds:.2f}", _cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| | total (RTL rows) | | | " + f"{t['convs_rtl']}/{t['operators']} | {t['macs']:,} | "
                 f"{t['cycles']:,} | {t['formula_cycles']:,} | {t['scalesim_cycles']:,} | {t['utilization']:.1%} | "
                 f"{t['wall_seconds']} | |")
    lines += ["", "Each operator's output (RTL or host) is compared with LiteRT running that operator alone (a "
                  "one-operator model, same input and quantization) on the same path, RESHAPE excepted; the "
                  "network's output with LiteRT running the whole model. \"formula\" is `EngineConfig.layer_cycles`; SCALE-Sim OS is "
                  "`ceil(M/R)*ceil(N/C)*(K+R+C-2)` without overlap.", ""]
    out = ("bit-exact" if t["output_mismatches"] == 0 else
           f"{t['output_mismatches']} of {t['outputs']} differ" if t["output_mismatches"] > 0 else "shape differs")
    lines.append(f"Layers against LiteRT: {t['layer_outputs_compared']:,} outputs, {t['layer_mismatches']} differ. "
                 f"Output against LiteRT ({res.path}): {t['outputs']} values, {out}.")
    return "\n".join(lines) + "\n"


def _run_tflite(args) -> int:
    from convgen.core.fileio import atomic_write_bytes, atomic_write_text
    from convgen.core.params import ConfigError
    from convgen.golden.tflite_net import read_model
    from convgen.sim.tflite_network import run_tflite

    read_fields(args, FIELDS)
    rows, cols = _engine(args.engine)
    if args.out is not None:
        check_output_file(args.out, "--out")
    if args.report is not None:
        if not args.report.endswith(".md"):
            raise CLIError(f"--report must name a .md file, not {args.report!r}")
        check_output_file(args.report, "--report", "report.md")
    if not os.path.isfile(args.model):
        raise CLIError(f"MODEL: no such file: {args.model}")
    with open(args.model, "rb") as f:
        model = f.read()
    try:
        graph = read_model(model)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    shape = graph.tensors[graph.inputs[0]].shape
    if args.input:
        x = load_matrix(args.input, "input")
        if tuple(x.shape) != tuple(shape):
            raise CLIError(f"--input must have the model's input shape {tuple(shape)}, not {x.shape}")
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < -128 or x.max() > 127)):
            raise CLIError(f"--input must hold int8 values (-128..127), not {x.dtype}"
                           + (f" in {x.min()}..{x.max()}" if np.issubdtype(x.dtype, np.number) and x.size else ""))
    else:
        x = np.random.default_rng(args.input_seed).integers(-128, 128, shape)
    x = x.astype(np.int8)

    def progress(text):
        if not args.quiet:
            print(f"convgen: {text}", file=sys.stderr, flush=True)

    try:
        res = run_tflite(model, x, args.path, rows=rows, cols=cols, simulator=args.sim, progress=progress)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    text = markdown(res, args.model)
    print(text, end="")
    if args.out:
        buf = io.BytesIO()
        np.save(buf, res.output)
        atomic_write_bytes(args.out, buf.getvalue())
    if args.report:
        atomic_write_text(args.report, text)
    if not res.bit_exact:
        print(f"convgen: first mismatch with LiteRT ({args.path}): {res.first_mismatch}", file=sys.stderr, flush=True)
    print(json.dumps({"model": args.model, "engine": f"{rows}x{cols}", "simulator": args.sim, **res.totals(),
                      "first_mismatch": res.first_mismatch, "module": res.config.module_name}, default=str))
    return 0 if res.bit_exact else 1


def register(verbs: dict) -> None:
    p = verbs["run"].add_parser("tflite", help="an int8 TFLite model with every convolution on the ConvEngine RTL, "
                                               "checked against LiteRT on one TFLite path",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("model", metavar="MODEL.tflite", help="int8 TFLite model (CONV_2D, DEPTHWISE_CONV_2D, "
                                                         "FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE), e.g. from "
                                                         "examples/tflite_mobilenet.py")
    add_fields(p, FIELDS)
    p.set_defaults(func=_run_tflite)
    remember_flags(p)
