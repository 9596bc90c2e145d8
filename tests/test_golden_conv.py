"""The convolution oracle (golden/conv.py) against plain Python loops and against ONNX Runtime.

- Python loops: every output and tap by explicit index arithmetic, on random layers of every
  kind (stride, dilation, asymmetric pads, groups, depthwise with multiplier 1 and 2, batch,
  zero points, per-channel weight zero points).
- ONNX Runtime ``ConvInteger`` (uint8 x uint8 -> int32, exact integer op; run through
  ``golden.ort.session`` so the kernel is exact on every CPU) on the same kinds of layers.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError
from convgen.golden.conv import conv2d_nchw, conv2d_nhwc
from convgen.golden.ort import session


def loops(x, w, L: ConvLayer, zx, zw):
    n = x.shape[0]
    c_out = w.shape[0]
    og = c_out // L.groups
    zw = np.broadcast_to(np.asarray(zw), (c_out,))
    y = np.zeros((n, L.out_h, L.out_w, c_out), dtype=object)
    for b in range(n):
        for oh in range(L.out_h):
            for ow in range(L.out_w):
                for o in range(c_out):
                    g, acc = o // og, 0
                    for kh in range(L.kh):
                        for kw in range(L.kw):
                            ih = oh * L.stride_h - L.pad_top + kh * L.dil_h
                            iw = ow * L.stride_w - L.pad_left + kw * L.dil_w
                            for ci in range(L.c_per_group):
                                xv = int(x[b, ih, iw, g * L.c_per_group + ci]) if (0 <= ih < L.h and 0 <= iw < L.w) else zx
                                acc += (xv - zx) * (int(w[o, kh, kw, ci]) - int(zw[o]))
                    y[b, oh, ow, o] = acc
    return y


def random_layer(rng, kind):
    c = int(rng.integers(1, 7))
    groups, mult = 1, int(rng.integers(1, 4))
    if kind == "depthwise":
        groups, mult = c, int(rng.integers(1, 3))
    elif kind == "grouped":
        c = 2 * int(rng.integers(1, 4))
        groups = 2
    k = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    d = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pads = tuple(int(p) for p in rng.integers(0, 3, 4))
    h = (k[0] - 1) * d[0] + int(rng.integers(1, 6))
    w = (k[1] - 1) * d[1] + int(rng.integers(1, 6))
    return ConvLayer.square(h, w, c, k, s, pads, d, groups, c_out=groups * mult if kind == "depthwise" else
                            groups * int(rng.integers(1, 4)), n=int(rng.integers(1, 3)))


@pytest.mark.parametrize("kind", ["standard", "grouped", "depthwise"])
def test_oracle_equals_python_loops(kind):
    rng = np.random.default_rng(["standard", "grouped", "depthwise"].index(kind))
    for _ in range(12):
        L = random_layer(rng, kind)
        x = rng.integers(-128, 128, (L.n, L.h, L.w, L.c))
        w = rng.integers(-128, 128, (L.c_out, L.kh, L.kw, L.c_per_group))
        zx = int(rng.integers(-128, 128))
        zw = rng.integers(-10, 10, L.c_out) if rng.random() < 0.5 else int(rng.integers(-10, 10))
        got = conv2d_nhwc(x, w, L, zx, zw)
        assert got.dtype == np.int64
        assert np.array_equal(got, loops(x, w, L, zx, zw)), L
        assert np.array_equal(conv2d_nchw(x.transpose(0, 3, 1, 2), w.transpose(0, 3, 1, 2), L, zx, zw),
                              got.transpose(0, 3, 1, 2))


def test_oracle_is_exact_past_int32():
    L = ConvLayer.square(3, 3, 16384, 3, c_out=1)
    x = np.full((3, 3, 16384), -128)
    w = np.full((1, 3, 3, 16384), -128)
    assert conv2d_nhwc(x, w, L)[0, 0, 0] == 9 * 16384 * 128 * 128 > 2 ** 31


def test_oracle_can_fail():
    """A wrong pad value (0 instead of the input zero point) gives a different answer."""
    L = ConvLayer.square(4, 4, 2, 3, pad=1, c_out=3)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (4, 4, 2))
    w = rng.integers(-128, 128, (3, 3, 3, 2))
    right = conv2d_nhwc(x, w, L, x_zero_point=100)
    # padding with raw 0 instead of the zero point: pad by hand, then a convolution without pads
    wrong = conv2d_nhwc(np.pad(x, ((1, 1), (1, 1), (0, 0))), w, ConvLayer.square(6, 6, 2, 3, c_out=3),
                        x_zero_point=100)
    assert not np.array_equal(right, wrong)
    assert np.array_equal(right[1:-1, 1:-1], wrong[1:-1, 1:-1])  # only the border differs


def test_oracle_rejects_bad_shapes():
    L = ConvLayer.square(4, 4, 2, 3, c_out=2)
    with pytest.raises(ConfigError, match=r"x must have shape \(n, h, w, c\)"):
        conv2d_nhwc(np.zeros((4, 4, 3)), np.zeros((2, 3, 3, 2)), L)
    with pytest.raises(ConfigError, match="w must have shape"):
        conv2d_nhwc(np.zeros((4, 4, 2)), np.zeros((2, 3, 3, 1)), L)
    with pytest.raises(ConfigError, match="w_zero_point"):
        conv2d_nhwc(np.zeros((4, 4, 2)), np.zeros((2, 3, 3, 2)), L, w_zero_point=[1, 2, 3])


def ort_conv_integer(x, w, L: ConvLayer, zx, zw):
    """ONNX ConvInteger, uint8 x uint8 -> int32, NCHW/OIHW."""
    g = helper.make_graph(
        [helper.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["y"], group=L.groups,
                          strides=list(L.stride), dilations=list(L.dilation),
                          pads=[L.pad_top, L.pad_left, L.pad_bottom, L.pad_right])],
        "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(zx, np.uint8), "zx"),
         numpy_helper.from_array(np.array(zw, np.uint8), "zw")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return session(m).run(None, {"x": x})[0]


@pytest.mark.parametrize("kind", ["standard", "grouped", "depthwise"])
def test_oracle_equals_ort_conv_integer(kind):
    rng = np.random.default_rng(10 + ["standard", "grouped", "depthwise"].index(kind))
    for _ in range(10):
        L = random_layer(rng, kind)
        x = rng.integers(0, 256, (L.n, L.c, L.h, L.w)).astype(np.uint8)
        w = rng.integers(0, 256, (L.c_out, L.c_per_group, L.kh, L.kw)).astype(np.uint8)
        zx, zw = int(rng.integers(0, 256)), int(rng.integers(0, 256))
        got = ort_conv_integer(x, w, L, zx, zw)
        assert np.array_equal(got.astype(np.int64), conv2d_nchw(x, w, L, zx, zw)), L
