"""Run 3x3 convolutions on the generated Winograd RTL and get NumPy arrays back.

``run_winograd_conv(x, w, ...)`` tiles a stride-1, padding-1 3x3 convolution into
F(2x2,3x3) beats (golden.winograd.extract_tiles: 4x4 input tiles overlapping by 2), builds
the WinogradConv3x3 RTL once per configuration (cached), streams every beat through it under
cocotb and returns the output with the measured cycles and the multiplies used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from convgen.golden.winograd import assemble, check_conv_operands, extract_tiles
from convgen.core.params import ConfigError, check_choice
from convgen.hdl.winograd import BLOCKS, WinogradConfig, WinogradConv3x3, manifest_extra

from .build import Build, SimulationFailed, build_component, run_cocotb, save_waves, work_directory
from .tools import simulator_env

__all__ = ["conv_beats", "generate", "build_winograd", "run_winograd_conv", "ConvResult", "LAYOUTS"]

RUN_MODULE = "convgen.sim.runs.winograd"
LAYOUTS = ("nchw", "nhwc")


def conv_beats(x, w) -> dict:
    """Beats of WinogradConv3x3's ``i`` stream for ``x[C_in, H, W]``, ``w[C_out, C_in, 3, 3]``:
    for each output channel, for each 2x2 output tile (golden.winograd.tile_positions order),
    one beat per input channel, ``last`` on the final one. Output beat ``o * T + t`` is tile
    ``t`` of output channel ``o``."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    c_out, c_in = w.shape[:2]
    tiles = extract_tiles(x)                            # [T, C_in, 4, 4]
    t = tiles.shape[0]
    d = np.broadcast_to(tiles.reshape(1, t, c_in, 16), (c_out, t, c_in, 16)).reshape(-1, 16)
    g = np.broadcast_to(w.reshape(c_out, 1, c_in, 9), (c_out, t, c_in, 9)).reshape(-1, 9)
    last = np.zeros((c_out, t, c_in), dtype=np.int64)
    last[:, :, -1] = 1
    return {"d": np.ascontiguousarray(d), "g": np.ascontiguousarray(g), "last": last.reshape(-1),
            "out_beats": c_out * t}


def generate(cfg: WinogradConfig, out_dir, kind: str = "conv3x3") -> dict:
    """Write ``<module>.v`` and ``<module>.json`` of one Winograd block into ``out_dir``."""
    from convgen.hdl.generate import write_block

    check_choice("kind", kind, BLOCKS)
    name = cfg.module_name(kind)
    return write_block(BLOCKS[kind](cfg), name, out_dir, block="winograd",
                       parameters=cfg.to_dict(), extra=manifest_extra(cfg, kind))


def build_winograd(cfg: WinogradConfig, simulator: str, *, kind: str = "conv3x3", waves: bool = False) -> Build:
    check_choice("kind", kind, BLOCKS)
    return build_component(BLOCKS[kind](cfg), cfg.module_name(kind), simulator, block="winograd",
                           parameters=cfg.to_dict(), extra=manifest_extra(cfg, kind), waves=waves)


@dataclass(frozen=True)
class ConvResult:
    y: np.ndarray
    cycles: int                 # first input transfer to last output transfer, inclusive
    beats: int
    multiplies: int             # hardware multiplies performed (16 per beat)
    direct_multiplies: int      # a direct 3x3 convolution: 9 * C_in * C_out * H * W
    simulator: str
    wall_seconds: float

    def summary(self) -> dict:
        return {"cycles": self.cycles, "beats": self.beats, "multiplies": self.multiplies,
                "direct_multiplies": self.direct_multiplies,
                "multiply_ratio": round(self.direct_multiplies / self.multiplies, 4),
                "simulator": self.simulator, "wall_seconds": round(self.wall_seconds, 2)}


def run_winograd_conv(x, w, *, simulator: str = "verilator", layout: str = "nchw", data_width: int = 8,
                      weight_width: int = 8, out_width: int = 32, work_dir=None, keep: bool = False,
                      progress=None, waves=None) -> ConvResult:
    """``y = conv3x3(x, w)`` (stride 1, zero padding 1) on the WinogradConv3x3 RTL.

    ``x`` is ``[C_in, H, W]`` (``layout="nchw"``) or ``[H, W, C_in]`` (``"nhwc"``); a leading
    batch dimension of 1 is accepted. ``w`` is ``[C_out, C_in, 3, 3]`` (OIHW) in both cases.
    ``y`` comes back in the layout of ``x`` (int64), with its batch axis if ``x`` had one. Raises ConfigError for bad parameters,
    values out of range, mismatched shapes, or a C_in that could overflow ``out_width``.

    ``progress(text)`` is called before the build and before the simulation. ``waves``: a file
    to copy the run's waveform to (FST on both simulators, every signal of the block;
    ``build.WAVES_FORMAT``), from a tracing build (cached separately)."""
    cfg = WinogradConfig(data_width=data_width, weight_width=weight_width, out_width=out_width)
    check_choice("layout", layout, LAYOUTS)
    x = np.asarray(x)
    batched = x.ndim == 4
    if batched:
        if x.shape[0] != 1:
            raise ConfigError(f"x: only a batch of 1 is supported, got shape {x.shape}")
        x = x[0]
    if layout == "nhwc" and x.ndim == 3:
        x = x.transpose(2, 0, 1)
    x, w = check_conv_operands(x, w, data_width=data_width, weight_width=weight_width)
    c_in, h, wd = x.shape
    c_out = w.shape[0]
    if c_in > cfg.max_channels:
        raise ConfigError(f"C_in={c_in} can overflow the {out_width}-bit output: C_in must be in "
                          f"1..{cfg.max_channels} for int{data_width} x int{weight_width}")
    beats = conv_beats(x, w)
    say = progress or (lambda text: None)
    simulator_env(simulator)   # a missing or old simulator: one error, before any step is announced
    say(f"building the Winograd F(2x2,3x3) convolution for {simulator}{' with tracing' if waves is not None else ''} "
        f"(cached after the first time)")
    bld = build_winograd(cfg, simulator, waves=waves is not None)
    with work_directory("convgen-winograd-", work_dir, keep) as work:
        np.savez(work / "stimulus.npz", d=beats["d"], g=beats["g"], last=beats["last"],
                 out_beats=np.int64(beats["out_beats"]))
        env = {"CONVGEN_STIMULUS": str(work / "stimulus.npz"), "CONVGEN_RESULT": str(work / "result.npz")}
        say(f"simulating {len(beats['last']):,} tile beats on {simulator}")
        start = time.monotonic()
        res = run_cocotb(bld, RUN_MODULE, run_dir=work / "run", extra_env=env)
        wall = time.monotonic() - start
        if not res.passed:
            raise SimulationFailed(f"RTL run failed on {simulator}; see {res.log_file}"
                                   + (f" and the waveform {res.waves_file}" if res.waves_file else ""))
        if waves is not None:
            save_waves(res, waves)
        out = np.load(work / "result.npz", allow_pickle=False)
        stats = json.loads(str(out["stats"]))
        y = assemble(out["y"].reshape(c_out, -1, 2, 2), c_out, h, wd).astype(np.int64)
        if layout == "nhwc":
            y = y.transpose(1, 2, 0)
        if batched:
            y = y[None]
        n_beats = len(beats["last"])
        return ConvResult(y=np.ascontiguousarray(y), cycles=stats["cycles"], beats=n_beats,
                          multiplies=WinogradConv3x3.MULTIPLIERS * n_beats,
                          direct_multiplies=9 * c_in * c_out * h * wd, simulator=simulator, wall_seconds=wall)
