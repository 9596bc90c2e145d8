"""Design-space exploration: sweep a block's main parameters through the synthesis flow.

A block becomes explorable by adding an :class:`Explorable` to ``EXPLORABLE`` with
:func:`register_explorable` (the systolic array is registered below): the parameters a sweep
may vary, how to build ``(verilog, top, parameters)`` from one point, and the peak MACs (or
other operations) per cycle of that point. ``convgen explore <block>`` gets one
comma-separated option per parameter from it, so a new block needs no CLI code.

``explore(block, grid, target, ...)`` runs every point of the grid (the Cartesian product of
the value lists) in parallel worker processes and returns one row per point:
the point's parameters, ``macs_per_cycle``, the yosys resources, and with ``pnr`` the
post-route ``fmax_mhz`` and ``gmacs = macs_per_cycle * fmax_mhz / 1000``. A point that fails
(does not fit the device, a tool error) gets ``status`` "does not fit" / "failed" and its
message in ``error``; its numbers stay empty, never partial.

``pareto(rows)`` keeps the points that no other point beats in both area (LUTs, then DSPs)
and throughput (GMAC/s with place and route, else peak MACs/cycle).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

from convgen.core.params import ConfigError
from convgen.core.quant import ROUNDINGS

__all__ = ["Explorable", "EXPLORABLE", "register_explorable", "expand_grid", "explore",
           "pareto", "rows_to_csv", "plot", "CSV_FIELDS"]


@dataclass(frozen=True)
class Explorable:
    """How to sweep one block.

    ``params``: parameter name -> (type: int or str, default values, help text).
    ``build(point) -> (verilog, top, full parameter dict)`` (runs in a worker process; must be
    a module-level function). ``macs_per_cycle(point) -> int``: peak operations per cycle.
    ``series``: parameters that name a curve in the plot (the others are the x axis).
    """

    name: str
    params: dict[str, tuple[type, tuple, str]]
    build: Callable[[dict], tuple[str, str, dict]]
    macs_per_cycle: Callable[[dict], int]
    series: tuple[str, ...] = ()
    unit: str = "MAC"


EXPLORABLE: dict[str, Explorable] = {}


def register_explorable(spec: Explorable) -> Explorable:
    EXPLORABLE[spec.name] = spec
    return spec


# ---- the systolic array -------------------------------------------------------------------
def _systolic_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.systolic import SystolicArray, SystolicConfig

    cfg = SystolicConfig(**point)
    return to_verilog(SystolicArray(cfg), cfg.module_name), cfg.module_name, cfg.to_dict()


def _systolic_macs(point: dict) -> int:
    return int(point["rows"]) * int(point["cols"])


register_explorable(Explorable(
    name="systolic",
    params={
        "rows": (int, (2, 4, 8), "array rows"),
        "cols": (int, (), "array columns (default: the same as rows, point by point)"),
        "dataflow": (str, ("os", "ws"), "os and/or ws"),
        "acc_width": (int, (32,), "accumulator bits"),
    },
    build=_systolic_build,
    macs_per_cycle=_systolic_macs,
    series=("dataflow", "acc_width"),
))


# ---- the requantizer: lanes x rounding mode ------------------------------------------------
def _requant_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.requant import RequantConfig, Requantizer

    cfg = RequantConfig(**point)
    return to_verilog(Requantizer(cfg), cfg.module_name), cfg.module_name, cfg.to_dict()


def _requant_values(point: dict) -> int:
    return int(point["lanes"])


register_explorable(Explorable(
    name="requant",
    params={
        "lanes": (int, (1, 2, 4), "values per cycle"),
        "rounding": (str, ROUNDINGS, "rounding modes"),
        "groups": (int, (1,), "parameter-memory entries (channel groups)"),
    },
    build=_requant_build,
    macs_per_cycle=_requant_values,
    series=("rounding",),
    unit="value",
))


# ---- the im2col address generator: tile rows x layer maxima ----------------------------------
def _im2col_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.im2col import Im2colAddressGenerator, Im2colConfig

    cfg = Im2colConfig(**point, max_w=point["max_h"])
    return to_verilog(Im2colAddressGenerator(cfg), cfg.module_name), cfg.module_name, cfg.to_dict()


def _one_per_cycle(point: dict) -> int:
    return 1


register_explorable(Explorable(
    name="im2col",
    params={
        "max_c": (int, (64, 512), "largest channel count"),
        "max_h": (int, (64, 224), "largest input height (and width)"),
        "tile_rows": (int, (8,), "systolic array rows served"),
    },
    build=_im2col_build,
    macs_per_cycle=_one_per_cycle,
    series=("max_c",),
    unit="address",
))


# ---- Winograd F(2x2,3x3) against the direct 3x3 engine of equal throughput ---------------------
def _conv3x3_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.winograd import BLOCKS, WinogradConfig
    from convgen.hdl.winograd_direct import DirectConv3x3

    point = dict(point)
    engine = point.pop("engine")
    cfg = WinogradConfig(**point)
    if engine == "winograd":
        component, name = BLOCKS["conv3x3"](cfg), cfg.module_name("conv3x3")
    else:
        component, name = DirectConv3x3(cfg), cfg.module_name(DirectConv3x3.KIND)
    return to_verilog(component, name), name, {"engine": engine, **cfg.to_dict()}


def _conv3x3_macs(point: dict) -> int:
    """One beat per cycle = one input channel of a 2x2 output tile: 36 direct-equivalent MACs."""
    return 36


register_explorable(Explorable(
    name="conv3x3",
    params={
        "engine": (str, ("winograd", "direct"), "winograd and/or direct"),
        "data_width": (int, (8,), "activation bits"),
        "weight_width": (int, (8,), "weight bits"),
    },
    build=_conv3x3_build,
    macs_per_cycle=_conv3x3_macs,
    series=("engine",),
))


# ---- the sweep ----------------------------------------------------------------------------
def expand_grid(spec: Explorable, values: dict[str, list]) -> list[dict]:
    """All points of the grid. A parameter given no values takes its defaults; the
    systolic ``cols`` with no values follows ``rows`` (square arrays)."""
    names = list(spec.params)
    lists = []
    for n in names:
        v = list(values.get(n) or spec.params[n][1])
        lists.append(v if v else [None])
    points = []
    for combo in itertools.product(*lists):
        p = dict(zip(names, combo))
        if spec.name == "systolic" and p.get("cols") is None:
            p["cols"] = p["rows"]
        p = {k: v for k, v in p.items() if v is not None}
        if p not in points:
            points.append(p)
    return points


CSV_FIELDS = ["status", "macs_per_cycle", "luts", "ffs", "carries", "dsps", "brams", "lutrams",
              "device", "fmax_mhz", "gmacs", "placed_logic", "placed_dsps", "top", "error"]


def _run_point(block: str, point: dict, target: str, device, pnr: bool, freq, seed: int,
               cache_dir) -> dict:
    from convgen.synth import pnr as P
    from convgen.synth.flow import run_flow
    from convgen.synth.yosys import SynthError

    spec = EXPLORABLE[block]
    t0 = time.monotonic()
    row = {**point, "status": "ok", "macs_per_cycle": spec.macs_per_cycle(point)}
    try:
        verilog, top, params = spec.build(point)
        row["top"] = top
        doc = run_flow(verilog, top, target, block=block, parameters=params, device=device,
                       pnr=pnr, freq_mhz=freq, seed=seed, cache_dir=cache_dir)
    except P.DoesNotFit as e:
        row.update(status="does not fit", error=str(e))
    except (SynthError, ConfigError) as e:
        row.update(status="failed", error=str(e))
    else:
        row.update(doc["resources"])
        row.pop("area_is_lower_bound", None)
        row["device"] = doc["device_name"] or ""
        if doc["pnr"]:
            f = doc["fmax_mhz"]
            row["fmax_mhz"] = None if f is None else round(f, 2)
            row["gmacs"] = None if f is None else round(row["macs_per_cycle"] * f / 1000, 3)
            u = doc["pnr"]["utilisation"]
            logic = u.get("ICESTORM_LC") or u.get("TRELLIS_COMB")
            dsp = u.get("ICESTORM_DSP") or u.get("MULT18X18D")
            row["placed_logic"] = f"{logic['used']}/{logic['available']}" if logic else ""
            row["placed_dsps"] = f"{dsp['used']}/{dsp['available']}" if dsp else ""
    row["seconds"] = round(time.monotonic() - t0, 1)
    return row


def _label(spec: Explorable, row: dict) -> str:
    return " ".join(f"{k}={row[k]}" for k in spec.params if k in row)


def explore(block: str, values: dict[str, list], target: str, *, device=None, pnr=False,
            jobs: int = 1, freq=None, seed: int = 1, cache_dir=None, progress=True) -> list[dict]:
    from convgen.synth.flow import check_target_device

    if block not in EXPLORABLE:
        raise ConfigError(f"block must be one of {', '.join(map(repr, EXPLORABLE))}, not {block!r}")
    device = check_target_device(target, device, pnr)
    spec = EXPLORABLE[block]
    points = expand_grid(spec, values)
    for p in points:  # check every point before any tool runs
        _check_point(spec, p)
    if progress is True:
        progress = sys.stderr
    rows: list[dict | None] = [None] * len(points)
    t0 = time.monotonic()
    done = 0

    def report(i, row):
        nonlocal done
        done += 1
        rows[i] = row
        if progress is not None:
            bar = "#" * (20 * done // len(points))
            what = (f"{row['luts']} LUTs, {row['dsps']} DSPs"
                    + (f", {row['fmax_mhz']} MHz" if row.get("fmax_mhz") is not None else "")
                    if row["status"] == "ok" else row["status"])
            print(f"[{bar:<20}] {done}/{len(points)} {_label(spec, row)}: {what} "
                  f"({row['seconds']} s, {time.monotonic() - t0:.0f} s total)", file=progress, flush=True)

    if jobs <= 1 or len(points) == 1:
        for i, p in enumerate(points):
            report(i, _run_point(block, p, target, device, pnr, freq, seed, cache_dir))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            futs = {ex.submit(_run_point, block, p, target, device, pnr, freq, seed, cache_dir): i
                    for i, p in enumerate(points)}
            for f in as_completed(futs):
                report(futs[f], f.result())
    return [r for r in rows if r is not None]


def _check_point(spec: Explorable, point: dict) -> None:
    if spec.name == "systolic":
        from convgen.hdl.systolic import SystolicConfig

        SystolicConfig(**point)  # raises ConfigError naming the parameter


def throughput(row: dict) -> float | None:
    return row.get("gmacs") if row.get("gmacs") is not None else None


def pareto(rows: list[dict]) -> list[dict]:
    """Points not dominated in (LUTs, DSPs) vs throughput (GMAC/s if every ok point has
    one, else MACs/cycle)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    use_g = bool(ok) and all(r.get("gmacs") is not None for r in ok)
    key = (lambda r: r["gmacs"]) if use_g else (lambda r: r["macs_per_cycle"])

    def dominates(a, b):
        ge = a["luts"] <= b["luts"] and a["dsps"] <= b["dsps"] and key(a) >= key(b)
        gt = a["luts"] < b["luts"] or a["dsps"] < b["dsps"] or key(a) > key(b)
        return ge and gt

    front = [r for r in ok if not any(dominates(o, r) for o in ok if o is not r)]
    return sorted(front, key=lambda r: (key(r), -r["luts"]))


