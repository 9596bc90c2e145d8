"""Run GEMMs on the generated systolic array RTL and get NumPy arrays back.

``run_gemm(a, b, ...)`` tiles any M x K x N problem over the array (golden.tile_schedule),
builds the RTL once per configuration (cached), streams every tile back to back through the
array under cocotb, and returns the result with the measured cycle count.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convgen.golden.gemm import check_operand, tile_schedule
from convgen.core.params import ConfigError
from convgen.hdl.systolic import SystolicArray, SystolicConfig, manifest_extra

from .build import Build, SimulationFailed, build_component, run_cocotb, save_waves, work_directory
from .tools import simulator_env

__all__ = ["GemmResult", "tile_streams", "generate", "build_systolic", "run_gemm", "RUN_MODULE"]

RUN_MODULE = "convgen.sim.runs.systolic"


def tile_streams(cfg: SystolicConfig, a_tile: np.ndarray, b_tile: np.ndarray) -> dict:
    """Beats of the ``a`` and ``b`` streams for one ``rows x K`` by ``K x cols`` tile, in the
    order the dataflow consumes them (see SystolicArray's port documentation)."""
    rows, k = a_tile.shape
    assert rows == cfg.rows and b_tile.shape == (k, cfg.cols)
    last = np.zeros(k, dtype=np.int64)
    last[-1] = 1
    if cfg.dataflow == "os":
        a_beats = a_tile.T
    else:
        chunks = cfg.chunks(k)
        padded = np.zeros((rows, chunks * rows), dtype=np.int64)
        padded[:, :k] = a_tile
        a_beats = padded.reshape(rows, chunks, rows).transpose(1, 0, 2).reshape(chunks * rows, rows)
    return {"a": np.ascontiguousarray(a_beats, dtype=np.int64), "b_data": b_tile.astype(np.int64),
            "b_last": last}


def generate(cfg: SystolicConfig, out_dir) -> dict:
    """Write ``<module>.v`` and ``<module>.json`` for ``cfg`` into ``out_dir`` (atomically)."""
    from convgen.hdl.generate import write_block

    return write_block(SystolicArray(cfg), cfg.module_name, out_dir, block="systolic",
                       parameters=cfg.to_dict(), extra=manifest_extra(cfg))


def build_systolic(cfg: SystolicConfig, simulator: str, *, waves: bool = False) -> Build:
    from convgen.hdl.lib.dsp import simulation_sources

    return build_component(SystolicArray(cfg), cfg.module_name, simulator, block="systolic",
                           parameters=cfg.to_dict(), extra=manifest_extra(cfg), waves=waves,
                           models=simulation_sources(cfg.dsp))


def _print(text: str) -> None:
    print(f"convgen: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _tail(path: Path, show, interval: float = 0.5):
    """Pass lines appended to ``path`` to ``show(line)`` while the block runs."""
    stop = threading.Event()

    def follow():
        with open(path) as f:
            while True:
                line = f.readline()
                if line:
                    show(line.rstrip())
                elif stop.is_set():
                    return
                else:
                    time.sleep(interval)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass(frozen=True)
class GemmResult:
    c: np.ndarray
    cycles: int            # first input transfer to last output transfer, inclusive
    ideal_cycles: int      # M*K*N / (rows*cols), rounded up
    tiles: int
    simulator: str
    wall_seconds: float      # the whole cocotb run, simulator start-up included
    sim_seconds: float = 0.0        # the stream-driving loop alone
    simulated_cycles: int = 0       # clock cycles simulated by that loop (reset and drain included)

    @property
    def utilization(self) -> float:
        return self.ideal_cycles / self.cycles

    def summary(self) -> dict:
        return {"cycles": self.cycles, "ideal_cycles": self.ideal_cycles,
                "utilization": round(self.utilization, 4), "tiles": self.tiles,
                "simulator": self.simulator,
                "sim_cycles_per_second": round(self.simulated_cycles / self.sim_seconds) if self.sim_seconds else None,
                "wall_seconds": round(self.wall_seconds, 2)}


def run_gemm(a, b, *, rows: int = 8, cols: int = 8, dataflow: str = "os", simulator: str = "verilator",
             a_width: int = 8, b_width: int = 8, a_signed: bool = True, b_signed: bool = True,
             acc_width: int = 32, pipeline_product: bool = True, pipeline_operands: bool = False, dsp: str = "generic",
             pipeline_mult: int = 0, dsp_rows: int = 0, allow_wrap: bool = False,
             work_dir=None, keep: bool = False, progress=False, waves=None) -> GemmResult:
    """Compute ``a @ b`` on the RTL of a ``rows x cols`` array.

    ``progress``: ``True`` prints the steps and the simulation's progress (every 50,000
    cycles) on stderr; a callable gets ``progress(text)`` before the build and before the
    simulation, and its ``detail(text)`` attribute, if any, the simulation's progress lines
    (``convgen.commands.progress.Steps`` is one). ``waves``: a file to copy the run's waveform
    to (FST on both simulators, every signal of the array; ``build.WAVES_FORMAT``), from a
    tracing build of the array (cached separately).

    Raises ConfigError for bad parameters, operands out of range, mismatched shapes, or a K
    that could overflow the accumulator (unless ``allow_wrap``: then results wrap modulo
    ``2**acc_width`` exactly as the hardware does)."""
    cfg = SystolicConfig(rows=rows, cols=cols, dataflow=dataflow, a_width=a_width, b_width=b_width,
                         a_signed=a_signed, b_signed=b_signed, acc_width=acc_width,
                         pipeline_product=pipeline_product, pipeline_operands=pipeline_operands, dsp=dsp,
                         pipeline_mult=pipeline_mult, dsp_rows=dsp_rows)
    a = check_operand("a", a, a_width, a_signed)
    b = check_operand("b", b, b_width, b_signed)
    if a.shape[1] != b.shape[0]:
        raise ConfigError(f"inner dimensions must match: a is {a.shape[0]}x{a.shape[1]}, "
                          f"b is {b.shape[0]}x{b.shape[1]}")
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or k == 0 or n == 0:
        raise ConfigError(f"M, K and N must be >= 1, got M={m}, K={k}, N={n}")
    if k > cfg.max_k and not allow_wrap:
        raise ConfigError(
            f"K={k} can overflow the {acc_width}-bit accumulator: K must be in 1..{cfg.max_k} "
            f"for these operand types (pass allow_wrap=True / --allow-wrap to accept wrap-around)")

    tiles = tile_schedule(m, n, rows, cols)
    a_parts, b_data, b_last = [], [], []
    for t in tiles:
        a_t = np.zeros((rows, k), dtype=np.int64)
        b_t = np.zeros((k, cols), dtype=np.int64)
        a_t[:t.m] = a[t.m0:t.m0 + t.m]
        b_t[:, :t.n] = b[:, t.n0:t.n0 + t.n]
        s = tile_streams(cfg, a_t, b_t)
        a_parts.append(s["a"])
        b_data.append(s["b_data"])
        b_last.append(s["b_last"])

    if progress is True:
        say, detail = _print, _print
    elif callable(progress):
        say, detail = progress, getattr(progress, "detail", None)
    else:
        say, detail = (lambda text: None), None
    simulator_env(simulator)   # a missing or old simulator: one error, before any step is announced
    say(f"building the {rows}x{cols} array for {simulator}{' with tracing' if waves is not None else ''} "
        f"(cached after the first time)")
    bld = build_systolic(cfg, simulator, waves=waves is not None)
    with work_directory("convgen-gemm-", work_dir, keep) as work:
        np.savez(work / "stimulus.npz", a=np.concatenate(a_parts), b_data=np.concatenate(b_data),
                 b_last=np.concatenate(b_last), out_rows=np.int64(len(tiles) * rows))
        env = {"CONVGEN_STIMULUS": str(work / "stimulus.npz"), "CONVGEN_RESULT": str(work / "result.npz")}
        say(f"simulating {len(tiles)} tiles on {simulator}, about {cfg.ideal_cycles(m, k, n):,} cycles at full "
            f"utilization")
        start = time.monotonic()
        if detail is not None:
            progress_file = work / "progress.txt"
            progress_file.write_text("")
            env["CONVGEN_PROGRESS_FILE"] = str(progress_file)
            with _tail(progress_file, detail):
                res = run_cocotb(bld, RUN_MODULE, run_dir=work / "run", extra_env=env)
        else:
            res = run_cocotb(bld, RUN_MODULE, run_dir=work / "run", extra_env=env)
        wall = time.monotonic() - start
        if not res.passed:
            raise SimulationFailed(f"RTL run failed on {simulator}; see {res.log_file}"
                                   + (f" and the waveform {res.waves_file}" if res.waves_file else ""))
        if waves is not None:
            save_waves(res, waves)
        out = np.load(work / "result.npz", allow_pickle=True)
        rows_out = out["rows"]
        stats = json.loads(str(out["stats"]))
        c = np.zeros((m, n), dtype=rows_out.dtype)
        for i, t in enumerate(tiles):
            block = rows_out[i * rows:(i + 1) * rows]
            c[t.m0:t.m0 + t.m, t.n0:t.n0 + t.n] = block[:t.m, :t.n]
        return GemmResult(c=c, cycles=stats["cycles"], ideal_cycles=cfg.ideal_cycles(m, k, n),
                          tiles=len(tiles), simulator=simulator, wall_seconds=wall,
                          sim_seconds=stats["sim_seconds"], simulated_cycles=stats["simulated_cycles"])
