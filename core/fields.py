"""Declared parameters: every field of a block's configuration is written once.

A configuration is a frozen dataclass whose fields are declared with :func:`param`::

    @dataclass(frozen=True)
    class SystolicConfig(Config):
        rows: int = param(8, "array rows", lo=1, hi=MAX_DIM)
        dataflow: str = param("os", "os (output-stationary) or ws (weight-stationary)",
                              choices=DATAFLOWS)

The declaration (name, default, allowed range or choices, help) drives everything that
needs it:

- :class:`Config` checks every field in ``__post_init__`` (``ConfigError`` naming the field
  and its range, the messages of :mod:`convgen.core.params`) and stores plain ints;
- the command line (``convgen generate|run|synth|explore``) builds its options, their help
  and their checks from :func:`fields_of`, and names the flag (``--acc-width``) in errors;
- the design-space exploration (``convgen.synth.explore``) takes types, help and defaults
  from it.

A bound may depend on earlier fields: ``lo`` or ``hi`` is then a function of the dict of
the fields checked so far (declaration order), and ``lo_text`` says in words what it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .params import ConfigError, check_bool, check_choice, check_int

__all__ = ["Field", "param", "fields_of", "check_fields", "Config"]

_METADATA_KEY = "declaration"  # dataclass field metadata key


@dataclasses.dataclass(frozen=True)
class Field:
    """One declared parameter.

    ``kind`` is ``int``, ``float``, ``bool`` or ``str``; by default the type of ``default``
    (``str`` with ``choices``). ``default=None`` makes the parameter optional unless
    ``required``. ``flags`` are the command-line spellings; by default ``--name-with-dashes``.
    A bool has one flag that sets True when its default is False (``--pipeline-operands``),
    else two, the first setting True and the second False (by default ``--pipeline-product``
    and ``--no-pipeline-product``; ``flags=("--a-signed", "--a-unsigned")``).
    """

    name: str
    default: Any
    help: str
    lo: Any = None
    hi: Any = None
    choices: tuple = ()
    kind: type | None = None
    lo_text: str | None = None
    flags: tuple[str, ...] = ()
    required: bool = False
    metavar: str | None = None

    def __post_init__(self):
        if self.kind is None:
            kind = str if self.choices else type(self.default)
            if kind not in (int, float, bool, str):
                raise TypeError(f"field {self.name}: give kind= (int, float, bool or str)")
            object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "choices", tuple(self.choices))

    # -- spelling on the command line --------------------------------------------------------
    @property
    def flag(self) -> str:
        """The main command-line spelling (the one error messages use)."""
        return self.cli_flags[0]

    @property
    def cli_flags(self) -> tuple[str, ...]:
        if self.flags:
            return self.flags
        dashed = self.name.replace("_", "-")
        if self.kind is bool and self.default is True:
            return (f"--{dashed}", f"--no-{dashed}")
        return (f"--{dashed}",)

    # -- allowed values -----------------------------------------------------------------------
    def bounds(self, values: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """(lo, hi) given the fields checked before this one; a bound that depends on them
        is None when ``values`` is None (unknown)."""
        def one(b):
            if callable(b):
                return None if values is None else b(values)
            return b
        return one(self.lo), one(self.hi)

    def allowed(self) -> str:
        """The allowed values in words, for help texts: ``1..64``, ``os, ws``."""
        if self.kind is bool:
            return ""
        if self.choices:
            return ", ".join(map(str, self.choices))
        lo = self.lo_text if callable(self.lo) else self.lo
        hi = "?" if callable(self.hi) else self.hi
        if lo is not None and hi is not None:
            return f"{lo}..{hi}" if not callable(self.lo) else f"{lo} to {hi}"
        if lo is not None:
            return f">= {lo}"
        if hi is not None:
            return f"<= {hi}"
        return ""

    def parse(self, text):
        """Command-line text -> value of the field's kind; text that does not parse is
        returned unchanged, so that :meth:`check` reports it with the allowed range."""
        if not isinstance(text, str) or self.kind is str:
            return text
        if self.kind is bool:
            return _BOOL_WORDS.get(text.strip().lower(), text)
        try:
            return int(text, 10) if self.kind is int else float(text) if self.kind is float else text
        except ValueError:
            return text

    def check(self, value, values: Mapping[str, Any] | None = None, *, label: str | None = None):
        """``value`` as the field stores it, or ConfigError naming ``label`` (default: the
        field's name) and the allowed values. ``values``: the fields checked before this one,
        for bounds that depend on them (without it such a bound is not checked)."""
        label = label or self.name
        if value is None and self.default is None and not self.required:
            return None
        if self.kind is bool:
            return check_bool(label, value)
        if self.choices:
            return check_choice(label, value, self.choices)
        lo, hi = self.bounds(values)
        if self.kind is int:
            return check_int(label, value, lo, hi)
        if self.kind is float:
            return _check_number(label, value, lo, hi)
        if not isinstance(value, str):
            raise ConfigError(f"{label} must be a string, not {value!r}")
        return value


#: command-line spellings of a bool value (``convgen explore systolic --pipeline-operands false,true``)
_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
               "on": True, "off": False}


def _check_number(name: str, value, lo, hi) -> float:
    allowed = ("a number" + (f" in {lo}..{hi}" if lo is not None and hi is not None
                             else f" >= {lo}" if lo is not None else f" <= {hi}" if hi is not None else ""))
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be {allowed}, not {value!r}")
    return float(value)


def param(default, help: str, **kw):
    """A dataclass field with its declaration (see :class:`Field` for the keywords)."""
    return dataclasses.field(default=default, metadata={_METADATA_KEY: dict(help=help, **kw)})


@lru_cache(maxsize=None)
def fields_of(cls) -> tuple[Field, ...]:
    """The declared fields of a configuration class, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_METADATA_KEY)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with convgen.core.fields.param")
        out.append(Field(name=f.name, default=f.default, **spec))
    return tuple(out)


def check_fields(fields, values: Mapping[str, Any], *, label=None) -> dict:
    """Check ``values`` field by field in declaration order; returns the checked values.
    ``label(field)`` names a field in errors (default: its name). Fields missing from
    ``values`` are skipped, and so are bounds that depend on them."""
    done: dict[str, Any] = {}
    partial = False
    for f in fields:
        if f.name not in values:
            partial = True
            continue
        done[f.name] = f.check(values[f.name], None if partial else done,
                               label=label(f) if label else None)
    return done


class Config:
    """Base of a block's frozen configuration dataclass: checks every declared field on
    construction and stores it as checked (plain ints, not numpy integers)."""

    def __post_init__(self):
        names = [f.name for f in fields_of(type(self))]
        checked = check_fields(fields_of(type(self)), {n: getattr(self, n) for n in names})
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def fields(cls) -> tuple[Field, ...]:
        return fields_of(cls)
