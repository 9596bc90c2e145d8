"""Place and route of a row of MAC processing elements on each DspMul variant (issue 14).

    .venv/bin/python bench/vendor_dsp.py --seeds 1,2,3        # every point below (as committed)
    .venv/bin/python bench/vendor_dsp.py --points ecp5_row8_ecp5_l3 --seeds 1

Runs are cached (~/.cache/convgen), so a rerun of unchanged points is instant; the result
files hold exactly the points of the last invocation.

The test design, :class:`MacRow`, is one row of ``n`` output-stationary PEs cut out of the
systolic array's structure: the ``a`` operand enters PE 0 and moves one PE per step through
fabric registers, each PE has its own ``b`` operand register, a :class:`DspMul` lane
multiplies them and a fabric accumulator adds the product. Every register advances on the
step enable ``en`` (a registered input, like the array's), and ``clr``, delayed by the
multiplier's latency, restarts the accumulators. So the paths around the multiplier are the
array's: fabric register -> DSP -> accumulator.

:class:`MacGrid` is the same as a ``rows x cols`` grid (``b`` moving down the columns, one
DspMul per row), without the array's read-out multiplexer and output FIFO: a proxy for the 8x8
array's Fmax target (issue 14: 150 MHz on LFE5U-85F-6).

Each point goes through convgen's synthesis flow (yosys 0.70, nextpnr 0.11.1, the 3-pin I/O
harness of docs/synth.md) on LFE5U-85F-6 or iCE40UP5K. Writes bench/results/vendor_dsp.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from convgen.core.cache import portable
from convgen.core.fileio import atomic_write_text
from convgen.hdl.generate import to_verilog
from convgen.hdl.lib import FlatArrayLayout
from convgen.hdl.lib.dsp import DspMul
from convgen.synth.flow import run_flow
from convgen.synth.pnr import DoesNotFit


class MacRow(wiring.Component):
    """``n`` MAC PEs in a row: ``acc[c] += a_c * b[c]`` with ``a`` moving along the row.

    Ports: ``a`` (int8, enters PE 0), ``b`` (``n`` int8 lanes), ``en`` (step enable of every
    register), ``clr`` (the accumulators restart with the product of this step's operands),
    ``acc`` (``n`` lanes of ``acc_width`` bits, wrapping)."""

    def __init__(self, n: int, variant: str, latency: int, acc_width: int = 32):
        self.n, self.variant, self.latency, self.acc_width = n, variant, latency, acc_width
        super().__init__({
            "a": In(signed(8)),
            "b": In(FlatArrayLayout(signed(8), n)),
            "en": In(1),
            "clr": In(1),
            "acc": Out(FlatArrayLayout(signed(acc_width), n)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        m.submodules.mul = mul = DspMul(variant=self.variant, lanes=n, latency=self.latency)
        en = Signal()
        m.d.sync += en.eq(self.en)  # the array's step enable is a register too
        a_reg = [Signal(signed(8), name=f"pe{c}_a", reset_less=True) for c in range(n)]
        b_reg = [Signal(signed(8), name=f"pe{c}_b", reset_less=True) for c in range(n)]
        clr = Signal(self.latency + 1, name="clr_tag")
        acc = [Signal(signed(self.acc_width), name=f"pe{c}_acc") for c in range(n)]
        with m.If(en):
            m.d.sync += clr.eq(Cat(self.clr, clr[:-1]))
            for c in range(n):
                m.d.sync += [a_reg[c].eq(self.a if c == 0 else a_reg[c - 1]), b_reg[c].eq(self.b[c])]
                # clr_tag[latency] marks the product of the operands taken with clr
                with m.If(clr[self.latency]):
                    m.d.sync += acc[c].eq(mul.p[c])
                with m.Else():
                    m.d.sync += acc[c].eq(acc[c] + mul.p[c])
        m.d.comb += mul.ce.eq(en)
        for c in range(n):
            m.d.comb += [mul.a[c].eq(a_reg[c]), mul.b[c].eq(b_reg[c]), self.acc[c].eq(acc[c])]
        return m


class MacGrid(wiring.Component):
    """``rows x cols`` MAC PEs as in the output-stationary array: ``a[r]`` enters PE (r, 0) and
    moves right, ``b[c]`` enters PE (0, c) and moves down, one PE per step, through fabric
    registers; one :class:`DspMul` per row (``cols`` lanes); fabric accumulators restarted by
    ``clr``, which reaches PE (r, c) with its operands. No read-out multiplexer or output FIFO:
    every accumulator is an output (the I/O harness observes them all)."""

    def __init__(self, rows: int, cols: int, variant: str, latency: int, acc_width: int = 32,
                 product_reg: bool = False):
        self.rows, self.cols, self.variant, self.latency, self.acc_width = rows, cols, variant, latency, acc_width
        # product_reg: one more fabric register between the DSP and the accumulator adder
        self.product_reg = product_reg
        super().__init__({
            "a": In(FlatArrayLayout(signed(8), rows)),
            "b": In(FlatArrayLayout(signed(8), cols)),
            "en": In(1),
            "clr": In(1),
            "acc": Out(FlatArrayLayout(signed(acc_width), rows * cols)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, L = self.rows, self.cols, self.latency + int(self.product_reg)
        en = Signal()
        m.d.sync += en.eq(self.en)
        a_reg = [[Signal(signed(8), name=f"pe{r}_{c}_a", reset_less=True) for c in range(C)] for r in range(R)]
        b_reg = [[Signal(signed(8), name=f"pe{r}_{c}_b", reset_less=True) for c in range(C)] for r in range(R)]
        # clr travels with the operands: PE (r, c) sees it r + c steps after it entered, and
        # its product L steps later
        clr = Signal(R + C + L, name="clr_tag")
        with m.If(en):
            m.d.sync += clr.eq(Cat(self.clr, clr[:-1]))
            for r in range(R):
                for c in range(C):
                    m.d.sync += [a_reg[r][c].eq(self.a[r] if c == 0 else a_reg[r][c - 1]),
                                 b_reg[r][c].eq(self.b[c] if r == 0 else b_reg[r - 1][c])]
        for r in range(R):
            m.submodules[f"mul_row{r}"] = mul = DspMul(variant=self.variant, lanes=C, latency=self.latency)
            m.d.comb += mul.ce.eq(en)
            for c in range(C):
                acc = Signal(signed(self.acc_width), name=f"pe{r}_{c}_acc")
                m.d.comb += [mul.a[c].eq(a_reg[r][c]), mul.b[c].eq(b_reg[r][c]), self.acc[r * C + c].eq(acc)]
                product = mul.p[c]
                if self.product_reg:
                    product = Signal(mul.p_shape, name=f"pe{r}_{c}_prod", reset_less=True)
                    with m.If(en):
                        m.d.sync += product.eq(mul.p[c])
                with m.If(en):
                    with m.If(clr[r + c + L]):
                        m.d.sync += acc.eq(product)
                    with m.Else():
                        m.d.sync += acc.eq(acc + product)
        return m


#: name -> (target, device, n, variant, latency, acc_width); n = "RxC" for a MacGrid
POINTS = {
    # ECP5: one PE and a row of 8, the array's PE today (product register: generic l1), with
    # operand registers (generic l2, = pipeline_operands), and MULT18X18D with its registers
    "ecp5_pe1_generic_l1": ("ecp5", "85k", 1, "generic", 1, 32),
    "ecp5_pe1_generic_l2": ("ecp5", "85k", 1, "generic", 2, 32),
    "ecp5_pe1_ecp5_l3": ("ecp5", "85k", 1, "ecp5", 3, 32),
    "ecp5_row8_generic_l1": ("ecp5", "85k", 8, "generic", 1, 32),
    "ecp5_row8_generic_l2": ("ecp5", "85k", 8, "generic", 2, 32),
    "ecp5_row8_generic_l3": ("ecp5", "85k", 8, "generic", 3, 32),
    "ecp5_row8_ecp5_l2": ("ecp5", "85k", 8, "ecp5", 2, 32),
    "ecp5_row8_ecp5_l3": ("ecp5", "85k", 8, "ecp5", 3, 32),
    # ECP5: 8x8 grid, 64 MULT18X18D, the array's PE today against every DSP register
    "ecp5_grid8x8_generic_l1": ("ecp5", "85k", "8x8", "generic", 1, 32),
    "ecp5_grid8x8_ecp5_l3": ("ecp5", "85k", "8x8", "ecp5", 3, 32),
    # ... plus a fabric register between the DSP and the accumulator ("+r": latency 4)
    "ecp5_grid8x8_ecp5_l3r": ("ecp5", "85k", "8x8+r", "ecp5", 3, 32),
    # UP5K: 8 MACs on 8 SB_MAC16 (one product each, as today) against 16 MACs on the same 8
    "up5k_row8_generic_l2": ("ice40", "up5k", 8, "generic", 2, 24),
    "up5k_row16_ice40_l3": ("ice40", "up5k", 16, "ice40", 3, 24),
    "up5k_row16_ice40_l2": ("ice40", "up5k", 16, "ice40", 2, 24),
}


def build(name: str):
    target, device, n, variant, latency, acc_width = POINTS[name]
    if isinstance(n, str):
        rows, cols = map(int, n.removesuffix("+r").split("x"))
        top = f"convgen_macgrid_{name}"
        grid = MacGrid(rows, cols, variant, latency, acc_width, product_reg=n.endswith("+r"))
        return to_verilog(grid, top), top
    top = f"convgen_macrow_{name}"
    return to_verilog(MacRow(n, variant, latency, acc_width), top), top


def macs(n) -> int:
    if isinstance(n, str):
        rows, cols = map(int, n.removesuffix("+r").split("x"))
        return rows * cols
    return n


def run_point(name: str, seed: int) -> dict:
    target, device, n, variant, latency, acc_width = POINTS[name]
    text, top = build(name)
    doc = run_flow(text, top, target, block="macgrid" if isinstance(n, str) else "macrow", device=device,
                   pnr=True, seed=seed,
                   parameters={"n": n, "variant": variant, "latency": latency, "acc_width": acc_width})
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", default=",".join(POINTS))
    p.add_argument("--seeds", default="1")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.points.split(","):
        target, device, n, variant, latency, acc_width = POINTS[name]
        fmax, last = [], None
        for seed in seeds:
            t0 = time.monotonic()
            try:
                doc = run_point(name, seed)
            except DoesNotFit as e:
                print(f"{name}: does not fit ({e})", file=sys.stderr)
                rows.append({"point": name, "status": "does not fit", "message": str(e)})
                break
            print(f"{name} seed {seed}: {doc['fmax_mhz']:.1f} MHz, {time.monotonic() - t0:.0f} s", file=sys.stderr)
            fmax.append(doc["fmax_mhz"])
            last = doc
        if last is None:
            continue
        r = last["resources"]
        util = last["pnr"]["utilisation"]
        dsp_bel = "MULT18X18D" if target == "ecp5" else "ICESTORM_DSP"
        logic_bel = "TRELLIS_COMB" if target == "ecp5" else "ICESTORM_LC"
        med = statistics.median(fmax)
        rows.append({
            "point": name, "status": "ok", "target": target, "device": last["device_name"], "macs": macs(n),
            "variant": variant, "latency": latency + int(str(n).endswith("+r")), "acc_width": acc_width,
            "luts": r["luts"], "ffs": r["ffs"], "carries": r["carries"], "dsps": r["dsps"],
            "luts_per_mac": round(r["luts"] / macs(n), 1),
            "placed_logic": util.get(logic_bel), "placed_dsp": util.get(dsp_bel),
            "seeds": seeds, "fmax_mhz": fmax, "fmax_median": round(med, 1),
            "fmax_spread": round(max(fmax) - min(fmax), 1),
            "gmacs": round(macs(n) * med / 1000, 3),
            "critical_path": last["pnr"]["critical_path"],
            "tools": last["tools"],
        })
    command = ".venv/bin/python bench/vendor_dsp.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    md = markdown(rows, command)
    print(md)
    out = Path(args.out)
    atomic_write_text(out / "vendor_dsp.md", md)
    atomic_write_text(out / "vendor_dsp.json", json.dumps(portable(rows), indent=2, default=str) + "\n")
    return 0


def markdown(rows, command: str) -> str:
    head = ["point", "device", "MACs", "multiplier", "latency", "LUT4", "FF", "carries", "DSP",
            "LUT4/MAC", "placed logic", "placed DSP", "Fmax MHz (median)", "spread", "Fmax per seed", "GMAC/s",
            "critical path"]
    lines = ["# DspMul variants placed and routed (bench/vendor_dsp.py)", "",
             f"Command: `{command}`. Designs: `MacRow` (a row of PEs) and `MacGrid` (an 8x8 grid "
             "without read-out), see bench/vendor_dsp.py; discussion in docs/vendor_dsp.md.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['point']} | {r['status']}: {r['message'][:120]} |")
            continue
        pl = r["placed_logic"] or {}
        pd = r["placed_dsp"] or {}
        lines.append("| " + " | ".join(str(x) for x in [
            f"`{r['point']}`", r["device"], r["macs"], r["variant"], r["latency"], r["luts"], r["ffs"],
            r["carries"], r["dsps"], r["luts_per_mac"], f"{pl.get('used')}/{pl.get('available')}",
            f"{pd.get('used')}/{pd.get('available')}", r["fmax_median"], r["fmax_spread"],
            ",".join(f"{f:.1f}" for f in r["fmax_mhz"]), r["gmacs"], " -> ".join(r["critical_path"])]) + " |")
    ok = [r for r in rows if r["status"] == "ok"]
    tools = sorted({f"{r['tools']['yosys']['version']}, {r['tools']['nextpnr']['version']}" for r in ok})
    lines += ["", f"Tools: {'; '.join(tools)}.",
              "LUT4/FF/carries/DSP: yosys, bare design. Placed: nextpnr, design plus its 3-pin I/O harness "
              "(docs/synth.md). Fmax: nextpnr post-route, seeds in the order given; GMAC/s = MACs x median Fmax. "
              "Critical path: the last seed's, source -> sink."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
