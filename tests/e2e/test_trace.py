"""End to end: ``contivctl trace`` on a two-node lab, through the CLI as a user
runs it, with real probes; on each data plane.

The lab: ``client``, ``other`` and ``web-2`` on node1, ``web-1`` on node2;
Service ``web`` (both web pods) and ``remote`` (web-1 only) on port 80 ->
8080; the policy ``web-from-client`` isolates the web pods for ingress and
admits TCP 8080 from ``app=client`` only. Every verdict is checked against
``policies explain`` for the same flow.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import pytest

from tests.conftest import IS_ROOT
from tests.e2e.labtools import assert_one_line_error, cli, kube_lab
from tests.helpers import dataplanes

pytestmark = [pytest.mark.root, pytest.mark.e2e]

NS = "shop"
PORT = 8080
WAIT = 60.0  # liveness bound for agents to apply, not a performance claim


def pod(name: str, node: str, labels: dict, ports=()) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "lab", "ports": list(ports)}]}}


def service(name: str, selector: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


HTTP = [{"name": "http", "containerPort": PORT}]
MANIFEST = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    pod("web-1", "node2", {"app": "web", "instance": "web-1"}, HTTP),
    pod("web-2", "node1", {"app": "web", "instance": "web-2"}, HTTP),
    pod("client", "node1", {"app": "client"}),
    pod("other", "node1", {"app": "other"}),
    service("web", {"app": "web"}),
    service("remote", {"instance": "web-1"}),
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "web-from-client", "namespace": NS},
     "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                           "ports": [{"port": PORT}]}]}},
]


@dataclass
class Env:
    lab: object
    dataplane: str

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return cli(*args, "--lab", self.lab.name)

    def trace(self, *args: str) -> tuple[int, dict]:
        r = self.cli("trace", *args, "-o", "json")
        assert r.returncode in (0, 1), r.stderr
        return r.returncode, json.loads(r.stdout)


@pytest.fixture(scope="module", params=dataplanes())
def env(request):
    if not IS_ROOT:
        pytest.skip("needs root: creates network namespaces and links")
    with kube_lab(MANIFEST, request.param, timeout=WAIT) as (lab, _):
        yield Env(lab, request.param)


def hops(data: dict, direction: str = "request", kind: str | None = None) -> list[dict]:
    return [h for h in data["path"] if h["direction"] == direction and (kind is None or h["kind"] == kind)]


def explain_allows(env: Env, src: str, dst: str, port: int, protocol: str = "TCP") -> bool:
    r = env.cli("policies", "explain", src, dst, "--port", str(port), "--protocol", protocol)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def test_an_allowed_cross_node_probe_shows_both_nodes_the_tunnel_and_the_policy(env):
    status, data = env.trace("pod-to-pod", f"{NS}/client", f"{NS}/web-1", "--port", str(PORT))
    assert status == 0 and data["verdict"] == "delivered", data
    assert data["probe"]["answered"] and data["nodes"] == ["node1", "node2"]
    req = hops(data)
    assert [h["node"] for h in req] == sorted(h["node"] for h in req)  # node1's hops, then node2's
    assert req[0]["kind"] == "in" and req[0]["label"] == f"from pod {NS}/client"
    (tunnel,) = [h for h in req if h["kind"] == "tunnel"]
    assert tunnel["node"] == "node1" and "tunnel to node node2" in tunnel["label"]
    allow = [h for h in hops(data, kind="policy") if h["node"] == "node2"]
    assert any("allowed by NetworkPolicy shop/web-from-client" in h["label"] for h in allow), allow
    assert req[-1]["kind"] == "deliver" and req[-1]["label"] == f"delivered to pod {NS}/web-1"
    assert hops(data, "reply")[-1]["label"] == f"delivered to pod {NS}/client"
    assert data["explain"]["allowed"] is True
    assert explain_allows(env, f"{NS}/client", f"{NS}/web-1", PORT)


def test_a_blocked_probe_names_the_isolation_and_the_policy_set(env):
    status, data = env.trace("pod-to-pod", f"{NS}/other", f"{NS}/web-1", "--port", str(PORT))
    assert status == 1 and data["verdict"] == "dropped", data
    assert not data["probe"]["answered"]
    (deny,) = [h for h in hops(data, kind="policy") if h["verdict"] == "drop"]
    assert deny["node"] == "node2" and deny["side"] == "ingress"
    assert deny["label"].startswith(f"denied: {NS}/web-1 is isolated for ingress by policy shop/web-from-client")
    assert "node2" in data["reason"] and "shop/web-from-client" in data["reason"]
    assert not hops(data, "reply")
    assert data["explain"]["allowed"] is False
    assert not explain_allows(env, f"{NS}/other", f"{NS}/web-1", PORT)
    tree = env.cli("trace", "pod-to-pod", f"{NS}/other", f"{NS}/web-1", "--port", str(PORT))
    assert tree.returncode == 1 and "dropped" in tree.stdout.splitlines()[0]
    assert "isolated for ingress" in tree.stdout


def test_a_service_probe_shows_the_translation_and_the_backend_pod(env):
    status, data = env.trace("pod-to-service", f"{NS}/client", f"{NS}/remote")
    assert status == 0 and data["verdict"] == "delivered", data
    (svc,) = hops(data, kind="service")
    assert svc["node"] == "node1"
    assert svc["label"].startswith(f"Service {NS}/remote ") and f"pod {NS}/web-1" in svc["label"], svc
    assert hops(data, kind="tunnel") and hops(data)[-1]["label"] == f"delivered to pod {NS}/web-1"
    # the balanced Service: whichever backend was chosen is the pod the probe reached
    status, data = env.trace("pod-to-service", f"{NS}/client", f"{NS}/web", "--port", "80")
    assert status == 0, data
    (svc,) = hops(data, kind="service")
    chosen = next(p for p in (f"{NS}/web-1", f"{NS}/web-2") if f"pod {p} " in svc["label"])
    assert hops(data)[-1]["label"] == f"delivered to pod {chosen}"
    assert bool(hops(data, kind="tunnel")) == chosen.endswith("web-1")


def test_a_same_node_probe_shows_no_tunnel(env):
    status, data = env.trace("pod-to-pod", f"{NS}/client", f"{NS}/web-2", "--port", str(PORT))
    assert status == 0 and data["nodes"] == ["node1"], data
    assert not [h for h in data["path"] if h["kind"] == "tunnel"]
    assert hops(data)[-1]["label"] == f"delivered to pod {NS}/web-2"


def test_an_icmp_probe_to_an_isolated_pod_is_dropped_with_the_reason(env):
    status, data = env.trace("pod-to-pod", f"{NS}/client", f"{NS}/web-1", "--protocol", "icmp")
    assert status == 1 and data["verdict"] == "dropped", data
    assert "no rule admits ICMP from shop/client" in data["reason"]
    status, data = env.trace("pod-to-pod", f"{NS}/web-1", f"{NS}/client", "--protocol", "ICMP")
    assert status == 0 and data["probe"]["answered"], data  # client is not isolated


def test_a_node_whose_agent_is_stopped_is_named_and_the_rest_still_traced(env):
    env.lab.stop_agent("node2")
    try:
        status, data = env.trace("pod-to-pod", f"{NS}/client", f"{NS}/web-1", "--port", str(PORT))
        # the packet still crosses node2's data plane; the path stops where node1 last saw it
        assert status == 1 and data["verdict"] == "lost", data
        assert [u["node"] for u in data["unreached"]] == ["node2"]
        assert data["nodes"] == ["node1"] and hops(data, kind="tunnel")
        assert "node1" in data["reason"]
        # the source's own node cannot be left out: a one-line error, status 4
        r = env.cli("trace", "pod-to-pod", f"{NS}/web-1", f"{NS}/client", "--protocol", "ICMP")
        assert_one_line_error(r, 4, "node2", f"{NS}/web-1")
    finally:
        env.lab.start_agent("node2")
        env.lab.wait_ready("node2", WAIT)


@pytest.mark.parametrize("args,status,needles", [
    (["pod-to-pod", f"{NS}/clinet", f"{NS}/web-1", "--port", "80"], 3, ["no pod shop/clinet", "shop/client"]),
    (["pod-to-pod", f"{NS}/client", f"{NS}/web-1"], 2, ["--port"]),
    (["pod-to-pod", "client", f"{NS}/web-1", "--port", "80"], 2, ["NAMESPACE/NAME"]),
    (["pod-to-pod", f"{NS}/client", f"{NS}/web-1", "--port", "80", "--protocol", "sctp"], 2,
     ["'sctp' is not TCP, UDP or ICMP"]),
    (["pod-to-service", f"{NS}/client", f"{NS}/nope"], 3, ["no Service shop/nope"]),
    (["pod-to-service", f"{NS}/client", f"{NS}/web", "--port", "81"], 2, ["has no port 81", "80/TCP"]),
])
def test_bad_input_is_one_line_with_a_documented_status(env, args, status, needles):
    assert_one_line_error(env.cli("trace", *args), status, *needles)


def test_a_lab_that_does_not_exist_is_one_line():
    r = cli("trace", "pod-to-pod", f"{NS}/a", f"{NS}/b", "--port", "80", "--lab", "nolabx")
    assert_one_line_error(r, 3, "nolabx")
