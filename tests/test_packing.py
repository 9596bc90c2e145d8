"""convgen.sim.packing against Amaranth's own encoding of the payload layouts.

The oracle is ``layout.const(...).as_bits()`` of the very layout objects SystolicArray uses;
packing only ever sees the JSON description of those layouts (describe_layout).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from convgen.hdl.manifest import describe_layout
from convgen.hdl.systolic import SystolicConfig
from convgen.sim.packing import pack, unpack

CONFIGS = [
    SystolicConfig(rows=1, cols=1),
    SystolicConfig(rows=1, cols=1, a_signed=False, b_signed=False, acc_width=64),
    SystolicConfig(rows=8, cols=8),
    SystolicConfig(rows=3, cols=5, a_signed=False, b_signed=True, acc_width=64, dataflow="ws"),
    SystolicConfig(rows=5, cols=3, a_signed=True, b_signed=False, acc_width=32),
    SystolicConfig(rows=16, cols=7, a_signed=False, b_signed=False, acc_width=32),
    SystolicConfig(rows=4, cols=4, a_width=4, b_width=16, acc_width=21),
    SystolicConfig(rows=2, cols=9, a_width=32, b_width=32, a_signed=False, b_signed=False, acc_width=64),
    SystolicConfig(rows=64, cols=64, a_width=1, b_width=1, acc_width=2),
    SystolicConfig(rows=2, cols=2, a_width=1, b_width=1, a_signed=False, b_signed=False, acc_width=1),
]


def _rng_values(rng: random.Random, width: int, is_signed: bool, count: int) -> list[int]:
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if is_signed else (0, 2 ** width - 1)
    pool = [lo, hi, 0, min(hi, 1), max(lo, -1)]
    return [rng.choice(pool) if rng.random() < 0.3 else rng.randint(lo, hi) for _ in range(count)]


def _as_array(rows: list[list[int]], width: int, is_signed: bool) -> np.ndarray:
    """What a caller would pass: int64 when the values fit, Python ints (object) otherwise."""
    if width < 64 or is_signed:
        return np.array(rows, dtype=np.int64)
    return np.array(rows, dtype=object)


def _int_lists(x) -> list:
    return [[int(v) for v in row] for row in np.asarray(x).tolist()]


def _elem(layout_shape):
    from amaranth.hdl import Shape
    s = Shape.cast(layout_shape)
    return s.width, s.signed


def _array_case(rng, layout, beats):
    w, s = _elem(layout.elem_shape)
    rows = [_rng_values(rng, w, s, layout.length) for _ in range(beats)]
    expect = [layout.const(r).as_bits() for r in rows]
    return _as_array(rows, w, s), rows, expect


def _struct_case(rng, layout, beats):
    arr = layout["data"].shape
    w, s = _elem(arr.elem_shape)
    rows = [_rng_values(rng, w, s, arr.length) for _ in range(beats)]
    last = [rng.randint(0, 1) for _ in range(beats)]
    expect = [layout.const({"data": r, "last": l}).as_bits() for r, l in zip(rows, last)]
    value = {"data": _as_array(rows, w, s), "last": np.array(last, dtype=np.int64)}
    return value, (rows, last), expect


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.module_name)
def test_a_layout_matches_amaranth(cfg):
    rng = random.Random(cfg.module_name + "a")
    desc = json.loads(json.dumps(describe_layout(cfg.a_layout)))  # as read from the manifest
    for beats in (1, 2, 7):
        value, rows, expect = _array_case(rng, cfg.a_layout, beats)
        got = pack(desc, value, beats)
        assert got == expect
        assert all(0 <= x < 2 ** cfg.a_layout.size for x in got)
        assert _int_lists(unpack(desc, got)) == rows


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.module_name)
@pytest.mark.parametrize("which", ["b_layout", "o_layout"])
def test_struct_layouts_match_amaranth(cfg, which):
    layout = getattr(cfg, which)
    rng = random.Random(cfg.module_name + which)
    desc = json.loads(json.dumps(describe_layout(layout)))
    assert desc["width"] == layout.size
    for beats in (1, 3, 6):
        value, (rows, last), expect = _struct_case(rng, layout, beats)
        got = pack(desc, value, beats)
        assert got == expect
        assert all(0 <= x < 2 ** layout.size for x in got)
        back = unpack(desc, got)
        assert set(back) == {"data", "last"}
        assert _int_lists(back["data"]) == rows
        assert [int(v) for v in back["last"]] == last


@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[3], CONFIGS[7]], ids=lambda c: c.module_name)
def test_64bit_results_round_trip_exactly(cfg):
    """Extremes of a 64-bit accumulator lane survive pack/unpack without float or int64 loss."""
    layout = cfg.o_layout
    w, s = _elem(layout["data"].shape.elem_shape)
    lo, hi = (-(2 ** 63), 2 ** 63 - 1) if s else (0, 2 ** 64 - 1)
    rows = [[hi] * cfg.cols, [lo] * cfg.cols, [hi - 1 if i % 2 else lo + 1 for i in range(cfg.cols)]]
    desc = describe_layout(layout)
    value = {"data": _as_array(rows, w, s), "last": np.array([0, 1, 0])}
    got = pack(desc, value, 3)
    assert got == [layout.const({"data": r, "last": l}).as_bits() for r, l in zip(rows, [0, 1, 0])]
    assert _int_lists(unpack(desc, got)["data"]) == rows


def test_scalar_field_broadcasts_over_beats():
    cfg = SystolicConfig(rows=2, cols=3)
    desc = describe_layout(cfg.b_layout)
    data = np.array([[1, -2, 3], [-128, 127, 0]], dtype=np.int64)
    got = pack(desc, {"data": data, "last": 1}, 2)
    assert got == [cfg.b_layout.const({"data": list(r), "last": 1}).as_bits() for r in data.tolist()]


def test_array_shape_mismatch_is_rejected():
    cfg = SystolicConfig(rows=4, cols=2)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        pack(describe_layout(cfg.a_layout), np.zeros((3, 5), dtype=np.int64), 3)


def test_int_field_length_mismatch_is_rejected():
    cfg = SystolicConfig(rows=2, cols=2)
    desc = describe_layout(cfg.b_layout)
    with pytest.raises(ValueError):
        pack(desc, {"data": np.zeros((3, 2), dtype=np.int64), "last": np.array([0, 1])}, 3)
