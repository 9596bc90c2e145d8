"""Run every formal proof of convgen and print one table.

    .venv/bin/python formal/run.py                # everything
    .venv/bin/python formal/run.py --quick        # the subset the default test suite runs
    .venv/bin/python formal/run.py -k requant     # the property sets whose name contains "requant"
    .venv/bin/python formal/run.py --mutants      # instead: every deliberate bug must be caught
    .venv/bin/python -m formal.run ...            # the same, as a module (from the repository root)

Columns: property set, engine, mode (prove = k-induction, unbounded; bmc = bounded model check
to the stated depth in cycles; smt = one z3 query; exhaustive = every input simulated), depth,
result, wall time. Exit status 0 when every property set passes, 1 otherwise, 2 when a tool is
missing. With ``--mutants`` each row is one deliberate RTL bug (an edit of the generated
Verilog) run through its property set, and passing means the proof FAILED with a
counterexample (a mutant that only makes k-induction inconclusive does not count). docs/formal.md describes each property set and what it does not cover.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from formal.common import (Mutant, Outcome, default_engine, failed_assertions, run_sby,  # noqa: E402
                           tools_available)


@dataclass
class Proof:
    name: str
    engine: str
    mode: str
    depth: str
    run: Callable[[], Outcome]
    quick: bool = True
    mutants: list[Mutant] = field(default_factory=list)
    run_mutant: Callable[[Mutant], Outcome] | None = None


def _sby_run(job) -> Outcome:
    out = run_sby(job)
    if not out.passed and out.log:
        failed = failed_assertions(out.log)
        if failed:
            out.log = "failed: " + ", ".join(failed) + "\n" + out.log
    return out


def _sby_proof(ps) -> Proof:
    return Proof(ps.name, default_engine(), ps.mode, str(ps.depth), lambda: _sby_run(ps.job()), ps.quick,
                 list(ps.mutants), lambda m: _sby_run(ps.job(m.edit)))


def proofs() -> list[Proof]:
    from formal import engine, streams
    from formal.requant import rounding_fp
    from formal.winograd import transforms

    out = [_sby_proof(ps) for ps in streams.property_sets() + transforms.property_sets() + engine.property_sets()]
    for p in rounding_fp.proofs():
        out.append(Proof(p.name, "z3 (Python API)", "smt", "-", p.run, p.quick, list(p.mutants or []),
                         lambda m, p=p: p.run(m.edit)))

    def f23():
        sys.path.insert(0, str(ROOT / "formal" / "winograd"))
        import prove_f23
        start = time.monotonic()
        ok, text = prove_f23.prove(3, 3)
        return Outcome("PASS" if ok else "FAIL", time.monotonic() - start, text)
    def f23_mutant(m):
        sys.path.insert(0, str(ROOT / "formal" / "winograd"))
        import prove_f23
        start = time.monotonic()
        ok, text = prove_f23.prove(3, 3, mutation=m.edit)
        return Outcome("PASS" if ok else "FAIL", time.monotonic() - start, text)
    out.append(Proof("winograd F23 core d3g3 == direct FIR (all 2**21 inputs)", "verilator", "exhaustive", "-",
                     f23, True, [F23_MUTANT], f23_mutant))
    return out


#: the mutation tests/test_winograd.py also uses: a sign error in the input transform
F23_MUTANT = Mutant("v3 = d3 - d1 instead of d1 - d3", ("assign v3 = $signed(d1) - $signed(d3);",
                                                         "assign v3 = $signed(d3) - $signed(d1);"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="only the default-suite subset")
    p.add_argument("-k", dest="pattern", default="", help="only property sets whose name contains this")
    p.add_argument("-j", "--jobs", type=int, default=2, help="proofs run at once (default 2)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the log of a failing proof")
    p.add_argument("--mutants", action="store_true",
                   help="run the deliberate bugs of the selected property sets instead; each must FAIL")
    args = p.parse_args(argv)
    missing = tools_available()
    if missing:
        print(f"formal/run.py: {missing}", file=sys.stderr)
        return 2
    selected = [x for x in proofs() if (x.quick or not args.quick) and args.pattern in x.name]
    if args.mutants:
        selected = [_mutant_row(x, m) for x in selected for m in x.mutants]
    if not selected:
        print(f"formal/run.py: no property set matches {args.pattern!r}", file=sys.stderr)
        return 2
    start = time.monotonic()
    head = f"| {'property set' + (' / mutant' if args.mutants else ''):58} | {'engine':16} | {'mode':10} | {'depth':5} | {'result':7} | {'time':>7} |"
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
            if not (out.passed or out.status in ("CAUGHT", "UNPROVED")):
                failures.append((proof, out))
    total = time.monotonic() - start
    what = "mutants caught" if args.mutants else "property sets passed"
    print(f"\n{len(selected) - len(failures)} of {len(selected)} {what} in {total:.0f} s "
          f"(wall, {args.jobs} at once)")
    for proof, out in failures:
        print(f"\nFAILED: {proof.name} ({out.status})")
        lines = out.log.strip().splitlines()
        print("\n".join(lines if args.verbose else lines[:1] + lines[-15:]))
    return 1 if failures else 0


def caught(mode: str, status: str) -> bool:
    """Whether a mutant's proof status shows the bug. BMC, smt, exhaustive: only FAIL (a
    counterexample). prove: FAIL (the base case, a BMC to the depth, found a counterexample) or
    UNKNOWN (the induction step fails, so the property is no longer proved), since a bug
    that needs more cycles than the base-case depth can only show as a failed induction."""
    return status == "FAIL" or (mode == "prove" and status == "UNKNOWN")


def _mutant_row(proof: Proof, m: Mutant) -> Proof:
    """A row that passes when the proof of ``proof`` does not pass on mutant ``m`` (see
    :func:`caught`); the result column says how: CAUGHT (a counterexample) or UNPROVED."""
    def run():
        out = proof.run_mutant(m)
        detail = out.log.splitlines()[0] if out.log else ""
        status = ("CAUGHT" if out.status == "FAIL" else "UNPROVED") if caught(proof.mode, out.status) else "MISSED"
        return Outcome(status, out.seconds,
                       f"mutant {m.name!r}: proof status {out.status}; {detail}\n{out.log}")
    return Proof(f"{proof.name} / {m.name}", proof.engine, proof.mode, proof.depth, run, proof.quick)


if __name__ == "__main__":
    sys.exit(main())
