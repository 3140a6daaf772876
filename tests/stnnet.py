"""The STN test network: a "node" namespace whose ``eth0`` is a veth to a
"gateway" namespace, which routes to a "remote" namespace.

The node's ``eth0`` carries what a real NIC may: two addresses (one with a
label), a default route and a route in another table, a policy rule naming
it, a permanent neighbour, an IPv6 address, MTU 1400. Commands run in the
node as an operator would run them: ``ip netns exec NODE contivctl stn ...``.
:meth:`StnNet.close` deletes the namespaces (and with them every link and
process-free state) also when the test failed. Root only.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

NODE_IP, NODE_IP2, GW_IP, REMOTE_IP = "192.168.90.10", "192.168.90.11", "192.168.90.1", "10.90.0.2"
CONTIVCTL = [sys.executable, "-m", "contivctl.main"]


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


class StnNet:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.node, self.gw, self.remote = f"stnn-{tag}", f"stng-{tag}", f"stnr-{tag}"
        self.dir = tempfile.mkdtemp(prefix="contiv-stn-")
        self.made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        n, g, r = self.node, self.gw, self.remote
        for ns in (n, g, r):
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            # no duplicate address detection: a snapshot taken while an
            # IPv6 address is still "tentative" would differ from its restore
            self.sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
        ip("-n", n, "link", "add", "eth0", "type", "veth", "peer", "name", "n0", "netns", g)
        ip("-n", g, "link", "add", "r0", "type", "veth", "peer", "name", "eth0", "netns", r)
        for ns, dev, cidr in ((g, "n0", f"{GW_IP}/24"), (g, "r0", "10.90.0.1/24"), (r, "eth0", f"{REMOTE_IP}/24")):
            ip("-n", ns, "addr", "add", cidr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        self.sysctl(g, "net.ipv4.ip_forward", "1")
        # a wire delivers complete checksums; a veth passes the sender's
        # "to be completed" ones on, which VPP's af_packet on the node's NIC
        # counts as bad (drop "bad tcp checksum"): the gateway completes them
        subprocess.run(["ip", "netns", "exec", g, "ethtool", "-K", "n0", "tx", "off"], check=True,
                       capture_output=True)
        ip("-n", r, "route", "add", "default", "via", "10.90.0.1")
        ip("-n", n, "link", "set", "eth0", "mtu", "1400", "up")
        ip("-n", n, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        ip("-n", n, "addr", "add", f"{NODE_IP2}/24", "dev", "eth0", "label", "eth0:1")
        ip("-n", n, "addr", "add", "2001:db8:90::10/64", "dev", "eth0")
        ip("-n", n, "route", "add", "default", "via", GW_IP)
        ip("-n", n, "route", "add", "10.99.0.0/16", "via", GW_IP, "metric", "50", "table", "100")
        ip("-n", n, "rule", "add", "oif", "eth0", "table", "100", "pref", "1000")
        ip("-n", n, "neigh", "add", "192.168.90.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0",
           "nud", "permanent")

    @staticmethod
    def sysctl(ns: str, key: str, value: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"], check=True)

    # ------------------------------------------------------------ commands
    def stn(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """``contivctl stn ARGS --dir DIR`` run inside the node."""
        return subprocess.run(["ip", "netns", "exec", self.node, *CONTIVCTL, "stn", *args, "--dir", self.dir],
                              capture_output=True, text=True, timeout=timeout,
                              # no agent unless the test runs one (not the machine's)
                              env={**os.environ, "CONTIV_SOCKET": f"{self.dir}/no-agent.sock", **(env or {})})

    def config(self) -> dict:
        """The node's configuration as ``ip -j`` shows it, minus what differs
        between two identical configurations (counters, ifindex-derived
        fields, timers, neighbours the kernel learnt); routes as a set; and
        the NIC's sysctls a steal may change."""
        out = {}
        for what in (("addr",), ("route", "show", "table", "all"), ("rule",), ("-d", "link"),
                     ("neigh", "show", "nud", "permanent")):
            out[" ".join(what)] = _strip(json.loads(ip("-n", self.node, "-j", *what) or "[]"))
        out["sysctl"] = subprocess.run(
            ["ip", "netns", "exec", self.node, "sysctl", "-n", "net.ipv4.conf.eth0.rp_filter",
             "net.ipv4.conf.eth0.arp_ignore", "net.ipv6.conf.eth0.disable_ipv6"],
            capture_output=True, text=True, check=True).stdout.split()
        # a NIC whose IPv6 was off while stolen gets its kernel routes
        # (fe80::/64, ff00::/8) back behind other links' equal ones: the same
        # table, listed in another order
        out["route show table all"].sort(key=lambda r: json.dumps(r, sort_keys=True))
        return out

    def changed(self, before: dict) -> str:
        """What differs between ``before`` and the node's configuration now,
        as a unified diff ("" when nothing does)."""
        import difflib
        now = self.config()
        if now == before:
            return ""
        a, b = (json.dumps(x, indent=1, sort_keys=True).splitlines() for x in (before, now))
        return "\n".join(difflib.unified_diff(a, b, "before", "now", lineterm="", n=2))

    def reachable(self) -> None:
        """Assert the node and the remote host reach each other from the
        node's own address: ping and TCP, both ways."""
        assert self.ping(self.node, REMOTE_IP), "the node does not reach the remote host"
        assert self.ping(self.remote, NODE_IP), "the remote host does not reach the node"
        assert self.tcp(self.node, self.remote, REMOTE_IP), "TCP node -> remote failed"
        assert self.tcp(self.remote, self.node, NODE_IP), "TCP remote -> node failed"

    def ping(self, ns: str, dst: str, count: int = 1, wait: float = 2.0) -> bool:
        return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-W", str(wait), dst],
                              capture_output=True).returncode == 0

    def tcp(self, client: str, server: str, server_ip: str, port: int = 7001) -> bool:
        """A TCP connection from namespace ``client`` to a listener in
        ``server`` at ``server_ip`` carries a message there and back."""
        return tcp_echo(client, server, server_ip, port)

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:  # the guard or a watchdog started in the node
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


