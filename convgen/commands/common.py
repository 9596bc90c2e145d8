"""What every verb of the command line shares: errors, input files, options from declarations,
and the block registry that makes ``generate``, ``run`` and ``synth`` verbs from one entry.

The dependency is one way: ``convgen.cli`` imports ``convgen.commands``, never the reverse.

**Options from declarations.** A block's configuration fields are declared once
(``convgen.core.fields``); :func:`add_fields` turns each into an option (``acc_width`` ->
``--acc-width``, help with range and default) and :func:`read_fields` reads them back, parsed
and checked, with errors naming the flag: ``--acc-width must be an integer in 16..64, not 8``.

**Block registry.** A module in ``convgen/commands/`` that defines ``BLOCK = Block(...)`` gets,
with no other code:

- ``convgen generate <block> [config options] [block options] --out DIR``;
- ``convgen synth <block> [config options] [block options] --target --device --pnr --freq --seed --out``;
- one ``convgen run <job>`` per :class:`Run` in ``BLOCK.runs``, with the run's own options, the
  config options (minus those the run sets itself), ``--sim``, ``--waves FILE`` (the run's
  waveform, its format per simulator from ``Run.waves``) and ``--quiet`` (no progress display,
  :mod:`convgen.commands.progress`).

Every option is checked before any file is read or any tool runs; a bad value exits with
status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convgen.core.fields import Field, fields_of
from convgen.sim.build import WAVES_FORMAT
from convgen.sim.tools import SIMULATORS

__all__ = ["EXIT_USAGE", "EXIT_TOOL", "EXIT_INTERRUPTED", "CLIError", "load_matrix", "check_output_file",
           "check_output_dir", "keep_directory", "SIM_FIELD", "QUIET", "waves_field", "check_waves", "steps_for",
           "waves_written",
           "add_fields", "allowed_text", "read_fields", "name_flags", "remember_flags", "Block", "Run", "add_block_verbs"]

EXIT_USAGE = 2
EXIT_TOOL = 3
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user mistake reported as one line (status 2 unless given)."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


def load_matrix(path: str, name: str) -> np.ndarray:
    """The array in the .npy file given to ``--name``; CLIError naming the flag otherwise."""
    flag = f"--{name}"
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise CLIError(f"{flag}: no such file: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"{flag}: {path} is a directory, not a .npy file") from None
    except OSError as e:
        raise CLIError(f"{flag}: cannot read {path} ({e.strerror})") from None
    if magic.startswith(b"PK"):
        raise CLIError(f"{flag}: {path} must hold a single array (.npy), not an archive")
    if magic != b"\x93NUMPY":
        raise CLIError(f"{flag}: {path} is not a NumPy .npy file (it does not start with the .npy header)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise CLIError(f"{flag}: {path} holds Python objects, not numbers (object arrays are not read)") from None
        raise CLIError(f"{flag}: {path} is not a valid NumPy .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise CLIError(f"{flag}: {path} is not a valid NumPy .npy file ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise CLIError(f"{flag}: {path} must hold a single array (.npy), not an archive")
    return arr


# ---- output paths: checked before any work ------------------------------------------------------
def _check_writable(directory: str, flag: str) -> None:
    """``directory`` accepts new files. ``os.access`` first; then a real probe (a hidden file
    created and removed at once, as the atomic writer will create its temporary file there),
    because ``os.access`` says yes to root on a read-only directory and on sysfs."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CLIError(f"{flag}: the directory {directory} is not writable")
    try:
        fd, probe = tempfile.mkstemp(prefix=".convgen-probe-", dir=directory)
    except OSError as e:
        raise CLIError(f"{flag}: the directory {directory} is not writable ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str, flag: str = "--out", example: str = "y.npy") -> None:
    """``path`` (an output file option) can be written, checked before any work: not a
    directory or a device, its directory exists and is writable. A symlink is written through,
    so its target is checked. CLIError naming ``flag`` otherwise."""
    real = os.path.realpath(path)
    if os.path.isdir(real):
        raise CLIError(f"{flag}: {path} is a directory; give a file name such as {os.path.join(path, example)}")
    if os.path.exists(real) and not os.path.isfile(real):
        raise CLIError(f"{flag}: {path} exists and is not a regular file")
    parent = os.path.dirname(real)
    if not os.path.exists(parent):
        raise CLIError(f"{flag}: the directory {parent} does not exist")
    if not os.path.isdir(parent):
        raise CLIError(f"{flag}: {parent} is not a directory")
    _check_writable(parent, flag)


def check_output_dir(path: str, flag: str = "--out") -> None:
    """``path`` (an output directory option) is a directory or can be created as one (missing
    parents too), and new files can be written into it; checked before any work."""
    real = os.path.realpath(path)
    if os.path.exists(real) and not os.path.isdir(real):
        raise CLIError(f"{flag}: {path} exists and is not a directory")
    existing = real
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CLIError(f"{flag}: {existing} is not a directory")
    _check_writable(existing, flag)


def keep_directory(args, prefix: str) -> str | None:
    """With ``--keep``: a new temporary folder for the run (named on stderr), which the run
    writes into and never deletes. Without: None, and the run uses a temporary folder it
    deletes on success, on a bad input and on Ctrl-C (kept only when the simulation itself
    failed, since the error names the log inside it)."""
    if not getattr(args, "keep", False):
        return None
    path = tempfile.mkdtemp(prefix=prefix)
    print(f"convgen: keeping the run folder {path}", file=sys.stderr, flush=True)
    return path


SIM_FIELD = Field("sim", "verilator", "simulator", choices=SIMULATORS)
#: ``--quiet`` of every run verb
QUIET = Field("quiet", False, "no progress display or messages on stderr (errors still go there; stdout keeps its "
                              "one JSON line)")
#: the waveform format a cocotb-driven run writes, per simulator
COCOTB_WAVES = WAVES_FORMAT


def waves_field(formats: dict[str, str]) -> Field:
    """``--waves FILE`` of a run verb whose simulators write ``formats`` (simulator -> "fst" or
    "vcd")."""
    if len(set(formats.values())) == 1:
        what = f"{next(iter(formats.values())).upper()} on both simulators"
    else:
        what = ", ".join(f"{fmt.upper()} from {'Icarus' if sim == 'icarus' else sim.capitalize()}"
                         for sim, fmt in formats.items())
    return Field("waves", None, f"write the run's waveform (every signal of the design) to FILE, {what}; the path "
                                f"goes in the JSON and on stderr. The run then uses a tracing build (cached separately) and "
                                f"simulates slower, and the file grows with the simulated cycles (a 2x2 engine: about "
                                f"3 kB per cycle as VCD, a tenth of that as FST), so use it on small inputs",
                 kind=str, metavar="FILE")


def check_waves(path: str, fmt: str, sim: str, out: str | None = None) -> None:
    """``--waves`` can be written (:func:`check_output_file`), is not ``--out``, and a
    ``.vcd``/``.fst`` suffix matches ``fmt``, the format ``sim`` writes; CLIError naming
    ``--waves`` otherwise. Checked before any work."""
    check_output_file(path, "--waves", f"waves.{fmt}")
    if out is not None and os.path.realpath(path) == os.path.realpath(out):
        raise CLIError(f"--waves: {path} is also --out; give the waveform its own file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".vcd", ".fst") and suffix != f".{fmt}":
        raise CLIError(f"--waves: {sim} writes {fmt.upper()} here; name the file {os.path.splitext(path)[0]}.{fmt}, "
                       f"not {path}")


def steps_for(args):
    """The progress display of a run verb (:class:`convgen.commands.progress.Steps`):
    ``--quiet`` silences it, ``--progress`` (run gemm) adds the simulation's progress lines
    when stderr is not a terminal."""
    from .progress import Steps

    return Steps(quiet=getattr(args, "quiet", False), details=getattr(args, "progress", False))


def waves_written(steps, args, formats: dict[str, str]) -> dict:
    """After a run with ``--waves``: name the file on stderr and return the JSON fields
    (``waves``, ``waves_format``); ``{}`` without ``--waves``."""
    if getattr(args, "waves", None) is None:
        return {}
    fmt = formats[args.sim]
    steps.message(f"waveform ({fmt.upper()}) written to {args.waves}")
    return {"waves": args.waves, "waves_format": fmt}


#: ``--keep`` of every run verb
KEEP = Field("keep", False, "keep the run's temporary folder (stimulus, simulator log, results); its path is "
                            "printed on stderr")


# ---- options from field declarations ----------------------------------------------------------
def allowed_text(f: Field) -> str:
    """The allowed values for a help text, or "" when the help already lists the choices."""
    if f.choices and all(str(c) in f.help for c in f.choices):
        return ""
    return ("one of " if f.choices else "") + f.allowed()


def _help(f: Field) -> str:
    default = f.default
    notes = [allowed_text(f)]
    if default is not None and not f.required:
        notes.append(f"default {default}")
    notes = [n for n in notes if n]
    text = f.help + (f" ({', '.join(notes)})" if notes else "")
    return text.replace("%", "%%")


def add_fields(p, fields: Iterable[Field]) -> None:
    """One option per field (two for a bool with two spellings). Values stay text here;
    :func:`read_fields` parses and checks them, so that every error is one line naming the
    flag."""
    for f in fields:
        default = f.default
        if f.kind is bool:
            flags = f.cli_flags
            g = p.add_mutually_exclusive_group() if len(flags) == 2 else p
            if len(flags) == 2:
                g.add_argument(flags[0], dest=f.name, action="store_true", default=default,
                               help=(f.help + (" (default)" if default else "")).replace("%", "%%"))
                g.add_argument(flags[1], dest=f.name, action="store_false",
                               help=f"the opposite of {flags[0]}" + ("" if default else " (default)"))
            else:
                g.add_argument(flags[0], dest=f.name, action="store_false" if default else "store_true",
                               default=default, help=f.help.replace("%", "%%"))
            continue
        flags = tuple(f.cli_flags)
        if f.name == "out" and "-o" not in flags:
            flags += ("-o",)          # every --out has the short alias
        p.add_argument(*flags, dest=f.name, default=default, required=f.required,
                       metavar=f.metavar or f.name.upper(), help=_help(f))


def read_fields(args, fields: Iterable[Field]) -> dict:
    """The fields' values from parsed ``args``: parsed, checked in declaration order (bounds
    that depend on earlier fields included), ConfigError naming the flag otherwise."""
    done: dict[str, Any] = {}
    for f in fields:
        done[f.name] = f.check(f.parse(getattr(args, f.name)), done, label=f.flag)
    return done


_LEADING_NAME = re.compile(r"^(\w+)( must | needs | applies )")


def name_flags(message: str, flags: dict[str, str]) -> str:
    """A library error names a parameter (``zero_point must be ...``); the user typed a flag:
    name that (``--zero-point must be ...``) when the parameter is one of the verb's options."""
    m = _LEADING_NAME.match(message)
    if m and m.group(1) in flags:
        return flags[m.group(1)] + message[len(m.group(1)):]
    return message


def remember_flags(p: argparse.ArgumentParser) -> None:
    """Record dest -> flag of every option of ``p``, for :func:`name_flags` (``main`` applies
    it to the verb's errors)."""
    flags: dict[str, str] = {}
    for a in p._actions:
        long = [o for o in a.option_strings if o.startswith("--")]
        if long and a.dest != "help":
            flags.setdefault(a.dest, long[0])
    p.set_defaults(_flags=flags)


# ---- the block registry -------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """``convgen run <name>``: a computation on the block's RTL.

    ``func(args, cfg) -> int`` gets the parsed arguments and the checked configuration (built
    before any input is read). ``options``: the run's own inputs, declared like config fields
    (files, a layer), listed before the config options. ``exclude``: config fields the run sets
    itself (``fixed`` gives their values). ``waves``: the waveform format (``fst``, ``vcd``)
    each simulator writes for ``--waves`` (default: what a cocotb-driven run writes); the
    option is checked before ``func`` runs, and ``func`` copies the waveform to
    ``args.waves``.
    """

    name: str
    help: str
    func: Callable[[argparse.Namespace, Any], int]
    options: tuple[Field, ...] = ()
    exclude: tuple[str, ...] = ()
    fixed: dict | None = None
    waves: dict | None = None

    @property
    def waves_formats(self) -> dict:
        return self.waves or COCOTB_WAVES

    @property
    def shared_fields(self) -> tuple[Field, ...]:
        """The options every run verb has, after its own and the config's."""
        return (SIM_FIELD, waves_field(self.waves_formats), QUIET)


@dataclass(frozen=True)
class Block:
    """One registry entry: a block's verbs.

    ``config``: its configuration class (fields declared with ``convgen.core.fields.param``).
    ``component(cfg, opts) -> (component, module name)``: what ``synth`` synthesizes.
    ``generate(cfg, out_dir, opts) -> dict``: writes ``<module>.v`` and ``<module>.json`` (the
    block's ``sim.<block>.generate``) and returns the summary printed as JSON. ``options``:
    choices of generate and synth that are not config fields (Winograd ``--kind``); ``opts``
    holds their checked values. ``verilog(component, name) -> str``: the text ``synth``
    synthesizes (default ``hdl.generate.to_verilog``). ``check(cfg, opts, flow, flags)``: extra
    checks of option combinations, run before any tool (``flags`` maps names to flags).
    """

    name: str
    help: str
    config: type
    component: Callable[[Any, dict], tuple[Any, str]]
    generate: Callable[[Any, Any, dict], dict]
    runs: tuple[Run, ...] = ()
    options: tuple[Field, ...] = ()
    verilog: Callable[[Any, str], str] | None = None
    check: Callable[[Any, dict, dict, dict], None] | None = None

    @property
    def fields(self) -> tuple[Field, ...]:
        return fields_of(self.config)


OUT_GENERATE = Field("out", None, "output directory for <module>.v and <module>.json", kind=str, required=True,
                     flags=("--out", "-o", "--output"), metavar="DIR")
OUT_SYNTH = Field("out", None, "directory for report.json, report.md, design.v and the tool logs (default: none)",
                  kind=str, metavar="DIR")


def _read(args, fields) -> dict:
    """:func:`read_fields`, and the checked values replace the text in ``args``."""
    values = read_fields(args, fields)
    vars(args).update(values)
    return values


def _config(block: Block, args, exclude=(), fixed=None):
    values = _read(args, [f for f in block.fields if f.name not in exclude])
    return block.config(**values, **(fixed or {}))


def _generate(block: Block, args) -> int:
    cfg = _config(block, args)
    opts = _read(args, block.options)
    check_output_dir(args.out, "--out")
    summary = block.generate(cfg, args.out, opts)
    # the readable port table on stderr; stdout stays one JSON line for scripts
    from convgen.hdl.manifest import port_table

    with open(summary["manifest"]) as f:
        print(port_table(json.load(f)), file=sys.stderr, end="")
    print(json.dumps(summary, default=str))
    return 0


def _synth(block: Block, args) -> int:
    from convgen.hdl.generate import to_verilog
    from convgen.synth.flow import FLOW_FIELDS, check_flow_options, flow_markdown, run_flow

    cfg = _config(block, args)
    opts = _read(args, block.options)
    flow = _read(args, FLOW_FIELDS)
    flags = {f.name: f.flag for f in FLOW_FIELDS}
    check_flow_options(**flow, label=flags.get)  # every option, before any work
    if args.out is not None:
        check_output_dir(args.out, "--out")
    if block.check is not None:
        block.check(cfg, opts, flow, getattr(args, "_flags", {}))
    component, top = block.component(cfg, opts)
    text = (block.verilog or to_verilog)(component, top)
    doc = run_flow(text, top, flow["target"], block=block.name,
                   parameters={**cfg.to_dict(), **opts}, device=flow["device"], pnr=flow["pnr"],
                   out_dir=args.out, freq_mhz=flow["freq"], seed=flow["seed"])
    print(flow_markdown([doc]))
    return 0


def _run(block: Block, run: Run, args) -> int:
    cfg = _config(block, args, run.exclude, run.fixed)
    _read(args, (*run.shared_fields, *run.options))
    if args.waves is not None:
        check_waves(args.waves, run.waves_formats[args.sim], args.sim, getattr(args, "out", None))
    return run.func(args, cfg)


def add_block_verbs(verbs: dict, block: Block) -> None:
    """Add ``generate <block>``, ``synth <block>`` and the block's ``run`` jobs."""
    g = verbs["generate"].add_parser(block.name, help=block.help, description=block.help)
    add_fields(g, block.fields)
    add_fields(g, block.options)
    add_fields(g, (OUT_GENERATE,))
    g.set_defaults(func=lambda args, b=block: _generate(b, args))
    remember_flags(g)

    from convgen.synth.flow import FLOW_FIELDS

    s = verbs["synth"].add_parser(block.name, help=block.help, description=block.help)
    add_fields(s, block.fields)
    add_fields(s, block.options)
    add_fields(s, (*FLOW_FIELDS, OUT_SYNTH))
    s.set_defaults(func=lambda args, b=block: _synth(b, args))
    remember_flags(s)

    for run in block.runs:
        r = verbs["run"].add_parser(run.name, help=run.help, description=run.help)
        add_fields(r, run.options)
        add_fields(r, [f for f in block.fields if f.name not in run.exclude])
        add_fields(r, run.shared_fields)
        r.set_defaults(func=lambda args, b=block, j=run: _run(b, j, args))
        remember_flags(r)
