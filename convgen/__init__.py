"""convgen: verified RTL generator for CNN convolution acceleration."""
__version__ = "0.1.0"
