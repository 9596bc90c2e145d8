"""Parameter checking shared by every block.

Every error names the parameter and its allowed range, so that a bad value is reported
before anything is elaborated or written to disk.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ConfigError", "check_int", "check_choice", "check_bool"]


class ConfigError(ValueError):
    """A block or run parameter is outside its allowed range."""


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``lo..hi`` (inclusive), else raise ConfigError."""
    if lo is not None and hi is not None:
        allowed = f"an integer in {lo}..{hi}"
    elif lo is not None:
        allowed = f"an integer >= {lo}"
    elif hi is not None:
        allowed = f"an integer <= {hi}"
    else:
        allowed = "an integer"
    if isinstance(value, bool) or not isinstance(value, int):
        # numpy integers are fine; floats, strings and bools are not
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise ConfigError(f"{name} must be {allowed}, not {value!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be {allowed}, not {value!r}")
    return int(value)


def check_choice(name: str, value, choices: Iterable):
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name} must be one of {allowed}, not {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, not {value!r}")
    return value
