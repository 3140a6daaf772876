"""Run a function inside another network namespace, on a short-lived thread.

Sockets stay bound to the namespace they were created in, so lab tools (the
responder, probes) create their sockets this way and use them from any
thread. The thread enters the namespace, runs the function, and ends there:
it never runs anything else, and no other thread ever changes namespace.
The one implementation is :func:`agent.nsenter.in_netns` (standard library
only, shared with the agent's ``socket_in``).
"""
from __future__ import annotations

from agent.nsenter import in_netns

__all__ = ["in_netns"]
