"""The conv engine's golden model (golden/engine.py) against the convolution oracle
(golden/conv.py + requantize) and against ONNX Runtime's QLinearConv, on every layer category
the engine supports; the host slicing (plan) and the descriptor rules."""

import zlib

import numpy as np
import pytest

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError
from convgen.golden import engine as ge
from convgen.golden.ort import qlinear_conv

#: layer categories of issue 11 (h, w, c, k, stride, pads, dilation, groups, c_out)
CASES = {
    "1x1": ConvLayer.square(5, 6, 16, 1, c_out=12),
    "3x3_pad": ConvLayer.square(7, 6, 8, 3, 1, 1, c_out=10),
    "5x5_s2": ConvLayer.square(11, 9, 5, 5, 2, 2, c_out=7),
    "7x7_s2_c3": ConvLayer.square(13, 12, 3, 7, 2, 3, c_out=9),
    "11x11_s4_c3": ConvLayer.square(23, 21, 3, 11, 4, 2, c_out=5),
    "c1": ConvLayer.square(6, 7, 1, 3, 1, 1, c_out=4),
    "stride3": ConvLayer.square(10, 10, 4, 3, 3, 0, c_out=6),
    "asym_pads": ConvLayer.square(6, 7, 6, 3, 1, (0, 2, 1, 0), c_out=5),
    "dilation2": ConvLayer.square(9, 9, 4, 3, 1, 2, 2, c_out=8),
    "nonsquare": ConvLayer(7, 9, 5, 1, 3, 1, 2, 0, 1, 0, 1, c_out=6),
    "grouped": ConvLayer.square(6, 6, 12, 3, 1, 1, groups=3, c_out=6),
    "grouped_wide": ConvLayer.square(5, 5, 8, 3, 1, 1, groups=2, c_out=20),
    "depthwise": ConvLayer.square(7, 7, 12, 3, 1, 1, groups=12, c_out=12),
    "depthwise_s2": ConvLayer.square(9, 8, 10, 3, 2, 1, groups=10, c_out=10),
    "depthwise_m2": ConvLayer.square(6, 6, 6, 3, 1, 1, groups=6, c_out=12),
    "depthwise_5x5": ConvLayer.square(8, 8, 9, 5, 1, 2, groups=9, c_out=9),
}
ENGINES = [(2, 4, 4), (4, 4, 4), (4, 8, 8), (3, 5, 2)]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("rows,cols,vec", ENGINES)
def test_engine_golden_equals_oracle(name, rows, cols, vec):
    rng = np.random.default_rng(zlib.crc32(repr((name, rows, cols, vec)).encode()))
    for x_signed, rounding in ((True, "onnx"), (False, "tflite"), (True, "tflite_single")):
        q = ge.random_quant_conv(rng, CASES[name], x_signed=x_signed, rounding=rounding)
        want = ge.reference_conv(q)
        got = ge.engine_conv_q(q, rows=rows, cols=cols, vec=vec)
        np.testing.assert_array_equal(got, want)
        assert len(np.unique(want)) > 10  # not saturated: the comparison means something


def test_depthwise_merges_groups_block_diagonally():
    p = ge.plan(CASES["depthwise"], 8, 8, 8)
    assert (p.c_slice, p.slices, p.ntiles, p.k) == (8, 2, 2, 72)
    assert p.lane_channel[1].tolist() == [8, 9, 10, 11, -1, -1, -1, -1]
    w = ge.pack_w(np.ones((12, 3, 3, 1), np.int64), p, 0).reshape(2, 9, 8, 8)
    assert (w[0, 0] == np.eye(8)).all()           # one input channel per output lane
    p2 = ge.plan(CASES["depthwise_m2"], 8, 8, 8)
    assert (p2.c_slice, p2.ntiles) == (4, 2)      # 4 channels x multiplier 2 per tile
    # every tile keeps `rows` PEs busy per beat: useful MACs = array MACs * depth_multiplier / cols
    assert p.useful_macs <= p.array_macs


def test_plan_standard_and_grouped():
    p = ge.plan(CASES["grouped_wide"], 4, 8, 4)   # 2 groups of 10 output channels: 2 tiles each
    assert (p.c_slice, p.slices, p.tiles_per_slice, p.ntiles, p.pixel_words) == (4, 2, 2, 4, 2)
    assert p.lane_channel[1].tolist() == [8, 9, -1, -1, -1, -1, -1, -1]
    p = ge.plan(CASES["1x1"], 4, 8, 4)
    assert (p.c_slice, p.slices, p.ntiles, p.slice_words) == (16, 1, 2, 4)


LIMITS = {"vec": 4, "rows": 4, "max_h": 32, "max_w": 32, "max_kernel": 11, "max_stride": 4, "max_pad": 5,
          "max_dilation": 3, "max_pixel_words": 16, "max_tiles": 8, "max_k": 4096}


