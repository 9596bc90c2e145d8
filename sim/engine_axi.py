"""The ConvEngine AXI wrapper (:mod:`convgen.hdl.engine_axi`) for simulation and delivery:

- :func:`generate_axi` writes what ``convgen generate engine --axi`` delivers: the Verilog,
  the manifest (with the register map under ``axi``), ``<module>_regs.md``, ``<module>.h``,
  the file list, the FuseSoC core and a copy of the standalone driver ``convgen_axi_driver.py``
  (:mod:`convgen.sim.axi_driver`);
- :func:`build_axi_cocotb` compiles the wrapper for cocotb (tb/engine_axi);
- :func:`axi_layer` turns a host-side :class:`~convgen.sim.engine.LayerJob` into the driver's
  :class:`~convgen.sim.axi_driver.AxiLayer` at given byte addresses.
"""

from __future__ import annotations

import json
from pathlib import Path

from convgen.hdl.engine_axi import AxiConfig, EngineAxi, c_header, manifest_extra, register_markdown

from .axi_driver import AxiLayer, pack_param
from .build import Build, build, cached_verilog
from .engine import LayerJob, _bytes_words

__all__ = ["axi_verilog", "axi_manifest", "generate_axi", "build_axi_cocotb", "axi_layer", "DRIVER_NAME",
           "layer_addresses"]

#: the driver's file name next to the generated Verilog
DRIVER_NAME = "convgen_axi_driver.py"


#: first line of the wrapper's Verilog: the HLS port name ``interrupt`` is a C++ keyword, which
#: Verilator reports (SYMRSVDWORD) and handles by renaming its C++ symbol; the VPI name stays
VERILATOR_WAIVER = "/* verilator lint_off SYMRSVDWORD */\n"


def axi_verilog(cfg: AxiConfig) -> str:
    """The wrapper's Verilog (cached), with :data:`VERILATOR_WAIVER` in front."""
    return VERILATOR_WAIVER + cached_verilog(lambda: EngineAxi(cfg), cfg.module_name, cfg.to_dict())


def axi_manifest(cfg: AxiConfig, component: EngineAxi | None = None) -> dict:
    """The manifest of the wrapper: the ports as they are in the Verilog (``ap_clk`` and
    ``ap_rst_n`` instead of Amaranth's ``clk``/``rst``), parameters, the engine's facts and the
    register map."""
    from convgen.hdl.generate import block_manifest

    comp = component or EngineAxi(cfg)
    comp._MustUse__silence = True      # only its signature is needed here
    man = block_manifest(comp, cfg.module_name, block="engine_axi", parameters=cfg.to_dict(),
                         extra=manifest_extra(cfg))
    man["ports"] = [dict(p, protocol=_protocol(p["name"])) for p in man["ports"] if p["name"] not in ("clk", "rst")]
    return man


def _protocol(port: str) -> str:
    if port == "ap_clk":
        return "clock: every register samples on its rising edge"
    if port == "ap_rst_n":
        return "reset: synchronous, active low"
    if port == "interrupt":
        return "level, active high: GIE & |(IER & ISR)"
    if port.startswith("s_axi_control_"):
        return "AXI4-Lite slave s_axi_control"
    return "AXI4 master m_axi_gmem"


def generate_axi(cfg: AxiConfig, out_dir) -> dict:
    """Write the wrapper's deliverables into ``out_dir`` (all or nothing); returns their paths
    and the manifest."""
    from convgen.core.fileio import atomic_directory
    from convgen.hdl.packaging import file_list, fusesoc_core

    name = cfg.module_name
    comp = EngineAxi(cfg)
    comp._MustUse__silence = True      # the Verilog comes from the cache or its own instance
    text = axi_verilog(cfg)
    man = axi_manifest(cfg, comp)
    out = Path(out_dir)
    files = {
        "verilog": f"{name}.v", "manifest_path": f"{name}.json", "filelist": f"{name}.f", "core": f"{name}.core",
        "regmap": f"{name}_regs.md", "header": f"{name}.h", "driver": DRIVER_NAME,
    }
    with atomic_directory(out) as tmp:
        (tmp / files["verilog"]).write_text(text)
        (tmp / files["manifest_path"]).write_text(json.dumps(man, indent=2) + "\n")
        (tmp / files["filelist"]).write_text(file_list(name))
        (tmp / files["core"]).write_text(fusesoc_core(name, block="engine_axi",
                                                      description=f"convgen ConvEngine with AXI: {name}"))
        (tmp / files["regmap"]).write_text(register_markdown(cfg, name))
        (tmp / files["header"]).write_text(c_header(cfg, name))
        (tmp / files["driver"]).write_text((Path(__file__).parent / "axi_driver.py").read_text())
    return {**{k: out / v for k, v in files.items()}, "manifest": man}


def build_axi_cocotb(cfg: AxiConfig, simulator: str, *, waves: bool = False) -> Build:
    """Compile ``EngineAxi(cfg)`` for cocotb on ``simulator`` (cached)."""
    return build(axi_verilog(cfg), axi_manifest(cfg), simulator, waves=waves)


def layer_addresses(cfg: AxiConfig, job: LayerJob, start: int, *, gap: int = 0) -> tuple[dict, int]:
    """Byte addresses for the layer's x, w, p and y from ``start`` (each a multiple of 4096,
    ``gap`` bytes of space between tensors), and the first free byte after them."""
    addr = {}
    a = start
    for t in ("x", "w", "p", "y"):
        a = -(-a // 4096) * 4096
        addr[t] = a
        a += job.words[t] * cfg.stride(t) + gap
    return addr, a


def axi_layer(cfg: AxiConfig, job: LayerJob, addr: dict) -> AxiLayer:
    """The driver's view of a host-side layer job at byte addresses ``addr``."""
    from convgen.hdl.engine_axi import regmap_dict

    rm = regmap_dict(cfg)
    n = len(next(iter(job.params.values())))
    params = [pack_param(rm, {k: job.params[k][i] for k in job.params}) for i in range(n)]
    return AxiLayer(dict(job.desc), {"x": _bytes_words(job.x_words), "w": _bytes_words(job.w_words), "p": params},
                    job.words["y"], dict(addr))
