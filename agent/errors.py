"""Typed errors shared by every layer of the agent.

The type of an error decides what happens next (DESIGN.md rule 6):

* :class:`InvalidInput` -- the request or value is wrong; retrying cannot help.
* :class:`TemporaryError` -- the world may change (a lock, a race, a missing
  dependency, an unreachable peer); the reconciler retries with backoff.
* :class:`FatalError` -- the agent cannot continue (e.g. the data plane is gone).
* :class:`NotFound` -- a named object does not exist (maps to HTTP 404).
* :class:`Conflict` -- a compare-and-swap lost a race (a kind of temporary error).
* :class:`NotSupported` -- the data plane cannot do this (a diagnostic it has no source for).

The CLI maps each class to a one-line message, a hint and an exit status;
the API maps it to an HTTP status and a JSON error body.
"""
from __future__ import annotations


class ContivError(Exception):
    """Base of every error the agent raises on purpose.

    ``hint`` is a short, actionable suggestion shown by the CLI under the message.
    """

    #: HTTP status the API server answers with for this error class.
    http_status = 500
    #: Process exit status the CLI uses for this error class.
    exit_status = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict:
        # the nearest class of this module names the error: a client knows
        # these (a data plane's own subclass travels as its base class)
        base = next(c for c in type(self).__mro__ if c.__module__ == __name__)
        out = {"error": base.__name__, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class InvalidInput(ContivError):
    """Bad input: a CLI argument, a CNI config, a YAML object, an API request."""

    http_status = 400
    exit_status = 2


class PodOptionError(InvalidInput):
    """A pod's annotation asks for something malformed, or for what this
    node cannot give (agent.podopts; CNI error code 102)."""


class NotFound(ContivError):
    """The named object does not exist."""

    http_status = 404
    exit_status = 3


class TemporaryError(ContivError):
    """May succeed later; callers retry with backoff."""

    http_status = 503
    exit_status = 4


class Conflict(TemporaryError):
    """A compare-and-swap lost a race against another writer."""

    http_status = 409


class Unavailable(TemporaryError):
    """A dependency (etcd, the agent, the data plane) cannot be reached."""


class FatalError(ContivError):
    """The agent cannot go on; it stops rather than act on a broken view."""

    exit_status = 5


class DataplaneError(TemporaryError):
    """A data-plane operation failed; carries the operation and its arguments."""

    def __init__(self, message: str, *, op: str = "", args: dict | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.op = op
        self.args_ = dict(args or {})


class Exhausted(ContivError):
    """A pool (pod addresses, node subnets) has no free entry."""

    http_status = 507
    exit_status = 6


class NotSupported(ContivError):
    """The data plane (or this build) cannot do what was asked; ``message``
    says why, e.g. a diagnostic the data plane has no source for."""

    http_status = 501
    exit_status = 7
