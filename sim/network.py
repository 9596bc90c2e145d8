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

**Part of a network.** ``layers=(a, b)`` runs only convolutions ``a..b`` on the RTL. Convolutions
are numbered from 0 in the order the network executes them (``Network.conv_steps``), counting
convolutions only, not graph nodes. The others run on the golden model, which is bit-exact with
ORT, so every RTL layer still gets the input the whole network would give it. The engine is
still the one that holds every convolution of the network, so a partial run reuses the full
run's cached build and measures the same cycles.

**The first mismatch.** :func:`save_mismatch` writes the first mismatching step's tensors (its
input, ORT's output, the RTL's output, and the layer as a ``convgen run conv --layer`` archive)
and re-runs that one convolution on an Icarus build of the same engine with waveform dumping.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convgen.core.params import ConfigError
from convgen.golden import engine as ge
from convgen.golden import network as gn
from convgen.hdl.engine import EngineConfig

from .engine import EngineBuild, build_engine, engine_config_for, engine_form, formula_cycles, job_from_quant, \
    run_layers, y_from_words

__all__ = ["ConvRun", "NetworkRun", "EngineExecutor", "quant_conv", "plan_network", "run_network",
           "scalesim_os_cycles", "layer_inputs", "layers_engine", "run_layer", "check_layers", "save_mismatch"]


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
    return ge.quant_conv_from_arrays(conv_arrays(q))


def conv_arrays(q: gn.QConv) -> dict:
    """One QLinearConv of the network as the ONNX arrays ``convgen run conv --layer`` reads
    (:func:`convgen.golden.engine.quant_conv_from_arrays`)."""
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
    return arrays


