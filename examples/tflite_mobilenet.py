"""Write a small MobileNet-style int8 TFLite model and an input for it, deterministically.

    .venv/bin/python examples/tflite_mobilenet.py [OUT_DIR] [--arch v1|v2|v3] [--seed N] [--size S]
                                                  [--head conv|fc|keras] [--io int8|float32|uint8]
    .venv/bin/convgen run tflite OUT_DIR/mobilenet_int8.tflite --input OUT_DIR/x.npy --path xnnpack --engine 8x8

No TensorFlow: the flatbuffer is written with the pinned ``tflite`` schema package
(``convgen.golden.tflite_net.mobilenet``): a 3x3 stride-2 CONV_2D stem, depthwise-separable
blocks (DEPTHWISE_CONV_2D + 1x1 CONV_2D, ReLU6; one depthwise layer with 20 channels, so TFLite's
optimized kernel rounds 4 of them with its scalar code), TF-slim's head: a global AVERAGE_POOL_2D,
the logits as a 1x1 CONV_2D and a RESHAPE to [1, 10] (``--head fc``: a RESHAPE and a
FULLY_CONNECTED instead, Keras' head). ``--arch v2`` (``convgen.golden.tflite_net.mobilenet_v2``):
MobileNetV2 inverted residual blocks (1x1 expansion, depthwise, linear 1x1 projection, ADD of the
block's input), then the same pooled head; ``--arch v2 --head keras``: what Keras' MobileNetV2
converts to (an explicit PAD before each stride-2 layer, a MEAN as the global pool, a SOFTMAX at
the end). ``--arch v3`` (``convgen.golden.tflite_net.mobilenet_v3``): MobileNetV3-style, HARD_SWISH
activations and a squeeze-excite block (MEAN, two 1x1 convolutions, a LOGISTIC gate, a
broadcasting MUL). ``--io float32`` wraps the model the way TFLiteConverter does with float input
and output (a QUANTIZE at the input, a DEQUANTIZE at the output; ``x.npy`` is then float32),
``--io uint8`` with uint8 input and output (a QUANTIZE requantizing at each end)
(``convgen.golden.tflite_net.with_io``). Per-channel int8 weights, int32 biases, output scales
calibrated on the input with the reference path's golden model. The same seed and size give the
same bytes.
"""

import argparse
import hashlib
from pathlib import Path

import numpy as np

from convgen.golden.tflite_net import mobilenet, mobilenet_v2, mobilenet_v3, with_io

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("out_dir", nargs="?", default=".")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--size", type=int, default=16, help="input height and width (a multiple of 4)")
ap.add_argument("--head", choices=("conv", "fc", "keras"), default="conv",
                help="v1: logits as a 1x1 CONV_2D (conv) or a FULLY_CONNECTED (fc); v2: TF-slim's pooled head (conv) "
                     "or Keras' (keras: PAD, MEAN, SOFTMAX)")
ap.add_argument("--arch", choices=("v1", "v2", "v3"), default="v1", help="MobileNetV1, V2 or V3 style")
ap.add_argument("--io", choices=("int8", "float32", "uint8"), default="int8",
                help="the model's input and output type (float32: QUANTIZE/DEQUANTIZE at the ends)")
args = ap.parse_args()
if args.size < 4 or args.size % 4:
    ap.error(f"--size must be a positive multiple of 4, not {args.size}")
if args.arch == "v1" and args.head == "keras" or args.arch == "v2" and args.head == "fc" or \
        args.arch == "v3" and args.head != "conv":
    ap.error(f"--head {args.head} does not apply to --arch {args.arch}")
if args.arch == "v1":
    model, x = mobilenet(args.seed, args.size, args.head)
elif args.arch == "v2":
    model, x = mobilenet_v2(args.seed, args.size, "keras" if args.head == "keras" else "pool")
else:
    model, x = mobilenet_v3(args.seed, args.size)
if args.io != "int8":
    model, x = with_io(model, x, args.io, args.seed)
out = Path(args.out_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "mobilenet_int8.tflite").write_bytes(model)
np.save(out / "x.npy", x)
print(f"{out / 'mobilenet_int8.tflite'}: {len(model)} bytes, sha256 {hashlib.sha256(model).hexdigest()[:16]}; "
      f"{out / 'x.npy'}: {args.io} {x.shape}")
