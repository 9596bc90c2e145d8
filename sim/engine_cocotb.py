"""Build the ConvEngine for cocotb (per-cycle Python driving, tb/engine/cocotb_engine.py).

The free-running simulation (:mod:`convgen.sim.engine`) wraps the engine in a Verilog
testbench; this build is the bare engine with its JSON manifest (ports, payload layouts,
descriptor and parameter layouts, memory map), compiled by the generic
:func:`convgen.sim.build.build` for cocotb, as every other block is. The Verilog comes from
:func:`convgen.sim.build.cached_verilog` (elaborating the engine takes seconds; the free-running
build shares the cached text), the model is cached under ``cache_root()/builds`` by a hash of
the Verilog, the simulator and the waveform switch.
"""

from __future__ import annotations

from convgen.hdl.engine import ConvEngine, EngineConfig, manifest_extra

from .build import Build, build, cached_verilog

__all__ = ["build_engine_cocotb"]


def build_engine_cocotb(cfg: EngineConfig, simulator: str, *, waves: bool = False) -> Build:
    """Compile ``ConvEngine(cfg)`` (module ``cfg.module_name``) for cocotb on ``simulator``."""
    from convgen.hdl.generate import block_manifest

    engine = ConvEngine(cfg)     # ports and layouts only; elaboration happens in to_verilog
    from convgen.hdl.lib.dsp import simulation_sources

    text = cached_verilog(lambda: engine, cfg.module_name, cfg.to_dict())
    for fname, model in simulation_sources(cfg.dsp).items():     # vendor primitive models (dsp="ecp5")
        text += f"\n// ---- simulation model {fname} ----\n{model}"
    manifest = block_manifest(engine, cfg.module_name, block="engine", parameters=cfg.to_dict(),
                              extra=manifest_extra(cfg))
    return build(text, manifest, simulator, waves=waves)
