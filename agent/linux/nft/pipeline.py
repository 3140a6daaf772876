"""Ordered, one-at-a-time execution of commits, optionally on a second thread.

A start-up sync sends tens of thousands of set elements to nf_tables. Encoding
them is Python work (the GIL held); the kernel's share happens inside
``sendmsg`` (the GIL released). Handing each encoded piece to a worker thread
lets the kernel apply piece *k* while Python encodes piece *k + 1*: about a
tenth of a 10,000-Service sync. Small changes stay on the caller's thread
(:class:`Inline`): a one-element update must not pay for a thread.

Both runners execute the submitted callables strictly in submission order,
one at a time, so nf_tables sees the same sequence of transactions either way.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable


class Inline:
    """Runs each submitted callable at once, on the caller's thread."""

    def submit(self, fn: Callable[[], None]) -> None:
        fn()

    def finish(self) -> None:
        pass


class Pipeline:
    """Runs submitted callables in order on one worker thread.

    :meth:`finish` waits for all of them and re-raises the first exception;
    after an exception the remaining callables are skipped (their order
    dependency is broken), which :meth:`finish` reports by that re-raise."""

    def __init__(self, name: str = "nft-commit") -> None:
        self._q: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            fn = self._q.get()
            if fn is None:
                return
            if self._error is None:
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001 -- handed to finish()
                    self._error = e

    def submit(self, fn: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(fn)

    def finish(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
