"""Quantized ONNX test networks, built deterministically without internet.

Every builder makes a float32 ONNX model with seeded random weights and quantizes it with
``onnxruntime.quantization.quantize_static`` (the tool users run), calibrated on a few seeded
random inputs, in either format:

- ``"qoperator"``: QLinearConv, QLinearAdd, QLinearMatMul/QGemm, QLinearGlobalAveragePool,
  QLinearConcat, ... with QuantizeLinear/DequantizeLinear only at the graph's edges;
- ``"qdq"``: QuantizeLinear/DequantizeLinear pairs around float Conv, Add, MatMul, ...

Activations and weights are int8 (``QInt8``/``QInt8``): ORT's int8 x int8 kernels are exact on
every CPU (../shared/TOOLCHAIN.md), so the models are an exact oracle. Weights are per output
channel by default.

The float models:

- :func:`every_kind_float`: a short network with one layer of each kind (standard 3x3,
  strided with asymmetric pads, depthwise, pointwise, dilated, grouped, residual add, max and
  average pooling, concat, channel shuffle, global average pool, Gemm) at a tiny spatial size;
- :func:`mobilenet_v2_float`: MobileNetV2 (inverted residuals, depthwise 3x3 s1/s2, ReLU6 as
  Clip, residual adds, global average pool, a final Gemm), any input size and width multiplier;
- :func:`resnet_float`: a bottleneck ResNet; ``blocks=(3, 4, 6, 3)``, ``width=64`` and 224x224
  is ResNet-50, ``blocks=(1, 1, 1, 1)`` a short one;
- :func:`light_float`: the onnx wheel's ``backend/test/data/light/light_<name>.onnx``, whose
  weights are ``ConstantOfShape`` nodes, with seeded random weights (BatchNormalization folded
  into the convolutions by ORT's optimizer before quantization, Dropout and the final Softmax
  removed, ``Sum`` of two tensors written as ``Add``).

:func:`build` (or the per-network helpers :func:`every_kind`, :func:`mobilenet_v2`,
:func:`resnet`, :func:`light`) returns the quantized ``onnx.ModelProto``, cached under
``cache_root()/"models"`` by a hash of the builder parameters and the onnx/onnxruntime
versions, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from convgen.core.cache import cache_root
from convgen.core.fileio import atomic_write_bytes
from convgen.core.params import ConfigError, check_choice, check_int

__all__ = ["FORMATS", "BUILDERS", "LIGHT_MODELS", "build", "build_path", "every_kind", "mobilenet_v2", "resnet",
           "light", "every_kind_float", "mobilenet_v2_float", "resnet_float", "light_float", "quantize",
           "calibration_inputs", "light_models", "input_shape"]

FORMATS = ("qoperator", "qdq")
#: bump when a builder changes what it makes (part of the cache key)
ZOO_VERSION = 1
OPSET = 13


# ---- a tiny graph writer ------------------------------------------------------------------
class _Graph:
    """Appends float ops with seeded He-initialised weights; names every tensor."""

    def __init__(self, name: str, seed: int, x_shape):
        from onnx import TensorProto, helper

        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.x_shape = list(x_shape)
        self.input = helper.make_tensor_value_info("input", TensorProto.FLOAT, self.x_shape)
        self.shapes = {"input": tuple(x_shape)}
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def _const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def _node(self, op: str, inputs, shape, **attrs) -> str:
        from onnx import helper

        name = self._name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        self.shapes[name] = tuple(shape)
        return name

    def conv(self, x: str, c_out: int, k: int = 3, stride: int = 1, pads=None, dilation: int = 1,
             groups: int = 1, act: str | None = "relu") -> str:
        n, c, h, w = self.shapes[x]
        if pads is None:
            p = dilation * (k - 1) // 2
            pads = (p, p, p, p)
        pt, pl, pb, pr = pads
        oh = (h + pt + pb - dilation * (k - 1) - 1) // stride + 1
        ow = (w + pl + pr - dilation * (k - 1) - 1) // stride + 1
        fan_in = c // groups * k * k
        wt = (self.rng.standard_normal((c_out, c // groups, k, k)) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (self.rng.standard_normal(c_out) * 0.1).astype(np.float32)
        base = f"c{self.count + 1}"
        y = self._node("Conv", [x, self._const(base + "_w", wt), self._const(base + "_b", b)], (n, c_out, oh, ow),
                       kernel_shape=[k, k], strides=[stride, stride], pads=[pt, pl, pb, pr],
                       dilations=[dilation, dilation], group=groups)
        return self.act(y, act)

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        if act == "relu":
            return self._node("Relu", [x], self.shapes[x])
        if act == "relu6":
            lo = self._const(self._name("clip_min"), np.float32(0))
            hi = self._const(self._name("clip_max"), np.float32(6))
            return self._node("Clip", [x, lo, hi], self.shapes[x])
        raise ValueError(act)

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shapes[a])

    def maxpool(self, x: str, k: int, stride: int, pad: int = 0) -> str:
        n, c, h, w = self.shapes[x]
        o = lambda s: (s + 2 * pad - k) // stride + 1  # noqa: E731
        return self._node("MaxPool", [x], (n, c, o(h), o(w)), kernel_shape=[k, k], strides=[stride, stride],
                          pads=[pad] * 4)

    def avgpool(self, x: str, k: int, stride: int, pad: int = 0, count_include_pad: int = 0) -> str:
        n, c, h, w = self.shapes[x]
        o = lambda s: (s + 2 * pad - k) // stride + 1  # noqa: E731
        return self._node("AveragePool", [x], (n, c, o(h), o(w)), kernel_shape=[k, k], strides=[stride, stride],
                          pads=[pad] * 4, count_include_pad=count_include_pad)

    def concat(self, xs) -> str:
        n, _, h, w = self.shapes[xs[0]]
        return self._node("Concat", xs, (n, sum(self.shapes[x][1] for x in xs), h, w), axis=1)

    def shuffle(self, x: str, groups: int) -> str:
        n, c, h, w = self.shapes[x]
        s1 = self._const(self._name("shape"), np.array([n, groups, c // groups, h, w], np.int64))
        r = self._node("Reshape", [x, s1], (n, groups, c // groups, h, w))
        t = self._node("Transpose", [r], (n, c // groups, groups, h, w), perm=[0, 2, 1, 3, 4])
        s2 = self._const(self._name("shape"), np.array([n, c, h, w], np.int64))
        return self._node("Reshape", [t, s2], (n, c, h, w))

    def gap_fc(self, x: str, classes: int) -> str:
        n, c, _, _ = self.shapes[x]
        g = self._node("GlobalAveragePool", [x], (n, c, 1, 1))
        f = self._node("Flatten", [g], (n, c), axis=1)
        wt = (self.rng.standard_normal((classes, c)) * math.sqrt(1.0 / c)).astype(np.float32)
        b = (self.rng.standard_normal(classes) * 0.1).astype(np.float32)
        base = f"fc{self.count + 1}"
        return self._node("Gemm", [f, self._const(base + "_w", wt), self._const(base + "_b", b)], (n, classes),
                          transB=1)

    def model(self, y: str):
        from onnx import TensorProto, helper

        out = helper.make_tensor_value_info(y, TensorProto.FLOAT, list(self.shapes[y]))
        graph = helper.make_graph(self.nodes, self.name, [self.input], [out], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
        m.producer_name = "convgen.golden.netzoo"
        return m


# ---- float networks -----------------------------------------------------------------------
def every_kind_float(*, size: int = 12, seed: int = 0):
    """One layer of each kind at ``size x size`` (default 12; even, >= 8)."""
    g = _Graph("every_kind", seed, (1, 3, size, size))
    a = g.conv("input", 8, 3)                                   # standard 3x3, C_in = 3
    b = g.conv(a, 16, 3, stride=2, pads=(0, 0, 1, 1))           # strided, asymmetric pads
    d = g.conv(b, 16, 3, groups=16, act="relu6")                # depthwise 3x3, ReLU6
    p = g.conv(d, 16, 1, act=None)                              # pointwise, linear
    r = g.add(p, b)                                             # residual add
    m = g.maxpool(r, 2, 2)                                      # max pool
    e1 = g.conv(m, 8, 1)                                        # concat branches: pointwise
    e2 = g.conv(m, 8, 3, dilation=2)                            # dilated 3x3
    e3 = g.conv(m, 8, 3, groups=4, act=None)                    # grouped, linear (negative values)
    c = g.concat([e1, e2, e3])                                  # concat
    s = g.shuffle(c, 2)                                         # channel shuffle: Reshape/Transpose
    v = g.avgpool(s, 3, 1, pad=1)                               # average pool, count_include_pad = 0
    t = g.conv(v, 12, 5, stride=2, pads=(2, 1, 2, 2), act="relu6")  # 5x5, stride 2, C_out not a power of 2
    return g.model(g.gap_fc(t, 10))                             # global average pool, flatten, Gemm


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


#: MobileNetV2's inverted-residual stages: expansion t, channels c, repeats n, first stride s
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2_float(*, size: int = 224, width: float = 1.0, classes: int = 1000, seed: int = 0):
    """MobileNetV2 (Sandler et al. 2018) at ``size x size`` with width multiplier ``width``."""
    g = _Graph("mobilenet_v2", seed, (1, 3, size, size))
    c_in = _divisible(32 * width)
    x = g.conv("input", c_in, 3, stride=2, act="relu6")
    for t, c, n, s in MOBILENET_V2_STAGES:
        c_out = _divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            y = x if t == 1 else g.conv(x, c_in * t, 1, act="relu6")
            y = g.conv(y, c_in * t, 3, stride=stride, groups=c_in * t, act="relu6")
            y = g.conv(y, c_out, 1, act=None)
            x = g.add(y, x) if stride == 1 and c_in == c_out else y
            c_in = c_out
    x = g.conv(x, _divisible(1280 * max(1.0, width)), 1, act="relu6")
    return g.model(g.gap_fc(x, classes))


def resnet_float(*, size: int = 224, blocks=(3, 4, 6, 3), width: int = 64, classes: int = 1000, seed: int = 0):
    """Bottleneck ResNet (v1.5: the stride on the 3x3); ResNet-50 is the default."""
    g = _Graph("resnet", seed, (1, 3, size, size))
    x = g.conv("input", width, 7, stride=2)
    x = g.maxpool(x, 3, 2, pad=1)
    for stage, n in enumerate(blocks):
        mid = width * 2 ** stage
        for i in range(n):
            stride = 2 if i == 0 and stage > 0 else 1
            y = g.conv(x, mid, 1)
            y = g.conv(y, mid, 3, stride=stride)
            y = g.conv(y, mid * 4, 1, act=None)
            short = g.conv(x, mid * 4, 1, stride=stride, act=None) if i == 0 else x
            x = g.act(g.add(y, short), "relu")
    return g.model(g.gap_fc(x, classes))


def light_models() -> dict:
    """The onnx wheel's ``light_*.onnx`` models: name -> path."""
    import onnx

    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(d.glob("*.onnx"))}


