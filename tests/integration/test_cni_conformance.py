"""CNI conformance of ``contiv-cni`` against a real two-node lab.

Every supported spec version gets the whole life cycle: ADD (result layout of
that version, and the pod's real interface), CHECK (passes, then fails once
the pod's network is broken), DEL (everything gone, repeatable, tolerant of
unknown containers and of a netns that is already gone), idempotent ADD,
STATUS, GC and VERSION; then real packets between pods on one node and across
the VXLAN between nodes.

The plugin is executed the way a container runtime executes it (environment
variables + config on stdin) by :class:`lab.cniexec.Runtime`.
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess

import pytest

from agent.cnihandler import SUPPORTED_VERSIONS
from agent.linux.values import host_ifname
from agent.model.records import Allocation
from lab import sysnet
from tests.helpers import sh, version_tuple as _vt
from lab.cniexec import Runtime

pytestmark = pytest.mark.root

IFNAME = "eth0"
PLUGIN = "contiv-cni"


# ---------------------------------------------------------------------- lab views
def node_links(lab, node: str) -> set[str]:
    """Link names in the node's namespace (``ip -br link``, ``@peer`` stripped)."""
    out = sh("ip", "-n", lab.paths.node_ns(node), "-br", "link")
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def node_routes(lab, node: str) -> set[str]:
    out = sh("ip", "-n", lab.paths.node_ns(node), "route", "show")
    return {line.strip() for line in out.splitlines() if line.strip()}


def allocations(lab, node: str) -> dict[tuple[str, str], Allocation]:
    return {(a.container_id, a.ifname): a for a in lab.client(node).ipam().allocations}


def link_info(netns: str, dev: str) -> dict:
    """``ip -j addr show dev`` of one link in a namespace."""
    return json.loads(sh("ip", "-j", "-n", netns, "addr", "show", "dev", dev))[0]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab(lab2):
    return lab2


@pytest.fixture(scope="module")
def subnets(lab) -> dict[str, ipaddress.IPv4Network]:
    """Each node's pod subnet, as the agent reports it (never assumed)."""
    return {n: ipaddress.ip_network(lab.client(n).ipam().subnet)
            for n in ("node1", "node2")}


class Pods:
    """Pod sandboxes (netns) and attachments made by one test; everything is
    deleted at teardown, whatever the test's outcome."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.rt = Runtime(lab.cni_path())
        self._netns: list[str] = []
        self._attached: list[tuple[str, str, str]] = []  # (node, version, container id)

    def conf(self, node: str, version: str, **extra) -> dict:
        """The node's contiv-cni plugin config as a runtime hands it over."""
        cl = self.lab.conflist(node)
        conf = dict(cl["plugins"][0])
        conf.update(cniVersion=version, name=cl["name"], **extra)
        return conf

    def sandbox(self) -> tuple[str, str]:
        """A fresh pod network namespace: (name, path)."""
        name = self.lab.paths.pod_ns("cni", "p" + secrets.token_hex(4))
        self._netns.append(name)
        sysnet.netns_add(name)
        return name, sysnet.netns_path(name)

    @staticmethod
    def cid() -> str:
        return "conf-" + secrets.token_hex(8)

    def exec(self, node: str, version: str, command: str, cid: str = "", netns: str = "",
             ifname: str = IFNAME, **extra):
        if command == "ADD":
            self._attached.append((node, version, cid))
        return self.rt.exec(PLUGIN, command, self.conf(node, version, **extra), container_id=cid,
                            netns=netns, ifname=ifname,
                            args=f"K8S_POD_NAMESPACE=cni;K8S_POD_NAME={cid}" if cid else "")

    def add(self, node: str, version: str, cid: str | None = None, netns: str | None = None,
            **extra):
        """ADD that must succeed: (container id, netns name, netns path, result);
        ``extra``: more config keys."""
        cid = cid or self.cid()
        if netns is None:
            name, path = self.sandbox()
        else:
            name, path = netns.rsplit("/", 1)[-1], netns
        inv = self.exec(node, version, "ADD", cid, path, **extra)
        assert inv.exit_code == 0, f"ADD failed: {inv.stdout!r} {inv.stderr}"
        return cid, name, path, json.loads(inv.stdout)

    def cleanup(self) -> None:
        for node, version, cid in reversed(self._attached):
            self.exec(node, version, "DEL", cid)
        for name in self._netns:
            sysnet.netns_del(name)


@pytest.fixture
def pods(lab):
    p = Pods(lab)
    try:
        yield p
    finally:
        p.cleanup()


versions = pytest.mark.parametrize("version", SUPPORTED_VERSIONS)