def test_descriptor_rules():
    p = ge.plan(CASES["3x3_pad"], 4, 4, 4)
    d = ge.descriptor_fields(p, x_zero_point=3, w_zero_point=0, x_signed=True)
    assert ge.descriptor_errors(d, LIMITS) == []
    for field, value in (("kh", 0), ("kh", 12), ("stride_w", 5), ("pad_top", 6), ("ntiles", 9),
                         ("slice_words", 1), ("pixel_tiles", 1), ("h", 0), ("x_zero_point", 128),
                         ("c_slice", 2000)):
        bad = dict(d, **{field: value})
        assert ge.descriptor_errors(bad, LIMITS), (field, value)
    assert ge.descriptor_errors(dict(d, x_signed=0, x_zero_point=200), LIMITS) == []


def test_bad_inputs():
    with pytest.raises(ConfigError, match="batch"):
        ge.plan(ConvLayer(3, 3, 1, n=2), 2, 2, 2)
    q = ge.random_quant_conv(np.random.default_rng(0), CASES["1x1"])
    with pytest.raises(ConfigError, match="x values"):
        ge.engine_conv(q.x + 300, q.w, q.layer, q.params, rows=2, cols=2, vec=2)


# -- ONNX Runtime --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["3x3_pad", "7x7_s2_c3", "asym_pads", "dilation2", "grouped", "depthwise",
                                  "depthwise_m2", "nonsquare"])
@pytest.mark.parametrize("x_signed", [True, False])
def test_engine_golden_equals_onnxruntime(name, x_signed):
    """ORT's QLinearConv (w zero point 0: ORT requires it for int8 weights), through the
    session helper that selects exact kernels for uint8 activations on every CPU."""
    rng = np.random.default_rng(zlib.crc32(repr((name, x_signed)).encode()))
    L = CASES[name]
    q = ge.random_quant_conv(rng, L, x_signed=x_signed, w_zero_point=0)
    xs = np.float32(0.05)
    ws = (rng.uniform(0.5, 2.0, L.c_out) * 0.01).astype(np.float32)
    ys = np.float32(float(xs) * float(ws.mean()) * 128 * 128 * np.sqrt(L.kh * L.kw * L.c_per_group) * 1.5 / 100)
    yz = 3 if x_signed else 130
    bias = rng.integers(-5000, 5000, L.c_out)
    arrays = {"x": q.x.transpose(2, 0, 1)[None].astype(np.int8 if x_signed else np.uint8),
              "w": q.w.transpose(0, 3, 1, 2).astype(np.int8), "x_scale": xs,
              "x_zero_point": np.array(q.x_zero_point, np.int8 if x_signed else np.uint8), "w_scale": ws,
              "w_zero_point": np.int8(0), "y_scale": ys,
              "y_zero_point": np.array(yz, np.int8 if x_signed else np.uint8), "B": bias.astype(np.int32),
              "strides": [L.stride_h, L.stride_w], "pads": [L.pad_top, L.pad_left, L.pad_bottom, L.pad_right],
              "dilations": [L.dil_h, L.dil_w], "group": L.groups}
    qq = ge.quant_conv_from_arrays(arrays)
    assert qq.layer.geometry() == L.geometry()
    want = qlinear_conv(arrays)[0].transpose(1, 2, 0)      # ORT, exact kernels on every CPU
    got = ge.engine_conv_q(qq, rows=4, cols=8, vec=8)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 10


@pytest.mark.parametrize("layer", [
    ConvLayer.square(23, 21, 3, 7, 2, 3, c_out=5),               # the ResNet stem at a small size
    ConvLayer.square(12, 13, 3, 7, 2, (3, 2, 2, 3), c_out=4),    # asymmetric pads
    ConvLayer.square(23, 21, 3, 11, 4, 2, c_out=5),              # AlexNet-like 11x11/4
    ConvLayer.square(9, 10, 2, 3, 2, (0, 1, 1, 0), c_out=3),     # kernel smaller than 2*stride
    ConvLayer(10, 9, 1, 4, 2, 2, 2, 1, 0, 0, 1, c_out=2),         # non-square kernel, C = 1
])
@pytest.mark.parametrize("x_signed", [True, False])
def test_space_to_depth_gives_the_same_outputs(layer, x_signed):
    """The host rewrite of a fetch-bound strided layer equals the oracle on the original layer
    (nonzero zero points: padded positions and added taps must vanish after the subtraction)."""
    rng = np.random.default_rng(layer.kh * 100 + layer.c + x_signed)
    q = ge.random_quant_conv(rng, layer, x_signed=x_signed, w_zero_point=7)
    s = layer.stride_h
    assert ge.space_to_depth_factor(layer, rows=8) == s
    q2 = ge.space_to_depth(q, s)
    assert q2.layer.c == layer.c * s * s and q2.layer.stride_h == 1 and q2.layer.pads == (0, 0, 0, 0)
    want = ge.reference_conv(q)
    np.testing.assert_array_equal(ge.reference_conv(q2), want)
    np.testing.assert_array_equal(ge.engine_conv_q(q2, rows=8, cols=4, vec=8), want)
    assert len(np.unique(want)) > 10


