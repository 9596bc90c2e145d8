"""One synthesis run of a block, as ``convgen synth <block>`` does it: yosys resources and,
optionally, nextpnr utilisation and post-route Fmax, written as ``report.json`` + ``report.md``.

``run_flow(...)`` returns the report document (a dict, schema ``convgen.synth.flow/1``):

* ``block``, ``parameters`` (the full parameter set), ``top``, ``target``, ``device``;
* ``resources``: luts, ffs, carries, dsps, brams, lutrams of the bare design (yosys,
  rules in ``convgen.synth.yosys``), plus ``area_estimate`` for ``generic``;
* ``cells``: cell counts by type (yosys);
* ``synthesis``: ``mapping`` (the LUT mapper, ``abc9`` by default) and ``fallback`` (None, or
  why yosys needed a fallback script; see ``convgen.synth.yosys``) of the bare design;
* ``pnr``: None without place and route, else the ``PnrReport`` fields (utilisation of the
  design *in its I/O harness*, ``fmax_mhz``, the target given to nextpnr, the critical path,
  ``harness_mapping``/``harness_fallback``: the LUT mapping of the netlist nextpnr placed);
* ``fmax_mhz``: post-route Fmax or None; ``tools``: yosys and nextpnr identities.

In ``out_dir`` the files are written atomically and ``report.json`` last, only when every
step succeeded. A failure removes any older ``report.json``/``report.md`` there, so the
directory never holds numbers that the current run did not produce; the logs of the failed
step (``yosys.log`` or ``nextpnr.log``) are left for reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from convgen.core.fileio import atomic_write_bytes, atomic_write_text
from convgen.core.fields import Field, check_fields
from convgen.core.params import ConfigError, check_choice

from . import pnr as P
from . import yosys as Y

__all__ = ["FLOW_SCHEMA", "FLOW_FIELDS", "run_flow", "flow_markdown", "check_flow_options", "check_target_device"]

FLOW_SCHEMA = "convgen.synth.flow/1"
_RES = ("luts", "ffs", "carries", "dsps", "brams", "lutrams")

# bel types nextpnr reports, for the short "device use" column
_LOGIC_BEL = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}
_DSP_BEL = {"ice40": "ICESTORM_DSP", "ecp5": "MULT18X18D"}


#: the options of one run of the flow, declared once: ``convgen synth <block>`` and
#: ``convgen explore <block>`` take them as ``--target`` ... ``--seed``
FLOW_FIELDS = (
    Field("target", "generic", "generic (technology-independent, with a CMOS transistor estimate), "
                               "ice40 (synth_ice40 -dsp) or ecp5 (synth_ecp5)", choices=Y.TARGETS),
    Field("device", None, "device for place and route: ice40: up5k (default); ecp5: 25k, 45k or 85k "
                          "(default 85k)", kind=str),
    Field("pnr", False, "place and route with nextpnr: device utilisation and post-route Fmax"),
    Field("freq", None, "target frequency for nextpnr in MHz (default ice40 100, ecp5 200; needs --pnr); "
                        "Fmax is reported whatever it is", kind=float, lo=1, hi=2000, metavar="MHZ"),
    Field("seed", 1, "nextpnr placer seed", lo=0, hi=2**31 - 1),
)


def check_flow_options(target: str, device: str | None = None, pnr: bool = False, freq=None, seed: int = 1,
                       *, label=None) -> str | None:
    """Check the options of one flow run together, before any tool runs; returns the device
    (the target's default if None). ``label(name)`` names an option in errors (the CLI passes
    its flags, e.g. ``--freq``)."""
    name = label or (lambda n: n)
    checked = check_fields(FLOW_FIELDS, dict(target=target, device=device, pnr=pnr, freq=freq, seed=seed),
                           label=lambda f: name(f.name))
    target, device, pnr, freq = (checked[k] for k in ("target", "device", "pnr", "freq"))
    if freq is not None and not pnr:
        raise ConfigError(f"{name('freq')} is the target frequency given to nextpnr: it needs {name('pnr')}")
    if target == "generic":
        if pnr:
            raise ConfigError(f"{name('pnr')} needs a device target: {name('target')} must be 'ice40' or "
                              f"'ecp5' for place and route, not 'generic'")
        if device is not None:
            raise ConfigError(f"{name('device')} applies to ice40 (up5k) and ecp5 (25k, 45k, 85k), "
                              f"not to target 'generic'")
        return None
    if device is None:
        return P.DEFAULT_DEVICE[target]
    return check_choice(name("device"), device, tuple(P.DEVICES[target]))


def check_target_device(target: str, device: str | None, pnr: bool) -> str | None:
    """Validate target/device/pnr together; returns the device (default per target)."""
    return check_flow_options(target, device, pnr)


def run_flow(verilog: str, top: str, target: str, *, block: str, parameters: dict,
             device: str | None = None, pnr: bool = False, out_dir=None, freq_mhz=None,
             seed: int = 1, cache_dir=None) -> dict:
    device = check_flow_options(target, device, pnr, freq_mhz, seed)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for n in ("report.json", "report.md"):
            (out / n).unlink(missing_ok=True)
    if pnr:
        P.nextpnr_command(target)  # a missing or too old nextpnr fails before any work
    syn = Y.synthesize(verilog, top, target, cache_dir=cache_dir)
    src = Path(syn.log_path).parent
    if out is not None:
        atomic_write_text(out / "design.v", verilog)
        for n in ("yosys.log", "synth.ys"):
            if (src / n).is_file():
                atomic_write_bytes(out / n, (src / n).read_bytes())
    pr = None
    if pnr:
        pr = P.place_and_route(verilog, top, target, device, freq_mhz=freq_mhz, seed=seed,
                               cache_dir=cache_dir, keep_dir=out)
    doc = {
        "schema": FLOW_SCHEMA,
        "block": block,
        "parameters": parameters,
        "top": top,
        "target": target,
        "device": device,
        "device_name": P.DEVICES[target][device][1] if device else None,
        "resources": {**{k: getattr(syn, k) for k in _RES},
                      "area_estimate": syn.area_estimate,
                      "area_is_lower_bound": syn.area_is_lower_bound},
        "cells": dict(sorted(syn.cells.items())),
        "synthesis": {"mapping": syn.mapping, "fallback": syn.fallback},
        "fmax_mhz": None if pr is None else pr.fmax_mhz,
        "pnr": None if pr is None else {**pr.to_dict(), "meets_constraint": pr.meets_constraint},
        "tools": {
            "yosys": {"version": syn.yosys_version,
                      **{k: v for k, v in Y.yosys_identity().items() if k != "command"}},
            "nextpnr": None if pr is None else {
                "version": pr.nextpnr_version,
                **{k: v for k, v in P.nextpnr_identity(target).items() if k != "command"}},
        },
    }
    if out is not None:
        doc["files"] = {"yosys_log": "yosys.log", "nextpnr_log": "nextpnr.log" if pr else None}
        atomic_write_text(out / "report.md", flow_markdown([doc]))
        atomic_write_text(out / "report.json", json.dumps(doc, indent=2, default=str) + "\n")
    return doc


def _use(doc: dict, kind: dict) -> str:
    pr = doc.get("pnr")
    if not pr:
        return "-"
    u = pr["utilisation"].get(kind[doc["target"]])
    if not u:
        return "0"
    return f"{u['used']}/{u['available']}"


def fallback_notes(docs) -> list[str]:
    """One line per synthesis in ``docs`` that needed a fallback script (bare design or the
    harness nextpnr placed): which LUT mapping it got and why."""
    notes = []
    for d in docs:
        s = d.get("synthesis") or {}
        if s.get("fallback"):
            notes.append(f"`{d['top']}` (bare design): LUT mapping `{s['mapping']}`, a fallback: {s['fallback']}.")
        pr = d.get("pnr") or {}
        if pr.get("harness_fallback"):
            notes.append(f"`{d['top']}_pnr` (the harness nextpnr placed): LUT mapping `{pr['harness_mapping']}`, "
                         f"a fallback: {pr['harness_fallback']}; the placed LUTs and the Fmax are of that mapping.")
    return notes


def flow_markdown(docs) -> str:
    """A Markdown table with one row per flow report."""
    docs = list(docs)
    with_pnr = any(d.get("pnr") for d in docs)
    head = ["top", "target", "LUTs", "FFs", "carries", "DSPs", "BRAMs"]
    if with_pnr:
        head += ["device", "Fmax (MHz)", "placed logic cells", "placed DSPs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in docs:
        r = d["resources"]
        row = [f"`{d['top']}`", d["target"],
               *Y.technology_cells(d["target"], [r["luts"], r["ffs"], r["carries"], r["dsps"], r["brams"]])]
        if with_pnr:
            f = d.get("fmax_mhz")
            row += [d.get("device_name") or "-", "-" if f is None else f"{f:.1f}",
                    _use(d, _LOGIC_BEL), _use(d, _DSP_BEL)]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    tools = sorted({d["tools"]["yosys"]["version"] for d in docs})
    tools += sorted({d["tools"]["nextpnr"]["version"] for d in docs if d["tools"].get("nextpnr")})
    lines += ["", f"Tools: {', '.join(tools)}."]
    if with_pnr:
        lines.append("LUTs/FFs/DSPs: yosys, bare design. Placed cells: nextpnr, design plus its "
                     "3-pin I/O harness (see docs/synth.md).")
    lines += fallback_notes(docs)
    return "\n".join(lines) + "\n"
