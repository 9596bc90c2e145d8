"""Cost of one 2-D convolution (or a GEMM seen as a 1x1 convolution) under each acceleration technique.

Pure arithmetic, no ONNX: :mod:`convgen.analyze` reads a model into
:class:`~convgen.core.layer.ConvLayer` objects
and this module prices them. Conventions (also in ``docs/analyze.md``):

- **1 MAC = 2 FLOPs** (one multiply and one add). Bias adds, activations and normalization are
  not counted.
- A convolution with input ``N x Cin x H x W``, weight ``Cout x Cin/G x KH x KW`` and output
  ``N x Cout x OH x OW`` does ``N*OH*OW * Cout * (Cin/G)*KH*KW`` MACs: the background notes'
  ``H*W*Cout*(K^2*Cin)`` with groups and batch.
- **im2col** (explicit): the patch matrix has one row per output position and one column per
  (input channel, kernel tap): ``N*OH*OW * Cin*KH*KW`` elements; its *blow-up* is that over the
  input activation size.
- **Indirect convolution** (Dukhan 2019): one pointer per (output position, kernel tap),
  ``N*OH*OW * KH*KW`` entries, shared by all channels and groups (NHWC rows).
- **Winograd F(2x2,3x3)** (Lavin & Gray 2016) applies to 3x3, stride 1, dilation 1 kernels: each
  2x2 output tile of each (output channel, input channel) pair costs 16 element-wise multiplies
  instead of 2*2*9 = 36. Transforms (additions only) are not counted.
- **Systolic array**: a layer is ``G`` im2col GEMMs ``M x K x Ng`` with ``M = N*OH*OW``,
  ``K = Cin/G*KH*KW``, ``Ng = Cout/G``; output tiles are ``rows x cols`` (rows over M, cols over
  Ng, as ``golden.gemm.tile_schedule``), streamed back to back:
  ``SystolicConfig.tile_cycles(K) + (tiles - 1) * SystolicConfig.tile_period(K)``, the exact
  formula that the RTL regression checks. No second copy of the formula lives here.
"""

from __future__ import annotations

from convgen.core.layer import ConvLayer
from convgen.core.params import ConfigError, check_int

__all__ = ["macs", "flops", "params", "im2col_elements", "indirection_entries",
           "winograd_applies", "winograd_multiplies", "direct_tile_multiplies", "systolic_cycles",
           "scalesim_cycles", "gemm_dims", "recommend", "what_if", "traffic_bytes",
           "depthwise_separable_ratio", "group_ratio", "bottleneck_ratio", "lowrank_ratio",
           "pruning_ratio"]

