"""Helpers to compose stream components with ``wiring.connect``."""

from __future__ import annotations

from amaranth.hdl import Shape, ShapeCastable, Signal
from amaranth.lib import data, stream

__all__ = ["with_payload", "retyped"]


def with_payload(src, payload):
    """The stream ``src`` carrying ``payload`` instead of its own payload.

    ``src`` is a stream as its consumer sees it (a component's ``In`` port, or another
    component's ``o``); ``payload`` is a signal (or a view of one), usually a combinational
    function of ``src.payload``. The result is a stream interface with ``src``'s ``valid``
    and ``ready``, so that ``wiring.connect(m, with_payload(self.i, f), stage.i)`` puts the
    function ``f`` between two stream pieces without hand-wired handshakes. No register, no
    logic: the handshake of ``src`` is the handshake of the result.
    """
    shape = payload.shape() if isinstance(payload, data.View) else Shape.cast(payload.shape())
    iface = stream.Signature(shape).create()
    iface.payload = payload
    iface.valid = src.valid
    iface.ready = src.ready
    return iface


def retyped(m, raw, shape, *, consumer: bool):
    """The untyped stream ``raw`` (payload ``unsigned(width)``, for example
    ``SyncFIFOBuffered.w_stream``/``r_stream``) seen as a stream of ``shape`` with the same bits.

    ``consumer``: ``raw`` is the consumer's side (``w_stream``), so the result is to be
    connected *to* (``wiring.connect(m, producer, retyped(..., consumer=True))``); otherwise it
    is a producer (``r_stream``). Layouts and unsigned shapes alias the raw payload (no
    logic); other shapes (signed, enums) go through one combinational signal.
    """
    sig = stream.Signature(shape)
    if consumer:
        sig = sig.flip()
    iface = sig.create()
    width = Shape.cast(shape).width
    if Shape.cast(raw.payload.shape()) != Shape.cast(width):
        raise ValueError(f"raw payload {raw.payload.shape()} is not unsigned({width})")
    if isinstance(shape, data.Layout):
        iface.payload = shape(raw.payload)
    elif not isinstance(shape, ShapeCastable) and not Shape.cast(shape).signed:
        iface.payload = raw.payload
    else:
        typed = Signal(shape, name="typed_payload")
        if consumer:
            m.d.comb += raw.payload.eq(typed)
        else:
            m.d.comb += typed.eq(raw.payload)
        iface.payload = typed
    iface.valid = raw.valid
    iface.ready = raw.ready
    return iface