#: light models whose every op the quantized executor supports after quantization
LIGHT_MODELS = ("resnet50", "shufflenet", "squeezenet", "vgg19")


def light_float(name: str, *, seed: int = 0, size: int | None = None):
    """``light_<name>.onnx`` with seeded random weights, BatchNormalization folded, no Dropout or
    Softmax, opset 13. ``size`` changes the input's spatial size (models that end in a
    Reshape to a fixed length need 224)."""
    import onnx
    from onnx import helper, numpy_helper, version_converter

    paths = light_models()
    if name not in paths:
        raise ConfigError(f"light model must be one of {', '.join(paths)}, not {name!r}")
    m = onnx.load(str(paths[name]))
    rng = np.random.default_rng(seed)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict = {}
    for node in g.node:
        for k, i in enumerate(node.input):
            consumers.setdefault(i, []).append((node, k))
    new_nodes = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
            value = _random_param(rng, shape, consumers.get(node.output[0], []))
            g.initializer.append(numpy_helper.from_array(value, node.output[0]))
            continue
        new_nodes.append(node)
    # Dropout -> identity (rename its consumers' inputs), Sum(a, b) -> Add, drop the final Softmax
    rename = {}
    kept = []
    for node in new_nodes:
        for k, i in enumerate(node.input):
            if i in rename:
                node.input[k] = rename[i]
        if node.op_type == "Dropout":
            rename[node.output[0]] = node.input[0]
            continue
        if node.op_type == "Sum" and len(node.input) == 2:
            node = helper.make_node("Add", list(node.input), list(node.output), name=node.name or node.output[0])
        kept.append(node)
    outputs = {o.name for o in g.output}
    while kept and kept[-1].op_type == "Softmax" and kept[-1].output[0] in outputs:
        last = kept.pop()
        outputs = {last.input[0]}
    for node in kept:
        if not node.name:
            node.name = node.output[0]
    del g.node[:]
    g.node.extend(kept)
    out_name = next(iter(outputs))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, None))
    # keep only real inputs (initializers are not inputs), drop unused initializers
    used = {i for n in g.node for i in n.input}
    keep_inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    names = {i.name for i in g.initializer}
    real = [i for i in g.input if i.name not in names and i.name in used]
    if size is not None:
        real[0].type.tensor_type.shape.dim[2].dim_value = size
        real[0].type.tensor_type.shape.dim[3].dim_value = size
    del g.input[:]
    g.input.extend(real)
    del g.value_info[:]
    m.ir_version = max(m.ir_version, 7)  # initializers need not be graph inputs
    m = version_converter.convert_version(m, OPSET)
    return _ort_optimize(m)


