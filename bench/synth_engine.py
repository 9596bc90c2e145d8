"""ConvEngine with on-chip buffers (hdl/engine_soc.py) through the synthesis flow, placed and routed.

    .venv/bin/python bench/synth_engine.py                 # both points below
    .venv/bin/python bench/synth_engine.py --only ecp5     # or ice40,ice40_1x1,ice40_fit,ice40_serial,ice40_serial_h32,ice40_serial_small

Two points, each ``synth.flow.run_flow(..., pnr=True)`` (the flow of ``convgen synth``):

- ``ecp5``: the default 8x8 engine (maxima as EngineConfig's defaults, 16-bit addresses) with
  4096-word x/w/y buffers and a 512-word parameter buffer, on LFE5U-85F;
- ``ice40``: a 2x4 engine with maxima small enough for an iCE40UP5K (32x32 inputs, 16
  channels in and out, 3x3 kernels, stride 2, pad 1) and 16K-word x and y buffers in SPRAM
  (w and p in EBR), on iCE40UP5K;
- ``ice40_fit`` / ``ice40_serial``: the 2x4 engine with one time-multiplexed requantizer lane and no
  ``*`` outside the PEs (``mult_style`` ``lut`` / ``serial``; ``ice40_serial`` also derives the
  accumulator width from the maxima), smaller maxima, on iCE40UP5K (see the comments below).

Writes bench/results/synth_engine.json (the flow reports) and prints the table; the Markdown
write-up is bench/results/synth_engine.md. A point that does not fit is reported with
nextpnr's numbers instead of failing the script. Runs are cached (~/.cache/convgen).

Each point records ``verilog_sha256`` (the exact Verilog synthesised, so a row can be matched to
the RTL it came from) and, from the flow, which LUT mapping yosys used: ``synthesis`` for the
bare design, ``pnr.harness_mapping``/``pnr.harness_fallback`` for the netlist nextpnr placed
(``abc9`` unless yosys needed its ECP5 fallback, docs/synth.md); fallbacks are also printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from convgen.core.cache import portable
from convgen.core.fileio import atomic_write_text
from convgen.hdl.engine import EngineConfig
from convgen.hdl.engine_soc import BufferConfig, EngineWithBuffers, soc_verilog
from convgen.synth.flow import flow_markdown, run_flow
from convgen.synth.pnr import DoesNotFit, PnrError
from convgen.synth.yosys import SynthError, synthesize

def _up5k_serial(host_width: int = 0, **engine):
    """A point of the 2x4 UP5K engine with the digit-serial requantizer (``ice40_serial``: 4 steps of
    6 bits, one requantizer beat every 5 cycles, compute-bound for K >= 2*4*5 = 40; 25-bit
    accumulators), ``engine`` overriding its EngineConfig fields; tests/test_engine_serial.py
    simulates these engines."""
    cfg = dict(rows=2, cols=4, vec=4, max_h=16, max_w=16, max_pixel_words=4, max_kernel=3, max_stride=2,
               max_pad=1, max_dilation=1, max_tiles=4, addr_width=14, fetch_banks=3, weight_fifo=4,
               requant_lanes=1, mult_style="serial", serial_digits=4, acc_width=0)
    return dict(target="ice40", device="up5k",
                config=BufferConfig(EngineConfig(**{**cfg, **engine}), x_words=16384, w_words=1024, p_words=16,
                                    y_words=16384, spram="xy", host_width=host_width))


POINTS = {
    "ecp5": dict(target="ecp5", device="85k",
                 config=BufferConfig(EngineConfig(rows=8, cols=8, addr_width=16),
                                     x_words=4096, w_words=4096, p_words=512, y_words=4096)),
    # the same engine with the fast ECP5 array (one MULT18X18D per PE with its pipeline register, a fabric
    # register after it and a registered read-out row: SystolicConfig's pipeline_mult=2, the
    # configuration of bench/synth_systolic.py's ecp5_m2 rows); the cycle formula takes the longer
    # tile latency from the config (tests/test_engine_rtl.py test_ecp5_dsp_engine simulates this array in an engine)
    "ecp5_fast": dict(target="ecp5", device="85k",
                      config=BufferConfig(EngineConfig(rows=8, cols=8, addr_width=16, dsp="ecp5", pipeline_mult=2),
                                          x_words=4096, w_words=4096, p_words=512, y_words=4096)),
    # ecp5_fast with the requantizer's scale product in two stages (mult_style="dsp2": 17-bit slice
    # products on the DSPs, registered, then summed): ecp5_fast's critical path ran from the requantizer's
    # MULT18X18D through the adders of the other slices (tests/test_engine_rtl.py simulates this engine)
    "ecp5_fast_dsp2": dict(target="ecp5", device="85k",
                           config=BufferConfig(EngineConfig(rows=8, cols=8, addr_width=16, dsp="ecp5", pipeline_mult=2,
                                                            mult_style="dsp2"),
                                               x_words=4096, w_words=4096, p_words=512, y_words=4096)),
    # the same with at most 8 output-channel tiles (64 output channels): the requantizer's
    # parameter registers are max_tiles*cols*91 bits (46,592 flip-flops at the default 64)
    "ecp5_t8": dict(target="ecp5", device="85k",
                    config=BufferConfig(EngineConfig(rows=8, cols=8, max_tiles=8, addr_width=16),
                                        x_words=4096, w_words=4096, p_words=64, y_words=4096)),
    "ice40": dict(target="ice40", device="up5k",
                  config=BufferConfig(EngineConfig(rows=2, cols=4, vec=4, max_h=32, max_w=32, max_pixel_words=4,
                                                   max_kernel=3, max_stride=2, max_pad=1, max_dilation=1,
                                                   max_tiles=4, addr_width=14, fetch_banks=2, weight_fifo=4),
                                      x_words=16384, w_words=1024, p_words=16, y_words=16384, spram="xy")),
    # the 2x4 engine that fits the UP5K: one requantizer lane time-multiplexed over the 4 columns and
    # every product outside the array without `*` (requant_lanes=1, mult_style="lut"), so the 8
    # SB_MAC16 are the 8 PEs; 3 chunk banks keep the cycle formula exact at latency 1
    # (tests/test_engine_lut.py simulates this engine)
    "ice40_fit": dict(target="ice40", device="up5k",
                      config=BufferConfig(EngineConfig(rows=2, cols=4, vec=4, max_h=16, max_w=16, max_pixel_words=4,
                                                       max_kernel=3, max_stride=2, max_pad=1, max_dilation=1,
                                                       max_tiles=4, addr_width=14, fetch_banks=3, weight_fifo=4,
                                                       requant_lanes=1, mult_style="lut"),
                                          x_words=16384, w_words=1024, p_words=16, y_words=16384, spram="xy")),
    # ice40_fit with the requantizer's significand product digit-serial (mult_style="serial", 4 steps of
    # 6 bits: one requantizer beat every 5 cycles, compute-bound for K >= 2*4*5 = 40);
    # tests/test_engine_serial.py simulates this engine
    "ice40_serial": _up5k_serial(),
    # ice40_serial with a 32-bit host bus (BufferConfig.host_width): the 97-bit p words are written and
    # read in 4 pieces, so the host bus (and the I/O harness that models it) is 32 bits wide, not 97
    "ice40_serial_h32": _up5k_serial(host_width=32),
    # ice40_serial_h32 with 2 chunk banks instead of 3 (64 flip-flops and their multiplexers fewer): at
    # the buffers' latency 1 the fetch is then no longer hidden on every layer (EngineConfig.compute_bound)
    "ice40_serial_h32_fb2": _up5k_serial(host_width=32, fetch_banks=2),
    # ice40_serial_h32_fb2 with a 3-word weight FIFO instead of 4 (its flip-flops): the smallest
    # buffering the engine allows; at latency 1 it costs cycles (bench/small_buffers.py)
    "ice40_serial_small": _up5k_serial(host_width=32, fetch_banks=2, weight_fifo=3),
    # ice40_serial_small with at most 2 output-channel tiles per layer (8 output channels) instead of 4:
    # the point that places (tests/test_engine_serial.py SMALL simulates it)
    "ice40_serial_small_t2": _up5k_serial(host_width=32, fetch_banks=2, weight_fifo=3, max_tiles=2),
    # the largest array whose multipliers fit the UP5K's 8 SB_MAC16 with mult_style="dsp" (see synth_engine.md)
    "ice40_1x1": dict(target="ice40", device="up5k",
                      config=BufferConfig(EngineConfig(rows=1, cols=1, vec=4, max_h=32, max_w=32, max_pixel_words=4,
                                                       max_kernel=3, max_stride=2, max_pad=1, max_dilation=1,
                                                       max_tiles=16, addr_width=14, fetch_banks=2, weight_fifo=4),
                                          x_words=16384, w_words=1024, p_words=16, y_words=16384, spram="xy")),
    # 1x1 with every maximum that costs registers cut down: 2 output channels, 16x16x8 inputs,
    # the cheapest rounding (tflite_single), the smallest weight FIFO
    "ice40_1x1_min": dict(target="ice40", device="up5k",
                          config=BufferConfig(EngineConfig(rows=1, cols=1, vec=4, max_h=16, max_w=16,
                                                           max_pixel_words=2, max_kernel=3, max_stride=2, max_pad=1,
                                                           max_dilation=1, max_tiles=2, addr_width=14,
                                                           rounding="tflite_single", fetch_banks=2, weight_fifo=3),
                                              x_words=16384, w_words=1024, p_words=16, y_words=16384, spram="xy")),
}


_LOG_RE = re.compile(r"read (\S+nextpnr\.log)")
_USE_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
# nextpnr pads the clock name when there are several clocks: "for clock    'clk...'"
_FMAX_RE = re.compile(r"^(?:Info|Warning): Max frequency for clock\s+'([^']+)': ([0-9.]+) MHz", re.M)


def _from_log(message: str) -> dict:
    """Utilisation and post-route Fmax read from a nextpnr log that the flow refused to parse,
    clearly marked as such (see the report for why)."""
    m = _LOG_RE.search(message)
    if not m or not Path(m.group(1)).is_file():
        return {}
    log = Path(m.group(1)).read_text(errors="replace")
    use = {n: {"used": int(u), "available": int(a)} for n, u, a in _USE_RE.findall(log)}
    fmax = dict(_FMAX_RE.findall(log))       # the last (post-route) value of each clock wins
    return {"utilisation_from_log": use, "fmax_mhz_from_log": {k: float(v) for k, v in fmax.items()}}


def run_point(name: str, point: dict) -> dict:
    bc = point["config"]
    t0 = time.monotonic()
    text = soc_verilog(EngineWithBuffers(bc), bc.module_name)
    try:
        doc = run_flow(text, bc.module_name, point["target"], block="engine", parameters=bc.to_dict(),
                       device=point["device"], pnr=True)
        doc["status"] = "ok"
    except DoesNotFit as e:
        doc = {"status": "does not fit", "message": str(e), "top": bc.module_name, "target": point["target"],
               "device": point["device"], "parameters": bc.to_dict()}
    except PnrError as e:
        # placed and routed, but the flow did not accept the log (bench/results/synth_engine.md)
        doc = {"status": "flow refused the nextpnr log", "message": str(e), "top": bc.module_name,
               "target": point["target"], "device": point["device"], "parameters": bc.to_dict(), **_from_log(str(e))}
    except SynthError as e:
        # the bare design synthesized (cached), the design in its I/O harness did not
        doc = {"status": "harness synthesis failed", "message": str(e), "top": bc.module_name,
               "target": point["target"], "device": point["device"], "parameters": bc.to_dict()}
    if doc["status"] != "ok":
        syn = synthesize(text, bc.module_name, point["target"])     # cached: the bare design's resources
        doc["resources"] = {k: getattr(syn, k) for k in ("luts", "ffs", "carries", "dsps", "brams", "lutrams")}
        doc["cells"] = dict(sorted(syn.cells.items()))
    doc["seconds"] = round(time.monotonic() - t0, 1)
    doc["buffers_bits"] = bc.bits
    doc["verilog_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    print(f"{name}: {doc['status']} in {doc['seconds']} s", file=sys.stderr)
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(POINTS), help=f"comma-separated points: {', '.join(POINTS)}")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    out = Path(args.out)
    path = out / "synth_engine.json"
    docs = json.loads(path.read_text()) if path.is_file() else {}
    only = args.only.split(",")
    for name in only:
        if name not in POINTS:
            p.error(f"--only: unknown point {name!r} (choose from {', '.join(POINTS)})")
    for name, point in POINTS.items():
        if name in only:
            docs[name] = portable(run_point(name, point))
    atomic_write_text(path, json.dumps(docs, indent=2, default=str) + "\n")
    ok = [d for d in docs.values() if d.get("status") == "ok"]
    print(flow_markdown(ok) if ok else "")
    for d in docs.values():
        if d.get("status") != "ok":
            print(f"- {d['top']} on {d['target']}: {d['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
