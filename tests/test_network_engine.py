"""Quantized ONNX networks with every convolution on the ConvEngine RTL (sim/network.py and
``convgen run onnx``), compared with ONNX Runtime at every step.

The network is golden/netzoo.py's ``every_kind`` (standard 3x3 with C_in = 3, strided with
asymmetric pads, depthwise + ReLU6, pointwise, residual add, max pool, dilated, grouped, concat,
channel shuffle, average pool, 5x5/2, global pool + Gemm), quantized by ORT's quantize_static
in both formats. Verilator runs both formats; Icarus runs one; an engine with an injected fault
makes the comparison fail at a convolution."""

import dataclasses
import json

import numpy as np
import onnx
import pytest

from convgen.cli import main
from convgen.golden import netzoo
from convgen.golden import network as gn
from convgen.sim import network as sn
from convgen.sim.engine import build_engine


def _x(model, seed=5):
    return netzoo.calibration_inputs(model, 1, seed)[0]


@pytest.mark.parametrize("fmt", ["qoperator", "qdq"])
def test_every_kind_on_verilator_is_bit_exact(fmt):
    model = netzoo.every_kind(fmt)
    res = sn.run_network(model, _x(model), rows=4, cols=4, simulator="verilator")
    assert res.bit_exact, res.first_mismatch
    assert len(res.rows) == 20 and len(res.convs) == 8
    assert {c.kind for c in res.convs} >= {"standard", "depthwise", "pointwise", "grouped"}
    for c in res.convs:       # every layer compute-bound (the C=3 stem after engine_form): the formula is exact
        assert c.formula_exact and c.cycles == c.formula_cycles, c
    # the graph output is ORT's
    plain = gn.ort_tensors(model, _x(model), [gn.load(model).output_names[0]])
    assert np.array_equal(res.output, next(iter(plain.values())))


def test_every_kind_on_icarus_is_bit_exact():
    model = netzoo.every_kind("qoperator")
    res = sn.run_network(model, _x(model, 6), rows=4, cols=4, simulator="icarus")
    assert res.bit_exact, res.first_mismatch


def test_injected_engine_fault_is_caught_at_a_padded_conv():
    """Padded taps read memory instead of the zero point: the first mismatch is a padded
    convolution, found by the comparison with ORT."""
    model = netzoo.every_kind("qoperator")
    x = _x(model)
    net = gn.load(model)
    cfg, convs = sn.plan_network(net, x, rows=4, cols=4)
    b = build_engine(dataclasses.replace(cfg, debug_fault="pad_value"), "icarus", mem_words=1 << 16)
    ex = sn.EngineExecutor(b)
    rows = gn.compare(model, x, net=net, result=gn.run(net, x, conv=ex))
    bad = next(r for r in rows if r["mismatches"])
    assert bad["op"] == "QLinearConv"
    q = next(q for q in convs if q.name == bad["name"])
    assert max(q.pads) > 0


def test_cli_run_onnx(tmp_path, capsys):
    path = netzoo.build_path("every_kind", "qdq")
    x = _x(onnx.load(str(path)), 7)
    np.save(tmp_path / "x.npy", x)
    status = main(["run", "onnx", str(path), "--input", str(tmp_path / "x.npy"), "--engine", "4x4", "--out",
                   str(tmp_path / "y.npy"), "--report", str(tmp_path / "r.md")])
    out, err = capsys.readouterr()
    assert status == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["bit_exact"] is True and summary["convs"] == 8 and summary["first_mismatch"] is None
    assert "conv 8/8" in err
    report = (tmp_path / "r.md").read_text()
    assert "bit-exact" in report and report.count("\n| ") >= 10
    want = gn.ort_tensors(path, x, [gn.load(path).output_names[0]])
    assert np.array_equal(np.load(tmp_path / "y.npy"), next(iter(want.values())))


def _float_model(tmp_path):
    p = tmp_path / "float.onnx"
    onnx.save(netzoo.every_kind_float(), str(p))
    return p


def _unsupported(tmp_path):
    p = tmp_path / "lrn.onnx"
    onnx.save(netzoo.with_unsupported_op(netzoo.every_kind("qoperator")), str(p))
    return p


def _dynamic(tmp_path):
    p = tmp_path / "dyn.onnx"
    onnx.save(netzoo.with_dynamic_input(netzoo.every_kind("qoperator")), str(p))
    return p


def _truncated(tmp_path):
    data = netzoo.every_kind("qoperator").SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[:len(data) // 2])
    return p


def _too_large(tmp_path):
    """One 33x33 convolution: more than the engine's largest kernel (31)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 33, 33)).astype(np.float32) * 0.05,
                                "w_big")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w_big"], ["y"], name="huge_conv", pads=[16] * 4)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 20, 20])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 20, 20])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    p = tmp_path / "huge.onnx"
    onnx.save(netzoo.quantize(model, "qoperator"), str(p))
    return p


@pytest.mark.parametrize("make, extra, needle", [
    (_too_large, ["--quiet"], "node 'huge_conv_quant' (QLinearConv) is too large for the engine: max_kernel"),
    (_float_model, [], "node 'conv1' (Conv)"),
    (_unsupported, [], "node 'my_lrn' (LRN): unsupported operator LRN"),
    (_dynamic, [], "dynamic shape"),
    (_truncated, [], "truncated"),
    (lambda t: t / "missing.onnx", [], "no such file"),
    (lambda t: netzoo.build_path("every_kind", "qoperator"), ["--engine", "65x4"], "--engine"),
    (lambda t: netzoo.build_path("every_kind", "qoperator"), ["--input-shape", "1x3x"], "--input-shape"),
    (lambda t: netzoo.build_path("every_kind", "qoperator"), ["--out", "{tmp}"], "--out"),
])
def test_cli_refuses_bad_models_in_one_line(make, extra, needle, tmp_path, capsys):
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    status = main(["run", "onnx", str(path), *[a.replace("{tmp}", str(tmp_path)) for a in extra]])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_dynamic_model_runs_with_input_shape(tmp_path, capsys):
    p = _dynamic(tmp_path)
    status = main(["run", "onnx", str(p), "--input-shape", "1x3x12x12", "--engine", "4x4", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out.strip().splitlines()[-1])["bit_exact"] is True
