"""Where convgen caches simulator builds and synthesis runs."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$CONVGEN_CACHE``, else ``$XDG_CACHE_HOME/convgen``, else ``~/.cache/convgen``."""
    root = os.environ.get("CONVGEN_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "convgen"
