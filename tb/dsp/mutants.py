"""Deliberately broken DspMul wrappers and simulation models. tests/test_vendor_dsp.py runs
the exhaustive sweep with them and requires it to fail, so the sweep is shown to catch each
bug. Each is a bug a designer could plausibly make.

A broken model is a renamed copy of the real one (``MULT18X18D_<bug>``), instantiated by a
DspMul subclass, so broken and correct instances share one simulator build."""

from __future__ import annotations

from convgen.hdl.lib.dsp import DspMul, simulation_sources

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
_PRIMITIVE = {"ecp5_mult18x18d.v": "MULT18X18D", "ice40_sb_mac16.v": "SB_MAC16"}


def _mutate(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"mutation site {old!r} found {text.count(old)} times, not once")
    return text.replace(old, new)


def mutant_model(name: str, *, module: str | None = None) -> dict[str, str]:
    """``{file name: mutated model text}``; ``module``: rename the model's module (the file is
    then ``<module>.v``), else the file replaces the real model."""
    fname, old, new = MODEL_MUTANTS[name]
    variant = fname.split("_")[0]
    text = _mutate(simulation_sources(variant)[fname], old, new)
    if module is None:
        return {fname: text}
    prim = _PRIMITIVE[fname]
    return {f"{module}.v": _mutate(text, f"module {prim}", f"module {module}")}


class ZeroExtendingDspMul(DspMul):
    """Passes operands to the vendor primitive zero-extended (``as_unsigned``) while telling it
    they are signed: every product with a negative operand is wrong."""

    def _operand(self, value):
        return value.as_unsigned()


class UnsignedSelectorLutDspMul(DspMul):
    """LUT multiplier that selects its partial products by the bits of a signed operand read as
    unsigned (its sign row added instead of subtracted): every product with a negative
    selector is wrong."""

    def _lut_rows(self, a, b):
        return super()._lut_rows(a, b.as_unsigned())


class PipelineIgnoresCeDspMul(DspMul):
    """ECP5 with a MULT18X18D whose pipeline register ignores CE0."""
    ECP5_PRIMITIVE = "MULT18X18D_pipeline_ignores_ce"
    MODEL = "ecp5_pipeline_ignores_ce"


class LowAUnsignedDspMul(DspMul):
    """iCE40 with an SB_MAC16 whose bottom multiplier ignores A_SIGNED (lane 0 breaks)."""
    ICE40_PRIMITIVE = "SB_MAC16_low_a_unsigned"
    MODEL = "ice40_unsigned_low_a"


def sources_of(cls) -> dict[str, str]:
    """The broken model a mutant class instantiates (``{}`` if it uses the real ones)."""
    model = getattr(cls, "MODEL", None)
    if model is None:
        return {}
    prim = cls.ECP5_PRIMITIVE if model.startswith("ecp5") else cls.ICE40_PRIMITIVE
    return mutant_model(model, module=prim)
