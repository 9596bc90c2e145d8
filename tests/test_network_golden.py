"""golden/network.py == ONNX Runtime, bit for bit, at every layer of quantized networks.

The networks come from golden/netzoo.py (seeded float models quantized by
``onnxruntime.quantization.quantize_static``, int8 activations and per-channel int8 weights, in
the QOperator and the QDQ format). ORT runs them through ``convgen.golden.ort.session`` with
every quantized tensor added to the graph outputs; QDQ models get
``session.qdqisint8allowed=1``. docs/network.md has the per-op arithmetic.
"""

import numpy as np
import onnx
import pytest

from convgen.core.params import ConfigError
from convgen.golden import netzoo, network
from convgen.golden.ort import session


def _input(model, seed=99):
    return netzoo.calibration_inputs(model, 1, seed)[0]


def _exact(model, x, **kw):
    rows = network.compare(model, x, **kw)
    bad = [r for r in rows if r["mismatches"]]
    assert not bad, f"first mismatching layer: {bad[0]}"
    return rows


@pytest.fixture(scope="module", params=netzoo.FORMATS)
def every_kind(request):
    return netzoo.every_kind(request.param)


def test_every_kind_bit_exact_at_every_layer(every_kind):
    net = network.load(every_kind)
    ops = {s.op for s in net.steps}
    assert {"QLinearConv", "QLinearAdd", "MaxPool", "QLinearConcat", "Reshape", "Transpose", "QLinearAveragePool",
            "QLinearGlobalAveragePool", "Flatten", "QGemm"} <= ops
    kinds = {s.p["conv"]["group"] > 1 for s in net.conv_steps}
    assert kinds == {True, False}
    for seed in (99, 100, 101):
        x = _input(every_kind, seed)
        rows = _exact(every_kind, x, net=net)
        assert len(rows) == len(net.steps) == 20
        # the extra graph outputs did not change what ORT computes
        plain = session(every_kind, config=network.ort_config(net)).run(None, {net.input_name: x})[0]
        assert np.array_equal(plain, network.run(net, x).output)


def test_every_kind_qdq_fuses_into_the_qoperator_ops():
    """The QDQ groups become the QOperator ops (quantize_static picks some output scales
    differently in the two formats, e.g. QDQ's AveragePool keeps its input scale, so the
    values are not identical)."""
    a, b = network.load(netzoo.every_kind("qoperator")), network.load(netzoo.every_kind("qdq"))
    assert [s.op for s in a.steps] == [s.op for s in b.steps]
    pool = next(s for s in b.steps if s.op == "QLinearAveragePool")
    assert (pool.p["x_scale"], pool.p["x_zp"]) == (pool.p["y_scale"], pool.p["y_zp"])


@pytest.mark.parametrize("fmt", netzoo.FORMATS)
def test_mobilenet_v2_96_bit_exact(fmt):
    m = netzoo.mobilenet_v2(fmt, size=96)
    net = network.load(m)
    assert len(net.conv_steps) == 52
    assert sum(s.p["conv"]["group"] > 1 for s in net.conv_steps) == 17       # depthwise
    assert sum(s.op == "QLinearAdd" for s in net.steps) == 10                # residual adds
    rows = _exact(m, _input(m), net=net)
    assert rows[-1]["shape"] == (1, 1000)


@pytest.mark.parametrize("fmt", netzoo.FORMATS)
def test_short_resnet_bit_exact(fmt):
    m = netzoo.resnet(fmt)
    _exact(m, _input(m))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
@pytest.mark.parametrize("fmt", netzoo.FORMATS)
def test_light_models_bit_exact(name, fmt):
    m = netzoo.light(name, fmt)
    _exact(m, _input(m))


@pytest.mark.slow
def test_light_resnet50_bit_exact():
    m = netzoo.light("resnet50", "qoperator")
    net = network.load(m)
    assert len(net.conv_steps) == 53
    _exact(m, _input(m), net=net)


