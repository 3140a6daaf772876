"""Work the API threads hand to the agent loop, and wait for.

The agent loop is the only thread that rebuilds Services and policies
(ServiceSync and PolicySync are not thread-safe) and renders the node; an
API call that needs one of those (``POST /v1/resync``, ``POST
/v1/stn/sync``) puts a :class:`LoopRequest` on the loop's queue and waits
for its result, or for the reason it will never come.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from agent.errors import Unavailable


class LoopRequest(Future):
    """``run`` to be called on the agent loop (:meth:`execute`); ``why``
    names it in logs, transactions and errors."""

    def __init__(self, why: str, run: Callable[[], Any]) -> None:
        super().__init__()
        self.why = why
        self._run = run

    def execute(self) -> None:
        """On the loop: run it, and hand the result (or the error) to the waiter."""
        try:
            self.set_result(self._run())
        except Exception as e:  # noqa: BLE001 -- handed to the waiting API thread
            self.set_exception(e)

    def wait(self, stopping: Callable[[], bool], timeout: float) -> Any:
        """The result (raises what ``run`` raised); Unavailable when the loop
        is stopping or does not get to it within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.result(timeout=0.2)
            except FutureTimeout:
                pass
            if stopping():  # the loop is gone or going: nobody will run it
                raise Unavailable(f"the agent is stopping; {self.why!r} did not run")
            if time.monotonic() > deadline:
                raise Unavailable(f"the agent loop did not run {self.why!r} within {timeout:.0f}s",
                                  hint="see the agent's log")
