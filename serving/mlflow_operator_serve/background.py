"""A thread of its own for work the request path hands off (prediction_log.py, drift.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class PerProcessThread:
    """A daemon thread running `target`, started on first use in the process that uses it:
    worker processes are forked after these objects are made, and a thread does not survive a
    fork, so one started in the parent would not be running in a worker."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target, self._name = target, name
        self._thread: threading.Thread | None = None
        self._owner_pid = 0
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._thread is not None and self._owner_pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._owner_pid == os.getpid():
                return
            self._owner_pid = os.getpid()
            self._thread = threading.Thread(target=self._target, name=self._name, daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the thread to end (its target decides when)."""
        thread = self._thread
        if thread is not None and self._owner_pid == os.getpid():
            thread.join(timeout)
