"""``convgen run onnx MODEL``: a quantized ONNX network with every convolution on the ConvEngine
RTL (one build, the simulator running free per layer) and the other quantized ops on the host
(golden models with ORT's integer semantics); every step compared with ONNX Runtime.

Prints a progress line per convolution on stderr, a per-layer table (``--report`` writes it as
Markdown or HTML, with a per-layer cycle plot) and a last JSON line with the totals and
``"bit_exact"``. Exit status 0 when every step equals ORT, 1 otherwise (the first mismatching
step is named in one line on stderr, its tensors and a waveform of it are saved under
``--mismatch-dir``), 2 for a bad model or option.

Convolutions are numbered from 0 in the order the network runs them, counting convolutions only
(not graph nodes): the table's ``#`` column, the ``(#i)`` of the progress lines and ``--layers``
use the same numbers.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import sys

import numpy as np

from convgen.core.fields import Field

from .common import SIM_FIELD, CLIError, add_fields, check_output_dir, check_output_file, load_matrix, read_fields, \
    remember_flags

FIELDS = (
    Field("input", None, "input tensor as .npy (float32, the model's input shape; default: seeded "
                         "standard-normal)", kind=str, metavar="X.npy"),
    Field("input_seed", 0, "seed of the default input", lo=0, hi=2**31 - 1),
    Field("input_shape", None, "input shape for a model with dynamic dimensions, e.g. 1x3x224x224", kind=str,
          metavar="NxCxHxW"),
    Field("out", None, "where to write the network's output (.npy)", kind=str, metavar="Y.npy"),
    Field("report", None, "write the per-layer table and a per-layer cycle plot (measured, formula, SCALE-Sim) "
                          "here: Markdown for .md (the plot beside it as <name>-cycles.png) or one self-contained "
                          "HTML file for .html", kind=str, metavar="REPORT.md|REPORT.html"),
    Field("engine", "8x8", "engine array size ROWSxCOLS, each 1..64", kind=str, metavar="RxC"),
    Field("layers", None, "run only convolutions A..B (or N) on the RTL, numbered from 0 in execution order as in "
                          "the table (convolutions, not graph nodes); the others run on the golden model, "
                          "bit-exact with ORT (default: all)", kind=str, metavar="A-B"),
    Field("mismatch_dir", None, "on a mismatch, where the first mismatching step's tensors (input, ORT's output, "
                                "the RTL's output, the layer) and its waveform go (default: <model name>-mismatch "
                                "beside --report, else beside --out, else in the current directory)",
          kind=str, metavar="DIR"),
    Field("waves", True, "on a mismatch, re-run the first mismatching convolution alone on Icarus and save its "
                         "waveform (VCD) under --mismatch-dir (layers of up to 200,000 cycles)",
          flags=("--waves", "--no-waves")),
    SIM_FIELD,
    Field("quiet", False, "no progress lines on stderr"),
)

REPORT_SUFFIXES = (".md", ".html")


def _dims(text: str, flag: str, n: int | None = None) -> tuple:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if not dims or (n is not None and len(dims) != n) or min(dims) < 1:
        shape = "x".join(["N"] * n) if n else "NxCxHxW"
        raise CLIError(f"{flag} must look like {shape} with positive integers, not {text!r}")
    return dims


def parse_layers(text: str, n: int) -> tuple[int, int]:
    """``--layers`` text (``A-B`` or ``N``) as (first, last), checked against ``n`` convolutions;
    CLIError naming the flag and the allowed range otherwise."""
    allowed = f"0..{n - 1}" if n > 1 else "0"
    try:
        parts = [int(v) for v in text.strip().split("-")] if text.strip() else []
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1] < n:
        raise CLIError(f"--layers must be A-B or N with convolution indices in {allowed} and A <= B (the model has "
                       f"{n} convolutions, numbered from 0), not {text!r}")
    return parts[0], parts[1]


def _vs_ort(res) -> dict:
    return {r["name"]: r["mismatches"] for r in res.rows}


def _cell_ort(bad) -> str:
    if bad is None:
        return ""
    return "exact" if bad == 0 else ("shape differs" if bad < 0 else f"{bad:,} differ")


def _table_rows(res) -> list[list[str]]:
    """The per-layer table as text cells: one row per convolution, then the totals."""
    t = res.totals()
    ort = _vs_ort(res)
    out = []
    for c in res.convs:
        f = f"{c.formula_cycles:,}" + ("" if c.formula_exact else " (bound)")
        out.append([str(c.index), c.name, c.kind, c.shape, "RTL" if c.on_rtl else "golden", f"{c.macs:,}",
                    f"{c.cycles:,}" if c.on_rtl else "-", f, f"{c.scalesim_cycles:,}",
                    f"{c.utilization:.1%}" if c.on_rtl else "-", f"{c.wall_seconds:.2f}", _cell_ort(ort.get(c.name))])
    out.append(["", "total (RTL rows)", "", "", f"{t['convs_rtl']}/{t['convs']}", f"{t['macs']:,}",
                f"{t['cycles']:,}", f"{t['formula_cycles']:,}", f"{t['scalesim_cycles']:,}", f"{t['utilization']:.1%}",
                f"{t['wall_seconds']}", ""])
    return out


HEAD = ["#", "layer", "kind", "shape", "on", "MACs", "cycles", "formula", "SCALE-Sim OS", "utilization", "wall s",
        "vs ORT"]


def _title(res) -> str:
    cfg = res.config
    t = res.totals()
    part = "" if res.layers is None else f" ({t['convs_rtl']} of them, #{res.layers[0]}..#{res.layers[1]}, on the RTL)"
    return f"{res.simulator}: {t['convs']} convolutions on a {cfg.rows}x{cfg.cols} ConvEngine{part}"


def _notes(res, mismatch: dict | None = None) -> list[str]:
    t = res.totals()
    notes = ["Convolutions are numbered from 0 in execution order (convolutions only, not graph nodes; "
             "`--layers` uses these numbers). \"on\": RTL, or golden for a convolution outside `--layers`, run "
             "on the golden model (bit-exact with ONNX Runtime) so the layers after it get the right input. "
             "Totals cover the RTL rows. \"formula\" is `EngineConfig.layer_cycles` (exact for compute-bound "
             "layers, else a lower bound); SCALE-Sim OS is `ceil(M/R)*ceil(N/C)*(K+R+C-2)` without overlap."]
    if res.bit_exact:
        notes.append(f"Every step against ONNX Runtime: {t['steps_compared']} steps, bit-exact.")
    else:
        notes.append(f"Every step against ONNX Runtime: {t['steps_compared']} steps; "
                     + (mismatch_line(mismatch) if mismatch else f"first mismatch: {res.first_mismatch}") + ".")
    return notes


def markdown(res, *, plot: str | None = None, mismatch: dict | None = None) -> str:
    """The per-layer table as Markdown (``plot``: a PNG to link under it)."""
    lines = [f"# {_title(res)}", "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _table_rows(res)]
    lines.append("")
    if plot:
        lines += [f"![cycles per convolution: measured, formula, SCALE-Sim]({plot})", ""]
    lines += [n + "\n" for n in _notes(res, mismatch)]
    return "\n".join(lines).rstrip("\n") + "\n"


def html_report(res, png: bytes, *, mismatch: dict | None = None) -> str:
    """One self-contained HTML page: the table, the cycle plot (embedded PNG) and the notes."""
    e = html.escape
    rows = _table_rows(res)
    body = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr>"]
    for r in rows:
        body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
    img = base64.b64encode(png).decode("ascii")
    notes = "".join(f"<p>{e(n)}</p>\n" for n in _notes(res, mismatch))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(_title(res))}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:2px 6px;text-align:right}}
td:nth-child(2),td:nth-child(3),td:nth-child(4){{text-align:left}}</style>
</head><body>
<h1>{e(_title(res))}</h1>
<table>
{chr(10).join(body)}
</table>
<p><img alt="cycles per convolution: measured, formula, SCALE-Sim" src="data:image/png;base64,{img}"></p>
{notes}</body></html>
"""


