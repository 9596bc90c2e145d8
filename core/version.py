"""convgen's version, recorded in every generated manifest and report."""

__version__ = "0.1.0"
