"""Design-space exploration: sweep a block's main parameters through the synthesis flow.

A block becomes explorable by adding an :class:`Explorable` to ``EXPLORABLE`` with
:func:`register_explorable` (every block is registered below): its configuration class, which
of its declared fields a sweep may vary and the values swept by default, how to build
``(verilog, top, parameters)`` from one point, and the peak MACs (or other operations) per
cycle of that point. Types, help texts, ranges and defaults come from the configuration's
field declarations (``convgen.core.fields``), not from here. ``convgen explore <block>`` gets
one comma-separated option per swept parameter from it, so a new block needs no CLI code.

``explore(block, grid, target, ...)`` runs every point of the grid (the Cartesian product of
the value lists) in parallel worker processes and returns one row per point:
the point's parameters, ``macs_per_cycle``, the yosys resources, and with ``pnr`` the
post-route ``fmax_mhz`` and ``gmacs = macs_per_cycle * fmax_mhz / 1000``. A point that fails
(does not fit the device, a tool error) gets ``status`` "does not fit" / "failed" and its
message in ``error``; its numbers stay empty, never partial. Every point is checked before any
tool runs: a value its parameter's declaration does not allow is an error, naming the parameter;
a combination of allowed values that is no configuration (``dsp=ecp5`` with ``dataflow=ws``) is
left out and reported, so that a cross product of options can be swept.

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

from convgen.core.cache import portable
from convgen.core.fields import Field, check_fields, fields_of
from convgen.core.params import ConfigError
from convgen.hdl.im2col import Im2colConfig
from convgen.hdl.requant import RequantConfig
from convgen.hdl.systolic import SystolicConfig
from convgen.hdl.winograd import WinogradConfig

__all__ = ["Explorable", "EXPLORABLE", "DEFAULT", "CHOICES", "register_explorable", "expand_grid", "explore",
           "pareto", "rows_to_csv", "plot", "CSV_FIELDS"]


#: sweep values meaning "the field's declared default" / "every declared choice"
DEFAULT = "default"
CHOICES = "choices"


@dataclass(frozen=True)
class Explorable:
    """How to sweep one block.

    ``config``: the block's configuration class; its declared fields (``convgen.core.fields``)
    give each swept parameter's type, help and allowed range. ``sweep``: parameter -> values
    swept when none are given: a tuple, :data:`DEFAULT` (the field's default), :data:`CHOICES`
    (every choice), or ``()`` with ``follows`` (``cols`` follows ``rows``, point by point).
    ``extra``: swept parameters that are not fields of ``config`` (``engine``), declared as
    :class:`~convgen.core.fields.Field`. ``notes``: how the sweep treats a parameter, added to
    its help. ``build(point) -> (verilog, top, full parameter dict)`` (runs in a worker
    process; must be a module-level function). ``macs_per_cycle(point) -> int``: peak
    operations per cycle. ``series``: parameters that name a curve in the plot.
    ``target_of(point)``: the only synthesis target the point can be built for (vendor
    primitives), or None for any.
    """

    name: str
    config: type
    sweep: dict[str, object]
    build: Callable[[dict], tuple[str, str, dict]]
    macs_per_cycle: Callable[[dict], int]
    series: tuple[str, ...] = ()
    unit: str = "MAC"
    extra: tuple[Field, ...] = ()
    follows: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    target_of: Callable[[dict], str | None] | None = None

    @property
    def params(self) -> dict[str, Field]:
        """Swept parameter -> its declaration, in sweep order."""
        declared = {f.name: f for f in (*fields_of(self.config), *self.extra)}
        unknown = set(self.sweep) - set(declared)
        if unknown:
            raise TypeError(f"explorable {self.name}: {sorted(unknown)} not declared by "
                            f"{self.config.__name__} or extra")
        return {n: declared[n] for n in self.sweep}

    def defaults(self, name: str) -> tuple:
        """The values swept for ``name`` when none are given (``()``: follows another)."""
        v, f = self.sweep[name], self.params[name]
        return (f.default,) if v == DEFAULT else f.choices if v == CHOICES else tuple(v)

    def help(self, name: str) -> str:
        f = self.params[name]
        return f.help + (f"; {self.notes[name]}" if name in self.notes else "")

    def check(self, point: dict) -> None:
        """ConfigError naming the parameter unless ``point`` is a valid configuration."""
        self.check_values(point)
        self.config(**self._config_part(point))

    def check_values(self, point: dict) -> None:
        """ConfigError naming the parameter unless each value of ``point`` is allowed by its
        declaration on its own (a value out of range, a choice that does not exist)."""
        extra = {f.name for f in self.extra}
        check_fields(self.extra, {k: v for k, v in point.items() if k in extra})
        check_fields(fields_of(self.config), self._config_part(point))

    def combination_error(self, point: dict, target: str | None = None) -> str | None:
        """Why ``point``, whose values are each allowed, is not a valid configuration (a rule
        between parameters, such as ``dsp=ecp5`` needing ``dataflow=os``) or cannot be built for
        ``target`` (``dsp=ecp5`` on ice40); None if it is fine."""
        try:
            self.config(**self._config_part(point))
        except ConfigError as e:
            return str(e)
        only = self.target_of(point) if self.target_of and target is not None else None
        if only is not None and only != target:
            return f"its vendor primitives need --target {only}, not {target}"
        return None

    def _config_part(self, point: dict) -> dict:
        extra = {f.name for f in self.extra}
        return {k: v for k, v in point.items() if k not in extra}


EXPLORABLE: dict[str, Explorable] = {}


def register_explorable(spec: Explorable) -> Explorable:
    spec.params  # every swept name is declared
    EXPLORABLE[spec.name] = spec
    return spec


# ---- the systolic array -------------------------------------------------------------------
def _systolic_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.systolic import SystolicArray

    cfg = SystolicConfig(**point)
    return to_verilog(SystolicArray(cfg), cfg.module_name), cfg.module_name, cfg.to_dict()


def _systolic_macs(point: dict) -> int:
    return int(point["rows"]) * int(point["cols"])


def _systolic_target(point: dict) -> str | None:
    """dsp=ecp5 (MULT18X18D) and dsp=ice40 (SB_MAC16) instantiate that target's primitives."""
    return point.get("dsp") if point.get("dsp") in ("ecp5", "ice40") else None


register_explorable(Explorable(
    name="systolic",
    config=SystolicConfig,
    sweep={"rows": (2, 4, 8), "cols": (), "dataflow": CHOICES, "acc_width": DEFAULT, "dsp": DEFAULT,
           "pipeline_operands": DEFAULT, "pipeline_mult": DEFAULT},
    follows={"cols": "rows"},
    notes={"cols": "default: the same as rows, point by point"},
    build=_systolic_build,
    macs_per_cycle=_systolic_macs,
    series=("dataflow", "acc_width", "dsp", "pipeline_operands", "pipeline_mult"),
    target_of=_systolic_target,
))


# ---- the requantizer: lanes x rounding mode ------------------------------------------------
def _requant_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.requant import Requantizer

    cfg = RequantConfig(**point)
    return to_verilog(Requantizer(cfg), cfg.module_name), cfg.module_name, cfg.to_dict()


def _requant_values(point: dict) -> int:
    return int(point["lanes"])


register_explorable(Explorable(
    name="requant",
    config=RequantConfig,
    sweep={"lanes": (1, 2, 4), "rounding": CHOICES, "groups": (1,)},
    build=_requant_build,
    macs_per_cycle=_requant_values,
    series=("rounding",),
    unit="value",
))


# ---- the im2col address generator: tile rows x layer maxima ----------------------------------
def _im2col_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.im2col import Im2colAddressGenerator

    cfg = Im2colConfig(**point, max_w=point["max_h"])
    return to_verilog(Im2colAddressGenerator(cfg), cfg.module_name), cfg.module_name, cfg.to_dict()


def _one_per_cycle(point: dict) -> int:
    return 1


register_explorable(Explorable(
    name="im2col",
    config=Im2colConfig,
    sweep={"max_c": (64, 512), "max_h": (64, 224), "tile_rows": DEFAULT},
    notes={"max_h": "max_w follows it"},
    build=_im2col_build,
    macs_per_cycle=_one_per_cycle,
    series=("max_c",),
    unit="address",
))


# ---- Winograd F(2x2,3x3) against the direct 3x3 engine of equal throughput ---------------------
def _conv3x3_build(point: dict):
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.winograd import BLOCKS
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
    config=WinogradConfig,
    extra=(Field("engine", "winograd", "3x3 convolution engine: Winograd F(2x2,3x3) or the direct "
                                       "engine of equal throughput", choices=("winograd", "direct")),),
    sweep={"engine": CHOICES, "data_width": DEFAULT, "weight_width": DEFAULT},
    build=_conv3x3_build,
    macs_per_cycle=_conv3x3_macs,
    series=("engine",),
))


