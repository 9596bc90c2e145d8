"""Machine-readable description of a generated module: ports, payload layouts, parameters,
timing. Written next to the Verilog as ``<module>.json``; tb/ and sim/ pack and unpack
stream payloads from it, so the bit layout is defined once, by the Amaranth layouts."""

from __future__ import annotations

from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data, stream, wiring

__all__ = ["describe_layout", "describe_ports", "port_table"]


def _describe_shape(shape) -> dict:
    if isinstance(shape, data.StructLayout):
        return {
            "kind": "struct",
            "width": shape.size,
            "fields": {name: {"offset": field.offset, **_describe_shape(field.shape)}
                       for name, field in shape},
        }
    if isinstance(shape, data.ArrayLayout):
        elem = Shape.cast(shape.elem_shape)
        return {
            "kind": "array",
            "width": shape.size,
            "length": shape.length,
            "elem_width": elem.width,
            "elem_signed": elem.signed,
        }
    if isinstance(shape, ShapeCastable):
        shape = Shape.cast(shape)
    shape = Shape.cast(shape)
    return {"kind": "int", "width": shape.width, "signed": shape.signed}


def describe_layout(shape) -> dict:
    """JSON description of a payload shape: ints, arrays of ints, structs of those."""
    return _describe_shape(shape)


def describe_ports(component: wiring.Component) -> dict:
    """Ports of a component as Amaranth names them in Verilog (``path__member``), grouping
    stream members with their payload layout. ``clk`` and ``rst`` (synchronous, active
    high) are added by the back end."""
    streams = {}
    ports = [{"name": "clk", "direction": "in", "width": 1},
             {"name": "rst", "direction": "in", "width": 1}]
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            sig = member.signature
            # In(stream) means the component consumes it
            consumer = member.flow == wiring.In
            payload = sig.members["payload"].shape
            desc = describe_layout(payload)
            streams[name] = {
                "direction": "in" if consumer else "out",
                "valid": f"{name}__valid",
                "ready": f"{name}__ready",
                "payload": f"{name}__payload",
                "layout": desc,
            }
            ports += [
                {"name": f"{name}__valid", "direction": "in" if consumer else "out", "width": 1},
                {"name": f"{name}__ready", "direction": "out" if consumer else "in", "width": 1},
                {"name": f"{name}__payload", "direction": "in" if consumer else "out",
                 "width": desc["width"]},
            ]
        elif member.is_port:
            ports.append({"name": name, "direction": "in" if member.flow == wiring.In else "out",
                          "width": Shape.cast(member.shape).width})
        else:
            raise NotImplementedError(f"cannot describe member {name!r}")
    return {"ports": ports, "streams": streams}


def _layout_text(lay: dict) -> str:
    kind = lay.get("kind")
    if kind == "array":
        sign = "s" if lay.get("elem_signed") else "u"
        return f"{lay['length']} x {sign}{lay['elem_width']}"
    if kind == "struct":
        return "; ".join(f"{name} {_layout_text(f)} @{f['offset']}" for name, f in lay["fields"].items())
    if kind == "int":
        return f"{'s' if lay.get('signed') else 'u'}{lay['width']}"
    return f"{lay.get('width', '?')} bits"


def port_table(manifest: dict) -> str:
    """A readable table of a generated module's ports from its manifest: name, direction, width,
    protocol and payload fields; the clock and reset with their polarity."""
    streams = manifest.get("streams", {})
    in_stream = {}
    for sname, st in streams.items():
        for role in ("valid", "ready", "payload"):
            in_stream[st[role]] = (sname, role, st)
    rows = [("port", "dir", "width", "protocol", "payload fields (LSB first, @bit offset)")]
    for p in manifest["ports"]:
        name, d, w = p["name"], p["direction"], p["width"]
        if name == "clk":
            proto, fields = "clock: every register samples on its rising edge", ""
        elif name == "rst":
            proto, fields = "reset: synchronous, active high", ""
        elif name in in_stream:
            sname, role, st = in_stream[name]
            proto = f"stream {sname} ({'sink' if st['direction'] == 'in' else 'source'}): {role}"
            fields = _layout_text(st["layout"]) if role == "payload" else ""
        else:
            proto, fields = p.get("protocol", "level"), ""
        rows.append((name, d, str(w), proto, fields))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{manifest['module']}: {len(manifest['ports'])} ports; streams use valid/ready (a beat moves when "
             "both are high in the same cycle; valid and payload hold until ready)"]
    for i, r in enumerate(rows):
        lines.append("  " + "  ".join(c.ljust(widths[k]) for k, c in enumerate(r[:4])) + "  " + r[4])
        if i == 0:
            lines.append("  " + "  ".join("-" * widths[k] for k in range(4)) + "  " + "-" * len(rows[0][4]))
    return "\n".join(line.rstrip() for line in lines) + "\n"
