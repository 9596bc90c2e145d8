"""AXI building blocks: an AXI4-Lite slave front end and an AXI4 memory master for
request/response streams.

:class:`AxiLiteSlave` turns the five AXI4-Lite channels into a one-cycle register bus
(``w_en``/``r_en`` strobes); the register file behind it defines what each address does
(``hdl/engine_axi.py``).

:class:`AxiMemoryMaster` serves word-addressed read request/response streams and one write
request stream (the memory ports of :class:`~convgen.hdl.engine.ConvEngine`) from one AXI4
master. Every tensor word sits at ``base + index * stride`` bytes, ``stride`` the word's
bytes rounded up to a power of two (:func:`word_stride`):

- ``stride < bus bytes``: one beat (``len`` 0, full bus size, address aligned down to the bus
  width); the word is picked from its byte lanes (reads) or written with byte strobes (writes);
- ``stride >= bus bytes``: ``stride / bus bytes`` beats per word (the word low beat first), and
  words at consecutive addresses that a port requests on consecutive cycles are gathered into
  one INCR burst of at most ``max_burst`` beats within one 4 KiB page (:meth:`burst_words`).
  A word never crosses a 4 KiB boundary because ``base`` is a multiple of ``stride`` (the
  wrapper checks it) and ``stride <= 64``.

Reads: a request joins its port's open burst or waits in a one-word gather register; a burst
leaves for the single AR register stage in the first cycle no request joins it (round-robin
between the ports), so ARVALID rises two cycles after a burst's first request (one cycle for
narrow words, which skip the gather). ``max_reads`` words in flight (up to ``len(reads) - 1``
more when several ports are taken in one cycle); ARID = port number; R beats are routed by RID
(the slave may interleave IDs) and delimited into words by each port's beat count, so each
port's responses come back in request order, as AXI guarantees per ID. Writes: narrow words
issue AW and W in the same cycle; wider words gather like the reads, their data in a FIFO
until the burst's AW is issued (:meth:`_writes_gathered`). ``max_writes`` transfers wait for B
at most. Any RRESP/BRESP other than OKAY/EXOKAY raises ``rd_error``/``wr_error`` for a cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["axi4_signature", "axi4_lite_signature", "word_stride", "AxiLiteSlave", "AxiMemoryMaster",
           "BURST_INCR", "CACHE_MODIFIABLE"]

BURST_INCR = 0b01
#: AxCACHE of every transfer: bufferable, modifiable (what Vivado HLS m_axi ports use)
CACHE_MODIFIABLE = 0b0011


def axi4_signature(addr_width: int, data_width: int, id_width: int) -> wiring.Signature:
    """An AXI4 bus from the master's side (AMBA names without prefix; no REGION/USER)."""
    return wiring.Signature({
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awlock": Out(1), "awcache": Out(4), "awprot": Out(3), "awqos": Out(4),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1), "wvalid": Out(1),
        "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arlock": Out(1), "arcache": Out(4), "arprot": Out(3), "arqos": Out(4),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })


def axi4_lite_signature(addr_width: int, data_width: int = 32) -> wiring.Signature:
    """An AXI4-Lite bus from the master's side (the signals of a Vivado HLS ``s_axi_control``)."""
    return wiring.Signature({
        "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def word_stride(bits: int) -> int:
    """Bytes a word of ``bits`` bits occupies in AXI memory: its bytes rounded up to a power of two."""
    n = max(1, -(-bits // 8))
    return 1 << (n - 1).bit_length()


def _log2(v: int) -> int:
    return (v - 1).bit_length()


class AxiLiteSlave(wiring.Component):
    """AXI4-Lite slave protocol, 32-bit data: one register access per transfer.

    A write takes AW and W together (both valid; either may come first, the other is waited
    for) and strobes ``w_en`` for one cycle with ``w_addr`` (byte address), ``w_data`` and
    ``w_strb``; B (OKAY) follows in the next cycle. A read strobes ``r_en`` with ``r_addr`` for
    one cycle, samples ``r_data`` in that same cycle (the register file answers
    combinationally, and may act on the read: clear-on-read bits) and returns it on R (OKAY)
    in the next cycle. One write and one read may be strobed in the same cycle. Throughput: one
    write per two cycles and one read per two cycles with ``bready``/``rready`` high.
    """

    def __init__(self, addr_width: int):
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 32:
            raise TypeError(f"addr_width must be an integer in 3..32, not {addr_width!r}")
        self._addr_width = addr_width
        super().__init__({
            "bus": In(axi4_lite_signature(addr_width)),
            "w_en": Out(1), "w_addr": Out(addr_width), "w_data": Out(32), "w_strb": Out(4),
            "r_en": Out(1), "r_addr": Out(addr_width), "r_data": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        b = self.bus
        bvalid = Signal(name="bvalid_r")
        rvalid = Signal(name="rvalid_r")
        rdata = Signal(32, name="rdata_r")
        take_w = Signal(name="take_w")
        take_r = Signal(name="take_r")
        m.d.comb += [
            take_w.eq(b.awvalid & b.wvalid & ~bvalid),
            b.awready.eq(take_w), b.wready.eq(take_w),
            b.bvalid.eq(bvalid), b.bresp.eq(0),
            self.w_en.eq(take_w), self.w_addr.eq(b.awaddr), self.w_data.eq(b.wdata), self.w_strb.eq(b.wstrb),
            take_r.eq(b.arvalid & ~rvalid),
            b.arready.eq(take_r),
            b.rvalid.eq(rvalid), b.rdata.eq(rdata), b.rresp.eq(0),
            self.r_en.eq(take_r), self.r_addr.eq(b.araddr),
        ]
        with m.If(take_w):
            m.d.sync += bvalid.eq(1)
        with m.Elif(b.bready):
            m.d.sync += bvalid.eq(0)
        with m.If(take_r):
            m.d.sync += [rvalid.eq(1), rdata.eq(self.r_data)]
        with m.Elif(b.rready):
            m.d.sync += rvalid.eq(0)
        return m


class AxiMemoryMaster(wiring.Component):
    """Word-addressed request/response streams onto one AXI4 master (module docstring).

    Parameters
    ----------
    reads : sequence of (name, word shape)
        Read ports, in ARID order: ``<name>_req`` (In stream of ``{"addr": index_width}``),
        ``<name>_rsp`` (Out stream of the word shape, in request order), ``<name>_base`` (In,
        byte address of word 0).
    write : (name, data width in bits)
        The write port ``<name>_req`` (In stream of ``{"addr", "data"}``) and ``<name>_base``.
    index_width : int
        Word index bits of every request.
    addr_width, data_width, id_width : int
        The AXI bus (``data_width`` a power of two in 32..512).
    max_reads, max_writes : int
        Words read in flight (taken from a request stream, not yet answered); write transfers
        whose B has not come.
    max_burst : int, 1..256
        Longest gathered burst in beats (1: one transfer per word).
    fault : str
        ``"burst_addr"``: every multi-beat read burst starts one bus beat too high (an injected
        fault that a testbench must catch). Empty: none.

    Attributes
    ----------
    bus : Out(axi4_signature(...))
    rd_error, wr_error : Out(1)
        One-cycle pulse: an R beat with RRESP SLVERR/DECERR; a B with BRESP SLVERR/DECERR.
    reads_pending, writes_pending : Out(1)
        Reads in flight; writes whose B has not come (or whose W beats are not all sent).
    """

    def __init__(self, *, reads, write, index_width: int, addr_width: int = 32, data_width: int = 64,
                 id_width: int = 2, max_reads: int = 8, max_writes: int = 8, max_burst: int = 16, fault: str = ""):
        if data_width not in (32, 64, 128, 256, 512):
            raise TypeError(f"data_width must be one of 32, 64, 128, 256, 512, not {data_width!r}")
        if (1 << id_width) < len(reads):
            raise TypeError(f"id_width {id_width} cannot number {len(reads)} read ports")
        if not isinstance(max_burst, int) or not 1 <= max_burst <= 256:
            raise TypeError(f"max_burst must be an integer in 1..256, not {max_burst!r}")
        if fault not in ("", "burst_addr"):
            raise TypeError(f"fault must be '' or 'burst_addr', not {fault!r}")
        self._reads = [(name, shape, Shape.cast(shape).width) for name, shape in reads]
        self._write = write
        self._index_width = index_width
        self._aw, self._dw, self._idw = addr_width, data_width, id_width
        self._max_reads, self._max_writes = max_reads, max_writes
        self._fault = fault
        self._max_burst = max_burst
        idx = data.StructLayout({"addr": index_width})
        members = {"bus": Out(axi4_signature(addr_width, data_width, id_width))}
        for name, shape, _ in self._reads:
            members[f"{name}_req"] = In(stream.Signature(idx))
            members[f"{name}_rsp"] = Out(stream.Signature(shape))
            members[f"{name}_base"] = In(addr_width)
        wname, wbits = write
        members[f"{wname}_req"] = In(stream.Signature(data.StructLayout({"addr": index_width, "data": wbits})))
        members[f"{wname}_base"] = In(addr_width)
        members.update({"rd_error": Out(1), "wr_error": Out(1), "reads_pending": Out(1), "writes_pending": Out(1)})
        super().__init__(members)

    # -- the memory layout, for documentation and the host ------------------------------------
    @property
    def bus_bytes(self) -> int:
        return self._dw // 8

    def stride(self, name: str) -> int:
        """Bytes between consecutive words of port ``name``."""
        if name == self._write[0]:
            return word_stride(self._write[1])
        return word_stride(dict((n, w) for n, _, w in self._reads)[name])

    def beats(self, name: str) -> int:
        """AXI beats per word of port ``name`` (1: a single-beat transfer, else the burst length)."""
        return max(1, self.stride(name) // self.bus_bytes)

    def burst_words(self, name: str) -> int:
        """Words one read burst of port ``name`` may gather: 1 for a word narrower than the
        bus (one beat each), else ``max_burst // beats`` (at least 1)."""
        if self.stride(name) < self.bus_bytes:
            return 1
        return max(1, self._max_burst // self.beats(name))

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        BB, DW, AW = self.bus_bytes, self._dw, self._aw
        sz = _log2(BB)
        m.d.comb += [bus.arsize.eq(sz), bus.arburst.eq(BURST_INCR), bus.arcache.eq(CACHE_MODIFIABLE),
                     bus.arlock.eq(0), bus.arprot.eq(0), bus.arqos.eq(0),
                     bus.awsize.eq(sz), bus.awburst.eq(BURST_INCR), bus.awcache.eq(CACHE_MODIFIABLE),
                     bus.awlock.eq(0), bus.awprot.eq(0), bus.awqos.eq(0), bus.awid.eq(0)]

        # -- reads: gather contiguous requests into bursts, round-robin onto one AR stage ----
        NR = len(self._reads)
        ar_valid = Signal(name="ar_valid")
        ar_addr = Signal(AW, name="ar_addr")
        ar_len = Signal(8, name="ar_len")
        ar_id = Signal(self._idw, name="ar_id")
        m.d.comb += [bus.arvalid.eq(ar_valid), bus.araddr.eq(ar_addr), bus.arlen.eq(ar_len), bus.arid.eq(ar_id)]
        in_flight = Signal(range(self._max_reads + NR + 1), name="reads_in_flight")
        last = Signal(range(max(2, NR)), name="ar_last_grant")
        free = Signal(name="ar_free")
        room = Signal(name="ar_room")
        m.d.comb += [free.eq(~ar_valid | bus.arready), room.eq(in_flight < self._max_reads)]
        reqs = [getattr(self, f"{n}_req") for n, _, _ in self._reads]
        cand = [Signal(name=f"ar_cand_{n}") for n, _, _ in self._reads]     # wants the AR stage
        grant = [Signal(name=f"ar_grant_{n}") for n, _, _ in self._reads]
        # (continuous expressions, not a comb Switch: Icarus leaves an always @* block X until
        # one of its inputs changes, docs/adding-a-block.md)
        for i in range(NR):
            beaten = Const(0)
            for j in range(NR):
                if j == i:
                    continue
                # j goes before i when, after the last grant `lst`, j comes first in the rotation
                before = [lst for lst in range(NR) if (j - lst - 1) % NR < (i - lst - 1) % NR]
                if before:
                    beaten = beaten | (cand[j] & Cat(*(last == lst for lst in before)).any())
            m.d.comb += grant[i].eq(free & cand[i] & ~beaten)
        emit_any = Signal(name="ar_emit")
        m.d.comb += emit_any.eq(Cat(*grant).any())
        fifos = {}
        accepted = []
        for i, (name, shape, bits) in enumerate(self._reads):
            stride = word_stride(bits)
            beats = max(1, stride // BB)
            words = self.burst_words(name)
            req = reqs[i]
            byte = Signal(AW, name=f"{name}_byte_addr")
            m.d.comb += byte.eq(getattr(self, f"{name}_base") + (req.payload.addr << _log2(stride)))
            take = Signal(name=f"{name}_take")
            ok = room
            if stride < BB:
                # which `stride`-byte lane of the bus word holds the answer, per request in order
                lanes = BB // stride
                fifo = SyncFIFOBuffered(width=_log2(lanes), depth=self._max_reads + NR)
                m.submodules[f"{name}_lane_fifo"] = fifo
                fifos[name] = fifo
                ok = room & fifo.w_rdy
                m.d.comb += [fifo.w_data.eq(byte[_log2(stride):sz]), fifo.w_en.eq(take)]
            m.d.comb += take.eq(req.valid & req.ready)
            accepted.append(take)

            def emit(addr, nwords, i=i, beats=beats):
                length = (nwords << _log2(beats)) - 1 if beats > 1 or not isinstance(nwords, int) else nwords - 1
                if self._fault == "burst_addr":
                    addr = Mux(length != 0, addr + BB, addr)   # injected fault: a burst starts one beat too high
                m.d.sync += [ar_valid.eq(1), ar_addr.eq(addr), ar_len.eq(length), ar_id.eq(i), last.eq(i)]

            if words == 1:
                # one AR per word, straight from the request
                m.d.comb += [cand[i].eq(req.valid & ok), req.ready.eq(grant[i])]
                with m.If(grant[i]):
                    emit(Cat(Const(0, sz), byte[sz:]) if stride < BB else byte, 1)
                continue
            # gather: a request that continues the open burst (next address, same 4 KiB page,
            # not full) joins it; the burst goes to the AR stage in the first cycle nothing joins
            g_valid = Signal(name=f"{name}_g_valid")
            g_addr = Signal(AW, name=f"{name}_g_addr")
            g_next = Signal(AW, name=f"{name}_g_next")
            g_n = Signal(range(words), name=f"{name}_g_words")
            contig = Signal(name=f"{name}_contig")
            extend = Signal(name=f"{name}_extend")
            m.d.comb += [
                contig.eq(g_valid & (byte == g_next) & (g_n != words - 1) & (byte[12:] == g_addr[12:])),
                extend.eq(req.valid & ok & contig),
                cand[i].eq(g_valid & ~extend),
                req.ready.eq(ok & (contig | ~g_valid | grant[i])),
            ]
            with m.If(grant[i]):
                emit(g_addr, g_n + 1)
            with m.If(extend):
                m.d.sync += [g_n.eq(g_n + 1), g_next.eq(g_next + stride)]
            with m.Elif(take):
                m.d.sync += [g_valid.eq(1), g_addr.eq(byte), g_next.eq(byte + stride), g_n.eq(0)]
            with m.Elif(grant[i]):
                m.d.sync += g_valid.eq(0)
        with m.If(~emit_any & bus.arready):
            m.d.sync += ar_valid.eq(0)

        # -- R: route by RID, words delimited by each port's beat count ----------------------
        r_fire = bus.rvalid & bus.rready
        ends, blocks = [], []
        counts = {}
        for i, (name, _, bits) in enumerate(self._reads):
            beats = max(1, word_stride(bits) // BB)
            if beats > 1:
                counts[name] = cnt = Signal(range(beats), name=f"{name}_beat")
                ends.append((bus.rid == i) & (cnt == beats - 1))
            else:
                ends.append(bus.rid == i)
            blocks.append(ends[-1] & ~getattr(self, f"{name}_rsp").ready)
        word_end = Signal(name="r_word_end")
        m.d.comb += [word_end.eq(Cat(*ends).any()), bus.rready.eq(~Cat(*blocks).any())]
        m.d.sync += in_flight.eq(in_flight + sum(accepted) - (r_fire & word_end))
        m.d.comb += [self.reads_pending.eq(in_flight != 0), self.rd_error.eq(r_fire & bus.rresp[1])]
        for i, (name, shape, bits) in enumerate(self._reads):
            stride = word_stride(bits)
            beats = max(1, stride // BB)
            rsp = getattr(self, f"{name}_rsp")
            mine = bus.rvalid & (bus.rid == i)
            if beats > 1:
                cnt = counts[name]
                held = Signal((beats - 1) * DW, name=f"{name}_beats")
                with m.If(mine & bus.rready):
                    m.d.sync += cnt.eq(Mux(cnt == beats - 1, 0, cnt + 1))
                    with m.If(cnt != beats - 1):
                        m.d.sync += held.eq(Cat(held[DW:], bus.rdata) if beats > 2 else bus.rdata)
                word = Cat(held, bus.rdata)
            elif stride < BB:
                fifo = fifos[name]
                word = bus.rdata.word_select(fifo.r_data, 8 * stride)
                m.d.comb += fifo.r_en.eq(rsp.valid & rsp.ready)
            else:
                word = bus.rdata
            m.d.comb += [rsp.valid.eq(mine & ends[i]), rsp.payload.eq(word[:bits])]

        # -- writes ----------------------------------------------------------------------------
        if self.burst_words(self._write[0]) == 1:
            self._writes_single(m)
        else:
            self._writes_gathered(m)
        return m

    def _writes_single(self, m):
        """One AW and the word's W beats per write request, issued in the same cycle."""
        bus = self.bus
        BB, DW, AW = self.bus_bytes, self._dw, self._aw
        sz = _log2(BB)
        wname, wbits = self._write
        y = getattr(self, f"{wname}_req")
        stride = word_stride(wbits)
        beats = max(1, stride // BB)
        nbytes = -(-wbits // 8)
        aw_valid = Signal(name="aw_valid")
        aw_addr = Signal(AW, name="aw_addr")
        w_busy = Signal(name="w_busy")
        w_beat = Signal(range(max(2, beats)), name="w_beat")
        w_data = Signal(beats * DW if beats > 1 else DW, name="w_data_r")
        w_strb = Signal(len(w_data) // 8, name="w_strb_r")
        b_wait = Signal(range(self._max_writes + 1), name="b_outstanding")
        w_last = Signal(name="w_last")
        m.d.comb += [bus.awvalid.eq(aw_valid), bus.awaddr.eq(aw_addr), bus.awlen.eq(beats - 1),
                     bus.wvalid.eq(w_busy), bus.wdata.eq(w_data[:DW]), bus.wstrb.eq(w_strb[:BB]),
                     w_last.eq(w_beat == beats - 1), bus.wlast.eq(w_last), bus.bready.eq(1)]
        w_free = (~w_busy | (bus.wready & w_last))
        m.d.comb += y.ready.eq((~aw_valid | bus.awready) & w_free & (b_wait < self._max_writes))
        y_fire = y.valid & y.ready
        byte = Signal(AW, name=f"{wname}_byte_addr")
        m.d.comb += byte.eq(getattr(self, f"{wname}_base") + (y.payload.addr << _log2(stride)))
        mask = Const((1 << nbytes) - 1, nbytes)
        with m.If(y_fire):
            if stride < BB:
                lane = byte[_log2(stride):sz]
                m.d.sync += [aw_addr.eq(Cat(Const(0, sz), byte[sz:])),
                             w_data.eq(y.payload.data << (lane * (8 * stride))),
                             w_strb.eq(mask << (lane * stride))]
            else:
                m.d.sync += [aw_addr.eq(byte), w_data.eq(y.payload.data), w_strb.eq(mask)]
            m.d.sync += [aw_valid.eq(1), w_busy.eq(1), w_beat.eq(0)]
        with m.Else():
            with m.If(bus.awready):
                m.d.sync += aw_valid.eq(0)
            with m.If(bus.wready & w_busy):
                if beats > 1:
                    m.d.sync += [w_data.eq(w_data >> DW), w_strb.eq(w_strb >> BB), w_beat.eq(w_beat + 1)]
                with m.If(w_last):
                    m.d.sync += w_busy.eq(0)
        b_fire = bus.bvalid & bus.bready
        m.d.sync += b_wait.eq(b_wait + y_fire - b_fire)
        m.d.comb += [self.writes_pending.eq((b_wait != 0) | w_busy | aw_valid),
                     self.wr_error.eq(b_fire & bus.bresp[1])]

    def _writes_gathered(self, m):
        """Writes of words at least as wide as the bus: contiguous words that arrive on
        consecutive cycles gather into one burst (as the reads do); their data waits in a FIFO
        until the burst is closed and its AW issued, then the W beats follow from the FIFO."""
        bus = self.bus
        BB, DW, AW = self.bus_bytes, self._dw, self._aw
        wname, wbits = self._write
        y = getattr(self, f"{wname}_req")
        stride = word_stride(wbits)
        beats = max(1, stride // BB)
        words = self.burst_words(wname)
        nbytes = -(-wbits // 8)
        m.submodules.w_data_fifo = dfifo = SyncFIFOBuffered(width=8 * stride, depth=2 * words)
        m.submodules.w_len_fifo = lfifo = SyncFIFOBuffered(width=max(1, (words - 1).bit_length()), depth=4)
        aw_valid = Signal(name="aw_valid")
        aw_addr = Signal(AW, name="aw_addr")
        aw_len = Signal(8, name="aw_len")
        b_wait = Signal(range(self._max_writes + 1), name="b_outstanding")
        g_valid = Signal(name="y_g_valid")
        g_addr = Signal(AW, name="y_g_addr")
        g_next = Signal(AW, name="y_g_next")
        g_n = Signal(range(words), name="y_g_words")
        byte = Signal(AW, name=f"{wname}_byte_addr")
        contig = Signal(name="y_contig")
        extend = Signal(name="y_extend")
        emit = Signal(name="y_emit")
        m.d.comb += [
            byte.eq(getattr(self, f"{wname}_base") + (y.payload.addr << _log2(stride))),
            contig.eq(g_valid & (byte == g_next) & (g_n != words - 1) & (byte[12:] == g_addr[12:])),
            extend.eq(y.valid & dfifo.w_rdy & contig),
            emit.eq(g_valid & ~extend & (~aw_valid | bus.awready) & lfifo.w_rdy & (b_wait < self._max_writes)),
            y.ready.eq(dfifo.w_rdy & (contig | ~g_valid | emit)),
            dfifo.w_en.eq(y.valid & y.ready), dfifo.w_data.eq(y.payload.data),
            lfifo.w_en.eq(emit), lfifo.w_data.eq(g_n),
            bus.awvalid.eq(aw_valid), bus.awaddr.eq(aw_addr), bus.awlen.eq(aw_len), bus.bready.eq(1),
        ]
        with m.If(emit):
            m.d.sync += [aw_valid.eq(1), aw_addr.eq(g_addr), aw_len.eq(((g_n + 1) << _log2(beats)) - 1)]
        with m.Elif(bus.awready):
            m.d.sync += aw_valid.eq(0)
        with m.If(extend):
            m.d.sync += [g_n.eq(g_n + 1), g_next.eq(g_next + stride)]
        with m.Elif(y.valid & y.ready):
            m.d.sync += [g_valid.eq(1), g_addr.eq(byte), g_next.eq(byte + stride), g_n.eq(0)]
        with m.Elif(emit):
            m.d.sync += g_valid.eq(0)
        # W: the beats of the head burst's words, from the FIFO
        wb = Signal(range(max(2, beats)), name="w_beat")
        ww = Signal(range(words), name="w_word")
        last_beat = wb == beats - 1
        mask = Const((1 << nbytes) - 1, beats * BB)
        w_last = Signal(name="w_last")
        m.d.comb += [
            bus.wvalid.eq(lfifo.r_rdy & dfifo.r_rdy),
            bus.wdata.eq(dfifo.r_data.word_select(wb, DW) if beats > 1 else dfifo.r_data),
            bus.wstrb.eq(mask.word_select(wb, BB) if beats > 1 else mask),
            w_last.eq(last_beat & (ww == lfifo.r_data)), bus.wlast.eq(w_last),
        ]
        w_fire = bus.wvalid & bus.wready
        m.d.comb += [dfifo.r_en.eq(w_fire & last_beat), lfifo.r_en.eq(w_fire & w_last)]
        with m.If(w_fire):
            m.d.sync += wb.eq(Mux(last_beat, 0, wb + 1))
            with m.If(last_beat):
                m.d.sync += ww.eq(Mux(w_last, 0, ww + 1))
        b_fire = bus.bvalid & bus.bready
        m.d.sync += b_wait.eq(b_wait + emit - b_fire)
        m.d.comb += [self.writes_pending.eq(g_valid | aw_valid | lfifo.r_rdy | dfifo.r_rdy | (b_wait != 0)),
                     self.wr_error.eq(b_fire & bus.bresp[1])]
