"""Cost formulas of convgen.costmodel: the worked examples of the background notes
(../shared/seeds/), counts against brute-force loops, and the array cycles against SystolicConfig."""

import itertools

import pytest

from convgen import costmodel as cm
from convgen.golden.gemm import tile_schedule
from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError
from convgen.hdl.systolic import SystolicConfig


def conv(cin, cout, h, k=3, stride=1, pad=None, group=1, n=1, w=None, dilation=1, bias=False):
    w = h if w is None else w
    pad = (k // 2) * dilation if pad is None else pad
    return ConvLayer.square(h, w, cin, k, stride, pad, dilation, group, c_out=cout, n=n, name="t", bias=bias)


# ---- known answers from the background notes ----------------------------------------------
def test_standard_conv_224_k3_64_128_is_about_3_7e9_macs():
    # notes, section 1: 224^2 * 128 * (3^2 * 64) = 50,176 * 128 * 576 ~ 3.7e9
    L = conv(64, 128, 224)
    assert (L.out_h, L.out_w) == (224, 224)
    assert cm.macs(L) == 224 * 224 * 128 * 9 * 64 == 3_699_376_128
    assert cm.flops(L) == 2 * cm.macs(L)


def test_depthwise_separable_k3_64_128_per_position():
    # notes: standard 9*64*128 = 73,728; depthwise 576 + pointwise 8,192 = 8,768; ratio 0.119 (~8.4x)
    std = conv(64, 128, 1, k=3)
    dw = conv(64, 64, 1, k=3, group=64)
    pw = conv(64, 128, 1, k=1)
    assert dw.kind == "depthwise" and pw.kind == "pointwise" and std.kind == "standard"
    assert cm.macs(std) == 73_728 and cm.macs(dw) + cm.macs(pw) == 8_768
    r = cm.depthwise_separable_ratio(9, 64, 128)
    assert r == pytest.approx(8768 / 73728) and round(r, 3) == 0.119 and round(1 / r, 1) == 8.4


def test_depthwise_separable_k3_n256_is_1_over_n_plus_1_over_k2():
    r = cm.depthwise_separable_ratio(9, 256, 256)
    assert r == pytest.approx(1 / 256 + 1 / 9) and round(r, 3) == 0.115
    # the identity holds for any Cin: the ratio does not depend on it
    assert cm.depthwise_separable_ratio(9, 17, 256) == pytest.approx(1 / 256 + 1 / 9)
    # and the what-if of a real layer gives the same number (same function, real shapes)
    assert cm.what_if(conv(256, 256, 14))["depthwise_separable"] == pytest.approx(1 / 256 + 1 / 9)


def test_resnet_bottleneck_3x3_costs_one_sixteenth():
    # 256 -> 64 -> 64 -> 256: the 3x3 (64 -> 64) against a 256 -> 256 3x3
    full, inner = conv(256, 256, 56), conv(64, 64, 56)
    assert cm.macs(inner) * 16 == cm.macs(full)
    b = cm.bottleneck_ratio(9, 256, 256, 4)
    assert b["mid"] == 64 and b["kxk"] == 1 / 16
    # whole block: 1x1 256->64, 3x3 64->64, 1x1 64->256, by counting the three layers
    block = cm.macs(conv(256, 64, 56, k=1)) + cm.macs(inner) + cm.macs(conv(64, 256, 56, k=1))
    assert b["block"] == pytest.approx(block / cm.macs(full))


def test_group_conv_g4_is_one_quarter():
    assert cm.macs(conv(64, 128, 28, group=4)) * 4 == cm.macs(conv(64, 128, 28))
    assert cm.params(conv(64, 128, 28, group=4)) * 4 == cm.params(conv(64, 128, 28))
    assert cm.group_ratio(4) == 0.25 and conv(64, 128, 28, group=4).kind == "grouped"


def test_winograd_f2x2_3x3_16_vs_36():
    L = conv(1, 1, 2, k=3)  # one 2x2 output tile, one channel pair
    assert cm.winograd_applies(L)
    assert cm.winograd_multiplies(L) == 16 and cm.direct_tile_multiplies(L) == 36 == cm.macs(L)
    big = conv(64, 64, 56)
    assert cm.winograd_multiplies(big) * 36 == cm.direct_tile_multiplies(big) * 16
    assert cm.direct_tile_multiplies(big) == cm.macs(big)  # 56 is even: no padded edge tiles
    odd = conv(8, 8, 7)  # 7x7 output -> 4x4 tiles, the padded edge costs extra
    assert cm.winograd_multiplies(odd) == 16 * 16 * 64
    for bad in (conv(8, 8, 8, stride=2), conv(8, 8, 8, k=5), conv(8, 8, 8, dilation=2)):
        assert not cm.winograd_applies(bad)
        with pytest.raises(ConfigError):
            cm.winograd_multiplies(bad)


def test_lowrank_pruning_int8():
    assert cm.lowrank_ratio(3, 64, 64) == pytest.approx(2 / 3)  # 3x3 -> 3x1 + 1x3, Cmid = C
    assert cm.pruning_ratio(0.8) == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        cm.pruning_ratio(1.0)
    L = conv(64, 64, 56, bias=True)
    fp32, int8 = cm.traffic_bytes(L, "fp32"), cm.traffic_bytes(L, "int8")
    acts, wts = 2 * 64 * 56 * 56, 64 * 64 * 9
    assert fp32 == 4 * (acts + wts + 64) and int8 == acts + wts + 4 * 64


# ---- counts against brute force -----------------------------------------------------------
@pytest.mark.parametrize("cin, cout, h, w, k, stride, pad, group, dil", [
    (3, 4, 7, 5, 3, 1, 1, 1, 1), (4, 4, 6, 6, 3, 2, 0, 4, 1), (6, 4, 9, 8, 5, 2, 2, 2, 1),
    (2, 6, 8, 8, 3, 1, 2, 2, 2), (5, 3, 4, 4, 1, 1, 0, 1, 1)])
def test_counts_against_loops(cin, cout, h, w, k, stride, pad, group, dil):
    L = conv(cin, cout, h, w=w, k=k, stride=stride, pad=pad, group=group, dilation=dil, n=2)
    hp, wp = h + 2 * pad, w + 2 * pad
    # enumerate every output position and tap, as a naive convolution loop does
    positions = [(b, y, x) for b in range(2) for y in range(0, hp - dil * (k - 1), stride)
                 for x in range(0, wp - dil * (k - 1), stride)]
    assert len(positions) == L.positions
    loop_macs = sum(1 for _ in positions for _co in range(cout) for _ci in range(cin // group)
                    for _ky in range(k) for _kx in range(k))
    assert cm.macs(L) == loop_macs
    assert cm.im2col_elements(L) == len(positions) * cin * k * k
    assert cm.indirection_entries(L) == len(positions) * k * k
    assert cm.params(L) == sum(1 for _ in itertools.product(range(cout), range(cin // group), range(k), range(k)))


# ---- the array ----------------------------------------------------------------------------
@pytest.mark.parametrize("rows, cols, dataflow", [(8, 8, "os"), (4, 6, "ws"), (3, 5, "os"), (16, 16, "ws")])
def test_systolic_cycles_use_the_checked_formula(rows, cols, dataflow):
    cfg = SystolicConfig(rows=rows, cols=cols, dataflow=dataflow)
    L = conv(12, 20, 9, group=2)
    g, m, k, n = cm.gemm_dims(L)
    assert (g, m, k, n) == (2, 81, 6 * 9, 10)
    tiles = g * len(tile_schedule(m, n, rows, cols))
    got = cm.systolic_cycles(L, cfg)
    assert got["tiles"] == tiles
    assert got["cycles"] == cfg.tile_cycles(k) + (tiles - 1) * cfg.tile_period(k)
    assert got["utilization"] == pytest.approx(cm.macs(L) / (got["cycles"] * rows * cols))
    assert got["ideal_cycles"] == 2 * cfg.ideal_cycles(m, k, n)


def test_systolic_matches_the_demo_measurement():
    # README: a 64x64x64 GEMM on the 8x8 OS array measured 4115 cycles on the RTL
    L = ConvLayer.gemm(64, 64, 64, name="g", op="Gemm")
    assert cm.systolic_cycles(L, SystolicConfig(rows=8, cols=8, dataflow="os"))["cycles"] == 4115


def test_winograd_on_the_array_is_16_gemms():
    cfg = SystolicConfig(rows=8, cols=8)
    L = conv(64, 64, 56)
    g, m, k, n = cm.gemm_dims(L, winograd=True)
    assert (g, m, k, n) == (16, 28 * 28, 64, 64)
    assert cm.systolic_cycles(L, cfg, winograd=True)["multiplies"] == cm.winograd_multiplies(L)


def test_scalesim_formula():
    L = conv(16, 24, 10, k=1)  # M=100, K=16, N=24
    assert cm.scalesim_cycles(L, 8, 8, "os") == {"folds": 13 * 3, "cycles": 13 * 3 * (16 + 8 + 8 - 2)}
    assert cm.scalesim_cycles(L, 8, 8, "ws") == {"folds": 2 * 3, "cycles": 2 * 3 * (16 + 8 + 100 - 2)}


def test_kinds_and_mapping():
    assert conv(32, 32, 8, group=32).kind == "depthwise"
    assert "1 of 8 array columns" in cm.recommend(conv(32, 32, 8, group=32), 8)
    assert cm.recommend(conv(32, 32, 8)) == "Winograd F(2x2,3x3)"
    assert cm.recommend(conv(32, 32, 8, stride=2)) == "im2col-GEMM"
    assert cm.recommend(conv(32, 32, 8, k=1)) == "GEMM (1x1: no im2col)"


def test_bad_layer():
    with pytest.raises(ConfigError, match=r"t: groups must divide c=4: groups must be one of \[1, 2, 4\], not 3"):
        conv(4, 6, 8, group=3)
    with pytest.raises(ConfigError, match="t: groups=2 must divide c_out=3"):
        conv(4, 3, 8, group=2)