@dataclass
class ConvRun:
    """One convolution of the network: on the RTL (``on_rtl``), or on the golden model when it
    is outside the range of layers run on the RTL (then ``cycles`` and ``utilization`` are None;
    the formula and SCALE-Sim's count are still given). ``index``: its number among the
    network's convolutions, from 0."""

    name: str
    kind: str
    shape: str
    macs: int
    cycles: int | None
    formula_cycles: int
    formula_exact: bool
    scalesim_cycles: int
    utilization: float | None
    wall_seconds: float
    index: int = 0
    on_rtl: bool = True

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
    layers: tuple | None = None      # (first, last) convolution run on the RTL; None: all
    network: gn.Network | None = field(repr=False, default=None)
    input: np.ndarray | None = field(repr=False, default=None)
    queries: dict = field(repr=False, default_factory=dict)   # conv name -> the QConv the executor ran
    mem_words: int = 1 << 16
    timing: dict = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return all(r["mismatches"] == 0 for r in self.rows)

    @property
    def first_mismatch(self) -> dict | None:
        return next((r for r in self.rows if r["mismatches"]), None)

    def totals(self) -> dict:
        """Totals over the convolutions run on the RTL (all of them unless ``layers``)."""
        rtl = [c for c in self.convs if c.on_rtl]
        macs = sum(c.macs for c in rtl)
        cycles = sum(c.cycles for c in rtl)
        pes = self.config.rows * self.config.cols
        return {"convs": len(self.convs), "convs_rtl": len(rtl),
                "layers": None if self.layers is None else f"{self.layers[0]}-{self.layers[1]}",
                "macs": macs, "cycles": cycles,
                "formula_cycles": sum(c.formula_cycles for c in rtl),
                "scalesim_cycles": sum(c.scalesim_cycles for c in rtl),
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
    try:
        cfg = engine_config_for([qc.layer for qc in quants], rows=rows, cols=cols, rounding="onnx")
    except ConfigError:
        for q, qc in zip(seen, quants):                      # name the layer the engine cannot hold
            try:
                engine_config_for([qc.layer], rows=rows, cols=cols, rounding="onnx")
            except ConfigError as e:
                raise ConfigError(f"node {q.name!r} (QLinearConv) is too large for the engine: {e}") from None
        raise
    for q, qc in zip(seen, quants):
        try:
            job_from_quant(qc, cfg)
        except ConfigError as e:
            raise ConfigError(f"node {q.name!r} (QLinearConv): {e}") from None
    return cfg, seen


def check_layers(layers, n: int) -> tuple[int, int] | None:
    """``layers`` (first, last), 0-based inclusive convolution indices, checked against the
    ``n`` convolutions of a network; ConfigError otherwise. None means all."""
    if layers is None:
        return None
    a, b = (int(v) for v in layers)
    if not 0 <= a <= b < n:
        raise ConfigError(f"layers must be (first, last) with 0 <= first <= last <= {n - 1} "
                          f"(the network has {n} convolutions), not {tuple(layers)}")
    return a, b


class EngineExecutor:
    """The ``conv`` hook of :func:`golden.network.run` that runs each layer on the RTL, or,
    outside ``layers`` (first, last convolution index, inclusive), on the golden model."""

    def __init__(self, build: EngineBuild, *, progress=None, total: int | None = None, seed: int = 1,
                 stall: int = 0, latency: int = 1, jitter: int = 0, layers: tuple[int, int] | None = None):
        self.build = build
        self.runs: list[ConvRun] = []
        self.queries: dict[str, gn.QConv] = {}
        self.layers = layers
        self._say = progress or (lambda text: None)
        self._total = total
        self._timing = dict(seed=seed, stall=stall, latency=latency, jitter=jitter)

    def __call__(self, q: gn.QConv) -> np.ndarray:
        t0 = time.monotonic()
        cfg = self.build.config
        index = len(self.runs)
        self.queries[q.name] = q          # references to the network's tensors, no copies
        on_rtl = self.layers is None or self.layers[0] <= index <= self.layers[1]
        orig = quant_conv(q)
        qc = engine_form(orig, cfg.rows)
        job = job_from_quant(qc, cfg)
        L = orig.layer
        f, exact = formula_cycles(cfg, job, latency=self._timing["latency"])
        shape = f"{L.h}x{L.w}x{L.c}->{L.out_h}x{L.out_w}x{L.c_out} k{L.kh}x{L.kw}/s{L.stride_h}"
        exact = exact and not self._timing["stall"] and not self._timing["jitter"]
        scalesim = scalesim_os_cycles(L, cfg.rows, cfg.cols)
        n = f"/{self._total}" if self._total else ""
        if not on_rtl:
            y = gn.golden_conv(q)
            run = ConvRun(q.name, L.kind, shape, L.macs, None, f, exact, scalesim, None, time.monotonic() - t0,
                          index, False)
            self.runs.append(run)
            self._say(f"conv {index + 1}{n} (#{index}) {q.name}: {shape}, golden model (not in the RTL range)")
            return y
        r = run_layers(self.build, [job], **self._timing)
        lr = r.layers[0]
        if lr.status != "OK":
            raise ConfigError(f"the engine ended layer {q.name!r} with status {lr.status}")
        y = y_from_words(lr.y_words, job, bool(qc.params.act_min.min() < 0))
        run = ConvRun(q.name, L.kind, shape, L.macs, lr.cycles, f, exact, scalesim,
                      L.macs / (lr.cycles * cfg.rows * cfg.cols), time.monotonic() - t0, index, True)
        self.runs.append(run)
        self._say(f"conv {index + 1}{n} (#{index}) {q.name}: {run.shape}, {run.cycles:,} cycles, "
                  f"utilization {run.utilization:.1%}")
        return y.transpose(2, 0, 1)[None]


def run_network(model, x=None, *, rows: int = 8, cols: int = 8, simulator: str = "verilator", progress=None,
                seed: int = 1, stall: int = 0, latency: int = 1, jitter: int = 0, input_seed: int = 0,
                input_shape=None, layers: tuple[int, int] | None = None) -> NetworkRun:
    """Run ``model`` (path, bytes or ModelProto of a quantized ONNX model) on input ``x``
    (float32 of the model's input shape; default: seeded standard-normal) with every
    convolution on a ``rows x cols`` engine, and compare every step with ONNX Runtime.
    ``input_shape`` fixes dynamic input dimensions. ``seed``/``stall``/``latency``/``jitter``:
    the memory model's timing (as in :func:`convgen.sim.engine.run_conv`). ``layers``: (first,
    last) convolution index, 0-based and inclusive, run on the RTL; the others run on the golden
    model (ConfigError before any build if out of range)."""
    t0 = time.monotonic()
    say = progress or (lambda text: None)
    net = gn.load(model, input_shape)
    layers = check_layers(layers, len(net.conv_steps))
    if x is None:
        x = np.random.default_rng(input_seed).standard_normal(net.input_shape).astype(np.float32)
    say(f"planning: {len(net.steps)} steps, {len(net.conv_steps)} convolutions")
    cfg, convs = plan_network(net, x, rows=rows, cols=cols)
    jobs = [job_from_quant(engine_form(quant_conv(q), rows), cfg) for q in convs]
    words = max(max(j.words.values()) for j in jobs)
    mem_words = max(1 << 16, 1 << (words - 1).bit_length())
    say(f"building the {rows}x{cols} engine for {simulator} (cached after the first time)")
    b = build_engine(cfg, simulator, mem_words=mem_words)
    ex = EngineExecutor(b, progress=say, total=len(convs), seed=seed, stall=stall, latency=latency, jitter=jitter,
                        layers=layers)
    say("running the network")
    res = gn.run(net, x, conv=ex)
    say("comparing every step with ONNX Runtime")
    rows_ = gn.compare(model, x, net=net, result=res)
    return NetworkRun(res.output, ex.runs, rows_, cfg, simulator, b.build_seconds, time.monotonic() - t0,
                      tensors=res.tensors, layers=layers, network=net, input=x, queries=ex.queries,
                      mem_words=mem_words, timing=dict(seed=seed, stall=stall, latency=latency, jitter=jitter))


# ---- the first mismatching step: its tensors and a waveform ------------------------------------
def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "step"


def _as_type_of(a, like: np.ndarray) -> np.ndarray:
    """``a`` in the dtype of ``like`` when the values fit (the executor keeps int64)."""
    a = np.asarray(a)
    if like.dtype.kind in "iu" and a.shape == like.shape:
        info = np.iinfo(like.dtype)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(like.dtype)
    return a


#: layers longer than this get no waveform from :func:`save_mismatch` (Icarus dumps every signal:
#: about 6 kB per cycle on a 4x4 engine, and it simulates the engine at thousands of cycles per second)
WAVES_MAX_CYCLES = 200_000


def save_mismatch(res: NetworkRun, model, directory, *, waves: bool = True, progress=None,
                  waves_max_cycles: int = WAVES_MAX_CYCLES) -> dict | None:
    """Write the first mismatching step of ``res`` into ``directory`` (all files or none,
    ``core.fileio.atomic_directory``; an existing directory keeps its other files) and return
    the first-mismatch row with the paths; None when the run is bit-exact.

    Files, prefixed ``conv<index>-<node>`` for a convolution (``step<k>-<node>`` otherwise):
    ``.input.npy`` (the step's input as the network computed it; ``.input<i>.npy`` for several
    inputs), ``.expected.npy`` (ONNX Runtime's output), ``.got.npy`` (this run's output); for a
    convolution also ``.layer.npz`` (its ONNX arrays, for ``convgen run conv --layer``) and, with
    ``waves`` and the layer run on the RTL, ``.vcd``: the layer alone re-run on an Icarus build
    of the same engine with the same memory timing (``waveform_reproduces`` says whether that
    re-run gave the same wrong output). A layer of more than ``waves_max_cycles`` cycles, or a
    failing re-run, leaves the waveform out and says why in ``waveform_error``."""
    from convgen.core.fileio import atomic_directory

    from .build import SimulationFailed
    from .tools import SimulatorUnavailable

    row = res.first_mismatch
    if row is None:
        return None
    say = progress or (lambda text: None)
    net = res.network if res.network is not None else gn.load(model)
    k, step = next((i, s) for i, s in enumerate(net.steps) if s.name == row["name"])
    conv = next((c for c in res.convs if c.name == step.name), None) if step.op == "QLinearConv" else None
    stem = _file_stem(f"conv{conv.index}-{step.name}" if conv is not None else f"step{k}-{step.name}")
    expected = np.asarray(gn.ort_tensors(model, res.input, [step.output], net=net)[step.output])
    got = _as_type_of(res.tensors[step.output], expected)
    info = dict(row, conv=None if conv is None else conv.index, on_rtl=bool(conv is not None and conv.on_rtl),
                directory=str(directory), tensors={}, layer=None, waveform=None)
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        names = {}
        inputs = [res.tensors[i] for i in step.inputs]
        q = res.queries.get(step.name)
        for i, a in enumerate(inputs):
            key = "input" if len(inputs) == 1 else f"input{i}"
            if q is not None and i == 0:
                a = np.asarray(a).astype(np.int8 if q.signed else np.uint8)
            names[key] = a
        names["expected"], names["got"] = expected, got
        for key, a in names.items():
            np.save(tmp / f"{stem}.{key}.npy", np.asarray(a))
            info["tensors"][key] = str(directory / f"{stem}.{key}.npy")
        if q is not None:
            np.savez(tmp / f"{stem}.layer.npz", **conv_arrays(q))
            info["layer"] = str(directory / f"{stem}.layer.npz")
        if q is not None and conv.on_rtl and waves and conv.cycles > waves_max_cycles:
            info["waveform_error"] = (f"the layer takes {conv.cycles:,} cycles, over the waveform limit of "
                                      f"{waves_max_cycles:,}")
        elif q is not None and conv.on_rtl and waves:
            say(f"re-running conv #{conv.index} {step.name} on Icarus with waveform dumping")
            try:
                b = build_engine(res.config, "icarus", mem_words=res.mem_words)
                qc = engine_form(quant_conv(q), res.config.rows)
                job = job_from_quant(qc, res.config)
                r = run_layers(b, [job], waves=tmp / f"{stem}.vcd", **res.timing)
                y = y_from_words(r.layers[0].y_words, job, bool(qc.params.act_min.min() < 0))
                info["waveform"] = str(directory / f"{stem}.vcd")
                info["waveform_reproduces"] = bool(r.layers[0].status == "OK"
                                                   and np.array_equal(y.transpose(2, 0, 1)[None], got))
            except (SimulationFailed, SimulatorUnavailable, ConfigError) as e:
                info["waveform_error"] = str(e).splitlines()[0]
    return info


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
