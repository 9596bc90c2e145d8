"""Python-only tests of the Winograd block: golden against independent oracles (exact
rational identity, direct convolution, Python integers), derived widths, parameter errors,
the direct baseline engine in Amaranth's simulator, the exhaustive proof of the 1-D F(2,3)
RTL datapath (and that it catches a wrong datapath), and the CLI on both simulators."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convgen.golden import winograd as gw
from convgen.core.params import ConfigError
from convgen.hdl.winograd import WinogradConfig, WinogradConv3x3
from convgen.hdl.winograd_direct import DirectConv3x3
from convgen.sim.tools import SIMULATORS

ROOT = Path(__file__).resolve().parents[1]


def test_transform_identities_exact():
    gw.check_identity(gw.AT, gw.G, gw.BT)
    gw.check_identity(gw.AT_4, gw.G_4, gw.BT_4)
    bad = gw.BT.copy()
    bad[3, 3] = 1                       # a mistyped entry must be caught
    with pytest.raises(ValueError):
        gw.check_identity(gw.AT, gw.G, bad)
    assert (gw.G2 == np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]])).all()


def test_f23_1d_equals_direct_python_ints():
    rng = np.random.default_rng(0)
    cases = [rng.integers(-128, 128, size=7) for _ in range(2000)]
    cases += [np.array([-128] * 7), np.array([127] * 7), np.array([-128, 127] * 3 + [-128])]
    for c in cases:
        assert gw.f23_1d(c[:4], c[4:]) == gw.direct_1d(c[:4], c[4:])


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 2, 1), (3, 5, 7, 2), (2, 8, 8, 3), (4, 1, 6, 2),
                                   (5, 9, 3, 4), (16, 7, 7, 2)])
def test_winograd_conv_equals_direct(shape):
    c_in, h, w, c_out = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-128, 128, size=(c_in, h, w))
    wt = rng.integers(-128, 128, size=(c_out, c_in, 3, 3))
    assert np.array_equal(gw.conv3x3_winograd(x, wt), gw.conv3x3_direct(x, wt))


def test_direct_oracle_against_python_loops():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(2, 3, 4))
    w = rng.integers(-128, 128, size=(2, 2, 3, 3))
    y = gw.conv3x3_direct(x, w)
    for o in range(2):
        for i in range(3):
            for j in range(4):
                s = 0
                for c in range(2):
                    for ky in range(3):
                        for kx in range(3):
                            yy, xx = i + ky - 1, j + kx - 1
                            if 0 <= yy < 3 and 0 <= xx < 4:
                                s += int(x[c, yy, xx]) * int(w[o, c, ky, kx])
                assert y[o, i, j] == s


def test_extreme_values_exact():
    for a in (-128, 127):
        for b in (-128, 127):
            x = np.full((64, 5, 5), a)
            w = np.full((2, 64, 3, 3), b)
            assert np.array_equal(gw.conv3x3_winograd(x, w), gw.conv3x3_direct(x, w))


def test_tiling_overlap_and_odd_sizes():
    assert gw.tile_positions(3, 5) == [(0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4)]
    x = np.arange(1, 16).reshape(1, 3, 5)
    t = gw.extract_tiles(x)
    assert t.shape == (6, 1, 4, 4)
    assert np.array_equal(t[0, 0, 1:, 1:], x[0, :3, :3])          # padding row/column of zeros
    assert np.array_equal(t[0, 0, :, 2:], t[1, 0, :, :2])          # neighbours overlap by 2


def test_widths_confirmed():
    cfg = WinogradConfig()
    assert (cfg.v_range.lo, cfg.v_range.hi, cfg.v_range.width) == (-512, 510, 10)
    assert (cfg.u_range.lo, cfg.u_range.hi, cfg.u_range.width) == (-1152, 1147, 12)
    assert (cfg.p_range.lo, cfg.p_range.hi, cfg.p_range.width) == (-585990, 589824, 21)
    # brute force over the extreme corners: the ranges are attained, so they are exact
    vs = gw.input_transform(np.stack([gw.BT * 0 + np.where(s > 0, 127, -128) for s in
                                      (np.sign(np.kron(gw.BT[i], gw.BT[j]).reshape(4, 4) + 0.5)
                                       for i in range(4) for j in range(4))]))
    assert max(int(v) for v in vs.flatten()) == 510
    assert cfg.max_channels == 14563 and cfg.acc_width == 34
    assert WinogradConfig(out_width=20).max_channels == 3


@pytest.mark.parametrize("kwargs, name", [
    (dict(data_width=1), "data_width"), (dict(data_width=17), "data_width"),
    (dict(weight_width="8"), "weight_width"), (dict(out_width=18), "out_width"),
    (dict(out_width=65), "out_width"), (dict(data_width=True), "data_width"),
])
def test_bad_parameters(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        WinogradConfig(**kwargs)


def test_bad_operands():
    from convgen.sim.winograd import run_winograd_conv

    with pytest.raises(ConfigError, match="x values must be in -128..127"):
        run_winograd_conv(np.full((1, 2, 2), 128), np.zeros((1, 1, 3, 3), dtype=int))
    with pytest.raises(ConfigError, match="C_in"):
        run_winograd_conv(np.zeros((2, 2, 2), dtype=int), np.zeros((1, 3, 3, 3), dtype=int))
    with pytest.raises(ConfigError, match="C_in=4 can overflow"):
        run_winograd_conv(np.zeros((4, 2, 2), dtype=int), np.zeros((1, 4, 3, 3), dtype=int), out_width=20)
    with pytest.raises(ConfigError, match="layout"):
        run_winograd_conv(np.zeros((1, 2, 2), dtype=int), np.zeros((1, 1, 3, 3), dtype=int), layout="chw")


def _pysim_conv(component, x, w):
    """Stream a convolution through a conv engine in Amaranth's own simulator."""
    from amaranth.sim import Simulator

    from convgen.sim.winograd import conv_beats

    beats = conv_beats(x, w)
    lay = component.config.conv_in_layout
    out = []

    async def tb(ctx):
        ctx.set(component.o.ready, 1)
        k = 0
        n = len(beats["last"])
        while len(out) < beats["out_beats"]:
            if k < n:
                ctx.set(component.i.payload, lay.const({"d": [int(v) for v in beats["d"][k]],
                                                        "g": [int(v) for v in beats["g"][k]],
                                                        "last": int(beats["last"][k])}))
                ctx.set(component.i.valid, 1)
            else:
                ctx.set(component.i.valid, 0)
            _, _, ready, ov, op = await ctx.tick().sample(component.i.ready, component.o.valid,
                                                          component.o.payload)
            if k < n and ready:
                k += 1
            if ov:
                out.append([int(v) for v in op])
    sim = Simulator(component)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    c_out = w.shape[0]
    return gw.assemble(np.array(out).reshape(c_out, -1, 2, 2), c_out, x.shape[1], x.shape[2])


