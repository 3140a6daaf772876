"""End to end: NetworkPolicy on a two-node lab, on the model of the upstream
Kubernetes e2e netpol suite (test/e2e/network/netpol).

Namespaces x, y, z (labels ``ns=<name>``), pods a, b, c in each (labels
``pod=<name>``), pinned alternately to node1/node2 so that same-node and
cross-node pairs both exist. Every pod serves 80 and 81 over TCP and UDP on
ports named ``serve-80-tcp``, ``serve-80-udp``, ``serve-81-tcp``,
``serve-81-udp``.

A scenario applies policies and, for each relevant port/protocol, probes the
full 9x9 matrix with real connections (``lab.ops.matrix``) and compares it with
an expectation written independently in the scenario as a rule over (source,
destination) -- e.g. "everything allowed except ingress to x/a from outside x".
As upstream does (``AllowLoopback``), a pod reaching itself is always allowed:
that traffic never leaves the pod's namespace. A cell that disagrees is probed
once more before it counts (upstream retries probes too); the failure message
shows both matrices. ``policies explain`` (the agent API) must then agree with
every probe, and name a policy of the scenario whenever it says "denied".

After each scenario its policies are deleted and the world relabelled as it
was; the TCP/80 and UDP/80 matrices must be all-true again (checked in the
fixture's teardown, so a failure there is reported against that scenario).
"""
from __future__ import annotations

import copy
import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from agent.model import keys
from agent.model.api import Explanation
from lab import objects, ops
from lab.kube import Kube
from tests.conftest import unique_lab_name
from tests.helpers import lab_modes, split_mode

pytestmark = [pytest.mark.root, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PROBE_TIMEOUT = 1.0
WAIT = 60.0  # liveness bound for agents to apply a change, not a performance claim


# ------------------------------------------------------------------ the world
@dataclass(frozen=True)
class Pod:
    ns: str
    name: str
    node: str
    ip: str = ""

    @property
    def ref(self) -> str:
        return f"{self.ns}/{self.name}"


def node_of(ns: str, name: str) -> str:
    return "node1" if (NAMESPACES.index(ns) + PODS.index(name)) % 2 == 0 else "node2"


def namespace_obj(ns: str, extra: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"ns": ns, **(extra or {})}}}


def pod_obj(ns: str, name: str, extra: dict | None = None) -> dict:
    ports = [{"name": f"serve-{n}-{p.lower()}", "containerPort": n, "protocol": p}
             for n in (80, 81) for p in ("TCP", "UDP")]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"pod": name, **(extra or {})}},
            "spec": {"nodeName": node_of(ns, name),
                     "containers": [{"name": "main", "image": "lab", "ports": ports}]}}


def world_objects() -> list[dict]:
    return [namespace_obj(ns) for ns in NAMESPACES] + \
        [pod_obj(ns, p) for ns in NAMESPACES for p in PODS]


