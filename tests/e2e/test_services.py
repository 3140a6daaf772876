"""End to end: Services on a two-node lab, with real packets.

One lab for the module: pods ``web-a`` (node1) and ``web-b`` (node2) serve
TCP 8080 (``http``) and UDP 8081 (``dns``); ``client1``/``client2`` sit on
node1/node2 and only ever connect. Services are applied through the lab's API
server (which allocates cluster IPs and node ports and keeps EndpointSlices),
probes are real connections (``lab.ops.run_probe``) from a pod's network
namespace or from the underlay (a client outside the cluster, 192.168.56.1).

Load balancing is random, so "every endpoint answers" repeats a probe until
all were seen, bounded (40 tries miss one of two endpoints with probability
2^-39); "never answers" probes a fixed number of times.

The namespace name is long on purpose: rule comments then exceed what
nftables stores, which once made every resync rewrite the chains (checked by
``test_resync_after_all_this_finds_no_drift``).

Tests share the lab and run in file order; each one that changes the cluster
puts it back as it found it.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.model import keys
from lab import objects
from lab.ops import run_probe
from tests.conftest import IS_ROOT
from tests.e2e.labtools import kube_lab
from tests.helpers import REJECTED, lab_modes, split_mode

pytestmark = [pytest.mark.root, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
NS = "services-end-to-end-tests-with-a-long-namespace"
TCP_PORT, UDP_PORT = 8080, 8081
TRIES = 40
WAIT = 60.0  # liveness bound for agents to apply a change, not a performance claim
PROBE_TIMEOUT = 2.0


def pod(name: str, node: str, labels: dict, serve: bool = True) -> dict:
    ports = [{"name": "http", "containerPort": TCP_PORT},
             {"name": "dns", "containerPort": UDP_PORT, "protocol": "UDP"}] if serve else []
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "lab", "ports": ports}]}}


def service(name: str, spec: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": spec}


HTTP = {"name": "http", "port": 80, "targetPort": "http"}
#: how each data plane names a frontend in `services -o json` (dataplane.elements)
FRONTEND = {"linux": "{ip} . {proto} . {port} -> ", "vpp": "{proto} {ip}:{port} -> "}


def valid(obj: dict) -> dict:
    """Validated and defaulted as the API server would (on a copy: the lab
    fills in node ports in place, and the manifests share dicts)."""
    return objects.validate(copy.deepcopy(obj))


WEB = {"app": "web"}

MANIFEST = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    pod("web-a", "node1", {"app": "web", "pin": "a"}),
    pod("web-b", "node2", {"app": "web", "pin": "b"}),
    pod("client1", "node1", {"app": "client"}, serve=False),
    pod("client2", "node2", {"app": "client"}, serve=False),
    # several ports: a named TCP port, a named UDP port, a numeric target port
    service("web", {"selector": WEB, "ports": [
        HTTP, {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
        {"name": "alt", "port": 8000, "targetPort": TCP_PORT}]}),
    service("web-np", {"type": "NodePort", "selector": WEB, "ports": [HTTP]}),
    service("web-local", {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": WEB,
                          "ports": [HTTP]}),
    # only web-a (node1) behind it: node2 has no local endpoint and drops
    service("only-a-local", {"type": "NodePort", "externalTrafficPolicy": "Local",
                             "selector": {"app": "web", "pin": "a"}, "ports": [HTTP]}),
    service("web-aff", {"selector": WEB, "sessionAffinity": "ClientIP", "ports": [HTTP]}),
    service("empty", {"type": "NodePort", "selector": {"app": "nobody"}, "ports": [
        {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
]


@dataclass
class Env:
    lab: object
    kube: object
    dataplane: str
    underlay: str  # the underlay client's address
    node_ip: dict  # node -> underlay address
    gateway: dict  # node -> pod gateway (SNAT address)
    pod_ip: dict   # pod name -> IP


@pytest.fixture(scope="module", params=lab_modes())
def env(request):
    if not IS_ROOT:
        pytest.skip("needs root: creates network namespaces and links")
    dataplane, api = split_mode(request.param)
    with kube_lab(MANIFEST, dataplane, timeout=WAIT, kube_api=api) as (lab, kube):
        st = lab.state()
        yield Env(lab, kube, dataplane, st.gateway, {n.name: n.service_ip for n in st.nodes},
                  {n.name: lab.client(n.name).ipam().gateway[0] for n in st.nodes},
                  {p["metadata"]["name"]: p["status"]["podIP"] for p in kube.list("pod", NS)})


# --------------------------------------------------------------------------- helpers
def probe(env: Env, src: str, dst: str, port: int | None = None, protocol: str = "TCP",
          timeout: float = PROBE_TIMEOUT):
    src = src if src == "underlay" else f"{NS}/{src}"
    if not dst.startswith("node:"):
        dst = f"svc:{NS}/{dst}"
    return run_probe(env.kube, src, dst, port, protocol, timeout)


def node_port(env: Env, svc: str, name: str = "http") -> int:
    (p,) = [p for p in env.kube.service(f"{NS}/{svc}")["spec"]["ports"] if p["name"] == name]
    return p["nodePort"]


def until_all(env: Env, src: str, dst: str, want: set[str], *, port=None, protocol="TCP",
              tries: int = TRIES) -> dict[str, list]:
    """Probe until every pod in ``want`` answered (at most ``tries`` times);
    returns the results by answering pod. Every probe must connect."""
    seen: dict[str, list] = {}
    for _ in range(tries):
        r = probe(env, src, dst, port, protocol)
        assert r.connected, r
        seen.setdefault(r.answered_by.split("/", 1)[1], []).append(r)
        if want <= set(seen):
            break
    return seen


def repeat(env: Env, src: str, dst: str, n: int = 10, **kw) -> list:
    return [probe(env, src, dst, **kw) for _ in range(n)]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contivctl.main", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def services_json(env: Env, node: str, name: str | None = None) -> dict[str, dict]:
    r = cli("--socket", env.lab.state().node(node).socket, "services", "-n", NS,
            *([name] if name else []), "-o", "json")
    assert r.returncode == 0, r.stderr
    return {s["name"]: s for s in json.loads(r.stdout)["services"]}


def nft(env: Env, node: str) -> list[dict]:
    out = subprocess.run(["ip", "netns", "exec", f"{env.lab.name}-{node}", "nft", "-j", "list",
                          "table", "ip", "contiv"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["nftables"]


def nft_summary(objs: list[dict]) -> dict[str, set]:
    """Chains (name, comment, rules), sets and map elements -- not the contents
    of dynamic sets (affinity entries come and go with traffic)."""
    rules: dict[str, list] = {}
    for o in objs:
        if "rule" in o:
            rules.setdefault(o["rule"]["chain"], []).append(json.dumps(o["rule"]["expr"], sort_keys=True))
    out = {"chains": set(), "sets": set(), "elements": set()}
    for o in objs:
        if "chain" in o:
            c = o["chain"]
            out["chains"].add((c["name"], c.get("comment", ""), tuple(rules.get(c["name"], []))))
        for kw in ("set", "map"):
            if kw in o:
                s = o[kw]
                out["sets"].add((kw, s["name"]))
                # (nft 1.0.6 lists a dynamic set's flags as just "timeout")
                if not {"dynamic", "timeout"} & set(s.get("flags", [])):
                    out["elements"] |= {(s["name"], json.dumps(e, sort_keys=True)) for e in s.get("elem", [])}
    return out


def wait_applied(env: Env, revision: int) -> None:
    deadline = time.monotonic() + WAIT
    while min(env.kube.agent_revisions().values()) < revision:
        assert time.monotonic() < deadline, f"agents did not apply revision {revision}"
        time.sleep(0.02)


# --------------------------------------------------------------------------- cluster IP
@pytest.mark.parametrize("client", ["client1", "client2"])
@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_cluster_ip_reaches_every_endpoint_from_both_nodes(env, client, protocol):
    seen = until_all(env, client, "web", {"web-a", "web-b"}, protocol=protocol)
    assert set(seen) == {"web-a", "web-b"}
    # pod to Service: the endpoint sees the client pod itself (no SNAT)
    assert {r.client_seen for rs in seen.values() for r in rs} == {env.pod_ip[client]}
    assert {r.port for rs in seen.values() for r in rs} == {80 if protocol == "TCP" else 53}


@pytest.mark.parametrize("port,protocol", [(80, "TCP"), (53, "UDP"), (8000, "TCP")])
def test_every_port_of_a_multi_port_service(env, port, protocol):
    seen = until_all(env, "client1", "web", {"web-a", "web-b"}, port=port, protocol=protocol)
    assert set(seen) == {"web-a", "web-b"}


def test_port_not_in_the_service_is_not_translated(env):
    # 8080 is the pods' port, not the Service's: nothing at the cluster IP answers it
    r = probe(env, "client1", "web", port=TCP_PORT, timeout=1.0)
    assert not r.connected, r


# --------------------------------------------------------------------------- node ports
@pytest.mark.parametrize("src,node", [("client2", "node1"), ("client1", "node2"),
                                      ("underlay", "node1"), ("underlay", "node2")])
def test_node_port_reaches_every_endpoint(env, src, node):
    seen = until_all(env, src, f"node:{node}:{node_port(env, 'web-np')}", {"web-a", "web-b"})
    assert set(seen) == {"web-a", "web-b"}


@pytest.mark.parametrize("node,local_pod", [("node1", "web-a"), ("node2", "web-b")])
def test_external_traffic_policy_local_keeps_source_and_stays_on_node(env, node, local_pod):
    rs = repeat(env, "underlay", f"node:{node}:{node_port(env, 'web-local')}")
    assert [r.answered_by for r in rs] == [f"{NS}/{local_pod}"] * len(rs)
    assert {r.client_seen for r in rs} == {env.underlay}


def test_external_traffic_policy_local_without_local_endpoint_drops(env):
    np = node_port(env, "only-a-local")
    r = probe(env, "underlay", f"node:node2:{np}", timeout=1.0)
    assert not r.connected and r.error == "timeout", r  # dropped, not rejected
    rs = repeat(env, "underlay", f"node:node1:{np}", n=5)
    assert {r.answered_by for r in rs} == {f"{NS}/web-a"}
    # cluster-IP traffic is not affected by externalTrafficPolicy: both nodes' clients reach web-a
    assert probe(env, "client2", "only-a-local").answered_by == f"{NS}/web-a"


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_cluster_policy_snats_only_when_forwarding_to_another_node(env, node):
    seen = until_all(env, "underlay", f"node:{node}:{node_port(env, 'web-np')}", {"web-a", "web-b"})
    local = "web-a" if node == "node1" else "web-b"
    remote = "web-b" if node == "node1" else "web-a"
    assert {r.client_seen for r in seen[local]} == {env.underlay}
    assert {r.client_seen for r in seen[remote]} == {env.gateway[node]}


# --------------------------------------------------------------------------- affinity
@pytest.mark.parametrize("client", ["client1", "client2"])
def test_session_affinity_sticks_while_plain_service_spreads(env, client):
    sticky = repeat(env, client, "web-aff")
    assert all(r.connected for r in sticky), sticky
    assert len({r.answered_by for r in sticky}) == 1, [r.answered_by for r in sticky]
    # the same client without affinity reaches both
    assert set(until_all(env, client, "web", {"web-a", "web-b"})) == {"web-a", "web-b"}
    # and still sticks afterwards
    assert {r.answered_by for r in repeat(env, client, "web-aff", n=5)} == {sticky[0].answered_by}


# --------------------------------------------------------------------------- no endpoints
@pytest.mark.parametrize("src,dst,port,protocol", [
    ("client1", "empty", None, "TCP"), ("client2", "empty", None, "UDP"),
    ("underlay", "node:node1:NP", None, "TCP"), ("client2", "node:node1:NP", None, "TCP"),
])
def test_service_without_endpoints_rejects(env, src, dst, port, protocol):
    dst = dst.replace("NP", str(node_port(env, "empty")))
    timeout = 5.0
    r = probe(env, src, dst, port, protocol, timeout=timeout)
    assert not r.connected
    # rejected (TCP reset / ICMP unreachable), not dropped: the client
    # learns at once instead of waiting for its timeout
    assert r.error == REJECTED[env.dataplane], r
    assert r.ms < timeout * 1000 / 2, r


# --------------------------------------------------------------------------- hairpin
def test_hairpin_pod_reaches_itself_through_its_service(env):
    seen = until_all(env, "web-a", "web", {"web-a", "web-b"})
    assert set(seen) == {"web-a", "web-b"}
    # to itself: SNATed to its node's gateway (else the reply would not come back
    # through the DNAT); to the other pod: its own address
    assert {r.client_seen for r in seen["web-a"]} == {env.gateway["node1"]}
    assert {r.client_seen for r in seen["web-b"]} == {env.pod_ip["web-a"]}


# --------------------------------------------------------------------------- diagnostics
def test_contivctl_services_reports_frontends_endpoints_and_programmed_state(env):
    for node in ("node1", "node2"):
        svcs = services_json(env, node)
        assert set(svcs) == {"web", "web-np", "web-local", "only-a-local", "web-aff", "empty"}
        for s in svcs.values():
            assert s["dataplane"]["state"] == "programmed", s
            assert s["problems"] == [], s
        web = svcs["web"]
        cip = env.kube.service(f"{NS}/web")["spec"]["clusterIP"]
        assert web["cluster_ip"] == cip and web["type"] == "ClusterIP"
        ports = {p["name"]: p for p in web["ports"]}
        assert set(ports) == {"http", "dns", "alt"}
        assert ports["dns"]["protocol"] == "UDP"
        for name, want_port in (("http", TCP_PORT), ("dns", UDP_PORT), ("alt", TCP_PORT)):
            p = ports[name]
            assert [f["kind"] for f in p["frontends"]] == ["cluster-ip"]
            assert {(e["pod"], e["ip"], e["port"], e["node"], e["local"]) for e in p["endpoints"]} == {
                (f"{NS}/web-a", env.pod_ip["web-a"], want_port, "node1", node == "node1"),
                (f"{NS}/web-b", env.pod_ip["web-b"], want_port, "node2", node == "node2")}
        # the data plane holds the cluster IP's frontend, in its own words
        assert any(e.startswith(FRONTEND[env.dataplane].format(ip=cip, proto="tcp", port=80))
                   for e in web["dataplane"]["elements"]), web["dataplane"]["elements"]
        np = svcs["web-np"]["ports"][0]["frontends"]
        assert {(f["kind"], f["port"]) for f in np} == {
            ("cluster-ip", 80), ("node-port", node_port(env, "web-np"))}
        empty = svcs["empty"]
        assert all(p["endpoints"] == [] for p in empty["ports"])
        ecip = env.kube.service(f"{NS}/empty")["spec"]["clusterIP"]
        if env.dataplane == "linux":
            assert {e.split(" -> ")[0] for e in empty["dataplane"]["elements"]} >= {
                f"{ecip} . tcp . 80", f"{ecip} . udp . 53"}
        else:  # VPP rejects a port without endpoints through the Service CIDR's unreach route
            assert any("rejected" in e for e in empty["dataplane"]["elements"]) or \
                empty["dataplane"]["values"] == 0, empty["dataplane"]
    # one Service by name, and the table rendering of the same data
    assert set(services_json(env, "node1", "web-aff")) == {"web-aff"}
    r = cli("--socket", env.lab.state().node("node1").socket, "services", "-n", NS)
    assert r.returncode == 0 and f"{NS}/web-aff" in r.stdout and "programmed" in r.stdout


# --------------------------------------------------------------------------- scaling
def test_scaling_endpoints_up_and_down(env):
    extra = valid(pod("web-c", "node1", {"app": "web", "pin": "c"}))
    env.kube.apply([extra], timeout=WAIT)
    try:
        seen = until_all(env, "client2", "web", {"web-a", "web-b", "web-c"}, tries=60)
        assert set(seen) == {"web-a", "web-b", "web-c"}
        assert len(services_json(env, "node2", "web")["web"]["ports"][0]["endpoints"]) == 3
    finally:
        env.kube.delete([extra], timeout=WAIT)
    answered = {r.answered_by for r in repeat(env, "client2", "web", n=30)}
    assert f"{NS}/web-c" not in answered
    assert answered == {f"{NS}/web-a", f"{NS}/web-b"}
    assert {e["pod"] for e in services_json(env, "node2", "web")["web"]["ports"][0]["endpoints"]} == \
        {f"{NS}/web-a", f"{NS}/web-b"}


# --------------------------------------------------------------------------- deletion
def vpp_nat(env: Env, node: str) -> set[tuple]:
    """VPP's translations on ``node`` (vip, protocol, endpoints), as it dumps them."""
    return {(t["vip"], t["protocol"], tuple(sorted(t["paths"])))
            for t in env.lab.client(node).dataplane_dump("nat").items}


