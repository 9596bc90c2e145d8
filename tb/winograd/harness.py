"""Test harness: the four stand-alone Winograd blocks and a narrow-output WinogradConv3x3
side by side in one module, so one simulator build covers all of them (the build is the slow
part of a cocotb run). Streams: ``it_*`` WinogradInputTransform, ``ft_*``
WinogradFilterTransform, ``ot_*`` WinogradOutputTransform, ``f23_*`` WinogradF23 (all with the
harness configuration), ``c20_*`` WinogradConv3x3 with :data:`NARROW_CONV` (out_width=20,
max_channels=3: the overflow limit is reachable in a short test). Each pair is independent."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring

from convgen.hdl.winograd import (WinogradConfig, WinogradConv3x3, WinogradF23,
                                  WinogradFilterTransform, WinogradInputTransform,
                                  WinogradOutputTransform)

PAIRS = {"it": WinogradInputTransform, "ft": WinogradFilterTransform,
         "ot": WinogradOutputTransform, "f23": WinogradF23}
NARROW_CONV = {"out_width": 20}


class WinogradHarness(wiring.Component):
    def __init__(self, config: WinogradConfig):
        self.config = config
        self._blocks = {name: cls(config) for name, cls in PAIRS.items()}
        self._blocks["c20"] = WinogradConv3x3(WinogradConfig(**{**config.to_dict(), **NARROW_CONV}))
        members = {}
        for name, blk in self._blocks.items():
            members[f"{name}_i"] = blk.signature.members["i"]
            members[f"{name}_o"] = blk.signature.members["o"]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for name, blk in self._blocks.items():
            m.submodules[name] = blk
            wiring.connect(m, wiring.flipped(getattr(self, f"{name}_i")), blk.i)
            wiring.connect(m, blk.o, wiring.flipped(getattr(self, f"{name}_o")))
        return m


def module_name(cfg: WinogradConfig) -> str:
    return cfg.module_name("harness")
