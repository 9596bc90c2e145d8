"""ConvEngine (hdl/engine.py) property set: its stream ports and its layer protocol.

The smallest engine that elaborates: a 1x1 array, one channel per activation word, every
maximum at its lower bound (1x1 input, 1x1 kernel, stride 1, no pad, dilation 1, one tile),
8-bit addresses, two chunk banks, a three-word weight FIFO (the fewest, EngineConfig). The descriptor is a free input, so
most descriptors the property set sees are invalid ones; the valid ones are 1x1 layers with
one channel.

The wrapper (:func:`formal.common.wrapper`) assumes the stream rules on ``desc``, ``x_rsp``,
``w_rsp`` and ``p_rsp`` (descriptors and data are otherwise arbitrary) and asserts them on the
request streams; one cycle after reset every request ``valid`` is low and the engine is idle
(``!busy && !done && !error``). On top of that:

- **memory model** (assumed): a memory answers only what it was asked: a response on
  ``x_rsp`` / ``w_rsp`` / ``p_rsp`` only while a request of that stream, taken in an earlier
  cycle, is unanswered. Every ``*_rsp.ready`` is asserted high (the engine's contract: it
  reserves room before it requests, so a response is never refused). The engine therefore
  cannot take a response it did not ask for only because the memory model does not send one;
  there is no such assertion on the engine.
- **layers** (asserted): ``desc.ready == !busy``; ``done`` and ``error`` only while idle; every
  accepted descriptor ends in exactly one ``done`` pulse or one rise of ``error``, never both in
  one cycle, and neither without an accepted descriptor (``f_open == busy + done +
  rise(error)``); a layer that ends in ``error`` raised no request ``valid`` (no read, no
  write: "a bad descriptor writes nothing").
- **requests** (asserted): ``p_req.valid`` only in PARAMS, ``w_req.valid`` only in RUN, every
  request ``valid`` only while busy; in flight never more than the engine has room for:
  ``fetch_banks * rows`` activation words, ``weight_fifo`` weight words, ``max_tiles * cols``
  parameter words (and parameter words in flight == issued - received).

Two property sets: a k-induction set with the properties that close (the layer accounting,
the ``p_req`` rules, "a bad layer raises no ``p_req``/``w_req``"), and a BMC set (depth 32,
one whole valid layer) with all of them, the ``x_req``/``w_req``/``y_req`` rules included:
their induction step starts from a state where a stale result in the array or the
requantizer completes the layer while a request is stalled (docs/formal.md).

k-induction needs to know the sequencer state and the parameter counters, which no port
shows. The property set therefore adds observation ports ``f_<name>`` for the registers in
:data:`OBSERVED` to the generated module (:func:`observe`); they only read the registers. The
invariants over them are asserted like every other property, so they are checked, not assumed.
"""

from __future__ import annotations

import copy
import re

from .common import Dut, Mutant, SbyJob, counter_bits, generate, replace_re, wrapper


def engine_config(**over):
    """The smallest ConvEngine configuration (see the module docstring)."""
    from convgen.hdl.engine import EngineConfig
    kw = dict(rows=1, cols=1, vec=1, max_h=1, max_w=1, max_pixel_words=1, max_kernel=1, max_stride=1,
              max_pad=0, max_dilation=1, max_tiles=1, addr_width=8, fetch_banks=2, weight_fifo=3,
              rounding="tflite_single")
    kw.update(over)
    return EngineConfig(**kw)


def _states() -> dict[str, int]:
    """Encoding of the sequencer's ``state`` (index in ``STATES``; optional extra check
    states are numbered after these)."""
    from convgen.hdl.engine import STATES
    return {n: i for i, n in enumerate(STATES)}


#: engine registers the property set reads (observation ports, see :func:`observe`)
OBSERVED = ("state", "p_issued", "p_received", "p_total")


def observe(dut: Dut, names=OBSERVED) -> Dut:
    """Add one output port ``f_<name>`` per register ``name`` of the engine's top module (the
    first module of the text); the register is only read. The manifest gets the ports too, so
    the wrapper connects them."""
    text = dut.verilog
    end = text.index("\nendmodule")
    top, rest = text[:end], text[end:]
    head = re.compile(r"(module " + re.escape(dut.name) + r"\()")
    if not head.search(top):
        raise ValueError(f"module {dut.name} not found in the generated Verilog")
    manifest = copy.deepcopy(dut.manifest)
    for name in names:
        m = re.search(r"\n  reg (?:\[(\d+):0\] )?" + re.escape(name) + r" = ", top)
        if m is None:
            raise ValueError(f"register {name!r} not found in module {dut.name}")
        width = int(m.group(1)) + 1 if m.group(1) else 1
        rng = f"[{width - 1}:0] " if width > 1 else ""
        top = head.sub(rf"\1f_{name}, ", top, count=1)
        top = top.replace(m.group(0), f"\n  output {rng}f_{name};\n  assign f_{name} = {name};" + m.group(0), 1)
        manifest["ports"].append({"name": f"f_{name}", "direction": "out", "width": width})
    return Dut(top + rest, manifest, dut.name)


