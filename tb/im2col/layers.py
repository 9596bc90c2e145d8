"""Layer sets for the im2col regression: named random categories, ONNX fixtures, and
invalid configurations. Shared by the pytest launcher, the cocotb testbench and tests/."""

from __future__ import annotations

import glob
import os

import numpy as np
from amaranth.hdl import Shape

from convgen.core.layer import LAYER_FIELDS, ConvLayer
from convgen.hdl.im2col import Im2colConfig
from convgen.core.params import ConfigError

__all__ = ["CATEGORIES", "random_layer", "random_layers", "onnx_conv_fixtures", "invalid_layers",
           "onnx_test_data_dir"]

# category -> constraints on the random draw (None: free within the maxima)
CATEGORIES = {
    "1x1": dict(k=(1, 1)),
    "3x3": dict(k=(3, 3)),
    "5x5": dict(k=(5, 5)),
    "7x7": dict(k=(7, 7)),
    "stride>kernel": dict(k=(2, 2), stride=(3, 3)),
    "pad>=kernel": dict(k=(2, 2), pad_ge_kernel=True),
    "asymmetric-pad": dict(asym=True),
    "dilation2": dict(dil=(2, 2)),
    "dilation3": dict(dil=(3, 3)),
    "non-square": dict(non_square=True),
    "groups": dict(groups="some"),
    "depthwise": dict(groups="depthwise"),
    "c1": dict(c=1),
    "indirect": dict(indirect=True),
    "free": dict(),
}


def _fits(hw: Im2colConfig, lay: ConvLayer) -> bool:
    try:
        hw.check_layer(lay)
        return True
    except ConfigError:
        return False


