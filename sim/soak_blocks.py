"""The blocks of the soak (bench/soak.py): random traffic and its golden answer, per block.

Each :class:`SoakBlock` names one generated configuration, gives its Verilog and manifest, and
draws *rounds*: a :class:`~convgen.sim.soak.Stimulus` (packed input beats, expected output
beats from the golden model, computed in NumPy before the run) and the number of values it
pushes. The generic harness of :mod:`convgen.sim.soak` runs every block the same way; nothing
here knows a Verilog port name.

What counts as a *value* (the soak's 10^6 per block per simulator):

- ``systolic_os``/``systolic_ws``: operand elements, ``rows*K + K*cols`` per tile;
- ``requant_*``: accumulators on the ``i`` stream (``lanes`` per beat; parameter writes not counted);
- ``im2col``: addresses out (its input is one layer descriptor per layer);
- ``winograd``: input elements, 16 activations + 9 weights per beat;
- ``engine`` (:class:`EngineSoak`, through :mod:`convgen.sim.engine`): output values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convgen.core.layer import LAYER_FIELDS, ConvLayer
from convgen.core.params import ConfigError
from convgen.core.quant import INT32_MAX, INT32_MIN, ONNX_SCALE_MAX, ONNX_SCALE_MIN, ROUNDINGS
from convgen.golden.gemm import gemm
from convgen.golden.im2col import address_stream
from convgen.golden.requant import RequantParams, requantize

from .build import cached_verilog
from .packing import pack
from .soak import Stimulus

__all__ = ["Round", "SoakBlock", "SystolicSoak", "RequantSoak", "Im2colSoak", "WinogradSoak", "EngineSoak",
           "BLOCKS", "block"]


@dataclass
class Round:
    stim: Stimulus
    values: int          # counted toward the target (see the module docstring)
    values_in: int       # input values (payload elements of the input streams)
    values_out: int      # output values (payload elements of the output streams)


class SoakBlock:
    """One configuration of one block in the soak."""

    name = ""
    title = ""
    value_unit = ""
    depth = 1 << 16
    gates: dict = {}

    def component(self):
        raise NotImplementedError

    @property
    def module(self) -> str:
        raise NotImplementedError

    @property
    def parameters(self) -> dict:
        raise NotImplementedError

    def extra(self) -> dict:
        return {}

    block = ""

    def verilog(self) -> str:
        return cached_verilog(self.component, self.module, self.parameters)

    def manifest(self) -> dict:
        from convgen.hdl.generate import block_manifest

        component = self.component()
        component._MustUse__silence = True     # described, not elaborated (verilog() elaborates its own)
        return block_manifest(component, self.module, block=self.block, parameters=self.parameters,
                              extra=self.extra())

    def round(self, rng: np.random.Generator, values: int, manifest: dict) -> Round:
        """Random traffic pushing about ``values`` values (at least one unit; fewer when the
        harness memories are full)."""
        raise NotImplementedError


def _pack(manifest, name, value, beats):
    return pack(manifest["streams"][name]["layout"], value, beats)


# -- systolic array ---------------------------------------------------------------------------------
class SystolicSoak(SoakBlock):
    """8x8 array, tiles of random K (1..48, some K <= 2), back to back; OS int8 x int8, WS
    uint8 x int8. Golden: golden.gemm.gemm per tile."""

    block = "systolic"
    value_unit = "operand elements"

    def __init__(self, dataflow: str, rows: int = 8, cols: int = 8):
        from convgen.hdl.systolic import SystolicConfig

        self.cfg = SystolicConfig(rows=rows, cols=cols, dataflow=dataflow, a_signed=dataflow == "os")
        self.name = f"systolic_{dataflow}"
        kind = "int8 x int8" if self.cfg.a_signed else "uint8 x int8"
        self.title = f"SystolicArray {dataflow.upper()} {rows}x{cols} {kind}"

    def component(self):
        from convgen.hdl.systolic import SystolicArray

        return SystolicArray(self.cfg)

    @property
    def module(self):
        return self.cfg.module_name

    @property
    def parameters(self):
        return self.cfg.to_dict()

    def extra(self):
        from convgen.hdl.systolic import manifest_extra

        return manifest_extra(self.cfg)

    def round(self, rng, values, manifest):
        from .systolic import tile_streams

        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        ar, br = cfg.a_range, cfg.b_range
        a_parts, b_data, b_last, o_data, o_last = [], [], [], [], []
        na = nb = no = total = 0
        while total < values:
            k = int(rng.integers(1, 3)) if rng.random() < 0.15 else int(rng.integers(1, 49))
            if na + cfg.a_beats(k) > self.depth or nb + k > self.depth or no + R > self.depth:
                break
            if rng.random() < 0.05:   # extreme operands: the largest partial sums
                a = rng.choice([ar.lo, ar.hi], (R, k))
                b = rng.choice([br.lo, br.hi], (k, C))
            else:
                a = rng.integers(ar.lo, ar.hi + 1, (R, k))
                b = rng.integers(br.lo, br.hi + 1, (k, C))
            s = tile_streams(cfg, a, b)
            a_parts.append(s["a"])
            b_data.append(s["b_data"])
            b_last.append(s["b_last"])
            c = gemm(a, b, a_width=cfg.a_width, b_width=cfg.b_width, a_signed=cfg.a_signed, b_signed=cfg.b_signed,
                     acc_width=cfg.acc_width)
            o_data.append(c)
            last = np.zeros(R, dtype=np.int64)
            last[-1] = 1
            o_last.append(last)
            na, nb, no = na + len(s["a"]), nb + k, no + R
            total += R * k + k * C
        if not a_parts:
            raise ConfigError("the harness memories cannot hold one tile")
        a_all = np.concatenate(a_parts)
        stim = Stimulus(
            inputs={"a": _pack(manifest, "a", a_all, len(a_all)),
                    "b": _pack(manifest, "b", {"data": np.concatenate(b_data), "last": np.concatenate(b_last)}, nb)},
            expected={"o": _pack(manifest, "o", {"data": np.concatenate(o_data), "last": np.concatenate(o_last)},
                                 no)})
        return Round(stim, total, total, no * C)


# -- requantizer --------------------------------------------------------------------------------------
def random_requant_params(rng, cfg, channels: int) -> RequantParams:
    """Random per-channel parameters of ``cfg``'s mode: every output clamp, zero points over the
    output range, random and dyadic (exact-tie) scales or Q31 multipliers with ties."""
    out = cfg.out_range
    zp = rng.integers(out.lo, out.hi + 1, channels)
    lo, hi = rng.integers(out.lo, out.hi + 1, channels), rng.integers(out.lo, out.hi + 1, channels)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    full = rng.random(channels) < 0.5
    lo, hi = np.where(full, out.lo, lo), np.where(full, out.hi, hi)
    bias = rng.integers(INT32_MIN, INT32_MAX + 1, channels) >> rng.integers(0, 32, channels)
    kw = dict(bias=bias, zero_point=zp, act_min=lo, act_max=hi, out_width=cfg.out_width, out_signed=cfg.out_signed)
    if cfg.rounding == "onnx":
        rnd = np.ldexp(rng.uniform(1, 2, channels), rng.integers(-24, 0, channels)).astype(np.float32)
        dy = (rng.choice([1, 3, 5, 7], channels) * np.ldexp(1.0, -rng.integers(3, 12, channels))).astype(np.float32)
        scale = np.clip(np.where(rng.random(channels) < 0.5, rnd, dy).astype(np.float32),
                        np.float32(ONNX_SCALE_MIN), np.float32(ONNX_SCALE_MAX))
        return RequantParams.make("onnx", channels, scale=scale, **kw)
    mult = np.where(rng.random(channels) < 0.3, 1 << 30, rng.integers(1 << 30, 1 << 31, channels))
    shift = np.where(rng.random(channels) < 0.7, rng.integers(-20, 1, channels), rng.integers(-31, 31, channels))
    return RequantParams.make(cfg.rounding, channels, multiplier=mult, shift=shift, **kw)


def _merge_params(cur: RequantParams, new: RequantParams, channels) -> RequantParams:
    """``cur`` with ``channels`` taken from ``new``."""
    sel = np.zeros(cur.channels, dtype=bool)
    sel[channels] = True
    pick = {}
    for f in ("bias", "multiplier", "shift", "scale", "zero_point", "act_min", "act_max"):
        a, b = getattr(cur, f), getattr(new, f)
        pick[f] = None if a is None else np.where(sel, b, a)
    return RequantParams(cur.rounding, cur.channels, out_width=cur.out_width, out_signed=cur.out_signed, **pick)


class RequantSoak(SoakBlock):
    """4 lanes x 8 groups (32 channels), int8 out. Phases: parameter writes (all channels first,
    then a random subset) and then a random number of accumulator beats that must see them; the
    harness gates ``i`` on ``p`` and ``p`` on ``i`` so a rewrite waits for the beats before it.
    Golden: golden.requant.requantize with the parameters in force for each beat."""

    block = "requant"
    value_unit = "accumulators"
    gates = {"i": "p", "p": "i"}

    def __init__(self, rounding: str, lanes: int = 4, groups: int = 8):
        from convgen.hdl.requant import RequantConfig

        if rounding not in ROUNDINGS:
            raise ConfigError(f"rounding must be one of {ROUNDINGS}, not {rounding!r}")
        self.cfg = RequantConfig(lanes=lanes, groups=groups, rounding=rounding)
        self.name = f"requant_{rounding}"
        self.title = f"Requantizer {rounding}, {lanes} lanes x {groups} groups, int8 out"

    def component(self):
        from convgen.hdl.requant import Requantizer

        return Requantizer(self.cfg)

    @property
    def module(self):
        return self.cfg.module_name

    @property
    def parameters(self):
        return self.cfg.to_dict()

    def extra(self):
        from convgen.hdl.requant import manifest_extra

        return manifest_extra(self.cfg)

    def _acc(self, rng, n):
        lanes = self.cfg.lanes
        acc = rng.integers(INT32_MIN, INT32_MAX + 1, (n, lanes)) >> rng.integers(0, 32, (n, lanes))
        pick = rng.random((n, lanes))
        return np.where(pick < 0.02, INT32_MIN, np.where(pick > 0.98, INT32_MAX, acc))

    def round(self, rng, values, manifest):
        from .requant import param_fields

        cfg = self.cfg
        L, G = cfg.lanes, cfg.groups
        channels = L * G
        cur = None
        p_fields, p_wait, i_acc, i_group, i_wait, outs = [], [], [], [], [], []
        n_p = n_i = total = 0
        while total < values:
            new = random_requant_params(rng, cfg, channels)
            chans = rng.permutation(channels) if cur is None else \
                rng.choice(channels, int(rng.integers(1, channels + 1)), replace=False)
            beats = min(int(rng.integers(1, 2000)), -(-(values - total) // L))
            if n_p + len(chans) > self.depth or n_i + beats > self.depth:
                break
            cur = new if cur is None else _merge_params(cur, new, chans)
            pf = param_fields(cfg, new, chans)
            p_fields.append(pf)
            p_wait += [n_i] * len(chans)        # after every beat of the previous phases
            n_p += len(chans)
            acc = self._acc(rng, beats)
            group = rng.integers(0, G, beats)
            i_acc.append(acc)
            i_group.append(group)
            i_wait += [n_p] * beats              # after every write of this phase
            n_i += beats
            ch = group[:, None] * L + np.arange(L)[None, :]
            outs.append(requantize(acc, cur, channel=ch))
            total += beats * L
        if not outs:
            raise ConfigError("the harness memories cannot hold one phase")
        pf = {k: np.concatenate([f[k] for f in p_fields]) for k in p_fields[0]}
        stim = Stimulus(
            inputs={"p": _pack(manifest, "p", pf, n_p),
                    "i": _pack(manifest, "i", {"acc": np.concatenate(i_acc), "group": np.concatenate(i_group)}, n_i)},
            expected={"o": _pack(manifest, "o", np.concatenate(outs), n_i)},
            waits={"p": p_wait, "i": i_wait})
        return Round(stim, total, total, total)


# -- im2col ------------------------------------------------------------------------------------------
def random_im2col_layer(rng, hw, max_elements: int) -> ConvLayer:
    """A random valid layer inside ``hw``'s maxima: any kernel, stride, dilation, asymmetric
    pads, groups (depthwise too), indirection mode; at most ``max_elements`` addresses."""
    for _ in range(10_000):
        def pick(lo, hi):
            return int(rng.integers(lo, max(lo, hi) + 1))
        kh, kw = pick(1, hw.max_kernel), pick(1, hw.max_kernel)
        if rng.random() < 0.5:
            kw = kh
        sh, sw = pick(1, hw.max_stride), pick(1, hw.max_stride)
        dh, dw = (1, 1) if rng.random() < 0.5 else (pick(1, hw.max_dilation), pick(1, hw.max_dilation))
        pads = [pick(0, hw.max_pad) for _ in range(4)]
        h, w, c = pick(1, min(hw.max_h, 24)), pick(1, min(hw.max_w, 24)), pick(1, min(hw.max_c, 16))
        divisors = [d for d in range(1, c + 1) if c % d == 0]
        groups = int(rng.choice(divisors)) if rng.random() < 0.4 else 1
        try:
            lay = ConvLayer(h, w, c, kh, kw, sh, sw, *pads, dh, dw, groups, bool(rng.random() < 0.15))
            hw.check_layer(lay)
        except ConfigError:
            continue
        if lay.elements(hw.tile_rows) <= max_elements:
            return lay
    raise ConfigError(f"could not draw an im2col layer of at most {max_elements} elements")


class Im2colSoak(SoakBlock):
    """Default generator (64x64x64 maxima, kernel 7, stride 4, pad 3, dilation 3, tile_rows 8):
    random layers back to back without reset. Golden: golden.im2col.address_stream. ``error``
    must never rise."""

    block = "im2col"
    value_unit = "addresses out"
    name = "im2col"
    title = "Im2colAddressGenerator 64x64x64, k7 s4 p3 d3, tile_rows 8"

    def __init__(self):
        from convgen.hdl.im2col import Im2colConfig

        self.cfg = Im2colConfig()

    def component(self):
        from convgen.hdl.im2col import Im2colAddressGenerator

        return Im2colAddressGenerator(self.cfg)

    @property
    def module(self):
        return self.cfg.module_name

    @property
    def parameters(self):
        return self.cfg.to_dict()

    def extra(self):
        from convgen.hdl.im2col import manifest_extra

        return manifest_extra(self.cfg)

    def round(self, rng, values, manifest):
        hw = self.cfg
        layers, fields = [], []
        total = 0
        cap = min(values, self.depth)
        while total < cap:
            room = cap - total
            if room < 1:
                break
            try:
                lay = random_im2col_layer(rng, hw, min(room, 20_000))
            except ConfigError:
                break
            layers.append(lay)
            fields.append(address_stream(lay, hw.tile_rows))
            total += lay.elements(hw.tile_rows)
        if not layers:
            raise ConfigError("the harness memories cannot hold one layer")
        cfg_cols = {k: np.array([int(getattr(x, k)) for x in layers], dtype=np.int64) for k in LAYER_FIELDS}
        out = {k: np.concatenate([f[k] for f in fields]) for k in fields[0]}
        stim = Stimulus(inputs={"cfg": _pack(manifest, "cfg", cfg_cols, len(layers))},
                        expected={"o": _pack(manifest, "o", out, total)})
        return Round(stim, total, len(layers) * len(LAYER_FIELDS), total)


# -- Winograd -------------------------------------------------------------------------------------------
class WinogradSoak(SoakBlock):
    """WinogradConv3x3 (int8 data and weights, int32 out): frames of 1..32 channel beats (some
    of 1), random and extreme tiles. Golden: the direct 3x3 correlation of each 4x4 tile,
    summed over the frame (the Winograd result must equal it exactly)."""

    block = "winograd"
    value_unit = "input elements"
    name = "winograd"
    title = "WinogradConv3x3 F(2x2,3x3), int8 x int8 -> int32"

    def __init__(self):
        from convgen.hdl.winograd import WinogradConfig

        self.cfg = WinogradConfig()

    def component(self):
        from convgen.hdl.winograd import WinogradConv3x3

        return WinogradConv3x3(self.cfg)

    @property
    def module(self):
        return self.cfg.module_name("conv3x3")

    @property
    def parameters(self):
        return self.cfg.to_dict()

    def extra(self):
        from convgen.hdl.winograd import manifest_extra

        return manifest_extra(self.cfg, "conv3x3")

    def round(self, rng, values, manifest):
        cfg = self.cfg
        dr, gr = cfg.d_range, cfg.g_range
        frames = []
        n = 0
        while n * 25 < values and n < self.depth:
            c = 1 if rng.random() < 0.1 else int(rng.integers(1, 33))
            c = min(c, self.depth - n, max(1, -(-(values - n * 25) // 25)))
            frames.append(c)
            n += c
        d = rng.integers(dr.lo, dr.hi + 1, (n, 16))
        g = rng.integers(gr.lo, gr.hi + 1, (n, 9))
        ext = rng.random(n) < 0.05
        d[ext] = rng.choice([dr.lo, dr.hi], (int(ext.sum()), 16))
        g[ext] = rng.choice([gr.lo, gr.hi], (int(ext.sum()), 9))
        last = np.zeros(n, dtype=np.int64)
        ends = np.cumsum(frames) - 1
        last[ends] = 1
        dt, gt = d.reshape(n, 4, 4), g.reshape(n, 3, 3)
        y = np.zeros((n, 2, 2), dtype=np.int64)
        for i in range(3):
            for j in range(3):
                y += dt[:, i:i + 2, j:j + 2] * gt[:, i:i + 1, j:j + 1]
        starts = np.concatenate([[0], ends[:-1] + 1])
        out = np.add.reduceat(y.reshape(n, 4), starts, axis=0)
        stim = Stimulus(inputs={"i": _pack(manifest, "i", {"d": d, "g": g, "last": last}, n)},
                        expected={"o": _pack(manifest, "o", out, len(frames))})
        return Round(stim, n * 25, n * 25, len(frames) * 4)


BLOCKS = {
    "systolic_os": lambda: SystolicSoak("os"),
    "systolic_ws": lambda: SystolicSoak("ws"),
    "requant_tflite": lambda: RequantSoak("tflite"),
    "requant_tflite_single": lambda: RequantSoak("tflite_single"),
    "requant_onnx": lambda: RequantSoak("onnx"),
    "im2col": Im2colSoak,
    "winograd": WinogradSoak,
}


def block(name: str) -> SoakBlock:
    if name not in BLOCKS:
        raise ConfigError(f"block must be one of {', '.join(BLOCKS)}, not {name!r}")
    return BLOCKS[name]()


# -- the ConvEngine, through its own free-running testbench ---------------------------------------------------
class EngineSoak:
    """Random layers back to back on a small ConvEngine (3x4 PEs, the configuration of
    tests/test_engine_rtl.py) through :func:`convgen.sim.engine.run_layers`, with random
    memory stalls, latency and jitter and random ready dropouts on the output writes (the
    engine testbench's own LFSRs). Golden: golden.engine.reference_conv. Values: outputs."""

    name = "engine"
    title = "ConvEngine 3x4, vec 4, onnx rounding (sim.engine testbench)"
    value_unit = "output values"
    CFG = dict(rows=3, cols=4, vec=4, max_h=32, max_w=32, max_pixel_words=8, max_kernel=11, max_stride=4,
               max_pad=5, max_dilation=3, max_tiles=8, fetch_banks=3, weight_fifo=8)
    MEM_WORDS = 1 << 14

    def __init__(self):
        from convgen.hdl.engine import EngineConfig

        self.cfg = EngineConfig(**self.CFG)

    def build(self, simulator: str):
        from .engine import build_engine

        return build_engine(self.cfg, simulator, mem_words=self.MEM_WORDS)

    def random_layer(self, rng) -> ConvLayer:
        from convgen.golden import engine as ge

        lim = self.cfg.limits()
        for _ in range(10_000):
            def pick(lo, hi):
                return int(rng.integers(lo, max(lo, hi) + 1))
            k = pick(1, 5) if rng.random() < 0.8 else pick(1, 11)
            kh, kw = (k, k) if rng.random() < 0.8 else (pick(1, 5), pick(1, 5))
            s = pick(1, 2) if rng.random() < 0.8 else pick(1, 4)
            d = 1 if rng.random() < 0.8 else pick(1, 3)
            pads = [pick(0, min(5, k // 2 + 1)) for _ in range(4)]
            if rng.random() < 0.6:
                pads = [pads[0]] * 4
            h, w = pick(4, 20), pick(4, 20)
            c = pick(1, 12)
            kind = rng.random()
            groups, c_out = 1, pick(1, 12)
            if kind < 0.15:
                groups, c_out = c, c * pick(1, 2)
            elif kind < 0.3:
                divs = [g for g in range(2, c + 1) if c % g == 0]
                if divs:
                    groups = int(rng.choice(divs))
                    c_out = groups * pick(1, 3)
            try:
                lay = ConvLayer(h, w, c, kh, kw, s, s, *pads, d, d, groups, c_out=c_out)
                p = ge.plan(lay, self.cfg.rows, self.cfg.cols, self.cfg.vec)
                desc = ge.descriptor_fields(p, x_zero_point=0, w_zero_point=0, x_signed=True)
                desc["out_h"], desc["out_w"] = lay.out_h, lay.out_w
                if ge.descriptor_errors(desc, lim):
                    continue
            except (ConfigError, ValueError, AssertionError):
                continue
            return lay
        raise ConfigError("could not draw an engine layer")

    def jobs(self, rng, values: int):
        """Layers (with expected outputs) of about ``values`` output values in all, fitting the
        testbench memories; returns (jobs, output values)."""
        from convgen.golden import engine as ge

        from .engine import job_from_quant

        jobs, total = [], 0
        used = {"x": 0, "w": 0, "p": 0, "y": 0}
        while total < values:
            lay = self.random_layer(rng)
            q = ge.random_quant_conv(rng, lay, x_signed=bool(rng.random() < 0.5), relu=bool(rng.random() < 0.3))
            job = job_from_quant(q, self.cfg)
            if any(used[k] + job.words[k] > self.MEM_WORDS for k in used) or len(jobs) >= 64:
                break
            for k in used:
                used[k] += job.words[k]
            job.expected = ge.reference_conv(q)
            job.out_signed = bool(q.params.act_min.min() < 0)
            jobs.append(job)
            total += int(job.expected.size)
        return jobs, total
