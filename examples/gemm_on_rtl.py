"""Run a small int8 GEMM on the generated systolic-array RTL from Python and check it.

    .venv/bin/python examples/gemm_on_rtl.py [icarus|verilator]

The first run builds the simulation model (cached afterwards under ~/.cache/convgen).
"""

import sys

import numpy as np

from convgen.golden.gemm import gemm
from convgen.sim.systolic import run_gemm

simulator = sys.argv[1] if len(sys.argv) > 1 else "icarus"
rng = np.random.default_rng(7)
a = rng.integers(-128, 128, size=(10, 37))   # M x K, int8 values
b = rng.integers(-128, 128, size=(37, 6))    # K x N

for dataflow in ("os", "ws"):
    result = run_gemm(a, b, rows=4, cols=4, dataflow=dataflow, simulator=simulator)
    assert np.array_equal(result.c, gemm(a, b)), "RTL differs from the golden model"
    print(f"{dataflow}: C is {result.c.shape}, exact; {result.summary()}")
