"""Run a quantized ONNX network in exact integer NumPy, op by op, with ONNX Runtime's arithmetic.

:func:`load` reads a model written by ``onnxruntime.quantization.quantize_static`` in either
format and turns it into a list of :class:`Step` s, each one quantized operator on int8
tensors:

- QOperator models are read as they are (QLinearConv, QLinearAdd, QGemm, ...);
- QDQ models are read the way ONNX Runtime runs them: every ``DequantizeLinear -> op ->
  QuantizeLinear`` group becomes the fused integer operator ORT's QDQ transformers make of it
  (QLinearConv, QLinearAdd, QGemm, QLinearAveragePool, ...), and data-movement ops between a
  DQ and a Q of the same scale and zero point (MaxPool, Reshape, Transpose, Flatten) run on the
  int8 tensor. ORT with ``session.qdqisint8allowed=1`` computes exactly this (docs/network.md);
  executing the Q/DQ nodes literally in float is *not* what ORT does.

:func:`run` executes the steps and returns every intermediate tensor by name (the names of the
model's quantized tensors, so they can be compared with ORT's). Convolutions go through the
``conv`` hook, by default :func:`golden_conv` (``golden.requant.qconv2d``: the convolution
oracle ``golden.conv`` plus ORT's float32 requantization); the RTL engine plugs in there.
:func:`ort_tensors` runs ORT with those tensors added to the graph outputs, for layer-by-layer
comparison (:func:`compare`).

The exact arithmetic of each op, and the ORT source it follows, is in docs/network.md. Bad
models raise :class:`~convgen.core.params.ConfigError` with one line that names the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convgen.core.layer import ConvLayer, resolve_pads
from convgen.core.params import ConfigError

from .quant import wrap32
from .requant import RequantParams, params_from_scales, qconv2d, requantize

__all__ = ["Step", "Network", "QConv", "Result", "load", "run", "golden_conv", "ort_tensors", "compare",
           "SUPPORTED_OPS", "fma32", "qlinear_add", "qlinear_average_pool", "qlinear_global_average_pool",
           "quantize_linear", "dequantize_linear", "requant_table"]

F32 = np.float32
INT8_MIN, INT8_MAX = -128, 127
UINT8_MIN, UINT8_MAX = 0, 255

#: QOperator ops read directly
QOPERATOR_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearAdd", "QLinearMatMul", "QGemm",
                 "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat")
#: ops that act on quantized tensors unchanged (data movement, max, clamp)
INT_OPS = ("MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Relu", "Clip")
#: float ops of a QDQ model that become a fused quantized op
QDQ_FUSED = {"Conv": "QLinearConv", "Add": "QLinearAdd", "MatMul": "QLinearMatMul", "Gemm": "QGemm",
             "GlobalAveragePool": "QLinearGlobalAveragePool", "AveragePool": "QLinearAveragePool",
             "Concat": "QLinearConcat"}
SUPPORTED_OPS = tuple(sorted(set(QOPERATOR_OPS) | set(INT_OPS) | set(QDQ_FUSED)))
_FLOAT_MAC = ("Conv", "Gemm", "MatMul", "ConvTranspose")


# ---- data structures ----------------------------------------------------------------------
@dataclass
class Step:
    """One quantized op: ``op`` (QOperator name), the ONNX node ``name`` it comes from,
    quantized input tensor names, one output name and its constant parameters."""

    op: str
    name: str
    inputs: list
    output: str
    p: dict = field(default_factory=dict)
    aliases: list = field(default_factory=list)   # other names of the same tensor (QDQ: several Qs)


@dataclass
class Network:
    steps: list
    input_name: str        # the float graph input
    input_shape: tuple
    output_names: list     # graph outputs
    format: str            # "qoperator" or "qdq"

    @property
    def conv_steps(self) -> list:
        return [s for s in self.steps if s.op == "QLinearConv"]


@dataclass
class QConv:
    """Everything one QLinearConv needs, in ONNX layouts (what a conv executor receives).

    ``x`` int NCHW, ``w`` int8 OIHW, zero points and float32 scales (``w_scale`` and
    ``w_zero_point`` per tensor or per output channel), ``bias`` int32 per output channel,
    ``pads`` (top, left, bottom, right), ``strides``/``dilations`` (h, w), ``group``."""

    name: str
    x: np.ndarray
    w: np.ndarray
    x_scale: np.float32
    x_zero_point: int
    w_scale: np.ndarray
    w_zero_point: np.ndarray
    y_scale: np.float32
    y_zero_point: int
    bias: np.ndarray
    strides: tuple
    pads: tuple
    dilations: tuple
    group: int
    signed: bool = True

    @property
    def layer(self) -> ConvLayer:
        n, c, h, w = self.x.shape
        kh, kw = self.w.shape[2:]
        return ConvLayer(h=h, w=w, c=c, kh=kh, kw=kw, stride_h=self.strides[0], stride_w=self.strides[1],
                         pad_top=self.pads[0], pad_left=self.pads[1], pad_bottom=self.pads[2],
                         pad_right=self.pads[3], dil_h=self.dilations[0], dil_w=self.dilations[1],
                         groups=self.group, c_out=self.w.shape[0])

    @property
    def params(self) -> RequantParams:
        """The requantization as ORT computes it (rounding "onnx": float32 scale
        ``x_scale * w_scale / y_scale``, round half to even)."""
        return params_from_scales("onnx", self.x_scale, self.w_scale, self.y_scale, bias=self.bias,
                                  zero_point=self.y_zero_point, out_signed=self.signed)


@dataclass
class Result:
    tensors: dict          # tensor name -> array (int64 for quantized tensors, float32 for float ones)
    output: np.ndarray     # the (first) graph output
    network: Network


def golden_conv(q: QConv) -> np.ndarray:
    """The default conv executor: ``golden.requant.qconv2d`` (the one convolution oracle,
    ``golden.conv``, then ORT's requantization). Returns int64 NCHW."""
    return qconv2d(q.x, q.w, q.x_zero_point, q.w_zero_point, q.params, stride=q.strides, pad=q.pads,
                   dilation=q.dilations, groups=q.group)


# ---- exact float32 primitives of ORT ------------------------------------------------------
def fma32(a, b, c) -> np.ndarray:
    """``fmaf(a, b, c)``: float32 ``a*b + c`` with one rounding (what MLAS's FMA instructions
    compute). The product of two float32 is exact in float64; the float64 sum is made
    round-to-odd with an exact TwoSum error term, and rounding that to float32 is then the
    correctly rounded result (53 >= 2*24 + 2 bits)."""
    a, b, c = (np.asarray(v, F32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    even = (s.view(np.int64) & 1) == 0 if s.ndim else (np.asarray(s).view(np.int64) & 1) == 0
    bump = (err != 0) & even
    s = np.where(bump, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(F32)


def _rint_clamp(v, lo: int, hi: int) -> np.ndarray:
    """``nearbyintf`` (half to even), clamped, as int64."""
    return np.clip(np.rint(np.asarray(v, F32).astype(np.float64)), lo, hi).astype(np.int64)


def quantize_linear(x, scale, zero_point, signed: bool = True) -> np.ndarray:
    """``QuantizeLinear`` (MlasQuantizeLinear): ``saturate(nearbyintf(x / scale) + zp)``, the
    division in float32 (a multiplication by ``1/scale`` differs on ties)."""
    lo, hi = (INT8_MIN, INT8_MAX) if signed else (UINT8_MIN, UINT8_MAX)
    q = np.rint((np.asarray(x, F32) / F32(scale)).astype(np.float64)) + int(zero_point)
    return np.clip(q, lo, hi).astype(np.int64)


def dequantize_linear(x, scale, zero_point) -> np.ndarray:
    """``DequantizeLinear``: ``float32(x - zp) * scale`` (one float32 rounding)."""
    return (np.asarray(x, np.int64) - np.asarray(zero_point, np.int64)).astype(F32) * np.asarray(scale, F32)


def qlinear_add(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp, signed: bool = True) -> np.ndarray:
    """``QLinearAdd`` as MLAS's vector kernel computes it (x86 with FMA, checked against ORT
    1.31 on every int8 pair for 300 scale/zero-point sets)::

        rA = sA / sC;  rB = sB / sC                               (float32)
        base = zC - fmaf(zA, rA, rB * zB)
        c = clamp(nearbyintf(fmaf(a, rA, fmaf(b, rB, base))))
    """
    lo, hi = (INT8_MIN, INT8_MAX) if signed else (UINT8_MIN, UINT8_MAX)
    ra = F32(a_scale) / F32(c_scale)
    rb = F32(b_scale) / F32(c_scale)
    base = F32(c_zp) - fma32(F32(a_zp), ra, rb * F32(b_zp))
    a = np.asarray(a, np.int64).astype(F32)
    b = np.asarray(b, np.int64).astype(F32)
    a, b = np.broadcast_arrays(a, b)
    return _rint_clamp(fma32(a, ra, fma32(b, rb, base)), lo, hi)


def requant_table(x, x_scale, x_zp, y_scale, y_zp, signed: bool = True) -> np.ndarray:
    """Re-quantize int8 values from one scale to another the way QLinearConcat's lookup table
    does: ``QuantizeLinear(DequantizeLinear(x))``."""
    return quantize_linear(dequantize_linear(x, x_scale, x_zp), y_scale, y_zp, signed)


def _pool_windows(size: int, k: int, s: int, pb: int, pe: int, d: int = 1, ceil: bool = False):
    """Per output position: (first valid input, end of valid inputs, window length clipped to
    the padded extent) along one axis, ONNX pooling rules."""
    span = d * (k - 1) + 1
    num = size + pb + pe - span
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + pb:
        out -= 1
    rows = []
    for o in range(out):
        start = o * s - pb
        end = min(start + span, size + pe)
        rows.append((start, end, end - start))
    return rows


def qlinear_average_pool(x, x_scale, x_zp, y_scale, y_zp, kernel, strides, pads, count_include_pad: int,
                         ceil_mode: int = 0, signed: bool = True) -> np.ndarray:
    """``QLinearAveragePool`` (ORT's qlinear_pool.cc, float path): every input is dequantized
    to float32, ``float32(x - zp) * x_scale``; the window is summed in float32 row by row;
    ``v = sum / count``; ``y = clamp(nearbyintf(v / y_scale + y_zp))``. ``count`` is the
    window clipped to the padded extent (``count_include_pad``) or to the input."""
    lo, hi = (INT8_MIN, INT8_MAX) if signed else (UINT8_MIN, UINT8_MAX)
    x = np.asarray(x, np.int64)
    n, c, h, w = x.shape
    xf = dequantize_linear(x, x_scale, x_zp)
    rows = _pool_windows(h, kernel[0], strides[0], pads[0], pads[2], ceil=bool(ceil_mode))
    cols = _pool_windows(w, kernel[1], strides[1], pads[1], pads[3], ceil=bool(ceil_mode))
    y = np.zeros((n, c, len(rows), len(cols)), np.int64)
    for i, (h0, h1, hl) in enumerate(rows):
        hs, he = max(h0, 0), min(h1, h)
        for j, (w0, w1, wl) in enumerate(cols):
            ws, we = max(w0, 0), min(w1, w)
            acc = np.zeros((n, c), F32)
            for hh in range(hs, he):
                for ww in range(ws, we):
                    acc = acc + xf[:, :, hh, ww]
            count = hl * wl if count_include_pad else (he - hs) * (we - ws)
            v = acc / F32(count)
            y[:, :, i, j] = _rint_clamp(v / F32(y_scale) + F32(y_zp), lo, hi)
    return y


def qlinear_global_average_pool(x, x_scale, x_zp, y_scale, y_zp, signed: bool = True) -> np.ndarray:
    """``QLinearGlobalAveragePool`` (MlasQLinearGlobalAveragePoolNchw/Nhwc): the exact int32
    sum per channel plus ``-x_zp * size``, then MlasRequantizeOutput with the float32 scale
    ``x_scale / (y_scale * size)``: ``clamp(nearbyintf(float32(acc) * scale) + y_zp)``."""
    lo, hi = (INT8_MIN, INT8_MAX) if signed else (UINT8_MIN, UINT8_MAX)
    x = np.asarray(x, np.int64)
    size = int(np.prod(x.shape[2:]))
    acc = wrap32(x.sum(axis=tuple(range(2, x.ndim)), keepdims=True) - int(x_zp) * size)
    scale = F32(x_scale) / (F32(y_scale) * F32(size))
    v = np.rint((acc.astype(F32) * scale).astype(np.float64)) + int(y_zp)
    return np.clip(v, lo, hi).astype(np.int64)


def max_pool(x, kernel, strides, pads, dilations=(1, 1), ceil_mode: int = 0) -> np.ndarray:
    """``MaxPool`` on quantized values: the maximum over the window's inputs (pads never win)."""
    x = np.asarray(x, np.int64)
    n, c, h, w = x.shape
    rows = _pool_windows(h, kernel[0], strides[0], pads[0], pads[2], dilations[0], bool(ceil_mode))
    cols = _pool_windows(w, kernel[1], strides[1], pads[1], pads[3], dilations[1], bool(ceil_mode))
    y = np.zeros((n, c, len(rows), len(cols)), np.int64)
    for i, (h0, h1, _) in enumerate(rows):
        hi_ = [t for t in range(h0, h1, dilations[0]) if 0 <= t < h]
        for j, (w0, w1, _) in enumerate(cols):
            wi_ = [t for t in range(w0, w1, dilations[1]) if 0 <= t < w]
            y[:, :, i, j] = x[:, :, hi_][:, :, :, wi_].max(axis=(2, 3))
    return y


# ---- loading ------------------------------------------------------------------------------
def _load_model(model):
    import onnx

    if hasattr(model, "graph"):
        return model, "model"
    if isinstance(model, (bytes, bytearray)):
        data, where = bytes(model), "the model"
    else:
        p = Path(model)
        if not p.is_file():
            raise ConfigError(f"no such model file: {model}")
        data, where = p.read_bytes(), str(model)
    try:
        m = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{where} is not a readable ONNX model (truncated or corrupt: {first})") from None
    if not m.graph.node or not m.opset_import:
        raise ConfigError(f"{where} is not a readable ONNX model (truncated or corrupt: no nodes or no opset)")
    return m, where


def _attr(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _where(node) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


def load(model, input_shape=None) -> Network:
    """Read a quantized model (ModelProto, bytes or path). ``input_shape`` (e.g. (1, 3, 96, 96))
    is needed when the model's input has symbolic or unknown dimensions."""
    from onnx import numpy_helper

    m, where = _load_model(model)
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:  # Constant nodes are initializers too
        if node.op_type == "Constant":
            inits[node.output[0]] = numpy_helper.to_array(_attr(node)["value"])
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ConfigError(f"{where}: the network must have one input, not {len(inputs)} "
                          f"({', '.join(i.name for i in inputs)})")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inp.type.tensor_type.shape.dim]
    if input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
            raise ConfigError(f"input_shape {shape} does not fit input {inp.name!r} of shape "
                              f"{tuple(d if d is not None else '?' for d in dims)}")
    else:
        if not dims or any(d is None for d in dims):
            shown = "x".join(str(d) if d is not None else "?" for d in dims) or "unknown"
            raise ConfigError(f"input {inp.name!r} has a dynamic shape ({shown}): give the input shape "
                              "(input_shape=..., --input-shape 1x3x224x224)")
        shape = tuple(dims)
    if len(shape) != 4:
        raise ConfigError(f"input {inp.name!r} must be 4-D (N, C, H, W), not shape {shape}")

    produced = {inp.name} | set(inits)
    for node in g.node:
        for i in node.input:
            if i and i not in produced:
                raise ConfigError(f"{_where(node)}: input {i!r} is neither produced by an earlier node nor "
                                  "an initializer (a truncated or unsorted model)")
        produced.update(o for o in node.output if o)

    consumers: dict = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    outputs = [o.name for o in g.output]
    qdq = any(n.op_type in QDQ_FUSED for n in g.node)
    steps = (_steps_qdq if qdq else _steps_qoperator)(g, inits, consumers, inp.name, outputs)
    return Network(steps, inp.name, shape, outputs, "qdq" if qdq else "qoperator")


def _const(inits, name, node, what):
    if name not in inits:
        raise ConfigError(f"{_where(node)}: {what} {name!r} must be a constant (initializer)")
    return inits[name]


def _scalar(inits, name, node, what):
    v = _const(inits, name, node, what)
    if v.size != 1:
        raise ConfigError(f"{_where(node)}: {what} {name!r} must be one value (per tensor), not shape {v.shape}")
    return v.reshape(())


def _signed(zp) -> bool:
    return np.asarray(zp).dtype == np.int8


def _conv_params(node, attrs, w_shape):
    k = list(attrs.get("kernel_shape", w_shape[2:]))
    if len(k) != 2:
        raise ConfigError(f"{_where(node)}: only 2-D convolutions are supported, not kernel {k}")
    strides = tuple(attrs.get("strides", [1, 1]))
    dil = tuple(attrs.get("dilations", [1, 1]))
    return dict(kernel=tuple(k), strides=strides, dilations=dil, group=int(attrs.get("group", 1)),
                pads_attr=list(attrs.get("pads", [])), auto_pad=attrs.get("auto_pad", "NOTSET"))


def _pool_params(node, attrs):
    k = tuple(attrs["kernel_shape"])
    if len(k) != 2:
        raise ConfigError(f"{_where(node)}: only 2-D pooling is supported, not kernel {list(k)}")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ConfigError(f"{_where(node)}: auto_pad is not supported for pooling (use explicit pads)")
    return dict(kernel=k, strides=tuple(attrs.get("strides", [1, 1])), pads=tuple(attrs.get("pads", [0] * 4)),
                dilations=tuple(attrs.get("dilations", [1, 1])), ceil_mode=int(attrs.get("ceil_mode", 0)),
                count_include_pad=int(attrs.get("count_include_pad", 0)))


def _int_op_step(node, inits, inputs, output) -> Step:
    attrs = _attr(node)
    op = node.op_type
    p = {}
    if op == "MaxPool":
        if len(node.output) > 1 and node.output[1]:
            raise ConfigError(f"{_where(node)}: MaxPool with an Indices output is not supported")
        p = _pool_params(node, attrs)
    elif op == "Reshape":
        p = dict(shape=_const(inits, node.input[1], node, "the shape").astype(np.int64),
                 allowzero=int(attrs.get("allowzero", 0)))
    elif op == "Transpose":
        p = dict(perm=attrs.get("perm"))
    elif op == "Flatten":
        p = dict(axis=int(attrs.get("axis", 1)))
    elif op in ("Squeeze", "Unsqueeze"):
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = _const(inits, node.input[1], node, "axes").tolist()
        p = dict(axes=axes)
    elif op == "Clip":
        lo = node.input[1] if len(node.input) > 1 else ""
        hi = node.input[2] if len(node.input) > 2 else ""
        p = dict(min=int(_const(inits, lo, node, "min")) if lo else None,
                 max=int(_const(inits, hi, node, "max")) if hi else None)
    return Step(op, node.name or node.output[0], inputs, output, p)


def _steps_qoperator(g, inits, consumers, input_name, outputs) -> list:
    steps = []
    for node in g.node:
        op, attrs = node.op_type, _attr(node)
        if op == "Constant":
            continue
        if op in _FLOAT_MAC or (op in QDQ_FUSED and op not in INT_OPS):
            raise ConfigError(f"{_where(node)}: a float (unquantized) operator; quantize the model first "
                              "(onnxruntime.quantization.quantize_static)")
        if op not in SUPPORTED_OPS:
            raise ConfigError(f"{_where(node)}: unsupported operator {op} (supported: {', '.join(SUPPORTED_OPS)})")
        name = node.name or node.output[0]
        I = list(node.input)
        if op == "QuantizeLinear":
            if I[0] != input_name:
                raise ConfigError(f"{_where(node)}: QuantizeLinear of an intermediate float tensor {I[0]!r} "
                                  "(a float region in the graph) is not supported")
            zp = _scalar(inits, I[2], node, "zero point")
            steps.append(Step(op, name, [I[0]], node.output[0],
                              dict(scale=F32(_scalar(inits, I[1], node, "scale")), zp=int(zp), signed=_signed(zp))))
        elif op == "DequantizeLinear":
            steps.append(Step(op, name, [I[0]], node.output[0],
                              dict(scale=F32(_scalar(inits, I[1], node, "scale")),
                                   zp=int(_scalar(inits, I[2], node, "zero point")))))
        elif op == "QLinearConv":
            p = _qconv_params(node, attrs, inits, I[1], I[2], I[3], I[4], I[5], I[6], I[7],
                              I[8] if len(I) > 8 and I[8] else None, bias_int=True)
            steps.append(Step(op, name, [I[0]], node.output[0], p))
        elif op == "QLinearAdd":
            zc = _scalar(inits, I[7], node, "zero point")
            steps.append(Step(op, name, [I[0], I[3]], node.output[0], dict(
                a_scale=F32(_scalar(inits, I[1], node, "scale")), a_zp=int(_scalar(inits, I[2], node, "zero point")),
                b_scale=F32(_scalar(inits, I[4], node, "scale")), b_zp=int(_scalar(inits, I[5], node, "zero point")),
                c_scale=F32(_scalar(inits, I[6], node, "scale")), c_zp=int(zc), signed=_signed(zc))))
        elif op in ("QLinearMatMul", "QGemm"):
            if op == "QLinearMatMul":
                a_s, a_z, b, b_s, b_z, y_s, y_z = I[1:8]
                bias, trans_a, trans_b = None, 0, 0
            else:
                if len(I) < 9 or not I[7]:
                    raise ConfigError(f"{_where(node)}: QGemm with a float output (no y_scale) is not supported")
                a_s, a_z, b, b_s, b_z, bias, y_s, y_z = I[1:9]
                trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
                if float(attrs.get("alpha", 1.0)) != 1.0:
                    raise ConfigError(f"{_where(node)}: QGemm with alpha != 1 is not supported")
            steps.append(Step("QGemm", name, [I[0]], node.output[0],
                              _qgemm_params(node, inits, a_s, a_z, b, b_s, b_z, bias or None, y_s, y_z,
                                            trans_a, trans_b)))
        elif op == "QLinearGlobalAveragePool":
            zy = _scalar(inits, I[4], node, "zero point")
            steps.append(Step(op, name, [I[0]], node.output[0], dict(
                x_scale=F32(_scalar(inits, I[1], node, "scale")), x_zp=int(_scalar(inits, I[2], node, "zero point")),
                y_scale=F32(_scalar(inits, I[3], node, "scale")), y_zp=int(zy), signed=_signed(zy))))
        elif op == "QLinearAveragePool":
            zy = _scalar(inits, I[4], node, "zero point")
            p = _pool_params(node, attrs)
            p.update(x_scale=F32(_scalar(inits, I[1], node, "scale")), x_zp=int(_scalar(inits, I[2], node, "zero point")),
                     y_scale=F32(_scalar(inits, I[3], node, "scale")), y_zp=int(zy), signed=_signed(zy))
            steps.append(Step(op, name, [I[0]], node.output[0], p))
        elif op == "QLinearConcat":
            zy = _scalar(inits, I[1], node, "zero point")
            ins, qs = [], []
            for k in range(2, len(I), 3):
                ins.append(I[k])
                qs.append((F32(_scalar(inits, I[k + 1], node, "scale")), int(_scalar(inits, I[k + 2], node, "zero point"))))
            steps.append(Step(op, name, ins, node.output[0], dict(
                axis=int(attrs["axis"]), inputs=qs, y_scale=F32(_scalar(inits, I[0], node, "scale")), y_zp=int(zy),
                signed=_signed(zy))))
        else:  # INT_OPS on a quantized tensor
            steps.append(_int_op_step(node, inits, [I[0]], node.output[0]))
    return steps


def _qconv_params(node, attrs, inits, xs, xz, w, ws, wz, ys, yz, bias, *, bias_int):
    wq = _const(inits, w, node, "the weight")
    if wq.ndim != 4:
        raise ConfigError(f"{_where(node)}: only 2-D convolutions are supported, not weights of shape {wq.shape}")
    if wq.dtype != np.int8:
        raise ConfigError(f"{_where(node)}: weights must be int8, not {wq.dtype}")
    zy = _scalar(inits, yz, node, "zero point")
    c_out = wq.shape[0]
    b = np.zeros(c_out, np.int64) if bias is None else np.asarray(_const(inits, bias, node, "the bias"), np.int64)
    if b.shape != (c_out,):
        raise ConfigError(f"{_where(node)}: bias must have {c_out} values, not shape {b.shape}")
    return dict(conv=_conv_params(node, attrs, wq.shape), w=wq.astype(np.int64),
                w_scale=np.asarray(_const(inits, ws, node, "the weight scale"), F32).reshape(-1),
                w_zp=np.asarray(_const(inits, wz, node, "the weight zero point"), np.int64).reshape(-1),
                x_scale=F32(_scalar(inits, xs, node, "scale")), x_zp=int(_scalar(inits, xz, node, "zero point")),
                y_scale=F32(_scalar(inits, ys, node, "scale")), y_zp=int(zy), bias=b, signed=_signed(zy))


def _qgemm_params(node, inits, a_s, a_z, b, b_s, b_z, bias, y_s, y_z, trans_a, trans_b):
    bq = np.asarray(_const(inits, b, node, "the weight"), np.int64)
    if bq.ndim != 2:
        raise ConfigError(f"{_where(node)}: the weight must be 2-D, not shape {bq.shape}")
    if trans_b:
        bq = bq.T
    n = bq.shape[1]
    zy = _scalar(inits, y_z, node, "zero point")
    bias_v = np.zeros(n, np.int64) if bias is None else np.asarray(_const(inits, bias, node, "the bias"), np.int64).reshape(-1)
    return dict(b=bq, b_scale=np.asarray(_const(inits, b_s, node, "the weight scale"), F32).reshape(-1),
                b_zp=np.asarray(_const(inits, b_z, node, "the weight zero point"), np.int64).reshape(-1),
                a_scale=F32(_scalar(inits, a_s, node, "scale")), a_zp=int(_scalar(inits, a_z, node, "zero point")),
                y_scale=F32(_scalar(inits, y_s, node, "scale")), y_zp=int(zy), bias=np.broadcast_to(bias_v, (n,)),
                trans_a=trans_a, signed=_signed(zy))


def _steps_qdq(g, inits, consumers, input_name, outputs) -> list:
    """Fuse DQ -> op -> Q groups into the quantized op ORT makes of them."""
    producer = {o: n for n in g.node for o in n.output}
    act_dq = {}                  # DQ output -> (quantized name, scale, zp)
    const_dq = {}                # DQ output -> (q array, scale array, zp array)
    for node in g.node:
        if node.op_type == "DequantizeLinear":
            if node.input[0] in inits:
                const_dq[node.output[0]] = (inits[node.input[0]], _const(inits, node.input[1], node, "scale"),
                                            _const(inits, node.input[2], node, "zero point") if len(node.input) > 2
                                            else np.zeros((), np.int8))
            else:
                act_dq[node.output[0]] = (node.input[0], F32(_scalar(inits, node.input[1], node, "scale")),
                                          int(_scalar(inits, node.input[2], node, "zero point")))
    steps = []
    fused_q = set()
    for node in g.node:
        op = node.op_type
        name = node.name or node.output[0]
        if op in ("Constant",) or (op == "DequantizeLinear" and node.output[0] not in outputs):
            continue
        if op == "DequantizeLinear":        # a graph output
            q, s, z = act_dq[node.output[0]]
            steps.append(Step(op, name, [q], node.output[0], dict(scale=s, zp=z)))
            continue
        if op == "QuantizeLinear":
            if id(node) in fused_q:
                continue
            if node.input[0] != input_name:
                raise ConfigError(f"{_where(node)}: QuantizeLinear of {node.input[0]!r}, produced by "
                                  f"{_where(producer[node.input[0]]) if node.input[0] in producer else 'nothing'}, "
                                  "which is not a supported quantized group")
            zp = _scalar(inits, node.input[2], node, "zero point")
            steps.append(Step(op, name, [node.input[0]], node.output[0],
                              dict(scale=F32(_scalar(inits, node.input[1], node, "scale")), zp=int(zp),
                                   signed=_signed(zp))))
            continue
        if op not in QDQ_FUSED and op not in INT_OPS:
            if op in QOPERATOR_OPS:
                raise ConfigError(f"{_where(node)}: a QOperator node in a QDQ model is not supported")
            raise ConfigError(f"{_where(node)}: unsupported operator {op} (supported: {', '.join(SUPPORTED_OPS)})")
        # activation inputs must come from DequantizeLinear
        acts = [i for k, i in enumerate(node.input) if i and not (op in ("Conv", "Gemm", "MatMul") and k > 0)
                and not (op in ("Reshape", "Clip", "Squeeze", "Unsqueeze") and k > 0)]
        bad = [i for i in acts if i not in act_dq]
        if bad:
            kind = "a float (unquantized) " + op if op in _FLOAT_MAC else f"{op} on a float tensor {bad[0]!r}"
            raise ConfigError(f"{_where(node)}: {kind}; quantize the model first "
                              "(onnxruntime.quantization.quantize_static)")
        qs = [c for c in consumers.get(node.output[0], []) if c.op_type == "QuantizeLinear"]
        if not qs or len(qs) != len(consumers.get(node.output[0], [])) or node.output[0] in outputs:
            raise ConfigError(f"{_where(node)}: its output {node.output[0]!r} is not (only) quantized by "
                              "QuantizeLinear: a float region in the graph is not supported")
        q0 = qs[0]
        ys, yz = F32(_scalar(inits, q0.input[1], q0, "scale")), _scalar(inits, q0.input[2], q0, "zero point")
        for q in qs[1:]:
            if F32(_scalar(inits, q.input[1], q, "scale")) != ys or int(_scalar(inits, q.input[2], q, "zero point")) != int(yz):
                raise ConfigError(f"{_where(node)}: its output is quantized twice with different parameters")
        fused_q.update(id(q) for q in qs)
        out, aliases = q0.output[0], [q.output[0] for q in qs[1:]]
        qin = [act_dq[i][0] for i in acts]
        sx = [act_dq[i][1:] for i in acts]
        attrs = _attr(node)
        if op == "Conv":
            w = node.input[1]
            if w not in const_dq:
                raise ConfigError(f"{_where(node)}: a float (unquantized) Conv weight {w!r}; quantize the model first")
            wq, ws, wz = const_dq[w]
            bias = None
            if len(node.input) > 2 and node.input[2]:
                if node.input[2] not in const_dq or const_dq[node.input[2]][0].dtype != np.int32:
                    raise ConfigError(f"{_where(node)}: the bias must be int32 through DequantizeLinear")
                bias = np.asarray(const_dq[node.input[2]][0], np.int64)
            fake = {"xs": np.array(sx[0][0]), "xz": np.array(sx[0][1], np.int8), "w": wq, "ws": ws, "wz": wz,
                    "ys": np.array(ys), "yz": yz}
            if bias is not None:
                fake["b"] = bias
            p = _qconv_params(node, attrs, fake, "xs", "xz", "w", "ws", "wz", "ys", "yz",
                              "b" if bias is not None else None, bias_int=True)
            p["x_zp"] = int(sx[0][1])
            step = Step("QLinearConv", name, qin, out, p)
        elif op in ("Gemm", "MatMul"):
            w = node.input[1]
            if w not in const_dq:
                raise ConfigError(f"{_where(node)}: a float (unquantized) {op} weight {w!r}; quantize the model first")
            wq, ws, wz = const_dq[w]
            fake = {"as": np.array(sx[0][0]), "az": np.array(sx[0][1]), "b": wq, "bs": ws, "bz": wz,
                    "ys": np.array(ys), "yz": yz}
            bias = None
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                if node.input[2] not in const_dq or const_dq[node.input[2]][0].dtype != np.int32:
                    raise ConfigError(f"{_where(node)}: the bias must be int32 through DequantizeLinear")
                fake["c"] = const_dq[node.input[2]][0]
                bias = "c"
            if op == "Gemm" and (float(attrs.get("alpha", 1.0)) != 1.0 or float(attrs.get("beta", 1.0)) != 1.0):
                raise ConfigError(f"{_where(node)}: Gemm with alpha or beta != 1 is not supported")
            step = Step("QGemm", name, qin, out, _qgemm_params(
                node, fake, "as", "az", "b", "bs", "bz", bias, "ys", "yz",
                int(attrs.get("transA", 0)) if op == "Gemm" else 0, int(attrs.get("transB", 0)) if op == "Gemm" else 0))
        elif op == "Add":
            step = Step("QLinearAdd", name, qin, out, dict(a_scale=sx[0][0], a_zp=sx[0][1], b_scale=sx[1][0],
                                                            b_zp=sx[1][1], c_scale=ys, c_zp=int(yz), signed=_signed(yz)))
        elif op == "GlobalAveragePool":
            step = Step("QLinearGlobalAveragePool", name, qin, out, dict(
                x_scale=sx[0][0], x_zp=sx[0][1], y_scale=ys, y_zp=int(yz), signed=_signed(yz)))
        elif op == "AveragePool":
            p = _pool_params(node, attrs)
            p.update(x_scale=sx[0][0], x_zp=sx[0][1], y_scale=ys, y_zp=int(yz), signed=_signed(yz))
            step = Step("QLinearAveragePool", name, qin, out, p)
        elif op == "Concat":
            step = Step("QLinearConcat", name, qin, out, dict(axis=int(attrs["axis"]), inputs=sx, y_scale=ys,
                                                               y_zp=int(yz), signed=_signed(yz)))
        else:  # data movement / clamp between a DQ and a Q: ORT drops the pair when the parameters agree
            if sx[0] != (ys, int(yz)):
                raise ConfigError(f"{_where(node)}: {op} between DequantizeLinear and QuantizeLinear with different "
                                  "scales or zero points is not supported")
            if op in ("Relu", "Clip"):
                step = Step("QClamp", name, qin, out, _qdq_clamp(node, inits, op, ys, int(yz)))
            else:
                step = _int_op_step(node, inits, qin, out)
        step.aliases = aliases
        steps.append(step)
    return steps


def _qdq_clamp(node, inits, op, scale, zp) -> dict:
    """DQ -> Relu/Clip -> Q with one scale: the bounds quantized, ``clamp(x, q(lo), q(hi))``."""
    lo, hi = 0.0, None
    if op == "Clip":
        lo = float(_const(inits, node.input[1], node, "min")) if len(node.input) > 1 and node.input[1] else None
        hi = float(_const(inits, node.input[2], node, "max")) if len(node.input) > 2 and node.input[2] else None
    return dict(min=None if lo is None else int(quantize_linear(lo, scale, zp)),
                max=None if hi is None else int(quantize_linear(hi, scale, zp)))


# ---- execution ----------------------------------------------------------------------------
def _lohi(signed: bool):
    return (INT8_MIN, INT8_MAX) if signed else (UINT8_MIN, UINT8_MAX)


def _exec(step: Step, args: list, conv: Callable) -> np.ndarray:
    p = step.p
    op = step.op
    if op == "QuantizeLinear":
        return quantize_linear(args[0], p["scale"], p["zp"], p["signed"])
    if op == "DequantizeLinear":
        return dequantize_linear(args[0], p["scale"], p["zp"])
    if op == "QLinearConv":
        c = p["conv"]
        x = args[0]
        if x.ndim != 4:
            raise ConfigError(f"node {step.name!r} (QLinearConv): input must be 4-D, not {x.shape}")
        pads = resolve_pads(c["auto_pad"], x.shape[2:], c["kernel"], c["strides"], c["dilations"], c["pads_attr"])
        q = QConv(step.name, x, p["w"], p["x_scale"], p["x_zp"], p["w_scale"], p["w_zp"], p["y_scale"], p["y_zp"],
                  p["bias"], c["strides"], (pads[0], pads[1], pads[2], pads[3]), c["dilations"], c["group"],
                  p["signed"])
        try:
            y = conv(q)
        except ConfigError as e:
            raise ConfigError(f"node {step.name!r} (QLinearConv): {e}") from None
        return np.asarray(y, np.int64)
    if op == "QLinearAdd":
        return qlinear_add(args[0], p["a_scale"], p["a_zp"], args[1], p["b_scale"], p["b_zp"], p["c_scale"],
                           p["c_zp"], p["signed"])
    if op == "QGemm":
        a = args[0].T if p["trans_a"] else args[0]
        n = p["b"].shape[1]
        try:
            rp = params_from_scales("onnx", p["a_scale"], p["b_scale"], p["y_scale"], bias=np.asarray(p["bias"]),
                                    zero_point=p["y_zp"], out_signed=p["signed"])
            if rp.channels != n:
                rp = params_from_scales("onnx", p["a_scale"], np.broadcast_to(p["b_scale"], (n,)), p["y_scale"],
                                        bias=np.asarray(p["bias"]), zero_point=p["y_zp"], out_signed=p["signed"])
        except ConfigError as e:
            raise ConfigError(f"node {step.name!r} ({op}): {e}") from None
        zb = np.broadcast_to(p["b_zp"], (n,))
        acc = (np.asarray(a, np.int64) - p["a_zp"]) @ (p["b"] - zb[None, :])
        return requantize(wrap32(acc), rp)
    if op == "QLinearGlobalAveragePool":
        return qlinear_global_average_pool(args[0], p["x_scale"], p["x_zp"], p["y_scale"], p["y_zp"], p["signed"])
    if op == "QLinearAveragePool":
        if p["dilations"] != (1, 1):
            raise ConfigError(f"node {step.name!r} (QLinearAveragePool): dilations are not supported")
        return qlinear_average_pool(args[0], p["x_scale"], p["x_zp"], p["y_scale"], p["y_zp"], p["kernel"],
                                    p["strides"], p["pads"], p["count_include_pad"], p["ceil_mode"], p["signed"])
    if op == "QLinearConcat":
        parts = []
        for x, (s, z) in zip(args, p["inputs"]):
            same = F32(s) == F32(p["y_scale"]) and int(z) == p["y_zp"]
            parts.append(x if same else requant_table(x, s, z, p["y_scale"], p["y_zp"], p["signed"]))
        return np.concatenate(parts, axis=p["axis"])
    x = args[0]
    if op == "MaxPool":
        return max_pool(x, p["kernel"], p["strides"], p["pads"], p["dilations"], p["ceil_mode"])
    if op == "Reshape":
        shape = [int(v) for v in p["shape"]]
        if not p["allowzero"]:
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return x.reshape(shape)
    if op == "Transpose":
        return np.transpose(x, p["perm"])
    if op == "Flatten":
        ax = p["axis"] % x.ndim if x.ndim else 0
        return x.reshape(int(np.prod(x.shape[:ax])), -1)
    if op == "Squeeze":
        return np.squeeze(x, axis=tuple(p["axes"]) if p["axes"] is not None else None)
    if op == "Unsqueeze":
        for a in sorted(v % (x.ndim + len(p["axes"])) for v in p["axes"]):
            x = np.expand_dims(x, a)
        return x
    if op == "Identity":
        return x
    if op == "Relu":      # on int8 values (QOperator): max(x, 0)
        return np.maximum(x, 0)
    if op in ("Clip", "QClamp"):
        lo = p["min"] if p["min"] is not None else -(1 << 62)
        hi = p["max"] if p["max"] is not None else 1 << 62
        return np.clip(x, lo, hi)
    raise ConfigError(f"node {step.name!r}: no executor for {op}")


def run(network, x, *, conv: Callable | None = None, input_shape=None, stop_after: str | None = None) -> Result:
    """Execute ``network`` (a :class:`Network`, or anything :func:`load` takes) on the float32
    input ``x``. ``conv(q: QConv) -> int NCHW`` replaces the convolution executor (default
    :func:`golden_conv`). Returns every tensor by name; ``stop_after`` ends after that step."""
    net = network if isinstance(network, Network) else load(network, input_shape)
    conv = conv or golden_conv
    x = np.asarray(x)
    if tuple(x.shape) != tuple(net.input_shape):
        raise ConfigError(f"input {net.input_name!r} must have shape {tuple(net.input_shape)}, not {tuple(x.shape)}")
    tensors = {net.input_name: x.astype(F32)}
    for step in net.steps:
        y = _exec(step, [tensors[i] for i in step.inputs], conv)
        tensors[step.output] = y
        for a in step.aliases:
            tensors[a] = y
        if stop_after is not None and step.name == stop_after:
            break
    out = tensors.get(net.output_names[0])
    return Result(tensors, out, net)


# ---- ONNX Runtime comparison --------------------------------------------------------------
def ort_config(net: Network) -> dict:
    """Session config entries that make ORT run ``net`` the way this executor does."""
    return {"session.qdqisint8allowed": "1"} if net.format == "qdq" else {}


def ort_tensors(model, x, names, *, net: Network | None = None) -> dict:
    """ONNX Runtime's values of the tensors ``names`` (added to the graph outputs) on input ``x``."""
    import onnx

    from .ort import session

    m, _ = _load_model(model)
    m = onnx.ModelProto.FromString(m.SerializeToString())
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    net = net or load(m)
    sess = session(m, config=ort_config(net))
    outs = sess.run(list(names), {net.input_name: np.asarray(x, F32)})
    return dict(zip(names, outs))


def compare(model, x, *, conv: Callable | None = None, net: Network | None = None,
            result: Result | None = None) -> list:
    """Run the executor (or take its ``result``) and ORT on ``x``; one row per step: name, op,
    output tensor, shape, number of differing elements, largest difference. The last row is the
    graph output."""
    net = net or load(model)
    res = result if result is not None else run(net, x, conv=conv)
    names = [s.output for s in net.steps]
    ref = ort_tensors(model, x, names, net=net)
    rows = []
    for s in net.steps:
        ours, theirs = res.tensors[s.output], np.asarray(ref[s.output])
        if ours.shape != theirs.shape:
            rows.append(dict(name=s.name, op=s.op, tensor=s.output, shape=tuple(theirs.shape), mismatches=-1,
                             max_diff=float("inf")))
            continue
        if np.issubdtype(theirs.dtype, np.floating):
            diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
            bad = ours.astype(F32).view(np.int32) != theirs.astype(F32).view(np.int32)
        else:
            diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
            bad = diff != 0
        rows.append(dict(name=s.name, op=s.op, tensor=s.output, shape=tuple(theirs.shape),
                         mismatches=int(bad.sum()), max_diff=float(diff.max()) if diff.size else 0.0))
    return rows