def netpol(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def valid(objs: list[dict]) -> list[dict]:
    """Validated and defaulted as the API server would (on copies)."""
    return [objects.validate(copy.deepcopy(o)) for o in objs]


class World:
    def __init__(self, lab) -> None:
        self.lab = lab
        self.kube = Kube(lab)
        self.kube.apply(valid(world_objects()), timeout=WAIT)
        self.pods = []
        for p in sorted(self.kube.list("pod"), key=lambda p: (p["metadata"]["namespace"],
                                                               p["metadata"]["name"])):
            md = p["metadata"]
            self.pods.append(Pod(md["namespace"], md["name"], p["spec"]["nodeName"],
                                 p["status"]["podIP"]))
        self.by_ref = {p.ref: p for p in self.pods}
        self.agent = lab.client("node1")
        self.applied: list[dict] = []

    # -------------------------------------------------------------- changes
    def apply(self, *objs: dict) -> None:
        self.kube.apply(valid(list(objs)), timeout=WAIT)
        self.applied += [o for o in objs if o["kind"] == "NetworkPolicy"]

    def reset(self) -> None:
        """Delete every policy, put labels back as the world defines them."""
        pols = self.kube.list("networkpolicy")
        if pols:
            self.kube.delete(pols, timeout=WAIT)
        self.kube.apply(valid(world_objects()), timeout=WAIT)
        self.applied = []

    def policy_refs(self) -> list[str]:
        return [f"{p['metadata']['namespace']}/{p['metadata']['name']}"
                for p in self.kube.list("networkpolicy")]

    # -------------------------------------------------------------- checks
    def expected(self, rule: Callable[[Pod, Pod], bool]) -> dict[str, dict[str, bool]]:
        return {s.ref: {d.ref: True if s == d else bool(rule(s, d)) for d in self.pods}
                for s in self.pods}

    def explain(self, src: str, dst: str, port: int, protocol: str) -> Explanation:
        return self.agent.explain(src, dst, port, protocol)

    def check(self, port: int, protocol: str, rule: Callable[[Pod, Pod], bool]) -> None:
        """Probe the matrix, compare with ``rule``; explain must agree with every probe."""
        want = self.expected(rule)
        got = ops.matrix(self.kube, port, protocol, list(NAMESPACES), PROBE_TIMEOUT)
        assert set(got) == set(want), f"the matrix probed {sorted(got)}"
        first = copy.deepcopy(got)
        for s, row in want.items():
            for d, ok in row.items():
                if got[s][d] != ok:  # once more before it counts
                    got[s][d] = ops.run_probe(self.kube, s, d, port, protocol, PROBE_TIMEOUT).connected
        bad = [(s, d) for s in want for d in want[s] if got[s][d] != want[s][d]]
        assert not bad, (f"{protocol}/{port} with {self.policy_refs()}: "
                         f"{len(bad)} cell(s) differ: {bad[:12]}\n"
                         f"expected:\n{render(want)}\nprobed (first pass):\n{render(first)}")
        policies = self.policy_refs()
        disagree = []
        for s in want:
            for d in want[s]:
                r = self.explain(s, d, port, protocol)
                if r.allowed != got[s][d]:
                    disagree.append(f"{s}->{d}: probe {'connected' if got[s][d] else 'blocked'}, "
                                    f"explain: {r.verdict}")
                elif not r.allowed and not any(p in r.verdict for p in policies):
                    disagree.append(f"{s}->{d}: the verdict names no policy: {r.verdict}")
        assert not disagree, f"{protocol}/{port}: explain disagrees:\n" + "\n".join(disagree[:20])

    def all_open(self) -> None:
        for proto in ("TCP", "UDP"):
            self.check(80, proto, lambda s, d: True)


def render(m: dict[str, dict[str, bool]]) -> str:
    cols = sorted(next(iter(m.values())))
    lines = ["      " + " ".join(c.replace("/", "") for c in cols)]
    for s in sorted(m):
        lines.append(f"{s:5} " + " ".join(" . " if m[s][d] else " X " for d in cols))
    return "\n".join(lines)


@pytest.fixture(scope="module", params=lab_modes())
def world(request):
    """The world on a two-node lab of each data plane (and on Linux through
    the lab's Kubernetes API and the reflector)."""
    from lab.cluster import Lab  # noqa: PLC0415
    lab = Lab(unique_lab_name())
    w = None
    dataplane, api = split_mode(request.param)
    try:
        lab.up(nodes=2, dataplane=dataplane)
        if api:
            from lab.kubecontrol import start  # noqa: PLC0415
            start(lab)
        w = World(lab)
        yield w
    finally:
        if w is not None:
            w.kube.close()
        lab.down()


@pytest.fixture
def w(world):
    """One scenario: afterwards its policies are gone and everything is open again."""
    yield world
    world.reset()
    world.all_open()


# ------------------------------------------------------------------ scenarios
def test_world_spans_both_nodes_and_starts_open(w):
    nodes = {p.node for p in w.pods}
    assert nodes == {"node1", "node2"}
    pairs = [(s, d) for s in w.pods for d in w.pods if s != d]
    assert any(s.node == d.node for s, d in pairs) and any(s.node != d.node for s, d in pairs)
    for port in (80, 81):
        for proto in ("TCP", "UDP"):
            w.check(port, proto, lambda s, d: True)


def test_default_deny_ingress_one_namespace(w):
    w.apply(netpol("x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    # everything allowed except ingress to x (from anywhere, x included)
    for proto in ("TCP", "UDP"):
        w.check(80, proto, lambda s, d: d.ns != "x")
    # the CLI gives the verdict an exit status: 1 denied, 0 allowed
    sock = w.lab.state().node("node1").socket
    cli = [sys.executable, "-m", "contivctl.main", "--socket", sock, "policies", "explain"]
    denied = subprocess.run(cli + ["y/a", "x/b", "--port", "80"], capture_output=True, text=True,
                            cwd=REPO)
    assert denied.returncode == 1 and "x/deny-ingress" in denied.stdout, denied
    allowed = subprocess.run(cli + ["x/b", "y/a", "--port", "80", "--protocol", "UDP"],
                             capture_output=True, text=True, cwd=REPO)
    assert allowed.returncode == 0, allowed


def test_default_deny_egress(w):
    w.apply(netpol("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}))
    # everything allowed except egress from x (to anywhere, x included)
    for proto in ("TCP", "UDP"):
        w.check(80, proto, lambda s, d: s.ns != "x")


def test_allow_from_a_namespace(w):
    w.apply(netpol("x", "allow-from-y", {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
    # ingress to x only from y -- not even from x itself
    w.check(80, "TCP", lambda s, d: d.ns != "x" or s.ns == "y")


def test_allow_from_a_pod_in_a_namespace(w):
    w.apply(netpol("x", "allow-y-b", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                               "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    # both selectors in one peer: only y/b reaches x/a
    w.check(80, "TCP", lambda s, d: d.ref != "x/a" or s.ref == "y/b")


def test_allow_from_other_namespaces_by_expression(w):
    w.apply(netpol("x", "allow-others", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn",
                                                        "values": ["x"]}]},
            "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn",
                                                  "values": ["c"]}]}}]}]}))
    # x/a reachable from a and b of y and z only
    w.check(80, "TCP", lambda s, d: d.ref != "x/a" or (s.ns != "x" and s.name != "c"))


