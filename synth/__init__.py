"""Logic synthesis reports with yosys (see ``convgen.synth.yosys``)."""

from .yosys import (
    TARGETS,
    SynthError,
    ToolUnavailable,
    SynthReport,
    markdown_table,
    synth_script,
    synthesize,
    yosys_command,
)

__all__ = ["TARGETS", "SynthError", "ToolUnavailable", "SynthReport", "markdown_table", "synth_script",
           "synthesize", "yosys_command"]
