"""Progress of a command's long steps (build, simulation), on stderr only.

:class:`Steps` is the one progress display of the ``run`` verbs. It is a callable
``steps(text)`` that starts a step (and ends the one before), the protocol the simulation
functions already take as ``progress`` (``sim.engine.run_conv``, ``sim.systolic.run_gemm`` ...):

- stderr is a terminal: a tqdm line per step, ``convgen: 00:12 | <step>`` with the elapsed
  time and a spinner, shown once the step has taken ``delay`` seconds (a cached build never
  flashes), left on the screen with its time when the step ends, cleared if the command fails;
- stderr is not a terminal (a pipe, a log file, CI): one plain line ``convgen: <step>`` per
  step, nothing redrawn;
- ``quiet``: nothing at all.

stdout is never written here, so a command's one JSON line stays alone on stdout.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["Steps"]

SPINNER = "|/-\\"


class Steps:
    """Progress of the steps of one command (see the module doc).

    ``quiet``: print nothing. ``stream``: where to print (default ``sys.stderr``). ``tty``:
    force the terminal display on or off (default: ``stream.isatty()``). ``details``: print
    :meth:`detail` lines on a non-terminal stream too (``run gemm --progress``); on a terminal
    they always show beside the step's spinner. ``delay``: seconds before a step's spinner
    appears on a terminal."""

    def __init__(self, *, quiet: bool = False, stream=None, tty: bool | None = None, details: bool = False,
                 delay: float = 0.5):
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.details = details
        self.delay = delay
        self._lock = threading.Lock()
        self._bar = None                  # the current step's tqdm line, once shown
        self._text = ""
        self._postfix = ""
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # -- the protocol of the simulation functions ---------------------------------------------
    def __call__(self, text: str) -> None:
        """End the current step and start ``text``."""
        self._end(ok=True)
        if self.quiet:
            return
        if not self.tty:
            self._line(text)
            return
        self._text, self._postfix = text, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, args=(text, self._stop), daemon=True)
        self._thread.start()

    def detail(self, text: str) -> None:
        """Progress inside the current step (``cycle 50000: 12/64 result rows``)."""
        if self.quiet:
            return
        if self.tty:
            with self._lock:
                self._postfix = text
                if self._bar is not None:
                    self._bar.set_postfix_str(text, refresh=False)
        elif self.details:
            self._line(text)

    def message(self, text: str) -> None:
        """One line between steps (``waveform written to ...``), unless quiet."""
        if self.quiet:
            return
        self._end(ok=True)
        self._line(text)

    def close(self, ok: bool = True) -> None:
        """End the current step: its line stays (``ok``) or is cleared."""
        self._end(ok=ok)

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._end(ok=exc_type is None)

    # -- internals ----------------------------------------------------------------------------
    def _size(self) -> dict:
        """Follow the terminal's width; a terminal that reports no size (a bare pty, some CI
        consoles) gets 80x24, since tqdm draws nothing on a terminal of -1 rows."""
        try:
            ok = os.get_terminal_size(self.stream.fileno()).columns > 0
        except (AttributeError, OSError, ValueError):
            ok = False
        return {"dynamic_ncols": True} if ok else {"ncols": 80, "nrows": 24}

    def _line(self, text: str) -> None:
        print(f"convgen: {text}", file=self.stream, flush=True)

    def _spin(self, text: str, stop: threading.Event) -> None:
        """After ``delay`` seconds, show the step's line and redraw it every 0.1 s (tqdm redraws
        only on updates, and a build or a simulation gives none)."""
        if stop.wait(self.delay):
            return
        from tqdm import tqdm

        with self._lock:
            if stop.is_set():
                return
            # the elapsed time first: a narrow terminal cuts the end of the line, not the clock
            self._bar = bar = tqdm(total=None, desc=f"{SPINNER[0]} {text}", bar_format="convgen: {elapsed} {desc}{postfix}",
                                   file=self.stream, leave=True, **self._size())
            if self._postfix:
                bar.set_postfix_str(self._postfix)
        i = 1
        while not stop.wait(0.1):
            with self._lock:
                if self._bar is not bar:
                    return
                bar.set_description_str(f"{SPINNER[i % len(SPINNER)]} {text}", refresh=False)
                bar.refresh()
            i += 1

    def _end(self, ok: bool) -> None:
        """Stop the spinner; the step's line stays with its time (``ok``) or is cleared."""
        if self._stop is None:
            return
        self._stop.set()
        with self._lock:
            bar, self._bar = self._bar, None
        self._thread.join(timeout=2)
        self._stop = self._thread = None
        if bar is not None:
            bar.set_description_str(f"  {self._text}", refresh=False)
            bar.leave = ok
            bar.close()
