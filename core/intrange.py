"""Exact integer ranges, used to derive every datapath width from the parameters.

A width is never guessed: each block describes the range of values a signal can take and
asks for the smallest two's complement (or unsigned) width that holds it. golden/ and sim/
use the same ranges (for operand checks and overflow limits), so the rule lives in one place.
This module is plain Python; :mod:`convgen.hdl.shapes` turns a range into an Amaranth
``Shape`` and back.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IntRange"]


@dataclass(frozen=True)
class IntRange:
    lo: int
    hi: int

    def __post_init__(self):
        if self.lo > self.hi:
            raise ValueError(f"empty range {self.lo}..{self.hi}")

    @classmethod
    def of_operand(cls, width: int, is_signed: bool) -> "IntRange":
        """The values of a ``width``-bit two's complement (or unsigned) operand."""
        if is_signed:
            return cls(-(1 << (width - 1)), (1 << (width - 1)) - 1)
        return cls(0, (1 << width) - 1)

    def __mul__(self, other: "IntRange") -> "IntRange":
        corners = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return IntRange(min(corners), max(corners))

    def __add__(self, other: "IntRange") -> "IntRange":
        return IntRange(self.lo + other.lo, self.hi + other.hi)

    def scale(self, n: int) -> "IntRange":
        """The range of a sum of ``n`` values each in this range (n >= 0)."""
        return IntRange(self.lo * n, self.hi * n)

    def __contains__(self, value: int) -> bool:
        return self.lo <= value <= self.hi

    @property
    def is_signed(self) -> bool:
        return self.lo < 0

    @property
    def width(self) -> int:
        """Bits of the smallest operand holding every value of the range: two's complement
        if the range has a negative value (``is_signed``), else unsigned; at least 1."""
        if self.is_signed:
            width = 1
            while not (-(1 << (width - 1)) <= self.lo and self.hi <= (1 << (width - 1)) - 1):
                width += 1
            return width
        return max(1, self.hi.bit_length())

    def fits_operand(self, width: int, is_signed: bool) -> bool:
        """Every value of the range is representable as a ``width``-bit operand."""
        r = IntRange.of_operand(width, is_signed)
        return r.lo <= self.lo and self.hi <= r.hi

    def max_terms(self, acc: "IntRange") -> int:
        """Largest n such that any sum of n values of this range stays inside ``acc``."""
        limits = []
        if self.hi > 0:
            limits.append(acc.hi // self.hi)
        if self.lo < 0:
            limits.append(acc.lo // self.lo)  # both negative: floor of a positive ratio
        return min(limits) if limits else (1 << 62)
