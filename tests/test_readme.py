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
