"""Amaranth adapter of :class:`convgen.core.intrange.IntRange`: range -> ``Shape`` and back.

The ranges themselves (and every width rule derived from them) live in :mod:`convgen.core`,
which golden/ shares without importing Amaranth.
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned

from convgen.core.intrange import IntRange

__all__ = ["shape_of", "range_of", "fits"]


def shape_of(r: IntRange) -> Shape:
    """The smallest shape holding every value of ``r``."""
    return signed(r.width) if r.is_signed else unsigned(r.width)


def range_of(shape) -> IntRange:
    """Every value a signal of ``shape`` can hold."""
    shape = Shape.cast(shape)
    return IntRange.of_operand(shape.width, shape.signed)


def fits(r: IntRange, shape) -> bool:
    """``r`` is representable in ``shape`` without wrapping."""
    shape = Shape.cast(shape)
    return r.fits_operand(shape.width, shape.signed)
