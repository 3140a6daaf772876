"""`contivctl vpp cli` and `contivctl vpp dump` against a VPP lab, through the
agent's API (real VPP; root). On a Linux node the same commands answer with
one line saying why not (exit status 7)."""
from __future__ import annotations

import json

import pytest

from agent.vpp.process import availability
from tests.conftest import unique_lab_name
from tests.e2e.labtools import assert_one_line_error, cli

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp, pytest.mark.e2e,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]
NS = "vppcli"


@pytest.fixture(scope="module")
def lab():
    from lab import objects  # noqa: PLC0415
    from lab.cluster import Lab  # noqa: PLC0415
    from lab.kube import Kube  # noqa: PLC0415
    from lab.ops import run_probe  # noqa: PLC0415
    lab = Lab(unique_lab_name())
    kube = None
    try:
        lab.up(nodes=2, dataplane="node1=vpp")
        kube = Kube(lab)
        pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": NS,
                                                                  "labels": {"app": n}},
                 "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab",
                                                            "ports": [{"containerPort": 8080}]}]}}
                for n, node in (("a", "node1"), ("b", "node1"), ("c", "node2"))]
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
               "spec": {"selector": {"app": "b"}, "ports": [{"port": 80, "targetPort": 8080}]}}
        pol = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "b-from-a", "namespace": NS},
               "spec": {"podSelector": {"matchLabels": {"app": "b"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}}
        kube.apply([objects.validate(o) for o in (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, *pods, svc, pol)],
            timeout=30)
        assert run_probe(kube, f"{NS}/a", f"svc:{NS}/web", None, "TCP", 2.0).connected
        yield lab
    finally:
        if kube is not None:
            kube.close()
        lab.down()


def vpp(lab, *args) -> dict:
    r = cli("vpp", *args, "--lab", lab.name, "--node", "node1", "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_cli_runs_a_vpp_command_on_the_node(lab):
    r = cli("vpp", "cli", "--lab", lab.name, "--node", "node1", "show", "interface")
    assert r.returncode == 0, r.stderr
    assert "host-vpp0" in r.stdout and "loop0" in r.stdout
    out = vpp(lab, "cli", "show", "version")
    assert out["dataplane"] == "vpp" and out["node"] == "node1" and out["output"].startswith("vpp ")


def test_dump_interfaces_tells_ours_by_tag(lab):
    items = vpp(lab, "dump", "interfaces")["items"]
    ours = {i["tag"] for i in items if i["ours"]}
    assert {"contiv:uplink", "contiv:loop0", "contiv:vx-node2"} <= ours
    assert sum(1 for t in ours if t.startswith("contiv:p")) == 2, ours  # pods a and b
    assert any(i["name"] == "local0" and not i["ours"] for i in items)


def test_dump_vxlan_nat_acl_routes_and_sessions(lab):
    node2 = lab.state().node("node2")
    (tunnel,) = vpp(lab, "dump", "vxlan")["items"]
    assert tunnel["dst"] == node2.ip and tunnel["vni"] == 10
    vips = {t["vip"] for t in vpp(lab, "dump", "nat")["items"]}
    assert any(v.endswith(":80") for v in vips), vips
    acls = vpp(lab, "dump", "acl")["items"]
    assert any("b-from-a" in a["tag"] for a in acls), [a["tag"] for a in acls]
    assert any(a["on"] for a in acls), "an ACL list sits on pod b's interface"
    prefixes = {r["prefix"] for r in vpp(lab, "dump", "routes")["items"]}
    assert "10.1.0.0/24" in prefixes or any(p.startswith("10.1.") for p in prefixes)
    sessions = vpp(lab, "dump", "sessions")["items"]
    assert any(s["dport"] == 80 and s["reply_sport"] == 8080 for s in sessions), sessions
    r = cli("vpp", "dump", "routes", "--lab", lab.name, "--node", "node1")
    assert r.returncode == 0 and "PREFIX" in r.stdout.splitlines()[0]


def test_a_linux_node_says_why_not(lab):
    r = cli("vpp", "cli", "--lab", lab.name, "--node", "node2", "show", "version")
    assert_one_line_error(r, 7, "the Linux data plane has no CLI")
    r = cli("vpp", "dump", "everything", "--lab", lab.name)
    assert_one_line_error(r, 2, "unknown dump 'everything'")
    r = cli("vpp", "cli", "--node", "node1", "show", "version")
    assert_one_line_error(r, 2, "--node names a node of a lab")


def test_the_node_reaches_its_pods_and_services_through_the_host_interconnect(lab):
    """The node's own stack (kubelet probes, a node-local client) reaches a
    pod VPP holds -- even one isolated by a policy -- and a Service."""
    from lab.kube import Kube  # noqa: PLC0415
    from lab.probe import probe  # noqa: PLC0415
    node1 = lab.state().node("node1")
    kube = Kube(lab)
    try:
        b = kube.get("pod", NS, "b")["status"]["podIP"]
        vip = kube.service(f"{NS}/web")["spec"]["clusterIP"]
    finally:
        kube.close()
    netns = f"/run/netns/{node1.netns}"
    to_pod = probe(netns, b, 8080, "TCP", 2.0)
    assert to_pod.connected and to_pod.answered_by == f"{NS}/b", to_pod
    # from the node's own address in its pod subnet (the routes' source)
    from agent.builders.nodes import host_address  # noqa: PLC0415
    ipam = lab.client("node1").ipam()
    assert to_pod.client_seen == host_address(ipam.subnet)
    import ipaddress  # noqa: PLC0415
    # IPAM keeps it: never a pod's (network, broadcast, gateway and it)
    assert ipam.total == ipaddress.ip_network(ipam.subnet).num_addresses - 4
    to_svc = probe(netns, vip, 80, "TCP", 2.0)
    assert to_svc.connected and to_svc.answered_by == f"{NS}/b", to_svc
