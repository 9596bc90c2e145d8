"""Atomic file output: a generated file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_directory", "run_with_private_tmpdir"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and
    ``os.replace`` it into place, so readers never see a partial file.

    A symlink at ``path`` is written through: its target is replaced (atomically, through a
    temporary file in the target's directory) and the link stays. An existing file keeps its
    permissions. A directory, device or other non-regular file at ``path`` is never replaced
    (OSError naming it)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise OSError(errno.EEXIST, "exists and is not a regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if st is not None:
            mode = stat.S_IMODE(st.st_mode)
        else:  # mkstemp creates 0600 files; give the result the usual permissions (umask applied)
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Populate a directory all-or-nothing.

    Yields a temporary sibling directory. On success its files are moved into ``path``
    (created if needed): files they replace are first set aside, and if any move fails every
    moved file is removed and every replaced file restored, so ``path`` is left exactly as it
    was. On an exception inside the block nothing in ``path`` changes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        moved: list[Path] = []
        saved: list[tuple[Path, Path]] = []
        try:
            for item in sorted(tmp.iterdir()):
                target = path / item.name
                if target.is_dir() and not target.is_symlink():
                    raise IsADirectoryError(f"cannot write {target}: it is a directory")
                if target.exists():
                    backup = tmp / f".old.{item.name}"
                    os.replace(target, backup)
                    saved.append((backup, target))
                os.replace(item, target)
                moved.append(target)
        except BaseException:
            for target in moved:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
            for backup, target in saved:
                os.replace(backup, target)
            if created:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_with_private_tmpdir(cmd: list[str], cwd: str | os.PathLike,
                            timeout: float | None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd)`` in ``cwd`` (output captured as text, no stdin) with ``TMPDIR`` set to
    a fresh directory inside ``cwd``, removed when the tool has ended, however it ended.

    The pinned yowasp tools (yosys, nextpnr) make a ``yowasp_*`` directory in the temporary
    directory for every run and remove it only when they exit normally: a run killed by its
    timeout (``subprocess.run`` kills the child) or by a signal left it in ``/tmp``. With the
    private directory, whatever the tool leaves goes with it."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cwd))
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(tmp)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
