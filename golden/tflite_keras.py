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
untrained). With tensorflow-cpu 2.21.0 / keras 3.15.1 the first is
tests/data/tflite/keras_resnet_concat.tflite, which tests/test_tflite_network.py checks; the
other two are too large to commit and are measured in docs/tflite.md.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert(model, shape, seed: int = 0) -> bytes:
    """``model`` as a full-integer int8 ``.tflite`` (int8 input and output), calibrated on 8
    seeded standard-normal inputs."""
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


def main(out_dir: str) -> None:
    import keras

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = {"keras_resnet_concat": resnet_concat}
    keras.utils.set_random_seed(0)
    models["keras_mobilenet_v1"] = lambda: (keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10), (32, 32, 3))
    models["keras_mobilenet_v2"] = lambda: (keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10), (32, 32, 3))
    for name, make in models.items():
        keras.utils.set_random_seed(0)
        model, shape = make()
        data = convert(model, shape)
        (out / f"{name}.tflite").write_bytes(data)
        print(f"{out / name}.tflite: {len(data)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
