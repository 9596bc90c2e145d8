"""Small int8 TFLite graphs: written as flatbuffers with the ``tflite`` schema package (no
TensorFlow), read back, and run op by op with the integer semantics of one TFLite path.

- :func:`read_model` reads a ``.tflite`` file (one subgraph) into a :class:`Graph`: tensors
  with their int8/int32 data and quantization, operators with their options. Supported
  operators (:data:`SUPPORTED_OPS`): ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``
  (int8, per-channel or per-tensor weight scales, weight zero point 0, depth multiplier 1, no
  dilation), ``ADD`` and ``MUL`` (broadcasting), ``AVERAGE_POOL_2D``, ``MAX_POOL_2D`` and
  ``RESHAPE`` (the same quantization on both sides), ``MEAN``, ``SOFTMAX``, ``LOGISTIC``,
  ``HARD_SWISH``, ``CONCATENATION``, ``PAD``, ``QUANTIZE`` (float32 or int8/uint8 to int8/uint8)
  and ``DEQUANTIZE`` (to float32: models with float or uint8 I/O, :func:`with_io`); anything else
  is a ConfigError naming the operator.
- :meth:`Graph.conv_fixture` turns a convolution (or a FULLY_CONNECTED) and its input into a
  :class:`convgen.golden.tflite_fixtures.ConvFixture`, so the golden model of each path
  (``golden_path``) and the engine (:func:`quant_conv_for`) see the same layer;
  :func:`single_op_model` / :func:`litert_op` run one operator alone on LiteRT.
- :func:`run_golden` runs the graph on the golden models of a path; the host operators'
  per-path semantics are :func:`add_int8`, :func:`average_pool` and :func:`fc_reference`, each
  measured against LiteRT (docs/tflite.md).
- :func:`mobilenet`, :func:`mobilenet_v2` and :func:`mobilenet_v3` write deterministic
  MobileNetV1-, V2- and V3-style int8 models (the generators behind
  ``examples/tflite_mobilenet.py``), per-channel weight scales, output scales calibrated on the
  generator's own input with the reference path's golden model; :func:`with_io` gives any of
  them a converter's float32 or uint8 input and output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from convgen.core.params import ConfigError

from . import tflite_fixtures as F
from . import tflite_ops as O
from .quant import quantize_multiplier, tflite_activation_bounds, xnnpack_activation_bounds

__all__ = ["SUPPORTED_OPS", "ENGINE_OPS", "TensorInfo", "OpInfo", "Graph", "read_model", "write_model", "run_golden",
           "quant_conv_for", "conv_arrays", "on_engine", "single_op_model", "run_litert", "litert_op", "fc_reference",
           "average_pool", "add_int8", "mobilenet", "mobilenet_v2", "mobilenet_v3", "with_io", "as_value", "as_numpy",
           "count_differ"]

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD",
                 "RESHAPE", "MEAN", "SOFTMAX", "CONCATENATION", "PAD", "QUANTIZE", "DEQUANTIZE", "MUL", "LOGISTIC",
                 "HARD_SWISH", "SHAPE", "STRIDED_SLICE", "PACK")
#: int32 shape arithmetic (Keras' Reshape with a dynamic batch converts to SHAPE -> STRIDED_SLICE ->
#: PACK -> RESHAPE): accepted only where it feeds a RESHAPE's shape input, whose output shape is
#: static in the model, so it is skipped (:func:`_check_shape_ops`)
SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")
#: operators that move no int8 value, so nothing to compare with LiteRT
NO_DATA_OPS = ("RESHAPE",) + SHAPE_OPS
#: operators that can run on the engine (FULLY_CONNECTED not on the ``ref`` path: :func:`on_engine`)
ENGINE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def on_engine(op: "OpInfo", path: str) -> bool:
    """Whether ``op`` runs on the engine on ``path``. TFLite's reference FULLY_CONNECTED (LiteRT
    2.3) rounds ``acc * M`` once, ties away from zero (:func:`fc_reference`), which is none of
    the requantizer's modes, so on ``ref`` it runs on the host; the optimized and XNNPACK
    FULLY_CONNECTED round like their convolutions (``tflite_opt``, ``xnnpack``: measured)."""
    return op.kind in ENGINE_OPS and not (op.kind == "FULLY_CONNECTED" and path == "ref")
_ACT_NAME = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
_ACT_CODE = {v: k for k, v in _ACT_NAME.items()}
_TYPES = {"int8": 9, "int32": 2, "uint8": 3, "float32": 0}   # tflite.TensorType.INT8, INT32, UINT8, FLOAT32


@dataclass
class TensorInfo:
    name: str
    shape: tuple
    dtype: str                           # "int8", "int32", or another TensorType name
    scale: np.ndarray | None = None      # float32, one per tensor or per channel
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0
    data: np.ndarray | None = None       # constant tensors (weights, bias, shapes)


@dataclass
class OpInfo:
    index: int
    kind: str                            # the builtin operator's name, e.g. "CONV_2D"
    inputs: list
    outputs: list
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.index}_{self.kind.lower()}"


@dataclass
class Graph:
    tensors: list
    ops: list
    inputs: list
    outputs: list

    def engine_ops(self, path: str) -> list:
        """The operators that run on the engine on ``path`` (:func:`on_engine`)."""
        return [op for op in self.ops if on_engine(op, path)]

    def conv_fixture(self, op: OpInfo, x: np.ndarray) -> F.ConvFixture:
        """Convolution ``op`` with input ``x`` (int8 NHWC) as a one-layer fixture; a
        FULLY_CONNECTED ``[N, K] x [M, K]`` is the 1x1 CONV_2D of a ``1 x N x 1 x K`` image
        (each row a pixel), which computes the same accumulators and requantizes them the
        same way on every path (TFLite's reference and optimized FC, and XNNPACK's, use the
        convolution's arithmetic)."""
        t = self.tensors
        xt, wt = t[op.inputs[0]], t[op.inputs[1]]
        bt = t[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        yt = t[op.outputs[0]]
        c = yt.shape[-1]
        w_scale = np.asarray(wt.scale, np.float32)
        w_scale = np.repeat(w_scale, c) if w_scale.size == 1 else w_scale
        bias = bt.data.astype(np.int32) if bt is not None else np.zeros(c, np.int32)
        x = np.asarray(x)
        if op.kind == "FULLY_CONNECTED":
            k = wt.shape[1]
            x = x.reshape(1, -1, 1, k)
            w = wt.data.reshape(c, 1, 1, k)
            kind, stride, padding = "conv", 1, "VALID"
        else:
            w = wt.data
            kind = "conv" if op.kind == "CONV_2D" else "depthwise"
            stride, padding = op.options["stride"], op.options["padding"]
        return F.ConvFixture(op.name, kind, x.astype(np.int8), w.astype(np.int8), bias, float(xt.scale[0]),
                             int(xt.zero_point[0]), w_scale, float(yt.scale[0]), int(yt.zero_point[0]),
                             op.options["activation"], stride, padding)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

def _op_names() -> dict:
    import tflite as T
    return {v: k for k, v in vars(T.BuiltinOperator).items() if not k.startswith("_")}


def _type_names() -> dict:
    import tflite as T
    return {v: k.lower() for k, v in vars(T.TensorType).items() if not k.startswith("_")}


def read_model(data: bytes) -> Graph:
    """The first subgraph of a ``.tflite`` flatbuffer, one input and one output; ConfigError for
    an operator or a quantization outside :data:`SUPPORTED_OPS` and their documented limits."""
    graph = parse_model(data)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ConfigError(f"the model must have one input and one output, not {len(graph.inputs)} and "
                          f"{len(graph.outputs)}")
    return graph


def parse_model(data: bytes) -> Graph:
    """:func:`read_model` without the one-input, one-output limit (one-operator test models)."""
    import tflite as T

    try:
        model = T.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ConfigError("the model has no subgraph")
        sg = model.Subgraphs(0)
    except ConfigError:
        raise
    except Exception as e:    # flatbuffers raises assorted errors on foreign bytes
        raise ConfigError(f"not a TFLite flatbuffer ({type(e).__name__})") from None
    types, ops_by_code = _type_names(), _op_names()
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        dtype = types.get(t.Type(), str(t.Type()))
        q = t.Quantization()
        scale = zp = None
        qdim = 0
        if q is not None and q.ScaleLength():
            scale = q.ScaleAsNumpy().astype(np.float32)
            zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scale.size, np.int64)
            qdim = q.QuantizedDimension()
        buf = model.Buffers(t.Buffer())
        arr = None
        if buf is not None and buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
            npt = {"int8": np.int8, "int32": "<i4", "int64": "<i8", "float32": "<f4", "uint8": np.uint8}.get(dtype)
            if npt is None:
                raise ConfigError(f"tensor {t.Name().decode()!r}: constant data of type {dtype} is not supported")
            arr = np.frombuffer(raw, dtype=npt).reshape(tuple(t.ShapeAsNumpy()) if t.ShapeLength() else ())
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        tensors.append(TensorInfo(t.Name().decode(), shape, dtype, scale, zp, qdim, arr))
    ops = []
    for i in range(sg.OperatorsLength()):
        o = sg.Operators(i)
        oc = model.OperatorCodes(o.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        kind = ops_by_code.get(code, f"builtin {code}")
        op = OpInfo(i, kind, [int(v) for v in o.InputsAsNumpy()], [int(v) for v in o.OutputsAsNumpy()])
        if kind not in SUPPORTED_OPS:
            raise ConfigError(f"operator {i} ({kind}) is not supported; run tflite supports "
                              f"{', '.join(SUPPORTED_OPS)}")
        if kind not in SHAPE_OPS:
            _read_options(o, op, tensors)
        ops.append(op)
    graph = Graph(tensors, ops, [int(v) for v in sg.InputsAsNumpy()], [int(v) for v in sg.OutputsAsNumpy()])
    _check_shape_ops(graph)
    return graph


def _check_shape_ops(graph: Graph) -> None:
    """Every SHAPE/STRIDED_SLICE/PACK output is int32 and read only by another such operator or
    as a RESHAPE's shape (second input); ConfigError naming the operator otherwise."""
    readers: dict = {}
    for op in graph.ops:
        for k, i in enumerate(op.inputs):
            readers.setdefault(i, []).append((op, k))
    for op in graph.ops:
        if op.kind not in SHAPE_OPS:
            continue
        for t in op.outputs:
            ok = graph.tensors[t].dtype == "int32" and t not in graph.outputs and all(
                r.kind in SHAPE_OPS or (r.kind == "RESHAPE" and k == 1) for r, k in readers.get(t, []))
            if not ok:
                raise ConfigError(f"operator {op.index} ({op.kind}) is supported only as int32 shape arithmetic "
                                  "that feeds a RESHAPE's shape")


def _read_options(o, op: OpInfo, tensors: list) -> None:
    import tflite as T

    table = o.BuiltinOptions()
    where = f"operator {op.index} ({op.kind})"
    if op.kind == "RESHAPE":
        a, b = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if not (_same_quant(a, b)):
            raise ConfigError(f"{where}: input and output quantization differ")
        return
    if op.kind == "PAD":
        _read_host_options(T, table, op, tensors, where)
        return
    if op.kind in ("QUANTIZE", "DEQUANTIZE"):
        _read_quantize(op, tensors, where)
        return
    if op.kind in ("LOGISTIC", "HARD_SWISH"):
        a, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
        for t in (a, y):
            if t.dtype != "int8" or t.scale is None or t.scale.size != 1:
                raise ConfigError(f"{where}: int8 tensors with one scale each are supported, not {t.name!r} "
                                  f"({t.dtype})")
        if op.kind == "HARD_SWISH":
            try:
                O.hard_swish_params(float(a.scale[0]), float(y.scale[0]))
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            return
        if int(y.zero_point[0]) != -128 or float(y.scale[0]) != 1 / 256:
            raise ConfigError(f"{where}: the int8 output must have scale 1/256 (TFLite requires it) and zero point "
                              "-128 (what converters write; no other is modelled)")
        return
    if table is None:
        raise ConfigError(f"{where}: no options")
    if op.kind in ("ADD", "MUL"):
        opts = T.AddOptions() if op.kind == "ADD" else T.MulOptions()
        opts.Init(table.Bytes, table.Pos)
        act = _ACT_NAME.get(opts.FusedActivationFunction())
        if act is None:
            raise ConfigError(f"{where}: fused activation {opts.FusedActivationFunction()} is not supported")
        op.options = {"activation": act}
        ts = [tensors[i] for i in op.inputs + op.outputs]
        if len(op.inputs) != 2 or any(t.dtype != "int8" or t.scale is None or t.scale.size != 1 for t in ts):
            raise ConfigError(f"{where}: two int8 inputs and an int8 output with one scale each are supported")
        try:
            shape = np.broadcast_shapes(ts[0].shape, ts[1].shape)
        except ValueError:
            shape = None
        if shape != tuple(ts[2].shape):
            raise ConfigError(f"{where}: shapes {[list(t.shape) for t in ts]} do not broadcast to the output")
        return
    if op.kind in ("MEAN", "SOFTMAX", "CONCATENATION", "PAD"):
        _read_host_options(T, table, op, tensors, where)
        return
    if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        opts = T.Pool2DOptions()
        opts.Init(table.Bytes, table.Pos)
        a, b = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if a.dtype != "int8" or not _same_quant(a, b) or a.scale is None or a.scale.size != 1:
            raise ConfigError(f"{where}: input and output must be int8 with the same (per-tensor) quantization")
        act = _ACT_NAME.get(opts.FusedActivationFunction())
        if act is None:
            raise ConfigError(f"{where}: fused activation {opts.FusedActivationFunction()} is not supported")
        op.options = {"stride": (int(opts.StrideH()), int(opts.StrideW())),
                      "filter": (int(opts.FilterHeight()), int(opts.FilterWidth())),
                      "padding": "SAME" if opts.Padding() == T.Padding.SAME else "VALID", "activation": act}
        return
    if op.kind == "FULLY_CONNECTED":
        opts = T.FullyConnectedOptions()
        opts.Init(table.Bytes, table.Pos)
        if opts.WeightsFormat() != 0 or opts.KeepNumDims():
            raise ConfigError(f"{where}: only the default weights format without keep_num_dims is supported")
        act = _ACT_NAME.get(opts.FusedActivationFunction())
        if act is None:
            raise ConfigError(f"{where}: fused activation {opts.FusedActivationFunction()} is not supported")
        op.options = {"activation": act}
        x, w, y = tensors[op.inputs[0]], tensors[op.inputs[1]], tensors[op.outputs[0]]
        for t, what in ((x, "input"), (w, "weights"), (y, "output")):
            if t.dtype != "int8" or t.scale is None:
                raise ConfigError(f"{where}: the {what} must be a quantized int8 tensor, not {t.dtype}")
        if w.data is None or np.any(w.zero_point != 0):
            raise ConfigError(f"{where}: the weights must be a constant with zero points 0")
        if len(x.shape) != 2 or x.shape[1] != w.shape[1]:
            raise ConfigError(f"{where}: the input must be [N, {w.shape[1]}], not {list(x.shape)}")
        return
    opts = T.Conv2DOptions() if op.kind == "CONV_2D" else T.DepthwiseConv2DOptions()
    opts.Init(table.Bytes, table.Pos)
    if opts.StrideH() != opts.StrideW():
        raise ConfigError(f"{where}: strides {opts.StrideH()}x{opts.StrideW()} differ (square strides only)")
    if opts.DilationHFactor() not in (0, 1) or opts.DilationWFactor() not in (0, 1):
        raise ConfigError(f"{where}: dilation is not supported")
    if op.kind == "DEPTHWISE_CONV_2D" and opts.DepthMultiplier() not in (0, 1):
        raise ConfigError(f"{where}: depth multiplier {opts.DepthMultiplier()} (only 1 is supported)")
    act = _ACT_NAME.get(opts.FusedActivationFunction())
    if act is None:
        raise ConfigError(f"{where}: fused activation {opts.FusedActivationFunction()} is not supported")
    op.options = {"stride": int(opts.StrideH()), "padding": "SAME" if opts.Padding() == T.Padding.SAME else "VALID",
                  "activation": act}
    x, w, y = tensors[op.inputs[0]], tensors[op.inputs[1]], tensors[op.outputs[0]]
    for t, what in ((x, "input"), (w, "filter"), (y, "output")):
        if t.dtype != "int8" or t.scale is None:
            raise ConfigError(f"{where}: the {what} must be a quantized int8 tensor, not {t.dtype}")
    if w.data is None:
        raise ConfigError(f"{where}: the filter must be a constant")
    if np.any(w.zero_point != 0):
        raise ConfigError(f"{where}: filter zero points must be 0 (TFLite int8)")
    if x.scale.size != 1 or y.scale.size != 1:
        raise ConfigError(f"{where}: input and output need one scale per tensor")


def _read_host_options(T, table, op: OpInfo, tensors: list, where: str) -> None:
    """Options and limits of MEAN, SOFTMAX, CONCATENATION and PAD (int8, per-tensor)."""
    ins = [tensors[i] for i in op.inputs]
    y = tensors[op.outputs[0]]
    data = ins if op.kind == "CONCATENATION" else ins[:1]
    for t in data + [y]:
        if t.dtype != "int8" or t.scale is None or t.scale.size != 1:
            raise ConfigError(f"{where}: int8 tensors with one scale each are supported, not {t.name!r} ({t.dtype})")
    if op.kind == "SOFTMAX":
        opts = T.SoftmaxOptions()
        opts.Init(table.Bytes, table.Pos)
        if int(y.zero_point[0]) != -128 or abs(float(y.scale[0]) - 1 / 256) > 1e-3 / 256:
            raise ConfigError(f"{where}: the int8 output must have scale 1/256 and zero point -128 (TFLite requires it)")
        op.options = {"beta": float(np.float32(opts.Beta()))}
        return
    if op.kind == "CONCATENATION":
        opts = T.ConcatenationOptions()
        opts.Init(table.Bytes, table.Pos)
        if opts.FusedActivationFunction() != 0:
            raise ConfigError(f"{where}: a fused activation is not supported")
        if not all(_same_quant(t, y) for t in ins):
            raise ConfigError(f"{where}: every input must have the output's scale and zero point (TFLite's int8 "
                              "kernel requires it)")
        op.options = {"axis": int(opts.Axis()) % len(y.shape)}
        return
    const = ins[1] if len(ins) > 1 else None
    if const is None or const.data is None:
        raise ConfigError(f"{where}: the second input ({'axes' if op.kind == 'MEAN' else 'paddings'}) must be a "
                          "constant")
    if op.kind == "PAD":
        if len(ins) != 2 or not _same_quant(ins[0], y):
            raise ConfigError(f"{where}: input and output quantization differ")
        op.options = {"paddings": np.asarray(const.data, np.int64).reshape(-1, 2)}
        return
    opts = T.ReducerOptions()
    opts.Init(table.Bytes, table.Pos)
    op.options = {"axes": [int(a) % len(ins[0].shape) for a in np.ravel(const.data)],
                  "keep_dims": bool(opts.KeepDims())}


def _read_quantize(op: OpInfo, tensors: list, where: str) -> None:
    """Limits of QUANTIZE (float32 -> int8/uint8, or int8/uint8 -> int8/uint8) and DEQUANTIZE
    (int8/uint8 -> float32), one scale per tensor (TFLite's quantize.cc accepts no other
    output quantization)."""
    a, y = tensors[op.inputs[0]], tensors[op.outputs[0]]
    ints = ("int8", "uint8")
    ok = (a.dtype in ("float32",) + ints and y.dtype in ints) if op.kind == "QUANTIZE" else \
        (a.dtype in ints and y.dtype == "float32")
    if not ok:
        want = "float32, int8 or uint8 to int8 or uint8" if op.kind == "QUANTIZE" else "int8 or uint8 to float32"
        raise ConfigError(f"{where}: {a.dtype} to {y.dtype} is not supported ({want})")
    for t in (a, y):
        if t.dtype in ints and (t.scale is None or t.scale.size != 1):
            raise ConfigError(f"{where}: tensor {t.name!r} needs one scale (per-tensor quantization)")
        if t.dtype in ints and not (np.isfinite(t.scale[0]) and t.scale[0] > 0):
            raise ConfigError(f"{where}: tensor {t.name!r} has scale {float(t.scale[0])!r}, not a positive number")
    if a.data is not None:
        raise ConfigError(f"{where}: a constant input is not supported")


def _same_quant(a: TensorInfo, b: TensorInfo) -> bool:
    if (a.scale is None) != (b.scale is None):
        return False
    return a.scale is None or (np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point))


# ---------------------------------------------------------------------------------------------
# running on the golden models
# ---------------------------------------------------------------------------------------------

def run_golden(graph: Graph, x: np.ndarray, path: str, conv=None) -> dict:
    """Every tensor the graph computes on input ``x`` (int8 of the input shape) with path
    ``path``'s golden models; ``conv(op, fixture) -> y`` replaces the golden convolution of
    each operator that runs on the engine (:func:`on_engine`; the engine runner's hook).
    Returns ``{tensor index: value}``."""
    if path not in F.PATHS:
        raise ConfigError(f"path must be one of {', '.join(F.PATHS)}, not {path!r}")
    x = np.asarray(x)
    inp = graph.tensors[graph.inputs[0]]
    if tuple(x.shape) != inp.shape:
        raise ConfigError(f"the input must have shape {inp.shape}, not {tuple(x.shape)}")
    values = {graph.inputs[0]: as_value(inp, x)}
    for i, t in enumerate(graph.tensors):
        if t.data is not None and t.dtype == "int8":
            values[i] = np.asarray(t.data, np.int64)
    for op in graph.ops:
        if op.kind in SHAPE_OPS:
            continue
        a = values[op.inputs[0]]
        out_shape = graph.tensors[op.outputs[0]].shape
        if op.kind in HOST_OPS:
            y = host_op(graph, op, values, path)
            values[op.outputs[0]] = y
            continue
        elif op.kind == "RESHAPE":
            y = a.reshape(out_shape)
        elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            y = average_pool(a, op.options, graph.tensors[op.inputs[0]], path, kind=op.kind)
        elif op.kind == "ADD":
            t = graph.tensors
            y = add_int8(a, values[op.inputs[1]], t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]],
                         op.options["activation"], path)
        elif not on_engine(op, path):          # FULLY_CONNECTED on the reference path
            y = fc_reference(graph.conv_fixture(op, a)).reshape(out_shape)
        else:
            fx = graph.conv_fixture(op, a)
            y = (F.golden_path(fx, path) if conv is None else conv(op, fx)).reshape(out_shape)
        values[op.outputs[0]] = np.asarray(y).astype(np.int64)
    return values


