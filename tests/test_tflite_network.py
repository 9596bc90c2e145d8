"""``convgen run tflite`` and its pieces: the MobileNet-style int8 generator, the .tflite reader,
the golden run of each TFLite path, all against LiteRT 2.3.0 on that path.

Default suite (about 5 s): the generators are deterministic; their models (MobileNetV1 with
TF-slim's head: global AVERAGE_POOL_2D, 1x1 CONV_2D logits, RESHAPE, or Keras' head: RESHAPE,
FULLY_CONNECTED; MobileNetV2 with inverted residual blocks and ADD, and its Keras form with PAD,
MEAN and SOFTMAX; MobileNetV3-style with float32 I/O: QUANTIZE, HARD_SWISH, a squeeze-excite
block with MEAN, LOGISTIC and MUL, DEQUANTIZE), read back and run on each
path's golden models, equal LiteRT's output on that path, every operator equals LiteRT running
it alone, and the paths differ inside the networks (counts); TFLite's reference
FULLY_CONNECTED rounds once, ties away from zero, and ADD differs between the three paths
(designed ties); unsupported models and bad options are one line with status 2, nothing
written. ``-m slow``: the CLI runs the five models on a 4x4 engine (Verilator) on all three
paths, and the MobileNetV2 model on Icarus (path opt), every operator and the output equal to
LiteRT.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest

from convgen.cli import main
from convgen.core.params import ConfigError
from convgen.golden import tflite_fixtures as F
from convgen.golden import tflite_net as N
from convgen.golden import tflite_ops as O


@pytest.fixture(scope="module")
def model():
    return N.mobilenet(0)


#: the generated models the tests run: MobileNetV1 with either head, MobileNetV2 (seed 2: its
#: ref and opt networks differ), and its Keras-style variant (PAD, MEAN, SOFTMAX)
MODELS = {"v1": lambda: N.mobilenet(0), "v1_fc": lambda: N.mobilenet(0, head="fc"),
          "v2": lambda: N.mobilenet_v2(2), "v2_keras": lambda: N.mobilenet_v2(2, head="keras"),
          "v3_float": lambda: N.with_io(*N.mobilenet_v3(0), io="float32")}
#: the paths each model is compared on: the Keras-style model's optimized SOFTMAX (also run on
#: the XNNPACK path) is another algorithm in LiteRT's ARM64 wheels, and XNNPACK's float MEAN may
#: be contracted into FMAs there (golden/tflite_ops.py): on ARM64 it is compared on ref only
MODEL_PATHS = {"v1": F.PATHS, "v1_fc": F.PATHS, "v2": F.PATHS,
               "v2_keras": F.PATHS if O.softmax_opt_is_modelled() else ("ref",),
               # MobileNetV3-style with float I/O (QUANTIZE, HARD_SWISH, MEAN, LOGISTIC, MUL, DEQUANTIZE):
               # XNNPACK's MEAN and MUL and the optimized DEQUANTIZE and HARD_SWISH are modelled for x86
               "v3_float": F.PATHS if platform.machine().lower() in ("x86_64", "amd64") else ("ref",)}


@pytest.fixture(scope="module", params=list(MODELS))
def any_head(request):
    return request.param, MODELS[request.param]()


def test_generator_is_deterministic(model):
    m, x = model
    m2, x2 = N.mobilenet(0)
    assert m == m2 and np.array_equal(x, x2)
    assert N.mobilenet(1)[0] != m
    v2 = N.mobilenet_v2(2)[0]
    assert v2 == N.mobilenet_v2(2)[0]
    print(f"\nmobilenet(0): {len(m)} bytes, sha256 {hashlib.sha256(m).hexdigest()[:16]}; mobilenet_v2(2): "
          f"{len(v2)} bytes, sha256 {hashlib.sha256(v2).hexdigest()[:16]}")


def test_reader_sees_the_generated_graph(model):
    g = N.read_model(model[0])
    kinds = [op.kind for op in g.ops]
    assert kinds == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                     "DEPTHWISE_CONV_2D", "CONV_2D", "AVERAGE_POOL_2D", "CONV_2D", "RESHAPE"]
    assert g.tensors[g.inputs[0]].shape == (1, 16, 16, 3)
    assert g.tensors[g.outputs[0]].shape == (1, 10)
    assert g.ops[7].options["filter"] == (4, 4)
    fc = N.read_model(N.mobilenet(0, head="fc")[0])
    assert [op.kind for op in fc.ops][-3:] == ["AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert [op.kind for op in fc.engine_ops("ref")][-1] == "CONV_2D"          # the reference FC: host
    assert [op.kind for op in fc.engine_ops("xnnpack")][-1] == "FULLY_CONNECTED"
    keras = [op.kind for op in N.read_model(N.mobilenet_v2(2, head="keras")[0]).ops]
    assert keras.count("PAD") == 2 and keras.count("MEAN") == 1 and keras[-2:] == ["RESHAPE", "SOFTMAX"]
    v2 = N.read_model(N.mobilenet_v2(2)[0])
    kinds = [op.kind for op in v2.ops]
    assert kinds.count("ADD") == 2 and kinds.count("DEPTHWISE_CONV_2D") == 3 and len(v2.engine_ops("ref")) == 12
    assert [v2.tensors[op.outputs[0]].shape[-1] for op in v2.ops if op.kind == "DEPTHWISE_CONV_2D"] == [24, 24, 36]
    dw = [op for op in g.ops if op.kind == "DEPTHWISE_CONV_2D"]
    assert [g.tensors[op.outputs[0]].shape[-1] % 8 for op in dw] == [0, 0, 4]   # 4 scalar channels on opt
    assert all(op.options["activation"] == "relu6" for op in g.ops[:7])


def test_golden_paths_equal_litert_and_differ(any_head):
    """Each path's golden run of the whole model equals LiteRT on that path; inside the network
    the paths differ (ref and opt only on negative exact ties, which random layers rarely hit:
    the counts are printed, the fixtures of test_tflite_paths.py separate them)."""
    head, (m, x) = any_head
    g = N.read_model(m)
    paths = MODEL_PATHS[head]
    out = {p: F.run_path(m, x, p) for p in paths}
    values = {p: N.run_golden(g, x, p) for p in paths}
    for p in paths:
        gold = values[p][g.outputs[0]]
        bad = N.count_differ(gold, out[p])
        assert bad == 0, f"{head} head, path {p}: {bad} outputs differ"
    pairs = [(a, b) for a, b in (("ref", "opt"), ("ref", "xnnpack"), ("opt", "xnnpack")) if a in paths and b in paths]
    inside = {(a, b): sum(N.count_differ(values[a][t], values[b][t]) for t in values[a]) for a, b in pairs}
    print(f"\n{head}: tensor values differing between the paths' networks: {inside}")
    if len(paths) == 3:
        assert inside["ref", "xnnpack"] > 0 and inside["opt", "xnnpack"] > 0
    if head.startswith("v2") and len(paths) == 3:
        assert inside["ref", "opt"] > 0


def test_every_operator_equals_litert_alone(any_head):
    """Every operator, on the input the path's own network gives it: golden == LiteRT running
    that operator alone (golden.tflite_net.single_op_model; what run tflite compares with)."""
    head, (m, x) = any_head
    g = N.read_model(m)
    for p in MODEL_PATHS[head]:
        values = N.run_golden(g, x, p)
        for op in g.ops:
            assert N.count_differ(values[op.outputs[0]], N.litert_op(g, op, values, p)) == 0, (head, p, op.name)


#: a model written by TensorFlow's own converter (golden/tflite_keras.py, tensorflow-cpu 2.21.0):
#: PAD, MAX_POOL_2D, ADD, CONCATENATION, a 4-D MEAN, SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE,
#: FULLY_CONNECTED, SOFTMAX
KERAS_MODEL = Path(__file__).parent / "data" / "tflite" / "keras_resnet_concat.tflite"


def test_converter_written_model_equals_litert():
    """Real converter output, read and run on each path's golden models: every operator equals
    LiteRT running it alone and the output equals LiteRT's whole-model run (opt and xnnpack only
    where the optimized SOFTMAX is modelled: not on ARM64)."""
    m = KERAS_MODEL.read_bytes()
    g = N.read_model(m)
    kinds = [op.kind for op in g.ops]
    assert {"PAD", "MAX_POOL_2D", "ADD", "CONCATENATION", "MEAN", "SHAPE", "PACK", "FULLY_CONNECTED",
            "SOFTMAX"} <= set(kinds)
    x = np.random.default_rng(1).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    compared = 0
    for p in F.PATHS if O.softmax_opt_is_modelled() else ("ref",):
        values = N.run_golden(g, x, p)
        for op in g.ops:
            if op.kind not in N.NO_DATA_OPS:
                want = N.litert_op(g, op, values, p)
                assert np.array_equal(values[op.outputs[0]], want), (p, op.name)
                compared += want.size
        assert np.array_equal(values[g.outputs[0]], F.run_path(m, x, p, check_delegated=False)), p
    print(f"\n{KERAS_MODEL.name}: {len(kinds)} operators, {compared} operator outputs equal LiteRT")


#: a float-I/O model written by TensorFlow's converter (golden/tflite_keras.py, se_hard_swish):
#: QUANTIZE, CONV_2D, HARD_SWISH, DEPTHWISE_CONV_2D, a squeeze-excite block (MEAN, LOGISTIC, MUL),
#: MEAN, FULLY_CONNECTED, DEQUANTIZE
KERAS_FLOAT_MODEL = Path(__file__).parent / "data" / "tflite" / "keras_se_hard_swish_float_io.tflite"
#: its operators are modelled on every path on x86; off x86 the optimized DEQUANTIZE and
#: HARD_SWISH and XNNPACK's MEAN and MUL may differ (golden/tflite_ops.py)
FLOAT_MODEL_PATHS = F.PATHS if platform.machine().lower() in ("x86_64", "amd64") else ("ref",)


def _seeded_input(g, seed):
    from types import SimpleNamespace

    from convgen.commands.tflite import _model_input
    return _model_input(g, SimpleNamespace(input=None, input_seed=seed))


def test_converter_written_float_io_model_equals_litert():
    """TensorFlow's converter output with float input and output (the converter's default): its
    QUANTIZE and DEQUANTIZE, HARD_SWISH, LOGISTIC and MUL, read and run on each path's golden
    models: every operator equals LiteRT running it alone and the float32 output equals LiteRT's
    whole-model run bit for bit, on ``run tflite``'s default input (seeded floats over the
    QUANTIZE's range and beyond)."""
    m = KERAS_FLOAT_MODEL.read_bytes()
    g = N.read_model(m)
    kinds = [op.kind for op in g.ops]
    assert kinds[0] == "QUANTIZE" and kinds[-1] == "DEQUANTIZE"
    assert {"HARD_SWISH", "LOGISTIC", "MUL", "MEAN", "FULLY_CONNECTED"} <= set(kinds)
    x = _seeded_input(g, 0)
    assert x.dtype == np.float32
    compared, values = 0, {}
    for p in FLOAT_MODEL_PATHS:
        values[p] = N.run_golden(g, x, p)
        for op in g.ops:
            if op.kind not in N.NO_DATA_OPS:
                want = N.litert_op(g, op, values[p], p)
                assert N.count_differ(values[p][op.outputs[0]], want) == 0, (p, op.name)
                compared += want.size
        out = values[p][g.outputs[0]]
        assert out.dtype == np.float32 and N.count_differ(out, F.run_path(m, x, p, check_delegated=False)) == 0, p
    inside = {(a, b): sum(N.count_differ(values[a][t], values[b][t]) for t in values[a])
              for a, b in (("ref", "opt"), ("ref", "xnnpack")) if b in values}
    print(f"\n{KERAS_FLOAT_MODEL.name}: {len(kinds)} operators, {compared} operator outputs equal LiteRT; "
          f"values differing between the paths {inside}")
    if len(FLOAT_MODEL_PATHS) == 3:
        assert inside["ref", "opt"] > 0 and inside["ref", "xnnpack"] > 0