def dataplane_summary(env: Env, node: str):
    return nft_summary(nft(env, node)) if env.dataplane == "linux" else vpp_nat(env, node)


def test_deleting_a_service_leaves_no_dataplane_state(env):
    gone = valid(service("gone", {
        "type": "NodePort", "sessionAffinity": "ClientIP", "selector": WEB, "ports": [
            HTTP, {"name": "other", "port": 81, "targetPort": "missing"}]}))
    before = {n: dataplane_summary(env, n) for n in ("node1", "node2")}
    env.kube.apply([gone], timeout=WAIT)
    try:
        cip = env.kube.service(f"{NS}/gone")["spec"]["clusterIP"]
        # in use (affinity: one endpoint, and an entry in its dynamic set)
        assert probe(env, "client1", "gone").connected
        nps = [str(p["nodePort"]) for p in env.kube.service(f"{NS}/gone")["spec"]["ports"]]
        for node in ("node1", "node2"):
            if env.dataplane == "vpp":
                vips = {vip for vip, _, _ in vpp_nat(env, node) - before[node]}
                assert f"{cip}:80" in vips, vips
                for np in nps:
                    assert any(v.endswith(f":{np}") for v in vips), (np, vips)
                continue
            during = nft_summary(nft(env, node))
            # the Service is in the table: its cluster IP on both ports (with and
            # without endpoints) and its node ports (however the renderer keys them)
            added = " ".join(sorted(e[1] for e in during["elements"] - before[node]["elements"]))
            for port in ("80", "81"):
                assert f'"{cip}", "tcp", {port}' in added, (port, added[:2000])
            for np in nps:
                assert f'"tcp", {np}' in added, (np, added[:2000])
    finally:
        env.kube.delete([gone], timeout=WAIT)
    for node in ("node1", "node2"):
        assert dataplane_summary(env, node) == before[node]
        if env.dataplane == "linux":
            assert f"{NS}/gone" not in json.dumps(nft(env, node))


