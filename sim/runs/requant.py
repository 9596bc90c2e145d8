"""cocotb module behind convgen.sim.requant.run_requant: writes the parameter memory, then
streams the prepared accumulator beats with no stalls and records outputs and cycles."""

import json
import os

import cocotb

from convgen.sim.streams import StreamBench


@cocotb.test()
async def run(dut):
    with open(os.environ["CONVGEN_STIMULUS"]) as f:
        stim = json.load(f)
    p_beats = [int(x) for x in stim["p"]]
    i_beats = [int(x) for x in stim["i"]]
    bench = StreamBench(dut)
    src_p = bench.source("p", [])
    src_i = bench.source("i", [])
    snk = bench.sink("o", 0)
    await bench.reset()
    src_p.items.extend(p_beats)
    await bench.run(len(p_beats) + 10)
    src_i.items.extend(i_beats)
    snk.expected = len(i_beats)
    await bench.run(4 * len(i_beats) + 100, extra_cycles=8)
    cycles = snk.transfer_cycles[-1] - src_i.transfer_cycles[0] + 1
    with open(os.environ["CONVGEN_RESULT"], "w") as f:
        json.dump({"o": [str(x) for x in snk.received], "cycles": cycles}, f)
