"""Stopping a long run by Ctrl-C or by SIGTERM the same way: as an exception in the main thread,
so every ``with`` and ``finally`` on the way out runs (the scores CSV is closed after its last
whole row) and the command can say what was kept.

Python raises :class:`KeyboardInterrupt` on Ctrl-C (SIGINT) by itself. SIGTERM (``kill``, a job
scheduler, ``docker stop``) ends a Python process at once by default; inside
:func:`sigterm_interrupts` it raises :class:`Terminated`, a KeyboardInterrupt, instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived inside :func:`sigterm_interrupts`."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread; the handler before is
    put back on the way out. Outside the main thread, where Python sets no signal handler, it
    changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler set outside Python, which Python cannot put back; the default is the closest
        signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def exit_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a run stopped by ``stop``, as a shell reports a process a signal ended:
    128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
