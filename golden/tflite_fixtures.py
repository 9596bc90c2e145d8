"""Tiny int8 TFLite models (one CONV_2D or DEPTHWISE_CONV_2D) written as flatbuffers, the
real TFLite interpreter (LiteRT, ``ai_edge_litert``) run on each of its three int8 execution
paths, and the golden model of each path.

A fixture is a float-free description of one quantized layer: int8 input (NHWC) and weights,
int32 bias, per-channel weight scales, input/output scales and zero points, a fused
activation. :func:`build_model` writes it as a ``.tflite`` flatbuffer with the ``tflite``
schema package (no TensorFlow), :func:`run_path` runs it on

=========  ==========================================  =====================
path       LiteRT ``experimental_op_resolver_type``    golden rounding mode
=========  ==========================================  =====================
``ref``    ``BUILTIN_REF`` (reference kernels)          ``tflite``
``opt``    ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``        ``tflite_opt``
``xnnpack````AUTO`` (XNNPACK delegate, the default)     ``xnnpack``
=========  ==========================================  =====================

and :func:`golden_path` computes what the path should output: the exact integer convolution
(:func:`convgen.golden.conv.conv2d_nchw`) requantized in that path's mode, with the activation
bounds derived that path's way (docs/requant.md, "TFLite's three int8 paths").

Every fixture has at least two output channels and a per-channel weight quantization (one scale
per output channel, ``quantized_dimension`` 0 for CONV_2D, 3 for DEPTHWISE_CONV_2D), also when
the scales are equal: XNNPACK then runs its ``qc8w`` kernels, whose requantization is fp32 on
every CPU (its per-tensor ``qs8`` kernels use fixed-point "rndnu" arithmetic on ARM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError

from .conv import conv2d_nchw
from .quant import quantize_multiplier, tflite_activation_bounds, xnnpack_activation_bounds, xnnpack_scale
from .requant import RequantParams, requantize

__all__ = ["PATHS", "PATH_MODE", "ACTIVATIONS", "ConvFixture", "build_model", "run_path", "accumulators",
           "golden_path", "opt_ties_up_channels", "path_params", "designed_fixtures", "random_fixtures", "relu6_tie_scale",
           "carry_scales", "x86_without_avx", "litert_outputs"]

#: the three int8 execution paths of TFLite and the golden rounding mode of each
PATHS = ("ref", "opt", "xnnpack")
PATH_MODE = {"ref": "tflite", "opt": "tflite_opt", "xnnpack": "xnnpack"}
_RESOLVER = {"ref": "BUILTIN_REF", "opt": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "xnnpack": "AUTO"}

#: fused activations and their float limits (TFLite ``ActivationFunctionType``)
ACTIVATIONS = {"none": (None, None), "relu": (0.0, None), "relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0)}


@dataclass(frozen=True)
class ConvFixture:
    """One int8 layer. ``x``: int8 ``[1, H, W, Cin]``; ``w``: int8 ``[Cout, kh, kw, Cin]``
    (``op="conv"``) or ``[1, kh, kw, Cout]`` (``op="depthwise"``, depth multiplier 1);
    ``bias``: int32 ``[Cout]``; ``w_scale``: float32 ``[Cout]``; padding ``"VALID"`` or
    ``"SAME"``."""

    name: str
    op: str
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray
    in_scale: float
    in_zp: int
    w_scale: np.ndarray
    out_scale: float
    out_zp: int
    activation: str = "none"
    stride: int = 1
    padding: str = "VALID"
    note: str = field(default="", compare=False)

    @property
    def channels(self) -> int:
        return int(self.w.shape[0] if self.op == "conv" else self.w.shape[3])


# ---------------------------------------------------------------------------------------------
# flatbuffer writer
# ---------------------------------------------------------------------------------------------

def build_model(fx: ConvFixture) -> bytes:
    """The fixture as a ``.tflite`` flatbuffer (``golden.tflite_net.write_model``): tensors
    input, filter, bias, output; one CONV_2D or DEPTHWISE_CONV_2D."""
    from .tflite_net import Graph, OpInfo, TensorInfo, write_model

    _check(fx)
    cout = fx.channels
    oh, ow = _out_hw(fx)
    bias_scale = (np.float32(fx.in_scale) * fx.w_scale.astype(np.float32)).astype(np.float32)
    zeros = np.zeros(cout, np.int64)
    tensors = [
        TensorInfo("input", tuple(fx.x.shape), "int8", np.array([fx.in_scale], np.float32), np.array([fx.in_zp])),
        TensorInfo("filter", tuple(fx.w.shape), "int8", fx.w_scale.astype(np.float32), zeros,
                   0 if fx.op == "conv" else 3, np.asarray(fx.w, np.int8)),
        TensorInfo("bias", (cout,), "int32", bias_scale, zeros, 0, np.asarray(fx.bias, np.int32)),
        TensorInfo("output", (1, oh, ow, cout), "int8", np.array([fx.out_scale], np.float32), np.array([fx.out_zp])),
    ]
    kind = "CONV_2D" if fx.op == "conv" else "DEPTHWISE_CONV_2D"
    op = OpInfo(0, kind, [0, 1, 2], [3], {"stride": fx.stride, "padding": fx.padding, "activation": fx.activation})
    return write_model(Graph(tensors, [op], [0], [3]), f"convgen fixture {fx.name}")


# ---------------------------------------------------------------------------------------------
# the interpreter
# ---------------------------------------------------------------------------------------------

def run_path(model: bytes, x, path: str, *, check_delegated: bool = True) -> np.ndarray:
    """Run ``model`` on input ``x`` (an int8 array, or a list of them for a model with several
    inputs; each is cast to its input's type: int8, uint8 or float32) with LiteRT on ``path``
    (``"ref"``, ``"opt"``, ``"xnnpack"``), single-threaded; an int8/uint8 output as int64, a
    float32 one as float32.
    For ``"xnnpack"`` the operator must have been taken by the XNNPACK delegate (with
    ``check_delegated``): a node XNNPACK refuses silently falls back to the optimized kernels,
    which would make the comparison meaningless."""
    from ai_edge_litert import interpreter as litert

    if path not in PATHS:
        raise ConfigError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
    interp = litert.Interpreter(model_content=model, num_threads=1,
                                experimental_op_resolver_type=getattr(litert.OpResolverType, _RESOLVER[path]))
    interp.allocate_tensors()
    if check_delegated:
        # a delegated node stays in the node list, followed by the DELEGATE node that replaces it
        ops = [op["op_name"] for op in interp._get_ops_details()]
        delegated = "DELEGATE" in ops
        if delegated != (path == "xnnpack"):
            raise RuntimeError(f"path {path!r}: the interpreter ran {ops}, "
                               f"{'not ' if path == 'xnnpack' else ''}the XNNPACK delegate")
    inputs = x if isinstance(x, (list, tuple)) else [x]
    for d, v in zip(interp.get_input_details(), inputs):
        interp.set_tensor(d["index"], np.ascontiguousarray(v, dtype=d["dtype"]))
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"])
    return y.astype(np.float32) if y.dtype == np.float32 else y.astype(np.int64)


def x86_without_avx() -> bool:
    """True on an x86 CPU that lacks AVX: TFLite then runs the optimized CONV_2D on gemmlowp
    (ties away from zero) instead of ruy, so ``opt`` CONV_2D outputs are not ``tflite_opt``'s."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return True  # unknown: be conservative
    return flags is None or "avx" not in flags


def litert_outputs(fixtures) -> dict:
    """``{(fixture name, path): LiteRT's output}`` for every fixture on every path."""
    out = {}
    for fx in fixtures:
        model = build_model(fx)
        for path in PATHS:
            out[fx.name, path] = run_path(model, fx.x, path)
    return out


# ---------------------------------------------------------------------------------------------
# golden models
# ---------------------------------------------------------------------------------------------

def _check(fx: ConvFixture) -> None:
    if fx.op not in ("conv", "depthwise"):
        raise ConfigError(f"op must be 'conv' or 'depthwise', not {fx.op!r}")
    if fx.activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {fx.activation!r}")
    if fx.padding not in ("VALID", "SAME"):
        raise ConfigError(f"padding must be 'VALID' or 'SAME', not {fx.padding!r}")
    if fx.x.ndim != 4 or fx.x.shape[0] != 1 or fx.w.ndim != 4:
        raise ConfigError("x must be [1, H, W, Cin] and w 4-D")
    cin = fx.x.shape[3]
    if fx.op == "conv" and fx.w.shape[3] != cin or fx.op == "depthwise" and (fx.w.shape[0] != 1 or fx.w.shape[3] != cin):
        raise ConfigError(f"weights {fx.w.shape} do not fit input {fx.x.shape} for {fx.op}")
    if fx.channels < 2 or fx.w_scale.shape != (fx.channels,) or fx.bias.shape != (fx.channels,):
        raise ConfigError("fixtures have >= 2 output channels, one weight scale and one bias per channel")


def _pads(size: int, k: int, stride: int, padding: str) -> tuple[int, int, int]:
    """TFLite's output size and (before, after) padding of one spatial axis."""
    if padding == "VALID":
        return (size - k) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def _out_hw(fx: ConvFixture) -> tuple[int, int]:
    kh, kw = fx.w.shape[1:3]
    return _pads(fx.x.shape[1], kh, fx.stride, fx.padding)[0], _pads(fx.x.shape[2], kw, fx.stride, fx.padding)[0]


def accumulators(fx: ConvFixture) -> np.ndarray:
    """Exact ``sum (x - zx) * w`` (no bias) as int64 NHWC, by the one convolution oracle;
    padding contributes zero, as TFLite pads with the input zero point."""
    _check(fx)
    _, h, wd, cin = fx.x.shape
    kh, kw = fx.w.shape[1:3]
    _, pt, pb = _pads(h, kh, fx.stride, fx.padding)
    _, pl, pr = _pads(wd, kw, fx.stride, fx.padding)
    if fx.op == "conv":
        w_nchw, groups = fx.w.transpose(0, 3, 1, 2), 1
    else:
        w_nchw, groups = fx.w.transpose(3, 0, 1, 2), cin
    layer = ConvLayer.square(h, wd, cin, (kh, kw), fx.stride, (pt, pl, pb, pr), 1, groups, c_out=fx.channels)
    acc = conv2d_nchw(fx.x.transpose(0, 3, 1, 2).astype(np.int64), w_nchw.astype(np.int64), layer, fx.in_zp, 0)
    return acc.transpose(0, 2, 3, 1)


def path_params(fx: ConvFixture, path: str) -> RequantParams:
    """The requantization parameters path ``path`` derives from the fixture's scales. For ``opt``
    the channels that TFLite's optimized kernels round like the reference ones are marked
    ``round_away`` (:func:`opt_ties_up_channels`)."""
    lo, hi = ACTIVATIONS[fx.activation]
    mode = PATH_MODE[path]
    if mode == "xnnpack":
        act_min, act_max = xnnpack_activation_bounds(lo, hi, fx.out_scale, fx.out_zp)
        scale = xnnpack_scale(fx.in_scale, fx.w_scale, fx.out_scale)
        return RequantParams.make("xnnpack", fx.channels, bias=fx.bias, scale=scale, zero_point=fx.out_zp,
                                  act_min=act_min, act_max=act_max)
    act_min, act_max = tflite_activation_bounds(lo, hi, fx.out_scale, fx.out_zp)
    # TFLite PopulateConvolutionQuantizationParams: double(input_scale) * double(filter_scale[c])
    # / double(output_scale), then QuantizeMultiplier
    real = float(np.float32(fx.in_scale)) * fx.w_scale.astype(np.float32).astype(np.float64) / float(np.float32(fx.out_scale))
    qm = [quantize_multiplier(r) for r in real]
    away = ~opt_ties_up_channels(fx) if mode == "tflite_opt" else None
    return RequantParams.make(mode, fx.channels, bias=fx.bias, multiplier=[m for m, _ in qm],
                              shift=[s for _, s in qm], zero_point=fx.out_zp, act_min=act_min, act_max=act_max,
                              round_away=away)


def opt_ties_up_channels(fx: ConvFixture) -> np.ndarray:
    """Per output channel: does TFLite's optimized path round it with ``tflite_opt`` (ties up)
    rather than ``tflite`` (RoundingDivideByPOT)?

    - CONV_2D: every channel (ruy's kernels: SQRDMULH + SRSHL on NEON; the same on x86 AVX,
      AVX2+FMA and AVX-512, each measured by forcing ruy's path with ``RUY_PATHS``).
    - DEPTHWISE_CONV_2D (``optimized_integer_ops::DepthwiseConvPerChannel``): the output stage
      converts whole blocks of 8 channels with NEON code (SQRDMULH + a rounding shift; NEON_2_SSE
      on x86) and the remaining ``C mod 8`` channels with scalar code that rounds like the
      reference ``MultiplyByQuantizedMultiplier``: channel ``c`` rounds ties up iff
      ``c < 8 * (C // 8)`` (measured on 165,738 outputs of 300 random layers, 0 exceptions).
    """
    c = fx.channels
    if fx.op == "conv":
        return np.ones(c, dtype=bool)
    return np.arange(c) < 8 * (c // 8)


def golden_path(fx: ConvFixture, path: str) -> np.ndarray:
    """What TFLite path ``path`` outputs for the fixture, NHWC int64 (for ``opt`` the final
    shift's rounding is chosen per channel: ``round_away`` in :func:`path_params`)."""
    return requantize(accumulators(fx), path_params(fx, path))


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------

def _f32(v) -> float:
    return float(np.float32(v))


def relu6_tie_scale(k: int, limit: float = 6.0) -> float:
    """A float32 output scale ``s`` with ``float32(limit / s) == k + 0.5`` exactly: the ReLU6
    bound is an exact .5 tie, which TFLite rounds away from zero and XNNPACK to even."""
    s = np.float32(limit / (k + 0.5))
    for _ in range(64):
        q = np.float32(limit) / s
        if q == np.float32(k + 0.5):
            return float(s)
        s = np.nextafter(s, np.float32(0) if q < k + 0.5 else np.float32(np.inf))
    raise ConfigError(f"no float32 scale makes {limit}/s == {k}.5")


def carry_scales(count: int, seed: int = 1) -> tuple[float, float, list[float]]:
    """``(in_scale, out_scale, [w_scale, ...])``: float32 scales whose TFLite real multiplier
    ``in*w/out`` (in double) lies within ``2**-33`` below a power of two, so that
    QuantizeMultiplier's ``round(q * 2**31)`` reaches ``2**31`` and carries into the shift.
    The ``w`` scales are ``b * 2**-j``, ``j = 0..count-1``."""
    rng = np.random.default_rng(seed)
    while True:
        a = np.float32(rng.uniform(0.5, 1.0))
        b = np.float32(rng.uniform(0.5, 1.0))
        c = np.float32(np.float64(a) * np.float64(b))
        real = float(a) * float(b) / float(c)
        q, _ = math.frexp(real)
        if real < 1.0 and round(q * 2 ** 31) == 2 ** 31:
            return float(a), float(c), [float(b) * 2.0 ** -j for j in range(count)]


def _sweep_input(h: int, w: int, c: int, rng) -> np.ndarray:
    """Every int8 value in every channel (in a shuffled order per channel) when h*w >= 256."""
    x = np.empty((1, h, w, c), dtype=np.int8)
    base = np.resize(np.arange(-128, 128, dtype=np.int64), h * w)
    for ch in range(c):
        x[0, :, :, ch] = rng.permutation(base).reshape(h, w).astype(np.int8)
    return x


def designed_fixtures() -> list[ConvFixture]:
    """Fixtures made to separate the paths and to reach their corners (docs/requant.md):

    - ``ties_pow2``: power-of-two effective scales ``2**-1 .. 2**-8`` with accumulators that
      take every value of a 256-wide window (1x1 depthwise, weight 1, input sweeping all
      int8): every exact tie, positive and negative;
    - ``ties_pow2_w3``: the same with odd weights (3, -5, 7) and input zero point 5;
    - ``carry``: real multipliers just below a power of two (QuantizeMultiplier's carry to
      ``2**31``), including an effective scale of 1 - 2**-33;
    - ``positive_shift``: effective scales 1, 1.5, 2, 3.25, 4, 7.75, 100, 255 (TFLite left shifts;
      XNNPACK accepts scales below 256);
    - ``left_shift_wrap``: positive shifts whose ``acc << shift`` overflows int32;
    - ``saturate``: biases far beyond both ends of int8;
    - ``near_int32_max``: SRDHM results so close to INT32_MAX that adding ``2**(e-1)`` leaves int32;
    - ``relu6_tie``, ``relu_n1_tie``: output scales whose ReLU6 / ReLU_N1_TO_1 bounds are exact
      .5 ties, zero points even (TFLite rounds them away from zero, XNNPACK to even);
    - ``conv_pow2``: a 3x3 CONV_2D with power-of-two scales (ties through the GEMM kernels).
    """
    rng = np.random.default_rng(16)
    fixtures: list[ConvFixture] = []

    def dw1x1(name, weights, w_scales, bias, *, in_scale=1.0, in_zp=0, out_scale=1.0, out_zp=0,
              activation="none", note="", op="depthwise"):
        """1x1 layer whose channel c computes acc = (x - in_zp) * weights[c] + bias[c] for every
        int8 x: a depthwise conv, or (``op="conv"``) a conv with one input channel."""
        c = len(weights)
        if op == "conv":
            w = np.asarray(weights, dtype=np.int8).reshape(c, 1, 1, 1)
            x = _sweep_input(16, 16, 1, rng)
        else:
            w = np.asarray(weights, dtype=np.int8).reshape(1, 1, 1, c)
            x = _sweep_input(16, 16, c, rng)
        return ConvFixture(name, op, x, w, np.asarray(bias, dtype=np.int32), _f32(in_scale), int(in_zp),
                           np.asarray(w_scales, dtype=np.float32), _f32(out_scale), int(out_zp), activation,
                           note=note)

    # exact ties: scale 2**-e, acc = x + bias covers 256 consecutive integers around the bias
    es = list(range(1, 9))
    fixtures.append(dw1x1("ties_pow2", [1] * 8, [2.0 ** -e for e in es],
                          [0, -3, 17, -100, 300, -700, 1000, -2000],
                          note="every exact tie of 2**-1..2**-8, both signs"))
    fixtures.append(dw1x1("ties_pow2_conv", [1] * 8, [2.0 ** -e for e in es],
                          [0, -3, 17, -100, 300, -700, 1000, -2000], op="conv",
                          note="the same ties through CONV_2D (ruy's GEMM kernels)"))
    fixtures.append(dw1x1("ties_pow2_w3", [3, -5, 7, 3, -5, 7, 1, 1, 3, -5], [2.0 ** -e for e in (2, 3, 4, 5, 6, 7, 8, 2, 3, 4)],
                          [1, -2, 3, 40, -55, 6, 0, 0, 1, -2], in_zp=5, out_zp=-3,
                          note="odd weights, input zero point 5, 10 channels (8 vector + 2 scalar in opt)"))
    # QuantizeMultiplier's carry
    a, c, ws = carry_scales(8)
    for op in ("depthwise", "conv"):
        fixtures.append(dw1x1(f"carry_{op}", [1, 2, 3, -1, 5, 7, 1, -3], ws, [0, 1, -1, 64, -64, 3, 200, -200],
                              in_scale=a, out_scale=c, op=op, note="M rounds to 2**31 and carries into the shift"))
    # positive shifts (effective scale >= 1): in 1, w s, out 1
    pos = [1.0, 1.5, 2.0, 3.25, 4.0, 7.75, 100.0, 255.0]
    fixtures.append(dw1x1("positive_shift", [1, 1, 1, 1, 1, -1, 1, 1], pos, [0, 1, -1, 2, -3, 5, 0, 0],
                          in_zp=-1, note="effective scales 1 .. 255"))
    # left shifts that overflow int32: TFLite wraps x << left (C: undefined behaviour; the
    # compiled kernels wrap, as convgen defines it), XNNPACK's float product saturates
    fixtures.append(dw1x1("left_shift_wrap", [1] * 8, [4.0, 4.0, 2.0, 2.0, 8.0, 4.0, 4.0, 16.0],
                          [2 ** 29, -(2 ** 29), 2 ** 30 - 50, -(2 ** 30) + 50, 2 ** 28 + 7, 3 * 2 ** 28,
                           -3 * 2 ** 28, 2 ** 27], note="acc << shift wraps in TFLite, saturates in XNNPACK"))
    # saturation at both ends
    fixtures.append(dw1x1("saturate", [1, 1, 1, 1, 1, 1, 1, 1], [2.0 ** -3, 2.0 ** -3, 0.37, 0.37, 2.0 ** -8, 2.0 ** -8, 1.0, 1.0],
                          [2 ** 20, -(2 ** 20), 2 ** 31 - 200, -(2 ** 31) + 200, 140 * 256 + 127, -140 * 256 - 128, 200, -200],
                          out_zp=10, note="results beyond both ends of int8"))
    # accumulators near INT32_MAX with M = 2**31 - 128: SRDHM + 2**(e-1) exceeds int32 (the
    # scalar kUpward code would wrap in 32 bits; the vector kernels do not, nor does the golden)
    fixtures.append(dw1x1("near_int32_max", [1] * 8, [(1 - 2.0 ** -24) * 2.0 ** -e for e in (1, 8, 9, 10, 12, 16, 20, 30)],
                          [2 ** 31 - 129] * 8, note="rounding offset beyond int32"))
    # ReLU6 and ReLU_N1_TO_1 bounds at exactly .5 (even zero points)
    for name, act, lim, ks in (("relu6_tie", "relu6", 6.0, (12, 40)), ("relu_n1_tie", "relu_n1_to_1", 1.0, (20, 50))):
        for k in ks:
            s = relu6_tie_scale(k, lim)
            fixtures.append(dw1x1(f"{name}_{k}", [1] * 8, [s * 0.25, s * 0.5, s, s * 2.0, s * 0.125, s, s * 3, s / 3],
                                  [0, 7, -9, 30, 100, -100, 0, 0], out_scale=s, out_zp=-2 if act == "relu6" else 4, activation=act,
                                  note=f"{lim}/out_scale == {k}.5 exactly"))
    # a real CONV_2D (GEMM kernels) with power-of-two scales: ties through im2col + GEMM
    x = rng.integers(-128, 128, size=(1, 8, 8, 4), dtype=np.int64).astype(np.int8)
    w = rng.integers(-4, 5, size=(8, 3, 3, 4), dtype=np.int64).astype(np.int8)
    fixtures.append(ConvFixture("conv_pow2", "conv", x, w, rng.integers(-300, 300, 8).astype(np.int32),
                                0.5, 3, np.asarray([2.0 ** -e for e in range(2, 10)], dtype=np.float32), 1.0, -1,
                                "none", 1, "SAME", note="3x3 CONV_2D, SAME, power-of-two scales"))
    return fixtures


def random_fixtures(count: int, seed: int = 0) -> list[ConvFixture]:
    """Realistic random int8 layers (MobileNet-like scales), alternating CONV_2D and
    DEPTHWISE_CONV_2D, strides 1/2, VALID/SAME, all four activations."""
    rng = np.random.default_rng(seed)
    acts = list(ACTIVATIONS)
    out = []
    for i in range(count):
        op = "conv" if i % 2 == 0 else "depthwise"
        h = int(rng.integers(5, 11))
        k = int(rng.choice([1, 3, 3, 5]))
        k = min(k, h)
        cin = int(rng.integers(2, 9))
        cout = int(rng.integers(2, 17)) if op == "conv" else cin
        x = rng.integers(-128, 128, size=(1, h, h, cin)).astype(np.int8)
        if op == "conv":
            w = rng.integers(-127, 128, size=(cout, k, k, cin)).astype(np.int8)
        else:
            w = rng.integers(-127, 128, size=(1, k, k, cin)).astype(np.int8)
        in_scale = _f32(rng.uniform(0.005, 0.05))
        w_scale = rng.uniform(0.001, 0.02, size=cout).astype(np.float32)
        fan_in = k * k * (cin if op == "conv" else 1)
        # out scale so that the outputs spread over int8 (std of acc ~ 74*74*sqrt(fan_in))
        out_scale = _f32(in_scale * float(np.median(w_scale)) * 74 * 74 * math.sqrt(fan_in) / 40)
        bias = rng.integers(-2000 * fan_in, 2000 * fan_in, size=cout).astype(np.int32)
        out.append(ConvFixture(f"random{i}_{op}", op, x, w, bias, in_scale, int(rng.integers(-20, 21)), w_scale,
                               out_scale, int(rng.integers(-10, 11)), acts[i % len(acts)], int(rng.choice([1, 2])),
                               str(rng.choice(["VALID", "SAME"]))))
    return out