# --------------------------------------------------------------------------- invalid input
def test_endpoint_of_unknown_pod_is_reported_and_everything_else_works(env):
    partial = valid(service("partial", {"ports": [{"name": "http", "port": 80,
                                                              "targetPort": TCP_PORT}]}))
    env.kube.apply([partial], timeout=WAIT)
    key = keys.k8s_key("endpointslice", NS, "partial-manual")
    slice_obj = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "partial-manual", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "partial"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": TCP_PORT, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [env.pod_ip["web-a"]], "conditions": {"ready": True}, "nodeName": "node1",
             "targetRef": {"kind": "Pod", "namespace": NS, "name": "web-a"}},
            {"addresses": ["10.1.250.250"], "conditions": {"ready": True}, "nodeName": "node2",
             "targetRef": {"kind": "Pod", "namespace": NS, "name": "ghost"}}]}
    try:
        wait_applied(env, env.kube.store.put(key, json.dumps(slice_obj).encode()))
        for node in ("node1", "node2"):
            s = services_json(env, node)
            p = s["partial"]
            assert len(p["problems"]) == 1 and f"unknown pod {NS}/ghost" in p["problems"][0], p
            assert [e["pod"] for e in p["ports"][0]["endpoints"]] == [f"{NS}/web-a"]
            assert p["dataplane"]["state"] == "programmed"
            assert all(x["problems"] == [] for n, x in s.items() if n != "partial")
        # the good endpoint carries all the traffic, never the ghost address
        for client in ("client1", "client2"):
            assert {r.answered_by for r in repeat(env, client, "partial", n=8)} == {f"{NS}/web-a"}
        # other Services are unaffected
        assert set(until_all(env, "client2", "web", {"web-a", "web-b"})) == {"web-a", "web-b"}
    finally:
        kv = env.kube.store.get(key)
        if kv is not None:
            env.kube.store.delete(key)
        env.kube.delete([partial], timeout=WAIT)
    assert "partial" not in services_json(env, "node1")


