"""The pod-start path's hand-encoded netlink (agent.linux.rtnl) against the
real kernel (root): the veth pair, its alias, the pod end's MAC, MTU, state
and address, the routes -- read back with iproute2 (``ip -j``), an
independent reader -- and its error cases: a leftover of ours, a foreign
link, a missing or bogus namespace, a name too long, a failure after the
pair exists (leak-proof).

Each case gets a fresh "node" namespace; the test's thread enters it for the
case (the agent's sockets are opened there) and goes home afterwards, even on
failure.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import subprocess
import threading

import pytest

from agent.errors import DataplaneError, InvalidInput, NotFound
from agent.linux import rtnl
from agent.linux.links import VethDescriptor, pod_mac
from agent.linux.netns import Netlink
from agent.linux.routes import PodRouteDescriptor, RouteDescriptor
from agent.linux.values import RTPROT_CONTIV, PodRoute, Route, Veth, veth_key
from agent.nsenter import setns

pytestmark = pytest.mark.root


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def ip_json(*args: str):
    return json.loads(ip("-j", *args) or "[]")


class Node:
    """A node namespace with the agent's Netlink opened inside it."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.name = f"rtn-{self.tag}"
        self.names = [self.name]
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        ip("netns", "add", self.name)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            setns(fd, self.name)
        finally:
            os.close(fd)
        self.nl = Netlink()
        self.veth = VethDescriptor(self.nl)

    def pod(self, name: str = "a") -> str:
        ns = f"{self.name}-{name}"
        ip("netns", "add", ns)
        self.names.append(ns)
        return f"/run/netns/{ns}"

    def links(self, netns: str | None = None) -> dict:
        where = ("-n", os.path.basename(netns)) if netns else ("-n", self.name)
        return {link["ifname"]: link for link in ip_json(*where, "-d", "link", "show")}

    def close(self) -> None:
        try:
            self.nl.close()
        finally:
            setns(self.home, "the test's own")
            os.close(self.home)
            for ns in reversed(self.names):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def node():
    n = Node()
    try:
        yield n
    finally:
        n.close()


def veth(netns: str, host_if: str = "cvtest0000001", ips=("10.1.1.2/32",), pod_if: str = "eth0",
         mtu: int = 1400) -> Veth:
    return Veth(host_if, netns, pod_if, tuple(ips), mtu, "contiv:pod:x/a")


class Ctx:
    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def metadata(self, key):
        return self.meta.get(key)