def _random_param(rng, shape, uses) -> np.ndarray:
    """A seeded value for a ConstantOfShape weight, by what consumes it."""
    role = None
    for node, k in uses:
        role = (node.op_type, k)
        break
    if role in (("Conv", 1), ("Gemm", 1), ("FC", 1)):
        fan_in = int(np.prod(shape[1:])) if role[0] == "Conv" else int(shape[-1])
        gain = 2.0 if role[0] == "Conv" else 1.0
        return (rng.standard_normal(shape) * math.sqrt(gain / fan_in)).astype(np.float32)
    if role is not None and role[0] == "BatchNormalization":
        if role[1] == 1:    # scale
            return rng.uniform(0.5, 1.0, shape).astype(np.float32)
        if role[1] == 4:    # variance
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def _ort_optimize(m):
    """ORT's basic graph optimizations (BatchNormalization folded into Conv, constants folded),
    as ``onnxruntime.quantization.quant_pre_process`` does before quantizing."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="convgen-zoo-") as tmp:
        out = Path(tmp) / "opt.onnx"
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(out)
        ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(str(out))
    return onnx.shape_inference.infer_shapes(opt)


# ---- quantization -------------------------------------------------------------------------
def input_shape(model) -> tuple:
    """The static shape of the model's one input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(int(d.dim_value) for d in dims)


