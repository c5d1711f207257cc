"""The velocity watchdog: zero velocity when fresh answers stop coming.

    dog = Watchdog(deadline_s=0.5, send_zero=lambda: publish("/cmd_vel", TwistMsg()), what="/cmd_vel ...")
    dog.start()
    dog.feed(lambda: publish("/cmd_vel", twist))   # the worker, per fresh answer of the driving camera
    dog.stop()                                      # joins the thread, then sends one last zero

Its own thread (never the inference worker's, so a slow or stuck model cannot hold it up) waits until
``deadline_s`` has passed since the last ``feed`` (or since ``start``): then it sends zero velocity, counts it in
``zeros``, logs a line when a stale period begins, and sends again every ``deadline_s`` while it lasts. A ``feed``
ends the period (logged). ``feed`` and the zero are sent under one lock, so a zero never overtakes the command it
follows, and after ``stop`` nothing but the last zero is sent (a worker left in a batch cannot move the robot).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("cobra_edge.ros")


class Watchdog:
    def __init__(self, deadline_s: float, send_zero: Callable[[], None], what: str = "velocity"):
        if not deadline_s > 0:
            raise ValueError(f"watchdog deadline must be > 0 s, got {deadline_s!r}")
        self.deadline_s = float(deadline_s)
        self.send_zero = send_zero
        self.what = what
        self.zeros = 0  # zero-velocity commands sent because no fresh answer came in time (the last one not counted)
        self.stale_periods = 0  # how often answers stopped coming
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._due = time.monotonic() + self.deadline_s
        self._stale = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._due = time.monotonic() + self.deadline_s
        self._thread = threading.Thread(target=self._run, name="cobra-edge-watchdog", daemon=True)
        self._thread.start()

    def feed(self, send: Callable[[], None]) -> bool:
        """Send a fresh command (``send()``) and restart the deadline; False (nothing sent) after ``stop``."""
        with self._lock:
            if self._closed:
                return False
            send()
            self._due = time.monotonic() + self.deadline_s
            if self._stale:
                self._stale = False
                log.info("watchdog: fresh answers again; %s follows them", self.what)
            return True

    def _run(self) -> None:
        wait = self.deadline_s
        while not self._stop.wait(wait):
            with self._lock:
                now = time.monotonic()
                if now >= self._due and not self._closed:
                    self._zero()
                    self.zeros += 1
                    if not self._stale:
                        self._stale = True
                        self.stale_periods += 1
                        log.warning("watchdog: no fresh answer for %.0f ms: zero velocity on %s (every %.0f ms until "
                                    "answers resume)", self.deadline_s * 1e3, self.what, self.deadline_s * 1e3)
                    self._due = now + self.deadline_s
                wait = max(self._due - now, 0.001)

    def _zero(self) -> None:
        try:
            self.send_zero()
        except Exception as e:  # the publisher logs its own failures; this thread must survive any
            log.error("watchdog: could not send zero velocity on %s: %s: %s", self.what, type(e).__name__, e)

    def stop(self, join_timeout_s: float = 1.0) -> None:
        """End the thread, then send one last zero velocity (the robot is left at rest); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(join_timeout_s)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._zero()
        log.info("watchdog: stopped; sent zero velocity on %s (%d zero command(s) while answers were late)",
                 self.what, self.zeros)
