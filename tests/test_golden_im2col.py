"""golden/im2col.py against independent oracles, and the Python-side layer checks.

- im2col-GEMM convolution == direct convolution by loops, on random layers of every category;
- the closed-form address stream, read through the memory model, rebuilds the sliced im2col
  matrix; the indirection stream equals the loop-built indirection buffer;
- the address stream in the element order the hardware documents (plain Python loops here);
- every bad parameter raises ConfigError naming it; invalid raw configurations that the
  hardware must reject are rejected by ConvLayer first.
"""

import zlib

import numpy as np
import pytest

from convgen.golden.conv import conv2d_nhwc
from convgen.golden.im2col import (address_stream, conv_im2col, gather, im2col,
                                   indirection_buffer)
from convgen.core.layer import ConvLayer
from convgen.hdl.im2col import Im2colConfig
from convgen.core.params import ConfigError
from convgen.tb.im2col.layers import CATEGORIES, invalid_layers, onnx_conv_fixtures, random_layer

HW = Im2colConfig(max_h=12, max_w=12, max_c=8, max_kernel=7, max_stride=4, max_pad=4, max_dilation=3, tile_rows=3)


def loop_stream(lay: ConvLayer, R: int):
    """The documented order, written as the nested loops of the docstring."""
    groups = 1 if lay.indirect else lay.groups
    cg = 1 if lay.indirect else lay.c_per_group
    M = lay.out_h * lay.out_w
    out = []
    for g in range(groups):
        for t in range(-(-M // R)):
            for kh in range(lay.kh):
                for kw in range(lay.kw):
                    for c in range(cg):
                        for r in range(R):
                            m = t * R + r
                            oh, ow = divmod(m, lay.out_w)
                            ih = oh * lay.stride_h - lay.pad_top + kh * lay.dil_h
                            iw = ow * lay.stride_w - lay.pad_left + kw * lay.dil_w
                            pad = m >= M or not (0 <= ih < lay.h and 0 <= iw < lay.w)
                            a = 0 if pad else (ih * lay.w + iw) * lay.c + (0 if lay.indirect else g * cg + c)
                            out.append((a, int(pad)))
    return out


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_conv_im2col_equals_the_oracle(category):
    rng = np.random.default_rng(zlib.crc32(category.encode()) % 1000)
    for _ in range(3):
        lay = random_layer(rng, HW, category)
        if lay.indirect:
            lay = ConvLayer(**{**lay.to_dict(), "indirect": False})
        x = rng.integers(-128, 128, size=(lay.h, lay.w, lay.c))
        cout = lay.groups * int(rng.integers(1, 3))
        w = rng.integers(-128, 128, size=(cout, lay.kh, lay.kw, lay.c_per_group))
        assert np.array_equal(conv_im2col(x, w, lay), conv2d_nhwc(x, w, lay)), lay


@pytest.mark.parametrize("category", list(CATEGORIES))
@pytest.mark.parametrize("R", [1, 3, 8])
def test_stream_order_and_memory_model(category, R):
    rng = np.random.default_rng(R * 100 + len(category))
    for _ in range(3):
        lay = random_layer(rng, HW, category)
        s = address_stream(lay, R)
        assert list(zip(s["addr"].tolist(), s["pad"].tolist())) == loop_stream(lay, R)
        if lay.indirect:
            ptr, pad = indirection_buffer(lay)
            assert np.array_equal(gather(None, s, lay, R), ptr)
        else:
            x = rng.integers(-128, 128, size=(lay.h, lay.w, lay.c))
            assert np.array_equal(gather(x, s, lay, R, pad_value=-7), im2col(x, lay, pad_value=-7))
        K = lay.gemm_k
        assert s["first"].sum() == s["last"].sum() == len(s["addr"]) // K
        assert s["end"].sum() == 1 and s["end"][-1] == 1
        assert s["lane_last"].sum() == len(s["addr"]) // R


def test_onnx_fixtures_read():
    fx = dict(onnx_conv_fixtures())
    assert len(fx) >= 10
    dw = fx["test_Conv2d_depthwise_padded"]
    assert (dw.h, dw.w, dw.c, dw.kh, dw.groups, dw.pad_top) == (6, 6, 4, 3, 4, 1)
    assert fx["test_Conv2d_dilated"].dil_h == 2


def test_layer_errors_name_the_parameter():
    with pytest.raises(ConfigError, match="groups must divide c=3"):
        ConvLayer(4, 4, 3, 1, 1, groups=2)
    with pytest.raises(ConfigError, match="output height"):
        ConvLayer(2, 4, 1, 3, 1)
    with pytest.raises(ConfigError, match="output width"):
        ConvLayer(4, 2, 1, 1, 2, dil_w=2)
    with pytest.raises(ConfigError, match="stride_h must be an integer >= 1"):
        ConvLayer(4, 4, 1, 1, 1, stride_h=0)
    with pytest.raises(ConfigError, match="pad_left must be an integer >= 0"):
        ConvLayer(4, 4, 1, 1, 1, pad_left=-1)
    with pytest.raises(ConfigError, match=r"kh must be an integer in 1..7"):
        HW.check_layer(ConvLayer(9, 9, 1, 8, 1))
    with pytest.raises(ConfigError, match="max_c must be an integer in 1..4096"):
        Im2colConfig(max_c=0)
    with pytest.raises(ConfigError, match="tile_rows"):
        Im2colConfig(tile_rows=65)


@pytest.mark.parametrize("hw", [HW, Im2colConfig(max_h=5, max_w=6, max_c=3, max_kernel=2, max_stride=1, max_pad=0,
                                                 max_dilation=2, tile_rows=1)])
def test_invalid_raw_configs_rejected_in_python(hw):
    cases = invalid_layers(hw)
    assert cases
    for name, raw in cases:
        with pytest.raises(ConfigError):
            hw.check_layer(ConvLayer(**{**raw, "indirect": bool(raw["indirect"])}))
