"""The neutral core of convgen: parameter checks, integer ranges, the layer description,
quantisation constants, Winograd matrices, the cache location and atomic file output.

It imports no Amaranth and nothing else of convgen, so golden/ (NumPy models) and hdl/
(Amaranth components) share it without depending on each other. docs/architecture.md
has the package graph.
"""