def test_shape_arithmetic_only_for_a_reshape():
    """SHAPE/STRIDED_SLICE/PACK are accepted only as a RESHAPE's shape computation."""
    m = KERAS_MODEL.read_bytes()
    g = N.parse_model(m)
    shape_op = next(op for op in g.ops if op.kind == "SHAPE")
    reshape = next(op for op in g.ops if op.kind == "RESHAPE")
    reshape.inputs[1], reshape.inputs[0] = reshape.inputs[0], reshape.inputs[1]     # now the data input
    with pytest.raises(ConfigError, match=rf"operator {shape_op.index + 2} \(PACK\) is supported only as int32"):
        N._check_shape_ops(g)


def test_add_semantics_per_path():
    """int8 ADD on exact ties (scales 0.5 and 0.25 into 1) and on random scales: TFLite's
    reference ADD, its optimized ADD (NEON blocks of 16 elements, the reference formula on the
    rest) and XNNPACK's qs8 add each equal LiteRT on their path, and they differ (counts)."""
    T = N.TensorInfo
    rng = np.random.default_rng(7)
    differ = opt_gap = total = 0
    for scales in ((0.5, 0.25, 1.0), (0.013, 0.021, 0.03), (0.04, 0.011, 0.045)):
        sa, sb, so = (float(np.float32(v)) for v in scales)
        shape = (1, 16, 16, 8)
        ts = [T("a", shape, "int8", np.array([sa], np.float32), np.array([3])),
              T("b", shape, "int8", np.array([sb], np.float32), np.array([-7])),
              T("o", shape, "int8", np.array([so], np.float32), np.array([1]))]
        g = N.Graph(ts, [N.OpInfo(0, "ADD", [0, 1], [2], {"activation": "none"})], [0, 1], [2])
        m = N.write_model(g)
        a, b = (rng.integers(-128, 128, shape) for _ in range(2))
        lit = {p: N.run_litert(m, [a, b], p) for p in F.PATHS}
        for p in F.PATHS:
            assert np.array_equal(N.add_int8(a, b, *ts, "none", p), lit[p]), (scales, p)
        differ += int((lit["ref"] != lit["xnnpack"]).sum())
        opt_gap += int((lit["ref"] != lit["opt"]).sum())
        total += a.size
    print(f"\nADD: TFLite's reference and XNNPACK differ on {differ} of {total} outputs, the reference and "
          f"the optimized ADD on {opt_gap}")
    assert differ > 100 and opt_gap > 0