def engine_props(dut: Dut, cfg, *, full: bool) -> str:
    """The engine's properties (module docstring). ``full``: all of them (the BMC set);
    otherwise the ones k-induction closes with the observed registers: the layer accounting,
    the parameter requests, and "a bad layer requests nothing" for ``p_req`` and ``w_req``
    (whose ``valid`` is a function of the sequencer state)."""
    S = _states()
    v = {n: dut.stream(n)["valid"] for n in ("desc", "x_req", "w_req", "p_req", "y_req", "x_rsp", "w_rsp", "p_rsp")}
    r = {n: dut.stream(n)["ready"] for n in v}
    caps = {"x": cfg.fetch_banks * cfg.rows, "w": cfg.weight_fifo, "p": cfg.max_tiles * cfg.cols}
    w = counter_bits(max(caps.values())) + 1
    lines = ["  // ---- memory model: a response only for a request taken in an earlier cycle"]
    for t, cap in caps.items():
        q, s = f"{t}_req", f"{t}_rsp"
        lines += [
            f"  reg signed [{w - 1}:0] f_{t}_out = 0;   // {t} requests taken, not yet answered",
            f"  always @(posedge clk) if (rst) f_{t}_out <= 0;",
            f"    else f_{t}_out <= f_{t}_out + (({v[q]} && {r[q]}) ? 1 : 0) - (({v[s]} && {r[s]}) ? 1 : 0);",
            f"  always @* if (!rst) assume(!{v[s]} || f_{t}_out > 0);",
        ]
    in_params, in_run = f"(f_state == {S['PARAMS']})", f"(f_state == {S['RUN']})"
    touch = ("x_req", "w_req", "p_req", "y_req") if full else ("w_req", "p_req")
    any_req = " || ".join(v[n] for n in touch)
    checks = [
        f"assert({r['x_rsp']} && {r['w_rsp']} && {r['p_rsp']});   // responses are never refused",
        f"assert({r['desc']} == !busy);",
        "assert(!(done && busy) && !(error && busy));   // done and error are flags of a finished layer",
        "assert(!(done && f_rise));                     // a layer ends in done or in error",
        "assert(f_open == busy + done + f_rise);        // ... exactly once, and only if accepted",
        f"assert(!f_rise || !f_touched);                 // a bad descriptor requests nothing: {', '.join(touch)}",
        f"assert(!({v['p_req']}) || {in_params});",
        f"assert(!({v['w_req']}) || {in_run});",
        f"assert(!f_touched || !busy || {in_params} || {in_run});",
        "assert(f_p_received <= f_p_issued && f_p_issued <= f_p_total);",
        "assert(f_p_out >= 0 && f_p_out + f_p_received == f_p_issued);   // parameter words in flight",
        f"assert(f_p_out <= {caps['p']});",
        f"assert({in_params} || f_p_received == f_p_issued);   // all answered outside PARAMS",
    ]
    if full:
        checks += [
            f"assert(!({v['x_req']} || {v['y_req']}) || busy);",
            f"assert(f_x_out >= 0 && f_x_out <= {caps['x']});   // requests in flight: room reserved",
            f"assert(f_w_out >= 0 && f_w_out <= {caps['w']});",
        ]
    body = "\n".join("    " + c for c in checks)
    lines += [f"""
  // ---- layers: every accepted descriptor ends in one done pulse or one rise of error
  reg signed [3:0] f_open = 0;     // descriptors taken minus layers finished
  reg f_err_q = 0;
  reg f_touched = 0;               // a request valid since the last descriptor transfer
  wire f_rise = error && !f_err_q;
  wire f_desc_fire = {v['desc']} && {r['desc']};
  always @(posedge clk) begin
    f_err_q <= rst ? 1'b0 : error;
    if (rst) f_open <= 0;
    else f_open <= f_open + (f_desc_fire ? 1 : 0) - ((done || f_rise) ? 1 : 0);
    if (rst || f_desc_fire) f_touched <= 1'b0;
    else if ({any_req}) f_touched <= 1'b1;
  end
  always @(posedge clk) if (f_past && !f_rst_q && !rst) begin
{body}
  end
"""]
    return "\n".join(lines)


