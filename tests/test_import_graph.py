"""The package graph points one way: core <- {hdl, golden} <- sim <- {tb, synth, CLI, bench}.

Every import of every module is checked, including imports inside functions and module names
written in strings (``"convgen.tb.im2col.cocotb_im2col"`` handed to a simulator is an import
too). docs/architecture.md explains the layers and why.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: folder -> layer name; the CLI layer is everything under convgen/ that is not a sub-package
FOLDERS = {"core": "core", "hdl": "hdl", "golden": "golden", "sim": "sim", "synth": "synth", "tb": "tb",
           "convgen": "cli", "bench": "bench", "formal": "formal", "examples": "examples"}
SUBPACKAGES = {"core", "hdl", "golden", "sim", "synth", "tb"}

#: which convgen layers each layer may import (itself included)
ALLOWED = {
    "core": {"core"},
    "hdl": {"core", "hdl"},
    "golden": {"core", "golden"},
    "sim": {"core", "hdl", "golden", "sim"},
    "synth": {"core", "hdl", "golden", "sim", "synth"},
    "tb": {"core", "hdl", "golden", "sim", "tb"},
    "cli": {"core", "hdl", "golden", "sim", "synth", "cli"},
    "bench": {"core", "hdl", "golden", "sim", "synth", "cli", "bench"},
    "formal": {"core", "hdl", "golden", "sim", "synth", "formal"},
    "examples": {"core", "hdl", "golden", "sim", "synth", "cli"},
}
#: third-party packages a layer must not import: core and golden stay free of Amaranth
FORBIDDEN_THIRD_PARTY = {"core": {"amaranth", "cocotb"}, "golden": {"amaranth", "cocotb"}}

MODULE_IN_STRING = re.compile(r"^convgen(\.\w+)+$")


def layer_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "convgen":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "cli"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] == "convgen":
        return ".".join(parts)
    if parts[0] in SUBPACKAGES:
        return ".".join(["convgen"] + parts)
    return ".".join(parts)


def imports_of(source: str, this_module: str, is_package: bool):
    """(line, imported module) for every import statement and module-path string."""
    tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = this_module.split(".")
                base = base if is_package else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.append((node.lineno, mod))
            # `from convgen import sim` imports the sub-package convgen.sim
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if mod == "convgen"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_IN_STRING.match(node.value):
            out.append((node.lineno, node.value))
    return out


def violations(path: Path, source: str | None = None) -> list[str]:
    layer = FOLDERS[path.relative_to(ROOT).parts[0]]
    source = path.read_text() if source is None else source
    found = []
    for line, mod in imports_of(source, module_name(path), path.name == "__init__.py"):
        if mod == "convgen":
            continue  # the namespace package itself (only __version__)
        target = layer_of_module(mod)
        if target is not None and target not in ALLOWED[layer]:
            found.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {mod} ({target})")
        top = mod.split(".")[0]
        if top in FORBIDDEN_THIRD_PARTY.get(layer, ()):
            found.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {mod}")
    return found


def all_modules():
    for folder in FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_the_graph_has_no_wrong_way_edge():
    found = [v for p in all_modules() for v in violations(p)]
    assert not found, "wrong-way imports:\n" + "\n".join(found)


def test_every_folder_is_checked():
    assert sum(1 for _ in all_modules()) > 60
    tops = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".") and not p.name.endswith(".egg-info")}
    assert tops - set(FOLDERS) <= {"docs", "tests"}, tops - set(FOLDERS)


@pytest.mark.parametrize("folder, source, needle", [
    ("hdl", "def f():\n    from convgen.golden.gemm import gemm\n", "hdl imports convgen.golden.gemm"),
    ("hdl", "from convgen import __version__\nfrom convgen.cli import main\n", "hdl imports convgen.cli"),
    ("golden", "import amaranth\n", "golden imports amaranth"),
    ("golden", "from convgen.hdl.shapes import shape_of\n", "(hdl)"),
    ("sim", 'RUN = "convgen.tb.im2col.cocotb_im2col"\n', "sim imports convgen.tb.im2col.cocotb_im2col"),
    ("core", "from ..hdl import shapes\n", "core imports convgen.hdl"),
    ("synth", "from convgen import sim, tb\n", "synth imports convgen.tb"),
])
def test_the_checker_catches_injected_edges(folder, source, needle):
    fake = ROOT / folder / "injected.py"
    assert any(needle in v for v in violations(fake, source)), violations(fake, source)
