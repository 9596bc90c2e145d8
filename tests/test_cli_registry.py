"""The block registry of the command line: every block's verbs exist with the options its
declaration gives, every bad value is one line naming the flag with status 2 before any
work, every option has help, and the CLI's modules import one way."""

import argparse
import ast
from pathlib import Path

import pytest

from convgen.cli import build_parser, main
from convgen.commands import block_command_modules
from convgen.commands.common import Block
from convgen.synth.flow import FLOW_FIELDS

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = [m.BLOCK for m in block_command_modules() if isinstance(getattr(m, "BLOCK", None), Block)]
BLOCK_NAMES = [b.name for b in BLOCKS]


def _sub(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(parser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings}


def _verbs(block: Block):
    """(verb path, fields of the config the verb takes)"""
    yield ("generate", block.name), block.fields
    yield ("synth", block.name), block.fields
    for run in block.runs:
        yield ("run", run.name), [f for f in block.fields if f.name not in run.exclude]


def _all_parsers(parser, path=()):
    yield path, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _all_parsers(sub, path + (name,))


# ---- the verbs exist, with the declared options ----------------------------------------------
def test_every_block_is_registered():
    assert {"systolic", "requant", "im2col", "winograd"} <= set(BLOCK_NAMES)
    runs = {r.name for b in BLOCKS for r in b.runs}
    assert {"gemm", "requant", "im2col", "winograd-conv"} <= runs


@pytest.mark.parametrize("block", BLOCKS, ids=BLOCK_NAMES)
def test_verbs_have_the_declared_options(block):
    parser = build_parser()
    for path, fields in _verbs(block):
        opts = _options(_sub(parser, *path))
        for f in fields:
            for flag in f.cli_flags:
                assert flag in opts, (path, flag)
                assert opts[flag].dest == f.name
            if f.kind is not bool:
                assert opts[f.flag].default == f.default, (path, f.name)
        if path[0] == "synth":  # every block: the whole flow, not only the systolic array
            for f in FLOW_FIELDS:
                assert f.flag in opts, (path, f.flag)
            assert "--out" in opts
        if path[0] == "generate":
            assert {"--out", "-o", "--output"} <= set(opts)
            for f in block.options:
                assert f.flag in opts
        if path[0] == "run":
            assert "--sim" in opts


def test_generate_out_spellings(tmp_path):
    parser = build_parser()
    for spelling in ("--out", "-o", "--output"):
        args = parser.parse_args(["generate", "requant", spelling, str(tmp_path)])
        assert args.out == str(tmp_path)


def test_help_lists_every_option_with_help_text():
    missing = []
    for path, parser in _all_parsers(build_parser()):
        for a in parser._actions:
            if a.option_strings and (not a.help or a.help == argparse.SUPPRESS):
                missing.append(f"{' '.join(path)} {a.option_strings[0]}")
        text = parser.format_help()  # every help string formats (no stray %)
        for a in parser._actions:
            for o in a.option_strings:
                assert o in text, (path, o)
    assert not missing, missing


@pytest.mark.parametrize("block", BLOCKS, ids=BLOCK_NAMES)
def test_help_shows_range_and_default(block, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", block.name, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in block.fields:
        if f.kind is int and not callable(f.lo):
            assert f"{f.lo}..{f.hi}" in text, f.name
        if f.kind is not bool:
            assert f"default {f.default}" in text, f.name


# ---- bad values: one line naming the flag, status 2, nothing done -----------------------------
def _bad_values(f):
    """(text, what the message says) for values the declaration rejects."""
    if f.kind is bool:
        return []
    if f.choices:
        return [("bogus", "must be one of")]
    if f.kind is str:
        return []  # free text (e.g. engine --spram letters): checked by its block, tested there
    out = [("x1", "must be an integer")]
    lo, hi = f.bounds()
    if lo is not None:
        out.append((str(lo - 1), f"{lo}..{hi}" if hi is not None else f">= {lo}"))
    elif callable(f.lo):
        out.append(("1", f"..{hi}"))  # below any product width
    if hi is not None:
        out.append((str(hi + 1), f"..{hi}"))
    return out


def _cases():
    for block in BLOCKS:
        for path, fields in _verbs(block):
            for f in (*fields, *(block.options if path[0] != "run" else ())):
                for text, says in _bad_values(f):
                    yield pytest.param(block, path, f, text, says, id=f"{'-'.join(path)}-{f.name}={text}")


def _required(block, path, tmp_path):
    """Arguments a verb needs besides the one under test (files that do not exist: the
    configuration is checked before any file is read)."""
    if path[0] == "generate":
        return ["--out", str(tmp_path / "out")]
    if path[0] == "synth":
        return ["--out", str(tmp_path / "out")]
    run = next(r for r in block.runs if r.name == path[1])
    args = []
    for f in run.options:
        if f.required:
            args += [f.flag, "7" if f.kind is int else str(tmp_path / f"{f.name}.npy")]
    return args


@pytest.fixture()
def no_tools(monkeypatch):
    from convgen.synth import yosys as Y
    from convgen.sim import build as B

    monkeypatch.setattr(Y, "_run_yosys", lambda *a, **k: pytest.fail("yosys must not run"))
    monkeypatch.setattr(B, "build", lambda *a, **k: pytest.fail("no simulation build may start"))


@pytest.mark.parametrize("block, path, field, text, says", list(_cases()))
def test_bad_value_names_the_flag(block, path, field, text, says, tmp_path, capsys, no_tools):
    argv = [*path, *_required(block, path, tmp_path), field.flag, text]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, err
    assert err.startswith(f"convgen: error: {field.flag} ") and says in err, err
    assert len(err.strip().splitlines()) == 1 and out == "", err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("block", BLOCKS, ids=BLOCK_NAMES)
@pytest.mark.parametrize("argv, needle", [
    (["--freq", "-5", "--target", "ice40", "--pnr"], "--freq must be a number in 1..2000, not -5.0"),
    (["--freq", "fast", "--target", "ice40", "--pnr"], "--freq must be a number in 1..2000, not 'fast'"),
    (["--freq", "100"], "--freq is the target frequency given to nextpnr: it needs --pnr"),
    (["--target", "xilinx"], "--target must be one of 'generic', 'ice40', 'ecp5', not 'xilinx'"),
    (["--target", "generic", "--pnr"], "--pnr needs a device target"),
    (["--target", "generic", "--device", "25k"], "--device applies to ice40"),
    (["--target", "ice40", "--device", "85k"], "--device must be one of 'up5k', not '85k'"),
    (["--target", "ice40", "--pnr", "--seed", "-1"], "--seed must be an integer in 0..2147483647, not -1"),
])
def test_synth_flow_options_checked_before_yosys(block, argv, needle, tmp_path, capsys, no_tools):
    out = tmp_path / "out"
    assert main(["synth", block.name, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_explore_bad_values_name_the_flag(capsys, monkeypatch):
    from convgen.synth import explore as E

    monkeypatch.setattr(E, "_run_point", lambda *a, **k: pytest.fail("no tool may run"))
    for argv, needle in [(["systolic", "--rows", "0"], "--rows must be an integer in 1..64, not 0"),
                         (["systolic", "--rows", "2,x"], "--rows must be an integer in 1..64, not 'x'"),
                         (["systolic", "--acc-width", "8"], "--acc-width must be an integer in 16..64, not 8"),
                         (["requant", "--rounding", "tflite,floor"], "--rounding must be one of"),
                         (["conv3x3", "--engine", "fft"], "--engine must be one of 'winograd', 'direct'"),
                         (["im2col", "--max-c", ","], "--max-c needs at least one value"),
                         (["systolic", "--jobs", "0"], "--jobs must be an integer >= 1, not 0"),
                         (["systolic", "--freq", "50"], "--freq is the target frequency given to nextpnr"),
                         (["systolic", "--target", "vivado"], "--target must be one of")]:
        assert main(["explore", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("convgen: error: ") and needle in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


def test_argparse_mistakes_are_one_line(capsys):
    for argv in (["generate", "systolic", "--bogus", "1", "-o", "x"], ["generate", "nope"],
                 ["run", "gemm", "--rows", "2"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("convgen: error: ") and len(err.strip().splitlines()) == 1, err


def test_demo_checks_every_option_first(tmp_path, capsys, no_tools):
    out = tmp_path / "demo"
    for argv, needle in [(["--sim", "modelsim"], "--sim must be one of 'icarus', 'verilator'"),
                         (["--targets", "generic,xilinx"], "--targets must be one of"),
                         (["--rows", "0"], "--rows must be an integer in 1..64, not 0")]:
        assert main(["demo", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


# ---- one-way imports -------------------------------------------------------------------------
def test_commands_never_import_the_cli():
    """convgen.cli imports convgen.commands; a command module importing convgen.cli back
    would close a loop (the shared helpers live in convgen.commands.common)."""
    found = []
    for path in sorted((ROOT / "convgen" / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = ["." * node.level + (node.module or "")]
                if node.module == "convgen" or (node.level == 2 and not node.module):
                    mods += [f"{mods[0]}.{a.name}" for a in node.names]
            for m in mods:
                if m in ("convgen.cli", "..cli") or m.startswith(("convgen.cli.", "..cli.")):
                    found.append(f"{path.name}:{node.lineno} imports {m}")
    assert not found, found
