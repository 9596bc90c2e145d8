"""A quantized ONNX network with every convolution on the ConvEngine RTL.

:func:`run_network` executes a network read by :func:`convgen.golden.network.load` (QOperator
or QDQ models from ``onnxruntime.quantization.quantize_static``) with its QLinearConv steps on
one engine build, and every other quantized op on the host through the golden models (ORT's
exact integer semantics, docs/network.md). It compares every layer's output, and the graph
output, with ONNX Runtime.

1. **Plan.** A first pass through the golden executor records each convolution's shape (the
   executor's own convolution, so this pass costs about as much as NumPy convolution of the
   network). One :class:`~convgen.hdl.engine.EngineConfig` holds every layer
   (:func:`convgen.sim.engine.engine_config_for`), and every layer is checked against it before
   anything is built: a layer the engine cannot run is one error naming the node.
2. **Build** the free-running engine testbench once (cached).
3. **Run.** Each convolution runs on the RTL when the network reaches it, with its input as the
   network computed it (so an RTL error propagates as it would in hardware); the simulator
   runs free, one process per layer, with memory images written in bulk.
4. **Compare** every step's output with ORT's (``golden.network.compare``).

Per layer it records cycles (the engine's counter), the formula, SCALE-Sim's no-overlap OS
cycles ``ceil(M/R)*ceil(N/C)*(K+R+C-2)``, utilization and wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from convgen.core.params import ConfigError
from convgen.golden import engine as ge
from convgen.golden import network as gn
from convgen.hdl.engine import EngineConfig

from .engine import EngineBuild, build_engine, engine_config_for, engine_form, formula_cycles, job_from_quant, \
    run_layers, y_from_words

__all__ = ["ConvRun", "NetworkRun", "EngineExecutor", "quant_conv", "plan_network", "run_network",
           "scalesim_os_cycles", "layer_inputs", "layers_engine", "run_layer"]


def scalesim_os_cycles(layer, rows: int, cols: int) -> int:
    """SCALE-Sim's output-stationary cycles without overlap: ``ceil(M/R)*ceil(N/C)*(K+R+C-2)``
    with M = output pixels, N = output channels, K = kh*kw*C_in/groups (per group, times the
    groups)."""
    m = layer.out_h * layer.out_w
    n = layer.c_out // layer.groups
    k = layer.kh * layer.kw * (layer.c // layer.groups)
    return layer.groups * -(-m // rows) * -(-n // cols) * (k + rows + cols - 2)


def quant_conv(q: gn.QConv) -> ge.QuantConv:
    """The engine's form of one QLinearConv of the network (ORT's float32 requantization,
    rounding "onnx"). ConfigError if the weight zero point differs between channels (the engine
    subtracts one per tensor)."""
    wz = np.asarray(q.w_zero_point).reshape(-1)
    if wz.size > 1 and not (wz == wz[0]).all():
        raise ConfigError("per-channel weight zero points are not supported by the engine (one per tensor)")
    dt = np.int8 if q.signed else np.uint8
    arrays = {"x": np.asarray(q.x).astype(dt), "x_scale": np.float32(q.x_scale),
              "x_zero_point": np.array(q.x_zero_point, dt), "w": np.asarray(q.w).astype(np.int8),
              "w_scale": np.asarray(q.w_scale, np.float32), "w_zero_point": np.int8(wz[0]),
              "y_scale": np.float32(q.y_scale), "y_zero_point": np.array(q.y_zero_point, dt),
              "B": np.asarray(q.bias).astype(np.int64), "strides": np.array(q.strides), "pads": np.array(q.pads),
              "dilations": np.array(q.dilations), "group": np.array(q.group)}
    return ge.quant_conv_from_arrays(arrays)


@dataclass
class ConvRun:
    """One convolution of the network on the RTL."""

    name: str
    kind: str
    shape: str
    macs: int
    cycles: int
    formula_cycles: int
    formula_exact: bool
    scalesim_cycles: int
    utilization: float
    wall_seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class NetworkRun:
    output: np.ndarray
    convs: list[ConvRun]
    rows: list[dict]                 # golden.network.compare rows: every step against ORT
    config: EngineConfig
    simulator: str
    build_seconds: float
    wall_seconds: float
    tensors: dict = field(repr=False, default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return all(r["mismatches"] == 0 for r in self.rows)

    @property
    def first_mismatch(self) -> dict | None:
        return next((r for r in self.rows if r["mismatches"]), None)

    def totals(self) -> dict:
        macs = sum(c.macs for c in self.convs)
        cycles = sum(c.cycles for c in self.convs)
        pes = self.config.rows * self.config.cols
        return {"convs": len(self.convs), "macs": macs, "cycles": cycles,
                "formula_cycles": sum(c.formula_cycles for c in self.convs),
                "scalesim_cycles": sum(c.scalesim_cycles for c in self.convs),
                "utilization": round(macs / (cycles * pes), 4) if cycles else 0.0,
                "bit_exact": self.bit_exact, "steps_compared": len(self.rows),
                "build_seconds": round(self.build_seconds, 1), "wall_seconds": round(self.wall_seconds, 1)}


def _golden_convs(net: gn.Network, x) -> tuple[list, gn.Result]:
    """One pass of the golden executor: every convolution it met (with its input), and the result."""
    seen: list = []

    def record(q):
        seen.append(q)
        return gn.golden_conv(q)

    return seen, gn.run(net, x, conv=record)


def plan_network(net: gn.Network, x, *, rows: int, cols: int) -> tuple[EngineConfig, list]:
    """The engine that holds every convolution of ``net`` on input ``x``, and the convolutions
    (:class:`golden.network.QConv`, in order). ConfigError naming the node for a layer the
    engine cannot run."""
    seen, _ = _golden_convs(net, x)
    if not seen:
        raise ConfigError("the model has no convolution to run on the engine")
    quants = []
    for q in seen:
        try:
            quants.append(quant_conv(q))
        except ConfigError as e:
            raise ConfigError(f"node {q.name!r} (QLinearConv): {e}") from None
    quants = [engine_form(qc, rows) for qc in quants]        # as the engine runs them
    cfg = engine_config_for([qc.layer for qc in quants], rows=rows, cols=cols, rounding="onnx")
    for q, qc in zip(seen, quants):
        try:
            job_from_quant(qc, cfg)
        except ConfigError as e:
            raise ConfigError(f"node {q.name!r} (QLinearConv): {e}") from None
    return cfg, seen


class EngineExecutor:
    """The ``conv`` hook of :func:`golden.network.run` that runs each layer on the RTL."""

    def __init__(self, build: EngineBuild, *, progress=None, total: int | None = None, seed: int = 1,
                 stall: int = 0, latency: int = 1, jitter: int = 0):
        self.build = build
        self.runs: list[ConvRun] = []
        self._say = progress or (lambda text: None)
        self._total = total
        self._timing = dict(seed=seed, stall=stall, latency=latency, jitter=jitter)

    def __call__(self, q: gn.QConv) -> np.ndarray:
        t0 = time.monotonic()
        cfg = self.build.config
        orig = quant_conv(q)
        qc = engine_form(orig, cfg.rows)
        job = job_from_quant(qc, cfg)
        r = run_layers(self.build, [job], **self._timing)
        lr = r.layers[0]
        if lr.status != "OK":
            raise ConfigError(f"the engine ended layer {q.name!r} with status {lr.status}")
        y = y_from_words(lr.y_words, job, bool(qc.params.act_min.min() < 0))
        L = orig.layer
        f, exact = formula_cycles(cfg, job, latency=self._timing["latency"])
        run = ConvRun(q.name, L.kind, f"{L.h}x{L.w}x{L.c}->{L.out_h}x{L.out_w}x{L.c_out} k{L.kh}x{L.kw}/s{L.stride_h}",
                      L.macs, lr.cycles, f, exact and not self._timing["stall"] and not self._timing["jitter"],
                      scalesim_os_cycles(L, cfg.rows, cfg.cols), L.macs / (lr.cycles * cfg.rows * cfg.cols),
                      time.monotonic() - t0)
        self.runs.append(run)
        n = f"/{self._total}" if self._total else ""
        self._say(f"conv {len(self.runs)}{n} {q.name}: {run.shape}, {run.cycles:,} cycles, "
                  f"utilization {run.utilization:.1%}")
        return y.transpose(2, 0, 1)[None]


def run_network(model, x=None, *, rows: int = 8, cols: int = 8, simulator: str = "verilator", progress=None,
                seed: int = 1, stall: int = 0, latency: int = 1, jitter: int = 0, input_seed: int = 0,
                input_shape=None) -> NetworkRun:
    """Run ``model`` (path, bytes or ModelProto of a quantized ONNX model) on input ``x``
    (float32 of the model's input shape; default: seeded standard-normal) with every
    convolution on a ``rows x cols`` engine, and compare every step with ONNX Runtime.
    ``input_shape`` fixes dynamic input dimensions. ``seed``/``stall``/``latency``/``jitter``:
    the memory model's timing (as in :func:`convgen.sim.engine.run_conv`)."""
    t0 = time.monotonic()
    say = progress or (lambda text: None)
    net = gn.load(model, input_shape)
    if x is None:
        x = np.random.default_rng(input_seed).standard_normal(net.input_shape).astype(np.float32)
    say(f"planning: {len(net.steps)} steps, {len(net.conv_steps)} convolutions")
    cfg, convs = plan_network(net, x, rows=rows, cols=cols)
    jobs = [job_from_quant(engine_form(quant_conv(q), rows), cfg) for q in convs]
    words = max(max(j.words.values()) for j in jobs)
    mem_words = max(1 << 16, 1 << (words - 1).bit_length())
    say(f"building the {rows}x{cols} engine for {simulator} (cached after the first time)")
    b = build_engine(cfg, simulator, mem_words=mem_words)
    ex = EngineExecutor(b, progress=say, total=len(convs), seed=seed, stall=stall, latency=latency, jitter=jitter)
    say("running the network")
    res = gn.run(net, x, conv=ex)
    say("comparing every step with ONNX Runtime")
    rows_ = gn.compare(model, x, net=net, result=res)
    return NetworkRun(res.output, ex.runs, rows_, cfg, simulator, b.build_seconds, time.monotonic() - t0,
                      tensors=res.tensors)


# ---- one convolution per test: sharding a network's regression --------------------------------
def layer_inputs(model, x=None, *, input_seed: int = 0) -> list:
    """Every convolution of ``model`` with the input the golden executor gives it (the ORT-exact
    chain), as :class:`golden.network.QConv` objects, cached on disk by a hash of the model and
    the input, behind a lock (pytest-xdist workers and execnet hosts that share the cache
    compute it once). Each layer can then run on the RTL on its own (:func:`run_layer`)."""
    import hashlib
    import pickle

    from convgen.core.cache import cache_root
    from convgen.core.fileio import atomic_write_bytes

    from .build import locked

    net = gn.load(model)
    if x is None:
        x = np.random.default_rng(input_seed).standard_normal(net.input_shape).astype(np.float32)
    m, _ = gn._load_model(model)
    key = hashlib.sha256(m.SerializeToString() + np.asarray(x, np.float32).tobytes()).hexdigest()[:20]
    path = cache_root() / "layers" / f"{key}.pkl"
    with locked(path.with_suffix(".lock")):
        if not path.exists():
            seen, res = _golden_convs(net, x)
            outs = [res.tensors[s.output] for s in net.conv_steps]
            atomic_write_bytes(path, pickle.dumps(list(zip(seen, outs))))
        return pickle.loads(path.read_bytes())


def layers_engine(layers: list, *, rows: int, cols: int) -> tuple[EngineConfig, int]:
    """One engine (and testbench memory size) for every layer of :func:`layer_inputs`, so that
    every shard of a network uses the same cached build."""
    quants = [engine_form(quant_conv(q), rows) for q, _ in layers]
    cfg = engine_config_for([qc.layer for qc in quants], rows=rows, cols=cols, rounding="onnx")
    words = max(max(job_from_quant(qc, cfg).words.values()) for qc in quants)
    return cfg, max(1 << 16, 1 << (words - 1).bit_length())


def run_layer(q: gn.QConv, expected: np.ndarray, config: EngineConfig, mem_words: int,
              simulator: str = "verilator") -> ConvRun:
    """One convolution of a network on the RTL, checked against ``expected`` (the golden
    executor's output, which equals ORT's: tests/test_network_golden.py); ConfigError naming the
    layer and the number of differing outputs otherwise."""
    ex = EngineExecutor(build_engine(config, simulator, mem_words=mem_words))
    y = ex(q)
    bad = int((y != np.asarray(expected)).sum())
    if bad:
        raise ConfigError(f"layer {q.name!r}: {bad} of {y.size} outputs differ from the golden executor")
    return ex.runs[0]