@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_pools_equal_litert(kind):
    """Random int8 pools (global and strided windows, VALID and SAME, all four activations):
    the golden pool equals LiteRT on every path (XNNPACK leaves AVERAGE_POOL_2D to TFLite's
    kernel; MAX_POOL_2D it takes or leaves, exact either way)."""
    T = N.TensorInfo
    rng = np.random.default_rng(3 if kind == "MAX_POOL_2D" else 4)
    total = 0
    for trial in range(12):
        h, c = int(rng.integers(2, 10)), int(rng.integers(1, 20))
        f, s = (h, 1) if trial < 3 else (int(rng.integers(1, h + 1)), int(rng.integers(1, 3)))
        pad = "VALID" if trial < 3 else str(rng.choice(["VALID", "SAME"]))
        scale, zp = float(np.float32(rng.uniform(0.005, 0.05))), int(rng.integers(-128, 50))
        oh = -(-h // s) if pad == "SAME" else (h - f) // s + 1
        ts = [T("in", (1, h, h, c), "int8", np.array([scale], np.float32), np.array([zp])),
              T("out", (1, oh, oh, c), "int8", np.array([scale], np.float32), np.array([zp]))]
        opts = {"stride": (s, s), "filter": (f, f), "padding": pad,
                "activation": ["none", "relu", "relu6", "relu_n1_to_1"][trial % 4]}
        m = N.write_model(N.Graph(ts, [N.OpInfo(0, kind, [0], [1], opts)], [0], [1]))
        g = N.read_model(m)
        x = rng.integers(-128, 128, (1, h, h, c)).astype(np.int8)
        for p in F.PATHS:
            want = F.run_path(m, x, p, check_delegated=False)
            assert np.array_equal(N.run_golden(g, x, p)[1], want), (kind, trial, p)
        total += want.size
    print(f"\n{kind}: {total} outputs per path equal LiteRT")


def test_reference_fully_connected_rounds_once_away_from_zero():
    """TFLite's reference FULLY_CONNECTED (LiteRT 2.3, BUILTIN_REF) on exact ties: x * 2**-e for
    every int8 x: it rounds half away from zero, once; the reference CONV_2D's double rounding
    (mode tflite) and the optimized path's ties up both differ from it (counts)."""
    T = N.TensorInfo
    es = np.arange(1, 9)
    w_scale = (2.0 ** -es).astype(np.float32)
    bias = np.array([0, -3, 17, -100, 300, -700, 1000, -2000], np.int32)
    ts = [T("in", (256, 1), "int8", np.array([1.0], np.float32), np.array([0])),
          T("w", (8, 1), "int8", w_scale, np.zeros(8, np.int64), 0, np.ones((8, 1), np.int8)),
          T("b", (8,), "int32", w_scale, np.zeros(8, np.int64), 0, bias),
          T("out", (256, 8), "int8", np.array([1.0], np.float32), np.array([0]))]
    g = N.Graph(ts, [N.OpInfo(0, "FULLY_CONNECTED", [0, 1, 2], [3], {"activation": "none"})], [0], [3])
    m = N.write_model(g)
    x = np.arange(-128, 128).astype(np.int8).reshape(256, 1)
    lit = {p: F.run_path(m, x, p, check_delegated=False) for p in F.PATHS}
    v = x.astype(np.int64) + bias                                   # exact: v * 2**-e, e = 1..8
    num, den = v, (1 << es)
    q = (2 * np.abs(num) + den) // (2 * den)                          # |v|/2**e rounded half up
    away = np.clip(np.where(v < 0, -q, q), -128, 127)
    assert np.array_equal(lit["ref"], away)
    for p in F.PATHS:
        gold = N.run_golden(N.read_model(m), x, p)[3]
        assert np.array_equal(gold, lit[p]), p
    conv_rounding = F.golden_path(g.conv_fixture(g.ops[0], x), "ref")   # the CONV_2D's tflite mode
    print(f"\nreference FC vs the conv's double rounding: {int((conv_rounding.reshape(256, 8) != away).sum())} "
          f"differ; vs opt: {int((lit['opt'] != away).sum())}; vs xnnpack: {int((lit['xnnpack'] != away).sum())}")
    assert (conv_rounding.reshape(256, 8) != away).sum() > 50 and (lit["opt"] != away).sum() > 50


def _patch_opcode(model: bytes, old: int, new: int) -> bytes:
    """``model`` with the operator code table's ``old`` entry changed to ``new`` (a way to
    write an operator write_model does not write)."""
    import tflite as T

    model = bytearray(model)
    root = T.Model.GetRootAsModel(model, 0)
    for i in range(root.OperatorCodesLength()):
        tab = root.OperatorCodes(i)._tab
        if root.OperatorCodes(i).BuiltinCode() != old:
            continue
        off = tab.Offset(4)        # deprecated_builtin_code, int8
        tab.Bytes[tab.Pos + off] = new
        off = tab.Offset(10)       # builtin_code, int32
        tab.Bytes[tab.Pos + off:tab.Pos + off + 4] = int(new).to_bytes(4, "little")
    return bytes(model)


def test_reader_rejects_unsupported(tmp_path, capsys):
    # an operator outside SUPPORTED_OPS (TANH written in place of the RESHAPE): named
    import tflite as T

    m, _ = N.mobilenet(0)
    with pytest.raises(ConfigError, match=r"operator 9 \(TANH\) is not supported"):
        N.read_model(_patch_opcode(m, T.BuiltinOperator.RESHAPE, T.BuiltinOperator.TANH))
    with pytest.raises(ConfigError, match="not a TFLite flatbuffer"):
        N.read_model(b"not a model at all, just some bytes")
    path = tmp_path / "bad.tflite"
    path.write_bytes(b"\0" * 64)
    status = main(["run", "tflite", str(path), "--sim", "icarus"])
    out, err = capsys.readouterr()
    assert status == 2 and err.startswith("convgen: error: ") and len(err.strip().splitlines()) == 1, err
    assert out == ""


@pytest.mark.parametrize("extra, needle", [
    (["--path", "fast"], "--path must be one of 'ref', 'opt', 'xnnpack', not 'fast'"),
    (["--engine", "0x4"], "--engine must be ROWSxCOLS with each in 1..64, not '0x4'"),
    (["--engine", "65x4"], "--engine must be ROWSxCOLS with each in 1..64, not '65x4'"),
    (["--input-seed", "-1"], "--input-seed must be an integer in 0..2147483647, not -1"),
    (["--report", "r.txt"], "--report must end in .md (Markdown) or .html (HTML), not"),
    (["--input", "WRONG_SHAPE"], "--input must have the model's input shape (1, 16, 16, 3), not (1, 16, 16, 4)"),
    (["--input", "FLOAT"], "--input must hold int8 values (-128..127), not float32"),
    (["--input", "RANGE"], "--input must hold int8 values (-128..127), not int64 in -128..200"),
])
def test_bad_options(tmp_path, capsys, model, extra, needle):
    m, x = model
    mp = tmp_path / "m.tflite"
    mp.write_bytes(m)
    arrays = {"WRONG_SHAPE": np.zeros((1, 16, 16, 4), np.int8), "FLOAT": x.astype(np.float32),
              "RANGE": np.where(x > 100, 200, x.astype(np.int64))}
    argv = []
    for a in extra:
        if a in arrays:
            np.save(tmp_path / f"{a}.npy", arrays[a])
            a = str(tmp_path / f"{a}.npy")
        argv.append(a)
    out = tmp_path / "y.npy"
    before = sorted(os.listdir(tmp_path))
    status = main(["run", "tflite", str(mp), "--sim", "icarus", "--out", str(out), *argv])
    stdout, err = capsys.readouterr()
    assert status == 2, err
    assert needle in err and err.startswith("convgen: error: ") and len(err.strip().splitlines()) == 1, err
    assert stdout == "" and sorted(os.listdir(tmp_path)) == before


@pytest.mark.slow
def test_run_tflite_v2_opt_on_icarus(tmp_path, capsys):
    """End to end on the other simulator (about 9 s of CPU, over the default suite's budget):
    the MobileNetV2-style model (ADD, a depthwise layer with 4
    scalar channels on the optimized path) on a 4x4 engine on Icarus, path opt: every operator
    and the output equal LiteRT."""
    m, x = MODELS["v2"]()
    mp, xp = tmp_path / "m.tflite", tmp_path / "x.npy"
    mp.write_bytes(m)
    np.save(xp, x)
    status = main(["run", "tflite", str(mp), "--input", str(xp), "--path", "opt", "--engine", "4x4",
                   "--sim", "icarus", "--quiet"])
    stdout, err = capsys.readouterr()
    assert status == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["bit_exact"] and summary["convs_rtl"] == 12 and summary["layer_outputs_compared"] == 8810
    assert "| ADD |" in stdout and stdout.count("| exact |") == 15


@pytest.mark.slow
@pytest.mark.parametrize("path", F.PATHS)
def test_run_tflite_on_the_engine(path, tmp_path, capsys, any_head):
    """The generated models on a 4x4 engine (Verilator): every operator and the output equal
    LiteRT on ``path``."""
    head, (m, x) = any_head
    mp, xp, yp, rp = tmp_path / "m.tflite", tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "r.md"
    mp.write_bytes(m)
    np.save(xp, x)
    status = main(["run", "tflite", str(mp), "--input", str(xp), "--path", path, "--engine", "4x4",
                   "--sim", "verilator", "--quiet", "--out", str(yp), "--report", str(rp)])
    stdout, err = capsys.readouterr()
    assert status == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["bit_exact"] and summary["mode"] == F.PATH_MODE[path]
    if path not in MODEL_PATHS[head]:
        pytest.skip(f"{head} is compared on {MODEL_PATHS[head]} on this CPU")
    engine_ops = {"v1": 8, "v1_fc": 7 if path == "ref" else 8, "v2": 12, "v2_keras": 12, "v3_float": 7}[head]
    assert summary["convs_rtl"] == engine_ops
    assert summary["layer_outputs_compared"] >= 3400
    assert N.count_differ(np.load(yp), F.run_path(m, x, path)) == 0
    pool = {"v2_keras": "MEAN", "v3_float": "MEAN"}.get(head, "AVERAGE_POOL_2D")
    channels = 40 if head == "v3_float" else 32
    assert f"{pool} |  | 1x1x1x{channels} | host | - | - | - | - | - | " in rp.read_text()
    print(f"\n{head}, {path}: {summary['cycles']:,} cycles, {summary['layer_outputs_compared']} layer outputs "
          f"and {summary['outputs']} outputs equal LiteRT")


def _run_on_4x4_engine(model: Path, path: str, tmp_path, capsys, *extra: str):
    """``convgen run tflite MODEL --path PATH --engine 4x4 --sim verilator --quiet``: its JSON
    summary, stdout and the output file."""
    yp = tmp_path / "y.npy"
    status = main(["run", "tflite", str(model), *extra, "--path", path, "--engine", "4x4", "--sim", "verilator",
                   "--quiet", "--out", str(yp)])
    stdout, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(stdout.strip().splitlines()[-1]), stdout, np.load(yp)


@pytest.mark.slow
@pytest.mark.parametrize("path", F.PATHS)
def test_run_tflite_converter_model_on_the_engine(path, tmp_path, capsys):
    """TensorFlow's own converter output (KERAS_MODEL) on a 4x4 engine (Verilator): every
    operator and the output equal LiteRT on ``path`` (8 engine operators on ref, where the
    FULLY_CONNECTED runs on the host; 9 on opt and xnnpack)."""
    if path not in (F.PATHS if O.softmax_opt_is_modelled() else ("ref",)):
        pytest.skip("the optimized SOFTMAX of this CPU's LiteRT is not modelled")
    s, _, y = _run_on_4x4_engine(KERAS_MODEL, path, tmp_path, capsys)
    assert s["bit_exact"] and s["convs_rtl"] == (8 if path == "ref" else 9) and s["layer_outputs_compared"] == 9392
    g = N.read_model(KERAS_MODEL.read_bytes())
    x = np.random.default_rng(0).integers(-128, 128, g.tensors[g.inputs[0]].shape)
    assert np.array_equal(y, F.run_path(KERAS_MODEL.read_bytes(), x, path, check_delegated=False))
    print(f"\n{KERAS_MODEL.name}, {path}: {s['cycles']:,} cycles, {s['layer_outputs_compared']} layer outputs equal LiteRT")


@pytest.mark.slow
@pytest.mark.parametrize("path", F.PATHS)
def test_run_tflite_float_io_on_the_engine(path, tmp_path, capsys):
    """MobileNetV1-style with float32 input and output (QUANTIZE, DEQUANTIZE:
    golden.tflite_net.with_io) on a 4x4 engine (Verilator): every operator and the float32
    output equal LiteRT on ``path`` bit for bit. Off x86 the optimized DEQUANTIZE may be fused
    (golden/tflite_ops.py), so ``opt`` is run on x86 only."""
    if path == "opt" and platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the optimized DEQUANTIZE is modelled for x86")
    m, x = N.with_io(*N.mobilenet(0), io="float32")
    mp, xp = tmp_path / "m.tflite", tmp_path / "x.npy"
    mp.write_bytes(m)
    np.save(xp, x)
    s, stdout, y = _run_on_4x4_engine(mp, path, tmp_path, capsys, "--input", str(xp))
    assert s["bit_exact"] and s["convs_rtl"] == 8 and "| QUANTIZE |" in stdout and "| DEQUANTIZE |" in stdout
    assert y.dtype == np.float32 and N.count_differ(y, F.run_path(m, x, path)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("path", F.PATHS)
def test_run_tflite_converter_float_io_model_on_the_engine(path, tmp_path, capsys):
    """The converter's float-I/O model (KERAS_FLOAT_MODEL) on a 4x4 engine (Verilator), default
    input: every operator and the float32 output equal LiteRT on ``path`` (5 engine operators on
    ref, where the FULLY_CONNECTED runs on the host; 6 on opt and xnnpack)."""
    if path not in FLOAT_MODEL_PATHS:
        pytest.skip("modelled on x86 only for this path (golden/tflite_ops.py)")
    s, _, y = _run_on_4x4_engine(KERAS_FLOAT_MODEL, path, tmp_path, capsys)
    assert s["bit_exact"] and s["convs_rtl"] == (5 if path == "ref" else 6)
    m = KERAS_FLOAT_MODEL.read_bytes()
    x = _seeded_input(N.read_model(m), 0)
    assert y.dtype == np.float32 and N.count_differ(y, F.run_path(m, x, path, check_delegated=False)) == 0
    print(f"\n{KERAS_FLOAT_MODEL.name}, {path}: {s['cycles']:,} cycles, {s['layer_outputs_compared']} layer outputs "
          "and the float output equal LiteRT")
