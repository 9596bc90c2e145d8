"""The formal proofs of formal/ (docs/formal.md), one test per property set and per mutant.

Default suite: the quick property sets must PASS (about a minute on 2 cores). ``-m slow``: the
long ones (BMC of the systolic beat counts and of the engine's request streams, 2-lane
requantizers, Winograd miters but the output transform at 4 bits, the z3 rounding query) and every deliberate bug, which its property
set must not pass (a proof that cannot fail proves nothing; formal.run.caught). The exhaustive F(2,3) proof and its mutant run in tests/test_winograd.py.
The same set runs from one command: ``.venv/bin/python -m formal.run [--quick] [--mutants]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from formal import run as formal_run  # noqa: E402
from formal.common import tools_available  # noqa: E402

#: the exhaustive F(2,3) simulation is tested in tests/test_winograd.py
_PROOFS = [p for p in formal_run.proofs() if p.engine != "verilator"]


def _param(name, quick, obj):
    return pytest.param(obj, id=name, marks=() if quick else pytest.mark.slow)


@pytest.fixture(scope="module", autouse=True)
def _tools():
    missing = tools_available()
    assert missing is None, missing


@pytest.mark.parametrize("proof", [_param(p.name, p.quick, p) for p in _PROOFS])
def test_property_set_passes(proof):
    out = proof.run()
    assert out.passed, f"{proof.name}: {out.status}\n{out.log[-3000:]}"


@pytest.mark.parametrize("proof_mutant", [_param(f"{p.name} / {m.name}", False, (p, m))
                                          for p in _PROOFS for m in p.mutants])
def test_mutant_is_caught(proof_mutant):
    proof, mutant = proof_mutant
    out = proof.run_mutant(mutant)
    assert formal_run.caught(proof.mode, out.status), \
        f"{proof.name} did not catch {mutant.name!r}: {out.status}\n{out.log[-3000:]}"


def test_every_property_set_has_a_mutant():
    assert [p.name for p in formal_run.proofs() if not p.mutants] == []


def test_one_command_lists_and_runs_a_set(capsys):
    assert formal_run.main(["-k", "lib PipelineStage"]) == 0
    out = capsys.readouterr().out
    assert "lib PipelineStage: protocol, beats" in out and "1 of 1 property sets passed" in out
