"""One description of a convolution layer (or a GEMM seen as a 1x1 convolution), and one parser
of ONNX ``Conv`` / ``QLinearConv`` attributes.

Everything that needs a layer's geometry uses :class:`ConvLayer`: the im2col address generator
(:mod:`convgen.hdl.im2col`) and its golden twin, the convolution oracle
(:mod:`convgen.golden.conv`), the cost model and ``convgen analyze``. The output-size formula
(:func:`out_size`) and the ``auto_pad`` rule (:func:`resolve_pads`) are written here once.

Conventions
-----------
- Input ``N x C x H x W`` (NCHW in ONNX, NHWC in memory), weights ``C_out x C/groups x KH x KW``
  (ONNX OIHW), output ``N x C_out x OH x OW``.
- Pads are (top, left, bottom, right): ONNX's ``pads`` order (all begins, then all ends).
- Output channel ``o`` belongs to group ``o // (C_out/groups)``. A *depthwise* layer has
  ``groups == C`` and ``C_out = depth_multiplier * C``.
- A GEMM ``[M x K] @ [K x N]`` is the 1x1 convolution ``h=M, w=1, c=K, c_out=N``: the same MACs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .params import ConfigError, check_bool, check_int

__all__ = ["ConvLayer", "LAYER_FIELDS", "KINDS", "out_size", "resolve_pads", "conv_layer_from_onnx"]

#: the geometry fields, in constructor order (the im2col ``cfg`` beat carries exactly these)
LAYER_FIELDS = ("h", "w", "c", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left",
                "pad_bottom", "pad_right", "dil_h", "dil_w", "groups", "indirect")

KINDS = ("standard", "depthwise", "grouped", "pointwise")


def out_size(size: int, kernel: int, stride: int = 1, dilation: int = 1, pad_begin: int = 0,
             pad_end: int = 0) -> int:
    """Output length of one spatial axis (ONNX Conv, PyTorch, TFLite VALID with explicit pads):
    ``floor((size + pads - dilation*(kernel-1) - 1) / stride) + 1``."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def resolve_pads(auto_pad, sizes, kernel, strides, dilations, pads=None) -> tuple:
    """ONNX Conv padding as explicit ``(begins..., ends...)``: ``pads`` itself under ``NOTSET``
    (default zeros), zeros under ``VALID``, and under ``SAME_UPPER``/``SAME_LOWER`` the total
    ``(ceil(size/stride)-1)*stride + dilation*(kernel-1) + 1 - size`` split with the odd pixel at
    the end (UPPER) or the beginning (LOWER), as the ONNX operator specification says."""
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else (auto_pad or "NOTSET")
    if auto_pad == "NOTSET":
        return tuple(int(p) for p in pads) if pads else (0,) * (2 * len(sizes))
    if auto_pad == "VALID":
        return (0,) * (2 * len(sizes))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(sizes, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            small, big = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else big)
            ends.append(big if auto_pad == "SAME_UPPER" else small)
        return tuple(begins + ends)
    raise ConfigError(f"auto_pad must be one of 'NOTSET', 'VALID', 'SAME_UPPER', 'SAME_LOWER', not {auto_pad!r}")


