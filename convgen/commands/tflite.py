"""``convgen run tflite MODEL.tflite``: an int8 TFLite model with every CONV_2D and
DEPTHWISE_CONV_2D (and FULLY_CONNECTED, except on ref) on the ConvEngine RTL, in the
requantizer mode of the TFLite path named by ``--path`` (ref: reference kernels, ``tflite``;
opt: optimized kernels, ``tflite_opt``; xnnpack: the XNNPACK delegate, ``xnnpack``), the other
operators (ADD, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, SOFTMAX, CONCATENATION, PAD, RESHAPE, QUANTIZE,
DEQUANTIZE) on the host; every operator and the output compared with the TFLite interpreter
(LiteRT) on that path. A model with float input or output (QUANTIZE at the input, DEQUANTIZE at
the output) takes and gives float32; float outputs are compared bit for bit.

Prints a progress line per convolution on stderr, a per-layer table on stdout (``--report``
writes it as Markdown) and a last JSON line with the totals and ``"bit_exact"``. Exit status 0
when every layer and the output equal LiteRT; 1 otherwise, with the first mismatching operator
named in one line on stderr and its tensors saved under ``--mismatch-dir``; 2 for a bad model or
option (one line, nothing written).

Engine operators (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED where it runs on the engine) are
numbered from 0 in execution order: the table's ``conv`` column and ``--layers`` use these
numbers, as ``run onnx`` does.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np

from convgen.core.fields import Field

from .common import SIM_FIELD, CLIError, add_fields, load_matrix, read_fields, remember_flags
from .onnx import _report_paths, check_outputs, mismatch_line, parse_layers

PATHS = ("ref", "opt", "xnnpack")

FIELDS = (
    Field("input", None, "input tensor as .npy (the model's input shape, NHWC; int8, uint8 or float32 values as "
                         "the model's input; default: seeded uniform values of that type, for a float input over "
                         "its QUANTIZE's range)", kind=str, metavar="X.npy"),
    Field("input_seed", 0, "seed of the default input", lo=0, hi=2**31 - 1),
    Field("path", "xnnpack", "the TFLite execution path to match: ref (BUILTIN_REF, rounding tflite), opt "
                             "(BUILTIN_WITHOUT_DEFAULT_DELEGATES, tflite_opt) or xnnpack (the XNNPACK delegate, "
                             "the interpreters' default, xnnpack)", choices=PATHS),
    Field("engine", "8x8", "engine array size ROWSxCOLS, each 1..64", kind=str, metavar="RxC"),
    Field("out", None, "where to write the network's output (.npy: int8/uint8 values as int64, a float output as "
                       "float32)", kind=str, metavar="Y.npy"),
    Field("report", None, "write the per-operator table and a per-layer cycle plot (measured, formula, SCALE-Sim) "
                          "here: Markdown for .md (the plot beside it as <name>-cycles.png) or one self-contained "
                          "HTML file for .html", kind=str, metavar="REPORT.md|REPORT.html"),
    Field("layers", None, "run only engine operators A..B (or N) on the RTL, numbered from 0 in execution order as "
                          "in the table's conv column; the others run on the path's golden model (default: all)",
          kind=str, metavar="A-B"),
    Field("mismatch_dir", None, "on a mismatch, where the first mismatching operator's tensors (input, LiteRT's "
                                "output, this run's output, the layer) go (default: <model name>-mismatch beside "
                                "--report, else beside --out, else in the current directory)", kind=str, metavar="DIR"),
    SIM_FIELD,
    Field("quiet", False, "no progress lines on stderr"),
)

HEAD = ["#", "operator", "kind", "conv", "shape", "on", "MACs", "cycles", "formula", "SCALE-Sim OS", "utilization",
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


def _title(res, model: str) -> str:
    t, cfg = res.totals(), res.config
    part = "" if res.rtl_layers is None else f", engine operators #{res.rtl_layers[0]}..#{res.rtl_layers[1]} on the RTL"
    return (f"{os.path.basename(model)} on a {cfg.rows}x{cfg.cols} ConvEngine ({res.simulator}), TFLite path "
            f"{res.path} (requantizer {t['mode']}){part}")


def _rows(res) -> list[list[str]]:
    """The per-operator table as text cells, then the totals row."""
    t = res.totals()
    rows = []
    for r in res.layers:
        conv = "" if r.conv is None else str(r.conv)
        if r.on == "RTL":
            rows.append([str(r.index), r.name, r.kind, conv, r.shape, "RTL", f"{r.macs:,}", f"{r.cycles:,}",
                         f"{r.formula_cycles:,}", f"{r.scalesim_cycles:,}", f"{r.utilization:.1%}",
                         f"{r.wall_seconds:.2f}", _cell(r)])
        else:
            rows.append([str(r.index), r.name, r.kind, conv, r.shape, r.on, "-", "-", "-", "-", "-",
                         f"{r.wall_seconds:.2f}", _cell(r)])
    rows.append(["", "total (RTL rows)", "", "", "", f"{t['convs_rtl']}/{t['operators']}", f"{t['macs']:,}",
                 f"{t['cycles']:,}", f"{t['formula_cycles']:,}", f"{t['scalesim_cycles']:,}", f"{t['utilization']:.1%}",
                 f"{t['wall_seconds']}", ""])
    return rows


def _notes(res) -> list[str]:
    t = res.totals()
    out = ("bit-exact" if t["output_mismatches"] == 0 else
           f"{t['output_mismatches']} of {t['outputs']} differ" if t["output_mismatches"] > 0 else "shape differs")
    return ["Each operator's output (RTL or host) is compared with LiteRT running that operator alone (a "
            "one-operator model, same input and quantization) on the same path, RESHAPE and shape arithmetic "
            "excepted; \"golden\": an engine operator outside `--layers`, run on the path's golden model; the "
            "network's output with LiteRT running the whole model. \"formula\" is `EngineConfig.layer_cycles`; "
            "SCALE-Sim OS is `ceil(M/R)*ceil(N/C)*(K+R+C-2)` without overlap.",
            f"Layers against LiteRT: {t['layer_outputs_compared']:,} outputs, {t['layer_mismatches']} differ. "
            f"Output against LiteRT ({res.path}): {t['outputs']} values, {out}."]


def markdown(res, model: str, *, plot: str | None = None) -> str:
    """The per-operator table, the totals and the output comparison as Markdown (``plot``: a PNG
    to link under the table)."""
    lines = [f"# {_title(res, model)}", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(res)]
    if plot:
        lines += ["", f"![cycles per engine operator: measured, formula, SCALE-Sim]({plot})"]
    notes = _notes(res)
    return "\n".join(lines + ["", notes[0], "", notes[1]]) + "\n"


def html_report(res, model: str, png: bytes) -> str:
    """One self-contained HTML page: the table, the cycle plot (embedded PNG), the notes."""
    import base64
    import html

    e = html.escape
    body = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr>"]
    body += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _rows(res)]
    notes = "".join(f"<p>{e(n)}</p>\n" for n in _notes(res))
    img = base64.b64encode(png).decode("ascii")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(_title(res, model))}</title>\n"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:2px 6px;text-align:right}</style>\n</head><body>\n"
            f"<h1>{e(_title(res, model))}</h1>\n<table>\n" + "\n".join(body) + "\n</table>\n"
            f"<p><img alt=\"cycles per engine operator\" src=\"data:image/png;base64,{img}\"></p>\n{notes}</body></html>\n")


def cycle_plot(res) -> bytes:
    """``run onnx``'s per-convolution cycle plot (measured on the RTL rows, formula, SCALE-Sim OS)
    over the engine operators."""
    from types import SimpleNamespace

    from .onnx import cycle_plot as onnx_plot

    convs = [SimpleNamespace(index=r.conv, on_rtl=r.on == "RTL", cycles=r.cycles, formula_cycles=r.formula_cycles,
                             scalesim_cycles=r.scalesim_cycles) for r in res.layers if r.conv is not None]
    totals = res.totals()
    return onnx_plot(SimpleNamespace(convs=convs, layers=res.rtl_layers, simulator=res.simulator, config=res.config,
                                     totals=lambda: totals))


def _write_report(res, model: str, report: str) -> None:
    from convgen.core.fileio import atomic_write_bytes, atomic_write_text

    suffix, png_path = _report_paths(report)
    png = cycle_plot(res)
    if suffix == ".html":
        atomic_write_text(report, html_report(res, model, png))
        return
    atomic_write_bytes(png_path, png)
    try:
        atomic_write_text(report, markdown(res, model, plot=os.path.basename(png_path)))
    except BaseException:
        os.unlink(png_path)
        raise


def _model_input(graph, args) -> np.ndarray:
    """``--input`` checked against the model's input tensor (int8, uint8 or float32), or the
    seeded default: uniform integers of the input's type; for a float32 input read by a QUANTIZE,
    uniform floats over that QUANTIZE's range and two steps beyond (its saturation), else
    standard normal floats."""
    from convgen.golden.tflite_ops import INT_RANGE

    t = graph.tensors[graph.inputs[0]]
    shape = t.shape
    if args.input:
        x = load_matrix(args.input, "input")
        if tuple(x.shape) != tuple(shape):
            raise CLIError(f"--input must have the model's input shape {tuple(shape)}, not {x.shape}")
        if t.dtype == "float32":
            if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating) or \
                    (x.size and not np.isfinite(x.astype(np.float64)).all()):
                raise CLIError(f"--input must hold finite float32 values (the model's input is float32), not {x.dtype}")
            return x.astype(np.float32)
        lo, hi = INT_RANGE[t.dtype]
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < lo or x.max() > hi)):
            raise CLIError(f"--input must hold {t.dtype} values ({lo}..{hi}), not {x.dtype}"
                           + (f" in {x.min()}..{x.max()}" if np.issubdtype(x.dtype, np.number) and x.size else ""))
        return x.astype(np.uint8 if t.dtype == "uint8" else np.int8)
    rng = np.random.default_rng(args.input_seed)
    if t.dtype != "float32":
        lo, hi = INT_RANGE[t.dtype]
        return rng.integers(lo, hi + 1, shape).astype(np.uint8 if t.dtype == "uint8" else np.int8)
    q = next((graph.tensors[op.outputs[0]] for op in graph.ops
              if op.kind == "QUANTIZE" and op.inputs[0] == graph.inputs[0]), None)
    if q is None:
        return rng.standard_normal(shape).astype(np.float32)
    lo, hi = INT_RANGE[q.dtype]
    s, zp = float(q.scale[0]), int(q.zero_point[0])
    return ((rng.uniform(lo - 2, hi + 2, shape) - zp) * s).astype(np.float32)


def _run_tflite(args) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.core.params import ConfigError
    from convgen.golden.tflite_net import read_model
    from convgen.sim.tflite_network import run_tflite

    read_fields(args, FIELDS)
    rows, cols = _engine(args.engine)
    mismatch_dir = check_outputs(args)
    if not os.path.isfile(args.model):
        raise CLIError(f"MODEL: no such file: {args.model}")
    with open(args.model, "rb") as f:
        model = f.read()
    try:
        graph = read_model(model)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    x = _model_input(graph, args)
    from convgen.golden.tflite_net import on_engine

    n_engine = sum(1 for op in graph.ops if on_engine(op, args.path))
    layers = parse_layers(args.layers, n_engine) if args.layers is not None and n_engine else None
    if args.layers is not None and not n_engine:
        raise CLIError(f"--layers: the model has no operator that runs on the engine on path {args.path}")

    def progress(text):
        if not args.quiet:
            print(f"convgen: {text}", file=sys.stderr, flush=True)

    try:
        res = run_tflite(model, x, args.path, rows=rows, cols=cols, simulator=args.sim, progress=progress,
                         layers=layers)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    mismatch = None
    if not res.bit_exact:
        from convgen.sim.tflite_network import save_mismatch

        mismatch = save_mismatch(res, mismatch_dir)
        print(f"convgen: {mismatch_line(mismatch)}", file=sys.stderr, flush=True)
    text = markdown(res, args.model)
    print(text, end="")
    if args.out:
        buf = io.BytesIO()
        np.save(buf, res.output)
        atomic_write_bytes(args.out, buf.getvalue())
    if args.report:
        _write_report(res, args.model, args.report)
    print(json.dumps({"model": args.model, "engine": f"{rows}x{cols}", "simulator": args.sim, **res.totals(),
                      "first_mismatch": mismatch, "module": res.config.module_name}, default=str))
    return 0 if res.bit_exact else 1


def register(verbs: dict) -> None:
    p = verbs["run"].add_parser("tflite", help="an int8 TFLite model with every convolution on the ConvEngine RTL, "
                                               "checked against LiteRT on one TFLite path",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("model", metavar="MODEL.tflite", help="int8 TFLite model (CONV_2D, DEPTHWISE_CONV_2D, "
                                                         "FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, "
                                                         "SOFTMAX, CONCATENATION, PAD, RESHAPE, QUANTIZE, "
                                                         "DEQUANTIZE), e.g. from examples/tflite_mobilenet.py")
    add_fields(p, FIELDS)
    p.set_defaults(func=_run_tflite)
    remember_flags(p)