# ---------------------------------------------------------------------- VERSION
def test_version_lists_every_supported_version(pods):
    # VERSION needs no config fields but cniVersion (spec); the plugin answers it itself.
    inv = pods.rt.exec(PLUGIN, "VERSION", {"cniVersion": "1.1.0"})
    assert inv.exit_code == 0, inv.stderr
    out = json.loads(inv.stdout)
    assert out["cniVersion"] == "1.1.0"
    assert sorted(out["supportedVersions"], key=_vt) == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    assert set(out["supportedVersions"]) == set(SUPPORTED_VERSIONS)


# ---------------------------------------------------------------------- ADD
@versions
def test_add_result_has_the_version_layout_and_matches_the_pod(pods, lab, subnets, version):
    cid, ns, path, res = pods.add("node1", version)
    subnet = subnets["node1"]
    gw = str(subnet.network_address + 1)

    assert res["cniVersion"] == version
    host, pod = res["interfaces"]
    assert host["name"] == host_ifname(cid, IFNAME)
    assert "sandbox" not in host
    assert pod["name"] == IFNAME and pod["sandbox"] == path
    if _vt(version) >= (1, 1, 0):
        assert host["mtu"] == pod["mtu"] == link_info(ns, IFNAME)["mtu"]
    else:
        assert "mtu" not in host and "mtu" not in pod

    assert len(res["ips"]) == 1
    ip = res["ips"][0]
    if _vt(version) < (1, 0, 0):
        assert ip["version"] == "4"
    else:
        assert "version" not in ip
    assert ip["interface"] == 1
    addr = ipaddress.ip_interface(ip["address"])
    assert addr.network.prefixlen == 32
    assert addr.ip in subnet
    assert addr.ip not in (subnet.network_address, subnet.network_address + 1, subnet.broadcast_address)
    assert ip["gateway"] == gw
    assert {"dst": "0.0.0.0/0", "gw": gw} in res["routes"]

    # The pod really has that interface, address and MAC, and the default route.
    eth0 = link_info(ns, IFNAME)
    assert eth0["address"] == pod["mac"]
    assert "UP" in eth0["flags"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == \
        [(str(addr.ip), 32)]
    assert f"default via {gw} dev {IFNAME}" in sh("ip", "-n", ns, "route", "show")
    # The host side exists in the node namespace with the reported MAC, and
    # the node routes the pod's /32 to it.
    assert link_info(lab.paths.node_ns("node1"), host["name"])["address"] == host["mac"]
    assert f"{addr.ip} dev {host['name']}" in " ".join(node_routes(lab, "node1"))
    alloc = allocations(lab, "node1")[(cid, IFNAME)]
    assert alloc.ips == (ip["address"],) and alloc.netns == path


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_add_honours_the_config_mtu(pods, lab, version):
    cid, ns, _, res = pods.add("node1", version, mtu=1400)
    assert link_info(ns, IFNAME)["mtu"] == 1400
    assert link_info(lab.paths.node_ns("node1"), host_ifname(cid, IFNAME))["mtu"] == 1400
    if _vt(version) >= (1, 1, 0):
        assert [i["mtu"] for i in res["interfaces"]] == [1400, 1400]


@versions
def test_repeated_add_is_idempotent(pods, lab, version):
    cid, _, path, first = pods.add("node1", version)
    _, _, _, second = pods.add("node1", version, cid=cid, netns=path)
    assert second["ips"] == first["ips"]
    assert second["interfaces"] == first["interfaces"]
    mine = [a for (c, _), a in allocations(lab, "node1").items() if c == cid]
    assert len(mine) == 1


# ---------------------------------------------------------------------- CHECK
@pytest.mark.parametrize("version", [v for v in SUPPORTED_VERSIONS if _vt(v) >= (0, 4, 0)])
def test_check_passes_after_add_and_fails_once_the_pod_is_broken(pods, version):
    cid, ns, path, res = pods.add("node1", version)
    inv = pods.exec("node1", version, "CHECK", cid, path, prevResult=res)
    assert inv.exit_code == 0, inv.stdout
    assert inv.stdout.strip() == b""

    sh("ip", "-n", ns, "route", "del", "default")
    inv = pods.exec("node1", version, "CHECK", cid, path, prevResult=res)
    assert inv.exit_code != 0
    err = json.loads(inv.stdout)
    assert err["cniVersion"] == version
    assert isinstance(err["code"], int) and err["code"] != 0
    assert "0.0.0.0/0" in err["msg"], err  # names the missing default route


@pytest.mark.parametrize("version", [v for v in SUPPORTED_VERSIONS if _vt(v) >= (0, 4, 0)])
def test_check_fails_when_prev_result_names_another_address(pods, subnets, version):
    cid, _, path, res = pods.add("node1", version)
    other = str(subnets["node1"].broadcast_address - 1) + "/32"
    assert other != res["ips"][0]["address"]
    wrong = json.loads(json.dumps(res))
    wrong["ips"][0]["address"] = other
    inv = pods.exec("node1", version, "CHECK", cid, path, prevResult=wrong)
    assert inv.exit_code != 0
    assert other in json.loads(inv.stdout)["msg"]


# ---------------------------------------------------------------------- DEL
@versions
def test_del_removes_everything_and_can_be_repeated(pods, lab, version):
    _, path = pods.sandbox()
    links0, routes0 = node_links(lab, "node1"), node_routes(lab, "node1")
    cid, _, _, res = pods.add("node1", version, netns=path)
    host = res["interfaces"][0]["name"]
    assert host in node_links(lab, "node1")
    assert (cid, IFNAME) in allocations(lab, "node1")

    for attempt in (1, 2):
        inv = pods.exec("node1", version, "DEL", cid, path)
        assert inv.exit_code == 0, f"DEL #{attempt}: {inv.stdout!r}"
        assert inv.stdout.strip() == b""
        assert node_links(lab, "node1") == links0
        assert node_routes(lab, "node1") == routes0
        assert (cid, IFNAME) not in allocations(lab, "node1")


@versions
def test_del_of_an_unknown_container_succeeds(pods, lab, version):
    _, path = pods.sandbox()
    before = allocations(lab, "node1")
    for netns in (path, ""):  # DEL does not need CNI_NETNS
        inv = pods.exec("node1", version, "DEL", pods.cid(), netns)
        assert inv.exit_code == 0, inv.stdout
    assert allocations(lab, "node1") == before


@versions
def test_del_after_the_netns_is_gone_still_releases_the_address(pods, lab, version):
    links0, routes0 = node_links(lab, "node1"), node_routes(lab, "node1")
    cid, ns, path, res = pods.add("node1", version)
    sysnet.netns_del(ns)
    assert not sysnet.netns_exists(ns)
    inv = pods.exec("node1", version, "DEL", cid, path)
    assert inv.exit_code == 0, inv.stdout
    assert (cid, IFNAME) not in allocations(lab, "node1")
    assert node_links(lab, "node1") == links0
    assert node_routes(lab, "node1") == routes0
    # The address is free again: the agent's own view agrees.
    addr = res["ips"][0]["address"]
    assert all(addr not in a.ips for a in allocations(lab, "node1").values())


# ---------------------------------------------------------------------- STATUS / GC
def test_status_succeeds_with_empty_output(pods):
    inv = pods.exec("node1", "1.1.0", "STATUS")
    assert inv.exit_code == 0, inv.stdout
    assert inv.stdout.strip() == b""


def test_gc_releases_attachments_not_listed_as_valid(pods, lab):
    links0, routes0 = node_links(lab, "node1"), node_routes(lab, "node1")
    kept = [pods.add("node1", "1.1.0") for _ in range(2)]
    gone = [pods.add("node1", "1.1.0") for _ in range(2)]
    valid = [{"containerID": cid, "ifname": IFNAME} for cid, *_ in kept]
    inv = pods.exec("node1", "1.1.0", "GC", **{"cni.dev/valid-attachments": valid})
    assert inv.exit_code == 0, inv.stdout

    allocs = allocations(lab, "node1")
    links = node_links(lab, "node1")
    for cid, ns, _, res in kept:
        assert (cid, IFNAME) in allocs
        assert res["interfaces"][0]["name"] in links
        assert link_info(ns, IFNAME)["address"] == res["interfaces"][1]["mac"]
    for cid, ns, _, res in gone:
        assert (cid, IFNAME) not in allocs
        assert res["interfaces"][0]["name"] not in links
        assert IFNAME not in sh("ip", "-n", ns, "-br", "link")
    # What is left on the node is exactly the kept pods' links and /32 routes.
    assert links - links0 == {res["interfaces"][0]["name"] for *_, res in kept}
    assert len(node_routes(lab, "node1") - routes0) == len(kept)


# ---------------------------------------------------------------------- packets
def _ping(netns: str, ip: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-c1", "-W2", ip],
                          capture_output=True, text=True)


def _ip(res: dict) -> str:
    return str(ipaddress.ip_interface(res["ips"][0]["address"]).ip)


def test_two_pods_on_one_node_ping_each_other(pods):
    _, ns_a, _, a = pods.add("node1", "1.1.0")
    _, ns_b, _, b = pods.add("node1", "1.1.0")
    for src, dst in ((ns_a, _ip(b)), (ns_b, _ip(a))):
        p = _ping(src, dst)
        assert p.returncode == 0, f"{src} -> {dst}: {p.stdout}{p.stderr}"


def test_pods_on_two_nodes_ping_each_other_across_vxlan(pods, subnets):
    _, ns_a, _, a = pods.add("node1", "1.1.0")
    _, ns_b, _, b = pods.add("node2", "1.1.0")
    assert ipaddress.ip_address(_ip(a)) in subnets["node1"]
    assert ipaddress.ip_address(_ip(b)) in subnets["node2"]
    for src, dst in ((ns_a, _ip(b)), (ns_b, _ip(a))):
        p = _ping(src, dst)
        assert p.returncode == 0, f"{src} -> {dst}: {p.stdout}{p.stderr}"