@dataclass(frozen=True)
class ConvLayer:
    """One 2-D convolution, checked on construction (a ConfigError names the field and its range).

    Parameters
    ----------
    h, w, c : int >= 1
        Input height, width and channels.
    kh, kw : int >= 1
        Kernel height and width.
    stride_h, stride_w, dil_h, dil_w : int >= 1
    pad_top, pad_left, pad_bottom, pad_right : int >= 0
    groups : int >= 1, dividing ``c`` and ``c_out``
    indirect : bool
        Im2col address-generator mode: emit the indirection buffer (one pointer per output
        pixel and tap, Dukhan 2019) instead of element addresses. Not a property of the
        convolution itself; the generator's ``cfg`` beat carries it with the geometry.
    c_out : int >= 1, optional
        Output channels (default ``c``).
    n : int >= 1
        Batch.
    name, op : str
        Where the layer came from (``convgen analyze``).
    bias : bool
        The layer adds a bias.
    weight_is_param : bool
        False for a MatMul of two activations (no parameters to count).
    """

    h: int
    w: int
    c: int
    kh: int = 1
    kw: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1
    indirect: bool = False
    c_out: int | None = None
    n: int = 1
    name: str = ""
    op: str = "Conv"
    bias: bool = False
    weight_is_param: bool = True

    def __post_init__(self):
        where = f"{self.name}: " if self.name else ""
        for name in LAYER_FIELDS[:-1] + ("n",):
            lo = 0 if name.startswith("pad") else 1
            object.__setattr__(self, name, check_int(where + name, getattr(self, name), lo))
        check_bool("indirect", self.indirect)
        c_out = self.c if self.c_out is None else check_int(where + "c_out", self.c_out, 1)
        object.__setattr__(self, "c_out", c_out)
        if self.c % self.groups:
            raise ConfigError(f"{where}groups must divide c={self.c}: groups must be one of "
                              f"{[g for g in range(1, self.c + 1) if self.c % g == 0]}, not {self.groups}")
        if self.c_out % self.groups:
            raise ConfigError(f"{where}groups={self.groups} must divide c_out={self.c_out}")
        if self.out_h < 1:
            raise ConfigError(
                f"{where}output height must be >= 1: h + pad_top + pad_bottom = "
                f"{self.h + self.pad_top + self.pad_bottom} is smaller than the dilated kernel height "
                f"dil_h*(kh-1)+1 = {self.dil_h * (self.kh - 1) + 1}")
        if self.out_w < 1:
            raise ConfigError(
                f"{where}output width must be >= 1: w + pad_left + pad_right = "
                f"{self.w + self.pad_left + self.pad_right} is smaller than the dilated kernel width "
                f"dil_w*(kw-1)+1 = {self.dil_w * (self.kw - 1) + 1}")

    @classmethod
    def square(cls, h, w, c, kernel, stride=1, pad=0, dilation=1, groups=1, indirect=False, **kw):
        """Convenience: ``kernel``/``stride``/``dilation`` an int or (h, w) pair, ``pad`` an int or
        (top, left, bottom, right)."""
        pads = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
        if len(pads) != 4:
            raise ConfigError(f"pad must be an int or 4 ints (top, left, bottom, right), not {pad!r}")
        ks = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        ss = (stride, stride) if isinstance(stride, int) else tuple(stride)
        ds = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        return cls(h, w, c, ks[0], ks[1], ss[0], ss[1], *pads, ds[0], ds[1], groups, indirect, **kw)

    @classmethod
    def gemm(cls, m: int, k: int, n: int, **kw) -> "ConvLayer":
        """``[m x k] @ [k x n]`` as the 1x1 convolution ``h=m, w=1, c=k, c_out=n``."""
        return cls(m, 1, k, c_out=n, **kw)

    # -- derived geometry ------------------------------------------------------------------
    @property
    def out_h(self) -> int:
        return out_size(self.h, self.kh, self.stride_h, self.dil_h, self.pad_top, self.pad_bottom)

    @property
    def out_w(self) -> int:
        return out_size(self.w, self.kw, self.stride_w, self.dil_w, self.pad_left, self.pad_right)

    @property
    def stride(self) -> tuple:
        return (self.stride_h, self.stride_w)

    @property
    def dilation(self) -> tuple:
        return (self.dil_h, self.dil_w)

    @property
    def pads(self) -> tuple:
        """(top, left, bottom, right)."""
        return (self.pad_top, self.pad_left, self.pad_bottom, self.pad_right)

    @property
    def c_per_group(self) -> int:
        return self.c // self.groups

    @property
    def c_out_per_group(self) -> int:
        return self.c_out // self.groups

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c

    @property
    def depth_multiplier(self) -> int:
        """Output channels per input channel of a depthwise layer (``c_out / c``); 0 otherwise."""
        return self.c_out // self.c if self.is_depthwise else 0

    @property
    def kind(self) -> str:
        if self.is_depthwise:
            return "depthwise"
        if self.groups > 1:
            return "grouped"
        if self.kh == self.kw == 1:
            return "pointwise"
        return "standard"

    @property
    def positions(self) -> int:
        """Output pixels of the batch: ``n * out_h * out_w``."""
        return self.n * self.out_h * self.out_w

    @property
    def in_elements(self) -> int:
        return self.n * self.c * self.h * self.w

    @property
    def out_elements(self) -> int:
        return self.positions * self.c_out

    # -- the layer as GEMMs (one per group) -----------------------------------------------
    @property
    def gemm_m(self) -> int:
        return self.positions

    @property
    def gemm_k(self) -> int:
        """Reduction length of one group's GEMM (indirection mode: taps per pixel)."""
        return self.kh * self.kw * (1 if self.indirect else self.c_per_group)

    @property
    def gemm_n(self) -> int:
        return self.c_out_per_group

    @property
    def macs(self) -> int:
        return self.positions * self.c_out * self.c_per_group * self.kh * self.kw

    def elements(self, tile_rows: int) -> int:
        """Elements of the im2col address stream: groups x tiles x K x tile_rows."""
        groups = 1 if self.indirect else self.groups
        tiles = -(-self.gemm_m // tile_rows)
        return groups * tiles * self.gemm_k * tile_rows

    def geometry(self) -> dict:
        """The :data:`LAYER_FIELDS` as a dict (what the im2col ``cfg`` beat carries)."""
        return {f: getattr(self, f) for f in LAYER_FIELDS}

    def to_dict(self) -> dict:
        """Every field (``ConvLayer(**layer.to_dict())`` rebuilds the layer)."""
        return asdict(self)


def conv_layer_from_onnx(attrs: dict, x_shape, w_shape, *, name: str = "", op: str = "Conv",
                         bias: bool = False, indirect: bool = False) -> ConvLayer:
    """The :class:`ConvLayer` of an ONNX ``Conv`` or ``QLinearConv`` node.

    ``attrs``: the node's attributes (``kernel_shape``, ``strides``, ``pads``, ``dilations``,
    ``group``, ``auto_pad``; as ``onnx.helper.get_attribute_value`` returns them), ``x_shape``
    the NCHW input shape and ``w_shape`` the OIHW weight shape (both static)."""
    where = f"{name}: " if name else ""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ConfigError(f"{where}only 2-D convolutions are supported (input rank {len(x_shape)}, "
                          f"weight rank {len(w_shape)})")
    n, c, h, w = (int(d) for d in x_shape)
    c_out, c_per_group = int(w_shape[0]), int(w_shape[1])
    ks = [int(k) for k in attrs.get("kernel_shape", w_shape[2:])]
    ss = [int(s) for s in attrs.get("strides", [1, 1])]
    ds = [int(d) for d in attrs.get("dilations", [1, 1])]
    group = int(attrs.get("group", 1))
    if c_per_group * group != c:
        raise ConfigError(f"{where}weight has {c_per_group} input channels per group, input has {c} "
                          f"channels, group={group}")
    pads = resolve_pads(attrs.get("auto_pad", "NOTSET"), (h, w), ks, ss, ds, attrs.get("pads"))
    return ConvLayer(h, w, c, ks[0], ks[1], ss[0], ss[1], pads[0], pads[1], pads[2], pads[3], ds[0], ds[1],
                     group, indirect, c_out=c_out, n=n, name=name, op=op, bias=bias)