# ---- the sweep ----------------------------------------------------------------------------
def expand_grid(spec: Explorable, values: dict[str, list]) -> list[dict]:
    """All points of the grid. A parameter given no values takes its sweep defaults; one
    that ``follows`` another takes its value point by point (systolic ``cols`` = ``rows``)."""
    names = list(spec.params)
    lists = []
    for n in names:
        v = list(values.get(n) or spec.defaults(n))
        lists.append(v if v else [None])
    points = []
    for combo in itertools.product(*lists):
        p = dict(zip(names, combo))
        for follower, leader in spec.follows.items():
            if p.get(follower) is None:
                p[follower] = p[leader]
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
        row.update(status="does not fit", error=portable(str(e), cache_dir))
    except (SynthError, ConfigError) as e:
        row.update(status="failed", error=portable(str(e), cache_dir))
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
    from convgen.synth.flow import check_flow_options

    if block not in EXPLORABLE:
        raise ConfigError(f"block must be one of {', '.join(map(repr, EXPLORABLE))}, not {block!r}")
    device = check_flow_options(target, device, pnr, freq, seed)
    spec = EXPLORABLE[block]
    points = expand_grid(spec, values)
    # every point is checked before any tool runs: a value its declaration does not allow is an
    # error; a combination of allowed values that is not a configuration (dsp=ecp5 with
    # dataflow=ws) is left out of the sweep and reported, unless no point is left
    for p in points:
        spec.check_values(p)
    if progress is True:
        progress = sys.stderr
    invalid = [(p, why) for p in points if (why := spec.combination_error(p, target)) is not None]
    if len(invalid) == len(points):
        # the first point's own message first, so that the command line names its flag
        raise ConfigError(f"{invalid[0][1]} (no point of the sweep is a valid {block} configuration; the first: "
                          f"{_label(spec, invalid[0][0])})")
    for p, why in invalid:
        if progress is not None:
            print(f"skipped {_label(spec, p)}: {why}", file=progress, flush=True)
    points = [p for p in points if all(p is not q for q, _ in invalid)]
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
    # a curve per combination of the series parameters that take more than one value here
    varying = [k for k in spec.series if len({r.get(k) for r in ok}) > 1]
    groups: dict[str, list[dict]] = {}
    for r in ok:
        name = ", ".join(f"{k}={r[k]}" for k in varying if k in r) or spec.name
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
