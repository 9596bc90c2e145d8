"""SystolicConfig parameter checks, max_k and the minimal IntRange shape against brute force."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from convgen.core.intrange import IntRange
from convgen.hdl.shapes import shape_of
from convgen.core.params import ConfigError, check_choice, check_int
from convgen.hdl.systolic import SystolicConfig


# ----------------------------------------------------------------------------- helpers

def op_range(width: int, is_signed: bool) -> tuple[int, int]:
    if is_signed:
        return -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return 0, 2 ** width - 1


def product_range_brute(aw, asg, bw, bsg) -> tuple[int, int]:
    """Every product of every operand pair (small widths) -- no corner reasoning."""
    alo, ahi = op_range(aw, asg)
    blo, bhi = op_range(bw, bsg)
    a = np.arange(alo, ahi + 1, dtype=np.int64)
    b = np.arange(blo, bhi + 1, dtype=np.int64)
    p = np.multiply.outer(a, b)
    return int(p.min()), int(p.max())


def min_acc_width_brute(plo, phi, acc_signed) -> int:
    w = 1
    while True:
        lo, hi = op_range(w, acc_signed)
        if lo <= plo and phi <= hi:
            return w
        w += 1


def max_k_brute(plo, phi, acc_width, acc_signed) -> int:
    """Largest K with K*phi <= acc_max and K*plo >= acc_min, by search on the predicate."""
    amin, amax = op_range(acc_width, acc_signed)

    def ok(k):
        return k * phi <= amax and k * plo >= amin

    assert ok(1)
    hi = 1
    while ok(hi * 2):
        hi *= 2
    lo, hi = hi, hi * 2  # ok(lo), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


# ----------------------------------------------------------------------------- rejection

def _rejects(match_name: str, allowed: str, **kw):
    with pytest.raises(ConfigError) as e:
        SystolicConfig(**kw)
    msg = str(e.value)
    assert msg.startswith(match_name + " "), msg
    assert allowed in msg, msg
    return msg


@pytest.mark.parametrize("name", ["rows", "cols"])
@pytest.mark.parametrize("value", [0, -1, 65, 1000])
def test_dims_out_of_range(name, value):
    msg = _rejects(name, "1..64", **{name: value})
    assert repr(value) in msg


@pytest.mark.parametrize("name", ["rows", "cols", "a_width", "b_width", "acc_width"])
@pytest.mark.parametrize("value", [2.5, "4", True, False, None, 8.0])
def test_non_int_rejected(name, value):
    msg = _rejects(name, "an integer in", **{name: value})
    assert repr(value) in msg


@pytest.mark.parametrize("value", ["xs", "OS", "", None, 0])
def test_dataflow_choice(value):
    msg = _rejects("dataflow", "'os', 'ws'", dataflow=value)
    assert repr(value) in msg


@pytest.mark.parametrize("name", ["a_width", "b_width"])
@pytest.mark.parametrize("value", [0, -8, 33, 64])
def test_operand_width_range(name, value):
    _rejects(name, "1..32", **{name: value})


@pytest.mark.parametrize("name", ["a_signed", "b_signed", "pipeline_product"])
@pytest.mark.parametrize("value", [1, 0, "yes", None, np.bool_(True)])
def test_bool_params_require_bool(name, value):
    _rejects(name, "True or False", **{name: value})


SIGN_WIDTHS = [(aw, asg, bw, bsg) for aw, bw in [(8, 8), (1, 1), (1, 8), (4, 6), (3, 2), (8, 1)]
               for asg, bsg in itertools.product([True, False], repeat=2)]


@pytest.mark.parametrize("aw,asg,bw,bsg", SIGN_WIDTHS)
def test_acc_width_bounds_from_product_range(aw, asg, bw, bsg):
    plo, phi = product_range_brute(aw, asg, bw, bsg)
    acc_signed = asg or bsg
    need = min_acc_width_brute(plo, phi, acc_signed)
    base = dict(a_width=aw, a_signed=asg, b_width=bw, b_signed=bsg)
    cfg = SystolicConfig(acc_width=need, **base)
    assert cfg.acc_width == need
    SystolicConfig(acc_width=64, **base)
    if need > 1:
        msg = _rejects("acc_width", f"{need}..64", acc_width=need - 1, **base)
        assert repr(need - 1) in msg
    _rejects("acc_width", f"{need}..64", acc_width=65, **base)
    _rejects("acc_width", f"{need}..64", acc_width=0, **base)


@pytest.mark.parametrize("aw,bw", [(32, 32), (16, 8), (32, 1)])
@pytest.mark.parametrize("asg,bsg", list(itertools.product([True, False], repeat=2)))
def test_acc_width_bounds_wide(aw, bw, asg, bsg):
    alo, ahi = op_range(aw, asg)
    blo, bhi = op_range(bw, bsg)
    prods = [x * y for x in (alo, ahi) for y in (blo, bhi)]  # extremes of a bilinear form
    need = min_acc_width_brute(min(prods), max(prods), asg or bsg)
    base = dict(a_width=aw, a_signed=asg, b_width=bw, b_signed=bsg)
    SystolicConfig(acc_width=need, **base)
    _rejects("acc_width", f"{need}..64", acc_width=need - 1, **base)


def test_defaults_valid():
    cfg = SystolicConfig()
    assert (cfg.rows, cfg.cols, cfg.dataflow, cfg.acc_width) == (8, 8, "os", 32)
    for r, c in [(1, 1), (64, 64), (1, 64), (64, 1)]:
        SystolicConfig(rows=r, cols=c, dataflow="ws")


# ----------------------------------------------------------------------------- max_k

@pytest.mark.parametrize("aw,asg,bw,bsg", SIGN_WIDTHS)
def test_max_k_brute_force(aw, asg, bw, bsg):
    plo, phi = product_range_brute(aw, asg, bw, bsg)
    acc_signed = asg or bsg
    need = min_acc_width_brute(plo, phi, acc_signed)
    for acc in sorted({need, need + 1, need + 3, 32, 63, 64}):
        cfg = SystolicConfig(a_width=aw, a_signed=asg, b_width=bw, b_signed=bsg, acc_width=acc)
        want = max_k_brute(plo, phi, acc, acc_signed)
        assert cfg.max_k == want, (acc, plo, phi)
        if acc <= need + 3:
            # small: a plain linear scan agrees too
            amin, amax = op_range(acc, acc_signed)
            k = 1
            while (k + 1) * phi <= amax and (k + 1) * plo >= amin:
                k += 1
            assert cfg.max_k == k


@pytest.mark.parametrize("asg,bsg", list(itertools.product([True, False], repeat=2)))
def test_max_k_32bit_operands(asg, bsg):
    alo, ahi = op_range(32, asg)
    blo, bhi = op_range(32, bsg)
    prods = [x * y for x in (alo, ahi) for y in (blo, bhi)]
    plo, phi = min(prods), max(prods)
    need = min_acc_width_brute(plo, phi, asg or bsg)
    for acc in range(need, 65):
        cfg = SystolicConfig(a_width=32, b_width=32, a_signed=asg, b_signed=bsg, acc_width=acc)
        assert cfg.max_k == max_k_brute(plo, phi, acc, asg or bsg)


def test_max_k_int8_known():
    # int8 x int8 -> int32: (-128)*(-128) = 16384; 2**31 - 1 = 131071 * 16384 + 16383
    assert SystolicConfig().max_k == (2 ** 31 - 1) // 16384


# ------------------------------------------------------------- IntRange.width via shape_of

def _holds(lo, hi, width, is_signed):
    slo, shi = op_range(width, is_signed)
    return slo <= lo and hi <= shi


def test_intrange_shape_minimal_small():
    for lo in range(-70, 71):
        for hi in range(lo, 71):
            s = shape_of(IntRange(lo, hi))
            assert s.signed == (lo < 0), (lo, hi)
            assert s.width >= 1
            assert _holds(lo, hi, s.width, s.signed), (lo, hi, s)
            if s.width > 1:
                assert not _holds(lo, hi, s.width - 1, s.signed), (lo, hi, s)


def test_intrange_shape_minimal_powers_of_two():
    for k in range(0, 70):
        p = 2 ** k
        for lo, hi in [(0, p - 1), (0, p), (-p, p - 1), (-p, p), (-p - 1, 0), (-1, p), (-p, 0),
                       (p, p), (-p, -p)]:
            if lo > hi:
                continue
            s = shape_of(IntRange(lo, hi))
            assert s.signed == (lo < 0)
            assert _holds(lo, hi, s.width, s.signed), (lo, hi, s)
            if s.width > 1:
                assert not _holds(lo, hi, s.width - 1, s.signed), (lo, hi, s)


def test_intrange_empty_rejected():
    with pytest.raises(ValueError):
        IntRange(1, 0)


# ----------------------------------------------------------------------------- check_int / check_choice

def test_check_int_messages():
    assert check_int("x", 3, 1, 5) == 3
    assert check_int("x", np.int32(4), 1, 5) == 4
    with pytest.raises(ConfigError, match=r"^x must be an integer in 1\.\.5, not 6$"):
        check_int("x", 6, 1, 5)
    with pytest.raises(ConfigError, match=r"^x must be an integer >= 1, not 0$"):
        check_int("x", 0, 1)
    with pytest.raises(ConfigError, match=r"^x must be an integer <= 2, not 3$"):
        check_int("x", 3, None, 2)
    with pytest.raises(ConfigError, match=r"^x must be an integer, not 1\.5$"):
        check_int("x", 1.5)
    with pytest.raises(ConfigError, match=r"^x must be an integer, not True$"):
        check_int("x", True)
    with pytest.raises(ConfigError, match=r"^mode must be one of 'a', 'b', not 'c'$"):
        check_choice("mode", "c", ["a", "b"])


def test_numpy_int_params_are_usable():
    cfg = SystolicConfig(rows=np.int64(2), cols=np.int64(3), acc_width=np.int32(24))
    assert cfg.a_layout.size == 2 * 8
    assert cfg.o_layout.size == 3 * 24 + 1
    json.dumps(cfg.to_dict())


# a rejected constructor leaves a half-built Elaboratable behind, which Amaranth reports when collected
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_components_take_one_config_object():
    """Each component takes its config object (default: the default config), nothing else."""
    from convgen.hdl.im2col import Im2colAddressGenerator, Im2colConfig
    from convgen.hdl.requant import RequantConfig, Requantizer
    from convgen.hdl.systolic import SystolicArray
    from convgen.hdl.winograd import WinogradConv3x3

    assert SystolicArray().config == SystolicConfig()
    for cls, wrong in ((SystolicArray, RequantConfig()), (Requantizer, SystolicConfig()),
                       (Im2colAddressGenerator, RequantConfig()), (WinogradConv3x3, Im2colConfig())):
        with pytest.raises(TypeError, match="config must be"):
            cls(wrong)
        with pytest.raises(TypeError):
            cls(rows=2)


# ----------------------------------------------------------------------------- declared fields

def test_field_declarations_drive_the_checks():
    from dataclasses import dataclass

    from convgen.core.fields import Config, Field, check_fields, fields_of, param

    @dataclass(frozen=True)
    class Toy(Config):
        width: int = param(8, "bits", lo=1, hi=32)
        mode: str = param("a", "mode", choices=("a", "b"))
        wide: int = param(16, "at least width", lo=lambda v: v["width"], lo_text="width", hi=64)
        flag: bool = param(True, "a flag")

    f = {x.name: x for x in fields_of(Toy)}
    assert [x.name for x in fields_of(Toy)] == ["width", "mode", "wide", "flag"]
    assert f["width"].kind is int and f["mode"].kind is str and f["flag"].kind is bool
    assert f["width"].allowed() == "1..32" and f["mode"].allowed() == "a, b"
    assert f["wide"].allowed() == "width to 64"
    assert f["width"].flag == "--width" and f["flag"].cli_flags == ("--flag", "--no-flag")
    assert Toy(width=np.int64(4), wide=4).width == 4 and type(Toy(width=np.int64(4)).width) is int
    with pytest.raises(ConfigError, match=r"^wide must be an integer in 10\.\.64, not 9$"):
        Toy(width=10, wide=9)
    with pytest.raises(ConfigError, match=r"^mode must be one of 'a', 'b', not 'c'$"):
        Toy(mode="c")
    with pytest.raises(ConfigError, match=r"^flag must be True or False, not 1$"):
        Toy(flag=1)
    # the command line: text parsed, the flag named, a dependent bound checked too
    assert f["width"].parse("12") == 12 and f["width"].parse("x") == "x"
    with pytest.raises(ConfigError, match=r"^--width must be an integer in 1\.\.32, not 'x'$"):
        f["width"].check(f["width"].parse("x"), label="--width")
    with pytest.raises(ConfigError, match=r"^--wide must be an integer in 20\.\.64, not 8$"):
        check_fields(fields_of(Toy), {"width": 20, "mode": "a", "wide": 8, "flag": True},
                     label=lambda x: x.flag)
    # without the field it depends on, a dependent bound is not checked
    assert check_fields(fields_of(Toy), {"wide": 8}) == {"wide": 8}
    assert Field("freq", None, "MHz", kind=float, lo=1, hi=2000).check(None) is None
    with pytest.raises(ConfigError, match=r"^freq must be a number in 1\.\.2000, not -5\.0$"):
        Field("freq", None, "MHz", kind=float, lo=1, hi=2000).check(-5.0)


def test_every_block_config_is_declared():
    """Each block's config declares every field (name, default, range or choices, help)."""
    from convgen.core.fields import fields_of
    from convgen.hdl.im2col import Im2colConfig
    from convgen.hdl.requant import RequantConfig
    from convgen.hdl.winograd import WinogradConfig

    for cls in (SystolicConfig, RequantConfig, Im2colConfig, WinogradConfig):
        cfg = cls()
        for f in fields_of(cls):
            assert f.help and getattr(cfg, f.name) == f.default
            assert f.kind is bool or f.choices or (f.lo is not None and f.hi is not None), (cls, f.name)
