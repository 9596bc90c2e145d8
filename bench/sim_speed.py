"""Simulation speed of the ConvEngine on Verilator (issue 11: >= 1M engine cycles/s for an 8x8
engine; a cached model starts a layer in under 2 s).

    .venv/bin/python bench/sim_speed.py [--rows 8 --cols 8] [--repeat 9] [--cachegrind] [--out bench/results]

One engine (the smallest ``rows x cols`` engine that holds all the layers, as ``run onnx``
builds it) runs four real layers, each checked bit for bit against the direct-convolution
oracle (``golden.engine.reference_conv``):

- ResNet-50 conv2_x 3x3, 64 -> 64 at 14x14 (the demo's layer);
- ResNet-50 conv2_x 1x1, 64 -> 256 at 28x28;
- ResNet-50 conv4_x 3x3, 256 -> 256 at 7x7;
- MobileNet depthwise 3x3, 128 channels at 28x28.

Per layer, the model process runs ``--repeat`` times on the same memory images, alternating with
a run of zero descriptors (``+ndesc=0``: model construction, ``$readmemh`` of the images,
``$writememh`` of the output). *Whole process* is cycles / fastest run; *net* is cycles /
(fastest run - fastest zero-descriptor run), the rate while the engine computes. The fastest of
several runs is the figure least disturbed by other jobs on the machine (the load is printed).
``--cachegrind`` adds valgrind's count of executed instructions per simulated cycle (net of the
zero-descriptor run), a figure that does not depend on the machine or its load.

*Start* is the time from the Python call (``run_conv`` on the cached model: layer checks, Verilog
cache, build cache lookup, packing, memory images) to its return, minus the simulator process.

Writes ``<out>/sim_speed.md`` and ``sim_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_CYCLES_PER_S = 1_000_000
TARGET_START_S = 2.0


def log(msg: str) -> None:
    print(f"sim_speed: {msg}", file=sys.stderr, flush=True)


def layers():
    from convgen.core.layer import ConvLayer
    return [
        ("ResNet-50 conv2_x 3x3 64>64 @14", ConvLayer.square(14, 14, 64, 3, 1, 1, c_out=64, name="r50_c2_3x3")),
        ("ResNet-50 conv2_x 1x1 64>256 @28", ConvLayer.square(28, 28, 64, 1, 1, 0, c_out=256, name="r50_c2_1x1")),
        ("ResNet-50 conv4_x 3x3 256>256 @7", ConvLayer.square(7, 7, 256, 3, 1, 1, c_out=256, name="r50_c4_3x3")),
        ("MobileNet dw 3x3 C128 @28", ConvLayer.square(28, 28, 128, 3, 1, 1, c_out=128, groups=128,
                                                       name="mbv1_dw_128")),
    ]


def _fastest(cmd, cwd, n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if p.returncode != 0 or "END cycle=" not in p.stdout + p.stderr:
            raise RuntimeError(f"simulator run failed: {(p.stdout + p.stderr)[-1000:]}")
        best = min(best, dt)
    return best


def _instructions(cmd, cwd) -> int:
    with tempfile.NamedTemporaryFile(prefix="convgen-cg-", suffix=".out") as f:
        p = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={f.name}",
                            *cmd], cwd=cwd, capture_output=True, text=True)
    mo = re.search(r"I\s+refs:\s+([\d,]+)", p.stderr)
    if p.returncode != 0 or not mo:
        raise RuntimeError(f"valgrind failed: {p.stderr[-1000:]}")
    return int(mo.group(1).replace(",", ""))


def measure(rows: int, cols: int, repeat: int, cachegrind: bool, seed: int) -> dict:
    from convgen.golden.engine import quant_conv_from_arrays, random_qlinearconv_arrays, reference_conv
    from convgen.sim.tools import simulator_env
    from convgen.sim.engine import (_pack_jobs, _plusargs, _write_images, build_engine, engine_config_for,
                                    engine_form, job_from_quant, prepare_conv, run_conv)

    named = layers()
    rng = np.random.default_rng(seed)
    quants = [quant_conv_from_arrays(random_qlinearconv_arrays(rng, L)) for _, L in named]
    cfg = engine_config_for([engine_form(q, rows).layer for q in quants], rows=rows, cols=cols)
    mem_words = max(prepare_conv(q, config=cfg)[2] for q in quants)
    log(f"engine {cfg.module_name}: building (cached after the first time)")
    t = time.monotonic()
    b = build_engine(cfg, "verilator", mem_words=mem_words)
    build_s = time.monotonic() - t
    env = dict(os.environ, **simulator_env("verilator"))
    out = []
    for (title, L), q in zip(named, quants):
        log(f"{title}: start time, {repeat} runs" + (", cachegrind" if cachegrind else ""))
        # start: a whole run_conv call on the cached model (a first call builds it if needed:
        # run_conv sizes the testbench memories to the layer), minus its simulator process
        run_conv(q, config=cfg)
        t = time.perf_counter()
        res = run_conv(q, config=cfg)
        start_s = time.perf_counter() - t - res.sim_seconds
        want = reference_conv(q)
        exact = bool(np.array_equal(res.y, want))
        job = job_from_quant(engine_form(q, rows), cfg)
        with tempfile.TemporaryDirectory(prefix="convgen-speed-") as d:
            xs, ws, ps, bases = _pack_jobs(cfg, [job], b.mem_words)
            _write_images(Path(d), cfg, [job], xs, ws, ps)
            args = _plusargs(1, bases["y"], seed=1, stall=0, latency=1, jitter=0)
            idle = [a if not a.startswith("+ndesc=") else "+ndesc=0" for a in args]
            cmd, cmd0 = [str(b.executable), *args], [str(b.executable), *idle]
            subprocess.run(cmd0, cwd=d, env=env, capture_output=True)   # warm the page cache
            whole = _fastest(cmd, d, repeat)
            fixed = _fastest(cmd0, d, repeat)
            ir = ir0 = None
            if cachegrind:
                ir, ir0 = _instructions(cmd, d), _instructions(cmd0, d)
        cycles = res.cycles
        rec = {"layer": title, "geometry": f"{L.h}x{L.w}x{L.c} k{L.kh}x{L.kw}/{L.stride_h} -> {L.c_out}"
                                           + (f" groups {L.groups}" if L.groups > 1 else ""),
               "macs": L.macs, "cycles": cycles, "formula": res.formula_cycles, "bit_exact": exact,
               "whole_s": whole, "fixed_s": fixed, "cycles_per_s": cycles / whole,
               "net_cycles_per_s": cycles / max(whole - fixed, 1e-9), "start_s": start_s,
               "instructions_per_cycle": None if ir is None else (ir - ir0) / cycles}
        log(f"  {cycles:,} cycles, {rec['net_cycles_per_s'] / 1e6:.3f} M cycles/s net, start {start_s:.2f} s"
            + ("" if ir is None else f", {rec['instructions_per_cycle']:,.0f} instructions/cycle"))
        out.append(rec)
    return {"config": cfg.to_dict(), "module": cfg.module_name, "build_seconds": build_s, "layers": out}


def machine() -> dict:
    from convgen.sim.tools import cpu_model, simulator_version
    return {"cpu": cpu_model(), "nproc": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "verilator": simulator_version("verilator"),
            "load_average": os.getloadavg()}


def render(res: dict) -> str:
    m = res["machine"]
    rows = res["layers"]
    total_cycles = sum(r["cycles"] for r in rows)
    net = total_cycles / sum(max(r["whole_s"] - r["fixed_s"], 1e-9) for r in rows)
    whole = total_cycles / sum(r["whole_s"] for r in rows)
    worst_start = max(r["start_s"] for r in rows)
    ipc = [r["instructions_per_cycle"] for r in rows if r["instructions_per_cycle"] is not None]
    lines = [
        "# ConvEngine simulation speed (Verilator)", "",
        f"Command: `{res['command']}` &nbsp; {res['finished']}", "",
        f"Machine: {m['cpu']}, {m['nproc']} cores, load average {m['load_average'][0]:.2f} at the end, "
        f"{m['platform']}, Python {m['python']}, Verilator {m['verilator']}. Git {res['git'][:10]}.", "",
        f"Engine `{res['module']}` ({res['config']['rows']}x{res['config']['cols']}, vec {res['config']['vec']}, "
        f"requant_lanes {res['config']['requant_lanes']}, rounding {res['config']['rounding']}): the smallest "
        f"engine that holds the four layers; Verilator flags `-O3 --x-assign fast --x-initial fast`, C++ at -O2 "
        f"(`sim/build.py` FREE_RUNNING_FLAGS); built in {res['build_seconds']:.1f} s "
        f"({'cached' if res['build_seconds'] < 2 else 'cold'}).", "",
        "Every output is compared with the direct-convolution oracle. Columns: *whole process* = cycles / fastest of "
        f"{res['repeat']} runs of the model process; *net* = cycles / (that - fastest zero-descriptor run); "
        "*instructions/cycle* = valgrind cachegrind, net of the zero-descriptor run; *start* = `run_conv` "
        "on the cached model minus its simulator process.", "",
        "| layer | geometry | cycles | = formula | bit-exact | whole process s | M cycles/s (whole) | M cycles/s (net) "
        "| instructions/cycle | start s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ipcs = "" if r["instructions_per_cycle"] is None else f"{r['instructions_per_cycle']:,.0f}"
        lines.append(f"| {r['layer']} | {r['geometry']} | {r['cycles']:,} | "
                     f"{'yes' if r['cycles'] == r['formula'] else r['formula']} | {'yes' if r['bit_exact'] else '**NO**'} | "
                     f"{r['whole_s']:.3f} | {r['cycles_per_s'] / 1e6:.3f} | {r['net_cycles_per_s'] / 1e6:.3f} | "
                     f"{ipcs} | {r['start_s']:.2f} |")
    lines += ["", "## Targets", "", "| target | measured | status |", "|---|---|---|",
              f"| {res['config']['rows']}x{res['config']['cols']} engine >= 1M cycles/s on Verilator | "
              f"{net / 1e6:.3f} M cycles/s net over the four layers ({whole / 1e6:.3f} M whole process)"
              + (f"; {sum(ipc) / len(ipc):,.0f} instructions per cycle" if ipc else "") + " | "
              f"{'**met**' if net >= TARGET_CYCLES_PER_S else '**missed**'} |",
              f"| cached model starts a layer in < 2 s | worst {worst_start:.2f} s | "
              f"{'**met**' if worst_start < TARGET_START_S else '**missed**'} |", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8, help="array rows (default 8)")
    ap.add_argument("--cols", type=int, default=8, help="array columns (default 8)")
    ap.add_argument("--repeat", type=int, default=9, help="runs per layer; the fastest counts (default 9)")
    ap.add_argument("--cachegrind", action="store_true", help="also count instructions per cycle (valgrind)")
    ap.add_argument("--seed", type=int, default=1, help="random layer data (default 1)")
    ap.add_argument("--out", "-o", default=str(REPO / "bench" / "results"), help="directory for sim_speed.md/.json")
    a = ap.parse_args(argv)
    for flag, v, lo, hi in (("--rows", a.rows, 1, 64), ("--cols", a.cols, 1, 64), ("--repeat", a.repeat, 1, 1000)):
        if not lo <= v <= hi:
            print(f"sim_speed: {flag} must be an integer in {lo}..{hi}, not {v}", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    res = measure(a.rows, a.cols, a.repeat, a.cachegrind, a.seed)
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    res.update({"machine": machine(), "repeat": a.repeat, "git": git,
                "command": "bench/sim_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv),
                "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                            + f", {time.monotonic() - t0:.0f} s in total"})
    text = render(res)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, body in (("sim_speed.json", json.dumps(res, indent=1)), ("sim_speed.md", text)):
        tmp = out / (name + ".tmp")
        tmp.write_text(body + "\n")
        tmp.replace(out / name)
    print(text)
    return 0 if all(r["bit_exact"] for r in res["layers"]) else 1


if __name__ == "__main__":
    sys.exit(main())
