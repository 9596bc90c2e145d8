"""convgen: verified RTL generator for CNN convolution acceleration."""
from convgen.core.version import __version__

__all__ = ["__version__"]
