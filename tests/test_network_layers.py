"""One pytest item per convolution of a quantized network on the ConvEngine RTL: the way to
shard a network's regression over pytest-xdist workers, or over other hosts with execnet's
``--tx`` (README, "Sharding a network's regression").

Each item runs one layer on the RTL with the input the golden executor gives it and compares
with the golden executor's output (which equals ONNX Runtime's at every layer,
tests/test_network_golden.py); the layer inputs are computed once and cached on disk
(``sim.network.layer_inputs``), and every item uses one engine build. The default network is
``every_kind`` on a 4x4 engine; ``CONVGEN_NET`` (every_kind, short_resnet, mobilenet_v2,
resnet50) and ``CONVGEN_ENGINE`` (RxC) choose others."""

import os
from functools import lru_cache

import pytest

from convgen.golden import netzoo
from convgen.sim import network as sn

NET = os.environ.get("CONVGEN_NET", "every_kind")
ENGINE = tuple(int(v) for v in os.environ.get("CONVGEN_ENGINE", "4x4").lower().split("x"))
MODELS = {
    "every_kind": lambda: netzoo.build_path("every_kind", "qoperator"),
    "short_resnet": lambda: netzoo.build_path("resnet", "qoperator"),
    "mobilenet_v2": lambda: netzoo.build_path("mobilenet_v2", "qoperator"),
    "resnet50": lambda: netzoo.build_path("resnet", "qoperator", size=224, blocks=[3, 4, 6, 3], width=64,
                                          classes=1000),
}


@lru_cache(maxsize=None)
def _layers():
    layers = sn.layer_inputs(MODELS[NET]())
    cfg, mem_words = sn.layers_engine(layers, rows=ENGINE[0], cols=ENGINE[1])
    return layers, cfg, mem_words


def _count() -> int:
    return len(_layers()[0])


@pytest.mark.parametrize("index", range(_count()))
def test_layer_on_rtl(index):
    layers, cfg, mem_words = _layers()
    q, expected = layers[index]
    run = sn.run_layer(q, expected, cfg, mem_words)
    if run.formula_exact:
        assert run.cycles == run.formula_cycles
    else:
        assert run.cycles >= run.formula_cycles


def test_a_wrong_expected_output_is_reported():
    layers, cfg, mem_words = _layers()
    q, expected = layers[0]
    wrong = expected.copy()
    wrong.flat[::7] += 1
    with pytest.raises(Exception, match=f"layer {q.name!r}: .* outputs differ"):
        sn.run_layer(q, wrong, cfg, mem_words)