def test_named_port_ingress(w):
    w.apply(netpol("x", "allow-81-tcp", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}))
    w.check(81, "TCP", lambda s, d: True)
    w.check(80, "TCP", lambda s, d: d.ref != "x/a")
    # the name is a TCP port's: UDP 81 is not opened
    w.check(81, "UDP", lambda s, d: d.ref != "x/a")


def test_named_port_egress(w):
    w.apply(netpol("y", "a-to-z-udp", {
        "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
                    "ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}))
    w.check(80, "UDP", lambda s, d: s.ref != "y/a" or d.ns == "z")
    w.check(80, "TCP", lambda s, d: s.ref != "y/a")


def test_port_ranges(w):
    w.apply(netpol("x", "a-80-81", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                     "ports": [{"port": 80, "endPort": 81}]}]}),
            netpol("x", "b-81-81", {
                "podSelector": {"matchLabels": {"pod": "b"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                             "ports": [{"port": 81, "endPort": 81}]}]}))
    w.check(80, "TCP", lambda s, d: d.ref not in ("x/a", "x/b") or (d.ref == "x/a" and s.ns == "y"))
    w.check(81, "TCP", lambda s, d: d.ref not in ("x/a", "x/b") or s.ns == "y")
    # a range is of its protocol only (TCP by default)
    w.check(81, "UDP", lambda s, d: d.ref not in ("x/a", "x/b"))


