"""The 2 x 4 engine of bench/synth_engine.py's ``ice40_serial`` point: one requantizer lane
time-multiplexed over the 4 columns (``requant_lanes=1``), descriptor checks without ``*``, the
requantizer's significand product digit-serial (``mult_style="serial"``, 4 steps of 6 bits: one
requantizer beat every 5 cycles, so a tile's 8 beats need a tile period of at least 40), and
25-bit accumulators (``acc_width=0``: the fewest for K <= 144).

Free-running on Icarus (Verilator under ``-m slow``; the serial requantizer itself runs on both
simulators in the default suite, tb/requant/test_requant.py): random layers back to back with a
bad descriptor between them, bit-exact against the conv oracle (``golden.engine.reference_conv``), including a layer at the
largest K with every product at full scale (the 25-bit accumulator of ``acc_width=0``);
the cycle formula (``EngineConfig.layer_cycles``, its serial term derived from
``RequantConfig.interval``) equal to the RTL on every compute-bound layer (K >= 40) and a strict
lower bound on the requant-bound ones (K < 40)."""

import dataclasses
from functools import lru_cache

import numpy as np
import pytest

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError
from convgen.golden import engine as ge
from convgen.hdl.engine import EngineConfig
from convgen.sim import engine as se

CFG = dict(rows=2, cols=4, vec=4, max_h=16, max_w=16, max_pixel_words=4, max_kernel=3, max_stride=2,
           max_pad=1, max_dilation=1, max_tiles=4, addr_width=14, fetch_banks=3, weight_fifo=4,
           requant_lanes=1, mult_style="serial", serial_digits=4, acc_width=0)

# name -> (layer, x_signed, compute-bound with interval 5: K = kh*kw*c_slice >= 40)
LAYERS = {
    "3x3_c8_cout8": (ConvLayer.square(5, 5, 8, 3, 1, 1, c_out=8), True, True),           # K 72
    "3x3_c16_cout4_uint8": (ConvLayer.square(4, 5, 16, 3, 1, 1, c_out=4), False, True),  # K 144
    "3x3_s2_c8_cout6": (ConvLayer.square(7, 7, 8, 3, 2, 1, c_out=6), True, True),        # K 72
    "3x3_c4_cout12": (ConvLayer.square(4, 4, 4, 3, 1, 1, c_out=12), True, False),        # K 36
    "1x1_c16_cout8": (ConvLayer.square(4, 4, 16, 1, 1, 0, c_out=8), False, False),       # K 16
    "depthwise": (ConvLayer.square(5, 5, 4, 3, 1, 1, groups=4, c_out=4), True, False),
}


@lru_cache(maxsize=None)
def _build(simulator: str):
    return se.build_engine(EngineConfig(**CFG), simulator, mem_words=1 << 12)


