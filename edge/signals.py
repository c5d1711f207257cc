"""SIGINT and SIGTERM for the command line: every command stops within a moment, with a message, never a traceback.

Two phases:
- ``raise_on_signals()`` (for the whole command, installed by ``main``): a signal raises ``Interrupted`` wherever
  the main thread is (loading an artifact, starting a transport, exporting), like Ctrl-C's KeyboardInterrupt but
  for SIGTERM too; ``main`` reports it and exits 128 + signal (130 for SIGINT, 143 for SIGTERM).
- ``stop_on_signals(stop)`` (around a loop that can stop cleanly: a node's spin, a run's rounds): the first signal
  only sets ``stop`` and is remembered (``SignalStop.signum``); the loop ends its round, writes what it has and
  returns. A second signal raises ``Interrupted`` at once, for a loop that does not stop.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM that ends the command; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum, _frame):
    raise Interrupted(signum)


def raise_on_signals() -> None:
    """SIGINT and SIGTERM raise Interrupted in the main thread (no-op elsewhere: only it can set handlers)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _raise)


@dataclass
class SignalStop:
    stop: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None  # the first signal received, if any

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum


@contextmanager
def stop_on_signals(stop: threading.Event | None = None):
    """Within the block the first SIGINT / SIGTERM sets ``stop`` (yielded as ``SignalStop``), the second raises
    Interrupted; the previous handlers come back after."""
    state = SignalStop(stop or threading.Event())
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, _frame):
        if state.signum is not None:
            raise Interrupted(signum)
        state.signum = signum
        state.stop.set()

    old = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield state
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
