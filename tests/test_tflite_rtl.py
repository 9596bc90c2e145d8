"""The RTL Requantizer against a real TFLite interpreter (LiteRT 2.3.0), path by path, on both
simulators.

Every fixture of golden/tflite_fixtures.py that tests/test_tflite_paths.py checks (14 designed
corners: exact ties of power-of-two scales, QuantizeMultiplier's carry, positive shifts, int32
left-shift wrap, saturation at both ends, ReLU6 / ReLU_N1_TO_1 bounds at exactly .5, a 10-channel
depthwise layer with 8 vector and 2 scalar channels; and 24 random MobileNet-like layers) is run
by LiteRT on each path, and its exact int32 accumulators (the convolution oracle, without bias)
are streamed through the Requantizer built in that path's mode with the parameters the path
derives (golden.tflite_fixtures.path_params: TFLite's QuantizeMultiplier, XNNPACK's float32
scale, each path's clamp bounds; for ``opt`` the ``round_away`` bit of the scalar depthwise
channels). Every output must equal LiteRT's (tb/requant/cocotb_tflite.py).

=========  =================  ==========================
path       RTL rounding       LiteRT resolver
=========  =================  ==========================
ref        ``tflite``         BUILTIN_REF
opt        ``tflite_opt``     BUILTIN_WITHOUT_DEFAULT_DELEGATES
xnnpack    ``xnnpack``        AUTO (the XNNPACK delegate)
=========  =================  ==========================

The configurations are those of tb/requant/test_requant.py (4 lanes, 3 groups: 12 channels), so
the simulation builds are the regression's; a layer with more channels is run in chunks of 12,
each with its own parameter writes.

Cost: the default suite runs Icarus on a sample of each fixture's output pixels (every
pixel where LiteRT's three paths disagree on some channel, up to 32 per fixture, and every 32nd
pixel: 4,188 of the 33,619 outputs per path).
``-m slow`` runs every output of every fixture on both Icarus and Verilator (the three
Verilator builds alone cost more than the default suite's budget allows). A mutant Requantizer
(tb/requant/mutants.py) must fail the sampled run.
"""

from __future__ import annotations

import dataclasses
import json
import numpy as np
import pytest

from convgen.golden import tflite_fixtures as F
from convgen.hdl.requant import RequantConfig, Requantizer, manifest_extra
from convgen.sim.build import build_component, run_cocotb
from convgen.sim.packing import pack
from convgen.sim.requant import input_fields, param_fields
from convgen.tb.common.launch import run_regression
from convgen.tb.requant.mutants import mutant_requantizer

MODULE = "convgen.tb.requant.cocotb_tflite"
FIXTURES = F.designed_fixtures() + F.random_fixtures(24, seed=5)
CONFIGS = {path: dict(lanes=4, groups=3, rounding=F.PATH_MODE[path]) for path in F.PATHS}


@pytest.fixture(scope="module")
def litert():
    """{(fixture name, path): LiteRT output NHWC}."""
    return F.litert_outputs(FIXTURES)


def _sub_params(p, channels):
    """``p`` restricted to ``channels`` (a slice), as its own parameter set."""
    pick = {f.name: getattr(p, f.name)[channels] for f in dataclasses.fields(p)
            if isinstance(getattr(p, f.name), np.ndarray)}
    return dataclasses.replace(p, channels=len(range(*channels.indices(p.channels))), **pick)


def sample_rows(fx, litert: dict) -> np.ndarray:
    """The default suite's output pixels of ``fx``: up to 32 (seeded choice) where LiteRT's
    paths disagree on some channel, and every 32nd. Chosen from LiteRT's outputs alone."""
    ys = [litert[fx.name, p].reshape(-1, fx.channels) for p in F.PATHS]
    differ = np.flatnonzero(np.any((ys[0] != ys[1]) | (ys[1] != ys[2]), axis=1))
    rng = np.random.default_rng(len(fx.name))
    pick = rng.permutation(differ)[:32]
    return np.union1d(pick, np.arange(0, ys[0].shape[0], 32))