def test_ipblock_with_except(w):
    xa = w.by_ref["x/a"]
    w.apply(netpol("y", "from-pods-but-x-a", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": w.lab.state().pod_cidr,
                                           "except": [f"{xa.ip}/32"]}}]}]}))
    w.check(80, "TCP", lambda s, d: d.ref != "y/a" or s.ref != "x/a")
    # and for egress (upstream: "should enforce except clause while egress access to
    # server in CIDR block"): z/c may reach the pod CIDR except y/b
    yb = w.by_ref["y/b"]
    w.apply(netpol("z", "c-to-pods-but-y-b", {
        "podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": w.lab.state().pod_cidr,
                                        "except": [f"{yb.ip}/32"]}}]}]}))
    w.check(80, "TCP", lambda s, d: (d.ref != "y/a" or s.ref != "x/a")
            and (s.ref != "z/c" or d.ref != "y/b"))


def test_ipblock_with_overlapping_excepts(w):
    # the node's /24 contains the /32 given before it: all of node1's pods are out
    xa = w.by_ref["x/a"]
    subnet = ipaddress.ip_network(f"{xa.ip}/24", strict=False)
    nodes = w.agent.nodes().nodes
    assert str(subnet) in {s for n in nodes if n.name == xa.node for s in n.pod_subnets}
    w.apply(netpol("y", "from-node2-pods", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": w.lab.state().pod_cidr,
                                           "except": [f"{xa.ip}/32", str(subnet)]}}]}]}))
    w.check(80, "TCP", lambda s, d: d.ref != "y/a" or s.node != xa.node)


def test_egress_to_specific_pods(w):
    w.apply(netpol("x", "a-egress", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                           {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                            "podSelector": {"matchLabels": {"pod": "c"}}}]}]}))
    # egress rules without policyTypes: Egress *and* Ingress, so nobody reaches x/a
    w.check(80, "TCP", lambda s, d: (s.ref != "x/a" or d.ref in ("x/b", "y/c"))
            and d.ref != "x/a")


def test_several_policies_are_additive(w):
    w.apply(netpol("x", "default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            netpol("x", "a-from-y", {
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
            netpol("x", "b-from-z-a-on-81", {
                "podSelector": {"matchLabels": {"pod": "b"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}},
                                       "podSelector": {"matchLabels": {"pod": "a"}}}],
                             "ports": [{"port": 81}]}]}))
    w.check(80, "TCP", lambda s, d: d.ns != "x" or (d.ref == "x/a" and s.ns == "y"))
    w.check(81, "TCP", lambda s, d: d.ns != "x" or (d.ref == "x/a" and s.ns == "y")
            or (d.ref == "x/b" and s.ref == "z/a"))


def test_policy_update_takes_effect(w):
    def allow_from(ns):
        return netpol("x", "allow-a", {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": ns}}}]}]})
    w.apply(allow_from("y"))
    w.check(80, "TCP", lambda s, d: d.ref != "x/a" or s.ns == "y")
    w.apply(allow_from("z"))  # same name, changed rule
    w.check(80, "TCP", lambda s, d: d.ref != "x/a" or s.ns == "z")


def test_relabelling_a_pod(w):
    w.apply(netpol("x", "a-from-clients", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {},
                               "podSelector": {"matchLabels": {"role": "client"}}}]}]}),
            netpol("y", "isolate-marked", {
                "podSelector": {"matchLabels": {"isolated": "yes"}}, "policyTypes": ["Ingress"]}))
    w.check(80, "TCP", lambda s, d: d.ref != "x/a")
    # z/b enters the peer set of x's policy; y/c enters the selection of y's
    w.apply(pod_obj("z", "b", {"role": "client"}), pod_obj("y", "c", {"isolated": "yes"}))
    w.check(80, "TCP", lambda s, d: (d.ref != "x/a" or s.ref == "z/b") and d.ref != "y/c")
    # and both leave again
    w.apply(pod_obj("z", "b"), pod_obj("y", "c"))
    w.check(80, "TCP", lambda s, d: d.ref != "x/a")


