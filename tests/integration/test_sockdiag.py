"""sock_diag for real (root): the sockets of a fresh network namespace --
listeners, a connection, UDP, IPv4 and IPv6 -- read by agent/linux/sockdiag.py
are those ``ss -tuna`` lists there; a namespace that is gone is NotFound."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest

from agent.errors import NotFound
from agent.linux.sockdiag import pod_sockets
from agent.nsenter import socket_in

pytestmark = pytest.mark.root


@pytest.fixture
def netns():
    name = f"sockdiag-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def norm(host: str, port: str) -> tuple[str, str]:
    """An endpoint as both sides can be compared: ss writes a wildcard
    address as ``*`` (or ``0.0.0.0``/``[::]``) and a port 0 as ``*``."""
    host = host.strip("[]")
    return ("*" if host in ("*", "0.0.0.0", "::") else host, "*" if port in ("*", "0") else port)


def ss(name: str) -> set[tuple]:
    """(protocol, state, local, peer) of ``ss -tuna`` in the namespace."""
    out = subprocess.run(["ip", "netns", "exec", name, "ss", "-tunaH"], capture_output=True, text=True,
                         check=True).stdout
    rows = set()
    for ln in out.splitlines():
        proto, state, _, _, local, peer = ln.split()[:6]
        rows.add((proto, state, norm(*local.rsplit(":", 1)), norm(*peer.rsplit(":", 1))))
    return rows


def ours(path: str) -> set[tuple]:
    return {(s.protocol, s.state, norm(s.local, str(s.lport)), norm(s.peer, str(s.pport)))
            for s in pod_sockets(path)}


def test_the_sockets_are_those_ss_lists(netns):
    path = f"/run/netns/{netns}"
    socks = []
    try:
        lst = socket_in(path, socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        socks.append(lst)
        cl = socket_in(path, socket.AF_INET, socket.SOCK_STREAM)
        cl.connect(lst.getsockname())
        socks.append(cl)
        srv, _ = lst.accept()
        socks.append(srv)
        for fam, addr in ((socket.AF_INET6, "::1"), (socket.AF_INET, "0.0.0.0")):
            u = socket_in(path, fam, socket.SOCK_DGRAM)
            u.bind((addr, 0))
            socks.append(u)
        l6 = socket_in(path, socket.AF_INET6, socket.SOCK_STREAM)
        l6.bind(("::", 0))
        l6.listen()
        socks.append(l6)
        got, want = ours(path), ss(netns)
        assert got == want
        assert len(got) == 6
        states = sorted(s.state for s in pod_sockets(path))
        assert states == ["ESTAB", "ESTAB", "LISTEN", "LISTEN", "UNCONN", "UNCONN"]
        # the agent's own namespace is not the one read
        assert {s.lport for s in pod_sockets(path)} >= {lst.getsockname()[1], l6.getsockname()[1]}
    finally:
        for s in socks:
            s.close()


def test_an_empty_namespace_has_no_sockets(netns):
    assert pod_sockets(f"/run/netns/{netns}") == []


def test_a_namespace_that_is_gone_is_not_found():
    with pytest.raises(NotFound) as e:
        pod_sockets("/run/netns/sockdiag-no-such-namespace")
    assert "does not exist" in e.value.message
