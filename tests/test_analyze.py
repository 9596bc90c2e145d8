"""`convgen analyze` on the real models bundled in the onnx wheel.

Totals are checked two ways:

- against an independent recount: the model is run through ONNX Runtime with every Conv / Gemm
  operand exposed as an output, and MACs and parameters are counted from the *runtime* tensor
  shapes alone (``numel(Y) * numel(W) / Cout`` for a Conv, ``numel(Y) * K`` for a Gemm); neither
  convgen's attribute parsing nor ONNX shape inference is involved;
- against published figures, each with its source next to it.
"""

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convgen.analyze import AnalyzeError, analyze, bundled_models, load_layers
from convgen.cli import main
from convgen.hdl.systolic import SystolicConfig

MODELS = bundled_models()
CFG = SystolicConfig(rows=8, cols=8, dataflow="os")


def test_all_bundled_models_are_found():
    assert {"resnet50", "vgg19", "bvlc_alexnet", "squeezenet", "shufflenet", "inception_v1", "inception_v2",
            "densenet121", "zfnet512"} <= set(MODELS)


# ---- independent recount with ONNX Runtime ------------------------------------------------
def ort_recount(path, input_shape=None):
    """(MACs, params, layers) from the runtime shapes of every Conv / Gemm / MatMul operand."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name for i in g.initializer}
    if input_shape:
        (x,) = [i for i in g.input if i.name not in inits]
        for d, v in zip(x.type.tensor_type.shape.dim, input_shape):
            d.Clear()
            d.dim_value = v
    nodes = [n for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    have = {o.name for o in g.output}
    for n in nodes:
        for name in list(n.input[:3]) + [n.output[0]]:
            if name and name not in have and name not in inits:
                g.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    so.log_severity_level = 3
    so.intra_op_num_threads = 1  # the suite runs under xdist; spinning threads only compete
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = input_shape or [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, dtype=np.float32)
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(names, feeds)))
    init_arrays = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    get = lambda name: vals[name] if name in vals else init_arrays[name]
    macs = params = 0
    for n in nodes:
        y = get(n.output[0])
        b = get(n.input[1])
        if n.op_type == "Conv":
            macs += y.size * (b.size // b.shape[0])
        else:
            a = get(n.input[0])
            k = a.shape[-1] if n.op_type == "MatMul" else a.size // y.shape[0]
            macs += y.size * k
        params += b.size + (get(n.input[2]).size if len(n.input) > 2 and n.input[2] else 0)
    return macs, params, len(nodes)


@pytest.fixture(scope="module")
def results():
    return {name: analyze(load_layers(path), CFG) for name, path in MODELS.items()}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_totals_match_onnxruntime_recount(results, name):
    macs, params, layers = ort_recount(MODELS[name])
    t = results[name]["totals"]
    assert (t["macs"], t["params"], t["layers"]) == (macs, params, layers)
    assert t["flops"] == 2 * macs


# (name, MACs, tolerance, params or None, source); MACs here are multiply-accumulates
PUBLISHED = [
    ("resnet50", 4.09e9, 0.01, 25_557_032,
     "torchvision ResNet50_Weights.IMAGENET1K_V1: GFLOPS 4.09, num_params 25,557,032 "
     "(pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html); this ONNX model "
     "is ResNet v1.5-style (stride in the 3x3) like torchvision; params there include BatchNorm"),
    ("vgg19", 19.63e9, 0.01, 143_667_240,
     "torchvision VGG19_Weights.IMAGENET1K_V1: GFLOPS 19.63, num_params 143,667,240"),
    ("squeezenet", 0.35e9, 0.02, None,
     "torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1: GFLOPS 0.35 (this model is SqueezeNet 1.1: "
     "conv1 is 64 3x3)"),
    ("inception_v1", 1.43e9, 0.01, None,
     "Sze et al., 'Efficient Processing of Deep Neural Networks: A Tutorial and Survey', Proc. IEEE "
     "2017, table of popular DNNs: GoogLeNet v1 1.43G MACs (Szegedy et al. 2015 say ~1.5G multiply-adds)"),
    ("densenet121", 2.83e9, 0.03, None, "torchvision DenseNet121_Weights.IMAGENET1K_V1: GFLOPS 2.83"),
]


@pytest.mark.parametrize("name, published, tol, published_params, source", PUBLISHED)
def test_totals_match_published_figures(results, name, published, tol, published_params, source):
    t = results[name]["totals"]
    assert t["macs"] == pytest.approx(published, rel=tol), source
    if published_params is not None:
        # the published count includes BatchNorm scale and shift, which carry no MACs
        g = onnx.shape_inference.infer_shapes(onnx.load(str(MODELS[name]))).graph
        dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in [*g.input, *g.value_info]}
        dims.update({i.name: list(i.dims) for i in g.initializer})
        bn = sum(2 * dims[n.input[1]][0] for n in g.node if n.op_type == "BatchNormalization")
        assert t["params"] + bn == published_params, source


def test_alexnet_at_227_matches_sze_et_al():
    # Sze et al. 2017 (Proc. IEEE), table of popular DNNs: AlexNet 724M MACs, 61M weights,
    # for the original grouped (2-tower) AlexNet on 227x227 input. The bundled BVLC model takes
    # 224x224 by default, so the input is fixed the way a user would do it.
    model = load_layers(MODELS["bvlc_alexnet"], {None: [1, 3, 227, 227]})
    t = analyze(model, CFG)["totals"]
    assert t["macs"] == pytest.approx(724e6, rel=0.001)
    assert t["params"] == pytest.approx(61e6, rel=0.005)
    macs, params, _ = ort_recount(MODELS["bvlc_alexnet"], [1, 3, 227, 227])
    assert (t["macs"], t["params"]) == (macs, params)


def test_resnet50_structure(results):
    rows = results["resnet50"]["layers"]
    kinds = [r["kind"] for r in rows]
    assert kinds.count("standard") == 17 and kinds.count("pointwise") == 37  # conv1 + 16 3x3; 36 1x1 + fc
    assert sum(r["winograd"] == "yes" for r in rows) == 13  # the 3x3 stride-1 ones
    assert rows[0]["kernel"] == "7x7/s2" and rows[0]["output"] == "64x112x112"


def test_shufflenet_has_grouped_and_depthwise(results):
    kinds = {r["kind"] for r in results["shufflenet"]["layers"]}
    assert {"grouped", "depthwise"} <= kinds
    dw = [r for r in results["shufflenet"]["layers"] if r["kind"] == "depthwise"]
    assert all("1 of 8 array columns" in r["mapping"] for r in dw)
    assert max(r["utilization"] for r in dw) <= 1 / 8 + 1e-9  # one column of eight


def test_array_totals_use_systolic_config(results):
    t = results["resnet50"]["totals"]
    assert t["cycles"] == sum(r["cycles"] for r in results["resnet50"]["layers"])
    assert t["cycles"] >= math.ceil(t["macs"] / 64)
    assert 0.9 < t["utilization"] <= 1


# ---- the command line ---------------------------------------------------------------------
def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_table_resnet50(capsys):
    status, out, err = run(capsys, "analyze", str(MODELS["resnet50"]))
    assert status == 0 and err == ""
    assert "4,089,184,256 MACs = 8,178,368,512 FLOPs" in out
    assert "TOTAL" in out and "Winograd F(2x2,3x3) applies to 13 layers" in out


def test_cli_json_and_csv(capsys):
    status, out, _ = run(capsys, "analyze", str(MODELS["squeezenet"]), "--format", "json", "--array", "16x4",
                         "--dataflow", "ws", "--winograd")
    res = json.loads(out)
    assert status == 0 and res["array"]["rows"] == 16 and res["array"]["dataflow"] == "ws"
    assert any(r["array_algorithm"] == "winograd" for r in res["layers"])
    status, out, _ = run(capsys, "analyze", str(MODELS["squeezenet"]), "--format", "csv")
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith("layer,op,kind") and len(lines) == 1 + 26


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _tiny(dims, op="Relu", domain=""):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108)
    nodes = [helper.make_node(op, ["x"], ["t"], domain=domain),
             helper.make_node("Conv", ["t", "w"], ["y"], pads=[1, 1, 1, 1])]
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=opsets)


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("text", "is not an ONNX model"),
    ("empty", "is not an ONNX model"),
    ("dynamic", "is dynamic ['N', 3, 'H', 'W']"),
    ("unknown_op", "cannot infer the shape of input 't'"),
    ("bad_shape_arg", "array must look like 8x8"),
    ("bad_array", "rows must be an integer in 1..64, not 0"),
])
def test_cli_bad_input_one_line_status_2(capsys, tmp_path, case, needle):
    args = []
    if case == "missing":
        path = str(tmp_path / "nope.onnx")
    elif case == "text":
        path = _write(tmp_path, "x.onnx", b"this is not a model\n" * 10)
    elif case == "empty":
        path = _write(tmp_path, "x.onnx", b"")
    elif case == "dynamic":
        path = _write(tmp_path, "x.onnx", _tiny(["N", 3, "H", "W"]).SerializeToString())
    elif case == "unknown_op":
        path = _write(tmp_path, "x.onnx", _tiny([1, 3, 8, 8], op="FancyOp", domain="com.example").SerializeToString())
    else:
        path = str(MODELS["squeezenet"])
        args = ["--array", "eight"] if case == "bad_shape_arg" else ["--array", "0x8"]
    if case == "bad_shape_arg":
        with pytest.raises(SystemExit) as e:  # argparse: usage + one error line, status 2
            main(["analyze", path, *args])
        assert e.value.code == 2 and needle in capsys.readouterr().err
        return
    status, out, err = run(capsys, "analyze", path, *args)
    assert status == 2, err
    assert err.startswith("convgen: error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_dynamic_model_works_with_input_shape(capsys, tmp_path):
    path = _write(tmp_path, "x.onnx", _tiny(["N", 3, "H", "W"]).SerializeToString())
    status, out, _ = run(capsys, "analyze", path, "--input-shape", "x=2x3x10x10", "--format", "json")
    assert status == 0
    (row,) = json.loads(out)["layers"]
    assert row["macs"] == 2 * 10 * 10 * 4 * 27 and row["output"] == "4x10x10"


def test_unknown_op_is_a_listed_warning():
    # an unknown op whose output shape is not needed for any costed layer: a warning, not an error
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("FancyOp", ["y"], ["z"], domain="com.example"),
             helper.make_node("ConvTranspose", ["y", "w"], ["q"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], [w]),
                          opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.onnx")
        onnx.save(m, p)
        model = load_layers(p)
    assert len(model.layers) == 1
    assert any("unknown op com.example.FancyOp x1" in w for w in model.warnings)
    assert any("ConvTranspose x1 does multiply-accumulates" in w for w in model.warnings)


def test_auto_pad_and_asymmetric_pads(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 9])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2, 3, 3], [0.0] * 54)
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [3, 2, 2, 2], [0.0] * 24)
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b", "c", "d", "e")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("Conv", ["x", "w"], ["b"], pads=[0, 1, 2, 0], dilations=[2, 1]),
             helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="VALID"),
             helper.make_node("Conv", ["x", "w2"], ["d"], auto_pad="SAME_UPPER"),
             helper.make_node("Conv", ["x", "w2"], ["e"], auto_pad="SAME_LOWER")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], outs, [w, w2]), opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    p = tmp_path / "m.onnx"
    onnx.save(m, str(p))
    layers = load_layers(p).layers
    got = [(L.out_h, L.out_w) for L in layers]
    import onnxruntime as ort
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    want = [tuple(o.shape[2:]) for o in sess.run(None, {"x": np.zeros((1, 2, 7, 9), np.float32)})]
    assert got == want == [(4, 5), (5, 8), (5, 7), (7, 9), (7, 9)]
    # ONNX Conv spec: SAME_UPPER puts the odd extra pad at the end, SAME_LOWER at the beginning
    assert layers[3].pads == (0, 0, 1, 1) and layers[4].pads == (1, 1, 0, 0)
    assert layers[1].pads == (0, 1, 2, 0)


def test_winograd_on_the_array(results):
    res = analyze(load_layers(MODELS["resnet50"]), CFG, winograd=True)
    base = results["resnet50"]["totals"]
    t = res["totals"]
    assert t["cycles"] < base["cycles"] and t["utilization"] <= 1
    wino_macs = sum(r["macs"] for r in res["layers"] if r["array_algorithm"] == "winograd")
    assert t["array_multiplies"] == base["macs"] - wino_macs + t["winograd_mults"]


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    status, _, _ = run(capsys, "analyze", str(MODELS["squeezenet"]), "--plot", str(out))
    assert status == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