def as_value(t: TensorInfo, x) -> np.ndarray:
    """``x`` as the value of tensor ``t`` in :func:`run_golden`: int8/uint8 values as int64
    (ConfigError outside the type's range), float32 as float32."""
    x = np.asarray(x)
    if t.dtype == "float32":
        if not np.issubdtype(x.dtype, np.number):
            raise ConfigError(f"tensor {t.name!r} is float32, not {x.dtype}")
        return x.astype(np.float32)
    lo, hi = O.INT_RANGE.get(t.dtype, (-128, 127))
    if not np.issubdtype(x.dtype, np.integer) and x.size and not np.array_equal(x, np.round(x)):
        raise ConfigError(f"tensor {t.name!r} must hold {t.dtype} values")
    if x.size and (x.min() < lo or x.max() > hi):
        raise ConfigError(f"tensor {t.name!r} must hold {t.dtype} values ({lo}..{hi})")
    return x.astype(np.int64)


def as_numpy(t: TensorInfo, v) -> np.ndarray:
    """A value of :func:`run_golden` as the tensor's own NumPy type (what LiteRT takes)."""
    return np.asarray(v).astype({"float32": np.float32, "uint8": np.uint8}.get(t.dtype, np.int8))


def count_differ(got, want) -> int:
    """How many elements differ (float32 compared bit for bit); -1 for a shape mismatch."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return -1
    if got.dtype.kind == "f" or want.dtype.kind == "f":
        return int((got.astype(np.float32).view(np.uint32) != want.astype(np.float32).view(np.uint32)).sum())
    return int((got != want).sum())


#: host operators computed by :func:`host_op` (golden.tflite_ops)
HOST_OPS = ("MEAN", "SOFTMAX", "CONCATENATION", "PAD", "QUANTIZE", "DEQUANTIZE", "MUL", "LOGISTIC", "HARD_SWISH")


def host_op(graph: Graph, op: OpInfo, values: dict, path: str) -> np.ndarray:
    """MEAN, SOFTMAX, CONCATENATION, PAD, QUANTIZE, DEQUANTIZE, MUL, LOGISTIC or HARD_SWISH on
    ``path`` (golden.tflite_ops), inputs from ``values``."""
    t = graph.tensors
    x, xt, yt = values[op.inputs[0]], t[op.inputs[0]], t[op.outputs[0]]
    o = op.options
    if op.kind == "QUANTIZE":
        s_in, z_in = (None, None) if xt.dtype == "float32" else (float(xt.scale[0]), int(xt.zero_point[0]))
        return O.quantize(x, xt.dtype, s_in, z_in, yt.dtype, float(yt.scale[0]), int(yt.zero_point[0]), path)
    if op.kind == "DEQUANTIZE":
        return O.dequantize(x, float(xt.scale[0]), int(xt.zero_point[0]), path)
    if op.kind == "LOGISTIC":
        return O.logistic(x, float(xt.scale[0]), int(xt.zero_point[0]), path)
    if op.kind == "HARD_SWISH":
        return O.hard_swish(x, float(xt.scale[0]), int(xt.zero_point[0]), float(yt.scale[0]), int(yt.zero_point[0]),
                            path)
    if op.kind == "MUL":
        bt = t[op.inputs[1]]
        return O.mul(x, values[op.inputs[1]], float(xt.scale[0]), int(xt.zero_point[0]), float(bt.scale[0]),
                     int(bt.zero_point[0]), float(yt.scale[0]), int(yt.zero_point[0]), o["activation"], path)
    if op.kind == "SOFTMAX":
        return O.softmax(x, float(xt.scale[0]), float(yt.scale[0]), int(yt.zero_point[0]), o["beta"], path)
    if op.kind == "MEAN":
        y = O.mean(x, o["axes"], o["keep_dims"], float(xt.scale[0]), int(xt.zero_point[0]), float(yt.scale[0]),
                   int(yt.zero_point[0]), path)
        return y.reshape(yt.shape)
    if op.kind == "PAD":
        return O.pad(x, o["paddings"], int(yt.zero_point[0]))
    return O.concatenation([values[i] for i in op.inputs], o["axis"])


def single_op_model(graph: Graph, op: OpInfo) -> bytes:
    """Operator ``op`` of ``graph`` alone as a ``.tflite`` model (its input, constants and
    output tensors, the same options): what LiteRT computes for that layer on a given input."""
    keep = list(dict.fromkeys(i for i in op.inputs + op.outputs if i >= 0))
    index = {t: k for k, t in enumerate(keep)}
    tensors = [graph.tensors[t] for t in keep]
    one = OpInfo(0, op.kind, [index.get(i, -1) for i in op.inputs], [index[i] for i in op.outputs], op.options)
    if op.kind == "RESHAPE":
        one.options = {"new_shape": graph.tensors[op.outputs[0]].shape}
    inputs = [index[i] for i in _data_inputs(graph, op)]
    return write_model(Graph(tensors, [one], inputs, [index[op.outputs[0]]]),
                       f"convgen: operator {op.index} ({op.kind}) alone")


def _data_inputs(graph: Graph, op: OpInfo) -> list:
    """The inputs of ``op`` that carry data (not constants): the first one, both of an ADD or MUL, every
    one of a CONCATENATION (a constant operand stays a constant in the one-operator model)."""
    ins = op.inputs[:2] if op.kind in ("ADD", "MUL") else op.inputs if op.kind == "CONCATENATION" else op.inputs[:1]
    return [i for i in ins if graph.tensors[i].data is None]


def run_litert(model: bytes, inputs: list, path: str, *, check_delegated: bool = True) -> np.ndarray:
    """LiteRT on ``path`` with one input array per model input (``tflite_fixtures.run_path``)."""
    return F.run_path(model, list(inputs), path, check_delegated=check_delegated)


def litert_op(graph: Graph, op: OpInfo, values: dict, path: str, *, check_delegated: bool = False) -> np.ndarray:
    """LiteRT's output for ``op`` alone on ``path``, its inputs taken from ``values``."""
    ins = [as_numpy(graph.tensors[i], values[i]) for i in _data_inputs(graph, op)]
    return run_litert(single_op_model(graph, op), ins, path, check_delegated=check_delegated)


