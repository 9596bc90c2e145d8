"""Quantisation constants shared by the requantizer RTL, its golden model, the simulation
entry point, the testbench and the exploration sweep: written once, here.

Sources: TFLite ``QuantizeMultiplier`` (``tensorflow/lite/kernels/internal/quantization_util.cc``)
produces a Q31 multiplier in [2**30, 2**31) and a shift; convgen accepts shifts -31..30
(positive = left). ONNX Runtime's float path needs a normal float32 scale below 1 (see
docs/requant.md for why the range is what it is).
"""

from __future__ import annotations

import numpy as np

from .intrange import IntRange

__all__ = ["INT32_MIN", "INT32_MAX", "INT32", "UINT32", "ROUNDINGS", "MULTIPLIER_MIN", "MULTIPLIER_MAX",
           "SHIFT_MIN", "SHIFT_MAX", "OUT_WIDTH_MIN", "OUT_WIDTH_MAX", "ONNX_SCALE_MIN", "ONNX_SCALE_MAX",
           "channel_entry", "entry_channel", "GOLDEN_ROUNDINGS", "FLOAT_ROUNDINGS", "XNNPACK_SCALE_MIN",
           "XNNPACK_SCALE_MAX"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT32 = IntRange(INT32_MIN, INT32_MAX)
UINT32 = IntRange(0, (1 << 32) - 1)

#: rounding modes, each named after the framework path it reproduces (docs/requant.md)
ROUNDINGS = ("tflite", "tflite_single", "onnx")

#: every rounding mode the golden model knows: ``ROUNDINGS`` (the modes the RTL builds) plus the
#: modes that have a golden model but no RTL yet. ``tflite_opt``: TFLite's optimized kernels
#: (ruy / optimized_integer_ops): SRDHM, then a right shift rounding ties up. ``xnnpack``: the
#: XNNPACK delegate's qs8/qc8w "fp32" requantization, the ``onnx`` arithmetic with scales up to
#: 256. An RTL mode moves into ``ROUNDINGS`` when hdl/requant.py builds it.
GOLDEN_ROUNDINGS = ROUNDINGS + ("tflite_opt", "xnnpack")

#: modes whose parameter is a float32 scale (the others take a Q31 multiplier and a shift)
FLOAT_ROUNDINGS = ("onnx", "xnnpack")

#: TFLite Q31 multiplier range and shift range (positive = left shift)
MULTIPLIER_MIN = 1 << 30
MULTIPLIER_MAX = (1 << 31) - 1
SHIFT_MIN, SHIFT_MAX = -31, 30

#: output width of the requantized value (8 = int8/uint8)
OUT_WIDTH_MIN, OUT_WIDTH_MAX = 2, 16

#: accepted float32 scale in mode "onnx": every positive normal float32 below 1
ONNX_SCALE_MIN = float(np.float32(2.0 ** -126))                       # smallest normal float32
ONNX_SCALE_MAX = float(np.nextafter(np.float32(1), np.float32(0)))    # largest float32 < 1

#: accepted float32 scale in mode "xnnpack": XNNPACK refuses a requantization scale >= 256
#: (xnn_create_convolution2d_nhwc_qs8_qc8w: "requantization scale ... is greater or equal to 256.0")
XNNPACK_SCALE_MIN = ONNX_SCALE_MIN
XNNPACK_SCALE_MAX = float(np.nextafter(np.float32(256), np.float32(0)))  # largest float32 < 256


def channel_entry(channel, lanes: int):
    """Parameter-memory entry ``(group, lane)`` of output channel ``channel`` in a requantizer
    with ``lanes`` lanes: channel ``group*lanes + lane``. Works on ints and NumPy arrays."""
    return channel // lanes, channel % lanes


def entry_channel(group, lane, lanes: int):
    """Inverse of :func:`channel_entry`."""
    return group * lanes + lane
