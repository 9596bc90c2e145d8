"""Products written without ``*``, for the places where a multiplier must not become a DSP block.

yosys' ``synth_ice40 -dsp`` maps every ``$mul`` cell of at least 2 x 2 bits with an 11-bit
product to an SB_MAC16, and it has no budget or per-cell opt-out. On the iCE40UP5K (8 SB_MAC16)
the systolic array's PEs need all of them, so the other products of a small engine (the
requantizer's scale product, the descriptor checks) are written here as sums of partial
products: shifted copies of one operand selected by the bits of the other. No ``$mul`` cell is
created, so yosys maps them to LUTs and carry chains.

:func:`partial_products` gives the rows, :func:`tree_sum` adds a list of values as a balanced
tree (adder depth ``ceil(log2(n))`` instead of ``n - 1``), :func:`lut_product` is both. A
pipelined product registers the group sums of ``partial_products`` (``groups`` of them) and adds
those in the next stage (hdl/requant.py).
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value

__all__ = ["partial_products", "tree_sum", "lut_product", "slices"]


def partial_products(a, b) -> list:
    """The rows of ``a * b``: ``a << i`` where bit ``i`` of ``b`` is set, as values whose sum is
    exactly ``a * b`` (Amaranth arithmetic: ``a``'s signedness extends every row).

    ``b`` may be an ``int`` (constant rows, no selection logic) or a Value; a signed ``b``
    contributes its sign bit as a subtracted row (two's complement: ``b = -b[n-1]*2**(n-1) +
    sum(b[i]*2**i)``). An unsigned ``b`` of ``n`` bits gives ``n`` rows."""
    if isinstance(b, int):
        if b < 0:
            raise ValueError(f"a constant multiplier must be >= 0, not {b}")
        rows = [a << i for i in range(b.bit_length()) if (b >> i) & 1]
        return rows or [Const(0, 1)]
    b = Value.cast(b)
    n = len(b)
    signed_b = b.shape().signed
    rows = []
    for i in range(n):
        row = Mux(b[i], a << i, 0)
        rows.append(-row if (signed_b and i == n - 1) else row)
    return rows or [Const(0, 1)]


def tree_sum(values) -> Value:
    """The sum of ``values`` as a balanced tree of two-input adders (exact: Amaranth widens
    each sum by one bit)."""
    values = list(values)
    if not values:
        return Const(0, 1)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return Value.cast(values[0])


def lut_product(a, b) -> Value:
    """``a * b`` without a ``$mul`` cell: the rows of :func:`partial_products` selected by the
    narrower operand (fewer rows), added by :func:`tree_sum`. Exact, as wide as Amaranth
    makes the sum; assign it to a signal of the product's range."""
    if not isinstance(b, int) and not isinstance(a, int) and len(Value.cast(a)) < len(Value.cast(b)):
        a, b = b, a
    if isinstance(a, int):
        a, b = b, a
    return tree_sum(partial_products(a, b))


def slices(a, width: int = 17) -> list:
    """``a`` as ``(value, shift)`` pairs whose sum of ``value << shift`` is exactly ``a``: the low
    ``width``-bit slices unsigned, the top one with ``a``'s signedness (bits ``width*k`` and up,
    so ``floor(a / 2**(width*k))`` for a signed ``a``). With ``width=17`` every slice fits a
    signed 18-bit multiplier input (ECP5's MULT18X18D), and an operand of up to 35 signed or 34
    unsigned bits is two slices, so the product of two such operands is four 18x18 products
    (``Requantizer._dsp2_parts``)."""
    a = Value.cast(a)
    out, lo = [], 0
    while len(a) - lo > width + 1 or (not a.shape().signed and len(a) - lo > width):
        out.append((a[lo:lo + width], lo))
        lo += width
    top = a[lo:]
    out.append((top.as_signed() if a.shape().signed else top, lo))
    return out
