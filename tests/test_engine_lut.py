"""The small engine of the iCE40UP5K point: 2 x 4 PEs, one requantizer lane time-multiplexed over
the 4 columns (``requant_lanes=1``), and every product outside the array written without ``*``
(``mult_style="lut"``), so that yosys gives all 8 SB_MAC16 of the UP5K to the PEs.

On both simulators, free-running (as tests/test_engine_rtl.py): random layers back to back with
bad descriptors between them, bit-exact against the conv oracle; the cycle formula equal to the
RTL on compute-bound layers and a lower bound on the others (a 1x1 layer with K = 4 is
requant-bound: 8 requantizer beats per tile of period 4); an injected fault in the
time-multiplexed path caught; no ``$mul`` cell outside the PEs."""

import re
from functools import lru_cache

import pytest

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError
from convgen.golden import engine as ge
from convgen.hdl.engine import ConvEngine, EngineConfig
from convgen.sim import engine as se

# the engine of bench/synth_engine.py's `ice40_fit` point (its buffers aside)
CFG = dict(rows=2, cols=4, vec=4, max_h=16, max_w=16, max_pixel_words=4, max_kernel=3, max_stride=2,
           max_pad=1, max_dilation=1, max_tiles=4, addr_width=14, fetch_banks=3, weight_fifo=4,
           requant_lanes=1, mult_style="lut")

LAYERS = {
    "3x3_pad1": (ConvLayer.square(6, 6, 4, 3, 1, 1, c_out=4), True),
    "3x3_c8_cout8_uint8": (ConvLayer.square(5, 5, 8, 3, 1, 1, c_out=8), False),
    "1x1_k8_cout6": (ConvLayer.square(5, 6, 8, 1, 1, 0, c_out=6), True),
    "1x1_k4_requant_bound": (ConvLayer.square(4, 4, 4, 1, 1, 0, c_out=4), True),
    "depthwise": (ConvLayer.square(6, 6, 4, 3, 1, 1, groups=4, c_out=4), True),
    "3x3_s2_c3_cout5": (ConvLayer.square(7, 7, 3, 3, 2, 1, c_out=5), False),
    "3x3_cout16": (ConvLayer.square(4, 5, 4, 3, 1, 1, c_out=16), True),
}


@lru_cache(maxsize=None)
def _build(simulator: str, fault: str = ""):
    return se.build_engine(EngineConfig(**CFG, debug_fault=fault), simulator, mem_words=1 << 12)


def _jobs(seed: int, names=None):
    return se.random_jobs(EngineConfig(**CFG), LAYERS, seed, names)


def _check(job, res, name=""):
    problem = se.layer_mismatch(job, res)
    assert problem is None, f"{name}: {problem}"


BAD_FIELDS = [{"kh": 0}, {"ntiles": 2}, {"out_h": 3}, {"c_slice": 3000}, {"ntiles": 5}, {"m_total": 7},
              {"slice_words": 2}]


@pytest.mark.parametrize("simulator", [
    "icarus",
    # a cold Verilator build of this engine takes 1-2 minutes; the default engine runs on both
    # simulators in tests/test_engine_rtl.py
    pytest.param("verilator", marks=pytest.mark.slow),
])
def test_lut_engine_bit_exact_cycles_and_bad_descriptors(simulator, tmp_path):
    b = _build(simulator)
    cfg = b.config
    assert cfg.requant_slots == 4 and cfg.check_cycles == 5
    names = list(LAYERS)
    jobs = _jobs(11)
    bad = []
    for change in BAD_FIELDS:
        j = _jobs(11, names[:1])[0]
        j.desc.update(change)
        assert ge.descriptor_errors(j.desc, cfg.limits()), change    # the golden rules agree
        bad.append(j)
    # good layers with the bad descriptors between the first two
    run = [jobs[0], *bad, *jobs[1:]]
    r = se.run_layers(b, run, run_dir=tmp_path, max_cycles=400_000)
    statuses = [x.status for x in r.layers]
    assert statuses == ["OK"] + ["ERROR"] * len(bad) + ["OK"] * (len(jobs) - 1), statuses
    assert all(x.writes == 0 for x in r.layers[1:1 + len(bad)])
    results = [r.layers[0], *r.layers[1 + len(bad):]]
    exact = requant_bound = 0
    for name, job, res in zip(names, jobs, results):
        _check(job, res, name)
        f, exact_here = se.formula_cycles(cfg, job)
        if exact_here:
            assert res.cycles == f, (name, res.cycles, f)
            exact += 1
        else:
            assert res.cycles >= f, (name, res.cycles, f)
        if name == "1x1_k4_requant_bound":
            # K = 4: a tile's 2 rows are 8 requantizer beats, its period max(4, 2, 4) = 4
            assert not exact_here and res.cycles > f, (res.cycles, f)
            requant_bound += 1
    assert exact >= 5 and requant_bound == 1


