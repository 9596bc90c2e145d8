"""CLI verbs of each block, one module per block.

A module here defines ``register(verbs)``, where ``verbs`` maps "generate", "run" and "synth"
to argparse sub-parser collections; it adds its own sub-commands (``convgen generate <block>``,
``convgen run <job>``, ``convgen synth <block>``). ``verbs["top"]`` is the top-level collection,
for a verb of its own (``convgen analyze``). Modules are discovered, so adding a block
never edits a shared list.
"""

import importlib
import pkgutil


def block_command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        yield importlib.import_module(f"{__name__}.{info.name}")
