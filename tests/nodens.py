"""A "node" network namespace for the data-plane contract harnesses
(tests/integration/test_dataplane_linux.py, tests/vpp/test_dataplane_vpp.py).

The node namespace's uplink is a veth to a "gateway" namespace holding
192.168.77.1/24. :meth:`NodeNamespaces.enter` moves the test's thread into the
node (the plane opens its sockets there, and threads it starts inherit it);
:meth:`close` closes the plane, brings the thread home and deletes every
namespace made, also when the case failed. Root only.
"""
from __future__ import annotations

import os
import secrets
import subprocess

from agent.nsenter import setns

GATEWAY, GATEWAY_CIDR = "192.168.77.1", "192.168.77.1/24"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class NodeNamespaces:
    """``prefix``: namespace names ``<prefix>n-<tag>`` / ``<prefix>g-<tag>``;
    ``uplink``: the node end of the veth to the gateway."""

    def __init__(self, prefix: str, uplink: str) -> None:
        tag = secrets.token_hex(3)
        self.node, self.gw = f"{prefix}n-{tag}", f"{prefix}g-{tag}"
        self.netns: list[str] = []
        self.plane = None  # the harness's data plane, closed first
        self._home: int | None = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            for ns in (self.node, self.gw):
                ip("netns", "add", ns)
                self.netns.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.node, "link", "add", uplink, "type", "veth", "peer", "name", "up0",
               "netns", self.gw)
            ip("-n", self.gw, "addr", "add", GATEWAY_CIDR, "dev", "up0")
            ip("-n", self.node, "link", "set", uplink, "up")
            ip("-n", self.gw, "link", "set", "up0", "up")
        except BaseException:
            self.close()
            raise

    def enter(self) -> None:
        fd = os.open(f"/run/netns/{self.node}", os.O_RDONLY)
        try:
            setns(fd, self.node)
        finally:
            os.close(fd)

    def new_netns(self, name: str) -> str:
        ns = f"{self.node}-{name}"
        ip("netns", "add", ns)
        self.netns.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return f"/run/netns/{ns}"

    def go_home(self) -> None:
        """The test's thread back in its own namespace (idempotent)."""
        if self._home is not None:
            setns(self._home, "the test's own")
            os.close(self._home)
            self._home = None

    def release(self) -> None:
        """What a harness runs in the node, stopped before its namespace goes."""

    def close(self) -> None:
        """The plane closed, home, :meth:`release`, then every namespace made
        (idempotent; each step also when the one before failed)."""
        try:
            if self.plane is not None:
                self.plane.close()
                self.plane = None
        finally:
            self.go_home()
            try:
                self.release()
            finally:
                for ns in self.netns:
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                self.netns = []
