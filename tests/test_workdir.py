"""Runs leave nothing behind in the temporary directory unless asked to (issue: every run used
to leave a convgen-* folder, a big GEMM a 69 MB stimulus file)."""

import tempfile

import numpy as np
import pytest

from convgen.core.params import ConfigError
from convgen.sim.build import SimulationFailed, work_directory


@pytest.fixture
def tmpdir_only(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_deleted_on_success_error_and_interrupt(tmpdir_only):
    with work_directory("convgen-x-") as w:
        (w / "f").write_text("x")
    with pytest.raises(ConfigError):
        with work_directory("convgen-x-"):
            raise ConfigError("bad")
    with pytest.raises(KeyboardInterrupt):
        with work_directory("convgen-x-"):
            raise KeyboardInterrupt
    assert list(tmpdir_only.iterdir()) == []


def test_kept_when_the_simulation_failed_or_asked(tmpdir_only):
    with pytest.raises(SimulationFailed):
        with work_directory("convgen-x-") as failed:
            raise SimulationFailed("see log")
    with work_directory("convgen-x-", keep=True) as kept:
        pass
    assert sorted(tmpdir_only.iterdir()) == sorted([failed, kept])


def test_a_given_directory_is_never_deleted(tmp_path):
    with work_directory("convgen-x-", tmp_path / "mine") as w:
        assert w == tmp_path / "mine"
    assert w.is_dir()


def test_run_gemm_leaves_nothing(tmpdir_only):
    from convgen.sim.systolic import run_gemm

    rng = np.random.default_rng(1)
    a, b = rng.integers(-128, 128, (3, 5)), rng.integers(-128, 128, (5, 2))
    r = run_gemm(a, b, rows=2, cols=2, simulator="icarus")
    assert np.array_equal(r.c, a @ b)
    assert [p.name for p in tmpdir_only.iterdir()] == []