def engine_job(mode: str, depth: int, *, full: bool, **over):
    """``full``: every property, all four request streams' rules (the BMC set); otherwise the
    k-induction subset, with the ``x_req``, ``w_req`` and ``y_req`` rules left out (docs/formal.md)."""
    def build(mutate):
        from convgen.hdl.engine import ConvEngine
        cfg = engine_config(**over)
        dut = observe(generate(ConvEngine(cfg), cfg.module_name, mutate=mutate))
        props = engine_props(dut, cfg, full=full)
        top = wrapper(dut, props=props, idle_after_reset="!busy && !done && !error",
                      unchecked=() if full else ("x_req", "w_req", "y_req"))
        return SbyJob({f"{dut.name}.v": dut.verilog, "formal_top.sv": top}, "formal_top", mode, depth)
    return build


def cover_job(depth: int = 40, **over) -> SbyJob:
    """Reachability of the full wrapper (not part of formal.run): ``mode cover`` for a ``done``
    pulse, a rise of ``error`` and a ``y_req`` transfer. Run with
    ``formal.common.run_sby(cover_job())``; the steps it reports are quoted in docs/formal.md
    (why the BMC set has depth 32)."""
    job = engine_job("cover", depth, full=True, **over)(None)
    covers = ("  always @(posedge clk) if (f_past && !rst) begin\n"
              "    cover(done);\n    cover(f_rise);\n    cover(y_req__valid && y_req__ready);\n  end\n")
    top = job.files["formal_top.sv"]
    i = top.rindex("endmodule")
    job.files["formal_top.sv"] = top[:i] + covers + top[i:]
    return job


# ---- mutants: edits of the generated engine Verilog -------------------------------------------
def _bad_goes_on(text: str) -> str:
    """DECIDE with a bad descriptor: error is raised, but the sequencer goes on to PARAMS."""
    S = _states()
    m = re.search(r"\n  reg \[(\d+):0\] state = ", text)
    if m is None:
        raise ValueError("mutation target: the engine's `state` register is not in the generated Verilog")
    w = int(m.group(1)) + 1
    idle, params, decide = (f"{w}'h{S[n]:x}" for n in ("IDLE", "PARAMS", "DECIDE"))
    return replace_re(rf"({decide}:\n\s+if \(bad\) begin\n\s+\\\$\d+  = ){idle};", rf"\g<1>{params};")(text)


#: the error path still requests: a bad descriptor raises error and the layer loads parameters
M_ENGINE_BAD_RUNS = Mutant("bad descriptor raises error but goes on to PARAMS (error path still requests)",
                           _bad_goes_on)
#: the activation request stage advances without x_req.ready: a stalled request is replaced
M_ENGINE_X_ADV = Mutant("x_req stage advances while stalled (valid/payload change without ready)",
                        replace_re(r"assign f_adv = \\\$\d+  \| x_req__ready;", "assign f_adv = 1'h1;"))
#: the weight credit counts a stalled request as taken: the credit runs out and w_req drops its
#: valid while stalled (the first `w_req.valid & w_req.ready` of the text is the credit's)
M_ENGINE_W_FIRE = Mutant("weight credit taken without w_req.ready (valid drops while stalled)",
                         replace_re(r"(assign \\\$\d+  = w_req__valid) & w_req__ready;", r"\1;"))
#: parameter requests not gated by the PARAMS state: after DECIDE (also of a bad descriptor)
#: p_req is valid while p_issued != p_total
M_ENGINE_P_UNGATED = Mutant("p_req not gated by the PARAMS state (a bad descriptor reads parameters)",
                            replace_re(r"assign p_req__valid = \\\$\d+  & (\\\$\d+ );", r"assign p_req__valid = \1;"))


def property_sets():
    from .streams import PropertySet as P
    return [
        P("engine 1x1: layers, p_req (k-induction subset)", "prove", 8, engine_job("prove", 8, full=False),
          quick=True, mutants=[M_ENGINE_BAD_RUNS, M_ENGINE_P_UNGATED]),
        P("engine 1x1: protocol of every stream, layers, in flight", "bmc", 32, engine_job("bmc", 32, full=True),
          quick=False, mutants=[M_ENGINE_X_ADV, M_ENGINE_W_FIRE, M_ENGINE_BAD_RUNS]),
    ]