# --------------------------------------------------------------------------- results
def test_the_pair_is_made_as_asked(node):
    netns = node.pod()
    v = veth(netns)
    meta = node.veth.create(veth_key(v.host_if), v, None)
    host = node.links()[v.host_if]
    pod = node.links(netns)["eth0"]
    assert host["ifalias"] == "contiv:pod:x/a" and host["linkinfo"]["info_kind"] == "veth"
    assert host["mtu"] == pod["mtu"] == 1400
    assert "UP" in host["flags"] and "UP" in pod["flags"]
    assert pod["address"] == pod_mac(v.ips) == "0a:58:0a:01:01:02"
    assert meta == {"index": host["ifindex"], "mac": host["address"], "pod_index": pod["ifindex"],
                    "pod_mac": pod["address"]}
    assert host["link_index"] == pod["ifindex"] and pod["link_index"] == host["ifindex"]
    addrs = ip_json("-n", os.path.basename(netns), "addr", "show", "dev", "eth0")[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [("10.1.1.2", 32)]


def test_tx_checksum_offload_is_turned_off_in_the_pod_and_retrieved(node):
    """VPP's af_packet does not complete checksums: its pods' veths have TX
    checksum offload off, which retrieve reads back (no endless drift)."""
    from dataclasses import replace  # noqa: PLC0415
    netns = node.pod()
    v = replace(veth(netns), tx_checksum=False)
    node.veth.create(veth_key(v.host_if), v, None)
    out = subprocess.run(["ip", "netns", "exec", os.path.basename(netns), "ethtool", "-k", "eth0"],
                         capture_output=True, text=True).stdout
    if out:  # ethtool is not among the setup's packages; when present, it agrees
        assert "tx-checksumming: off" in out
    (found,) = [r for r in node.veth.retrieve({veth_key(v.host_if): v}, None)]
    assert found.value.tx_checksum is False
    assert node.veth.equivalent(found.key, v, found.value)
    plain = veth(node.pod("b"), host_if="cvtest0000002")
    node.veth.create(veth_key(plain.host_if), plain, None)
    from agent.linux import rtnl  # noqa: PLC0415
    assert rtnl.tx_checksum(node.nl.pod_sockets(plain.netns).rtnl(), "eth0") is True


def test_an_ipv6_only_pod_gets_the_kernels_mac_read_back(node):
    netns = node.pod()
    v = veth(netns, ips=("fd00:1::2/128",))
    meta = node.veth.create(veth_key(v.host_if), v, None)
    pod = node.links(netns)["eth0"]
    assert meta["pod_mac"] == pod["address"] and meta["pod_mac"]
    addrs = ip_json("-n", os.path.basename(netns), "addr", "show", "dev", "eth0")[0]["addr_info"]
    assert ("fd00:1::2", 128) in [(a["local"], a["prefixlen"]) for a in addrs]


def test_the_routes_are_ours_and_onlink(node):
    netns = node.pod()
    v = veth(netns)
    meta = node.veth.create(veth_key(v.host_if), v, None)
    ctx = Ctx({veth_key(v.host_if): meta})
    PodRouteDescriptor(node.nl).create("k", PodRoute(v.host_if, netns, "eth0", "0.0.0.0/0",
                                                     "10.1.1.1", True), ctx)
    RouteDescriptor(node.nl).create("k", Route("10.1.1.2/32", v.host_if,
                                               dev_key=veth_key(v.host_if)), ctx)
    (default,) = ip_json("-n", os.path.basename(netns), "route", "show", "default")
    assert default["gateway"] == "10.1.1.1" and default["dev"] == "eth0"
    assert "onlink" in default["flags"] and default["protocol"] == str(RTPROT_CONTIV)
    (host,) = ip_json("-n", node.name, "route", "show", "10.1.1.2/32")
    assert host["dev"] == v.host_if and host["scope"] == "link"
    assert host["protocol"] == str(RTPROT_CONTIV)
    # a second add of the same route is a replace, not an error (ours, interrupted)
    RouteDescriptor(node.nl).create("k", Route("10.1.1.2/32", v.host_if,
                                               dev_key=veth_key(v.host_if)), ctx)
    # and they go again; a second delete finds nothing and says nothing
    for _ in range(2):
        PodRouteDescriptor(node.nl).delete("k", PodRoute(v.host_if, netns, "eth0", "0.0.0.0/0",
                                                         "10.1.1.1", True), None, ctx)
        RouteDescriptor(node.nl).delete("k", Route("10.1.1.2/32", v.host_if), None, ctx)
    assert ip_json("-n", os.path.basename(netns), "route", "show", "default") == []
    assert ip_json("-n", node.name, "route", "show", "10.1.1.2/32") == []


# --------------------------------------------------------------------------- EEXIST
def test_a_leftover_of_ours_is_replaced(node):
    netns = node.pod()
    v = veth(netns)
    first = node.veth.create(veth_key(v.host_if), v, None)
    again = VethDescriptor(node.nl).create(veth_key(v.host_if), v, None)  # e.g. after a restart
    assert again["index"] != first["index"]
    assert node.links()[v.host_if]["ifindex"] == again["index"]
    assert list(node.links(netns)) == ["lo", "eth0"]


def test_a_foreign_link_with_our_name_is_never_deleted(node):
    netns = node.pod()
    v = veth(netns)
    ip("-n", node.name, "link", "add", v.host_if, "type", "veth", "peer", "name", "theirs")
    with pytest.raises(InvalidInput, match="not ours"):
        node.veth.create(veth_key(v.host_if), v, None)
    assert {v.host_if, "theirs"} <= set(node.links())
    assert list(node.links(netns)) == ["lo"]


def test_a_pod_interface_that_exists_already_is_bad_input_and_leaves_nothing(node):
    netns = node.pod()
    ip("-n", os.path.basename(netns), "link", "add", "eth0", "type", "veth", "peer", "name", "x1")
    v = veth(netns)
    with pytest.raises(InvalidInput, match="eth0 already exists"):
        node.veth.create(veth_key(v.host_if), v, None)
    assert v.host_if not in node.links()
    assert {"eth0", "x1"} <= set(node.links(netns))


# --------------------------------------------------------------------------- other errors
def test_a_missing_namespace_is_not_found_and_nothing_is_made(node):
    before = set(node.links())
    with pytest.raises(NotFound, match="does not exist"):
        node.veth.create("k", veth(f"/run/netns/{node.name}-gone"), None)
    assert set(node.links()) == before


def test_a_file_that_is_no_namespace_is_not_found_and_nothing_is_made(node, tmp_path):
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("")
    before = set(node.links())
    with pytest.raises(NotFound, match="not usable"):
        node.veth.create("k", veth(str(bogus)), None)
    assert set(node.links()) == before


def test_a_name_too_long_is_the_kernels_refusal_typed(node):
    netns = node.pod()
    before = set(node.links())
    with pytest.raises(DataplaneError) as e:  # validate() would refuse it; the kernel too
        node.veth.create("k", veth(netns, pod_if="a-name-too-long-x"), None)
    assert e.value.op == "link add veth" and e.value.args_["peer"] == "a-name-too-long-x"
    assert set(node.links()) == before and list(node.links(netns)) == ["lo"]


def test_a_failure_after_the_pair_exists_removes_the_pair(node):
    netns = node.pod()
    v = veth(netns, ips=("10.1.1.2/32", "fd00::2/129"))  # the kernel refuses the prefix length
    with pytest.raises(DataplaneError) as e:
        node.veth.create(veth_key(v.host_if), v, None)
    assert e.value.op == "addr add" and e.value.args_["address"] == "fd00::2/129"
    assert v.host_if not in node.links()
    assert list(node.links(netns)) == ["lo"]


def test_the_kernels_refusals_carry_their_errno(node):
    rt = node.nl.fast
    with pytest.raises(rtnl.RtnlError) as e:
        rt.addr_add(999999, "10.9.9.9", 32)
    assert e.value.errno == errno.ENODEV
    ip("-n", node.name, "link", "set", "lo", "up")
    args = dict(family=rtnl.AF_INET, dst="10.9.0.0", dst_len=16, oif=1, proto=RTPROT_CONTIV)
    rt.route("add", **args)
    with pytest.raises(rtnl.RtnlError) as e:
        rt.route("add", **args)
    assert e.value.errno == errno.EEXIST
    rt.route("replace", **args)
    rt.route("del", **args)
    with pytest.raises(rtnl.RtnlError) as e:
        rt.route("del", **args)
    assert e.value.errno == errno.ESRCH
    with pytest.raises(rtnl.RtnlError) as e:
        rt.link(name="no-such-link")
    assert e.value.errno == errno.ENODEV


# --------------------------------------------------------------------------- sockets
def test_pod_sockets_are_cached_lazy_and_renewed_with_the_namespace(node):
    netns = node.pod("s")
    fast = node.nl.pod_fast(netns)
    assert node.nl.pod_fast(netns) is fast
    ipr = node.nl.pod(netns)  # pyroute2's, made on first use, over the spare socket
    assert node.nl.pod(netns) is ipr
    assert [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()] == ["lo"]
    assert fast.link(name="lo").index == 1
    name = os.path.basename(netns)
    ip("netns", "del", name)
    ip("netns", "add", name)  # same path, a new namespace
    assert node.nl.pod_fast(netns) is not fast
    node.nl.forget(netns)
    with pytest.raises(OSError):
        fast.link(name="lo")  # closed with its namespace's entry


def test_many_namespaces_opened_at_once_each_get_their_own(node):
    paths = [node.pod(f"m{i}") for i in range(8)]
    for i, p in enumerate(paths):
        ip("-n", os.path.basename(p), "link", "add", f"mark{i}", "type", "veth", "peer", "name", "x")
    seen, errors = {}, []

    def look(i, p):
        try:
            seen[i] = node.nl.pod_fast(p).link(name=f"mark{i}").name
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=look, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and seen == {i: f"mark{i}" for i in range(8)}
    home = os.stat("/proc/thread-self/ns/net").st_ino
    opener = node.nl._opener._thread.native_id
    assert os.stat(f"/proc/self/task/{opener}/ns/net").st_ino == home


def test_a_scheduler_adds_and_removes_a_pod_through_the_fast_path(node):
    from agent.linux import descriptors  # noqa: PLC0415
    from agent.reconciler import Scheduler  # noqa: PLC0415
    netns = node.pod()
    s = Scheduler(descriptors(node.nl))
    v = veth(netns)
    values = {veth_key(v.host_if): v,
              f"linux/podroute/{v.host_if}/0.0.0.0/0": PodRoute(v.host_if, netns, "eth0",
                                                                 "0.0.0.0/0", "10.1.1.1", True),
              "linux/route/10.1.1.2/32": Route("10.1.1.2/32", v.host_if,
                                               dev_key=veth_key(v.host_if))}
    assert s.apply(values).ok
    assert s.dry_run(resync=True).operations == []
    assert s.apply({k: None for k in values}).ok
    assert v.host_if not in node.links()
    assert s.dry_run(resync=True).operations == []


def test_the_peer_cannot_come_up_in_the_creating_request(node):
    """Why the pod end goes up with a request of its own: the kernel's
    veth_newlink opens the peer before the two ends are paired (ENOTCONN),
    and then takes the whole pair back."""
    netns = node.pod()
    before = set(node.links())
    fd = os.open(netns, os.O_RDONLY)
    try:
        with pytest.raises(rtnl.RtnlError) as e:
            node.nl.fast.request(rtnl.veth_newlink, "cvpeerup00000", "eth0", fd, 1500, peer_up=True)
    finally:
        os.close(fd)
    assert e.value.errno == errno.ENOTCONN
    assert set(node.links()) == before and list(node.links(netns)) == ["lo"]
