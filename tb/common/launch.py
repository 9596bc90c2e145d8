"""pytest side of a block regression: run a cocotb module on a build and, when it fails,
rebuild with waveform tracing, rerun, and fail with the log and waveform paths."""

from __future__ import annotations

import os

import pytest

from convgen.sim.build import RunResult, run_cocotb

__all__ = ["run_regression"]


def run_regression(build_fn, module: str, run_dir, *, label: str, extra_env: dict | None = None,
                   testcase=None) -> RunResult:
    """``build_fn(waves: bool) -> Build``. Returns the result of a passing run."""
    res = run_cocotb(build_fn(False), module, run_dir=run_dir, extra_env=extra_env, testcase=testcase)
    if not res.passed:
        msg = f"{res.failures} of {res.tests} cocotb tests failed for {label}; log: {res.log_file}"
        try:
            wres = run_cocotb(build_fn(True), module, run_dir=os.path.join(run_dir, "waves"),
                              extra_env=extra_env, testcase=testcase)
            msg += f"; waveform: {wres.waves_file}"
        except Exception as e:  # the failure itself matters more than the waveform
            msg += f"; waveform rerun failed: {e}"
        pytest.fail(msg)
    return res
