"""EngineAxi: the :class:`~convgen.hdl.engine.ConvEngine` as drop-in AXI IP.

The wrapper binds the engine's memory streams to one AXI4 master ``m_axi_gmem_*``
(:class:`~convgen.hdl.axi.AxiMemoryMaster`) and its descriptor and status to an AXI4-Lite
slave ``s_axi_control_*`` with the register map of a Vivado HLS ``ap_ctrl_hs`` kernel
(:func:`register_map`: CTRL/GIE/IER/ISR at 0x00..0x0C, one register per descriptor field from
0x10, then status, cycle counters and the build's constants), and an ``interrupt`` output.
Clock ``ap_clk``; reset ``ap_rst_n``, synchronous, active low (the HLS convention).

Tensor words live in AXI memory at ``<t>_addr + index * stride(t)`` bytes, ``stride`` the
word's bytes rounded up to a power of two (:meth:`AxiConfig.stride`), little-endian, unused
high bytes ignored on reads and not written (byte strobes off). The base byte addresses must
be multiples of their stride. docs/axi.md has the ports, the register map, when bursts happen,
the timing and the driver (``sim/axi_driver.py``).

A run: the host writes the descriptor registers and sets ``ap_start``; the wrapper checks the
base addresses' alignment (a misaligned base ends the run with ``STATUS.align_error``, nothing
read or written), hands the descriptor to the engine (which runs its own checks:
``STATUS.desc_error``, nothing read or written), waits for the engine's ``done`` and then for
the B response of every write, and sets ``ap_done`` (clear on read), ``ISR.done`` and, for any
error, ``ISR.error``. ``interrupt = GIE & |(IER & ISR)``, registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Cat, ClockDomain, Const, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from convgen.core.fields import Field, check_fields
from convgen.core.params import ConfigError

from .axi import AxiLiteSlave, AxiMemoryMaster, axi4_lite_signature, axi4_signature, word_stride
from .engine import ConvEngine, EngineConfig

__all__ = ["AXI_FIELDS", "AxiConfig", "EngineAxi", "Register", "register_map", "regmap_dict", "register_markdown",
           "c_header", "manifest_extra", "axi_component", "TENSORS", "CTRL_BITS", "IRQ_BITS", "STATUS_BITS"]

#: the tensors, in ARID order for the reads (y is the write)
TENSORS = ("x", "w", "p", "y")
READS = ("x", "w", "p")

#: the ``--axi`` options of ``convgen generate|synth engine`` (AxiConfig fields)
AXI_FIELDS = (
    Field("axi_data_width", 64, "AXI4 master data width in bits (m_axi_gmem_wdata/rdata)", kind=int,
          choices=(32, 64, 128, 256, 512)),
    Field("axi_addr_width", 32, "AXI4 master byte address width (m_axi_gmem_araddr/awaddr)", lo=32, hi=64),
    Field("axi_max_reads", 8, "AXI reads in flight at most (AR issued, last R beat not yet taken)", lo=1, hi=64),
    Field("axi_max_writes", 8, "AXI writes waiting for their B response at most", lo=1, hi=64),
    Field("axi_max_burst", 16, "longest gathered AXI burst in beats: address-sequential word reads of a port "
                               "(and y writes) that arrive on consecutive cycles form one INCR burst (1: one "
                               "transfer per word)", lo=1, hi=256),
    Field("axi_fault", "", "inject a known fault for testbenches (burst_addr: every multi-beat read burst starts "
                           "one bus beat too high)", choices=("", "burst_addr")),
)

ID_WIDTH = 2
#: CTRL (0x00) bits: (name, bit, access, meaning)
CTRL_BITS = (
    ("ap_start", 0, "RW/SC", "write 1 to start a layer; reads 1 until the wrapper takes the start "
                             "(at once when idle; a start written while busy waits for the layer to end)"),
    ("ap_done", 1, "RO/COR", "a layer has ended (good or not; see STATUS); cleared when CTRL is read"),
    ("ap_idle", 2, "RO", "no layer in progress"),
    ("ap_ready", 3, "RO/COR", "the wrapper can take a new start: set with ap_done, cleared when CTRL is read"),
)
#: IER (0x08) and ISR (0x0C) bits
IRQ_BITS = (
    ("done", 0, "a layer has ended (good or not)"),
    ("error", 1, "a layer has ended with an error (STATUS says which)"),
)
#: STATUS bits: (name, bit, meaning); the error bits are cleared by the next start
STATUS_BITS = (
    ("error", 0, "any of the errors below (the last layer's result is not valid)"),
    ("desc_error", 1, "the engine rejected the descriptor (docs/engine.md, Checks): nothing was read or written"),
    ("align_error", 2, "a base address is not a multiple of its tensor's stride: nothing was read or written"),
    ("read_error", 3, "an AXI read returned SLVERR or DECERR"),
    ("write_error", 4, "an AXI write returned SLVERR or DECERR"),
    ("busy", 8, "a layer is in progress"),
)


@dataclass(frozen=True)
class AxiConfig:
    """Elaboration-time parameters of an :class:`EngineAxi`: the engine and the AXI master
    (fields of :data:`AXI_FIELDS` without the ``axi_`` prefix)."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    data_width: int = 64
    addr_width: int = 32
    max_reads: int = 8
    max_writes: int = 8
    max_burst: int = 16
    fault: str = ""

    def __post_init__(self):
        if not isinstance(self.engine, EngineConfig):
            raise TypeError(f"engine must be an EngineConfig, not {type(self.engine).__name__}")
        values = {f.name: getattr(self, f.name[4:]) for f in AXI_FIELDS}
        for name, v in check_fields(AXI_FIELDS, values).items():
            object.__setattr__(self, name[4:], v)
        too_wide = [f for f, fl in self.engine.desc_layout if Shape.cast(fl.shape).width > 32]
        if too_wide:
            raise ConfigError(f"descriptor field {too_wide[0]} is wider than a 32-bit register")

    @classmethod
    def from_options(cls, engine: EngineConfig, opts: dict) -> "AxiConfig":
        return cls(engine, **{f.name[4:]: opts.get(f.name, f.default) for f in AXI_FIELDS})

    def word_bits(self, t: str) -> int:
        e = self.engine
        return {"x": 8 * e.vec, "w": 8 * e.cols, "p": e.param_layout.size, "y": 8 * e.cols}[t]

    def stride(self, t: str) -> int:
        """Bytes between consecutive words of tensor ``t`` in AXI memory (a power of two)."""
        return word_stride(self.word_bits(t))

    def beats(self, t: str) -> int:
        """AXI beats per word of ``t``: 1 (one beat, byte lanes picked) or the burst length."""
        return max(1, self.stride(t) // (self.data_width // 8))

    @property
    def module_name(self) -> str:
        base = self.engine.module_name.replace("convgen_engine_", "convgen_engine_axi_", 1)
        f = f"_afault_{self.fault}" if self.fault else ""
        return f"{base}_d{self.data_width}a{self.addr_width}r{self.max_reads}w{self.max_writes}l{self.max_burst}{f}"

    def to_dict(self) -> dict:
        return {"engine": self.engine.to_dict(), **{f.name: getattr(self, f.name[4:]) for f in AXI_FIELDS}}


# -- the register map, generated from the engine's descriptor layout ------------------------------
@dataclass(frozen=True)
class Register:
    """One 32-bit register of ``s_axi_control``.

    ``kind``: ``ctrl``, ``gie``, ``ier``, ``isr`` (the HLS four), ``desc`` (a descriptor
    field, ``width`` low bits used, two's complement if ``signed``), ``addr`` (32 bits of a
    tensor's byte base address; ``part`` 0 low, 1 high), ``status``, ``engine_cycles``,
    ``total_cycles``, ``config0``/``config1`` (constants of the build)."""

    name: str
    offset: int
    kind: str
    access: str
    doc: str
    width: int = 32
    signed: bool = False
    tensor: str = ""
    part: int = 0


def register_map(cfg: AxiConfig) -> list[Register]:
    """Every register of ``s_axi_control``, by offset. The descriptor registers follow
    ``EngineConfig.desc_layout`` field by field; its word base addresses (``x_base`` ..) become
    the byte addresses ``x_addr`` .. (plus ``x_addr_hi`` .. when ``addr_width > 32``)."""
    regs = [
        Register("ctrl", 0x00, "ctrl", "mixed", "control: ap_start, ap_done, ap_idle, ap_ready (HLS ap_ctrl_hs)"),
        Register("gie", 0x04, "gie", "RW", "global interrupt enable (bit 0)"),
        Register("ier", 0x08, "ier", "RW", "interrupt enable: bit 0 done, bit 1 error"),
        Register("isr", 0x0C, "isr", "RW/TOW", "interrupt status: bit 0 done, bit 1 error; writing 1 toggles a bit "
                                               "(write 1 to clear a set bit)"),
    ]
    off = 0x10
    for name, fl in cfg.engine.desc_layout:
        shape = Shape.cast(fl.shape)
        if name.endswith("_base") and name[:-5] in TENSORS:
            t = name[:-5]
            for part in range(-(-cfg.addr_width // 32)):
                w = min(32, cfg.addr_width - 32 * part)
                regs.append(Register(f"{t}_addr" + ("_hi" if part else ""), off, "addr", "RW",
                                     f"byte address of {t} word 0 in AXI memory" + (" (bits 63..32)" if part else "")
                                     + f"; a multiple of {cfg.stride(t)}", width=w, tensor=t, part=part))
                off += 4
            continue
        regs.append(Register(name, off, "desc", "RW", f"descriptor field {name} ({'signed' if shape.signed else 'unsigned'}"
                             f" {shape.width} bits)", width=shape.width, signed=shape.signed))
        off += 4
    for name, kind, doc in (
            ("status", "status", "bit 0 error, 1 desc_error, 2 align_error, 3 read_error, 4 write_error, 8 busy"),
            ("engine_cycles", "engine_cycles", "the engine's cycle counter: busy cycles of the last layer"),
            ("total_cycles", "total_cycles", "cycles from the start of the last layer to its ap_done"),
            ("config0", "config0", "rows (7..0), cols (15..8), vec (23..16), AXI data bytes (31..24)"),
            ("config1", "config1", "strides in bytes of x (7..0), w (15..8), p (23..16), y (31..24)")):
        regs.append(Register(name, off, kind, "RO", doc))
        off += 4
    return regs


def ctrl_addr_width(cfg: AxiConfig) -> int:
    """Byte address bits of ``s_axi_control`` (the register map's span rounded up to a power of two)."""
    return max(4, (register_map(cfg)[-1].offset + 3).bit_length())


def _config_words(cfg: AxiConfig) -> tuple[int, int]:
    e = cfg.engine
    c0 = e.rows | (e.cols << 8) | (e.vec << 16) | ((cfg.data_width // 8) << 24)
    c1 = 0
    for i, t in enumerate(TENSORS):
        c1 |= cfg.stride(t) << (8 * i)
    return c0, c1


def regmap_dict(cfg: AxiConfig) -> dict:
    """The register map and memory layout as plain data (the manifest's ``axi`` section; the
    driver ``sim/axi_driver.py`` runs from it alone)."""
    c0, c1 = _config_words(cfg)
    return {
        "registers": {r.name: {"offset": r.offset, "kind": r.kind, "access": r.access, "width": r.width,
                               "signed": r.signed, **({"tensor": r.tensor, "part": r.part} if r.kind == "addr" else {}),
                               "doc": r.doc} for r in register_map(cfg)},
        "ctrl_bits": {n: b for n, b, _, _ in CTRL_BITS},
        "irq_bits": {n: b for n, b, _ in IRQ_BITS},
        "status_bits": {n: b for n, b, _ in STATUS_BITS},
        "strides": {t: cfg.stride(t) for t in TENSORS},
        "word_bits": {t: cfg.word_bits(t) for t in TENSORS},
        "beats": {t: cfg.beats(t) for t in TENSORS},
        "data_width": cfg.data_width,
        "addr_width": cfg.addr_width,
        "ctrl_addr_width": ctrl_addr_width(cfg),
        "config0": c0,
        "config1": c1,
        "param_fields": {name: {"offset": fl.offset, "width": Shape.cast(fl.shape).width}
                         for name, fl in cfg.engine.param_layout},
    }


def register_markdown(cfg: AxiConfig, module: str | None = None) -> str:
    """The register map as a Markdown document."""
    module = module or cfg.module_name
    e = cfg.engine
    lines = [f"# Register map of {module}", "",
             f"AXI4-Lite slave `s_axi_control` ({ctrl_addr_width(cfg)}-bit byte addresses, 32-bit data); "
             f"AXI4 master `m_axi_gmem` ({cfg.data_width}-bit data, {cfg.addr_width}-bit addresses); "
             f"engine {e.rows} x {e.cols}, vec {e.vec}, rounding {e.rounding}. Generated by convgen.", "",
             "| offset | name | access | bits | description |", "|---|---|---|---|---|"]
    for r in register_map(cfg):
        bits = f"{r.width}" + (" signed" if r.signed else "")
        lines.append(f"| 0x{r.offset:02X} | {r.name.upper()} | {r.access} | {bits} | {r.doc} |")
    lines += ["", "## CTRL (0x00)", "", "| bit | name | access | meaning |", "|---|---|---|---|"]
    lines += [f"| {b} | {n} | {a} | {d} |" for n, b, a, d in CTRL_BITS]
    lines += ["", "## IER (0x08) and ISR (0x0C)", "", "| bit | name | meaning |", "|---|---|---|"]
    lines += [f"| {b} | {n} | {d} |" for n, b, d in IRQ_BITS]
    lines += ["", "`interrupt` = GIE[0] & |(IER & ISR), registered. ISR bits are set by the hardware and "
                  "toggled by writing 1 (HLS TOW): write the bits read to clear them.",
              "", "## STATUS", "", "| bit | name | meaning |", "|---|---|---|"]
    lines += [f"| {b} | {n} | {d} |" for n, b, d in STATUS_BITS]
    lines += ["", "## Memory layout", "",
              "Word i of a tensor is at byte address `<t>_addr + i * stride`, little-endian (bit 0 of the word "
              "in bit 0 of the lowest byte); bytes past the word's width are ignored on reads and not written. "
              "Each base address must be a multiple of its stride, or the run ends with STATUS.align_error.", "",
              "| tensor | word | bits | stride (bytes) | AXI transfer per word |", "|---|---|---|---|---|"]
    words = {"x": f"vec = {e.vec} activation bytes", "w": f"cols = {e.cols} int8 weights",
             "p": "requantization parameters (param layout)", "y": f"cols = {e.cols} output bytes"}
    for t in TENSORS:
        b = cfg.beats(t)
        how = "one beat, byte lanes" if b == 1 else f"INCR burst of {b} beats"
        lines.append(f"| {t} | {words[t]} | {cfg.word_bits(t)} | {cfg.stride(t)} | {how} |")
    lines += ["", "Parameter word fields (bit offset, width): " + ", ".join(
        f"{n} @{fl.offset} ({Shape.cast(fl.shape).width})" for n, fl in e.param_layout) + ".", ""]
    return "\n".join(lines)


def c_header(cfg: AxiConfig, module: str | None = None) -> str:
    """``#define``s of every register offset, bit and stride (prefix ``CONVGEN_AXI_``)."""
    module = module or cfg.module_name
    guard = "CONVGEN_AXI_" + "".join(ch if ch.isalnum() else "_" for ch in module.upper()) + "_H"
    out = [f"/* Register map of {module}, generated by convgen: do not edit. */", f"#ifndef {guard}",
           f"#define {guard}", ""]
    p = "CONVGEN_AXI_"
    for r in register_map(cfg):
        out.append(f"#define {p}{r.name.upper():<24} 0x{r.offset:02X}  /* {r.access}: {r.doc.replace('*/', '')} */")
    out.append("")
    for n, b, _, _ in CTRL_BITS:
        out.append(f"#define {p}CTRL_{n.upper():<19} (1u << {b})")
    for n, b, _ in IRQ_BITS:
        out.append(f"#define {p}IRQ_{n.upper():<20} (1u << {b})")
    for n, b, _ in STATUS_BITS:
        out.append(f"#define {p}STATUS_{n.upper():<17} (1u << {b})")
    out.append("")
    for t in TENSORS:
        out.append(f"#define {p}{t.upper()}_STRIDE{'':<17} {cfg.stride(t)}u")
    c0, c1 = _config_words(cfg)
    out += [f"#define {p}CONFIG0_VALUE{'':<11} 0x{c0:08X}u", f"#define {p}CONFIG1_VALUE{'':<11} 0x{c1:08X}u",
            f"#define {p}DATA_WIDTH{'':<14} {cfg.data_width}", "", f"#endif /* {guard} */", ""]
    return "\n".join(out)


# -- the wrapper --------------------------------------------------------------------------------
def _flat(prefix: str, sig: wiring.Signature, flip: bool) -> dict:
    """Top-level ports ``<prefix>_<member>`` of a bus signature (flipped for a slave)."""
    out = {}
    for name, member in sig.members.items():
        flow = member.flow.flip() if flip else member.flow
        out[f"{prefix}_{name}"] = flow(member.shape)
    return out


class EngineAxi(wiring.Component):
    """A :class:`ConvEngine` behind AXI: ``s_axi_control_*`` (AXI4-Lite slave, the register map
    of :func:`register_map`), ``m_axi_gmem_*`` (AXI4 master, :class:`AxiMemoryMaster`),
    ``interrupt``, clock ``ap_clk`` and synchronous active-low reset ``ap_rst_n`` (module
    docstring)."""

    def __init__(self, config: AxiConfig | None = None):
        if config is None:
            config = AxiConfig()
        if not isinstance(config, AxiConfig):
            raise TypeError(f"EngineAxi takes an AxiConfig, not {type(config).__name__}")
        self._config = config
        cfg = config
        members = {"ap_clk": In(1), "ap_rst_n": In(1), "interrupt": Out(1)}
        members.update(_flat("s_axi_control", axi4_lite_signature(ctrl_addr_width(cfg)), flip=True))
        members.update(_flat("m_axi_gmem", axi4_signature(cfg.addr_width, cfg.data_width, ID_WIDTH), flip=False))
        super().__init__(members)

    @property
    def config(self) -> AxiConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        e = cfg.engine
        m = Module()
        m.domains.sync = cd = ClockDomain("sync", local=True)
        m.d.comb += [cd.clk.eq(self.ap_clk), cd.rst.eq(~self.ap_rst_n)]

        m.submodules.engine = eng = ConvEngine(e)
        m.submodules.ctrl = sl = AxiLiteSlave(ctrl_addr_width(cfg))
        m.submodules.gmem = mst = AxiMemoryMaster(
            reads=[(t, getattr(eng, f"{t}_rsp").payload.shape()) for t in READS], write=("y", 8 * e.cols),
            index_width=e.addr_width, addr_width=cfg.addr_width, data_width=cfg.data_width, id_width=ID_WIDTH,
            max_reads=cfg.max_reads, max_writes=cfg.max_writes, max_burst=cfg.max_burst, fault=cfg.fault)
        for prefix, bus, sig, flip in (("s_axi_control", sl.bus, axi4_lite_signature(ctrl_addr_width(cfg)), True),
                                       ("m_axi_gmem", mst.bus, axi4_signature(cfg.addr_width, cfg.data_width,
                                                                              ID_WIDTH), False)):
            for name, member in sig.members.items():
                top = getattr(self, f"{prefix}_{name}")
                inner = getattr(bus, name)
                # the inner bus has the member's own flow for a master, flipped for a slave
                drives_out = (member.flow == Out) != flip
                m.d.comb += top.eq(inner) if drives_out else inner.eq(top)
        for t in READS:
            wiring.connect(m, getattr(eng, f"{t}_req"), getattr(mst, f"{t}_req"))
            wiring.connect(m, getattr(mst, f"{t}_rsp"), getattr(eng, f"{t}_rsp"))
        wiring.connect(m, eng.y_req, mst.y_req)

        # -- registers ----------------------------------------------------------------------------
        regs = register_map(cfg)
        store = {}
        for r in regs:
            if r.kind in ("desc", "addr"):
                store[r.name] = Signal(r.width, name=f"reg_{r.name}")
        gie = Signal(name="gie")
        ier = Signal(2, name="ier")
        isr = Signal(2, name="isr")
        ap_start = Signal(name="ap_start")
        ap_done = Signal(name="ap_done")
        ap_ready = Signal(name="ap_ready")
        st = {n: Signal(name=f"st_{n}") for n, _, _ in STATUS_BITS if n not in ("error", "busy")}
        total = Signal(32, name="total_cycles")
        states = ("IDLE", "CHECK", "DESC", "RUN", "DRAIN", "FINISH")
        S = {n: i for i, n in enumerate(states)}
        state = Signal(range(len(states)), name="state")
        idle = Signal(name="idle")
        m.d.comb += idle.eq(state == S["IDLE"])
        any_err = Signal(name="any_error")
        m.d.comb += any_err.eq(Cat(*st.values()).any())
        c0, c1 = _config_words(cfg)

        def value(r: Register):
            if r.kind == "ctrl":
                return Cat(ap_start, ap_done, idle, ap_ready)
            if r.kind == "gie":
                return gie
            if r.kind == "ier":
                return ier
            if r.kind == "isr":
                return isr
            if r.kind in ("desc", "addr"):
                return store[r.name]
            if r.kind == "status":
                bits = Signal(32, name="status_value")
                pos = {n: b for n, b, _ in STATUS_BITS}
                m.d.comb += [bits[pos["error"]].eq(any_err), bits[pos["busy"]].eq(~idle)]
                m.d.comb += [bits[pos[n]].eq(s) for n, s in st.items()]
                return bits
            if r.kind == "engine_cycles":
                return eng.cycles
            if r.kind == "total_cycles":
                return total
            return Const(c0 if r.kind == "config0" else c1, 32)

        word = sl.r_addr[2:]
        # an OR of gated values (continuous, no comb Switch: see AxiMemoryMaster on Icarus)
        m.d.comb += sl.r_data.eq(_or([Mux(word == (r.offset >> 2), value(r), 0) for r in regs]))
        rd_ctrl = sl.r_en & (word == 0)

        mask = Signal(32, name="w_mask")
        m.d.comb += mask.eq(Cat(*(sl.w_strb[i].replicate(8) for i in range(4))))
        wv = sl.w_data & mask
        wr = {r.name: Signal(name=f"wr_{r.name}") for r in regs}
        for r in regs:
            m.d.comb += wr[r.name].eq(sl.w_en & (sl.w_addr[2:] == r.offset >> 2))
            if r.name in store:
                s = store[r.name]
                with m.If(wr[r.name]):
                    m.d.sync += s.eq((s & ~mask[:r.width]) | wv[:r.width])
        with m.If(wr["gie"]):
            m.d.sync += gie.eq((gie & ~mask[0]) | wv[0])
        with m.If(wr["ier"]):
            m.d.sync += ier.eq((ier & ~mask[:2]) | wv[:2])

        # -- the run ---------------------------------------------------------------------------------
        bases = {t: Signal(cfg.addr_width, name=f"{t}_base_active") for t in TENSORS}
        for t in TENSORS:
            m.d.comb += getattr(mst, f"{t}_base").eq(bases[t])
        for name, _ in e.desc_layout:
            if name.endswith("_base") and name[:-5] in TENSORS:
                m.d.comb += eng.desc.payload[name].eq(0)
            else:
                m.d.comb += eng.desc.payload[name].eq(store[name])
        m.d.comb += eng.desc.valid.eq(state == S["DESC"])
        misaligned = Cat(*(bases[t][:(cfg.stride(t) - 1).bit_length()] != 0 for t in TENSORS
                           if cfg.stride(t) > 1)).any()
        set_done = Signal(name="set_done")
        m.d.comb += set_done.eq(state == S["FINISH"])
        with m.If(~idle):
            m.d.sync += total.eq(total + 1)
        with m.If(mst.rd_error):
            m.d.sync += st["read_error"].eq(1)
        with m.If(mst.wr_error):
            m.d.sync += st["write_error"].eq(1)
        with m.Switch(state):
            with m.Case(S["IDLE"]):
                with m.If(ap_start):
                    m.d.sync += [state.eq(S["CHECK"]), ap_start.eq(0), total.eq(0),
                                 *(s.eq(0) for s in st.values())]
                    for t in TENSORS:
                        lo = store[f"{t}_addr"]
                        hi = store.get(f"{t}_addr_hi")
                        m.d.sync += bases[t].eq(lo if hi is None else Cat(lo, hi))
            with m.Case(S["CHECK"]):
                with m.If(misaligned):
                    m.d.sync += [st["align_error"].eq(1), state.eq(S["FINISH"])]
                with m.Else():
                    m.d.sync += state.eq(S["DESC"])
            with m.Case(S["DESC"]):
                with m.If(eng.desc.ready):
                    m.d.sync += state.eq(S["RUN"])
            with m.Case(S["RUN"]):
                with m.If(eng.done):
                    m.d.sync += state.eq(S["DRAIN"])
                with m.Elif(eng.error & ~eng.busy):
                    m.d.sync += [st["desc_error"].eq(1), state.eq(S["FINISH"])]
            with m.Case(S["DRAIN"]):
                with m.If(~mst.writes_pending):
                    m.d.sync += state.eq(S["FINISH"])
            with m.Case(S["FINISH"]):
                m.d.sync += state.eq(S["IDLE"])

        # CTRL: start on write (taken when idle), done/ready clear on read (a set wins)
        with m.If(wr["ctrl"] & sl.w_strb[0] & sl.w_data[0]):
            m.d.sync += ap_start.eq(1)
        with m.If(set_done):
            m.d.sync += [ap_done.eq(1), ap_ready.eq(1)]
        with m.Elif(rd_ctrl):
            m.d.sync += [ap_done.eq(0), ap_ready.eq(0)]
        # ISR: set by the hardware, toggled by writing 1 (HLS TOW); a set wins over a toggle
        new_isr = Signal(2, name="isr_next")
        m.d.comb += new_isr.eq(Mux(wr["isr"], isr ^ wv[:2], isr))
        m.d.sync += isr.eq(new_isr | Cat(set_done, set_done & any_err))
        irq = Signal(name="interrupt_r")
        m.d.sync += irq.eq(gie & (ier & isr).any())
        m.d.comb += self.interrupt.eq(irq)
        return m


def _or(values):
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def axi_component(engine: EngineConfig, opts: dict):
    """``(EngineAxi, module name)`` for ``convgen generate|synth engine --axi``."""
    cfg = AxiConfig.from_options(engine, opts)
    return EngineAxi(cfg), cfg.module_name


def manifest_extra(cfg: AxiConfig) -> dict:
    """The engine's facts, the AXI register map and memory layout, and the clock and reset."""
    from .engine import manifest_extra as engine_extra

    ex = engine_extra(cfg.engine)
    ex["memory_map"] = {t: f"word i at byte address {t}_addr + i*{cfg.stride(t)} ({cfg.word_bits(t)} bits, "
                           f"little-endian)" for t in TENSORS}
    return {**ex, "axi": regmap_dict(cfg),
            "clock": {"name": "ap_clk", "edge": "rising"},
            "reset": {"name": "ap_rst_n", "polarity": "active low", "kind": "synchronous"}}