# ---- the conv hook (where the RTL engine plugs in) -----------------------------------------
def test_conv_hook_sees_every_conv_and_a_wrong_one_is_caught():
    m = netzoo.every_kind("qoperator")
    net = network.load(m)
    x = _input(m)
    seen = []

    def spy(q):
        seen.append((q.name, q.layer.kind))
        return network.golden_conv(q)

    _exact(m, x, conv=spy, net=net)
    assert [n for n, _ in seen] == [s.name for s in net.conv_steps]
    assert {"standard", "depthwise", "pointwise", "grouped"} <= {k for _, k in seen}

    victim = net.conv_steps[3].name

    def faulty(q):
        y = network.golden_conv(q)
        if q.name == victim:
            y = y.copy()
            y[0, 0, 0, 0] = min(y[0, 0, 0, 0] + 1, 127) if y[0, 0, 0, 0] < 127 else 126
        return y

    rows = network.compare(m, x, conv=faulty, net=net)
    first = next(r for r in rows if r["mismatches"])
    assert first["name"] == victim and first["mismatches"] == 1


# ---- injected fault in a host op ------------------------------------------------------------
@pytest.mark.parametrize("fmt", netzoo.FORMATS)
def test_wrong_rounding_in_qlinear_add_is_caught(fmt, monkeypatch):
    """QLinearAdd rounding toward zero instead of to nearest is caught, at that layer."""
    m = netzoo.mobilenet_v2(fmt, size=96)
    net = network.load(m)
    x = _input(m)
    good = network.run(net, x)

    def truncating(a, a_scale, a_zp, b, b_scale, b_zp, c_scale, c_zp, signed=True):
        ra, rb = np.float32(a_scale) / np.float32(c_scale), np.float32(b_scale) / np.float32(c_scale)
        base = np.float32(c_zp) - network.fma32(np.float32(a_zp), ra, rb * np.float32(b_zp))
        v = network.fma32(np.asarray(a, np.int64).astype(np.float32), ra,
                          network.fma32(np.asarray(b, np.int64).astype(np.float32), rb, base)).astype(np.float64)
        return np.clip(np.trunc(v), -128, 127).astype(np.int64)

    monkeypatch.setattr(network, "qlinear_add", truncating)
    rows = network.compare(m, x, net=net)
    first = next((r for r in rows if r["mismatches"]), None)
    assert first is not None and first["op"] == "QLinearAdd", rows
    assert not np.array_equal(network.run(net, x).tensors[first["tensor"]], good.tensors[first["tensor"]])


# ---- the exact float rules, element by element against ORT single nodes ----------------------
def _single(node, feeds, inits, out_type=onnx.TensorProto.INT8):
    from onnx import helper, numpy_helper

    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype),
                                                                      list(v.shape)) for k, v in feeds.items()],
                          [helper.make_tensor_value_info(node.output[0], out_type, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=10)
    return session(model).run(None, feeds)[0]


def test_qlinear_add_rule_on_every_int8_pair():
    from onnx import helper

    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8)
    rng = np.random.default_rng(7)
    wrong_without_fma = 0
    for _ in range(40):
        sa, sb, sc = (np.float32(np.exp(rng.uniform(-7, 0))) for _ in range(3))
        za, zb, zc = (int(rng.integers(-128, 128)) for _ in range(3))
        node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"],
                                domain="com.microsoft")
        inits = dict(sa=np.array(sa), za=np.array(za, np.int8), sb=np.array(sb), zb=np.array(zb, np.int8),
                     sc=np.array(sc), zc=np.array(zc, np.int8))
        y = _single(node, dict(a=a, b=b), inits).astype(np.int64)
        assert np.array_equal(network.qlinear_add(a, sa, za, b, sb, zb, sc, zc), y)
        ra, rb = sa / sc, sb / sc
        plain = np.clip(np.rint(a.astype(np.float32) * ra + (np.float32(zc) - (ra * np.float32(za) + rb * np.float32(zb)))
                                + b.astype(np.float32) * rb), -128, 127)
        wrong_without_fma += int((plain != y).sum())
    assert wrong_without_fma > 0   # the FMA matters: the rule is not the textbook formula


