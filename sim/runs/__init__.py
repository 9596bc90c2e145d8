"""cocotb modules that the ``convgen run ...`` entry points of sim/ launch inside the simulator:
stream prepared beats through a block with no stalls and save the results in bulk. The
verification testbenches are in tb/; these are production code."""
