"""Run an App in a background thread for the length of a test.

Tests against a real broker need the app running while they produce and read; doing that by
hand (thread, try/finally, stop, join) was copied into many tests, and each copy lost the app's
own exception to the thread and missed a stop that never finished. `running_app` does it once.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Iterator

from kstream.app import App

__all__ = ["RunningApp", "running_app"]


class RunningApp:
    """The handle `running_app` yields: the app, its thread, and what its run raised."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.error: BaseException | None = None
        """The exception `app.run` raised, once the thread has ended; None while running or
        after a clean stop."""
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"kstream-app-{app.config.application_id}")

    def _run(self) -> None:
        try:
            self.app.run(install_signal_handlers=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self.error = exc

    def alive(self) -> bool:
        """Whether `app.run` is still going."""
        return self.thread.is_alive()

    def stop(self, timeout: float, leave_group: bool = True) -> None:
        """Ask the app to stop and wait for its thread; TimeoutError (with the thread's stack)
        if it is still running after `timeout` seconds. The app leaves its group
        (`app.stop(leave_group=True)`): a test is done with it, so a static member must not
        hold its partitions (and block resets and savepoint restores) for the session
        timeout; pass `leave_group=False` to test a restart that keeps the membership."""
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            # Again and again: a stop before run() created its engine would otherwise be lost.
            self.app.stop(leave_group=leave_group)
            self.thread.join(min(0.2, max(0.0, deadline - time.monotonic())))
        if self.thread.is_alive():
            frame = sys._current_frames().get(self.thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
            raise TimeoutError(f"app {self.app.config.application_id} still running "
                               f"{timeout:.0f}s after stop(); its thread is at:\n{stack}")


@contextlib.contextmanager
def running_app(app: App, join_timeout: float = 60.0,
                expect_error: bool = False) -> Iterator[RunningApp]:
    """Run `app.run(install_signal_handlers=False)` in a daemon thread for the `with` body.

    Usage: ``with running_app(app, join_timeout=60, expect_error=False) as run: ...`` where
    `run` is a `RunningApp` (`run.thread`, `run.error`, `run.alive()`).

    On exit the app is stopped (leaving its consumer group, see `RunningApp.stop`) and its
    thread joined within `join_timeout` seconds; a thread
    still alive then raises TimeoutError. An exception the app raised is re-raised here, so a
    crashed app fails the test rather than only timing out its reads, unless `expect_error`
    says the body inspects `run.error` itself::

        with running_app(App(topology, application_id="t", bootstrap_servers=servers)):
            records = kafka.read_topic(out, min_count=100)

        with running_app(failing_app, expect_error=True) as run:
            run.thread.join(90)
            assert isinstance(run.error, RecordError)
    """
    run = RunningApp(app)
    run.thread.start()
    try:
        yield run
    finally:
        # When the body failed too, its exception stays attached as the context of ours.
        run.stop(join_timeout)
        if run.error is not None and not expect_error:
            raise run.error