def test_space_to_depth_applies_only_to_fetch_bound_strided_layers():
    assert ge.space_to_depth_factor(ConvLayer.square(8, 8, 3, 3, 1, 1), rows=8) == 1       # stride 1
    assert ge.space_to_depth_factor(ConvLayer.square(8, 8, 16, 3, 2, 1), rows=8) == 1      # enough channels
    assert ge.space_to_depth_factor(ConvLayer.square(8, 8, 4, 3, 2, 1, groups=2), rows=8) == 1
    assert ge.space_to_depth_factor(ConvLayer.square(8, 8, 3, 3, 2, 1, 2), rows=8) == 1    # dilation


@pytest.mark.parametrize("layer", [ConvLayer.square(23, 21, 3, 7, 2, 3, c_out=5),
                                   ConvLayer.square(12, 13, 3, 7, 2, (3, 2, 2, 3), c_out=4),
                                   ConvLayer(10, 9, 1, 4, 3, 2, 2, 1, 0, 0, 1, c_out=2)])
def test_unfold_width_after_space_to_depth_gives_the_same_outputs(layer):
    """The 16-row form of the stem: space-to-depth, then the kernel width folded into the
    channels (7x7/2 over 3 -> 4x4/1 over 12 -> 4x1/1 over 48), against the oracle on the
    original layer, through the engine's golden model on a 16-row engine."""
    from convgen.sim.engine import engine_form

    rng = np.random.default_rng(layer.kh + layer.h)
    q = ge.random_quant_conv(rng, layer, w_zero_point=-5)
    q2 = engine_form(q, 16)
    folded = layer.c * 4 * -(-layer.kw // 2)
    assert q2.layer.kw == 1 and q2.layer.c == -(-folded // 16) * 16      # zero-point channels up to 16
    want = ge.reference_conv(q)
    np.testing.assert_array_equal(ge.reference_conv(q2), want)
    np.testing.assert_array_equal(ge.engine_conv_q(q2, rows=16, cols=4, vec=16), want)
    if layer.c * 4 >= 8:                                         # 8 rows: space-to-depth is enough
        assert engine_form(q, 8).layer.kw == -(-layer.kw // 2)


@pytest.mark.parametrize("layer", [ConvLayer.square(12, 12, 3, 3, 1, 1, c_out=5),               # the 3x3 C=3 stem
                                   ConvLayer(9, 11, 1, 5, 3, 1, 1, 1, 1, 2, 0, c_out=3),         # C=1, asymmetric pads
                                   ConvLayer(7, 8, 5, 2, 4, 1, 1, 1, 1, 0, 3, c_out=4)])
@pytest.mark.parametrize("rows", [4, 8, 16])
def test_stride_one_few_channel_layers_are_unfolded_and_channel_padded(layer, rows):
    """A stride-1 layer with fewer channels than rows: pads written out as the zero point, the
    kernel width folded into the channels, the channels padded with zero-point taps to a multiple
    of rows (so every chunk is full and the engine compute-bound): the same outputs as the
    oracle on the original layer, also through the engine's golden model."""
    from convgen.sim.engine import engine_form

    rng = np.random.default_rng(layer.c * 10 + layer.kw + rows)
    q = ge.random_quant_conv(rng, layer, w_zero_point=9)
    q2 = engine_form(q, rows)
    if layer.c >= rows:                                          # enough channels: as it is
        assert q2 is q
        return
    assert q2.layer.kw == 1 and q2.layer.pads == (0, 0, 0, 0) and q2.layer.c % rows == 0
    assert q2.layer.c >= layer.c * layer.kw
    want = ge.reference_conv(q)
    np.testing.assert_array_equal(ge.reference_conv(q2), want)
    np.testing.assert_array_equal(ge.engine_conv_q(q2, rows=rows, cols=4, vec=rows), want)
    assert len(np.unique(want)) > 10


def test_engine_form_leaves_other_layers_alone():
    from convgen.sim.engine import engine_form

    rng = np.random.default_rng(3)
    for layer in [ConvLayer.square(8, 8, 16, 3, 1, 1),               # enough channels
                  ConvLayer.square(8, 8, 4, 3, 1, 1, groups=2),      # grouped
                  ConvLayer.square(8, 8, 3, 3, 1, 1, 2),             # dilated
                  ConvLayer.square(8, 8, 3, 1, 1, 0)]:               # 1x1: nothing to fold
        q = ge.random_quant_conv(rng, layer)
        assert engine_form(q, 8) is q, layer


def test_pad_channels_refuses_grouped_layers():
    q = ge.random_quant_conv(np.random.default_rng(0), ConvLayer.square(6, 6, 4, 3, 1, 1, groups=2))
    with pytest.raises(ConfigError):
        ge.pad_channels(q, 8)


def test_pack_y_is_the_inverse_of_unpack_y():
    layer = ConvLayer.square(5, 4, 3, 3, 1, 1, c_out=6)
    p = ge.plan(layer, 2, 4, 4)
    y = np.random.default_rng(7).integers(-128, 128, (layer.out_h, layer.out_w, layer.c_out))
    words, mask = ge.pack_y(y, p)
    np.testing.assert_array_equal(ge.unpack_y(np.where(words >= 128, words - 256, words), p), y)
    assert int((mask == 0xFF).sum()) == y.size                  # one lane per output, none for padding lanes