def _extreme_job(cfg):
    """K = 144 (the largest the maxima allow) with every product at -255 * 255: each output
    accumulates -9,363,600, which needs the 25 bits of acc_width=0 (24 bits would wrap it to
    +7,413,616). Bias 0, so every output saturates at act_min; a wrapped accumulator would give
    act_max instead."""
    layer = ConvLayer.square(4, 4, 16, 3, 1, 0, c_out=4)
    q = ge.random_quant_conv(np.random.default_rng(5), layer, x_signed=True)
    q = dataclasses.replace(q, x=np.full_like(q.x, -128), x_zero_point=127, w=np.full_like(q.w, 127),
                            w_zero_point=-128,
                            params=dataclasses.replace(q.params, bias=np.zeros_like(q.params.bias)))
    job = se.job_from_quant(q, cfg)
    job.expected = ge.reference_conv(q)
    job.out_signed = True
    assert job.plan.k == 144 and cfg.max_k_allowed == 144
    assert (job.expected == np.asarray(q.params.act_min)[None, None, :]).all()
    assert (np.asarray(q.params.act_min) < np.asarray(q.params.act_max)).all()
    return job


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_serial_engine_bit_exact_and_cycle_formula(simulator, tmp_path):
    b = _build(simulator)
    cfg = b.config
    assert cfg.requant.interval == 5 and cfg.requant_slots == 4
    layers = {k: v[:2] for k, v in LAYERS.items()}
    names = list(LAYERS)
    jobs = se.random_jobs(cfg, layers, 21)
    bad = se.random_jobs(cfg, layers, 21, names[:1])[0]
    bad.desc.update({"ntiles": 5})
    assert ge.descriptor_errors(bad.desc, cfg.limits())
    extreme = _extreme_job(cfg)
    run = [jobs[0], bad, *jobs[1:], extreme]
    r = se.run_layers(b, run, run_dir=tmp_path, max_cycles=400_000)
    statuses = [x.status for x in r.layers]
    assert statuses == ["OK", "ERROR"] + ["OK"] * len(jobs), statuses
    assert r.layers[1].writes == 0
    problem = se.layer_mismatch(extreme, r.layers[-1])
    assert problem is None, f"K = 144 at full scale: {problem}"
    results = [r.layers[0], *r.layers[2:-1]]
    for name, job, res in zip(names, jobs, results):
        problem = se.layer_mismatch(job, res)
        assert problem is None, f"{name}: {problem}"
        f, exact = se.formula_cycles(cfg, job)
        assert exact == LAYERS[name][2], (name, exact)
        if exact:
            assert res.cycles == f, (name, res.cycles, f)
        else:
            assert res.cycles > f, (name, res.cycles, f)


def test_serial_engine_config():
    cfg = EngineConfig(**CFG)
    assert cfg.check_cycles == 5 and cfg.requant.stages == 8 + 3 and cfg.module_name.endswith("q1_mser4_acc25")
    # acc_width 0: the fewest bits for K <= 3*3*4*4 = 144 with 9-bit operands (|product| <= 256*256)
    assert cfg.acc_width == cfg.systolic.acc_width == 25 and cfg.max_k >= 144
    with pytest.raises(ConfigError, match=r"acc_width must be 25\.\.32 for these maxima \(K up to 144"):
        EngineConfig(**{**CFG, "acc_width": 24})
    assert "acc_width" not in EngineConfig(rows=2, cols=4).to_dict()
    assert EngineConfig(**{**CFG, "serial_digits": 0}).requant.serial_digits == 4
    assert "serial_digits" not in EngineConfig(rows=2, cols=4).to_dict()
    with pytest.raises(ConfigError, match="mult_style 'serial' needs rounding onnx or xnnpack"):
        EngineConfig(**{**CFG, "rounding": "tflite"})
    with pytest.raises(ConfigError, match=r"serial_digits must be 2\.\.24"):
        EngineConfig(**{**CFG, "serial_digits": 1})
    with pytest.raises(ConfigError, match="serial_digits applies to mult_style 'serial' only"):
        EngineConfig(**{**CFG, "mult_style": "lut"})


def _over_jobs(cfg):
    """Good layers around descriptors that only the derived-width control's ``d_over`` flag
    rejects: c_in, c_out or groups zero (fields it keeps only as "one is zero"), and c_slice
    beyond max_c_slice whose low bits (the register it keeps) are a valid c_slice."""
    layers = {k: v[:2] for k, v in LAYERS.items()}
    names = list(LAYERS)
    good = se.random_jobs(cfg, layers, 33, names[:2])
    bad_fields = [{"c_in": 0}, {"c_out": 0}, {"groups": 0},
                  {"c_slice": good[0].desc["c_slice"] + 32}, {"c_slice": 3000}]
    assert cfg.max_c_slice == 16 and good[0].desc["c_slice"] + 32 < 1 << 16
    bad = []
    for change in bad_fields:
        j = se.random_jobs(cfg, layers, 33, names[:1])[0]
        j.desc.update(change)
        assert ge.descriptor_errors(j.desc, cfg.limits()), change    # the golden rules agree
        bad.append(j)
    return [good[0], *bad, good[1]], names[:2]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_serial_engine_descriptor_overflow_raises_error(simulator, tmp_path):
    """The derived widths of the serial engine's control (EngineConfig.derived_widths) keep
    c_in/c_out/groups only as "one is zero" and c_slice in 5 bits: a descriptor beyond them
    still raises ``error`` and writes nothing, and the next layer is exact."""
    b = _build(simulator)
    cfg = b.config
    assert cfg.derived_widths
    jobs, names = _over_jobs(cfg)
    r = se.run_layers(b, jobs, run_dir=tmp_path, max_cycles=200_000)
    statuses = [x.status for x in r.layers]
    assert statuses == ["OK"] + ["ERROR"] * (len(jobs) - 2) + ["OK"], statuses
    assert all(x.writes == 0 for x in r.layers[1:-1])
    for job, res, name in zip((jobs[0], jobs[-1]), (r.layers[0], r.layers[-1]), names):
        problem = se.layer_mismatch(job, res)
        assert problem is None, f"{name}: {problem}"