def rows_to_csv(spec: Explorable, rows: list[dict]) -> str:
    fields = list(spec.params) + CSV_FIELDS + ["area_estimate", "seconds"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue()


def plot(spec: Explorable, rows: list[dict], path, title: str) -> None:
    """PNG: LUTs, DSPs, Fmax and GMAC/s against peak MACs/cycle, one curve per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    groups: dict[str, list[dict]] = {}
    for r in ok:
        name = ", ".join(f"{k}={r[k]}" for k in spec.series if k in r) or spec.name
        groups.setdefault(name, []).append(r)
    panels = [("luts", "LUTs"), ("dsps", "DSP blocks"), ("fmax_mhz", "post-route Fmax (MHz)"),
              ("gmacs", f"G{spec.unit}/s = {spec.unit}s/cycle x Fmax")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (key, label) in zip(axes.flat, panels):
        any_data = False
        for name, rs in sorted(groups.items()):
            pts = sorted((r["macs_per_cycle"], r[key]) for r in rs if r.get(key) is not None)
            if pts:
                any_data = True
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel(f"peak {spec.unit}s/cycle")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        if not any_data:
            ax.text(0.5, 0.5, "needs --pnr" if key in ("fmax_mhz", "gmacs") else "no data",
                    ha="center", va="center", transform=ax.transAxes)
        elif key == "luts" and all(r.get(key) for r in ok):
            ax.set_yscale("log")
        if any_data:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
