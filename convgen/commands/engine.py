"""CLI verbs of the ConvEngine: ``generate engine``, ``run conv``, ``synth engine``.

``run conv`` takes one quantized convolution layer as an ``.npz`` of ONNX QLinearConv inputs
(or TFLite-style multiplier/shift arrays with ``--rounding tflite|tflite_single``), runs it on
the engine RTL with the simulator running free, writes y and prints one JSON line (cycles, the
cycle formula, utilization). The engine's maxima (``max_h`` ... ``max_tiles``) are derived from
the layer, so only the array and the memory-side options are given.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np

from convgen.core.fields import Field
from convgen.core.params import ConfigError
from convgen.hdl.engine import ConvEngine, EngineConfig
from convgen.hdl.engine_axi import AXI_FIELDS, EngineAxi, axi_component
from convgen.hdl.engine_soc import BUFFER_FIELDS, EngineWithBuffers, check_buffer_target, soc_component, soc_verilog

from .common import Block, CLIError, Run, _config, _read, add_fields, check_output_dir, check_output_file, \
    keep_directory, remember_flags, steps_for, waves_written

#: config fields ``run conv`` derives from the layer instead of taking them as options
DERIVED = ("max_h", "max_w", "max_pixel_words", "max_kernel", "max_stride", "max_pad", "max_dilation",
           "max_tiles", "addr_width")

LAYER_KEYS = ("x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale", "y_zero_point", "B",
              "strides", "pads", "dilations", "group", "multiplier", "shift", "act_min", "act_max")


#: ``run conv --waves``: a tracing Verilator build writes FST; the Icarus build's clock wrapper VCD
ENGINE_WAVES = {"verilator": "fst", "icarus": "vcd"}

BARE = Field("bare", False, "the engine alone, its memory ports at the module boundary (default: the engine "
                            "with on-chip x/w/p/y buffers and a host bus, hdl/engine_soc.py)")
AXI = Field("axi", False, "the engine as AXI IP (hdl/engine_axi.py): an AXI4-Lite control slave s_axi_control with "
                          "the HLS register map, an AXI4 master m_axi_gmem, interrupt, ap_clk/ap_rst_n; generate also "
                          "writes the register map (.md), a C header and the Python driver")
OPTIONS = (BARE, *BUFFER_FIELDS, AXI, *AXI_FIELDS)


def _axi_flag_problem(opts, flags) -> str | None:
    """--axi combined with options of another wrapper, or AXI options without --axi."""
    name = lambda n: flags.get(n, "--" + n.replace("_", "-"))  # noqa: E731
    if opts.get("axi"):
        for other in ("bare", "spram"):
            if opts.get(other):
                return f"{name(other)} cannot go with {name('axi')} (the AXI wrapper has no on-chip buffers)"
        return None
    for f in AXI_FIELDS:
        if opts.get(f.name, f.default) != f.default:
            return f"{name(f.name)} needs {name('axi')}"
    return None


def _component(cfg, opts):
    if opts.get("axi"):
        return axi_component(cfg, opts)
    if opts.get("bare"):
        return ConvEngine(cfg), cfg.module_name
    return soc_component(cfg, opts)


def _verilog(component, name) -> str:
    from convgen.hdl.generate import to_verilog

    return soc_verilog(component, name) if isinstance(component, EngineWithBuffers) else to_verilog(component, name)


def _check(cfg, opts, flow, flags) -> None:
    problem = _axi_flag_problem(opts, flags)
    if problem:
        raise CLIError(problem)
    if opts.get("bare") and opts.get("spram"):
        raise CLIError(f"{flags.get('spram', '--spram')} places on-chip buffers: it cannot go with --bare")
    check_buffer_target(opts.get("spram", ""), flow["target"], label=lambda n: flags.get(n, n))


def _generate(cfg, out_dir, opts) -> dict:
    from convgen.hdl.engine_soc import manifest_extra as soc_extra
    from convgen.hdl.generate import write_block
    from convgen.sim.engine import generate

    problem = _axi_flag_problem(opts, {})
    if problem:
        raise CLIError(problem)
    if opts.get("axi"):
        from convgen.hdl.engine_axi import AxiConfig
        from convgen.sim.engine_axi import generate_axi

        acfg = AxiConfig.from_options(cfg, opts)
        out = generate_axi(acfg, out_dir)
        return {"verilog": str(out["verilog"]), "manifest": str(out["manifest_path"]), "core": str(out["core"]),
                "regmap": str(out["regmap"]), "header": str(out["header"]), "driver": str(out["driver"]),
                "module": out["manifest"]["module"], "axi": True, "axi_data_width": acfg.data_width,
                "strides": {t: acfg.stride(t) for t in ("x", "w", "p", "y")},
                "rows": cfg.rows, "cols": cfg.cols, "vec": cfg.vec, "max_k": cfg.max_k, "rounding": cfg.rounding}
    if opts.get("bare"):
        out = generate(cfg, out_dir)
    else:
        if opts.get("spram"):
            raise CLIError("--spram applies to synthesis for iCE40 (convgen synth engine --target ice40)")
        component, name = soc_component(cfg, opts)
        out = write_block(component, name, out_dir, block="engine", parameters=component.config.to_dict(),
                          extra=soc_extra(component.config), verilog=soc_verilog(component, name))
    m = out["manifest"]
    path, man = out["verilog"], out["manifest_path"]
    return {"verilog": str(path), "manifest": str(man), "core": str(out["core"]), "module": m["module"],
            "buffers": not opts.get("bare"),
            "rows": cfg.rows, "cols": cfg.cols, "vec": cfg.vec, "max_k": cfg.max_k, "rounding": cfg.rounding}


def load_layer(path: str, *, rounding: str, layout: str):
    """The layer in ``path`` (``--layer``) as a :class:`convgen.golden.engine.QuantConv` and
    whether its output is signed; CLIError naming ``--layer`` for anything wrong with it."""
    from convgen.golden.engine import quant_conv_from_arrays

    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise CLIError(f"--layer: {path} must be an .npz archive of named arrays (np.savez), not one array")
        with z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CLIError(f"--layer: no such file: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"--layer: {path} is a directory, not an .npz file") from None
    except (ValueError, OSError, EOFError) as e:
        raise CLIError(f"--layer: {path} is not a NumPy .npz archive ({e})") from None
    unknown = sorted(set(arrays) - set(LAYER_KEYS))
    if unknown:
        raise CLIError(f"--layer: unknown array {unknown[0]!r} in {path}; the keys are {', '.join(LAYER_KEYS)}")
    if rounding == "onnx" and "multiplier" in arrays:
        raise CLIError("--layer: multiplier/shift arrays need --rounding tflite or tflite_single")
    if rounding != "onnx" and "multiplier" in arrays and "shift" not in arrays:
        raise CLIError("--layer: the layer has 'multiplier' but no 'shift'")
    try:
        q = quant_conv_from_arrays(arrays, rounding=rounding, layout=layout)
    except ConfigError as e:
        raise CLIError(f"--layer: {e}") from None
    if "y_zero_point" in arrays:
        y_signed = np.asarray(arrays["y_zero_point"]).dtype != np.uint8
    else:
        y_signed = q.x_signed
    return q, y_signed


def _layer_engine(q, cfg):
    """The engine for layer ``q`` as it runs (a fetch-bound stem in its engine form): the
    array and memory-side options of ``cfg``, the maxima derived from the layer; CLIError
    naming ``--layer`` if the engine cannot run it."""
    from convgen.sim.engine import engine_config_for, engine_form, prepare_conv

    engine = engine_config_for([engine_form(q, cfg.rows).layer], rows=cfg.rows, cols=cfg.cols, rounding=cfg.rounding,
                               vec=cfg.vec)
    engine = dataclasses.replace(engine, fetch_banks=cfg.fetch_banks, weight_fifo=cfg.weight_fifo,
                                 requant_lanes=cfg.requant_lanes, mult_style=cfg.mult_style,
                                 serial_digits=cfg.serial_digits, debug_fault=cfg.debug_fault)
    try:
        prepare_conv(q, config=engine)
    except ConfigError as e:
        raise CLIError(f"--layer: {e}") from None
    return engine


def _run_conv(args, cfg) -> int:
    from convgen.core.fileio import atomic_write_bytes
    from convgen.sim.engine import run_conv

    # everything is checked before the build: the output path, the layer, the engine for it
    check_output_file(args.out, "--out", "y.npy")
    q, y_signed = load_layer(args.layer, rounding=cfg.rounding, layout=args.layout)
    engine = _layer_engine(q, cfg)

    with steps_for(args) as steps:
        res = run_conv(q, config=engine, simulator=args.sim, seed=args.seed, stall=args.stall, latency=args.latency,
                       jitter=args.jitter, progress=steps, run_dir=keep_directory(args, "convgen-conv-"),
                       waves=args.waves)
        y = res.y.astype(np.int8 if y_signed else np.uint8)
        y = y[None] if args.layout == "nhwc" else y.transpose(2, 0, 1)[None]
        buf = io.BytesIO()
        np.save(buf, y)
        atomic_write_bytes(args.out, buf.getvalue())
        waves = waves_written(steps, args, ENGINE_WAVES)
    print(json.dumps({"out": args.out, "shape": list(y.shape), "dtype": str(y.dtype), "layout": args.layout,
                      "layer": q.layer.name or q.layer.kind, **res.summary(), **waves}))
    return 0


def _export_test(args) -> int:
    from convgen.sim.engine import export_test

    cfg = _config(BLOCK, args, DERIVED)
    _read(args, EXPORT_OPTIONS)
    check_output_dir(args.out, "--out")
    q, _ = load_layer(args.layer, rounding=cfg.rounding, layout=args.layout)
    engine = _layer_engine(q, cfg)
    print(json.dumps(export_test(q, args.out, config=engine, seed=args.seed, stall=args.stall, latency=args.latency,
                                 jitter=args.jitter), default=str))
    return 0


def register(verbs: dict) -> None:
    help_text = ("a standalone HDL test of one layer: the engine's Verilog, a free-running testbench that checks "
                 "the output, the $readmemh memory images, the expected output, run scripts for Icarus and "
                 "Verilator and a FuseSoC core with sim_icarus and sim_verilator targets (no Python needed to "
                 "rerun it)")
    p = verbs["top"].add_parser("export-test", help=help_text, description=help_text)
    add_fields(p, EXPORT_OPTIONS)
    add_fields(p, [f for f in BLOCK.fields if f.name not in DERIVED])
    p.set_defaults(func=_export_test)
    remember_flags(p)


LAYER_OPTION = Field("layer", None, "the layer as .npz: ONNX QLinearConv input names (x, x_scale, x_zero_point, w, "
                                    "w_scale, w_zero_point, y_scale, y_zero_point, optional B; attributes strides, "
                                    "pads, dilations, group); with --rounding tflite*: multiplier, shift, act_min, "
                                    "act_max instead of scales", kind=str, required=True, metavar="LAYER.npz")
LAYOUT_OPTION = Field("layout", "nchw", "layouts of x, w and y: nchw (ONNX: x NCHW, w OIHW) or nhwc (TFLite: x NHWC, "
                                        "w OHWI)", choices=("nchw", "nhwc"))
MEMORY_OPTIONS = (
    Field("seed", 1, "seed of the memory model's random stalls and latencies", lo=0, hi=2**31 - 1),
    Field("stall", 0, "percent of memory requests refused (random, from the seed)", lo=0, hi=90),
    Field("latency", 1, "cycles from a memory request to its answer", lo=1, hi=64),
    Field("jitter", 0, "random extra cycles of latency, 0..jitter", lo=0, hi=64),
)
EXPORT_OPTIONS = (
    LAYER_OPTION,
    Field("out", None, "directory for the test (created; its files are replaced all or none)", kind=str,
          required=True, flags=("--out", "-o"), metavar="DIR"),
    LAYOUT_OPTION,
    *MEMORY_OPTIONS,
)


BLOCK = Block(
    name="engine",
    help="ConvEngine: a whole INT8 convolution layer from memory (im2col, systolic array, requantizer)",
    config=EngineConfig,
    component=_component,
    generate=_generate,
    options=OPTIONS,
    verilog=_verilog,
    check=_check,
    runs=(Run("conv", "one quantized convolution layer (ONNX QLinearConv or TFLite CONV_2D/DEPTHWISE_CONV_2D) "
                      "on the ConvEngine RTL", _run_conv, exclude=DERIVED, options=(
        LAYER_OPTION,
        Field("out", None, "where to write y (.npy; NCHW, or NHWC with --layout nhwc; int8 or uint8 as "
                           "y_zero_point)", kind=str, required=True, metavar="Y.npy"),
        LAYOUT_OPTION,
        *MEMORY_OPTIONS,
        Field("keep", False, "keep the run directory (memory images, log, output dump)"),
    ), waves=ENGINE_WAVES),),
)
