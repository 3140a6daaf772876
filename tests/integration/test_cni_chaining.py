"""``contiv-cni`` chained with the reference plugins, libcni style.

The conflist is contiv-cni -> portmap (capability portMappings) -> bandwidth
(capability bandwidth) -> tuning (a sysctl in the pod), run by
:class:`lab.cniexec.Runtime`: prevResult chaining, capabilities handed over
as runtimeConfig, DEL in reverse order with the cached ADD result.

Where plugins run: a real container runtime runs every plugin of the list on
the node, i.e. in the node's network namespace -- that is where portmap's
iptables rules, bandwidth's qdiscs and its ifb device, and the host end of the
pod's veth live. In the lab each node is a network namespace, so
:class:`NodeRuntime` starts each plugin under ``nsenter --net=<node netns>``.
contiv-cni itself only talks to the agent's unix socket, so it behaves the
same from any namespace; for the reference plugins it matters.

The reference plugins are Debian's containernetworking-plugins 1.1.1: they
speak configs up to 1.0.0 (1.1.0 is refused, see the last test), and their
portmap has an upstream CHECK bug for IPv4-only pods (see
:func:`_check_list`).
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
from pathlib import Path

import pytest

from agent.linux.values import host_ifname
from lab import sysnet
from tests.helpers import sh
from lab.cniexec import CNIFailure, Runtime

pytestmark = pytest.mark.root

IFNAME = "eth0"
REF_DIR = "/usr/lib/cni"
HOST_PORT, POD_PORT = 18080, 80
RATE_IN, BURST_IN = 1_000_000, 100_000     # bits/s, bits
RATE_OUT, BURST_OUT = 2_000_000, 200_000
SYSCTL = ("net.ipv4.conf.eth0.arp_ignore", "1")  # 0 by default in a new netns


def NodeRuntime(cni_path: list[str], node_netns: str) -> Runtime:
    """A :class:`Runtime` whose plugins run in the node's network namespace
    (see the module docstring)."""
    return Runtime(cni_path, prefix=["nsenter", f"--net={sysnet.netns_path(node_netns)}"])


def conflist(lab, node: str, version: str) -> dict:
    """The conflist ``contivctl install cni`` writes for this chain (into a
    root of its own: the host's /etc/cni stays untouched), as a user runs it."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    with tempfile.TemporaryDirectory() as root:
        r = subprocess.run([sys.executable, "-m", "contivctl.main", "install", "cni", "--root", root,
                            "--chain", "portmap,bandwidth,tuning", "--plugin-dir", REF_DIR,
                            "--cni-version", version, "--tuning-sysctl", f"{SYSCTL[0]}={SYSCTL[1]}",
                            "--agent-socket", lab.state().node(node).socket],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cl = json.loads((Path(root) / "etc/cni/net.d/10-contiv.conflist").read_text())
    assert [p["type"] for p in cl["plugins"]] == ["contiv-cni", "portmap", "bandwidth", "tuning"]
    return cl


CAPS = {"portMappings": [{"hostPort": HOST_PORT, "containerPort": POD_PORT, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": RATE_IN, "ingressBurst": BURST_IN,
                      "egressRate": RATE_OUT, "egressBurst": BURST_OUT}}


@pytest.fixture(scope="module")
def lab(lab2):
    for plugin in ("portmap", "bandwidth", "tuning"):
        assert os.access(os.path.join(REF_DIR, plugin), os.X_OK), \
            f"reference plugin {plugin} missing in {REF_DIR}: run scripts/setup.sh"
    return lab2


@pytest.fixture
def pod(lab):
    """A pod sandbox on node1: (netns name, path, container id); whatever the
    test leaves attached is deleted, the netns removed."""
    name = lab.paths.pod_ns("chain", "p" + secrets.token_hex(4))
    cid = "chain-" + secrets.token_hex(8)
    sysnet.netns_add(name)
    try:
        yield name, sysnet.netns_path(name), cid
    finally:
        # Best effort, whatever the test left: the reference plugins' DEL needs
        # no prevResult (portmap finds its chains, bandwidth its ifb device, by
        # container ID); contiv-cni's DEL on its own releases the address even
        # if the list's DEL stopped early.
        rt = NodeRuntime(lab.cni_path(), lab.paths.node_ns("node1"))
        cl = conflist(lab, "node1", "1.0.0")
        try:
            rt.delete(cl, cid, sysnet.netns_path(name), IFNAME, args="IgnoreUnknown=1",
                      capabilities=CAPS)
        except CNIFailure:
            pass
        rt.exec("contiv-cni", "DEL", rt._plugin_conf(cl, cl["plugins"][0], None, {}),
                container_id=cid, ifname=IFNAME)
        sysnet.netns_del(name)


def need_iptables() -> None:
    if shutil.which("iptables") is None:
        pytest.fail("portmap needs the iptables binary, which is not installed: "
                    "run scripts/setup.sh (Debian package iptables)")


def nat_rules(node_ns: str) -> str:
    return sh("ip", "netns", "exec", node_ns, "iptables-save", "-t", "nat")


def qdiscs(node_ns: str) -> str:
    return sh("ip", "netns", "exec", node_ns, "tc", "qdisc", "show")


def node_links(node_ns: str) -> set[str]:
    out = sh("ip", "-n", node_ns, "-br", "link")
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def allocations(lab) -> set[str]:
    return {a.container_id for a in lab.client("node1").ipam().allocations}


def _is_portmap_v6_check_bug(e: CNIFailure) -> bool:
    """containernetworking/plugins#819 (fixed upstream after 1.1.1): portmap's
    CHECK looks for its ip6tables chain even for an IPv4-only pod, whenever
    ip6tables works, and fails with 'could not check ipv6 dnat: chain ... not
    found'."""
    msg = (e.error or {}).get("msg", "")
    return e.plugin == "portmap" and "could not check ipv6 dnat" in msg and "not found" in msg


def _check_list(rt: Runtime, cl: dict, cid: str, path: str, result: dict, args: str) -> list[str]:
    """CHECK the whole list; returns the plugins whose CHECK could not be run
    because of portmap's known upstream bug (then checked otherwise)."""
    try:
        rt.check(cl, cid, path, IFNAME, result, args=args, capabilities=CAPS)
        return []
    except CNIFailure as e:
        assert _is_portmap_v6_check_bug(e), f"CHECK of the list failed: {e.message}"
    # portmap checks its IPv4 chain before the IPv6 one, so reaching the IPv6
    # error means the IPv4 DNAT chain passed its CHECK. The list stopped at
    # portmap: CHECK every other plugin on its own, as libcni would have after
    # portmap, so that none goes unchecked.
    for plugin in cl["plugins"]:
        if plugin["type"] == "portmap":
            continue
        # (Runtime._plugin_conf: the exact per-plugin config libcni-style chaining builds)
        inv = rt.exec(plugin["type"], "CHECK", rt._plugin_conf(cl, plugin, result, CAPS),
                      container_id=cid, netns=path, ifname=IFNAME, args=args)
        assert inv.exit_code == 0, f"CHECK by {plugin['type']}: {inv.stdout!r} {inv.stderr}"
    return ["portmap"]


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_chain_add_check_del(lab, pod, version):
    need_iptables()
    name, path, cid = pod
    node_ns = lab.paths.node_ns("node1")
    rt = NodeRuntime(lab.cni_path(), node_ns)
    cl = conflist(lab, "node1", version)
    # IgnoreUnknown=1: kubelet/containerd send it too; tuning refuses unknown CNI_ARGS without it.
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=chain;K8S_POD_NAME={cid}"
    links0 = node_links(node_ns)
    host = host_ifname(cid, IFNAME)

    result = rt.add(cl, cid, path, IFNAME, args=args, capabilities=CAPS)

    # -- ADD: the result went through every plugin and is still ours
    assert result["cniVersion"] == version
    ip = str(ipaddress.ip_interface(result["ips"][0]["address"]).ip)
    names = [i["name"] for i in result["interfaces"]]
    assert names[:2] == [host, IFNAME]
    ifb = [n for n in names[2:] if n.startswith("bwp")]
    assert len(ifb) == 1, f"bandwidth should add its ifb device to the result: {names}"
    assert cid in allocations(lab)

    # tuning: the sysctl inside the pod
    assert sh("ip", "netns", "exec", name, "sysctl", "-n", SYSCTL[0]).strip() == SYSCTL[1]
    # bandwidth: ingress tbf on the host veth, egress tbf on its ifb device, in the node netns
    q = qdiscs(node_ns)
    assert any(line.startswith("qdisc tbf") and f"dev {host} " in line and "rate 1Mbit" in line
               for line in q.splitlines()), q
    assert any(line.startswith("qdisc tbf") and f"dev {ifb[0]} " in line and "rate 2Mbit" in line
               for line in q.splitlines()), q
    assert any("qdisc ingress" in line and f"dev {host} " in line for line in q.splitlines()), q
    # portmap: a DNAT of the host port to the pod, tagged with the container ID
    nat = nat_rules(node_ns)
    assert f"--to-destination {ip}:{POD_PORT}" in nat, nat
    assert f'id: \\"{cid}\\"' in nat and f"--dports {HOST_PORT}" in nat, nat

    # -- CHECK of the whole list
    _check_list(rt, cl, cid, path, result, args)

    # -- DEL of the whole list (reverse order, with the cached result): nothing left
    rt.delete(cl, cid, path, IFNAME, args=args, prev=result, capabilities=CAPS)
    assert cid not in allocations(lab)
    assert node_links(node_ns) == links0, "links left in the node namespace"
    nat = nat_rules(node_ns)
    assert cid not in nat and f"{ip}:{POD_PORT}" not in nat, nat
    # (portmap's shared chains CNI-HOSTPORT-* stay, as on any node: they belong to no pod)
    q = qdiscs(node_ns)
    assert host not in q and ifb[0] not in q, q
    assert sh("ip", "-n", name, "-br", "link").split()[0] == "lo"
    assert IFNAME not in sh("ip", "-n", name, "-br", "link")

    # DEL again (the runtime may repeat it) still succeeds
    rt.delete(cl, cid, path, IFNAME, args=args, prev=result, capabilities=CAPS)


def test_reference_plugins_refuse_a_1_1_0_list(lab, pod):
    """Debian's plugins (1.1.1) stop at spec 1.0.0. With a 1.1.0 conflist the
    first of them refuses with code 1 (incompatible version) after
    contiv-cni's ADD succeeded; a runtime then DELs, and our DEL must still
    release the address."""
    need_iptables()
    name, path, cid = pod
    node_ns = lab.paths.node_ns("node1")
    rt = NodeRuntime(lab.cni_path(), node_ns)
    for plugin in ("portmap", "bandwidth", "tuning"):
        out = json.loads(rt.exec(plugin, "VERSION", {"cniVersion": "1.0.0"}).stdout)
        assert "1.1.0" not in out["supportedVersions"] and "1.0.0" in out["supportedVersions"], out

    cl = conflist(lab, "node1", "1.1.0")
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=chain;K8S_POD_NAME={cid}"
    with pytest.raises(CNIFailure) as exc:
        rt.add(cl, cid, path, IFNAME, args=args, capabilities=CAPS)
    e = exc.value
    assert e.plugin == "portmap" and e.code == 1, e.message
    assert '"1.1.0"' in e.error.get("details", ""), e.error
    assert cid in allocations(lab)  # contiv-cni's ADD went through before portmap refused

    # libcni's DEL of the list would stop at tuning's refusal; ours on its own releases all.
    inv = rt.exec("contiv-cni", "DEL", rt._plugin_conf(cl, cl["plugins"][0], None, {}),
                  container_id=cid, netns=path, ifname=IFNAME, args=args)
    assert inv.exit_code == 0, inv.stdout
    assert cid not in allocations(lab)
    assert host_ifname(cid, IFNAME) not in node_links(node_ns)
