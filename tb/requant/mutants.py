"""Deliberately broken Requantizers. tests/test_tflite_rtl.py runs the LiteRT fixtures through
them and requires the run to fail with mismatches, so the fixture test is shown to catch each
bug. Each is a bug a designer could plausibly make."""

from __future__ import annotations

from convgen.hdl.requant import RequantConfig, Requantizer

__all__ = ["MUTANTS", "mutant_requantizer"]


class TiesAwayOptRequantizer(Requantizer):
    """``tflite_opt`` whose final shift ignores the ties-up rule and always rounds ties away
    from zero (the reference kernels' RoundingDivideByPOT): wrong on negative exact ties."""

    @staticmethod
    def _shift_threshold(mask, high, away):
        return (mask >> 1) + (high < 0)


class TiesAwayFloatRequantizer(Requantizer):
    """The float modes rounding the product half away from zero (``lrintf`` mistaken for
    ``roundf``): wrong on exact .5 ties with an even quotient."""

    @staticmethod
    def _float_round_up_bits(above, tie, quotient):
        return above | tie


class SerialSpacingRequantizer(Requantizer):
    """A ``serial`` product that lets the next beat in one step early (spacing ``interval -
    1``): the next beat's fm/scale overwrite the held stage-3 registers during the last digit
    step, so back-to-back beats get wrong products (and u_pre/zero point of the next beat)."""

    @staticmethod
    def _serial_spacing(interval):
        return interval - 1


#: name -> (class, the rounding modes it breaks)
MUTANTS = {
    "opt_ties_away": (TiesAwayOptRequantizer, ("tflite_opt",)),
    "float_ties_away": (TiesAwayFloatRequantizer, ("onnx", "xnnpack")),
    "serial_spacing": (SerialSpacingRequantizer, ("onnx", "xnnpack")),
}


def mutant_requantizer(name: str, cfg: RequantConfig) -> tuple[Requantizer, str]:
    """The broken block and a module name of its own (its simulation build is cached apart)."""
    cls, modes = MUTANTS[name]
    if cfg.rounding not in modes:
        raise ValueError(f"mutant {name!r} breaks {modes}, not {cfg.rounding!r}")
    return cls(cfg), f"{cfg.module_name}_mutant_{name}"
