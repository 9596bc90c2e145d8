"""A compiler-output cache for Verilator's runtime objects, used as verilated.mk's ``OBJCACHE``.

Every Verilator build compiles the same runtime sources (``verilated.cpp``, ``verilated_vpi.cpp``,
``verilated_threads.cpp``, ``verilated_dpi.cpp``, cocotb's ``verilator.cpp``) next to the model:
on a 4x4 systolic array that is about 25 of the build's 31 CPU seconds, repeated for every
configuration. verilated.mk runs each compile as ``$(OBJCACHE) $(CXX) ... -c -o X.o SRC``; with
``OBJCACHE`` set to this script, a compile of a source outside the build directory is looked up
by a hash of its whole command line, the compiler's version and the preprocessed source (so a
changed header, define or model header that ``verilator.cpp`` includes is a different entry, as
in ccache's preprocessor mode). A hit copies the object and its ``-MMD`` dependency file; a miss
compiles and stores both. The model's own sources (in the build directory) always compile.

Standard library only: it runs once per object, before any convgen import would pay off.
Usage (what :func:`convgen.sim.tools.simulator_env` puts in ``OBJCACHE``)::

    CONVGEN_OBJCACHE_DIR=DIR python objcache.py c++ FLAGS... -c -o X.o SRC.cpp
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_SUFFIXES = (".cpp", ".cc", ".cxx", ".c")


def _cacheable(cmd: list[str]) -> tuple[str, str] | None:
    """(object, source) of a ``-c -o OBJ SRC`` compile of a source outside the current
    directory; None for anything else."""
    if "-c" not in cmd or "-o" not in cmd:
        return None
    i = cmd.index("-o")
    if i + 1 >= len(cmd):
        return None
    sources = [a for a in cmd[1:] if a.endswith(SOURCE_SUFFIXES) and not a.startswith("-")]
    if len(sources) != 1:
        return None
    src = Path(sources[0])
    if not src.is_absolute() or src.parent == Path.cwd():
        return None
    return cmd[i + 1], sources[0]


def _key(cmd: list[str]) -> str | None:
    pre = [a for a in cmd if a not in ("-MMD", "-MD")]
    i = pre.index("-o")
    del pre[i:i + 2]
    p = subprocess.run([*pre, "-E"], capture_output=True)
    if p.returncode != 0:
        return None
    v = subprocess.run([cmd[0], "--version"], capture_output=True)
    h = hashlib.sha256()
    for part in ("\0".join(cmd).encode(), v.stdout, p.stdout):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:32]


def _store(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(src.read_bytes())
    os.replace(tmp, dst)


def main(cmd: list[str]) -> int:
    root = os.environ.get("CONVGEN_OBJCACHE_DIR")
    target = _cacheable(cmd) if root else None
    key = _key(cmd) if target else None
    if key is None:
        return subprocess.run(cmd).returncode
    obj = Path(target[0])
    dep = obj.with_suffix(".d")
    cache = Path(root)
    cached_obj, cached_dep = cache / f"{key}.o", cache / f"{key}.d"
    if cached_obj.is_file():
        _store(cached_obj, obj)
        if cached_dep.is_file():
            _store(cached_dep, dep)
        return 0
    rc = subprocess.run(cmd).returncode
    if rc == 0 and obj.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        if dep.is_file():
            _store(dep, cached_dep)
        _store(obj, cached_obj)      # last: its presence means the entry is complete
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
