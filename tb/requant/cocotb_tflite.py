"""cocotb module: the Requantizer on LiteRT's own outputs. Jobs come from the JSON file named
by ``CONVGEN_TFLITE_JOBS`` (written by tests/test_tflite_rtl.py): each job writes the parameter
memory (``p`` beats), then streams accumulator beats (``i``) with random idles and random
backpressure on ``o``, and every output lane that holds a channel is compared with the value
the TFLite interpreter computed on that path. No expected value comes from the RTL or from the
golden model. A summary (outputs compared, mismatches per job) goes to ``CONVGEN_RESULT``."""

import json
import os

import cocotb
import numpy as np

from convgen.sim.packing import unpack
from convgen.sim.streams import StreamBench, random_pattern

with open(os.environ["CONVGEN_MANIFEST"]) as _f:
    MANIFEST = json.load(_f)
STREAMS = MANIFEST["streams"]
SEED = int(os.environ.get("CONVGEN_SEED", "1234"))


@cocotb.test()
async def litert_fixtures(dut):
    with open(os.environ["CONVGEN_TFLITE_JOBS"]) as f:
        jobs = json.load(f)
    bench = StreamBench(dut)
    p_src = bench.source("p", [])
    bench.source("i", [], idle=random_pattern(SEED + 1, 0.2))
    snk = bench.sink("o", 0, stall=random_pattern(SEED + 2, 0.2))
    await bench.reset()
    compared, bad, report = 0, 0, []
    for job in jobs:
        bench.source("p", [int(x) for x in job["p"]])
        await bench.run(2 * len(job["p"]) + 10)
        assert not p_src.items
        first = len(snk.received)
        beats = [int(x) for x in job["i"]]
        bench.source("i", beats)
        bench.sink("o", len(beats))
        await bench.run(20 * len(beats) + 200, extra_cycles=8)
        got = unpack(STREAMS["o"]["layout"], snk.received[first:])
        want = np.array(job["expected"], dtype=np.int64).reshape(got.shape)
        used = np.array(job["used"], dtype=bool).reshape(got.shape)
        miss = int(((got != want) & used).sum())
        compared += int(used.sum())
        bad += miss
        report.append({"name": job["name"], "outputs": int(used.sum()), "mismatches": miss})
        if miss:
            k = np.argwhere((got != want) & used)[0]
            dut._log.error(f"{job['name']}: {miss} of {int(used.sum())} outputs differ from LiteRT; first at "
                           f"beat {k[0]} lane {k[1]}: RTL {int(got[tuple(k)])}, LiteRT {int(want[tuple(k)])}")
    with open(os.environ["CONVGEN_RESULT"], "w") as f:
        json.dump({"compared": compared, "mismatches": bad, "jobs": report}, f)
    dut._log.info(f"{compared} outputs compared with LiteRT, {bad} differ")
    assert bad == 0, f"{bad} of {compared} outputs differ from LiteRT"