def calibration_inputs(model, n: int, seed: int) -> list:
    """``n`` seeded standard-normal inputs of the model's input shape (float32)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(input_shape(model)).astype(np.float32) for _ in range(n)]


def quantize(float_model, fmt: str, *, per_channel: bool = True, calibration: int = 4, seed: int = 0):
    """``quantize_static`` with int8 activations and weights, MinMax calibration on
    ``calibration`` seeded random inputs. Returns a ModelProto."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    check_choice("format", fmt, FORMATS)
    name = float_model.graph.input[0].name
    data = calibration_inputs(float_model, calibration, seed + 1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory(prefix="convgen-zoo-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "q.onnx"
        onnx.save(float_model, str(src))
        quantize_static(str(src), str(dst), Reader(),
                        quant_format=QuantFormat.QOperator if fmt == "qoperator" else QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return onnx.load(str(dst))


# ---- the cache ----------------------------------------------------------------------------
def _every_kind(size=12, seed=0):
    return every_kind_float(size=size, seed=seed)


def _mobilenet_v2(size=96, width=1.0, classes=1000, seed=0):
    return mobilenet_v2_float(size=size, width=width, classes=classes, seed=seed)


def _resnet(size=64, blocks=(1, 1, 1, 1), width=16, classes=100, seed=0):
    return resnet_float(size=size, blocks=tuple(blocks), width=width, classes=classes, seed=seed)


def _light(name="squeezenet", seed=0, size=None):
    return light_float(name, seed=seed, size=size)


#: builder name -> float-model builder (keyword parameters with defaults)
BUILDERS = {"every_kind": _every_kind, "mobilenet_v2": _mobilenet_v2, "resnet": _resnet, "light": _light}


def _key(builder: str, fmt: str, params: dict, per_channel: bool, calibration: int) -> str:
    import onnx
    import onnxruntime

    blob = json.dumps({"builder": builder, "format": fmt, "params": params, "per_channel": per_channel,
                       "calibration": calibration, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                       "zoo": ZOO_VERSION}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_path(builder: str, fmt: str = "qoperator", *, per_channel: bool = True, calibration: int = 4,
               **params) -> Path:
    """The cached quantized model's path (built first if absent)."""
    check_choice("builder", builder, BUILDERS)
    check_choice("format", fmt, FORMATS)
    check_int("calibration", calibration, 1, 1000)
    key = _key(builder, fmt, params, per_channel, calibration)
    tag = params.get("name", builder)
    path = cache_root() / "models" / f"{tag}-{fmt}-{key}.onnx"
    if not path.exists():
        float_model = BUILDERS[builder](**params)
        q = quantize(float_model, fmt, per_channel=per_channel, calibration=calibration,
                     seed=int(params.get("seed", 0)))
        q.doc_string = json.dumps({"builder": builder, "format": fmt, "params": params}, default=list)
        atomic_write_bytes(path, q.SerializeToString())
    return path


def build(builder: str, fmt: str = "qoperator", **kw):
    """The quantized ModelProto (from the cache when it is there)."""
    import onnx

    return onnx.load(str(build_path(builder, fmt, **kw)))


def every_kind(fmt: str = "qoperator", **params):
    return build("every_kind", fmt, **params)


def mobilenet_v2(fmt: str = "qoperator", **params):
    return build("mobilenet_v2", fmt, **params)


def resnet(fmt: str = "qoperator", **params):
    return build("resnet", fmt, **params)


def light(name: str, fmt: str = "qoperator", **params):
    return build("light", fmt, name=name, **params)


# ---- models the importer must refuse (its tests use them) -----------------------------------
def with_unsupported_op(model, name: str = "my_lrn"):
    """A copy of a quantized ``model`` with an LRN node (no quantized form) in front of its
    first MaxPool."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto.FromString(model.SerializeToString())
    nodes = list(m.graph.node)
    i = next(k for k, n in enumerate(nodes) if n.op_type == "MaxPool")
    lrn = helper.make_node("LRN", [nodes[i].input[0]], ["lrn_out"], name=name, size=3)
    nodes[i].input[0] = "lrn_out"
    del m.graph.node[:]
    m.graph.node.extend(nodes[:i] + [lrn] + nodes[i:])
    return m


def with_dynamic_input(model):
    """A copy of ``model`` whose input has symbolic batch, height and width (``N x C x H x W``)."""
    import onnx

    m = onnx.ModelProto.FromString(model.SerializeToString())
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "N", "H", "W"
    return m
