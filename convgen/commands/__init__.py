"""The verbs of the command line, one module per block or tool; modules are discovered, so
adding a block never edits a shared list.

A module here declares either or both of:

- ``BLOCK = Block(...)`` (:class:`convgen.commands.common.Block`): the registry entry of a
  hardware block. Its configuration's declared fields become the options of
  ``convgen generate <block>``, ``convgen synth <block>`` and its ``convgen run <job>`` verbs,
  with their help and their checks; nothing else is written per block.
- ``register(verbs)`` for a verb of its own: ``verbs`` maps "generate", "run" and "synth" to
  argparse sub-parser collections and "top" to the top-level one (``convgen analyze``,
  ``convgen explore``).

``common`` holds what the verbs share (``CLIError``, ``load_matrix``, options from
declarations, the registry) and ``progress`` their progress display; they import nothing of
``convgen.cli``, so the graph points one way: ``convgen.cli`` -> ``convgen.commands``.
"""

import importlib
import pkgutil

_SHARED = {"common", "progress"}


def block_command_modules():
    """Every command module, by name (the shared ``common`` and ``progress`` excluded)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name not in _SHARED and not info.name.startswith("_"):
            yield importlib.import_module(f"{__name__}.{info.name}")


def register_all(verbs: dict) -> None:
    """Add every module's verbs to ``verbs`` (see the module doc)."""
    from .common import add_block_verbs

    for module in block_command_modules():
        block = getattr(module, "BLOCK", None)
        if block is not None:
            add_block_verbs(verbs, block)
        if hasattr(module, "register"):
            module.register(verbs)