@pytest.mark.parametrize("engine", [WinogradConv3x3, DirectConv3x3])
def test_conv_engines_in_amaranth_sim(engine):
    """The benchmark's direct baseline is checked like the Winograd unit (also a third
    simulator for the Winograd RTL)."""
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(3, 5, 3))
    w = rng.integers(-128, 128, size=(2, 3, 3, 3))
    assert np.array_equal(_pysim_conv(engine(), x, w), gw.conv3x3_direct(x, w))


def _prove(**kw):
    sys.path.insert(0, str(ROOT / "formal" / "winograd"))
    try:
        import prove_f23
    finally:
        sys.path.pop(0)
    return prove_f23.prove(**kw)


def test_f23_rtl_proof_exhaustive_3bit(tmp_path):
    ok, text = _prove(data_width=3, weight_width=3, work_dir=tmp_path)
    assert ok and "checked 2097152 input combinations, 0 mismatches" in text, text


def test_f23_rtl_proof_catches_a_wrong_datapath(tmp_path):
    ok, text = _prove(data_width=3, weight_width=3, work_dir=tmp_path,
                      mutation=("assign v3 = $signed(d1) - $signed(d3);", "assign v3 = $signed(d3) - $signed(d1);"))
    assert not ok and "MISMATCH" in text


@pytest.mark.slow
def test_f23_rtl_proof_exhaustive_4bit(tmp_path):
    ok, text = _prove(data_width=4, weight_width=4, work_dir=tmp_path)
    assert ok and "checked 268435456 input combinations, 0 mismatches" in text, text


def test_float_error_analysis_shows_f4_error():
    r = gw.float_error_analysis(shape=(4, 8, 8), c_out=2, trials=1)
    assert r["normal"]["F(4x4,3x3) float32"]["max_abs_error"] > r["normal"]["F(2x2,3x3) float32"]["max_abs_error"]


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_cli_run_winograd_conv(simulator, tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(5, 3, 2)).astype(np.int8)   # NHWC, odd H
    w = rng.integers(-128, 128, size=(2, 2, 3, 3)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    r = subprocess.run([sys.executable, "-m", "convgen", "run", "winograd-conv", "--x", str(tmp_path / "x.npy"),
                        "--w", str(tmp_path / "w.npy"), "--out", str(tmp_path / "y.npy"), "--layout", "nhwc",
                        "--sim", simulator], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y, gw.conv3x3_direct(x.transpose(2, 0, 1), w).transpose(1, 2, 0))
    assert info["multiplies"] == 16 * info["beats"] and info["direct_multiplies"] == 9 * 2 * 2 * 5 * 3


def test_cli_generate_and_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "convgen", "generate", "winograd", "-o", str(tmp_path / "g")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "g" / "convgen_winograd_conv3x3_d8_g8_o32.json").read_text())
    assert m["arithmetic"]["transformed_input_width"] == 10 and m["arithmetic"]["scaled_filter_width"] == 12
    r = subprocess.run([sys.executable, "-m", "convgen", "generate", "winograd", "--out-width", "99", "-o",
                        str(tmp_path / "h")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == "convgen: error: --out-width must be an integer in 19..64, not 99\n"
    assert not (tmp_path / "h").exists()