def jobs_for(path: str, cfg: RequantConfig, streams: dict, litert: dict, *, full: bool,
             fixtures=FIXTURES) -> list[dict]:
    """One job per fixture and chunk of ``lanes*groups`` channels: parameter beats, accumulator
    beats and LiteRT's outputs (with the lanes that hold a channel); ``full``: every output
    pixel, else :func:`sample_rows`."""
    per = cfg.lanes * cfg.groups
    jobs = []
    for fx in fixtures:
        if path == "opt" and fx.op == "conv" and F.x86_without_avx():
            continue   # gemmlowp's rounding there, not tflite_opt's (docs/requant.md)
        rows = slice(None) if full else sample_rows(fx, litert)
        acc = F.accumulators(fx).reshape(-1, fx.channels)[rows]
        want = litert[fx.name, path].reshape(-1, fx.channels)[rows]
        params = F.path_params(fx, path)
        for c0 in range(0, fx.channels, per):
            sl = slice(c0, min(c0 + per, fx.channels))
            n = sl.stop - sl.start
            pf = param_fields(cfg, _sub_params(params, sl))
            inp = input_fields(cfg, acc[:, sl])
            width = -(-n // cfg.lanes) * cfg.lanes
            exp = np.zeros((acc.shape[0], width), dtype=np.int64)
            exp[:, :n] = want[:, sl]
            used = np.zeros_like(exp, dtype=bool)
            used[:, :n] = True
            jobs.append({"name": f"{fx.name}[{sl.start}:{sl.stop}]",
                         "p": [str(x) for x in pack(streams["p"]["layout"], pf, len(pf["group"]))],
                         "i": [str(x) for x in pack(streams["i"]["layout"], inp, len(inp["group"]))],
                         "expected": exp.reshape(-1).tolist(), "used": used.reshape(-1).astype(int).tolist()})
    return jobs


def _build(component, name, cfg, simulator, waves=False):
    return build_component(component, name, simulator, block="requant", parameters=cfg.to_dict(),
                           extra=manifest_extra(cfg), waves=waves)


def _run(path, simulator, tmp_path, litert, full):
    cfg = RequantConfig(**CONFIGS[path])
    build_fn = lambda waves: _build(Requantizer(cfg), cfg.module_name, cfg, simulator, waves)  # noqa: E731
    jobs = jobs_for(path, cfg, build_fn(False).manifest["streams"], litert, full=full)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    env = {"CONVGEN_TFLITE_JOBS": str(tmp_path / "jobs.json"), "CONVGEN_RESULT": str(tmp_path / "result.json")}
    run_regression(build_fn, MODULE, str(tmp_path / "run"), label=f"{cfg.module_name} on {simulator} vs LiteRT {path}",
                   extra_env=env)
    res = json.loads((tmp_path / "result.json").read_text())
    print(f"\n{path} on {simulator}: {res['compared']} outputs of {len(res['jobs'])} jobs equal LiteRT")
    total = sum(litert[fx.name, path].size for fx in FIXTURES)
    assert res["mismatches"] == 0 and res["compared"] >= (total if full else total // 10)
    return res


@pytest.mark.parametrize("path", F.PATHS)
def test_rtl_equals_litert_sampled(path, tmp_path, litert):
    _run(path, "icarus", tmp_path, litert, full=False)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("path", F.PATHS)
def test_rtl_equals_litert_every_output(path, simulator, tmp_path, litert):
    _run(path, simulator, tmp_path, litert, full=True)


@pytest.mark.parametrize("mutant, path", [("opt_ties_away", "opt"), ("float_ties_away", "xnnpack")])
def test_mutant_is_caught(mutant, path, tmp_path, litert):
    """A Requantizer with a wrong rounding rule fails the same LiteRT comparison, with counts
    (on the exact-tie fixtures, to keep the default suite short)."""
    cfg = RequantConfig(**CONFIGS[path])
    block, name = mutant_requantizer(mutant, cfg)
    bld = _build(block, name, cfg, "icarus")
    ties = [fx for fx in FIXTURES if fx.name.startswith("ties_")]
    jobs = jobs_for(path, cfg, bld.manifest["streams"], litert, full=False, fixtures=ties)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    env = {"CONVGEN_TFLITE_JOBS": str(tmp_path / "jobs.json"), "CONVGEN_RESULT": str(tmp_path / "result.json")}
    res = run_cocotb(bld, MODULE, run_dir=tmp_path / "run", extra_env=env)
    assert not res.passed, f"mutant {mutant} was not caught"
    out = json.loads((tmp_path / "result.json").read_text())
    caught = {j["name"]: j["mismatches"] for j in out["jobs"] if j["mismatches"]}
    print(f"\nmutant {mutant} on {path}: {out['mismatches']} of {out['compared']} outputs differ from LiteRT in "
          f"{len(caught)} jobs: {caught}")
    assert out["mismatches"] >= 10
