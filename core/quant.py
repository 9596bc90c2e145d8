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
           "XNNPACK_SCALE_MAX", "float_scale_ranges", "OPT_AWAY_BIT", "OPT_MULTIPLIER_MAX"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT32 = IntRange(INT32_MIN, INT32_MAX)
UINT32 = IntRange(0, (1 << 32) - 1)

#: rounding modes, each named after the framework path it reproduces (docs/requant.md):
#: ``tflite`` TFLite's reference kernels, ``tflite_single`` TFLM / CMSIS-NN (single rounding),
#: ``onnx`` ONNX Runtime, ``tflite_opt`` TFLite's optimized kernels (ruy /
#: optimized_integer_ops: SRDHM, then a right shift rounding ties up), ``xnnpack`` the XNNPACK
#: delegate (qs8/qc8w "fp32" requantization: the ``onnx`` arithmetic with scales up to 256).
#: The RTL (hdl/requant.py) builds every one of them.
ROUNDINGS = ("tflite", "tflite_single", "onnx", "tflite_opt", "xnnpack")

#: every rounding mode the golden model knows (today the same as ``ROUNDINGS``: a mode that has
#: a golden model but no RTL yet would be listed here only)
GOLDEN_ROUNDINGS = ROUNDINGS

#: modes whose parameter is a float32 scale (the others take a Q31 multiplier and a shift)
FLOAT_ROUNDINGS = ("onnx", "xnnpack")

#: TFLite Q31 multiplier range and shift range (positive = left shift)
MULTIPLIER_MIN = 1 << 30
MULTIPLIER_MAX = (1 << 31) - 1
SHIFT_MIN, SHIFT_MAX = -31, 30

#: ``tflite_opt``: bit of the 32-bit ``mult`` parameter word that selects, per channel, the final
#: shift's rounding: 0 ties up (the vector kernels: ruy, the 8-channel blocks of the optimized
#: depthwise conv), 1 ties away from zero like RoundingDivideByPOT (the optimized depthwise
#: conv's ``C mod 8`` scalar channels). The multiplier is the word's low 31 bits, so it is a
#: non-negative Q31 value (``QuantizeMultiplier`` gives [2**30, 2**31) or 0).
OPT_AWAY_BIT = 31
OPT_MULTIPLIER_MAX = (1 << OPT_AWAY_BIT) - 1

#: output width of the requantized value (8 = int8/uint8)
OUT_WIDTH_MIN, OUT_WIDTH_MAX = 2, 16

#: accepted float32 scale in mode "onnx": every positive normal float32 below 1
ONNX_SCALE_MIN = float(np.float32(2.0 ** -126))                       # smallest normal float32
ONNX_SCALE_MAX = float(np.nextafter(np.float32(1), np.float32(0)))    # largest float32 < 1

#: accepted float32 scale in mode "xnnpack": XNNPACK refuses a requantization scale >= 256
#: (xnn_create_convolution2d_nhwc_qs8_qc8w: "requantization scale ... is greater or equal to 256.0")
XNNPACK_SCALE_MIN = ONNX_SCALE_MIN
XNNPACK_SCALE_MAX = float(np.nextafter(np.float32(256), np.float32(0)))  # largest float32 < 256


def float_scale_ranges(mode: str) -> dict[str, IntRange]:
    """Ranges that depend on the accepted scale range in the float-scale modes (``onnx``,
    ``xnnpack``), for the integer emulation of ``round_half_even(float32(v) * scale)``
    (golden/quant.py ``scale_onnx_int``, hdl/requant.py). Derived, not guessed:

    - ``eb``: the scale's biased float32 exponent, 1 (2**-126) .. that of the largest scale;
    - ``u``: the right shift of ``R << 8`` that gives the result, ``135 - hi - fexp - eb`` with
      ``hi`` in 0..1 and the int32->float32 exponent ``fexp = 8 - lz`` in -23..8 (``lz`` in
      0..31). A negative ``u`` (scales >= 1) is an exact left shift by ``-u``;
    - ``y``: the rounded product. ``|float32(v)| <= 2**31`` and the float32 product rounds to at
      most ``float32(2**31 * scale_max) = 2**31 * scale_max`` (a power-of-two multiple of a
      float32 is exact), so ``|y| <= 2**31 * scale_max``.
    """
    if mode not in FLOAT_ROUNDINGS:
        raise ValueError(f"mode must be one of {FLOAT_ROUNDINGS}, not {mode!r}")
    smax = ONNX_SCALE_MAX if mode == "onnx" else XNNPACK_SCALE_MAX
    _, e = np.frexp(np.float32(smax))        # smax = m * 2**e, m in [0.5, 1)
    eb = IntRange(1, int(e) - 1 + 127)
    hi, fexp = IntRange(0, 1), IntRange(-23, 8)
    u = IntRange(135 - hi.hi - fexp.hi - eb.hi, 135 - hi.lo - fexp.lo - eb.lo)
    y_max = int(np.float64(smax) * 2 ** 31)
    return {"eb": eb, "u": u, "y": IntRange(-y_max, y_max)}


def channel_entry(channel, lanes: int):
    """Parameter-memory entry ``(group, lane)`` of output channel ``channel`` in a requantizer
    with ``lanes`` lanes: channel ``group*lanes + lane``. Works on ints and NumPy arrays."""
    return channel // lanes, channel % lanes


def entry_channel(group, lane, lanes: int):
    """Inverse of :func:`channel_entry`."""
    return group * lanes + lane
