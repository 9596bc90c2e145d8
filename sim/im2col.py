"""Run the generated im2col address generator RTL and get its streams back as NumPy arrays.

``run_im2col(layers, ...)`` checks every layer against the generator's maxima (ConfigError
first, before any simulation), builds the RTL once per configuration (cached), programs the
layers back to back through the ``cfg`` stream without reset, collects every element of
``o`` and returns, per layer, the arrays of :data:`convgen.golden.im2col.STREAM_FIELDS` with
the measured cycle counts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from convgen.core.layer import LAYER_FIELDS, ConvLayer
from convgen.hdl.im2col import Im2colAddressGenerator, Im2colConfig, manifest_extra
from convgen.core.params import ConfigError

from .build import Build, SimulationFailed, build_component, run_cocotb, save_waves, work_directory
from .tools import simulator_env

__all__ = ["generate", "build_im2col", "run_im2col", "Im2colResult", "layers_payload", "RUN_MODULE"]

RUN_MODULE = "convgen.sim.runs.im2col"


def generate(hw: Im2colConfig, out_dir) -> dict:
    from convgen.hdl.generate import write_block

    return write_block(Im2colAddressGenerator(hw), hw.module_name, out_dir, block="im2col",
                       parameters=hw.to_dict(), extra=manifest_extra(hw))


def build_im2col(hw: Im2colConfig, simulator: str, *, waves: bool = False) -> Build:
    return build_component(Im2colAddressGenerator(hw), hw.module_name, simulator, block="im2col",
                           parameters=hw.to_dict(), extra=manifest_extra(hw), waves=waves)


def layers_payload(layers) -> list[dict]:
    """Layer dicts (JSON-ready) in cfg field order; ``indirect`` as 0/1."""
    return [{k: int(getattr(lay, k)) for k in LAYER_FIELDS} for lay in layers]


@dataclass(frozen=True)
class Im2colResult:
    streams: list[dict]      # per layer: field -> int64 array, in stream order
    cycles: list[int]        # per layer: first to last element transfer, inclusive
    total_cycles: int        # first configuration transfer to last element transfer, inclusive
    elements: int
    simulator: str
    wall_seconds: float

    @property
    def addresses_per_cycle(self) -> float:
        """Sustained rate inside the layers (setup excluded)."""
        return self.elements / sum(self.cycles)


def run_im2col(layers, hw: Im2colConfig | None = None, *, simulator: str = "verilator",
               work_dir=None, keep: bool = False, progress=None, waves=None) -> Im2colResult:
    """Stream ``layers`` (ConvLayer, programmed back to back without reset) on the RTL.

    ``progress(text)`` is called before the build and before the simulation. ``waves``: a file
    to copy the run's waveform to (FST on both simulators, every signal of the block;
    ``build.WAVES_FORMAT``), from a tracing build (cached separately)."""
    hw = hw or Im2colConfig()
    layers = list(layers)
    if not layers:
        raise ConfigError("layers must hold at least one ConvLayer")
    for lay in layers:
        if not isinstance(lay, ConvLayer):
            raise ConfigError(f"layers must be ConvLayer objects, not {type(lay).__name__}")
        hw.check_layer(lay)
    say = progress or (lambda text: None)
    simulator_env(simulator)   # a missing or old simulator: one error, before any step is announced
    say(f"building the address generator for {simulator}{' with tracing' if waves is not None else ''} "
        f"(cached after the first time)")
    bld = build_im2col(hw, simulator, waves=waves is not None)
    with work_directory("convgen-im2col-", work_dir, keep) as work:
        (work / "layers.json").write_text(json.dumps(layers_payload(layers)))
        env = {"CONVGEN_LAYERS": str(work / "layers.json"), "CONVGEN_RESULT": str(work / "result.npz")}
        say(f"simulating {sum(lay.elements(hw.tile_rows) for lay in layers):,} addresses on {simulator}")
        start = time.monotonic()
        res = run_cocotb(bld, RUN_MODULE, run_dir=work / "run", extra_env=env)
        wall = time.monotonic() - start
        if not res.passed:
            raise SimulationFailed(f"RTL run failed on {simulator}; see {res.log_file}"
                                   + (f" and the waveform {res.waves_file}" if res.waves_file else ""))
        if waves is not None:
            save_waves(res, waves)
        out = np.load(work / "result.npz")
        stats = json.loads(str(out["stats"]))
        streams = []
        offset = 0
        for lay in layers:
            n = lay.elements(hw.tile_rows)
            streams.append({f: out[f][offset:offset + n].astype(np.int64) for f in stats["fields"]})
            offset += n
        return Im2colResult(streams=streams, cycles=stats["layer_cycles"], total_cycles=stats["total_cycles"],
                            elements=offset, simulator=simulator, wall_seconds=wall)
