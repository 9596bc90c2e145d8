"""No path of the machine that produced a file is committed (home directories, the checkout,
temporary build folders): bench results record build folders by name, relative to the cache."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# written in pieces, so that this file itself holds no such path and needs no exception
MACHINE_PATH = re.compile("(" + "|".join([
    "/" + "root/",                                  # root's home
    "/" + r"home/[A-Za-z0-9_.-]+/",                 # a user's home
    "/" + r"work/main\b",                          # this checkout
    "/" + r"tmp/convgen-[A-Za-z0-9_]+-[a-z0-9_]{6,}",   # a run's temporary folder
]) + ")")


def test_no_machine_paths_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".json", ".csv", ".txt", ".toml", ".sh", ".cfg", ".yml", ".yaml",
                               ".log") or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{name}:{i}: {line.strip()[:120]}")
    assert not found, "machine paths committed:\n" + "\n".join(found[:20])
