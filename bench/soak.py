"""Soak: a million random values per block per simulator, random stalls on every port (issue 13, 4).

    .venv/bin/python bench/soak.py [--blocks systolic_os,...,engine] [--sims verilator,icarus]
                                   [--values 1000000] [--icarus-minutes 20] [--seed 1] [--out bench/results]
    .venv/bin/python bench/soak.py --render bench/results/soak.json

Every block of :mod:`convgen.sim.soak_blocks` runs in the generic free-running harness of
:mod:`convgen.sim.soak` (stimulus from ``$readmemh`` memories, valid and ready dropouts from
seeded LFSRs in the Verilog testbench, every output beat captured and dumped with
``$writememh``, no Python per cycle); the ConvEngine runs random layers through
:func:`convgen.sim.engine.run_layers` (its own free-running testbench: memory stalls, latency,
jitter and output ready dropouts). After each run every output value is compared with the golden
model in NumPy and the beats are counted: a lost beat shows as a shortfall, a duplicated one as
a surplus.

Traffic is split into rounds, each with its own stall settings drawn from ``--seed``: the first
round has 5..40% dropouts on every port, the second none (full speed, at most a tenth of the
values), the others 0..75% per port; dropouts come in bursts of 1..8 cycles. Verilator pushes
``--values`` per block (rounds of at most a quarter of it and of what the harness memories
hold). Icarus gets
``--icarus-minutes`` in total, split evenly over the blocks; within its share a block runs
rounds sized from the rate measured so far, up to ``--values``.

Writes ``<out>/soak.md`` and ``soak.json`` (atomically); exit status 1 if any value mismatched,
any beat was lost or duplicated, or any run timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ALL_BLOCKS = ("systolic_os", "systolic_ws", "requant_tflite", "requant_tflite_single", "requant_onnx", "im2col",
              "winograd", "engine")


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def stall_settings(rng, r: int, ports) -> tuple[dict, int]:
    if r == 0:
        pct = {p: int(rng.integers(5, 41)) for p in ports}
    elif r == 1:
        pct = {p: 0 for p in ports}
    else:
        pct = {p: 0 if rng.random() < 0.2 else int(rng.integers(1, 76)) for p in ports}
    return pct, int(rng.integers(1, 9))


def round_size(r: int, *, done: int, values: int, budget: float | None, elapsed: float, first: int = 5_000,
               least: int = 1_000) -> int | None:
    """Values for round ``r``: at most a quarter of the target (a tenth for round 1, the one
    without dropouts), so most traffic sees dropouts; within an Icarus share, a first round of
    ``first`` values measures the rate and later rounds take what 70% of the rest of the share
    holds. None: the share is used up."""
    left = values - done
    want = min(left, max(1, values // (10 if r == 1 else 4)))
    if budget is None:
        return want
    if r == 0:
        return min(want, first)
    fit = int(done / max(elapsed, 1e-3) * (budget - elapsed) * 0.7)
    if fit < want:
        if fit < max(least, 0.02 * done) or budget - elapsed < 5:
            return None
        want = fit
    return want


class Tally:
    """Sums over the rounds of one block on one simulator."""

    def __init__(self, block: str, title: str, unit: str, simulator: str):
        self.r = {"block": block, "title": title, "value_unit": unit, "simulator": simulator, "rounds": 0,
                  "values": 0, "values_in": 0, "values_out": 0, "values_compared": 0, "ports": {},
                  "mismatches": 0, "lost_beats": 0, "surplus_beats": 0, "timeouts": 0, "flags": {},
                  "cycles": 0, "sim_seconds": 0.0, "wall_seconds": 0.0, "build_seconds": 0.0, "build_cached": True,
                  "first_mismatch": "", "stall_settings": []}

    def port(self, name, direction, beats, of, drop, active, bp):
        p = self.r["ports"].setdefault(name, {"direction": direction, "beats": 0, "of": 0, "drop": 0, "active": 0,
                                              "bp": 0})
        for k, v in (("beats", beats), ("of", of), ("drop", drop), ("active", active), ("bp", bp)):
            p[k] += v

    def finish(self) -> dict:
        r = self.r
        for name, p in r["ports"].items():
            p["drop_pct"] = round(100 * p["drop"] / p["active"], 1) if p["active"] else 0.0
            set_ = [s["pct"].get(name, 0) for s in r["stall_settings"] if "pct" in s]
            p["set_mean_pct"] = round(sum(set_) / len(set_), 1) if set_ else None
        r["cycles_per_second"] = round(r["cycles"] / r["sim_seconds"]) if r["sim_seconds"] else None
        r["ok"] = r["mismatches"] == 0 and r["lost_beats"] == 0 and r["surplus_beats"] == 0 and r["timeouts"] == 0 \
            and not any(r["flags"].values())
        return r


def soak_block(name: str, simulator: str, *, values: int, budget: float | None, seed: int) -> dict:
    from convgen.sim import soak
    from convgen.sim.soak_blocks import block

    blk = block(name)
    t = Tally(name, blk.title, blk.value_unit, simulator)
    manifest = blk.manifest()
    log(f"{simulator} {name}: building {blk.module} in the harness (cached after the first time)")
    b = soak.build_soak(blk.verilog(), manifest, simulator, depth=blk.depth, gates=blk.gates)
    t.r["build_seconds"], t.r["build_cached"] = round(b.build_seconds, 1), b.cached
    rng = np.random.default_rng([seed, sum(map(ord, name)), sum(map(ord, simulator))])
    ports = list(manifest["streams"])
    start = time.monotonic()
    r = 0
    while t.r["values"] < values:
        want = round_size(r, done=t.r["values"], values=values, budget=budget, elapsed=time.monotonic() - start)
        if want is None:
            break
        t0 = time.monotonic()
        rd = blk.round(rng, want, manifest)
        pct, burst = stall_settings(rng, r, ports)
        run = soak.run_soak(b, rd.stim, seed=int(rng.integers(1, 1 << 31)), stall=pct, burst=burst)
        cmp_ = soak.compare(manifest, rd.stim, run)
        wall = time.monotonic() - t0
        t.r["rounds"] += 1
        for k, v in (("values", rd.values), ("values_in", rd.values_in), ("values_out", rd.values_out),
                     ("values_compared", cmp_.values_compared), ("mismatches", cmp_.mismatches),
                     ("lost_beats", cmp_.lost), ("surplus_beats", cmp_.surplus), ("timeouts", int(run.timeout)),
                     ("cycles", run.cycles), ("sim_seconds", run.sim_seconds), ("wall_seconds", wall)):
            t.r[k] += v
        for pn, p in run.ports.items():
            t.port(pn, p["direction"], p["beats"], p["of"], p["drop"], p["active"], p["bp"])
        for f, high in run.flags.items():
            if f == "error":
                t.r["flags"][f] = t.r["flags"].get(f, 0) + high
        if cmp_.first and not t.r["first_mismatch"]:
            t.r["first_mismatch"] = cmp_.first
        t.r["stall_settings"].append({"pct": pct, "burst": burst})
        log(f"{simulator} {name} round {r + 1}: {rd.values:,} values ({t.r['values']:,}/{values:,}), "
            f"{run.cycles:,} cycles in {run.sim_seconds:.1f} s, {cmp_.mismatches} mismatches, "
            f"lost {cmp_.lost}, surplus {cmp_.surplus}{', TIMEOUT' if run.timeout else ''}; dropouts "
            + " ".join(f"{k}={v}%" for k, v in pct.items()) + f", bursts 1..{burst}")
        r += 1
    return t.finish()


def soak_engine(simulator: str, *, values: int, budget: float | None, seed: int) -> dict:
    from convgen.sim.engine import run_layers, y_from_words
    from convgen.sim.soak_blocks import EngineSoak

    eng = EngineSoak()
    t = Tally("engine", eng.title, eng.value_unit, simulator)
    log(f"{simulator} engine: building {eng.cfg.module_name} (cached after the first time)")
    b = eng.build(simulator)
    t.r["build_seconds"] = round(b.build_seconds, 1)
    t.r["build_cached"] = b.build_seconds < 1.0      # EngineBuild does not say; a cached one takes milliseconds
    rng = np.random.default_rng([seed, 6, sum(map(ord, simulator))])
    start = time.monotonic()
    r = 0
    while t.r["values"] < values:
        want = round_size(r, done=t.r["values"], values=values, budget=budget, elapsed=time.monotonic() - start,
                          first=2_000, least=500)
        if want is None:
            break
        t0 = time.monotonic()
        jobs, n = eng.jobs(rng, want)
        stall, lat, jitter = (0, 1, 0) if r == 1 else (int(rng.integers(0, 61)), int(rng.integers(1, 7)),
                                                      int(rng.integers(0, 13)))
        res = run_layers(b, jobs, seed=int(rng.integers(1, 1 << 31)), stall=stall, latency=lat, jitter=jitter)
        mism = lost = surplus = 0
        for job, lr in zip(jobs, res.layers):
            if lr.status != "OK":
                t.r["timeouts"] += 1
            y = y_from_words(lr.y_words, job, job.out_signed)
            bad = int(np.count_nonzero(y != job.expected))
            mism += bad
            if bad and not t.r["first_mismatch"]:
                t.r["first_mismatch"] = f"layer {job.plan.layer} ({bad} outputs differ)"
            lost += max(0, job.plan.y_words - lr.writes)
            surplus += max(0, lr.writes - job.plan.y_words)
            t.port("y_req", "out", lr.writes, job.plan.y_words, 0, 0, 0)
            t.port("desc", "in", 1, 1, 0, 0, 0)
        wall = time.monotonic() - t0
        t.r["rounds"] += 1
        for k, v in (("values", n), ("values_out", n), ("values_compared", n), ("mismatches", mism),
                     ("lost_beats", lost), ("surplus_beats", surplus), ("cycles", res.total_cycles),
                     ("sim_seconds", res.sim_seconds), ("wall_seconds", wall)):
            t.r[k] += v
        t.r["stall_settings"].append({"stall": stall, "latency": lat, "jitter": jitter, "layers": len(jobs)})
        log(f"{simulator} engine round {r + 1}: {len(jobs)} layers, {n:,} outputs ({t.r['values']:,}/{values:,}), "
            f"{res.total_cycles:,} cycles in {res.sim_seconds:.1f} s, {mism} mismatches, lost {lost}, "
            f"surplus {surplus}; memory stall {stall}%, latency {lat}, jitter {jitter}, y ready dropouts {stall}%")
        r += 1
    out = t.finish()
    # the engine testbench sets one dropout percentage for the memories and the output port
    settings = [s for s in out["stall_settings"]]
    active = sum(1 for s in settings if s["stall"])
    out["engine_stall_mean_pct"] = round(sum(s["stall"] for s in settings) / len(settings), 1) if settings else 0
    out["engine_rounds_with_stalls"] = active
    return out


# -- report ---------------------------------------------------------------------------------------------------------
def machine_info() -> dict:
    import amaranth

    from convgen.sim.tools import cpu_model, simulator_version

    vers = {}
    for s in ("icarus", "verilator"):
        try:
            vers[s] = simulator_version(s)
        except Exception as e:  # noqa: BLE001 - reported
            vers[s] = f"unavailable: {e}"
    return {"cpu": cpu_model(), "nproc": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "amaranth": amaranth.__version__, "numpy": np.__version__,
            "simulators": vers}


def git_state() -> dict:
    """HEAD and the code files with uncommitted changes (the working tree is shared)."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "hdl", "sim", "golden", "core").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted_code_changes": dirty}


