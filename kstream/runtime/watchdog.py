"""A thread that watches the engine loop: stalls get a stack dump, stops get a hard deadline.

Why a thread: the loop is single-threaded and some librdkafka calls block in C for up to their
timeout. Only another thread can notice that the loop has not come back to poll() (and say
where it is, before the group expels the member), and only another thread can keep the
promise that SIGTERM stops the instance within `shutdown_timeout_ms` whatever it waits on.
Signals reach it through `signal.set_wakeup_fd`, which the C-level handler writes even while
the main thread is inside a blocking call.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger("kstream.watchdog")

TICK_S = 0.5
FORCED_EXIT_CODE = 3


class Watchdog:
    """`beat()` from the loop on every pass; `stop_requested()` arms the shutdown deadline."""

    def __init__(self, stall_after_s: float, shutdown_timeout_s: float,
                 request_stop: Callable[[], None]) -> None:
        self._stall_after_s = stall_after_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._request_stop = request_stop
        self._hard_exit = False
        self._last_beat = time.monotonic()
        self._where = "starting"
        self._stall_reported = False
        self._stop_deadline: float | None = None
        self._done = threading.Event()
        self._target = threading.main_thread().ident
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._thread = threading.Thread(target=self._watch, name="kstream-watchdog", daemon=True)

    # -- called by the engine thread -------------------------------------------------------
    def start(self, hard_exit: bool = False) -> None:
        """`hard_exit`: end the process when a requested stop overruns its deadline (only for
        a process that runs nothing but this app, e.g. `kstream run`)."""
        self._hard_exit = hard_exit
        self._target = threading.get_ident()
        if self._hard_exit and threading.current_thread() is threading.main_thread():
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            self._wakeup = (reader, writer)
        self._thread.start()

    def beat(self, where: str = "poll") -> None:
        """The loop is alive and about to do `where`."""
        self._last_beat = time.monotonic()
        self._where = where
        self._stall_reported = False

    def stop_requested(self) -> None:
        """Safe from a signal handler: the instance must be gone by the deadline."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self._shutdown_timeout_s

    def close(self) -> None:
        self._done.set()
        if self._wakeup is not None:
            signal.set_wakeup_fd(-1)
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None

    # -- the watchdog thread ---------------------------------------------------------------
    def _watch(self) -> None:
        while not self._done.is_set():
            self._wait_tick()
            now = time.monotonic()
            stalled = now - self._last_beat
            if stalled > self._stall_after_s and not self._stall_reported:
                self._stall_reported = True
                log.error("event=stalled seconds=%.0f last=%s stack:\n%s",
                          stalled, self._where, self._stack())
            if self._stop_deadline is not None and now > self._stop_deadline \
                    and not self._done.is_set():
                log.error("event=shutdown_timeout seconds=%.0f last=%s stack:\n%s",
                          self._shutdown_timeout_s, self._where, self._stack())
                if self._hard_exit:
                    # Uncommitted work is safe: exactly-once aborts it, the others redo it.
                    logging.shutdown()
                    os._exit(FORCED_EXIT_CODE)
                self._stop_deadline = None

    def _wait_tick(self) -> None:
        if self._wakeup is None:
            self._done.wait(TICK_S)
            return
        reader = self._wakeup[0]
        try:
            ready, _, _ = select.select([reader], [], [], TICK_S)
            data = reader.recv(64) if ready else b""
        except OSError:
            return
        if any(sig in data for sig in (signal.SIGTERM, signal.SIGINT)):
            self._request_stop()
            self.stop_requested()

    def _stack(self) -> str:
        frame = sys._current_frames().get(self._target or -1)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
