"""Deliberately broken DspMul wrappers and simulation models. tests/test_vendor_dsp.py runs
the exhaustive sweep with them and requires it to fail, so the sweep is shown to catch each
bug. Each is a bug a designer could plausibly make."""

from __future__ import annotations

from convgen.hdl.lib.dsp import DspMul, simulation_sources


class ZeroExtendingDspMul(DspMul):
    """Passes operands to the vendor primitive zero-extended (``as_unsigned``) while telling it
    they are signed: every product with a negative operand is wrong."""

    def _operand(self, value):
        return value.as_unsigned()


def _mutate(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"mutation site {old!r} found {text.count(old)} times, not once")
    return text.replace(old, new)


#: name -> (model file, text replaced, replacement)
MODEL_MUTANTS = {
    # MULT18X18D's pipeline register loads whatever CE0 says
    "ecp5_pipeline_ignores_ce": ("ecp5_mult18x18d.v", "end else if (CE0) begin\n            p_pipe <= product;",
                                 "end else begin\n            p_pipe <= product;"),
    # SIGNEDA ignored: operand A always zero-extended to 36 bits. Invisible through DspMul
    # with 8-bit operands (they arrive sign-extended to 18 bits and only the low 16 product
    # bits are used), so the full-width model sweep is the check that catches it.
    "ecp5_ignores_signeda": ("ecp5_mult18x18d.v", "wire [35:0] a_ext = {{18{sa & a_op[17]}}, a_op};",
                             "wire [35:0] a_ext = {18'd0, a_op};"),
    # SB_MAC16's bottom 8x8 multiplier takes A as unsigned whatever A_SIGNED says
    "ice40_unsigned_low_a": ("ice40_sb_mac16.v", "A_SIGNED && MODE_8x8", "1'b0"),
}


def mutant_model(name: str) -> dict[str, str]:
    """``{model file: mutated text}`` for ``run_sweep(model_overrides=...)``."""
    fname, old, new = MODEL_MUTANTS[name]
    variant = fname.split("_")[0]
    return {fname: _mutate(simulation_sources(variant)[fname], old, new)}
