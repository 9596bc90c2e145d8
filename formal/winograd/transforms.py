"""Equivalence miters: the Winograd transform blocks equal their matrix definitions.

    V  = BT d BT^T                          (WinogradInputTransform, 4x4 -> 4x4)
    U4 = G2 g G2^T, G2 = 2 G                (WinogradFilterTransform, 3x3 -> 4x4)
    Y  = ((AT M4 AT^T) mod 2**acc) >> 2     (WinogradOutputTransform, 4x4 -> 2x2, out_width bits)

The matrices come from ``convgen.core.winograd`` (checked there against the Winograd identity
with exact fractions). The specification is written in the wrapper as one signed sum per
output element, wide enough to be exact, with the coefficients ``M[i][k] * M[j][l]``
expanded, so it shares no structure with the RTL's two-stage adder trees. The wrapper keeps the last input beat taken and asserts,
whenever ``o.valid`` is high, that every output element equals the specification of that beat:
for V and U4 exactly (sign-extended, so the RTL widths are proved wide enough), for Y bit for
bit (``acc - 2`` bits, the documented modular semantics). The stream rules are checked as for
every block (formal/common.py). Mode: BMC to depth 3, complete for this structure (see ``DEPTH``).
"""

from __future__ import annotations

from convgen.core.winograd import AT, BT, FILTER_SHIFT, G2

from ..common import Dut, Mutant, SbyJob, generate, replace_re, wrapper
from ..streams import PropertySet

#: cycle 0 resets, cycle 1 transfers any input value, cycle 2 shows its result, and a clocked
#: immediate assertion about cycle 2 is checked in step 3 of the unrolling: so depth 4. (Depth 3
#: passes for a wrong transform too, which is how that was found: the mutant below.) The block
#: is a combinational function f of ``i.payload`` in front of one PipelineStage, whose register
#: is written only with f(i.payload) on a transfer (and cleared by reset), so every value ``o``
#: can ever show is f(x) for some input x; BMC to depth 4 checks f(x) == spec(x) for every x.
#: That is the completeness argument: structural, not k-induction. (k-induction was tried at
#: depth 2: it fails in 5 s on an unreachable start state, f_past low with a stalled beat; with
#: that state excluded by an extra assertion it did not finish in 400 s with yices.)
DEPTH = 4


def _spec_width(mat, ew: int) -> int:
    """Signed width that holds every ``sum_kl L[i][k] x[k][l] L[j][l]`` exactly for ``ew``-bit
    signed x (one more bit than the bound needs): the comparison with the sign-extended RTL
    output is then exact. A 64-bit specification is also exact but 10x slower to prove (the
    solver must show that 50 sign bits agree)."""
    coef = max(sum(abs(int(a) * int(b)) for a in mat[i] for b in mat[j])
               for i in range(len(mat)) for j in range(len(mat)))
    return (coef << (ew - 1)).bit_length() + 2


def _spec(dut: Dut, mat_left, n_in: int, *, name: str, width: int | None = None) -> tuple[str, list[str]]:
    """Verilog wires ``f_<name>_<i>_<j> = sum_kl L[i][k] x[k][l] L[j][l]`` of the captured input
    ``f_in`` (row-major, ``n_in x n_in``), ``width`` bits (default: exact), and their names."""
    i = dut.stream("i")
    ew = i["layout"]["elem_width"]
    SPEC_WIDTH = width or _spec_width(mat_left, ew)
    width = i["layout"]["width"]
    lines = [f"  reg [{width - 1}:0] f_in = 0;",
             f"  always @(posedge clk) if ({i['valid']} && {i['ready']}) f_in <= {i['payload']};"]
    for k in range(n_in * n_in):
        lines.append(f"  wire signed [{SPEC_WIDTH - 1}:0] f_x{k} = $signed(f_in[{k * ew + ew - 1}:{k * ew}]);")
    names = []
    rows = len(mat_left)
    for a in range(rows):
        for b in range(rows):
            terms = []
            for k in range(n_in):
                for l in range(n_in):
                    c = int(mat_left[a][k]) * int(mat_left[b][l])
                    if c:
                        terms.append(f"{'-' if c < 0 else '+'} {abs(c)} * f_x{k * n_in + l}")
            expr = " ".join(terms) if terms else "0"
            wname = f"f_{name}_{a}_{b}"
            lines.append(f"  wire signed [{SPEC_WIDTH - 1}:0] {wname} = {expr.lstrip('+ ')};")
            names.append(wname)
    return "\n".join(lines), names


def transform_job(kind: str, mutate=None, **widths) -> SbyJob:
    from convgen.hdl.winograd import BLOCKS, WinogradConfig
    cfg = WinogradConfig(**widths)
    dut = generate(BLOCKS[kind](cfg), cfg.module_name(kind), mutate=mutate)
    o = dut.stream("o")
    if kind == "input_transform":
        decls, spec = _spec(dut, BT, 4, name="v")
    elif kind == "filter_transform":
        decls, spec = _spec(dut, G2, 3, name="u")
    elif kind == "output_transform":
        # modulo 2**acc_width by definition: the sum is kept in acc_width bits
        decls, spec = _spec(dut, AT, 4, name="y", width=cfg.acc_width)
    else:
        raise ValueError(kind)
    checks = []
    for k, wname in enumerate(spec):
        elem, w, _ = dut.element("o", k)
        if kind == "output_transform":
            # (sum mod 2**acc) >> FILTER_SHIFT, arithmetic: bits acc-1 .. FILTER_SHIFT of the sum
            assert w == cfg.acc_width - FILTER_SHIFT
            checks.append(f"    assert({elem} == {wname}[{cfg.acc_width - 1}:{FILTER_SHIFT}]);")
        else:
            checks.append(f"    assert($signed({elem}) == {wname});")
    props = (f"\n  // ---- specification: the matrix definition of the captured beat\n{decls}\n"
             f"  always @(posedge clk) if (f_past && !f_rst_q && {o['valid']}) begin\n"
             + "\n".join(checks) + "\n  end\n")
    return SbyJob({f"{dut.name}.v": dut.verilog, "formal_top.sv": wrapper(dut, props=props)},
                  "formal_top", "bmc", DEPTH, timeout=900)


#: a sign error in the datapath: the operands of the first subtraction swapped
M_SWAPPED_SUB = Mutant("operands of the first subtraction swapped",
                       replace_re(r"= (\$signed\([^;]*?\)) - (\$signed\([^;]*?\));", r"= \2 - \1;"))


#: reduced operand widths (the generator derives every width from them); only the output
#: transform at these widths is quick, the rest take minutes or time out (docs/formal.md)
QUICK_WIDTHS = dict(data_width=4, weight_width=4, out_width=16)


def property_sets() -> list[PropertySet]:
    sets = []
    for kind, quick in (("input_transform", False), ("filter_transform", False), ("output_transform", True)):
        sets.append(PropertySet(f"winograd {kind} d4g4 == matrix definition", "bmc", DEPTH,
                                lambda mutate, kind=kind: transform_job(kind, mutate, **QUICK_WIDTHS),
                                quick=quick, mutants=[M_SWAPPED_SUB]))
    for kind in ("input_transform", "filter_transform", "output_transform"):
        sets.append(PropertySet(f"winograd {kind} int8 == matrix definition", "bmc", DEPTH,
                                lambda mutate, kind=kind: transform_job(kind, mutate), quick=False,
                                mutants=[M_SWAPPED_SUB]))
    return sets
