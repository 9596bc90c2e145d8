"""Where convgen caches simulator builds and synthesis runs."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "portable"]


def cache_root() -> Path:
    """``$CONVGEN_CACHE``, else ``$XDG_CACHE_HOME/convgen``, else ``~/.cache/convgen``."""
    root = os.environ.get("CONVGEN_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "convgen"


def portable(obj, root=None):
    """A copy of ``obj`` (dicts, lists and strings, recursively) fit to commit or share: a path
    inside the cache ``root`` (default :func:`cache_root`) is written ``$CONVGEN_CACHE/...``,
    any other absolute path is reduced to its file name, and a message that names the cache
    has it replaced by ``$CONVGEN_CACHE``. Other values are returned as they are."""
    root = str(cache_root() if root is None else root)
    if isinstance(obj, dict):
        return {k: portable(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, root) for v in obj]
    if isinstance(obj, str) and obj.startswith("/") and not obj.startswith(root):
        return Path(obj).name
    if isinstance(obj, str):
        return obj.replace(root, "$CONVGEN_CACHE")
    return obj