def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---- counts -------------------------------------------------------------------------------
def macs(L: ConvLayer) -> int:
    return L.positions * L.c_out * (L.c // L.groups) * L.kh * L.kw


def flops(L: ConvLayer) -> int:
    """2 FLOPs per MAC (multiply + add)."""
    return 2 * macs(L)


def params(L: ConvLayer) -> int:
    if not L.weight_is_param:
        return 0
    return L.c_out * (L.c // L.groups) * L.kh * L.kw + (L.c_out if L.bias else 0)


def im2col_elements(L: ConvLayer) -> int:
    return L.positions * L.c * L.kh * L.kw


def indirection_entries(L: ConvLayer) -> int:
    return L.positions * L.kh * L.kw


def winograd_applies(L: ConvLayer) -> bool:
    return L.kh == L.kw == 3 and L.stride == (1, 1) and L.dilation == (1, 1)


def winograd_tiles(L: ConvLayer) -> int:
    """2x2 output tiles (edge tiles padded) over the batch."""
    return L.n * _cdiv(L.out_h, 2) * _cdiv(L.out_w, 2)


def winograd_multiplies(L: ConvLayer) -> int:
    """Element-wise multiplies of F(2x2,3x3): 16 per tile per (Cout, Cin/G) pair."""
    if not winograd_applies(L):
        raise ConfigError(f"{L.name}: Winograd F(2x2,3x3) needs a 3x3 kernel, stride 1, dilation 1")
    return 16 * winograd_tiles(L) * L.c_out * (L.c // L.groups)


def direct_tile_multiplies(L: ConvLayer) -> int:
    """Multiplies of direct convolution over the same 2x2 tiles: 2*2*9 = 36 per tile and pair."""
    return 4 * L.kh * L.kw * winograd_tiles(L) * L.c_out * (L.c // L.groups)


# ---- systolic array -----------------------------------------------------------------------
def gemm_dims(L: ConvLayer, winograd: bool = False):
    """(gemms, M, K, N) of the layer on a GEMM engine.

    im2col: ``G`` GEMMs ``N*OH*OW x (Cin/G)*KH*KW x Cout/G``. Winograd F(2x2,3x3) (Lavin & Gray
    2016, section 4): ``16*G`` GEMMs ``tiles x Cin/G x Cout/G``, one per transformed position.
    """
    cg, ng = L.c // L.groups, L.c_out // L.groups
    if winograd:
        if not winograd_applies(L):
            raise ConfigError(f"{L.name}: Winograd F(2x2,3x3) does not apply")
        return 16 * L.groups, winograd_tiles(L), cg, ng
    return L.groups, L.positions, cg * L.kh * L.kw, ng


def systolic_cycles(L: ConvLayer, cfg, winograd: bool = False) -> dict:
    """Cycles of the layer on the convgen array ``cfg`` (a ``SystolicConfig``), all tiles back to
    back with no stalls, and the utilization ``multiplies / (cycles * PEs)``."""
    g, m, k, n = gemm_dims(L, winograd)
    tiles = g * _cdiv(m, cfg.rows) * _cdiv(n, cfg.cols)
    cycles = cfg.tile_cycles(k) + (tiles - 1) * cfg.tile_period(k)
    work = g * m * k * n
    return {"tiles": tiles, "cycles": cycles, "ideal_cycles": g * cfg.ideal_cycles(m, k, n),
            "multiplies": work, "utilization": work / (cycles * cfg.rows * cfg.cols)}


def scalesim_cycles(L: ConvLayer, rows: int, cols: int, dataflow: str, winograd: bool = False) -> dict:
    """SCALE-Sim-style estimate (Samajdar et al. 2018): folds one after another, no overlap.

    Per fold, OS: ``K + R + C - 2`` over ``ceil(M/R)*ceil(N/C)`` folds; WS: ``2R + C + M - 2``
    over ``ceil(K/R)*ceil(N/C)`` folds (the weights of a fold stay while all M rows stream).
    """
    g, m, k, n = gemm_dims(L, winograd)
    if dataflow == "os":
        folds, per = _cdiv(m, rows) * _cdiv(n, cols), k + rows + cols - 2
    elif dataflow == "ws":
        folds, per = _cdiv(k, rows) * _cdiv(n, cols), 2 * rows + cols + m - 2
    else:
        raise ConfigError(f"dataflow must be one of 'os', 'ws', not {dataflow!r}")
    return {"folds": g * folds, "cycles": g * folds * per}


# ---- mapping ------------------------------------------------------------------------------
def recommend(L: ConvLayer, cols: int | None = None) -> str:
    """Winograd for 3x3 stride-1 (non-depthwise) kernels, GEMM on the array otherwise."""
    if L.kind == "depthwise":
        note = "depthwise: 1 output channel per group"
        if cols is not None and cols > 1:
            note += f", uses 1 of {cols} array columns"
        return f"im2col-GEMM ({note})"
    if winograd_applies(L):
        return "Winograd F(2x2,3x3)"
    if L.kh == L.kw == 1 and L.stride == (1, 1) and L.pads == (0, 0, 0, 0):
        return "GEMM (1x1: no im2col)"
    return "im2col-GEMM"


# ---- what-if rewrites of a standard KxK convolution (ratios against the original) ---------
def depthwise_separable_ratio(k2: int, cin: int, cout: int) -> float:
    """(K^2*Cin + Cin*Cout) / (K^2*Cin*Cout) = 1/Cout + 1/K^2 (MobileNet, Howard et al. 2017)."""
    return (k2 * cin + cin * cout) / (k2 * cin * cout)


def group_ratio(groups: int) -> float:
    return 1 / groups


def bottleneck_ratio(k2: int, cin: int, cout: int, reduction: int) -> dict:
    """1x1 Cin->Cmid, KxK Cmid->Cmid, 1x1 Cmid->Cout with Cmid = Cin // reduction (He et al. 2016).

    ``kxk``: the KxK alone against the original; ``block``: all three convolutions."""
    mid = max(1, cin // reduction)
    full = k2 * cin * cout
    return {"mid": mid, "kxk": k2 * mid * mid / full, "block": (cin * mid + k2 * mid * mid + mid * cout) / full}


def lowrank_ratio(k: int, cin: int, cout: int, mid: int | None = None) -> float:
    """KxK -> Kx1 (Cin->Cmid) then 1xK (Cmid->Cout), Cmid = min(Cin, Cout): 2/K when Cin = Cout."""
    mid = min(cin, cout) if mid is None else mid
    return k * mid * (cin + cout) / (k * k * cin * cout)


def pruning_ratio(sparsity: float) -> float:
    """Structured pruning at sparsity s keeps (1 - s) of the MACs and parameters."""
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity must be in [0, 1), not {sparsity!r}")
    return 1 - sparsity


def traffic_bytes(L: ConvLayer, dtype: str) -> int:
    """Bytes moved once each: input, output and weights. fp32: 4 bytes each; int8: 1 byte for
    activations and weights, 4 for an int32 bias."""
    bias = L.c_out if (L.bias and L.weight_is_param) else 0
    weights = params(L) - bias
    acts = L.in_elements + L.out_elements
    if dtype == "fp32":
        return 4 * (acts + weights + bias)
    if dtype == "int8":
        return acts + weights + 4 * bias
    raise ConfigError(f"dtype must be one of 'fp32', 'int8', not {dtype!r}")


def what_if(L: ConvLayer, *, groups: int = 4, reduction: int = 4, sparsity: float = 0.5) -> dict:
    """MAC and parameter ratios of each rewrite of ``L`` (per output position, so the spatial
    size cancels; the rewrite keeps L's stride on its first convolution)."""
    k2 = L.kh * L.kw
    cin, cout = L.c // L.groups, L.c_out
    out = {"depthwise_separable": depthwise_separable_ratio(k2, cin, cout),
           "bottleneck_kxk": bottleneck_ratio(k2, cin, cout, reduction)["kxk"],
           "bottleneck_block": bottleneck_ratio(k2, cin, cout, reduction)["block"],
           "pruned": pruning_ratio(sparsity),
           "int8_traffic": traffic_bytes(L, "int8") / traffic_bytes(L, "fp32")}
    g = check_int("groups", groups, 1)
    out["grouped"] = group_ratio(g) if (L.c % g == 0 and L.c_out % g == 0) else None
    out["lowrank"] = lowrank_ratio(L.kh, cin, cout) if L.kh == L.kw and L.kh > 1 else None
    return out
