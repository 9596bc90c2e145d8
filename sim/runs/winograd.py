"""cocotb module behind convgen.sim.winograd.run_winograd_conv: streams prepared beats
through WinogradConv3x3 with no stalls, collects the output tiles and the cycle count."""

import json
import os
import time

import cocotb
import numpy as np

from convgen.sim.packing import pack, unpack
from convgen.sim.streams import StreamBench


@cocotb.test()
async def run(dut):
    with open(os.environ["CONVGEN_MANIFEST"]) as f:
        streams = json.load(f)["streams"]
    stim = np.load(os.environ["CONVGEN_STIMULUS"])
    n = len(stim["last"])
    out_beats = int(stim["out_beats"])
    bench = StreamBench(dut)
    src = bench.source("i", [])
    snk = bench.sink("o", 0)
    await bench.reset()
    src.items.extend(pack(streams["i"]["layout"], {"d": stim["d"], "g": stim["g"], "last": stim["last"]}, n))
    snk.expected = out_beats
    t0 = time.perf_counter()
    await bench.run(4 * n + 1000, extra_cycles=8)
    cycles = snk.transfer_cycles[-1] - src.transfer_cycles[0] + 1
    np.savez(os.environ["CONVGEN_RESULT"], y=unpack(streams["o"]["layout"], snk.received),
             stats=json.dumps({"cycles": cycles, "sim_seconds": time.perf_counter() - t0}))