def random_layer(rng, hw: Im2colConfig, category: str = "free", max_elements: int = 4000) -> ConvLayer:
    """A valid layer of ``category`` inside ``hw``'s maxima with at most ``max_elements``
    stream elements (redrawn until it fits)."""
    spec = CATEGORIES[category]
    for _ in range(10000):
        def pick(lo, hi):
            return int(rng.integers(lo, max(lo, hi) + 1))
        kh = kw = None
        if "k" in spec:
            kh, kw = spec["k"]
        else:
            kh, kw = pick(1, min(hw.max_kernel, 5)), pick(1, min(hw.max_kernel, 5))
        if spec.get("non_square"):
            kh, kw = pick(1, hw.max_kernel), pick(1, hw.max_kernel)
        sh, sw = spec.get("stride", (pick(1, hw.max_stride), pick(1, hw.max_stride)))
        dh, dw = spec.get("dil", (pick(1, hw.max_dilation), pick(1, hw.max_dilation)))
        if "dil" not in spec and rng.random() < 0.5:
            dh = dw = 1
        if spec.get("pad_ge_kernel"):
            pads = [pick(kh, hw.max_pad), pick(kw, hw.max_pad), pick(kh, hw.max_pad), pick(kw, hw.max_pad)]
        elif spec.get("asym"):
            pads = [pick(0, hw.max_pad) for _ in range(4)]
            if len(set(pads)) == 1:
                pads[int(rng.integers(0, 4))] = (pads[0] + 1) % (hw.max_pad + 1)
        else:
            p = pick(0, min(hw.max_pad, max(kh, kw) // 2))
            pads = [p] * 4
        h, w = pick(1, min(hw.max_h, 12)), pick(1, min(hw.max_w, 12))
        if spec.get("non_square"):
            while h == w:
                h, w = pick(1, min(hw.max_h, 12)), pick(1, min(hw.max_w, 12))
        c = spec.get("c", pick(1, min(hw.max_c, 8)))
        groups = 1
        if spec.get("groups") == "depthwise":
            groups = c
        elif spec.get("groups") == "some":
            divisors = [d for d in range(2, c + 1) if c % d == 0 and d < c]
            if not divisors:
                continue
            groups = int(rng.choice(divisors))
        try:
            lay = ConvLayer(h, w, c, kh, kw, sh, sw, *pads, dh, dw, groups, bool(spec.get("indirect", False)))
        except ConfigError:
            continue
        if _fits(hw, lay) and lay.elements(hw.tile_rows) <= max_elements:
            return lay
    raise RuntimeError(f"could not draw a {category} layer for {hw}")


def random_layers(seed: int, hw: Im2colConfig, per_category: int = 1, max_elements: int = 4000,
                  categories=None) -> list[tuple[str, ConvLayer]]:
    rng = np.random.default_rng(seed)
    out = []
    for cat in categories or CATEGORIES:
        for _ in range(per_category):
            try:
                out.append((cat, random_layer(rng, hw, cat, max_elements)))
            except RuntimeError:
                pass  # category not expressible within these maxima (e.g. 7x7 on max_kernel 5)
    return out


def onnx_test_data_dir() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def onnx_conv_fixtures(indirect: bool = False) -> list[tuple[str, ConvLayer]]:
    """Every ``pytorch-converted/test_Conv2d_*`` model of the installed onnx wheel: its Conv's
    attributes and input shape, read through the onnx package (the files are not copied)."""
    import onnx
    from onnx import helper

    from convgen.core.layer import conv_layer_from_onnx

    out = []
    for path in sorted(glob.glob(os.path.join(onnx_test_data_dir(), "pytorch-converted", "test_Conv2d_*"))):
        model = onnx.load(os.path.join(path, "model.onnx"))
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
        lay = conv_layer_from_onnx(attrs, shapes[conv.input[0]], shapes[conv.input[1]], indirect=indirect)
        out.append((os.path.basename(path), lay))
    return out


def invalid_layers(hw: Im2colConfig) -> list[tuple[str, dict]]:
    """Raw cfg payloads (field dicts) that the hardware must reject with ``error``: every
    lower bound, every maximum + 1 that the field width can express, groups not dividing c,
    groups > c, output height and width < 1."""
    base = dict(h=min(hw.max_h, 4), w=min(hw.max_w, 4), c=min(hw.max_c, 2), kh=1, kw=1, stride_h=1, stride_w=1,
                pad_top=0, pad_left=0, pad_bottom=0, pad_right=0, dil_h=1, dil_w=1, groups=1, indirect=0)
    widths = {name: Shape.cast(field.shape).width for name, field in hw.cfg_layout}
    maxima = dict(h=hw.max_h, w=hw.max_w, c=hw.max_c, kh=hw.max_kernel, kw=hw.max_kernel,
                  stride_h=hw.max_stride, stride_w=hw.max_stride, pad_top=hw.max_pad, pad_left=hw.max_pad,
                  pad_bottom=hw.max_pad, pad_right=hw.max_pad, dil_h=hw.max_dilation, dil_w=hw.max_dilation,
                  groups=hw.max_c)
    out = []
    for name in LAYER_FIELDS[:-1]:
        if not name.startswith("pad"):
            out.append((f"{name}=0", {**base, name: 0}))
        if maxima[name] + 1 < (1 << widths[name]):
            bad = {**base, name: maxima[name] + 1}
            if name == "c":
                bad["h"] = bad["w"] = 1
            out.append((f"{name}=max+1", bad))
    if hw.max_c >= 3:
        out.append(("c%groups", {**base, "c": 3, "groups": 2}))
    if hw.max_c >= 2:
        out.append(("groups>c", {**base, "c": 1, "groups": 2}))
    if hw.max_kernel >= 2:
        out.append(("out_h<1", {**base, "h": 1, "kh": 2}))
        out.append(("out_w<1", {**base, "w": 1, "kw": 2}))
    if hw.max_dilation >= 2 and hw.max_kernel >= 2:
        out.append(("dilated out_h<1", {**base, "h": 2, "kh": 2, "dil_h": 2}))
    return out
