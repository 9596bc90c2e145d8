"""Cycles of the UP5K engine that places (bench/synth_engine.py ``ice40_serial_small_t2``: 2 chunk
banks, a 3-word weight FIFO, 2 output-channel tiles) against the serial 2x4 engine with 3 banks and
a 4-word FIFO (``ice40_serial``), on the random layers of tests/test_engine_serial.py that both hold
(at most 8 output channels), memory latency 1 as the on-chip buffers have, Icarus (free-running).
Every output is checked against the conv oracle.

    .venv/bin/python bench/small_buffers.py [--out bench/results]

Writes ``<out>/small_buffers.md`` and ``small_buffers.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure() -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    import test_engine_serial as T   # the layers and both configurations, defined once there

    from convgen.hdl.engine import EngineConfig
    from convgen.sim import engine as se

    names = [k for k, v in T.LAYERS.items() if v[0].c_out <= 8]
    out = {}
    for label, cfgd in (("3 banks, 4-word FIFO", T.CFG), ("2 banks, 3-word FIFO, 2 tiles", T.SMALL)):
        b = se.build_engine(EngineConfig(**cfgd), "icarus", mem_words=1 << 12)
        jobs = se.random_jobs(b.config, {k: T.LAYERS[k][:2] for k in names}, 21)
        with tempfile.TemporaryDirectory(prefix="convgen-small-") as d:
            r = se.run_layers(b, jobs, run_dir=d, max_cycles=400_000)
        for n, j, x in zip(names, jobs, r.layers):
            problem = se.layer_mismatch(j, x)
            if problem:
                raise SystemExit(f"small_buffers: {label} {n}: {problem}")
        out[label] = {n: (x.cycles, se.formula_cycles(b.config, j)[0]) for n, j, x in zip(names, jobs, r.layers)}
    big, small = out.values()
    return [{"layer": n, "compute_bound": T.LAYERS[n][2], "cycles_3banks": big[n][0], "cycles_small": small[n][0],
             "formula": big[n][1], "ratio": small[n][0] / big[n][0]} for n in names]


def render(rows: list[dict]) -> str:
    tb, ts = sum(r["cycles_3banks"] for r in rows), sum(r["cycles_small"] for r in rows)
    cb = [r for r in rows if r["compute_bound"]]
    rb, rs = sum(r["cycles_3banks"] for r in cb), sum(r["cycles_small"] for r in cb)
    lines = ["# The UP5K engine's small buffers: cycles", "", "Command: `.venv/bin/python bench/small_buffers.py`"
             " (Icarus, memory latency 1, every output equal to the conv oracle).", "",
             "| layer | compute-bound (formula) | 3 banks, 4-word FIFO | 2 banks, 3-word FIFO, 2 tiles | formula | ratio |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {'yes' if r['compute_bound'] else 'no'} | {r['cycles_3banks']:,} | "
                     f"{r['cycles_small']:,} | {r['formula']:,} | {r['ratio']:.3f} |")
    lines += ["", f"All layers: {ts:,} / {tb:,} cycles = **{ts / tb:.2f}x**; compute-bound layers: {rs:,} / {rb:,} = "
              f"**{rs / rb:.2f}x**.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", "-o", default=str(REPO / "bench" / "results"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        ap.error(f"--out {a.out} is not a directory")
    rows = measure()
    out.mkdir(parents=True, exist_ok=True)
    from convgen.core.fileio import atomic_write_text
    atomic_write_text(out / "small_buffers.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "small_buffers.md", render(rows))
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