def test_fma32_is_correctly_rounded():
    from fractions import Fraction

    rng = np.random.default_rng(3)
    a = rng.standard_normal(3000).astype(np.float32)
    b = (rng.standard_normal(3000) * 1e-3).astype(np.float32)
    c = (a * b + rng.standard_normal(3000).astype(np.float32) * np.float32(1e-7)).astype(np.float32) * -1
    got = network.fma32(a, b, c)
    for i in range(0, 3000, 7):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        r = np.float32(float(exact))  # double rounding is possible here: check the neighbours instead
        cands = [np.nextafter(r, np.float32(-np.inf)), r, np.nextafter(r, np.float32(np.inf))]
        best = min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.asarray(v).view(np.int32)) & 1))
        assert got[i] == best, i


def test_quantize_linear_divides():
    from onnx import helper

    rng = np.random.default_rng(5)
    x = (rng.integers(-300, 300, 20000) + 0.5).astype(np.float32) * np.float32(0.03)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    y = _single(node, dict(x=x), dict(s=np.array(0.03, np.float32), z=np.array(3, np.int8)))
    assert np.array_equal(network.quantize_linear(x, np.float32(0.03), 3), y)


# ---- the importer refuses what it cannot run, with one line naming the node ------------------
def _one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_refuses_float_conv():
    with pytest.raises(ConfigError) as e:
        network.load(netzoo.every_kind_float())
    msg = _one_line(e)
    assert "node 'conv1' (Conv)" in msg and "float" in msg and "quantize" in msg


def test_refuses_dynamic_shapes_without_an_input_shape():
    m = netzoo.with_dynamic_input(netzoo.every_kind("qoperator"))
    with pytest.raises(ConfigError) as e:
        network.load(m)
    assert "input 'input' has a dynamic shape (?x3x?x?)" in _one_line(e)
    net = network.load(m, input_shape=(1, 3, 12, 12))
    x = _input(netzoo.every_kind("qoperator"))
    assert np.array_equal(network.run(net, x).output, network.run(netzoo.every_kind("qoperator"), x).output)
    with pytest.raises(ConfigError) as e:
        network.load(m, input_shape=(1, 4, 12, 12))
    _one_line(e)


def test_refuses_an_unsupported_op():
    m = netzoo.with_unsupported_op(netzoo.every_kind("qoperator"))
    with pytest.raises(ConfigError) as e:
        network.load(m)
    assert "node 'my_lrn' (LRN): unsupported operator LRN" in _one_line(e)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.999])
def test_refuses_a_truncated_file(tmp_path, fraction):
    data = netzoo.every_kind("qoperator").SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ConfigError) as e:
        network.load(path)
    msg = _one_line(e)
    assert "truncated" in msg


def test_refuses_a_missing_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        network.load(tmp_path / "nope.onnx")
    assert "no such model file" in _one_line(e)


def test_zoo_is_deterministic_and_cached():
    p1 = netzoo.build_path("every_kind", "qdq")
    p2 = netzoo.build_path("every_kind", "qdq")
    assert p1 == p2 and p1.parent.name == "models"
    a = netzoo.quantize(netzoo.every_kind_float(), "qdq")
    b = onnx.load(str(p1))
    a.doc_string = b.doc_string
    assert {i.name: bytes(i.raw_data) for i in a.graph.initializer} == {i.name: bytes(i.raw_data) for i in b.graph.initializer}
    assert netzoo.build_path("every_kind", "qdq", seed=1) != p1


def test_relu_and_clip_on_int8_tensors():
    """Relu and Clip left on a QOperator int8 tensor run on the integers, as ORT runs them."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q"),
             helper.make_node("Relu", ["q"], ["r"], name="relu"),
             helper.make_node("Clip", ["r", "lo", "hi"], ["c"], name="clip"),
             helper.make_node("DequantizeLinear", ["c", "s", "z"], ["y"], name="dq")]
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(-7, np.int8), "z"),
             numpy_helper.from_array(np.array(-3, np.int8), "lo"), numpy_helper.from_array(np.array(90, np.int8), "hi")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    x = (np.random.default_rng(0).standard_normal((1, 2, 5, 5)) * 4).astype(np.float32)
    rows = _exact(m, x)
    assert [r["op"] for r in rows] == ["QuantizeLinear", "Relu", "Clip", "DequantizeLinear"]
