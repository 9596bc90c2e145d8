"""``convgen analyze MODEL.onnx``: per-layer cost model of a real network (see docs/analyze.md)."""

from __future__ import annotations

import argparse
import json
import sys

from convgen.hdl.systolic import SystolicConfig

from .common import CLIError, add_fields, check_output_file, read_fields

_DATAFLOW = next(f for f in SystolicConfig.fields() if f.name == "dataflow")


def _array(text: str):
    try:
        r, c = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"array must look like 8x8 (rows x cols), not {text!r}") from None
    return r, c


def _input_shape(text: str):
    name, _, dims = text.rpartition("=")
    try:
        shape = [int(x) for x in dims.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must look like [NAME=]1x3x224x224, not {text!r}") from None
    if min(shape) < 1:
        raise argparse.ArgumentTypeError(f"input shape dimensions must be >= 1, not {text!r}")
    return (name or None), shape


def cmd_analyze(args) -> int:
    from convgen.analyze import analyze, format_csv, format_table, load_layers
    from convgen.core.params import check_int

    cfg = SystolicConfig(rows=args.array[0], cols=args.array[1], **read_fields(args, [_DATAFLOW]))
    check_int("groups", args.groups, 1)
    check_int("reduction", args.reduction, 1)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib, which is not installed (pip install matplotlib)", 3) from None
        check_output_file(args.plot, "--plot", "layers.png")   # before the model is read
    model = load_layers(args.model, dict(args.input_shape or []))
    res = analyze(model, cfg, winograd=args.winograd, groups=args.groups, reduction=args.reduction,
                  sparsity=args.sparsity)
    text = (json.dumps(res, indent=1) + "\n" if args.format == "json"
            else format_csv(res) if args.format == "csv" else format_table(res) + "\n")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `convgen analyze ... | head`
        pass
    if args.plot:
        _plot(res, args.plot)
    return 0


def _plot(res, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convgen.core.fileio import atomic_write_bytes
    import io

    layers = res["layers"]
    x = range(len(layers))
    fig, ax = plt.subplots(figsize=(max(8, len(layers) * 0.15), 4))
    ax.bar(x, [r["macs"] for r in layers], label="MACs")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax2 = ax.twinx()
    ax2.plot(x, [r["cycles"] for r in layers], "r.-", label="cycles")
    ax2.set_yscale("log")
    ax.set_title(res["model"].rsplit("/", 1)[-1])
    fig.legend(loc="upper right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def register(verbs) -> None:
    p = verbs["top"].add_parser("analyze", help="per-layer cost model of an ONNX network (MACs, im2col, "
                                                "Winograd, systolic-array cycles, what-if rewrites)")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--array", type=_array, default=(8, 8), help="systolic array RxC (default 8x8)")
    add_fields(p, [_DATAFLOW])
    p.add_argument("--winograd", action="store_true",
                   help="price 3x3 stride-1 layers on the array as Winograd F(2x2,3x3) GEMMs")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="a table (default), CSV or JSON, on stdout")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="PNG of per-layer MACs and cycles (needs matplotlib)")
    p.add_argument("--input-shape", type=_input_shape, action="append", metavar="[NAME=]1x3x224x224",
                   help="fix a dynamic input shape (repeat for several inputs)")
    p.add_argument("--groups", type=int, default=4, help="what-if: G of the grouped rewrite (default 4)")
    p.add_argument("--reduction", type=int, default=4, help="what-if: bottleneck channel reduction (default 4)")
    p.add_argument("--sparsity", type=float, default=0.5, help="what-if: structured pruning sparsity (default 0.5)")
    p.set_defaults(func=cmd_analyze)
