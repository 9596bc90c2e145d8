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
           "channel_entry", "entry_channel"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT32 = IntRange(INT32_MIN, INT32_MAX)
UINT32 = IntRange(0, (1 << 32) - 1)

#: rounding modes, each named after the framework path it reproduces (docs/requant.md)
ROUNDINGS = ("tflite", "tflite_single", "onnx")

#: TFLite Q31 multiplier range and shift range (positive = left shift)
MULTIPLIER_MIN = 1 << 30
MULTIPLIER_MAX = (1 << 31) - 1
SHIFT_MIN, SHIFT_MAX = -31, 30

#: output width of the requantized value (8 = int8/uint8)
OUT_WIDTH_MIN, OUT_WIDTH_MAX = 2, 16

#: accepted float32 scale in mode "onnx": every positive normal float32 below 1
ONNX_SCALE_MIN = float(np.float32(2.0 ** -126))                       # smallest normal float32
ONNX_SCALE_MAX = float(np.nextafter(np.float32(1), np.float32(0)))    # largest float32 < 1


def channel_entry(channel, lanes: int):
    """Parameter-memory entry ``(group, lane)`` of output channel ``channel`` in a requantizer
    with ``lanes`` lanes: channel ``group*lanes + lane``. Works on ints and NumPy arrays."""
    return channel // lanes, channel % lanes


def entry_channel(group, lane, lanes: int):
    """Inverse of :func:`channel_entry`."""
    return group * lanes + lane
