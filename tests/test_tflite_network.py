"""``convgen run tflite`` and its pieces: the MobileNet-style int8 generator, the .tflite reader,
the golden run of each TFLite path, all against LiteRT 2.3.0 on that path.

Default suite (about 2 s): the generator is deterministic; its model, read back and run on each
path's golden models, equals LiteRT's output on that path, and the paths differ on it (counts);
unsupported models and bad options are one line with status 2, nothing written. ``-m slow``:
the CLI runs the model on a 4x4 engine (Verilator) on all three paths, every convolution and the
output equal to LiteRT.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from convgen.cli import main
from convgen.core.params import ConfigError
from convgen.golden import tflite_fixtures as F
from convgen.golden import tflite_net as N


@pytest.fixture(scope="module")
def model():
    return N.mobilenet(0)


def test_generator_is_deterministic(model):
    m, x = model
    m2, x2 = N.mobilenet(0)
    assert m == m2 and np.array_equal(x, x2)
    assert N.mobilenet(1)[0] != m
    print(f"\nmobilenet(0): {len(m)} bytes, sha256 {hashlib.sha256(m).hexdigest()[:16]}")


def test_reader_sees_the_generated_graph(model):
    g = N.read_model(model[0])
    kinds = [op.kind for op in g.ops]
    assert kinds == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                     "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D", "RESHAPE"]
    assert g.tensors[g.inputs[0]].shape == (1, 16, 16, 3)
    assert g.tensors[g.outputs[0]].shape == (1, 160)
    dw = [op for op in g.ops if op.kind == "DEPTHWISE_CONV_2D"]
    assert [g.tensors[op.outputs[0]].shape[-1] % 8 for op in dw] == [0, 0, 4]   # 4 scalar channels on opt
    assert all(op.options["activation"] == "relu6" for op in g.ops[:7])


def test_golden_paths_equal_litert_and_differ(model):
    """Each path's golden run of the whole model equals LiteRT on that path; the paths differ."""
    m, x = model
    g = N.read_model(m)
    out = {p: F.run_path(m, x, p) for p in F.PATHS}
    for p in F.PATHS:
        gold = N.run_golden(g, x, p)[g.outputs[0]]
        assert np.array_equal(gold, out[p]), f"path {p}: {int((gold != out[p]).sum())} outputs differ"
    counts = {(a, b): int((out[a] != out[b]).sum()) for a, b in (("ref", "opt"), ("ref", "xnnpack"), ("opt", "xnnpack"))}
    print(f"\noutputs differing between LiteRT paths (of {out['ref'].size}): {counts}")
    assert all(c > 0 for c in counts.values())


def test_layer_golden_equals_litert_per_path(model):
    """Every convolution, on the input the path's own network gives it: golden == LiteRT's
    one-operator model (what run tflite compares the RTL with)."""
    m, x = model
    g = N.read_model(m)
    for p in F.PATHS:
        seen = []

        def conv(op, fx):
            seen.append(fx)
            return F.golden_path(fx, p)

        N.run_golden(g, x, p, conv=conv)
        for fx in seen:
            assert np.array_equal(F.golden_path(fx, p), F.run_path(F.build_model(fx), fx.x, p)), (p, fx.name)


def _write_softmax(g):
    """``g`` written with its last operator's code changed to SOFTMAX: the model is written
    with a RESHAPE there (write_model writes only supported options), then the operator code
    table's RESHAPE entry is patched in place."""
    import tflite as T

    ops = g.ops[:8] + [N.OpInfo(8, "RESHAPE", g.ops[8].inputs, g.ops[8].outputs, {"new_shape": (1, 160)})]
    model = bytearray(N.write_model(N.Graph(g.tensors, ops, g.inputs, g.outputs)))
    root = T.Model.GetRootAsModel(model, 0)
    for i in range(root.OperatorCodesLength()):
        tab = root.OperatorCodes(i)._tab
        if root.OperatorCodes(i).BuiltinCode() != T.BuiltinOperator.RESHAPE:
            continue
        off = tab.Offset(4)        # deprecated_builtin_code, int8
        tab.Bytes[tab.Pos + off] = T.BuiltinOperator.SOFTMAX
        off = tab.Offset(10)       # builtin_code, int32
        tab.Bytes[tab.Pos + off:tab.Pos + off + 4] = int(T.BuiltinOperator.SOFTMAX).to_bytes(4, "little")
    return bytes(model)


def test_reader_rejects_unsupported(tmp_path, capsys):
    # an operator outside SUPPORTED_OPS (written as SOFTMAX in place of the RESHAPE): named
    m, _ = N.mobilenet(0)
    g = N.read_model(m)
    g.ops[8].kind = "SOFTMAX"
    g.ops[8].options = {}
    with pytest.raises(ConfigError, match=r"operator 8 \(SOFTMAX\) is not supported"):
        N.read_model(_write_softmax(g))
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
    (["--report", "r.html"], "--report must name a .md file"),
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
@pytest.mark.parametrize("path", F.PATHS)
def test_run_tflite_on_the_engine(path, tmp_path, capsys, model):
    """The generated model on a 4x4 engine (Verilator): every convolution and the output equal
    LiteRT on ``path``."""
    m, x = model
    mp, xp, yp, rp = tmp_path / "m.tflite", tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "r.md"
    mp.write_bytes(m)
    np.save(xp, x)
    status = main(["run", "tflite", str(mp), "--input", str(xp), "--path", path, "--engine", "4x4",
                   "--sim", "verilator", "--quiet", "--out", str(yp), "--report", str(rp)])
    stdout, err = capsys.readouterr()
    assert status == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["bit_exact"] and summary["mode"] == F.PATH_MODE[path]
    assert summary["convs_rtl"] == 8 and summary["layer_outputs_compared"] == 3488
    assert np.array_equal(np.load(yp), F.run_path(m, x, path))
    assert "| 8 | 8_reshape | RESHAPE |" in rp.read_text()
    print(f"\n{path}: {summary['cycles']:,} cycles, {summary['layer_outputs_compared']} layer outputs and "
          f"{summary['outputs']} outputs equal LiteRT")