def _pct(ports: dict, direction: str) -> str:
    return ", ".join(f"{n} {p['drop_pct']}% (set {p['set_mean_pct']}%)" for n, p in ports.items()
                     if p["direction"] == direction) or "-"


def _beats(ports: dict, direction: str) -> str:
    return ", ".join(f"{n} {p['beats']:,}" for n, p in ports.items() if p["direction"] == direction) or "-"


def render(res: dict) -> str:
    m = res["machine"]
    git = res["git"] if isinstance(res["git"], dict) else {"commit": res["git"], "uncommitted_code_changes": []}
    lines = ["# Soak: a million random values per block per simulator (issue 13, section 4)", "",
             f"Command: `{res['command']}` &nbsp; finished {res['finished']}, "
             f"{res['total_seconds']:.0f} s in total.", "",
             f"Machine: {m['cpu']}, {m['nproc']} cores (shared with other jobs: load average {res['load_average'][0]} "
             f"at the start, {res['load_average'][1]} at the end), {m['platform']}, Python {m['python']}, Amaranth "
             f"{m['amaranth']}, {m['simulators'].get('verilator')}, {m['simulators'].get('icarus')}. "
             f"Git {(git['commit'] or '?')[:10]}"
             + (f" with uncommitted changes (other sessions' work in the shared tree) in "
                f"{', '.join(git['uncommitted_code_changes'])}" if git['uncommitted_code_changes'] else "")
             + " at the start.", ""]
    ic = res["icarus_minutes"]
    nb = len(res["blocks"])
    lines += [
        "Every block runs in one generic free-running harness (`convgen.sim.soak`, generated from the block's "
        "stream ports): stimulus from `$readmemh` memories that NumPy writes, valid dropouts on every input and "
        "ready dropouts on every output from seeded LFSRs in the Verilog testbench, every output beat captured "
        "and dumped with `$writememh`, no Python per cycle. After each run every output value is compared with "
        "the golden model in NumPy and the beats are counted (a lost beat is a shortfall, a duplicated one a "
        "surplus). The ConvEngine runs random layers back to back through `convgen.sim.engine.run_layers` "
        "(its own free-running testbench: memory request stalls, latency, jitter and output ready dropouts).", "",
        f"Verilator pushes {res['values']:,} values per block. Icarus gets {ic:g} minutes in total, split evenly: "
        f"{ic * 60 / nb:.0f} s per block ({nb} blocks), rounds sized from the measured rate, up to "
        f"{res['values']:,} values. Traffic comes in rounds with their own dropout settings: 5..40% on every "
        "port, then none (full speed, at most a tenth of the values), then 0..75% per port; bursts of 1..8 "
        "cycles; each round at most a quarter of the values.", "",
        "Columns: *values* = what the block consumes (operand elements for the array, accumulators for the "
        "requantizer, input elements for Winograd) or produces (addresses for im2col, whose input is one "
        "descriptor per layer; outputs for the engine); *beats in/out* = transfers counted by the testbench; "
        "*dropouts* = injected valid (inputs) or ready (outputs) dropout cycles as a share of the cycles the port "
        "was owed traffic (an input with a beat it may offer, an output with beats still expected), and in "
        "brackets the percentage set, mean over the rounds (a dropout decision blocks a whole burst, and an input "
        "held by backpressure makes no decision, so the two differ; the engine: the percentage set for its "
        "memories and output port, mean over rounds); "
        "*mismatches* = output values that differ from the golden model; *lost/dup* = beats missing or in "
        "surplus; *cycles/s* = simulated cycles per second of the simulator process (memory loading and dumping "
        "included); *wall* = stimulus generation, simulation and comparison.", "",
        "| block | simulator | values | beats in | beats out | input dropouts | output dropouts | mismatches | "
        "lost/dup | cycles | rounds | wall | cycles/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["results"]:
        if r["block"] == "engine":
            din, dout = "memories " + f"{r['engine_stall_mean_pct']}%", f"y {r['engine_stall_mean_pct']}%"
            bin_ = f"desc {r['ports'].get('desc', {}).get('beats', 0):,}"
        else:
            din, dout = _pct(r["ports"], "in"), _pct(r["ports"], "out")
            bin_ = _beats(r["ports"], "in")
        lines.append(
            f"| {r['title']} | {r['simulator']} | {r['values']:,} {r['value_unit']} | {bin_} | "
            f"{_beats(r['ports'], 'out')} | {din} | {dout} | **{r['mismatches']}** of {r['values_compared']:,} | "
            f"{r['lost_beats']}/{r['surplus_beats']} | {r['cycles']:,} | {r['rounds']} | {r['wall_seconds']:.1f} s | "
            f"{r['cycles_per_second'] or 0:,} |")
    lines += ["", "im2col's `cfg` stream carries one descriptor per layer and is held by backpressure while the "
              "layer streams out, so it makes few dropout decisions and its measured share is near 0. The "
              "requantizer's `p` stream is gated on `i` (a parameter rewrite waits for the beats before it) and "
              "`i` on `p`, by the harness, so rewrites land between beats at random times."]
    bad = [r for r in res["results"] if not r["ok"]]
    lines += ["", "All values equal the golden model; no beat lost or duplicated; no timeout; im2col's `error` "
              "never rose." if not bad else
              "FAILURES: " + "; ".join(f"{r['block']} on {r['simulator']}: {r['first_mismatch'] or 'counts'}"
                                       for r in bad)]
    short = [r for r in res["results"] if r["values"] < res["values"]]
    if short:
        lines += ["", "Below the target of " f"{res['values']:,} values (Icarus time budget): "
                  + ", ".join(f"{r['block']} {r['values']:,}" for r in short) + "."]
    builds = [f"{r['block']} {r['simulator']} {r['build_seconds']} s" for r in res["results"] if not r["build_cached"]]
    if builds:
        lines += ["", "Builds in this run (not in the wall times): " + ", ".join(builds) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", default=",".join(ALL_BLOCKS), help="comma list of " + ", ".join(ALL_BLOCKS))
    ap.add_argument("--sims", default="verilator,icarus")
    ap.add_argument("--values", type=int, default=1_000_000, help="values per block per simulator")
    ap.add_argument("--icarus-minutes", type=float, default=20.0, help="Icarus time budget over all blocks")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--name", default="soak", help="report file stem")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the Markdown report of a recorded run")
    args = ap.parse_args(argv)
    from convgen.core.fileio import atomic_write_text

    if args.render:
        path = Path(args.render)
        md = render(json.loads(path.read_text()))
        atomic_write_text(path.with_suffix(".md"), md)
        print(md)
        return 0
    blocks = [b for b in args.blocks.split(",") if b]
    sims = [s for s in args.sims.split(",") if s]
    for b in blocks:
        if b not in ALL_BLOCKS:
            ap.error(f"--blocks: {b!r} is not one of {', '.join(ALL_BLOCKS)}")
    for s in sims:
        if s not in ("verilator", "icarus"):
            ap.error(f"--sims: {s!r} is not verilator or icarus")
    if args.values < 1 or args.icarus_minutes <= 0:
        ap.error("--values and --icarus-minutes must be positive")
    t0 = time.monotonic()
    load0 = round(os.getloadavg()[0], 2)
    git = git_state()
    results = []
    for sim in sims:
        budget = args.icarus_minutes * 60 / len(blocks) if sim == "icarus" else None
        for b in blocks:
            if b == "engine":
                r = soak_engine(sim, values=args.values, budget=budget, seed=args.seed)
            else:
                r = soak_block(b, sim, values=args.values, budget=budget, seed=args.seed)
            results.append(r)
            log(f"{sim} {b}: {r['values']:,} values, {r['mismatches']} mismatches, lost {r['lost_beats']}, "
                f"surplus {r['surplus_beats']}, {r['cycles']:,} cycles, {r['wall_seconds']:.0f} s"
                + ("" if r["ok"] else "  FAILED"))
    argv_shown = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    res = {"command": f".venv/bin/python bench/soak.py {argv_shown}".strip(), "values": args.values,
           "icarus_minutes": args.icarus_minutes, "seed": args.seed, "blocks": blocks, "simulators": sims,
           "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "total_seconds": round(time.monotonic() - t0, 1), "load_average": [load0, round(os.getloadavg()[0], 2)],
           "machine": machine_info(), "git": git, "results": results}
    md = render(res)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{args.name}.json", json.dumps(res, indent=1) + "\n")
    atomic_write_text(out / f"{args.name}.md", md)
    print(md)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
