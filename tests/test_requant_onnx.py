"""golden/requant.py mode "onnx" == ONNX Runtime (the oracle), exactly.

Single-node QLinearMatMul and QLinearConv models are built in memory with onnx.helper and run
on ORT's CPU provider through ``convgen.golden.ort.session``, which asks for ORT's exact
integer kernels: on AVX2 CPUs without VNNI ORT's default uint8 x int8 kernels saturate
(tests/test_ort_cpu.py shows it where it happens). The golden reference ``qgemm``/``qconv2d``
(integer accumulation + ``requantize`` with the float32 scale that ``ort_scale`` computes)
must give the same bytes. Cases: int8 and uint8 activations, per-tensor and per-channel
weight scales, nonzero zero points, dyadic scales that put many results exactly on .5,
accumulators above 2**24 (so the int32 -> float32 conversion itself rounds) and QLinearConv
biases over the whole int32 range.
"""

import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convgen.golden.ort import session
from convgen.golden.requant import params_from_scales, qconv2d, qgemm

ONNX_T = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}


def _session(node, x_shape, x_dtype, inits):
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", ONNX_T[np.dtype(x_dtype)], list(x_shape))],
        [helper.make_tensor_value_info("y", ONNX_T[np.dtype(x_dtype)], None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    # IR 10 / opset 20: what onnxruntime 1.31 accepts for QLinearMatMul and QLinearConv
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    return session(model)


def ort_qlinear_matmul(x, w, xs, xzp, ws, wzp, ys, yzp):
    """ORT types: (uint8|int8) x int8 -> same as x."""
    dt = x.dtype
    inits = {"xs": np.array(xs, np.float32), "xzp": np.array(xzp, dt), "w": w.astype(np.int8),
             "ws": np.asarray(ws, np.float32), "wzp": np.asarray(wzp, np.int8),
             "ys": np.array(ys, np.float32), "yzp": np.array(yzp, dt)}
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp"], ["y"])
    return _session(node, x.shape, dt, inits).run(None, {"x": x})[0]


def ort_qlinear_conv(x, w, xs, xzp, ws, wzp, ys, yzp, bias, pad):
    dt = x.dtype
    inits = {"xs": np.array(xs, np.float32), "xzp": np.array(xzp, dt), "w": w.astype(np.int8),
             "ws": np.asarray(ws, np.float32), "wzp": np.asarray(wzp, np.int8),
             "ys": np.array(ys, np.float32), "yzp": np.array(yzp, dt), "b": bias.astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp", "b"], ["y"],
                            pads=[pad] * 4)
    return _session(node, x.shape, dt, inits).run(None, {"x": x})[0]


def _ties(acc, scale, zp, lo, hi):
    """How many results land exactly on .5 and are not clamped away."""
    f = (acc.astype(np.float32) * np.asarray(scale, np.float32)).astype(np.float64)
    tie = np.abs(f % 1.0 - 0.5) == 0
    inside = (np.floor(f) + zp >= lo) & (np.ceil(f) + zp <= hi)
    return int(np.sum(tie & inside))


def _scales(rng, kind, n, per_channel):
    """(x_scale, w_scale, y_scale). 'dyadic' makes the product a small odd number times a
    power of two, so a good share of results lands exactly on .5."""
    if kind == "dyadic":
        # x_scale * w_scale / y_scale = odd * 2**-(3..7) < 1
        xs = np.float32(2.0 ** -int(rng.integers(1, 3)))
        ws = (rng.choice([1, 3, 5, 7], n if per_channel else 1) *
              2.0 ** -rng.integers(3, 6, n if per_channel else 1)).astype(np.float32)
        ys = np.float32(2.0 ** -int(rng.integers(0, 2)))
    else:
        xs = np.float32(rng.uniform(1e-3, 0.1))
        ws = rng.uniform(1e-3, 0.05, n if per_channel else 1).astype(np.float32)
        ys = np.float32(rng.uniform(0.01, 1.0))
    return xs, (ws if per_channel else ws[0]), ys


@pytest.mark.parametrize("x_dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("kind", ["random", "dyadic"])
def test_qlinear_matmul_golden_equals_ort(x_dtype, per_channel, kind):
    rng = np.random.default_rng(zlib.crc32(repr((np.dtype(x_dtype).name, per_channel, kind)).encode()))
    info = np.iinfo(x_dtype)
    cases = ties = 0
    for trial in range(40):
        m, n = 8, 16
        k = int(rng.integers(1, 80)) if trial % 8 else 2048  # K=2048 near extremes: |acc| > 2**24
        xzp = int(rng.integers(info.min, info.max + 1))
        if k == 2048:
            x = rng.choice([info.min, info.max], (m, k)).astype(x_dtype)
            w = rng.choice([-128, 127], (k, n)).astype(np.int8)
        elif kind == "dyadic" and trial % 4:  # small accumulators: ties inside the output range
            k = int(rng.integers(1, 16))
            x = np.clip(xzp + rng.integers(-8, 9, (m, k)), info.min, info.max).astype(x_dtype)
            w = rng.integers(-8, 9, (k, n)).astype(np.int8)
        else:
            x = rng.integers(info.min, info.max + 1, (m, k)).astype(x_dtype)
            w = rng.integers(-128, 128, (k, n)).astype(np.int8)
        xs, ws, ys = _scales(rng, kind, n, per_channel)
        yzp = int(rng.integers(info.min, info.max + 1))
        wzp = np.zeros(n if per_channel else (), np.int8)  # ORT's MLAS kernels need symmetric per-channel weights
        if not per_channel:
            wzp = np.array(int(rng.integers(-8, 9)), np.int8)
        got = ort_qlinear_matmul(x, w, xs, xzp, ws, wzp, ys, yzp)
        wsv = np.broadcast_to(np.asarray(ws, np.float32), (n,))
        p = params_from_scales("onnx", xs, wsv, ys, zero_point=yzp, out_signed=info.min < 0)
        exp = qgemm(x, w, xzp, wzp, p)
        assert np.array_equal(got.astype(np.int64), exp), f"trial {trial}: ORT\n{got}\n!= golden\n{exp}"
        acc = (x.astype(np.int64) - xzp) @ (w.astype(np.int64) - wzp.astype(np.int64))
        ties += _ties(acc, p.scale[None, :], yzp, info.min, info.max)
        cases += got.size
    assert cases == 40 * 8 * 16
    print(f"{cases} outputs, {ties} exact .5 ties inside the output range")
    if kind == "dyadic":
        assert ties > cases // 100, f"only {ties} ties in {cases} cases"


@pytest.mark.parametrize("x_dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv_golden_equals_ort(x_dtype, per_channel):
    """QLinearConv with int32 biases over the whole range (acc + bias far above 2**24)."""
    rng = np.random.default_rng(7 + per_channel + 2 * (x_dtype is np.uint8))
    info = np.iinfo(x_dtype)
    cases = 0
    for trial in range(30):
        c, mo, kh = int(rng.integers(1, 5)), 8, int(rng.choice([1, 3]))
        x = rng.integers(info.min, info.max + 1, (1, c, 5, 5)).astype(x_dtype)
        w = rng.integers(-128, 128, (mo, c, kh, kh)).astype(np.int8)
        xs, ws, ys = _scales(rng, "dyadic" if trial % 2 else "random", mo, per_channel)
        # the accumulation cannot overflow int32 with these biases: |bias| < 2**31 - 2**20
        bias = rng.integers(-(1 << 31) + (1 << 20), (1 << 31) - (1 << 20), mo) >> int(rng.integers(0, 24))
        xzp = int(rng.integers(info.min, info.max + 1))
        yzp = int(rng.integers(info.min, info.max + 1))
        wzp = np.zeros(mo if per_channel else (), np.int8)
        pad = int(kh == 3)
        got = ort_qlinear_conv(x, w, xs, xzp, ws, wzp, ys, yzp, bias, pad)
        wsv = np.broadcast_to(np.asarray(ws, np.float32), (mo,))
        p = params_from_scales("onnx", xs, wsv, ys, bias=bias, zero_point=yzp, out_signed=info.min < 0)
        exp = qconv2d(x, w, xzp, wzp, p, pad=pad)
        assert np.array_equal(got.astype(np.int64), exp), f"trial {trial}: ORT\n{got}\n!= golden\n{exp}"
        cases += got.size
    assert cases > 1000


def test_oracle_can_fail():
    """A golden that rounds half away from zero instead of to even disagrees with ORT on
    a dyadic case with ties (so the comparisons above can fail)."""
    x = np.array([[1, 3, 5, -1, -3, -5, 7, 9]], np.int8).T  # 8 x 1
    w = np.array([[1]], np.int8)
    got = ort_qlinear_matmul(x, w, 1.0, 0, np.float32(0.5), np.int8(0), 1.0, 0)
    half_away = np.sign(x.astype(np.float64) * 0.5) * np.floor(np.abs(x * 0.5) + 0.5)
    assert not np.array_equal(got.astype(np.int64), half_away.astype(np.int64))
    p = params_from_scales("onnx", 1.0, np.array([0.5], np.float32), 1.0)
    assert np.array_equal(got.astype(np.int64), qgemm(x, w, 0, 0, p))
