"""The one entry point to STN for callers (the CLI, the guard, the tests).

It binds :class:`stn.core.Stn` to this node: its STN directory, and the node
agent's client -- the one internal API layer -- through which the VPP data
plane takes and gives back the NIC.
"""
from __future__ import annotations

import os

from agent.stndir import DEFAULT_DIR
from stn.core import Stn, StnFailed

__all__ = ["Stn", "StnFailed", "open_stn"]

ENV_DIR = "CONTIV_STN_DIR"


def open_stn(dir: str = "", agent_socket: str = "", vpp_socket: str = "", log=None) -> Stn:  # noqa: A002
    """STN on this node: files in ``dir`` (else ``$CONTIV_STN_DIR``, else
    /var/lib/contiv/stn); the agent at ``agent_socket`` (else the default
    socket) for the VPP data plane; VPP's API socket ``vpp_socket``."""
    from agent.api.client import DEFAULT_SOCKET, AgentClient  # noqa: PLC0415
    sock = agent_socket or DEFAULT_SOCKET
    return Stn(dir or os.environ.get(ENV_DIR) or DEFAULT_DIR, AgentClient(sock, timeout=10.0),
               vpp_socket, agent_socket=sock, log=log)
