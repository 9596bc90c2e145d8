"""The ``convgen`` console script: catches Ctrl-C while the command line is still being
imported (numpy, Amaranth and every block: about a second), before :func:`convgen.cli.main`
and its own handler exist. Imports nothing heavy itself."""

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    try:
        from convgen.cli import main as cli_main
    except KeyboardInterrupt:
        print("convgen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return cli_main()
