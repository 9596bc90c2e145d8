"""cocotb module behind convgen.sim.systolic.run_gemm: streams prepared beats through the
array with no stalls, collects the result rows and the cycle count."""

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
        manifest = json.load(f)
    streams = manifest["streams"]
    stim = np.load(os.environ["CONVGEN_STIMULUS"])
    a, b_data, b_last = stim["a"], stim["b_data"], stim["b_last"]
    out_rows = int(stim["out_rows"])

    bench = StreamBench(dut)
    a_ints = pack(streams["a"]["layout"], a, len(a))
    b_ints = pack(streams["b"]["layout"], {"data": b_data, "last": b_last}, len(b_data))
    src_a = bench.source("a", [])
    src_b = bench.source("b", [])
    snk = bench.sink("o", 0)
    await bench.reset()
    src_a.items.extend(a_ints)
    src_b.items.extend(b_ints)
    snk.expected = out_rows

    progress_file = os.environ.get("CONVGEN_PROGRESS_FILE")

    def report(b):
        # the simulator's stdout/stderr go to sim.log; the caller tails this file instead
        with open(progress_file, "a") as f:
            f.write(f"cycle {b.cycle}: {len(snk.received)}/{out_rows} result rows, "
                    f"{src_a.sent}/{len(a_ints)} a beats\n")

    budget = 4 * (len(a_ints) + len(b_ints) + out_rows) + 1000
    t0 = time.perf_counter()
    await bench.run(budget, extra_cycles=8, progress=report if progress_file else None,
                    progress_every=50_000)
    sim_seconds = time.perf_counter() - t0
    first = min(src_a.transfer_cycles[0], src_b.transfer_cycles[0])
    cycles = snk.transfer_cycles[-1] - first + 1
    o = unpack(streams["o"]["layout"], snk.received)
    np.savez(os.environ["CONVGEN_RESULT"], rows=o["data"], last=o["last"],
             stats=json.dumps({"cycles": cycles, "sim_seconds": sim_seconds,
                                         "simulated_cycles": bench.cycle}))
