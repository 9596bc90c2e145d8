"""cocotb module behind convgen.sim.im2col.run_im2col: program the layers of the JSON list at
``CONVGEN_LAYERS`` back to back, stream every address with no stalls, and save the fields and
the cycle counts to ``CONVGEN_RESULT``. tb/im2col/cocotb_im2col.py reuses the helpers."""

import json
import os

import cocotb
import numpy as np

from convgen.core.layer import LAYER_FIELDS, ConvLayer
from convgen.golden.im2col import STREAM_FIELDS
from convgen.hdl.im2col import Im2colConfig
from convgen.sim.packing import pack, unpack
from convgen.sim.streams import StreamBench

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
HW = Im2colConfig(**MANIFEST["parameters"])
STREAMS = MANIFEST["streams"]
R = HW.tile_rows


def load_layers() -> list:
    """The layers of ``CONVGEN_LAYERS`` (none if unset)."""
    path = os.environ.get("CONVGEN_LAYERS")
    if not path:
        return []
    with open(path) as f:
        return [ConvLayer(**{**d, "indirect": bool(d["indirect"])}) for d in json.load(f)]


def cfg_beats(raw: list[dict]) -> list[int]:
    cols = {k: np.array([int(d[k]) for d in raw], dtype=np.int64) for k in LAYER_FIELDS}
    return pack(STREAMS["cfg"]["layout"], cols, len(raw))


def raw_of(lay: ConvLayer) -> dict:
    return {k: int(getattr(lay, k)) for k in LAYER_FIELDS}


def decode(ints) -> dict:
    got = unpack(STREAMS["o"]["layout"], list(ints))
    return {f: np.asarray(got[f], dtype=np.int64) for f in STREAM_FIELDS}


async def stream_layers(bench, lays, *, idle=None, stall=None):
    src = bench.source("cfg", cfg_beats([raw_of(x) for x in lays]), idle=idle)
    snk = bench.sink("o", sum(x.elements(R) for x in lays), stall=stall)
    budget = 8 * (sum(x.elements(R) for x in lays) + len(lays) * (HW.setup_cycles + 4)) + 200
    await bench.run(budget, extra_cycles=HW.setup_cycles + 10)
    return src, snk


async def fresh_bench(dut):
    bench = StreamBench(dut)
    bench.source("cfg", [])
    bench.sink("o", 0)
    await bench.reset()
    return bench


@cocotb.test()
async def run_layers(dut):
    """sim/im2col.py: stream the layers, no stalls, and save the raw fields and cycle counts."""
    layers = load_layers()
    bench = await fresh_bench(dut)
    src, snk = await stream_layers(bench, layers)
    fields = decode(snk.received)
    off, layer_cycles = 0, []
    for lay in layers:
        n = lay.elements(R)
        layer_cycles.append(snk.transfer_cycles[off + n - 1] - snk.transfer_cycles[off] + 1)
        off += n
    stats = {"fields": list(STREAM_FIELDS), "layer_cycles": layer_cycles,
             "total_cycles": snk.transfer_cycles[-1] - src.transfer_cycles[0] + 1}
    np.savez(os.environ["CONVGEN_RESULT"], stats=json.dumps(stats), **fields)
