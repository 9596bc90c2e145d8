"""Pack and unpack stream payloads from a manifest layout description.

The layout itself is defined by the Amaranth component (hdl/); its JSON description in the
manifest (see convgen.hdl.manifest) is all this module reads, and tests/test_packing.py
checks the result bit for bit against Amaranth's own ``layout.const(...).as_bits()``.
Values are vectorised over beats: an int field takes a 1-D array, an array field a 2-D
``[beats, length]`` array, a struct a dict of its fields.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack", "unpack"]


def _to_int_lists(values, count):
    arr = np.asarray(values)
    if arr.ndim == 0:
        return [int(arr)] * count
    if arr.shape != (count,):
        raise ValueError(f"int payload field needs shape ({count},), not {arr.shape}")
    return [int(x) for x in arr.tolist()]


def _pack_into(desc: dict, value, offset: int, acc: list[int]) -> None:
    kind = desc["kind"]
    n = len(acc)
    if kind == "int":
        mask = (1 << desc["width"]) - 1
        for i, v in enumerate(_to_int_lists(value, n)):
            acc[i] |= (v & mask) << offset
    elif kind == "array":
        arr = np.asarray(value)
        length, ew = desc["length"], desc["elem_width"]
        if arr.shape != (n, length):
            raise ValueError(f"array payload needs shape ({n}, {length}), not {arr.shape}")
        mask = (1 << ew) - 1
        for j in range(length):
            shift = offset + j * ew
            column = arr[:, j].tolist()
            for i in range(n):
                acc[i] |= (int(column[i]) & mask) << shift
    elif kind == "struct":
        for name, field in desc["fields"].items():
            _pack_into(field, value[name], offset + field["offset"], acc)
    else:
        raise ValueError(f"unknown layout kind {kind!r}")


def pack(desc: dict, value, beats: int) -> list[int]:
    """Pack ``beats`` payloads; returns one Python int per beat."""
    acc = [0] * beats
    _pack_into(desc, value, 0, acc)
    return acc


def _field(ints: list[int], offset: int, width: int, is_signed: bool) -> np.ndarray:
    mask = (1 << width) - 1
    raw = [(x >> offset) & mask for x in ints]
    if is_signed:
        half = 1 << (width - 1)
        raw = [v - (1 << width) if v >= half else v for v in raw]
    dtype = np.int64 if (width < 64 or (width == 64 and is_signed)) else object
    return np.array(raw, dtype=dtype)


def unpack(desc: dict, ints: list[int], offset: int = 0):
    """Inverse of :func:`pack`."""
    kind = desc["kind"]
    if kind == "int":
        return _field(ints, offset, desc["width"], desc["signed"])
    if kind == "array":
        ew = desc["elem_width"]
        cols = [_field(ints, offset + j * ew, ew, desc["elem_signed"]) for j in range(desc["length"])]
        return np.stack(cols, axis=1) if cols else np.zeros((len(ints), 0), dtype=np.int64)
    if kind == "struct":
        return {name: unpack(field, ints, offset + field["offset"]) for name, field in desc["fields"].items()}
    raise ValueError(f"unknown layout kind {kind!r}")
