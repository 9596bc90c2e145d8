"""ONNX Runtime as an oracle, configured to compute exact integer results on every CPU.

ORT picks its quantized GEMM kernels by CPU. On x86 CPUs with AVX2 (or AVX-512) but without
VNNI, the uint8-activation x int8-weight kernels (QLinearConv, QLinearMatMul, MatMulInteger,
ConvInteger, ...) use ``vpmaddubsw``, which adds each pair of neighbouring u8 x s8 products in
*saturating* int16: 255*127*2 = 64,770 becomes 32,767. Their results are then not the exact
convolution, by up to dozens of LSB after requantization (../shared/TOOLCHAIN.md; measured on
an AMD EPYC). VNNI CPUs and ARM compute exactly.

ORT's own remedy is the session option ``session.x64quantprecision`` = ``"1"``
(``kOrtSessionOptionsAvx2PrecisionMode`` in ``onnxruntime_session_options_config_keys.h``:
"x64 SSE4.1/AVX2/AVX512(with no VNNI) has overflow problem with quantized matrix multiplication
with U8S8. To avoid this we need to use slower U8U8 matrix multiplication instead."). It adds
the graph transformer ``Avx2WeightS8ToU8Transformer``, which rewrites constant int8 weights
``w`` as uint8 ``w + 128`` (and their zero point alike: the same products) so that the exact
U8U8 kernels run. That transformer is registered at the *extended* optimization level
(``graph_transformer_utils.cc``), so it does nothing under ``ORT_DISABLE_ALL``: :func:`session`
therefore uses ``ORT_ENABLE_EXTENDED`` together with the option, for models with a uint8 input.
Models with int8 activations run ORT's S8S8 kernels, which are exact on every CPU
(../shared/TOOLCHAIN.md), and must not get the option: the transformer would make their weights
uint8, and ORT has no int8 x uint8 QLinearConv kernel ("NOT_IMPLEMENTED", seen with ORT 1.31).

:func:`u8s8_saturates` tells whether this CPU's *default* kernel saturates (a probe whose exact
answer is known), which tests use to show the effect where it exists.
"""

from __future__ import annotations

import numpy as np

__all__ = ["session", "u8s8_saturates", "qlinear_conv", "PROBE_EXACT", "PROBE_SATURATED"]

#: the probe: x = [255]*4 (uint8) @ w = [127]*4 (int8); exact 4*255*127, saturated 2*32767
PROBE_EXACT = 4 * 255 * 127
PROBE_SATURATED = 2 * 32767


def session(model, *, exact: bool = True, threads: int = 1, config: dict | None = None):
    """An ``InferenceSession`` of ``model`` (a ModelProto, bytes or a path) on the CPU provider.

    ``exact=True`` (the default for every oracle use) requests ORT's non-saturating integer
    kernels when the model has a uint8 input (see the module docstring); ``exact=False`` is
    ORT's default configuration. ``config`` adds session config entries (key -> value), for
    example ``{"session.qdqisint8allowed": "1"}``, which keeps an int8 QDQ model on ORT's int8
    kernels on x86 (without it ORT leaves some of its QDQ groups unfused, in float)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads  # the suite runs under xdist: spinning threads only compete
    if hasattr(model, "SerializeToString"):
        u8_input = any(i.type.tensor_type.elem_type == 2 for i in model.graph.input)  # TensorProto.UINT8
    else:
        import onnx

        u8_input = any(i.type.tensor_type.elem_type == onnx.TensorProto.UINT8
                       for i in onnx.load_model_from_string(model).graph.input) if isinstance(model, bytes) \
            else any(i.type.tensor_type.elem_type == onnx.TensorProto.UINT8 for i in onnx.load(model).graph.input)
    if exact and u8_input:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.add_session_config_entry("session.x64quantprecision", "1")
    for key, value in (config or {}).items():
        so.add_session_config_entry(str(key), str(value))
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _probe_model():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4, 8), 127, np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "w"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 8])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def probe(*, exact: bool) -> int:
    """The probe's result (every output element is the same dot product)."""
    y = session(_probe_model(), exact=exact).run(None, {"x": np.full((1, 4), 255, np.uint8)})[0]
    values = set(int(v) for v in np.asarray(y).ravel())
    if len(values) != 1:
        raise AssertionError(f"ORT probe: outputs differ among themselves: {sorted(values)}")
    return values.pop()


def u8s8_saturates() -> bool:
    """True if ORT's default u8 x s8 kernel saturates pair sums on this CPU."""
    return probe(exact=False) != PROBE_EXACT


def qlinear_conv(arrays: dict) -> np.ndarray:
    """ORT's QLinearConv on one layer given by ONNX input names (``x`` NCHW int8/uint8,
    ``x_scale``, ``x_zero_point``, ``w`` OIHW int8, ``w_scale`` (per tensor or channel),
    ``w_zero_point``, ``y_scale``, ``y_zero_point``, optional ``B``; attributes ``strides``,
    ``pads``, ``dilations``, ``group``): the output y (NCHW), from a single-node opset-20 model
    run through :func:`session` (exact kernels on every CPU)."""
    from onnx import TensorProto, helper, numpy_helper

    x = np.asarray(arrays["x"])
    dt = x.dtype
    elem = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}[dt]
    y_dt = np.asarray(arrays.get("y_zero_point", np.zeros((), dt))).dtype
    y_elem = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}[y_dt]
    inits = {"x_scale": np.asarray(arrays["x_scale"], np.float32).reshape(()),
             "x_zero_point": np.asarray(arrays.get("x_zero_point", 0)).astype(dt).reshape(()),
             "w": np.asarray(arrays["w"], np.int8),
             "w_scale": np.asarray(arrays["w_scale"], np.float32).reshape(-1),
             "w_zero_point": np.asarray(arrays.get("w_zero_point", 0)).astype(np.int8).reshape(()),
             "y_scale": np.asarray(arrays["y_scale"], np.float32).reshape(()),
             "y_zero_point": np.asarray(arrays.get("y_zero_point", 0)).astype(y_dt).reshape(())}
    if inits["w_scale"].size == 1:
        inits["w_scale"] = inits["w_scale"].reshape(())
    inputs = ["x", *inits]
    if "B" in arrays:
        inits["B"] = np.asarray(arrays["B"], np.int32).reshape(-1)
        inputs.append("B")
    attrs = {}
    for key in ("strides", "pads", "dilations"):
        if key in arrays:
            attrs[key] = [int(v) for v in np.asarray(arrays[key]).reshape(-1)]
    if "group" in arrays:
        attrs["group"] = int(np.asarray(arrays["group"]).reshape(-1)[0])
    node = helper.make_node("QLinearConv", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "qlinearconv", [helper.make_tensor_value_info("x", elem, list(x.shape))],
                              [helper.make_tensor_value_info("y", y_elem, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    return session(model).run(None, {"x": x})[0]
