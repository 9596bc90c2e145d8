"""Real converter output for ``run tflite``: small Keras models converted to int8 ``.tflite`` by
TensorFlow's own ``TFLiteConverter`` (full-integer quantization, int8 input and output, a
seeded random representative dataset), the way users produce their models.

TensorFlow is not a convgen dependency (it is not in requirements.lock). Run this in an
environment that has it::

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    PYTHONPATH=<convgen checkout's parent> /tmp/tfenv/bin/python -m convgen.golden.tflite_keras OUT_DIR

or, without the package on the path, ``/tmp/tfenv/bin/python golden/tflite_keras.py OUT_DIR``.

It writes ``keras_resnet_concat.tflite`` (a ResNet-style model: ZeroPadding2D + stride-2
convolution, BatchNormalization folded, ZeroPadding2D + MaxPooling2D, two residual blocks with
ADD and ReLU, a CONCATENATION of two branches, GlobalAveragePooling2D(keepdims=True) as a 4-D
MEAN, a Reshape that converts to SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE, a Dense layer as
FULLY_CONNECTED, SOFTMAX), ``keras_mobilenet_v1.tflite`` and ``keras_mobilenet_v2.tflite``
(``keras.applications`` MobileNet alpha 0.25 and MobileNetV2 alpha 0.35 at 32x32, 10 classes,
untrained), and ``keras_se_hard_swish_float_io.tflite`` (:func:`se_hard_swish`, converted with
the converter's default **float32 input and output**: a QUANTIZE after the input, HARD_SWISH,
a squeeze-excite block with LOGISTIC and MUL, FULLY_CONNECTED, a DEQUANTIZE before the output).
With tensorflow-cpu 2.21.0 / keras 3.15.1 the first and the last are
tests/data/tflite/keras_resnet_concat.tflite and keras_se_hard_swish_float_io.tflite (the same
bytes on every run), which tests/test_tflite_network.py checks; the other two are too large to
commit and are measured in docs/tflite.md. ``... tflite_keras.py OUT_DIR NAME ...`` writes only
the models named.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(model, shape, seed: int = 0, io: str = "int8") -> bytes:
    """``model`` as a full-integer int8 ``.tflite``, calibrated on 8 seeded standard-normal
    inputs; int8 input and output, or (``io="float32"``) the converter's default float input and
    output, which it writes as a QUANTIZE after the input and a DEQUANTIZE before the output."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(8):
            yield [rng.normal(0, 1, (1,) + tuple(shape)).astype(np.float32)]

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = representative
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io == "int8":
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c.convert()


def resnet_concat():
    """The small ResNet-style Keras model (module doc), seeded."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    x = inp = L.Input((24, 24, 3))
    x = L.ZeroPadding2D(1)(x)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2)(x)))
    x = L.MaxPooling2D(3, 2)(L.ZeroPadding2D(1)(x))
    for f in (8, 16):
        s = x if x.shape[-1] == f else L.Conv2D(f, 1)(x)
        y = L.Conv2D(f, 3, padding="same", activation="relu")(x)
        y = L.Conv2D(f, 3, padding="same")(y)
        x = L.ReLU()(L.Add()([s, y]))
    a = L.Conv2D(6, 1, activation="relu")(x)
    b = L.Conv2D(10, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(L.Concatenate()([a, b]))
    x = L.Reshape((16,))(x)
    return keras.Model(inp, L.Dense(10, activation="softmax")(x)), (24, 24, 3)


def se_hard_swish():
    """A small MobileNetV3-style Keras model, seeded: a stride-2 convolution with the hard_swish
    activation, a depthwise convolution with ReLU, a squeeze-excite block (global average pool
    with keepdims, 1x1 reduction with ReLU, 1x1 expansion with a sigmoid gate, Multiply), a 1x1
    projection with hard_swish, a global average pool and a Dense layer."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    x = inp = L.Input((16, 16, 3))
    x = L.Activation("hard_swish")(L.Conv2D(16, 3, strides=2, padding="same")(x))
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    g = L.GlobalAveragePooling2D(keepdims=True)(x)
    g = L.Conv2D(16, 1, activation="sigmoid")(L.Conv2D(8, 1, activation="relu")(g))
    x = L.Multiply()([x, g])
    x = L.Activation("hard_swish")(L.Conv2D(24, 1)(x))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10)(x)), (16, 16, 3)


def main(out_dir: str, names=None) -> None:
    import keras

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = {"keras_resnet_concat": resnet_concat, "keras_se_hard_swish_float_io": se_hard_swish}
    keras.utils.set_random_seed(0)
    models["keras_mobilenet_v1"] = lambda: (keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10), (32, 32, 3))
    models["keras_mobilenet_v2"] = lambda: (keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10), (32, 32, 3))
    for name, make in models.items():
        if names and name not in names:
            continue
        keras.utils.set_random_seed(0)
        model, shape = make()
        data = convert(model, shape, io="float32" if name.endswith("_float_io") else "int8")
        (out / f"{name}.tflite").write_bytes(data)
        print(f"{out / name}.tflite: {len(data)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".", sys.argv[2:] or None)