def test_serial_engine_descriptor_overflow_mutant_is_caught(tmp_path):
    """The same run with the flag stuck at 0 (the Verilog mutated): the c_slice + 32 descriptor
    (low bits valid) is then not rejected, so the test above would fail."""
    import re

    cfg = EngineConfig(**CFG)
    text = se.engine_verilog(cfg)
    mutated, n = re.subn(r"d_over <= \\\$\d+ ;", "d_over <= 1'h0;", text)
    assert n == 1
    b = se.build_engine(cfg, "icarus", mem_words=1 << 12, verilog=mutated)
    jobs, _ = _over_jobs(cfg)
    r = se.run_layers(b, jobs, run_dir=tmp_path, max_cycles=200_000)
    statuses = [x.status for x in r.layers]
    assert statuses != ["OK"] + ["ERROR"] * (len(jobs) - 2) + ["OK"], "the stuck d_over flag was not caught"
    assert statuses[4] != "ERROR", statuses      # c_slice + 32: its low 5 bits pass every other rule


#: bench/synth_engine.py's ``ice40_serial_small_t2``, the 2x4 engine that places on the UP5K: 2
#: chunk banks and a 3-word weight FIFO (the least buffering the engine allows) and at most 2
#: output-channel tiles (8 output channels) per layer. At the buffers' latency 1 the fetch is no
#: longer hidden on every layer, so the cycle formula is a lower bound.
SMALL = {**CFG, "fetch_banks": 2, "weight_fifo": 3, "max_tiles": 2}


@lru_cache(maxsize=None)
def _build_small(simulator: str):
    return se.build_engine(EngineConfig(**SMALL), simulator, mem_words=1 << 12)


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_smallest_buffers_stay_bit_exact(simulator, tmp_path):
    """The same random layers and the full-scale K = 144 layer through the smallest-buffer engine:
    bit-exact against the conv oracle; cycles at least the formula (which assumes the fetch
    hidden), and no layer is compute-bound by the formula's own rule (latency 1 > (2 - 2) * rows)."""
    b = _build_small(simulator)
    cfg = b.config
    names = [k for k, v in LAYERS.items() if v[0].c_out <= 8]
    assert len(names) == len(LAYERS) - 1     # 12 output channels are 3 tiles
    layers = {k: LAYERS[k][:2] for k in names}
    jobs = [*se.random_jobs(cfg, layers, 21), _extreme_job(cfg)]
    r = se.run_layers(b, jobs, run_dir=tmp_path, max_cycles=400_000)
    assert [x.status for x in r.layers] == ["OK"] * len(jobs)
    for name, job, res in zip([*names, "extreme"], jobs, r.layers):
        problem = se.layer_mismatch(job, res)
        assert problem is None, f"{name}: {problem}"
        f, exact = se.formula_cycles(cfg, job)
        assert not exact and res.cycles >= f, (name, res.cycles, f)


def test_a_two_word_weight_fifo_is_refused():
    """A 2-word weight FIFO lost a weight word that arrived the cycle after another (its memory
    part holds one word; hdl/engine.py EngineConfig), and the layer hung: refused with a message."""
    with pytest.raises(ConfigError, match=r"weight_fifo must be an integer in 3\.\.64, not 2"):
        EngineConfig(**{**SMALL, "weight_fifo": 2})