def cycle_plot(res) -> bytes:
    """PNG: per convolution, the measured cycles (RTL rows only), the formula and SCALE-Sim's
    OS count, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    convs = res.convs
    x = np.arange(len(convs))
    w = 0.27
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(convs) + 2), 3.6))
    try:
        rtl = [c for c in convs if c.on_rtl]
        ax.bar([c.index - w for c in rtl], [c.cycles for c in rtl], w, label="measured (RTL)")
        ax.bar(x, [c.formula_cycles for c in convs], w, label="formula")
        ax.bar(x + w, [c.scalesim_cycles for c in convs], w, label="SCALE-Sim OS")
        ax.set_yscale("log")
        ax.set_xlabel("convolution #")
        ax.set_ylabel("cycles")
        ax.set_xticks(x if len(convs) <= 40 else x[::max(1, len(convs) // 20)])
        if res.layers is not None:
            ax.axvspan(res.layers[0] - 0.5, res.layers[1] + 0.5, color="0.9", zorder=0, label="on the RTL")
        ax.set_title(_title(res), fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buf.getvalue()


def mismatch_line(m: dict) -> str:
    """The first mismatch in one line, with the paths of what was saved."""
    what = f"conv #{m['conv']} " if m.get("conv") is not None else ""
    n = int(np.prod(m["shape"])) if m.get("shape") else 0
    diff = "a different shape" if m["mismatches"] < 0 else \
        f"{m['mismatches']:,} of {n:,} outputs differ (max {m['max_diff']:g})"
    text = f"first mismatch at {what}{m['name']!r} ({m['op']}): {diff}"
    if m.get("tensors"):
        text += "; tensors " + ", ".join(m["tensors"].values())
    if m.get("layer"):
        text += f"; layer {m['layer']}"
    if m.get("waveform"):
        text += f"; waveform {m['waveform']}"
    elif m.get("waveform_error"):
        text += f"; no waveform ({m['waveform_error']})"
    elif m.get("tensors"):
        text += "; no waveform (" + ("--no-waves" if m.get("on_rtl") else "not a step run on the RTL") + ")"
    return text


def _default_mismatch_dir(args) -> str:
    stem = os.path.splitext(os.path.basename(args.model))[0] or "model"
    near = args.report or args.out
    return os.path.join(os.path.dirname(near) if near else "", f"{stem}-mismatch")


def _report_paths(report: str) -> tuple[str, str | None]:
    """(suffix, sibling PNG for Markdown) of ``--report``; CLIError for another suffix."""
    suffix = os.path.splitext(report)[1].lower()
    if suffix not in REPORT_SUFFIXES:
        raise CLIError(f"--report must end in .md (Markdown) or .html (HTML), not {report!r}")
    png = os.path.splitext(report)[0] + "-cycles.png" if suffix == ".md" else None
    return suffix, png


def check_outputs(args) -> str:
    """``--out``, ``--report`` (and its PNG) and ``--mismatch-dir`` checked before any work (also
    for ``run tflite``); returns the mismatch directory."""
    if args.out is not None:
        check_output_file(args.out, "--out")
    if args.report is not None:
        _, png = _report_paths(args.report)
        check_output_file(args.report, "--report", "report.md")
        if png is not None:
            check_output_file(png, "--report", "report.md")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--report needs matplotlib for its plot, which is not installed", 3) from None
    mismatch_dir = args.mismatch_dir or _default_mismatch_dir(args)
    check_output_dir(mismatch_dir, "--mismatch-dir")
    return mismatch_dir


def _write_report(res, report: str, mismatch: dict | None) -> None:
    from convgen.core.fileio import atomic_write_bytes, atomic_write_text

    suffix, png_path = _report_paths(report)
    png = cycle_plot(res)
    if suffix == ".html":
        atomic_write_text(report, html_report(res, png, mismatch=mismatch))
        return
    atomic_write_bytes(png_path, png)
    try:
        atomic_write_text(report, markdown(res, plot=os.path.basename(png_path), mismatch=mismatch))
    except BaseException:
        os.unlink(png_path)
        raise


def _run_onnx(args) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.core.params import ConfigError
    from convgen.golden import network as gn
    from convgen.sim.network import run_network, save_mismatch

    read_fields(args, FIELDS)
    rows, cols = _dims(args.engine, "--engine", 2)
    if rows > 64 or cols > 64:
        raise CLIError(f"--engine must be ROWSxCOLS with each in 1..64, not {args.engine!r}")
    shape = _dims(args.input_shape, "--input-shape") if args.input_shape else None
    mismatch_dir = check_outputs(args)
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
    layers = parse_layers(args.layers, len(net.conv_steps)) if args.layers is not None else None

    def progress(text):
        if not args.quiet:
            print(f"convgen: {text}", file=sys.stderr, flush=True)

    try:
        res = run_network(args.model, x, rows=rows, cols=cols, simulator=args.sim, progress=progress,
                          input_seed=args.input_seed, input_shape=shape, layers=layers)
    except ConfigError as e:
        raise CLIError(f"{args.model}: {e}") from None
    mismatch = None
    if not res.bit_exact:
        mismatch = save_mismatch(res, args.model, mismatch_dir, waves=args.waves, progress=progress)
        print(f"convgen: {mismatch_line(mismatch)}", file=sys.stderr, flush=True)
    print(markdown(res, mismatch=mismatch), end="")
    if args.out:
        buf = io.BytesIO()
        np.save(buf, res.output)
        atomic_write_bytes(args.out, buf.getvalue())
    if args.report:
        _write_report(res, args.report, mismatch)
    print(json.dumps({"model": args.model, "engine": f"{rows}x{cols}", "simulator": args.sim, **res.totals(),
                      "first_mismatch": mismatch if mismatch is not None else res.first_mismatch,
                      "module": res.config.module_name}, default=str))
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