_VOLATILE = {"ifindex", "link_index", "stats", "stats64", "valid_life_time", "preferred_life_time",
             "used", "confirmed", "updated", "probes", "inet6_addr_gen_mode", "num_tx_queues",
             "num_rx_queues", "gso_max_size", "gso_max_segs", "link_netnsid", "operstate", "qdisc",
             # a bridge's running timers
             "hello_timer", "tcn_timer", "topology_change_timer", "gc_timer"}


def _strip(v):
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if k not in _VOLATILE}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``res`` of a command that must have succeeded (its stderr otherwise)."""
    assert res.returncode == 0, res.stderr
    return res


def _in_netns(ns: str):
    """Enter namespace ``ns`` on this thread (returns a function that leaves)."""
    from agent.nsenter import setns
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    setns(fd)
    os.close(fd)

    def leave():
        setns(home)
        os.close(home)
    return leave


def tcp_echo(client: str, server: str, server_ip: str, port: int) -> bool:
    got: list[bytes] = []
    ready = threading.Event()

    def serve():
        leave = _in_netns(server)
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((server_ip, port))
                s.listen(1)
                s.settimeout(5)
                ready.set()
                c, _ = s.accept()
                with c:
                    c.sendall(c.recv(64))
        except OSError:
            pass
        finally:
            ready.set()
            leave()

    t = threading.Thread(target=serve)
    t.start()
    ready.wait(5)
    leave = _in_netns(client)
    try:
        with socket.create_connection((server_ip, port), timeout=5) as c:
            c.sendall(b"contiv-stn")
            got.append(c.recv(64))
    except OSError:
        pass
    finally:
        leave()
        t.join(10)
    return got == [b"contiv-stn"]
