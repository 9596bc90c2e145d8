"""Small stream pieces the blocks are built from, each written once.

- :func:`index_range`: shape of a counter with no zero-width signal.
- :class:`FlatArrayLayout`: an ``ArrayLayout`` without per-element debug wires (iCE40 ABC).
- :func:`with_payload`, :func:`retyped`: stream interfaces for ``wiring.connect`` with a new
  payload (a combinational map) or a typed view of an untyped FIFO stream.
- :class:`Queue`: a typed ``SyncFIFOBuffered``.
- :class:`StepQueue`: the output queue whose ``i.ready`` is a pipeline's global step enable.
- :class:`PipelineStage`: one pipeline register (``i.ready`` depends on ``o.ready``).
- :class:`SkidBuffer`: one pipeline register with a registered ``i.ready``.
- :class:`ReducePipeline`: valid/ready control of N stages and a frame reduction.
- :func:`lut_product`, :func:`partial_products`, :func:`tree_sum`: products without ``*`` (no DSP).
- :func:`slices`: an operand as 17-bit slices, for products of 18x18 DSP pieces.
- :class:`DspMul`: pipelined products on vendor DSP blocks (generic, ECP5 MULT18X18D, iCE40
  SB_MAC16 with two 8x8 lanes), one interface and a declared latency (docs/vendor_dsp.md).

docs/adding-a-block.md says when to use which.
"""

from .arith import lut_product, partial_products, slices, tree_sum
from .dsp import DspMul
from .layout import FlatArrayLayout, index_range
from .pipeline import ReducePipeline
from .queue import Queue, StepQueue, step_queue
from .stage import PipelineStage, SkidBuffer
from .streams import retyped, with_payload

__all__ = ["index_range", "FlatArrayLayout", "with_payload", "retyped", "Queue", "StepQueue", "step_queue",
           "PipelineStage", "SkidBuffer", "ReducePipeline",
           "lut_product", "partial_products", "slices", "tree_sum", "DspMul"]