@pytest.mark.parametrize("simulator", ["icarus"])
def test_lut_engine_requant_lane_fault_is_caught(simulator, tmp_path):
    """An injected fault in the time-multiplexed requantizer path (the second slot of every
    row takes the first slot's accumulators) makes the comparison fail."""
    b = _build(simulator, "requant_lane")
    names = ["3x3_pad1", "1x1_k8_cout6"]
    jobs = _jobs(12, names)
    r = se.run_layers(b, jobs, run_dir=tmp_path)
    caught = 0
    for job, res, name in zip(jobs, r.layers, names):
        try:
            _check(job, res, name)
        except AssertionError:
            caught += 1
    assert caught == len(names)


def _dsp_muls(cfg) -> int:
    """``$mul`` cells of the elaborated netlist that ``synth_ice40 -dsp`` may map to an SB_MAC16:
    both operands non-constant, at least 2 bits each, a product of at least 11 bits (its
    ``mul2dsp`` rule: ``-D DSP_A_MINWIDTH=2 -D DSP_B_MINWIDTH=2 -D DSP_Y_MINWIDTH=11``). The
    others (``word_select`` by a constant, im2col's few-bit products) become LUTs."""
    from amaranth.back import rtlil

    n = 0
    for cell in re.findall(r"^\s*cell \$mul .*?^\s*end$", rtlil.convert(ConvEngine(cfg), name="top"), re.M | re.S):
        p = dict(re.findall(r"parameter \\(\w+) (\d+)", cell))
        conn = dict(re.findall(r"connect \\([ABY]) (.*)", cell))
        const = any(re.fullmatch(r"\d+'[01]+", conn[k].strip()) for k in "AB")
        if not const and int(p["A_WIDTH"]) >= 2 and int(p["B_WIDTH"]) >= 2 and int(p["Y_WIDTH"]) >= 11:
            n += 1
    return n


def test_lut_engine_has_no_dsp_multiplier_outside_the_pes():
    """Elaborated netlist: the only DSP-sized ``$mul`` cells are the rows*cols PE multipliers
    (the same engine with the defaults has one per requantizer lane, each 4 SB_MAC16 wide, and
    the descriptor checks' products)."""
    small = {k: v for k, v in CFG.items() if k not in ("requant_lanes", "mult_style")}
    assert _dsp_muls(EngineConfig(**CFG)) == 8
    assert _dsp_muls(EngineConfig(**small)) > 8 + 4


def test_requant_lanes_must_divide_cols():
    with pytest.raises(ConfigError, match=r"requant_lanes must divide cols=4 \(one of \[1, 2, 4\]"):
        EngineConfig(rows=2, cols=4, requant_lanes=3)
    with pytest.raises(ConfigError, match="requant_lanes must divide"):
        EngineConfig(rows=2, cols=4, requant_lanes=8)
    assert EngineConfig(rows=2, cols=4).requant_lanes == 4
    assert EngineConfig(rows=2, cols=4, requant_lanes=2).requant.groups == 2 * 64
    with pytest.raises(ConfigError, match="requant_lane"):
        EngineConfig(rows=2, cols=4, debug_fault="requant_lane")
