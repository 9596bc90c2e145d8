"""Run every formal proof of convgen and print one table.

    .venv/bin/python formal/run.py                # everything
    .venv/bin/python formal/run.py --quick        # the subset the default test suite runs
    .venv/bin/python formal/run.py -k requant     # the property sets whose name contains "requant"

Columns: property set, engine, mode (prove = k-induction, unbounded; bmc = bounded model check
to the stated depth in cycles; smt = one z3 query; exhaustive = every input simulated), depth,
result, wall time. Exit status 0 when every property set passes, 1 otherwise, 2 when a tool is
missing. docs/formal.md describes each property set and what it does not cover.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from formal.common import Outcome, failed_assertions, run_sby, tools_available  # noqa: E402


@dataclass
class Proof:
    name: str
    engine: str
    mode: str
    depth: str
    run: Callable[[], Outcome]
    quick: bool = True


def _sby_proof(ps) -> Proof:
    job = ps.job()

    def run():
        out = run_sby(job)
        if not out.passed and out.log:
            failed = failed_assertions(out.log)
            if failed:
                out.log = "failed: " + ", ".join(failed) + "\n" + out.log
        return out
    return Proof(ps.name, job.engine, ps.mode, str(ps.depth), run, ps.quick)


def proofs() -> list[Proof]:
    from formal import streams
    from formal.requant import rounding_fp
    from formal.winograd import transforms

    out = [_sby_proof(ps) for ps in streams.property_sets() + transforms.property_sets()]
    for p in rounding_fp.proofs():
        out.append(Proof(p.name, "z3 (Python API)", "smt", "-", p.run, p.quick))

    def f23():
        sys.path.insert(0, str(ROOT / "formal" / "winograd"))
        import prove_f23
        start = time.monotonic()
        ok, text = prove_f23.prove(3, 3)
        return Outcome("PASS" if ok else "FAIL", time.monotonic() - start, text)
    out.append(Proof("winograd F23 core d3g3 == direct FIR (all 2**21 inputs)", "verilator", "exhaustive", "-",
                     f23, True))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="only the default-suite subset")
    p.add_argument("-k", dest="pattern", default="", help="only property sets whose name contains this")
    p.add_argument("-j", "--jobs", type=int, default=2, help="proofs run at once (default 2)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the log of a failing proof")
    args = p.parse_args(argv)
    missing = tools_available()
    if missing:
        print(f"formal/run.py: {missing}", file=sys.stderr)
        return 2
    selected = [x for x in proofs() if (x.quick or not args.quick) and args.pattern in x.name]
    if not selected:
        print(f"formal/run.py: no property set matches {args.pattern!r}", file=sys.stderr)
        return 2
    start = time.monotonic()
    head = f"| {'property set':58} | {'engine':16} | {'mode':10} | {'depth':5} | {'result':7} | {'time':>7} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|", flush=True)
    failures = []

    def one(proof):
        try:
            return proof, proof.run()
        except Exception as exc:  # a generator or tool error is a failed proof, not a crash
            return proof, Outcome("ERROR", 0.0, f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for proof, out in pool.map(one, selected):
            print(f"| {proof.name:58} | {proof.engine:16} | {proof.mode:10} | {proof.depth:>5} | {out.status:7} "
                  f"| {out.seconds:6.1f}s |", flush=True)
            if not out.passed:
                failures.append((proof, out))
    total = time.monotonic() - start
    print(f"\n{len(selected) - len(failures)} of {len(selected)} property sets passed in {total:.0f} s "
          f"(wall, {args.jobs} at once)")
    for proof, out in failures:
        print(f"\nFAILED: {proof.name} ({out.status})")
        lines = out.log.strip().splitlines()
        print("\n".join(lines if args.verbose else lines[:1] + lines[-15:]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
