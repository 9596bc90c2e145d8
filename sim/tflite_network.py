"""An int8 TFLite model with every CONV_2D and DEPTHWISE_CONV_2D on the ConvEngine RTL, in the
requantizer mode of one TFLite path, checked against the TFLite interpreter on that path.

:func:`run_tflite` reads the model (:func:`convgen.golden.tflite_net.read_model`), and:

1. **Plans**: one golden pass of the path (``golden.tflite_net.run_golden``) gives every
   convolution's shape; one :class:`~convgen.hdl.engine.EngineConfig` in the path's rounding
   (``ref``: ``tflite``, ``opt``: ``tflite_opt``, ``xnnpack``: ``xnnpack``) holds them all, and
   every layer is checked against it before anything is built.
2. **Builds** the free-running engine testbench once (cached).
3. **Runs** the graph: each convolution on the RTL with its input as the network computed it
   (an RTL error propagates as it would in hardware), with the requantization parameters the
   path derives (``tflite_fixtures.path_params``: TFLite's multipliers or XNNPACK's float32
   scales, that path's clamp bounds, ``round_away`` on the optimized depthwise kernel's last
   ``C mod 8`` channels); RESHAPE on the host.
4. **Compares** layer by layer and at the output with LiteRT on the same path: each
   operator's output (RTL or host) against LiteRT running a one-operator model of that layer
   on the same input (``golden.tflite_net.single_op_model``: what the interpreter computes for
   that layer, also where XNNPACK keeps its intermediate tensors to itself), and the network's
   output against LiteRT running the whole model.

On the engine: CONV_2D, DEPTHWISE_CONV_2D and (on the ``opt`` and ``xnnpack`` paths)
FULLY_CONNECTED as a 1x1 convolution. On the host: ADD and MUL (also broadcasting),
AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, SOFTMAX, LOGISTIC, HARD_SWISH, CONCATENATION, PAD, RESHAPE,
QUANTIZE and DEQUANTIZE (float32 or uint8 model I/O; float outputs compared bit for bit), and the
reference path's FULLY_CONNECTED, which rounds once, ties away from zero (``golden.tflite_net.fc_reference``: no
requantizer mode does that); golden/tflite_ops.py has the host operators' per-path semantics.

**Part of a network.** ``layers=(a, b)`` runs only engine operators ``a..b`` (numbered from 0 in
execution order, engine operators only) on the RTL; the others run on the path's golden model,
so the layers after them get the input the path computes (as ``run onnx --layers``).

**A mismatch.** :func:`save_mismatch` writes the first mismatching operator's input(s),
LiteRT's output and this run's output as ``.npy`` and, for an engine operator, the layer as a
``run conv --layer`` ``.npz``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from convgen.core.params import ConfigError
from convgen.golden import tflite_fixtures as F
from convgen.golden import tflite_net as N
from convgen.hdl.engine import EngineConfig

from .engine import build_engine, engine_config_for, engine_form, formula_cycles, job_from_quant, run_layers, \
    y_from_words
from .network import _file_stem, check_layers, scalesim_os_cycles

__all__ = ["TFLiteLayerRun", "TFLiteRun", "plan_tflite", "run_tflite", "save_mismatch"]


@dataclass
class TFLiteLayerRun:
    """One operator of the model: on the RTL (a convolution or FULLY_CONNECTED) or on the host."""

    index: int
    name: str
    kind: str
    shape: str
    on: str                     # "RTL", "golden" (an engine operator outside ``layers``) or "host"
    macs: int = 0
    cycles: int | None = None
    formula_cycles: int | None = None
    scalesim_cycles: int | None = None
    utilization: float | None = None
    wall_seconds: float = 0.0
    mismatches: int | None = None        # against LiteRT's one-operator model (None: RESHAPE)
    outputs: int = 0
    conv: int | None = None              # engine operator number (``layers`` counts these)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TFLiteRun:
    output: np.ndarray
    litert_output: np.ndarray
    layers: list
    path: str
    config: EngineConfig
    simulator: str
    build_seconds: float
    wall_seconds: float
    tensors: dict = field(repr=False, default_factory=dict)
    rtl_layers: tuple | None = None      # (first, last) engine operator run on the RTL; None: all
    graph: N.Graph | None = field(repr=False, default=None)
    input: np.ndarray | None = field(repr=False, default=None)
    model: bytes = field(repr=False, default=b"")

    @property
    def output_mismatches(self) -> int:
        return N.count_differ(self.output, self.litert_output)

    @property
    def bit_exact(self) -> bool:
        return self.output_mismatches == 0 and all(not r.mismatches for r in self.layers)

    @property
    def first_mismatch(self) -> dict | None:
        r = next((r for r in self.layers if r.mismatches), None)
        if r is not None:
            return {"layer": r.name, "index": r.index, "mismatches": r.mismatches, "outputs": r.outputs}
        if self.output_mismatches:
            return {"layer": "output", "mismatches": self.output_mismatches, "outputs": int(self.output.size)}
        return None

    def totals(self) -> dict:
        rtl = [r for r in self.layers if r.on == "RTL"]
        macs = sum(r.macs for r in rtl)
        cycles = sum(r.cycles for r in rtl)
        pes = self.config.rows * self.config.cols
        return {"path": self.path, "mode": F.PATH_MODE[self.path], "operators": len(self.layers),
                "convs": sum(1 for r in self.layers if r.conv is not None), "convs_rtl": len(rtl),
                "layers": None if self.rtl_layers is None else f"{self.rtl_layers[0]}-{self.rtl_layers[1]}",
                "macs": macs, "cycles": cycles,
                "formula_cycles": sum(r.formula_cycles for r in rtl),
                "scalesim_cycles": sum(r.scalesim_cycles for r in rtl),
                "utilization": round(macs / (cycles * pes), 4) if cycles else 0.0,
                "layer_outputs_compared": sum(r.outputs for r in self.layers),
                "layer_mismatches": sum(r.mismatches or 0 for r in self.layers),
                "outputs": int(self.output.size), "output_mismatches": self.output_mismatches,
                "bit_exact": self.bit_exact, "build_seconds": round(self.build_seconds, 1),
                "wall_seconds": round(self.wall_seconds, 1)}


def plan_tflite(graph: N.Graph, x: np.ndarray, path: str, *, rows: int, cols: int) -> EngineConfig:
    """The engine, in ``path``'s rounding, that holds every convolution of ``graph`` on ``x``;
    ConfigError naming the operator for a layer it cannot run."""
    seen = []
    N.run_golden(graph, x, path, conv=lambda op, fx: seen.append((op, fx)) or F.golden_path(fx, path))
    if not seen:
        raise ConfigError("the model has no CONV_2D or DEPTHWISE_CONV_2D to run on the engine")
    quants = []
    for op, fx in seen:
        try:
            quants.append(engine_form(N.quant_conv_for(fx, path), rows))
        except ConfigError as e:
            raise ConfigError(f"operator {op.index} ({op.kind}): {e}") from None
    mode = F.PATH_MODE[path]
    try:
        cfg = engine_config_for([q.layer for q in quants], rows=rows, cols=cols, rounding=mode)
    except ConfigError:
        for (op, _), q in zip(seen, quants):
            try:
                engine_config_for([q.layer], rows=rows, cols=cols, rounding=mode)
            except ConfigError as e:
                raise ConfigError(f"operator {op.index} ({op.kind}) is too large for the engine: {e}") from None
        raise
    for (op, _), q in zip(seen, quants):
        try:
            job_from_quant(q, cfg)
        except ConfigError as e:
            raise ConfigError(f"operator {op.index} ({op.kind}): {e}") from None
    return cfg


def run_tflite(model: bytes, x: np.ndarray, path: str, *, rows: int = 8, cols: int = 8,
               simulator: str = "verilator", progress=None, layers: tuple[int, int] | None = None) -> TFLiteRun:
    """Run ``model`` (``.tflite`` bytes) on ``x`` (int8, the model's input shape) with every
    convolution (``layers``: engine operators ``first..last`` only) on a ``rows x cols`` engine
    in ``path``'s mode; compare every operator and the output with LiteRT on ``path`` (module
    doc)."""
    t0 = time.monotonic()
    say = progress or (lambda text: None)
    if path not in F.PATHS:
        raise ConfigError(f"path must be one of {', '.join(F.PATHS)}, not {path!r}")
    graph = N.read_model(model)
    layers = check_layers(layers, len(graph.engine_ops(path)))
    say(f"planning: {len(graph.ops)} operators, {len(graph.engine_ops(path))} on the engine, path {path} "
        f"({F.PATH_MODE[path]})")
    cfg = plan_tflite(graph, x, path, rows=rows, cols=cols)
    say(f"building the {rows}x{cols} engine ({cfg.rounding}) for {simulator} (cached after the first time)")
    b = build_engine(cfg, simulator)
    layers_run: list[TFLiteLayerRun] = []
    total = len(graph.engine_ops(path))

    def conv(op, fx):
        t1 = time.monotonic()
        k = sum(1 for r_ in layers_run if r_.conv is not None)
        x_in = fx.x.reshape(graph.tensors[op.inputs[0]].shape)
        out_shape = graph.tensors[op.outputs[0]].shape
        q = N.quant_conv_for(fx, path)
        if layers is not None and not layers[0] <= k <= layers[1]:
            y = F.golden_path(fx, path).reshape(out_shape)
            want = F.run_path(N.single_op_model(graph, op), x_in, path)
            bad = N.count_differ(y, want)
            L = q.layer
            layers_run.append(TFLiteLayerRun(op.index, op.name, op.kind, _conv_shape(L), "golden", L.macs,
                                             formula_cycles=formula_cycles(cfg, job_from_quant(engine_form(q, rows),
                                                                                               cfg))[0],
                                             scalesim_cycles=scalesim_os_cycles(L, rows, cols),
                                             wall_seconds=time.monotonic() - t1, mismatches=bad,
                                             outputs=int(want.size), conv=k))
            return y
        job = job_from_quant(engine_form(q, rows), cfg)
        r = run_layers(b, [job])
        lr = r.layers[0]
        if lr.status != "OK":
            raise ConfigError(f"the engine ended operator {op.index} ({op.kind}) with status {lr.status}")
        y = y_from_words(lr.y_words, job, True).reshape(out_shape)
        want = F.run_path(N.single_op_model(graph, op), x_in, path)
        L = q.layer
        f, _ = formula_cycles(cfg, job)
        shape = _conv_shape(L)
        bad = N.count_differ(y, want)
        layers_run.append(TFLiteLayerRun(op.index, op.name, op.kind, shape, "RTL", L.macs, lr.cycles, f,
                                         scalesim_os_cycles(L, rows, cols), L.macs / (lr.cycles * rows * cols),
                                         time.monotonic() - t1, bad, int(want.size), conv=k))
        say(f"conv {k + 1}/{total} (#{k}) {op.name}: {shape}, {lr.cycles:,} cycles, "
            + ("equal to LiteRT" if bad == 0 else f"{bad} outputs differ from LiteRT"))
        return y

    say("running the network")
    values = N.run_golden(graph, x, path, conv=conv)
    for op in graph.ops:
        if not N.on_engine(op, path):
            # host operators are compared with LiteRT running them alone as well (a RESHAPE
            # only moves data; XNNPACK may leave an operator to TFLite's kernels: not checked)
            t1 = time.monotonic()
            t = graph.tensors[op.outputs[0]]
            bad = outputs = None
            if op.kind not in N.NO_DATA_OPS:
                want = N.litert_op(graph, op, values, path)
                got = values[op.outputs[0]]
                bad = N.count_differ(got, want)
                outputs = int(want.size)
            layers_run.insert(sum(1 for r in layers_run if r.index < op.index),
                              TFLiteLayerRun(op.index, op.name, op.kind, "x".join(map(str, t.shape)), "host",
                                             wall_seconds=time.monotonic() - t1, mismatches=bad, outputs=outputs or 0))
    say(f"comparing the output with LiteRT ({path})")
    out = values[graph.outputs[0]]
    ref = F.run_path(model, x, path)
    return TFLiteRun(out, ref, layers_run, path, cfg, simulator, b.build_seconds, time.monotonic() - t0, values,
                     rtl_layers=layers, graph=graph, input=np.asarray(x), model=model)


def _conv_shape(L) -> str:
    return f"{L.h}x{L.w}x{L.c}->{L.out_h}x{L.out_w}x{L.c_out} k{L.kh}x{L.kw}/s{L.stride_h}"


def save_mismatch(res: TFLiteRun, directory) -> dict | None:
    """Write the first mismatching operator of ``res`` into ``directory`` (all files or none,
    ``core.fileio.atomic_directory``; other files there are kept) and return the
    first-mismatch row with the paths (the keys ``commands.onnx.mismatch_line`` reads); None
    when the run is bit-exact.

    Files, prefixed ``conv<k>-<operator>`` for an engine operator (``op<i>-<operator>`` for a
    host one, ``output`` when only the model's output differs): ``.input.npy`` (the input as
    the run computed it; ``.input<i>.npy`` for several), ``.expected.npy`` (LiteRT on the
    path, the operator alone), ``.got.npy`` (this run); for an engine operator also
    ``.layer.npz`` (``golden.tflite_net.conv_arrays``: ``convgen run conv --layer ... --layout
    nhwc --rounding <mode>``; on ``opt`` a depthwise layer's scalar channels round away, which
    that format does not carry)."""
    from pathlib import Path

    from convgen.core.fileio import atomic_directory

    r = next((r for r in res.layers if r.mismatches), None)
    if r is None and not res.output_mismatches:
        return None
    g = res.graph
    if r is not None:
        op = g.ops[r.index]
        ins = [res.tensors[i] for i in N._data_inputs(g, op)]
        expected = N.litert_op(g, op, res.tensors, res.path)
        got = res.tensors[op.outputs[0]]
        stem = _file_stem(f"conv{r.conv}-{op.name}" if r.conv is not None else f"op{op.index}-{op.name}")
        name, kind, bad = op.name, op.kind, r.mismatches
    else:
        op, ins, expected, got = None, [res.input], res.litert_output, res.output
        stem, name, kind, bad = "output", "output", "model output", res.output_mismatches
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(expected, np.float64)) \
        if np.shape(got) == np.shape(expected) else np.zeros(1)
    info = {"name": name, "op": kind, "conv": None if r is None else r.conv, "on_rtl": r is not None and r.on == "RTL",
            "mismatches": bad, "shape": list(np.shape(expected)), "max_diff": float(diff.max()),
            "directory": str(directory), "tensors": {}, "layer": None, "waveform": None,
            "waveform_error": "run tflite saves no waveform; run the .layer.npz with convgen run conv --waves"
            if r is not None and r.conv is not None else "not an operator run on the RTL"}
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        in_tensors = [g.tensors[i] for i in (N._data_inputs(g, op) if op is not None else g.inputs)]
        out_tensor = g.tensors[op.outputs[0] if op is not None else g.outputs[0]]
        arrays = {("input" if len(ins) == 1 else f"input{i}"): N.as_numpy(t, a)
                  for i, (t, a) in enumerate(zip(in_tensors, ins))}
        arrays["expected"] = N.as_numpy(out_tensor, expected)
        arrays["got"] = N.as_numpy(out_tensor, got)
        for key, a in arrays.items():
            np.save(tmp / f"{stem}.{key}.npy", a)
            info["tensors"][key] = str(directory / f"{stem}.{key}.npy")
        if r is not None and r.conv is not None:
            np.savez(tmp / f"{stem}.layer.npz", **N.conv_arrays(g.conv_fixture(op, res.tensors[op.inputs[0]]), res.path))
            info["layer"] = str(directory / f"{stem}.layer.npz")
    return info