def test_relabelling_a_namespace(w):
    w.apply(netpol("x", "a-from-blue", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}))
    w.check(80, "TCP", lambda s, d: d.ref != "x/a")
    w.apply(namespace_obj("z", {"team": "blue"}))
    w.check(80, "TCP", lambda s, d: d.ref != "x/a" or s.ns == "z")
    w.apply(namespace_obj("z"), namespace_obj("y", {"team": "blue"}))
    w.check(80, "TCP", lambda s, d: d.ref != "x/a" or s.ns == "y")


# ------------------------------------------------------------------ bad input
BAD_POLICIES = [
    ("bad-operator",
     {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [
         {"key": "pod", "operator": "Equals", "values": ["a"]}]}}]}]},
     "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator"),
    ("bad-cidr",
     {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/33"}}]}]},
     "spec.ingress[0].from[0].ipBlock.cidr"),
    ("bad-except",
     {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16",
                                                         "except": ["10.2.0.0/24"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]"),
    ("named-range",
     {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-80-tcp", "endPort": 81}]}]},
     "spec.ingress[0].ports[0].endPort"),
]


@pytest.mark.parametrize("name,spec,field", BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_lab_apply_refuses_invalid_policy(w, tmp_path, name, spec, field):
    f = tmp_path / "bad.yaml"
    f.write_text(json.dumps(netpol("x", name, spec)))
    p = subprocess.run([sys.executable, "-m", "contivctl.main", "lab", "apply", "--name", w.lab.name,
                        "-f", str(f)], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2, p
    assert f"NetworkPolicy x/{name}" in p.stderr and field in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2, p.stderr  # a message, not a traceback
    assert w.kube.get("networkpolicy", "x", name) is None


def _agent_log(w) -> str:
    p = subprocess.run([sys.executable, "-m", "contivctl.main", "lab", "logs", "node1", "--tail", "0",
                        "--name", w.lab.name], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p
    return p.stdout


def test_policy_that_bypassed_validation_fails_closed(w):
    # written straight into etcd, as a reflector of a lax API server might (or, with the lab's
    # Kubernetes API, through that API: it validates nothing)
    bad = netpol("x", "bad-peer", {
        "podSelector": {"matchLabels": {"pod": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]},  # not applied either
                    {"from": [{"podSelector": {"matchExpressions": [
                        {"key": "pod", "operator": "Equals", "values": ["c"]}]}}]}]})
    if w.kube.api is not None:  # a lab with a Kubernetes API: through it (it checks nothing), then the reflector
        w.kube.apply([bad], timeout=WAIT)
    else:
        bad["metadata"].update(uid="0-bad", creationTimestamp="2024-01-01T00:00:00Z")
        w.kube.revision = w.kube.store.put(keys.k8s_key("NetworkPolicy", "x", "bad-peer"),
                                           json.dumps(bad).encode())
        w.kube.wait_agents(WAIT)
    w.apply(netpol("x", "c-from-y", {
        "podSelector": {"matchLabels": {"pod": "c"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
    # x/b isolated by the invalid policy, none of its rules opens anything;
    # the valid policy next to it keeps working
    rule = lambda s, d: d.ref != "x/b" and (d.ref != "x/c" or s.ns == "y")  # noqa: E731
    w.check(80, "TCP", rule)
    r = w.explain("x/a", "x/b", 80, "TCP")
    assert not r.allowed and "x/bad-peer" in r.verdict, r
    eff = w.agent.policies(namespace="x", pod="b").pods[0]
    assert "x/bad-peer" in eff.ingress.invalid, eff
    # reported once, by name -- not again when a change re-evaluates every policy
    w.apply(namespace_obj("y", {"extra": "relist-policies"}))
    w.agent.resync()
    w.check(80, "TCP", rule)
    log = _agent_log(w)
    lines = [ln for ln in log.splitlines() if "x/bad-peer" in ln and "invalid" in ln]
    assert len(lines) == 1, lines
    assert "Equals" in lines[0], lines[0]
