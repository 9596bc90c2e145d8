"""Run requantization on the generated Requantizer RTL and get NumPy arrays back.

``run_requant(acc, params)`` writes the per-channel parameters through the ``p`` stream,
streams every row of ``acc`` (channels on the last axis, ``lanes`` channels per beat) through
the block under cocotb, and returns the outputs with the measured cycles.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from convgen.golden.requant import RequantParams, mult_shift_fields
from convgen.core.params import ConfigError
from convgen.core.quant import channel_entry
from convgen.hdl.requant import RequantConfig, Requantizer, manifest_extra

from .build import Build, SimulationFailed, build_component, run_cocotb, save_waves, work_directory
from .tools import simulator_env

__all__ = ["param_fields", "input_fields", "generate", "build_requant", "run_requant", "RequantResult",
           "RUN_MODULE"]

RUN_MODULE = "convgen.sim.runs.requant"


def param_fields(cfg: RequantConfig, p: RequantParams, channels=None) -> dict:
    """Field arrays of the ``p`` stream beats writing channels ``channels`` (default all);
    channel ``c`` is entry ``channel_entry(c, lanes)``."""
    ch = np.arange(p.channels) if channels is None else np.asarray(channels)
    if p.channels > cfg.lanes * cfg.groups:
        raise ConfigError(f"channels must be <= lanes*groups = {cfg.lanes * cfg.groups}, not {p.channels}")
    if p.rounding != cfg.rounding:
        raise ConfigError(f"parameters are for rounding {p.rounding!r}, the block is {cfg.rounding!r}")
    if p.out_width != cfg.out_width or p.out_signed != cfg.out_signed:
        raise ConfigError("parameters and block disagree on the output type")
    mult, shift = mult_shift_fields(p, ch)
    group, lane = channel_entry(ch, cfg.lanes)
    return {"group": group, "lane": lane, "bias": p.bias[ch], "mult": mult,
            "shift": shift, "zero_point": p.zero_point[ch], "act_min": p.act_min[ch],
            "act_max": p.act_max[ch]}


def input_fields(cfg: RequantConfig, acc: np.ndarray) -> dict:
    """``acc[rows, channels]`` as ``i`` beats: each row is ``ceil(channels/lanes)`` beats,
    group by group; lanes past the last channel carry zeros (their outputs are dropped)."""
    rows, channels = acc.shape
    groups = -(-channels // cfg.lanes)
    padded = np.zeros((rows, groups * cfg.lanes), dtype=np.int64)
    padded[:, :channels] = acc
    return {"acc": padded.reshape(rows * groups, cfg.lanes),
            "group": np.tile(np.arange(groups), rows)}


def outputs_to_array(cfg: RequantConfig, beats: np.ndarray, rows: int, channels: int) -> np.ndarray:
    groups = -(-channels // cfg.lanes)
    return beats.reshape(rows, groups * cfg.lanes)[:, :channels]


def generate(cfg: RequantConfig, out_dir) -> dict:
    from convgen.hdl.generate import write_block

    return write_block(Requantizer(cfg), cfg.module_name, out_dir, block="requant",
                       parameters=cfg.to_dict(), extra=manifest_extra(cfg))


def build_requant(cfg: RequantConfig, simulator: str, *, waves: bool = False) -> Build:
    return build_component(Requantizer(cfg), cfg.module_name, simulator, block="requant",
                           parameters=cfg.to_dict(), extra=manifest_extra(cfg), waves=waves)


@dataclass(frozen=True)
class RequantResult:
    y: np.ndarray
    cycles: int          # first input transfer to last output transfer, inclusive
    values: int
    simulator: str
    wall_seconds: float

    def summary(self) -> dict:
        return {"cycles": self.cycles, "values": self.values,
                "values_per_cycle": round(self.values / self.cycles, 3), "simulator": self.simulator,
                "wall_seconds": round(self.wall_seconds, 2)}


def run_requant(acc, params: RequantParams, *, lanes: int = 4, simulator: str = "verilator",
                work_dir=None, keep: bool = False, progress=None, waves=None) -> RequantResult:
    """Requantize ``acc`` (int32, shape ``[rows, channels]`` or ``[channels]``) on the RTL.

    ``progress(text)`` is called before the build and before the simulation. ``waves``: a file
    to copy the run's waveform to (FST on both simulators, every signal of the block;
    ``build.WAVES_FORMAT``), from a tracing build (cached separately)."""
    acc = np.asarray(acc)
    if acc.size and not np.issubdtype(acc.dtype, np.integer):
        raise ConfigError(f"acc must hold integers, not {acc.dtype}")
    squeeze = acc.ndim == 1
    acc2 = np.atleast_2d(acc).astype(np.int64)
    if acc2.ndim != 2 or acc2.shape[1] != params.channels:
        raise ConfigError(f"acc must have shape [rows, {params.channels}], not {acc.shape}")
    if acc2.size and (acc2.min() < -(1 << 31) or acc2.max() >= (1 << 31)):
        raise ConfigError("acc values must be in -2147483648..2147483647 (int32)")
    if acc2.shape[0] == 0:
        raise ConfigError("acc must have at least one row")
    groups = -(-params.channels // lanes)
    cfg = RequantConfig(lanes=lanes, groups=groups, rounding=params.rounding,
                        out_width=params.out_width, out_signed=params.out_signed)
    say = progress or (lambda text: None)
    simulator_env(simulator)   # a missing or old simulator: one error, before any step is announced
    say(f"building the requantizer ({lanes} lanes, {cfg.rounding}) for {simulator}"
        f"{' with tracing' if waves is not None else ''} (cached after the first time)")
    bld = build_requant(cfg, simulator, waves=waves is not None)
    with work_directory("convgen-requant-", work_dir, keep) as work:
        from .packing import pack

        streams = bld.manifest["streams"]
        pf = param_fields(cfg, params)
        inp = input_fields(cfg, acc2)
        p_beats = pack(streams["p"]["layout"], pf, len(pf["group"]))
        i_beats = pack(streams["i"]["layout"], inp, len(inp["group"]))
        stim = {"p": [str(x) for x in p_beats], "i": [str(x) for x in i_beats]}
        (work / "stimulus.json").write_text(json.dumps(stim))
        env = {"CONVGEN_STIMULUS": str(work / "stimulus.json"), "CONVGEN_RESULT": str(work / "result.json")}
        say(f"simulating {acc2.size:,} values on {simulator}")
        start = time.monotonic()
        res = run_cocotb(bld, RUN_MODULE, run_dir=work / "run", extra_env=env)
        wall = time.monotonic() - start
        if not res.passed:
            raise SimulationFailed(f"RTL run failed on {simulator}; see {res.log_file}"
                                   + (f" and the waveform {res.waves_file}" if res.waves_file else ""))
        if waves is not None:
            save_waves(res, waves)
        from .packing import unpack

        out = json.loads((work / "result.json").read_text())
        beats = unpack(streams["o"]["layout"], [int(x) for x in out["o"]])
        y = outputs_to_array(cfg, beats, acc2.shape[0], params.channels)
        return RequantResult(y=y[0] if squeeze else y, cycles=out["cycles"], values=acc2.size,
                             simulator=simulator, wall_seconds=wall)
