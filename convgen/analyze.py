"""Read the convolutions of an ONNX model and price them with :mod:`convgen.costmodel`.

:func:`load_layers` runs ONNX shape inference (weights are not loaded), turns every ``Conv``,
``Gemm`` and ``MatMul`` into a :class:`~convgen.core.layer.ConvLayer` (output size computed from
strides, asymmetric pads, dilations and ``auto_pad``; checked against the inferred shape) and
lists the other operators: ops known to do multiply-accumulates that are not modelled
(``ConvTranspose``, ``QLinearConv``, ``LSTM``, ...) are warnings, ops outside the ONNX standard
set are warnings, the rest (activations, pooling, normalization, ...) are listed as not costed.
:func:`analyze` adds the per-layer costs. User mistakes raise :class:`AnalyzeError` (one line).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from convgen import costmodel as cm
from convgen.core.layer import ConvLayer, conv_layer_from_onnx
from convgen.core.params import ConfigError

__all__ = ["AnalyzeError", "Model", "load_layers", "analyze", "bundled_models", "format_table",
           "format_csv", "COLUMNS"]

#: ops that do multiply-accumulates but have no cost model here: a warning, totals exclude them
MAC_OPS_NOT_MODELLED = {"ConvTranspose", "ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul",
                        "Einsum", "LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "DeformConv"}


class AnalyzeError(ConfigError):
    """A user mistake in ``convgen analyze`` (status 2, one line)."""


@dataclass
class Model:
    path: str
    layers: list
    not_costed: Counter = field(default_factory=Counter)  # op -> count (no MACs to speak of)
    warnings: list = field(default_factory=list)


def bundled_models() -> dict:
    """Real models shipped in the ``onnx`` wheel (``onnx/backend/test/data/light``): name -> path."""
    import onnx

    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(d.glob("*.onnx"))}


# ---- loading ------------------------------------------------------------------------------
def _load(path) -> "onnx.ModelProto":
    import onnx

    p = Path(path)
    if not p.exists():
        raise AnalyzeError(f"no such file: {path}")
    if not p.is_file():
        raise AnalyzeError(f"not a file: {path}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, RuntimeError, ...: not an ONNX file
        raise AnalyzeError(f"{path} is not an ONNX model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    if not model.graph.node or not model.opset_import:
        # protobuf parses many non-ONNX byte strings into an empty message
        raise AnalyzeError(f"{path} is not an ONNX model (no graph nodes or no opset)")
    return model


def _set_input_shapes(model, input_shapes: dict) -> None:
    inits = {i.name for i in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    for name, dims in input_shapes.items():
        if name is None:
            if len(inputs) != 1:
                raise AnalyzeError(f"the model has {len(inputs)} inputs ({', '.join(inputs)}): "
                                   "name the one to reshape, --input-shape NAME=1x3x224x224")
            name = next(iter(inputs))
        if name not in inputs:
            raise AnalyzeError(f"--input-shape: the model has no input {name!r} (inputs: {', '.join(inputs)})")
        shape = inputs[name].type.tensor_type.shape
        if len(shape.dim) and len(shape.dim) != len(dims):
            raise AnalyzeError(f"--input-shape: input {name!r} has rank {len(shape.dim)}, not {len(dims)}")
        del shape.dim[:]
        for d in dims:
            shape.dim.add().dim_value = d


def _infer(model):
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(model, strict_mode=True, data_prop=True), None
    except Exception as e:  # unknown op, bad attribute: fall back to best effort and say so
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        try:
            return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True), msg
        except Exception as e2:
            raise AnalyzeError(f"ONNX shape inference failed: {str(e2).strip().splitlines()[0]}") from None


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_layers(path, input_shapes: dict | None = None) -> Model:
    """Every Conv / Gemm / MatMul of the model at ``path`` as a ConvLayer.

    ``input_shapes`` maps a graph input name (or None for the only input) to a fixed shape, for
    models whose input shape is dynamic."""
    import onnx

    model = _load(path)
    if input_shapes:
        _set_input_shapes(model, input_shapes)
    inferred, infer_warning = _infer(model)
    g = inferred.graph
    warnings = []
    if infer_warning:
        warnings.append(f"strict shape inference failed ({infer_warning}); shapes are best effort")
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    const_outputs = set(i.name for i in g.initializer)
    for node in g.node:
        if node.op_type in ("Constant", "ConstantOfShape") or (
                node.op_type in ("Identity", "Cast", "Reshape", "Transpose", "Unsqueeze", "DequantizeLinear")
                and node.input and node.input[0] in const_outputs):
            const_outputs.update(node.output)

    def shape_of(name, node, what, rank=None):
        s = shapes.get(name)
        where = f"{what} {name!r} of {node.op_type} {node.name or node.output[0]!r}"
        if s is None:
            raise AnalyzeError(f"cannot infer the shape of {where}; the model has dynamic or unknown "
                               "shapes (fix the input with --input-shape NAME=1x3x224x224)")
        if any(not isinstance(d, int) or d <= 0 for d in s):
            raise AnalyzeError(f"the shape of {where} is dynamic {s}; fix the input with "
                               "--input-shape NAME=1x3x224x224")
        if rank is not None and len(s) != rank:
            raise AnalyzeError(f"{where} has rank {len(s)}, expected {rank}")
        return s

    known_domains = {"", "ai.onnx", "ai.onnx.ml"}
    layers, not_costed, unknown, unmodelled = [], Counter(), Counter(), Counter()
    for i, node in enumerate(g.node):
        name = node.name or node.output[0] or f"node{i}"
        op = node.op_type
        if node.domain not in known_domains or not _is_standard(node, model):
            unknown[f"{node.domain + '.' if node.domain else ''}{op}"] += 1
            continue
        if op == "Conv":
            a = _attrs(node)
            x = shapes.get(node.input[0])
            if x is not None and len(x) != 4:
                unmodelled[f"Conv{len(x) - 2}D"] += 1
                continue
            x = shape_of(node.input[0], node, "input", 4)
            w = shape_of(node.input[1], node, "weight", 4)
            try:
                L = conv_layer_from_onnx(a, x, w, name=name, op=op, bias=len(node.input) > 2 and bool(node.input[2]))
            except ConfigError as e:
                raise AnalyzeError(str(e)) from None
            y = shapes.get(node.output[0])
            if y and all(isinstance(d, int) and d > 0 for d in y) and list(y) != [L.n, L.c_out, L.out_h, L.out_w]:
                warnings.append(f"{name}: output shape from attributes {[L.n, L.c_out, L.out_h, L.out_w]} differs from "
                                f"ONNX shape inference {y}; using the attributes")
            layers.append(L)
        elif op in ("Gemm", "MatMul"):
            a = _attrs(node) if op == "Gemm" else {}
            sa = shape_of(node.input[0], node, "input A")
            sb = shape_of(node.input[1], node, "input B")
            if op == "Gemm":
                m, k = (sa[1], sa[0]) if a.get("transA", 0) else (sa[0], sa[1])
                n = sb[0] if a.get("transB", 0) else sb[1]
                batch = 1
            else:
                if len(sb) == 1 or len(sa) == 1:
                    sa, sb = (sa if len(sa) > 1 else [1] + sa), (sb if len(sb) > 1 else sb + [1])
                m, k, n = sa[-2], sa[-1], sb[-1]
                batch = math.prod(sa[:-2]) if len(sb) == 2 else max(math.prod(sa[:-2]), math.prod(sb[:-2]))
            layers.append(ConvLayer.gemm(batch * m, k, n, name=name, op=op,
                                         bias=op == "Gemm" and len(node.input) > 2 and bool(node.input[2]),
                                         weight_is_param=node.input[1] in const_outputs or len(sb) == 2))
        elif op in MAC_OPS_NOT_MODELLED:
            unmodelled[op] += 1
        else:
            not_costed[op] += 1
    for op, c in sorted(unknown.items()):
        warnings.append(f"unknown op {op} x{c}: not in the ONNX standard operator set, not costed")
    for op, c in sorted(unmodelled.items()):
        warnings.append(f"{op} x{c} does multiply-accumulates but has no cost model: excluded from the totals")
    return Model(path=str(path), layers=layers, not_costed=not_costed, warnings=warnings)


def _is_standard(node, model) -> bool:
    from onnx import defs

    if node.domain not in ("", "ai.onnx"):
        return True  # ai.onnx.ml: standard, never costed
    return defs.has(node.op_type)


# ---- pricing ------------------------------------------------------------------------------
COLUMNS = ["layer", "op", "kind", "input", "output", "kernel", "macs", "flops", "params", "in_elems",
           "out_elems", "im2col_elems", "im2col_blowup", "indirection_entries", "winograd",
           "winograd_mults", "direct_mults", "cycles", "utilization", "scalesim_cycles", "mapping"]


def analyze(model: Model, cfg, *, winograd: bool = False, groups: int = 4, reduction: int = 4,
            sparsity: float = 0.5) -> dict:
    """Per-layer rows and totals for the array ``cfg`` (a ``SystolicConfig``).

    With ``winograd``, eligible layers are priced on the array as Winograd F(2x2,3x3) GEMMs."""
    rows = []
    for L in model.layers:
        wg = cm.winograd_applies(L)
        use_wg = winograd and wg and L.kind != "depthwise"
        sc = cm.systolic_cycles(L, cfg, winograd=use_wg)
        ss = cm.scalesim_cycles(L, cfg.rows, cfg.cols, cfg.dataflow, winograd=use_wg)
        row = {
            "layer": L.name, "op": L.op, "kind": L.kind,
            "input": f"{L.c}x{L.h}x{L.w}", "output": f"{L.c_out}x{L.out_h}x{L.out_w}",
            "kernel": f"{L.kh}x{L.kw}/s{L.stride[0]}" + (f"/g{L.groups}" if L.groups > 1 else "")
                      + (f"/d{L.dilation[0]}" if L.dilation != (1, 1) else ""),
            "macs": cm.macs(L), "flops": cm.flops(L), "params": cm.params(L),
            "in_elems": L.in_elements, "out_elems": L.out_elements,
            "im2col_elems": cm.im2col_elements(L), "im2col_blowup": cm.im2col_elements(L) / L.in_elements,
            "indirection_entries": cm.indirection_entries(L),
            "winograd": "yes" if wg else "no",
            "winograd_mults": cm.winograd_multiplies(L) if wg else None,
            "direct_mults": cm.direct_tile_multiplies(L) if wg else None,
            "cycles": sc["cycles"], "utilization": sc["utilization"], "tiles": sc["tiles"],
            "array_multiplies": sc["multiplies"],
            "array_algorithm": "winograd" if use_wg else "im2col-gemm",
            "scalesim_cycles": ss["cycles"], "mapping": cm.recommend(L, cfg.cols),
            "batch": L.n, "stride": list(L.stride), "pads": list(L.pads), "dilation": list(L.dilation),
            "group": L.groups,
        }
        if L.kind == "standard":
            row["what_if"] = cm.what_if(L, groups=groups, reduction=reduction, sparsity=sparsity)
        rows.append(row)
    tot = {k: sum(r[k] for r in rows) for k in ("macs", "flops", "params", "im2col_elems",
                                                "indirection_entries", "cycles", "scalesim_cycles")}
    tot["layers"] = len(rows)
    # utilization of the PEs by the multiplies the array really does (Winograd layers do fewer)
    tot["array_multiplies"] = sum(r["array_multiplies"] for r in rows)
    tot["utilization"] = (tot["array_multiplies"] / (tot["cycles"] * cfg.rows * cfg.cols)) if rows else 0.0
    wrows = [r for r in rows if r["winograd"] == "yes"]
    tot["winograd_layers"] = len(wrows)
    tot["winograd_mults"] = sum(r["winograd_mults"] for r in wrows)
    tot["winograd_direct_mults"] = sum(r["direct_mults"] for r in wrows)
    # what-if totals: the whole model with every standard KxK convolution rewritten
    wi = {}
    for key in ("depthwise_separable", "grouped", "bottleneck_block", "lowrank", "pruned"):
        wi[key] = sum(r["macs"] * (r["what_if"][key] if r["what_if"][key] is not None else 1)
                      if "what_if" in r else r["macs"] for r in rows)
    wi["int8_traffic_bytes"] = sum(cm.traffic_bytes(L, "int8") for L in model.layers)
    wi["fp32_traffic_bytes"] = sum(cm.traffic_bytes(L, "fp32") for L in model.layers)
    return {"model": model.path, "array": cfg.to_dict(), "winograd": winograd,
            "conventions": {"flops_per_mac": 2, "what_if": {"groups": groups, "reduction": reduction,
                                                            "sparsity": sparsity}},
            "layers": rows, "totals": tot, "what_if_totals_macs": wi,
            "not_costed": dict(sorted(model.not_costed.items())), "warnings": model.warnings}


# ---- output -------------------------------------------------------------------------------
def _si(x) -> str:
    if x is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return str(x)


_TABLE = [("layer", "layer", str), ("op", "op", str), ("kind", "kind", str), ("in CxHxW", "input", str),
          ("out CxHxW", "output", str), ("kernel", "kernel", str), ("MACs", "macs", _si),
          ("params", "params", _si), ("im2col", "im2col_elems", _si),
          ("blowup", "im2col_blowup", lambda v: f"{v:.2f}x"), ("indir", "indirection_entries", _si),
          ("wino 16/36", "winograd_mults", _si), ("cycles", "cycles", _si),
          ("util", "utilization", lambda v: f"{v:.1%}"), ("SCALE-Sim", "scalesim_cycles", _si),
          ("mapping", "mapping", str)]


def _grid(header, body) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, 1, 2, len(widths) - 1) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in body])


def format_table(res: dict) -> str:
    cfg, t = res["array"], res["totals"]
    out = [f"{res['model']}: {t['layers']} layers; {cfg['rows']}x{cfg['cols']} {cfg['dataflow']} array"
           + (", Winograd F(2x2,3x3) on eligible layers" if res["winograd"] else "")
           + "; 1 MAC = 2 FLOPs"]
    body = []
    for r in res["layers"]:
        name = r["layer"] if len(r["layer"]) <= 28 else "…" + r["layer"][-27:]
        body.append([name] + [fmt(r[key]) for _, key, fmt in _TABLE[1:]])
    body.append(["TOTAL", "", "", "", "", "", _si(t["macs"]), _si(t["params"]), _si(t["im2col_elems"]), "",
                 _si(t["indirection_entries"]), _si(t["winograd_mults"]), _si(t["cycles"]),
                 f"{t['utilization']:.1%}", _si(t["scalesim_cycles"]), ""])
    out.append(_grid([h for h, _, _ in _TABLE], body))
    out.append(f"total: {t['macs']:,} MACs = {t['flops']:,} FLOPs, {t['params']:,} parameters; "
               f"array: {t['cycles']:,} cycles ({t['utilization']:.1%} utilization) vs SCALE-Sim-style "
               f"no-overlap {t['scalesim_cycles']:,} ({t['scalesim_cycles'] / max(t['cycles'], 1):.2f}x)")
    if t["winograd_layers"]:
        out.append(f"Winograd F(2x2,3x3) applies to {t['winograd_layers']} layers: {t['winograd_mults']:,} "
                   f"multiplies instead of {t['winograd_direct_mults']:,} "
                   f"({t['winograd_direct_mults'] / t['winograd_mults']:.2f}x fewer)")
    wi, c = res["what_if_totals_macs"], res["conventions"]["what_if"]
    out.append(f"what-if, every standard KxK conv rewritten (model MACs {_si(t['macs'])}): "
               f"depthwise separable {_si(wi['depthwise_separable'])}, {c['groups']} groups {_si(wi['grouped'])}, "
               f"bottleneck /{c['reduction']} {_si(wi['bottleneck_block'])}, low-rank Kx1+1xK {_si(wi['lowrank'])}, "
               f"pruned s={c['sparsity']} {_si(wi['pruned'])}; INT8 traffic {_si(wi['int8_traffic_bytes'])}B "
               f"vs FP32 {_si(wi['fp32_traffic_bytes'])}B")
    if res["not_costed"]:
        out.append("not costed (no MAC model needed): " + ", ".join(f"{k} x{v}" for k, v in res["not_costed"].items()))
    for w in res["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out)


def format_csv(res: dict) -> str:
    import csv
    import io

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(COLUMNS)
    for r in res["layers"]:
        wr.writerow(["" if r[c] is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in COLUMNS])
    return buf.getvalue()
