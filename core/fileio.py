"""Atomic file output: a generated file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_directory"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and
    ``os.replace`` it into place, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the result the usual permissions (umask applied)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
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