def fc_reference(fx: F.ConvFixture) -> np.ndarray:
    """TFLite's reference int8 FULLY_CONNECTED as LiteRT 2.3 computes it (``BUILTIN_REF``),
    measured: ``p = (acc + bias) * M`` with TFLite's ``QuantizeMultiplier`` ``M`` and shift,
    rounded once by ``2**(31 - shift)`` half away from zero, ``+ zero point``, clamped. (The
    reference CONV_2D rounds twice, gemmlowp-style: ``tflite``.) ``fx``: the layer as a 1x1
    convolution (:meth:`Graph.conv_fixture`)."""
    from .quant import wrap32

    p = F.path_params(fx, "ref")
    v = wrap32(F.accumulators(fx) + p.bias)
    t = 31 - p.shift
    prod = v * p.multiplier
    q = (np.abs(prod) + (np.int64(1) << (t - 1))) >> t
    y = np.where(prod < 0, -q, q)
    return np.clip(y + p.zero_point, p.act_min, p.act_max)


def add_int8(a, b, ta: TensorInfo, tb: TensorInfo, to: TensorInfo, activation: str, path: str) -> np.ndarray:
    """int8 ADD of two tensors (same shape, or broadcasting NumPy's way) as path ``path``
    computes it (measured against LiteRT 2.3 on designed ties and random data):

    - ``ref``: TFLite's ``reference_integer_ops::Add`` with ``add.cc``'s parameters:
      ``left_shift`` 20, each input ``(q - zp) << 20`` scaled by ``s_i / (2 max(s_a, s_b))``
      and the sum by ``2 max(s_a, s_b) / (2**20 s_out)``, each a QuantizeMultiplier multiplier
      applied as SRDHM then RoundingDivideByPOT (in double for the real multipliers);
    - ``xnnpack``: XNNPACK's qs8 add (``xnn_init_qs8_add_minmax_scalar_params``,
      ``xnn_qs8_quantize_add``): ``a_os = s_a / s_out``, ``b_os`` in float32;
      ``shift = 20 - exponent(max(a_os, b_os))``; multipliers ``lrintf(os * 2**shift)``;
      ``(bias + a*a_mult + b*b_mult) >> shift`` with ``bias = 2**(shift-1) - a_mult*zp_a -
      b_mult*zp_b`` (ties up), ``+ zp_out``;

    - ``opt``: TFLite's ``optimized_integer_ops::AddElementwiseInt8`` over the flattened
      tensor: whole blocks of 16 elements take its NEON code (NEON_2_SSE on x86), which folds
      each input's shift into the left shift, ``SRDHM((q - zp) << (20 + shift_i), M_i)``
      (exact where the reference rounds a second time), then the reference output stage, the
      result narrowed to int16 (``vmovn_s32``: a wrap), the zero point added in int16 and
      saturated to int8; the last ``size mod 16`` elements take the ``ref`` formula.
      Broadcasting (``BroadcastAddDispatch``, tflite/kernels/internal/optimized/integer_ops/add.h;
      ``ProcessBroadcastShapes``: :func:`golden.tflite_ops.broadcast_category`): a generic
      broadcast runs the reference formula; a five-fold one with an inner run ``y4 > 1`` runs
      ``AddElementwiseInt8`` on each run of ``y4`` output elements (NEON blocks of 16 from
      the start of each run, the reference formula on its last ``y4 mod 16``); with ``y4 == 1``
      ``AddScalarBroadcast`` on each run of ``y3``: NEON blocks of 8 whose inputs are scaled
      ``SRDHM((q - zp) << 20, M_i)`` then shifted right **without rounding** (``vshlq_s32``
      by a negative amount), the sum as before; the last ``y3 mod 8`` the reference formula;

    then the fused activation's clamp, bounds derived the path's way. ``ref`` broadcasts with
    ``BroadcastAdd6DSlow`` (the reference formula per element), XNNPACK per element."""
    from .quant import rounding_divide_by_pot, srdhm

    a0, b0 = np.shape(a), np.shape(b)
    a, b = (np.asarray(v, dtype=np.int64) for v in np.broadcast_arrays(a, b))
    sa, sb, so = (float(np.float32(t.scale[0])) for t in (ta, tb, to))
    za, zb, zo = (int(t.zero_point[0]) for t in (ta, tb, to))
    f_min, f_max = F.ACTIVATIONS[activation]
    if path == "xnnpack":
        aos, bos = np.float32(np.float32(sa) / np.float32(so)), np.float32(np.float32(sb) / np.float32(so))
        exponent = int((max(aos, bos).view(np.uint32) >> 23) & 0xFF) - 127
        shift = 20 - exponent
        am = int(np.rint(np.float64(aos) * 2.0 ** shift))
        bm = int(np.rint(np.float64(bos) * 2.0 ** shift))
        acc = ((1 << (shift - 1)) - am * za - bm * zb + a * am + b * bm) >> shift
        lo, hi = xnnpack_activation_bounds(f_min, f_max, so, zo)
        return np.clip(acc + zo, lo, hi)
    left = 20
    twice = 2 * max(sa, sb)
    (ma, ea), (mb, eb), (mo, eo) = (quantize_multiplier(r) for r in (sa / twice, sb / twice,
                                                                       twice / ((1 << left) * so)))
    xa = rounding_divide_by_pot(srdhm((a - za) << left, ma), -ea)
    xb = rounding_divide_by_pot(srdhm((b - zb) << left, mb), -eb)
    y = rounding_divide_by_pot(srdhm(xa + xb, mo), -eo) + zo
    lo, hi = tflite_activation_bounds(f_min, f_max, so, zo)
    y = np.clip(y, lo, hi)
    if path == "opt":
        def wrap16(v):
            return ((v + (1 << 15)) & 0xFFFF) - (1 << 15)

        va = srdhm((a - za) << (left + ea), ma)
        vb = srdhm((b - zb) << (left + eb), mb)
        vs = rounding_divide_by_pot(srdhm(va + vb, mo), -eo)
        vy = np.clip(np.clip(wrap16(wrap16(vs) + zo), -128, 127), lo, hi)
        idx = np.arange(a.size).reshape(a.shape)
        category, fold = O.broadcast_category(a0, b0)
        if category == "none":
            y = np.where(idx < (a.size // 16) * 16, vy, y)
        elif category != "generic" and fold[4] > 1:
            run = idx % fold[4]
            y = np.where(run < (fold[4] // 16) * 16, vy, y)
        elif category != "generic":
            sa_ = srdhm((a - za) << left, ma) >> -ea
            sb_ = srdhm((b - zb) << left, mb) >> -eb
            ss = rounding_divide_by_pot(srdhm(sa_ + sb_, mo), -eo)
            sy = np.clip(np.clip(wrap16(wrap16(ss) + zo), -128, 127), lo, hi)
            run = idx % fold[3]
            y = np.where(run < (fold[3] // 8) * 8, sy, y)
    return y


def average_pool(x: np.ndarray, options: dict, t: TensorInfo, path: str, *,
                 kind: str = "AVERAGE_POOL_2D") -> np.ndarray:
    """int8 AVERAGE_POOL_2D (input and output quantization equal) as path ``path`` computes
    it: the sum of the window's values (padding excluded), divided by the count rounding half
    away from zero (TFLite's ``reference_integer_ops::AveragePool``), then clamped to the fused
    activation's bounds. ``kind="MAX_POOL_2D"``: the window's maximum (padding excluded), then
    the clamp."""
    x = np.asarray(x, dtype=np.int64)
    _, h, w, c = x.shape
    (sh, sw), (fh, fw) = options["stride"], options["filter"]
    if options["padding"] == "SAME":
        oh, pt, _ = F._pads(h, fh, sh, "SAME")
        ow, pl, _ = F._pads(w, fw, sw, "SAME")
    else:
        oh, ow, pt, pl = (h - fh) // sh + 1, (w - fw) // sw + 1, 0, 0
    y = np.zeros((1, oh, ow, c), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - pt, j * sw - pl
            win = x[0, max(r0, 0):min(r0 + fh, h), max(c0, 0):min(c0 + fw, w)]
            if kind == "MAX_POOL_2D":
                y[0, i, j] = win.max(axis=(0, 1))
                continue
            n = win.shape[0] * win.shape[1]
            acc = win.sum(axis=(0, 1))
            q = (np.abs(acc) + n // 2) // n
            y[0, i, j] = np.where(acc >= 0, q, -q)
    lo, hi = _activation_bounds(options["activation"], t, path)
    return np.clip(y, lo, hi)


def _activation_bounds(activation: str, t: TensorInfo, path: str) -> tuple[int, int]:
    f_min, f_max = F.ACTIVATIONS[activation]
    bounds = xnnpack_activation_bounds if path == "xnnpack" else tflite_activation_bounds
    return bounds(f_min, f_max, float(t.scale[0]), int(t.zero_point[0]))


def quant_conv_for(fx: F.ConvFixture, path: str):
    """The fixture's layer as the engine runs it on path ``path``
    (:class:`convgen.golden.engine.QuantConv`, NHWC): TFLite's quantization, bias, and the
    requantization parameters that path derives (``tflite_fixtures.path_params``: its clamp
    bounds and, on ``opt``, the depthwise ``round_away`` channels), with the engine's 9-bit
    parameter output type."""
    from .engine import quant_conv_from_arrays

    arrays = conv_arrays(fx, path)
    del arrays["act_min"], arrays["act_max"]
    q = quant_conv_from_arrays(arrays, rounding=F.PATH_MODE[path], layout="nhwc")
    p = F.path_params(fx, path)
    return replace(q, params=replace(p, out_width=9))


def conv_arrays(fx: F.ConvFixture, path: str) -> dict:
    """The fixture as ``convgen run conv --layout nhwc`` arrays: x NHWC, w OHWI (depthwise
    ``[C, kh, kw, 1]``), TFLite's quantization and bias, SAME/VALID as explicit pads, and the
    clamp bounds path ``path`` derives (``act_min``, ``act_max``)."""
    p = F.path_params(fx, path)
    kh, kw = fx.w.shape[1:3]
    _, pt, pb = F._pads(fx.x.shape[1], kh, fx.stride, fx.padding)
    _, pl, pr = F._pads(fx.x.shape[2], kw, fx.stride, fx.padding)
    w = fx.w if fx.op == "conv" else fx.w.transpose(3, 1, 2, 0)      # depthwise: [C, kh, kw, 1]
    return {"x": fx.x.astype(np.int8), "w": w.astype(np.int8), "B": fx.bias.astype(np.int32),
            "x_scale": np.float32(fx.in_scale), "x_zero_point": np.int8(fx.in_zp),
            "w_scale": fx.w_scale.astype(np.float32), "w_zero_point": np.int8(0),
            "y_scale": np.float32(fx.out_scale), "y_zero_point": np.int8(fx.out_zp),
            "strides": np.array([fx.stride, fx.stride]), "pads": np.array([pt, pl, pb, pr]),
            "group": np.array(1 if fx.op == "conv" else fx.channels),
            "act_min": np.int64(p.act_min[0]), "act_max": np.int64(p.act_max[0])}


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------

#: operator versions written (int8 per-channel convolutions need version 3; FULLY_CONNECTED int8
#: version 4, AVERAGE_POOL_2D int8 version 2)
_OP_VERSION = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2,
               "ADD": 2, "MEAN": 2, "SOFTMAX": 2, "CONCATENATION": 2, "PAD": 2, "QUANTIZE": 2, "DEQUANTIZE": 2,
               "MUL": 2, "LOGISTIC": 2, "HARD_SWISH": 1}
#: operators written without builtin options
OPTIONLESS_OPS = ("QUANTIZE", "DEQUANTIZE", "LOGISTIC", "HARD_SWISH")


def write_model(graph: Graph, description: str = "convgen tflite_net") -> bytes:
    """``graph`` as a ``.tflite`` flatbuffer (schema version 3). Tensors with ``data`` get a
    buffer of their own; operators take their options from ``OpInfo.options`` (``stride``,
    ``padding``, ``activation``; RESHAPE: ``new_shape``)."""
    import flatbuffers
    import tflite as T

    b = flatbuffers.Builder(1 << 16)

    def vector(start, values, prepend):
        start(b, len(values))
        for v in reversed(list(values)):
            prepend(v)
        return b.EndVector()

    def buffer(data: bytes | None):
        if data is None:
            T.BufferStart(b)
            return T.BufferEnd(b)
        b.StartVector(1, len(data), 16)
        b.head = b.head - len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        vec = b.EndVector()
        T.BufferStart(b)
        T.BufferAddData(b, vec)
        return T.BufferEnd(b)

    buffers = [buffer(None)]
    tensor_offsets = []
    for t in graph.tensors:
        buf = 0
        if t.data is not None:
            dt = {"int8": np.int8, "int32": "<i4", "uint8": np.uint8, "float32": "<f4"}[t.dtype]
            buffers.append(buffer(np.ascontiguousarray(t.data, dtype=dt).tobytes()))
            buf = len(buffers) - 1
        q = None
        if t.scale is not None:
            sv = vector(T.QuantizationParametersStartScaleVector, [float(s) for s in t.scale], b.PrependFloat32)
            zv = vector(T.QuantizationParametersStartZeroPointVector, [int(z) for z in t.zero_point], b.PrependInt64)
            T.QuantizationParametersStart(b)
            T.QuantizationParametersAddScale(b, sv)
            T.QuantizationParametersAddZeroPoint(b, zv)
            T.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
            q = T.QuantizationParametersEnd(b)
        nm = b.CreateString(t.name)
        sh = vector(T.TensorStartShapeVector, list(t.shape), b.PrependInt32)
        T.TensorStart(b)
        T.TensorAddShape(b, sh)
        T.TensorAddType(b, _TYPES[t.dtype])
        T.TensorAddBuffer(b, buf)
        T.TensorAddName(b, nm)
        if q is not None:
            T.TensorAddQuantization(b, q)
        tensor_offsets.append(T.TensorEnd(b))

    kinds = sorted({op.kind for op in graph.ops})
    code_of = {k: getattr(T.BuiltinOperator, k) for k in kinds}
    operators = []
    for op in graph.ops:
        o = op.options
        if op.kind == "RESHAPE":
            ns = vector(T.ReshapeOptionsStartNewShapeVector, list(o["new_shape"]), b.PrependInt32)
            T.ReshapeOptionsStart(b)
            T.ReshapeOptionsAddNewShape(b, ns)
            opts, otype = T.ReshapeOptionsEnd(b), T.BuiltinOptions.ReshapeOptions
        elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            T.Pool2DOptionsStart(b)
            T.Pool2DOptionsAddPadding(b, T.Padding.SAME if o["padding"] == "SAME" else T.Padding.VALID)
            T.Pool2DOptionsAddStrideH(b, o["stride"][0])
            T.Pool2DOptionsAddStrideW(b, o["stride"][1])
            T.Pool2DOptionsAddFilterHeight(b, o["filter"][0])
            T.Pool2DOptionsAddFilterWidth(b, o["filter"][1])
            T.Pool2DOptionsAddFusedActivationFunction(b, _ACT_CODE[o["activation"]])
            opts, otype = T.Pool2DOptionsEnd(b), T.BuiltinOptions.Pool2DOptions
        elif op.kind == "ADD":
            T.AddOptionsStart(b)
            T.AddOptionsAddFusedActivationFunction(b, _ACT_CODE[o["activation"]])
            opts, otype = T.AddOptionsEnd(b), T.BuiltinOptions.AddOptions
        elif op.kind == "SOFTMAX":
            T.SoftmaxOptionsStart(b)
            T.SoftmaxOptionsAddBeta(b, o.get("beta", 1.0))
            opts, otype = T.SoftmaxOptionsEnd(b), T.BuiltinOptions.SoftmaxOptions
        elif op.kind == "MEAN":
            T.ReducerOptionsStart(b)
            T.ReducerOptionsAddKeepDims(b, bool(o["keep_dims"]))
            opts, otype = T.ReducerOptionsEnd(b), T.BuiltinOptions.ReducerOptions
        elif op.kind == "CONCATENATION":
            T.ConcatenationOptionsStart(b)
            T.ConcatenationOptionsAddAxis(b, int(o["axis"]))
            opts, otype = T.ConcatenationOptionsEnd(b), T.BuiltinOptions.ConcatenationOptions
        elif op.kind == "PAD":
            T.PadOptionsStart(b)
            opts, otype = T.PadOptionsEnd(b), T.BuiltinOptions.PadOptions
        elif op.kind == "MUL":
            T.MulOptionsStart(b)
            T.MulOptionsAddFusedActivationFunction(b, _ACT_CODE[o.get("activation", "none")])
            opts, otype = T.MulOptionsEnd(b), T.BuiltinOptions.MulOptions
        elif op.kind in OPTIONLESS_OPS:
            opts, otype = None, None
        elif op.kind == "FULLY_CONNECTED":
            T.FullyConnectedOptionsStart(b)
            T.FullyConnectedOptionsAddFusedActivationFunction(b, _ACT_CODE[o["activation"]])
            opts, otype = T.FullyConnectedOptionsEnd(b), T.BuiltinOptions.FullyConnectedOptions
        else:
            pad = T.Padding.SAME if o["padding"] == "SAME" else T.Padding.VALID
            if op.kind == "CONV_2D":
                T.Conv2DOptionsStart(b)
                T.Conv2DOptionsAddPadding(b, pad)
                T.Conv2DOptionsAddStrideW(b, o["stride"])
                T.Conv2DOptionsAddStrideH(b, o["stride"])
                T.Conv2DOptionsAddFusedActivationFunction(b, _ACT_CODE[o["activation"]])
                T.Conv2DOptionsAddDilationWFactor(b, 1)
                T.Conv2DOptionsAddDilationHFactor(b, 1)
                opts, otype = T.Conv2DOptionsEnd(b), T.BuiltinOptions.Conv2DOptions
            else:
                T.DepthwiseConv2DOptionsStart(b)
                T.DepthwiseConv2DOptionsAddPadding(b, pad)
                T.DepthwiseConv2DOptionsAddStrideW(b, o["stride"])
                T.DepthwiseConv2DOptionsAddStrideH(b, o["stride"])
                T.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
                T.DepthwiseConv2DOptionsAddFusedActivationFunction(b, _ACT_CODE[o["activation"]])
                T.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
                T.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
                opts, otype = T.DepthwiseConv2DOptionsEnd(b), T.BuiltinOptions.DepthwiseConv2DOptions
        ins = vector(T.OperatorStartInputsVector, op.inputs, b.PrependInt32)
        outs = vector(T.OperatorStartOutputsVector, op.outputs, b.PrependInt32)
        T.OperatorStart(b)
        T.OperatorAddOpcodeIndex(b, kinds.index(op.kind))
        T.OperatorAddInputs(b, ins)
        T.OperatorAddOutputs(b, outs)
        if otype is not None:
            T.OperatorAddBuiltinOptionsType(b, otype)
            T.OperatorAddBuiltinOptions(b, opts)
        operators.append(T.OperatorEnd(b))

    tv = vector(T.SubGraphStartTensorsVector, tensor_offsets, b.PrependUOffsetTRelative)
    iv = vector(T.SubGraphStartInputsVector, graph.inputs, b.PrependInt32)
    ov = vector(T.SubGraphStartOutputsVector, graph.outputs, b.PrependInt32)
    opv = vector(T.SubGraphStartOperatorsVector, operators, b.PrependUOffsetTRelative)
    sg_name = b.CreateString("main")
    T.SubGraphStart(b)
    T.SubGraphAddTensors(b, tv)
    T.SubGraphAddInputs(b, iv)
    T.SubGraphAddOutputs(b, ov)
    T.SubGraphAddOperators(b, opv)
    T.SubGraphAddName(b, sg_name)
    subgraph = T.SubGraphEnd(b)
    codes = []
    for k in kinds:
        T.OperatorCodeStart(b)
        T.OperatorCodeAddDeprecatedBuiltinCode(b, min(code_of[k], 127))
        T.OperatorCodeAddBuiltinCode(b, code_of[k])
        T.OperatorCodeAddVersion(b, _OP_VERSION.get(k, 1))
        codes.append(T.OperatorCodeEnd(b))
    bv = vector(T.ModelStartBuffersVector, buffers, b.PrependUOffsetTRelative)
    sv = vector(T.ModelStartSubgraphsVector, [subgraph], b.PrependUOffsetTRelative)
    cv = vector(T.ModelStartOperatorCodesVector, codes, b.PrependUOffsetTRelative)
    desc = b.CreateString(description)
    T.ModelStart(b)
    T.ModelAddVersion(b, 3)
    T.ModelAddOperatorCodes(b, cv)
    T.ModelAddSubgraphs(b, sv)
    T.ModelAddDescription(b, desc)
    T.ModelAddBuffers(b, bv)
    b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# ---------------------------------------------------------------------------------------------
# the MobileNet-style generator
# ---------------------------------------------------------------------------------------------

#: (op, output channels, kernel, stride, activation) of :func:`mobilenet`; "avgpool" is the
#: global AVERAGE_POOL_2D. The head is TF-slim MobileNetV1's: AvgPool_1a, the logits as a 1x1
#: convolution (Conv2d_1c_1x1), then the spatial squeeze (a RESHAPE here).
MOBILENET_LAYERS = (
    ("conv", 8, 3, 2, "relu6"),        # stem
    ("depthwise", 8, 3, 1, "relu6"),
    ("conv", 16, 1, 1, "relu6"),
    ("depthwise", 16, 3, 2, "relu6"),
    ("conv", 20, 1, 1, "relu6"),
    ("depthwise", 20, 3, 1, "relu6"),  # 20 channels: 16 vector + 4 scalar ones in TFLite's opt kernel
    ("conv", 32, 1, 1, "relu6"),
    ("avgpool", 0, 0, 0, "none"),
    ("conv", 10, 1, 1, "none"),        # the logits as a 1x1 convolution
)


class _Builder:
    """Appends tensors and operators to a graph and keeps the reference path's golden value of
    every tensor, from which each new layer's output quantization is calibrated."""

    def __init__(self, rng, x: np.ndarray):
        self.rng = rng
        self.tensors = [TensorInfo("input", tuple(x.shape), "int8", np.array([0.03], np.float32), np.array([-5]))]
        self.ops: list = []
        self.values = {0: x.astype(np.int64)}

    def _out(self, name, shape, scale, zp) -> int:
        self.tensors.append(TensorInfo(name, tuple(shape), "int8", np.array([scale], np.float32), np.array([zp])))
        return len(self.tensors) - 1

    def _quant(self, real: np.ndarray, act: str) -> tuple[float, int]:
        if act == "relu6":
            hi = min(6.0, float(real.max())) * self.rng.uniform(1.0, 1.1)
            return float(np.float32(hi / 255.0)), -128 + int(self.rng.integers(0, 3))
        return float(np.float32(float(np.abs(real).max()) / 127.0)), int(self.rng.integers(-3, 4))

    def conv(self, src: int, kind: str, cout: int, k: int, stride: int, act: str, *, fc: bool = False,
             padding: str = "SAME") -> int:
        """A CONV_2D, DEPTHWISE_CONV_2D or (``fc``: on a ``[1, C]`` tensor) FULLY_CONNECTED."""
        rng, t = self.rng, self.tensors[src]
        cin = t.shape[-1]
        if kind == "depthwise":
            cout = cin
            w = np.clip(np.round(rng.normal(0, 40, (1, k, k, cin))), -127, 127).astype(np.int8)
            amax = np.abs(w).reshape(-1, cin).max(axis=0)
        else:
            w = np.clip(np.round(rng.normal(0, 40, (cout, k, k, cin))), -127, 127).astype(np.int8)
            amax = np.abs(w).reshape(cout, -1).max(axis=1)
        w_scale = (np.maximum(amax, 1) / 127.0 * rng.uniform(0.002, 0.01)).astype(np.float32)
        in_scale = float(t.scale[0])
        bias = np.round(rng.normal(0, 0.05, cout) / (in_scale * w_scale.astype(np.float64))).astype(np.int32)
        x = self.values[src].reshape(1, 1, 1, cin) if fc else self.values[src]
        probe = F.ConvFixture("probe", kind, x.astype(np.int8), w, bias, in_scale, int(t.zero_point[0]), w_scale,
                              1.0, 0, "none", stride, padding)
        real = (F.accumulators(probe) + bias) * (in_scale * w_scale.astype(np.float64))
        out_scale, out_zp = self._quant(real, act)
        i = len(self.ops)
        if fc:
            w = w.reshape(cout, cin)
        self.tensors.append(TensorInfo(f"op{i}_filter", tuple(w.shape), "int8", w_scale, np.zeros(cout, np.int64),
                                       0 if kind == "conv" else 3, w))
        bias_scale = (np.float32(in_scale) * w_scale).astype(np.float32)
        self.tensors.append(TensorInfo(f"op{i}_bias", (cout,), "int32", bias_scale, np.zeros(cout, np.int64), 0, bias))
        hw = [F._pads(t.shape[d], k, stride, padding)[0] for d in (1, 2)] if not fc else None
        shape = (1, cout) if fc else (1, hw[0], hw[1], cout)
        out = self._out(f"op{i}_out", shape, out_scale, out_zp)
        kind_name = "FULLY_CONNECTED" if fc else "CONV_2D" if kind == "conv" else "DEPTHWISE_CONV_2D"
        opts = {"activation": act} if fc else {"stride": stride, "padding": padding, "activation": act}
        op = OpInfo(i, kind_name, [src, out - 2, out - 1], [out], opts)
        self.ops.append(op)
        g = Graph(self.tensors, self.ops, [0], [out])
        self.values[out] = F.golden_path(g.conv_fixture(op, self.values[src]), "ref").reshape(shape)
        return out

    def avgpool(self, src: int) -> int:
        t = self.tensors[src]
        _, h, w, c = t.shape
        out = self._out(f"op{len(self.ops)}_out", (1, 1, 1, c), float(t.scale[0]), int(t.zero_point[0]))
        op = OpInfo(len(self.ops), "AVERAGE_POOL_2D", [src], [out],
                    {"stride": (1, 1), "filter": (h, w), "padding": "VALID", "activation": "none"})
        self.ops.append(op)
        self.values[out] = average_pool(self.values[src], op.options, t, "ref")
        return out

    def add(self, a: int, b: int, act: str = "none") -> int:
        ta, tb = self.tensors[a], self.tensors[b]
        real = ((self.values[a] - int(ta.zero_point[0])) * float(ta.scale[0])
                + (self.values[b] - int(tb.zero_point[0])) * float(tb.scale[0]))
        scale, zp = self._quant(real, act)
        out = self._out(f"op{len(self.ops)}_out", ta.shape, scale, zp)
        op = OpInfo(len(self.ops), "ADD", [a, b], [out], {"activation": act})
        self.ops.append(op)
        self.values[out] = add_int8(self.values[a], self.values[b], ta, tb, self.tensors[out], act, "ref")
        return out

    def pad(self, src: int, paddings) -> int:
        """A PAD with the input's quantization (Keras' ZeroPadding2D)."""
        t = self.tensors[src]
        paddings = np.asarray(paddings, np.int64)
        self.tensors.append(TensorInfo(f"op{len(self.ops)}_paddings", paddings.shape, "int32",
                                       data=paddings.astype(np.int32)))
        shape = tuple(int(d + a + b) for d, (a, b) in zip(t.shape, paddings))
        out = self._out(f"op{len(self.ops)}_out", shape, float(t.scale[0]), int(t.zero_point[0]))
        op = OpInfo(len(self.ops), "PAD", [src, out - 1], [out], {"paddings": paddings})
        self.ops.append(op)
        self.values[out] = O.pad(self.values[src], paddings, int(t.zero_point[0]))
        return out

    def mean(self, src: int) -> int:
        """A spatial MEAN (axes 1, 2, keep_dims: TF-slim's global pool) with its own, calibrated
        output quantization."""
        t = self.tensors[src]
        real = (self.values[src].mean(axis=(1, 2), keepdims=True) - int(t.zero_point[0])) * float(t.scale[0])
        scale, zp = self._quant(real, "none")
        self.tensors.append(TensorInfo(f"op{len(self.ops)}_axes", (2,), "int32", data=np.array([1, 2], np.int32)))
        out = self._out(f"op{len(self.ops)}_out", (1, 1, 1, t.shape[-1]), scale, zp)
        op = OpInfo(len(self.ops), "MEAN", [src, out - 1], [out], {"axes": [1, 2], "keep_dims": True})
        self.ops.append(op)
        self.values[out] = O.mean(self.values[src], [1, 2], True, float(t.scale[0]), int(t.zero_point[0]), scale, zp,
                                  "ref")
        return out

    def softmax(self, src: int) -> int:
        t = self.tensors[src]
        out = self._out(f"op{len(self.ops)}_out", t.shape, float(np.float32(1 / 256)), -128)
        self.ops.append(OpInfo(len(self.ops), "SOFTMAX", [src], [out], {"beta": 1.0}))
        self.values[out] = O.softmax(self.values[src], float(t.scale[0]), 1 / 256, -128, 1.0, "ref")
        return out

    def _real(self, src: int) -> np.ndarray:
        t = self.tensors[src]
        return (self.values[src] - int(t.zero_point[0])) * float(t.scale[0])

    def hard_swish(self, src: int) -> int:
        """A HARD_SWISH with its output quantization calibrated on the golden value (range
        ``[min, max]`` of ``x relu6(x + 3) / 6`` over the 256 steps)."""
        t, r = self.tensors[src], self._real(src)
        y = r * np.clip(r + 3, 0, 6) / 6
        lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 1e-3)
        scale = float(np.float32((hi - lo) / 255))
        out = self._out(f"op{len(self.ops)}_out", t.shape, scale, int(np.clip(-128 - round(lo / scale), -128, 127)))
        self.ops.append(OpInfo(len(self.ops), "HARD_SWISH", [src], [out]))
        to = self.tensors[out]
        self.values[out] = O.hard_swish(self.values[src], float(t.scale[0]), int(t.zero_point[0]),
                                        float(to.scale[0]), int(to.zero_point[0]), "ref")
        return out

    def logistic(self, src: int) -> int:
        t = self.tensors[src]
        out = self._out(f"op{len(self.ops)}_out", t.shape, 1 / 256, -128)
        self.ops.append(OpInfo(len(self.ops), "LOGISTIC", [src], [out]))
        self.values[out] = O.logistic(self.values[src], float(t.scale[0]), int(t.zero_point[0]), "ref")
        return out

    def mul(self, a: int, b: int) -> int:
        """A MUL (``b`` may broadcast), output quantization calibrated on the product."""
        ta, tb = self.tensors[a], self.tensors[b]
        scale, zp = self._quant(self._real(a) * self._real(b), "none")
        out = self._out(f"op{len(self.ops)}_out", np.broadcast_shapes(ta.shape, tb.shape), scale, zp)
        self.ops.append(OpInfo(len(self.ops), "MUL", [a, b], [out], {"activation": "none"}))
        self.values[out] = O.mul(self.values[a], self.values[b], float(ta.scale[0]), int(ta.zero_point[0]),
                                 float(tb.scale[0]), int(tb.zero_point[0]), scale, zp, "none", "ref")
        return out

    def reshape(self, src: int, shape: tuple) -> int:
        t = self.tensors[src]
        self.tensors.append(TensorInfo(f"op{len(self.ops)}_shape", (len(shape),), "int32",
                                       data=np.array(shape, np.int32)))
        out = len(self.tensors)
        self.tensors.append(TensorInfo(f"op{len(self.ops)}_out", tuple(shape), "int8", t.scale, t.zero_point))
        self.ops.append(OpInfo(len(self.ops), "RESHAPE", [src, out - 1], [out], {"new_shape": tuple(shape)}))
        self.values[out] = self.values[src].reshape(shape)
        return out

    def model(self, out: int, description: str) -> bytes:
        graph = Graph(self.tensors, self.ops, [0], [out])
        if not all(math.isfinite(float(t.scale[0])) and t.scale[0] > 0 for t in self.tensors if t.scale is not None):
            raise ConfigError("the generator produced a scale that is not a positive finite number")
        return write_model(graph, description)


def mobilenet(seed: int = 0, size: int = 16, head: str = "conv") -> tuple[bytes, np.ndarray]:
    """A deterministic MobileNetV1-style int8 model and an int8 input for it.

    Weights are seeded random int8 with per-channel scales proportional to ``max|w| / 127``;
    biases are random around zero; every convolution's output scale and zero point are
    calibrated on the generated input with the reference path's golden model (ReLU6 layers:
    the range ``[0, min(6, max)]`` over the 256 int8 steps, zero point -128 plus a small seeded
    offset, so the ReLU6 bound is not always 127; the logits: a symmetric range). The global
    average pool keeps its input's quantization, as TFLite requires. Layers:
    :data:`MOBILENET_LAYERS`, then a RESHAPE to ``[1, 10]``. ``head="fc"``: the logits as a
    RESHAPE to ``[1, C]`` and a FULLY_CONNECTED instead (Keras' MobileNet head)."""
    if head not in ("conv", "fc"):
        raise ConfigError(f"head must be 'conv' or 'fc', not {head!r}")
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, size, size, 3)).astype(np.int8)
    b = _Builder(rng, x)
    cur = 0
    for i, (kind, cout, k, stride, act) in enumerate(MOBILENET_LAYERS):
        if kind == "avgpool":
            cur = b.avgpool(cur)
        elif head == "fc" and i == len(MOBILENET_LAYERS) - 1:
            cur = b.conv(b.reshape(cur, (1, b.tensors[cur].shape[-1])), kind, cout, k, stride, act, fc=True)
        else:
            cur = b.conv(cur, kind, cout, k, stride, act)
    if head == "conv":
        cur = b.reshape(cur, (1, int(np.prod(b.tensors[cur].shape))))
    what = "FULLY_CONNECTED head" if head == "fc" else "TF-slim head"
    return b.model(cur, f"convgen MobileNetV1-style int8 model ({what}), seed {seed}"), x


#: MobileNetV2 inverted residual blocks of :func:`mobilenet_v2`: (expansion, output channels,
#: stride); a block with stride 1 and as many output as input channels adds its input back
MOBILENET_V2_BLOCKS = ((3, 8, 1), (3, 12, 2), (3, 12, 1))


def mobilenet_v2(seed: int = 0, size: int = 16, head: str = "pool") -> tuple[bytes, np.ndarray]:
    """A deterministic MobileNetV2-style int8 model and an int8 input for it: a 3x3 stride-2
    stem (8 channels, ReLU6), inverted residual blocks (:data:`MOBILENET_V2_BLOCKS`: a 1x1
    expansion with ReLU6, a 3x3 depthwise with ReLU6, a linear 1x1 projection, and an ADD of the
    block's input where the shapes allow; the last block's depthwise layer has 36 channels, 4 of
    them scalar in TFLite's optimized kernel), a 1x1 convolution to 32 channels with ReLU6, a
    global AVERAGE_POOL_2D, 1x1 logits and a RESHAPE to ``[1, 10]``. Calibrated as
    :func:`mobilenet`.

    ``head="keras"``: what Keras' MobileNetV2 converts to: every stride-2 layer (the stem, the
    stride-2 depthwise) as an explicit PAD (``correct_pad``: one row and column at the bottom
    and right of an even-sized input) and a VALID convolution; the global pool as a MEAN over
    axes 1 and 2 with keep_dims and its own output quantization; after the logits and the
    RESHAPE a SOFTMAX (output scale 1/256, zero point -128)."""
    if head not in ("pool", "keras"):
        raise ConfigError(f"head must be 'pool' or 'keras', not {head!r}")
    keras = head == "keras"
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, size, size, 3)).astype(np.int8)
    b = _Builder(rng, x)

    def strided(src, kind, cout, act):
        if not keras:
            return b.conv(src, kind, cout, 3, 2, act)
        h, w = b.tensors[src].shape[1:3]
        padded = b.pad(src, [[0, 0], [1 - h % 2, 1], [1 - w % 2, 1], [0, 0]])
        return b.conv(padded, kind, cout, 3, 2, act, padding="VALID")

    cur = strided(0, "conv", 8, "relu6")
    for expand, cout, stride in MOBILENET_V2_BLOCKS:
        cin = b.tensors[cur].shape[-1]
        h = b.conv(cur, "conv", cin * expand, 1, 1, "relu6")
        h = strided(h, "depthwise", 0, "relu6") if stride == 2 else b.conv(h, "depthwise", 0, 3, stride, "relu6")
        h = b.conv(h, "conv", cout, 1, 1, "none")
        cur = b.add(cur, h) if stride == 1 and cin == cout else h
    cur = b.conv(cur, "conv", 32, 1, 1, "relu6")
    cur = b.mean(cur) if keras else b.avgpool(cur)
    cur = b.conv(cur, "conv", 10, 1, 1, "none")
    cur = b.reshape(cur, (1, 10))
    if keras:
        cur = b.softmax(cur)
    what = "Keras-style: PAD, MEAN, SOFTMAX" if keras else "pooled head"
    return b.model(cur, f"convgen MobileNetV2-style int8 model ({what}), seed {seed}"), x


def with_io(model: bytes, x: np.ndarray, io: str = "float32", seed: int = 0) -> tuple[bytes, np.ndarray]:
    """An int8 model (one input, one output) with the boundary a converter writes for other I/O
    types, and an input for it:

    - ``io="float32"`` (``TFLiteConverter`` with float ``inference_input_type`` /
      ``inference_output_type``, the default for a quantized model): a float32 input, a QUANTIZE
      to the int8 input tensor, the int8 graph, a DEQUANTIZE of its output to float32; the input
      is ``x``'s values dequantized plus seeded noise of up to half a step, and a few values two
      steps beyond the int8 range (QUANTIZE saturates them);
    - ``io="uint8"`` (the uint8 I/O of older toolchains): a uint8 input, a QUANTIZE (requantize)
      to int8, the graph, a QUANTIZE of its output back to uint8, each uint8 tensor with the
      int8 one's scale and zero point + 128; the input is ``x + 128``.

    Operators keep their options; the model description gains the I/O type."""
    if io not in ("float32", "uint8"):
        raise ConfigError(f"io must be 'float32' or 'uint8', not {io!r}")
    g = parse_model(model)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ConfigError("with_io needs a model with one input and one output")
    tensors = list(g.tensors)
    i_old, o_old = g.inputs[0], g.outputs[0]
    ti, to = tensors[i_old], tensors[o_old]
    if io == "float32":
        tensors.append(TensorInfo("input_f32", ti.shape, "float32"))
        tensors.append(TensorInfo("output_f32", to.shape, "float32"))
        last = "DEQUANTIZE"
    else:
        tensors.append(TensorInfo("input_u8", ti.shape, "uint8", ti.scale, ti.zero_point + 128))
        tensors.append(TensorInfo("output_u8", to.shape, "uint8", to.scale, to.zero_point + 128))
        last = "QUANTIZE"
    i_new, o_new = len(tensors) - 2, len(tensors) - 1
    ops = [OpInfo(0, "QUANTIZE", [i_new], [i_old])]
    for op in g.ops:
        opts = dict(op.options)
        if op.kind == "RESHAPE":
            opts = {"new_shape": g.tensors[op.outputs[0]].shape}
        ops.append(OpInfo(len(ops), op.kind, op.inputs, op.outputs, opts))
    ops.append(OpInfo(len(ops), last, [o_old], [o_new]))
    data = write_model(Graph(tensors, ops, [i_new], [o_new]), f"convgen model with {io} input and output")
    x = np.asarray(x, np.int64)
    if io == "uint8":
        return data, (x + 128).astype(np.uint8)
    rng = np.random.default_rng(seed)
    s, zp = float(ti.scale[0]), int(ti.zero_point[0])
    xf = (x - zp + rng.uniform(-0.5, 0.5, x.shape)) * s
    edge = rng.random(x.shape) < 0.02                     # a few saturating values at both ends
    xf = np.where(edge, (np.where(rng.random(x.shape) < 0.5, -130, 129) - zp) * s, xf)
    return data, xf.astype(np.float32)


def mobilenet_v3(seed: int = 0, size: int = 16) -> tuple[bytes, np.ndarray]:
    """A deterministic MobileNetV3-style int8 model and an int8 input for it: a 3x3 stride-2
    stem (16 channels) and HARD_SWISH, a 3x3 depthwise layer with ReLU, a squeeze-excite block
    (a spatial MEAN, a 1x1 reduction to 8 channels with ReLU, a 1x1 expansion back to 16, a
    LOGISTIC gate, a MUL of the features by the ``[1, 1, 1, 16]`` gate), a 1x1 projection to 24
    channels, a 1x1 expansion to 40 with HARD_SWISH, a MEAN, 1x1 logits and a RESHAPE to
    ``[1, 10]``. Calibrated as :func:`mobilenet`. (Keras' MobileNetV3 uses a hard sigmoid for
    the gate; LOGISTIC is the squeeze-excite gate of EfficientNet-style models.)"""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, size, size, 3)).astype(np.int8)
    b = _Builder(rng, x)
    cur = b.hard_swish(b.conv(0, "conv", 16, 3, 2, "none"))
    cur = b.conv(cur, "depthwise", 0, 3, 1, "relu")
    gate = b.conv(b.conv(b.mean(cur), "conv", 8, 1, 1, "relu"), "conv", 16, 1, 1, "none")
    cur = b.mul(cur, b.logistic(gate))
    cur = b.conv(cur, "conv", 24, 1, 1, "none")
    cur = b.hard_swish(b.conv(cur, "conv", 40, 1, 1, "none"))
    cur = b.conv(b.mean(cur), "conv", 10, 1, 1, "none")
    cur = b.reshape(cur, (1, 10))
    return b.model(cur, f"convgen MobileNetV3-style int8 model (HARD_SWISH, squeeze-excite), seed {seed}"), x