def test_relabelled_slice_moves_its_endpoints_to_the_other_service(env):
    """A slice's service-name label says which Service it feeds: when it changes,
    the old Service loses those endpoints (rejects) and the new one gains them."""
    svcs = [valid(service(n, {"ports": [{"name": "http", "port": 80, "targetPort": TCP_PORT}]}))
            for n in ("from-svc", "to-svc")]
    env.kube.apply(svcs, timeout=WAIT)
    key = keys.k8s_key("endpointslice", NS, "moving")

    def put_slice(owner: str) -> None:
        wait_applied(env, env.kube.store.put(key, json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "moving", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": owner}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": TCP_PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [env.pod_ip["web-b"]], "nodeName": "node2",
                           "targetRef": {"kind": "Pod", "namespace": NS, "name": "web-b"}}]}).encode()))
    try:
        put_slice("from-svc")
        assert probe(env, "client1", "from-svc").answered_by == f"{NS}/web-b"
        assert probe(env, "client1", "to-svc").error == REJECTED[env.dataplane]
        put_slice("to-svc")
        assert probe(env, "client1", "to-svc").answered_by == f"{NS}/web-b"
        assert probe(env, "client1", "from-svc").error == REJECTED[env.dataplane]
        for node in ("node1", "node2"):
            s = services_json(env, node)
            assert s["from-svc"]["ports"][0]["endpoints"] == []
            assert [e["pod"] for e in s["to-svc"]["ports"][0]["endpoints"]] == [f"{NS}/web-b"]
    finally:
        if env.kube.store.get(key) is not None:
            env.kube.store.delete(key)
        env.kube.delete(svcs, timeout=WAIT)


# --------------------------------------------------------------------------- resync
@pytest.mark.parametrize("node", ["node1", "node2"])
def test_resync_after_all_this_finds_no_drift(env, node):
    """What the agent programmed is what it reads back: a resync has nothing to do
    (no chain rewritten because its comment lost the digest, no element re-added)."""
    rec = env.lab.client(node).resync()
    assert rec.ok, rec
    assert rec.operations == [], rec.operations[:5]
