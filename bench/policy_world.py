"""The cluster bench/policy_scale.py builds: pods, namespaces and policies.

Namespaces ``perf`` (a client and two servers, the measured pods) and
``scale`` (``--pods`` pods spread over two nodes, labelled app/group/role);
:func:`policy` writes the i-th of ``--policies`` policies, each selecting one
scale pod, with peers by pod selector, namespace selector, expressions and
ipBlock, ports by number, name and range -- none selects the perf pods.
"""
from __future__ import annotations

import json

from lab import objects

NODES = ("node1", "node2")


def namespace(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(ns: str, name: str, node: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "lab", "ports": [
                {"name": "http", "containerPort": 8080}]}]}}


def scale_labels(i: int) -> dict:
    return {"app": f"w{i}", "group": f"g{i % 10}", "role": f"r{i % 25}"}


def world(n_pods: int) -> list[dict]:
    objs = [namespace("perf", {"team": "perf"}), namespace("scale", {"team": "scale"}),
            pod("perf", "client", "node1", {"app": "client", "role": "client"}),
            pod("perf", "server", "node2", {"app": "server"}),
            pod("perf", "server-local", "node1", {"app": "server"})]
    objs += [pod("scale", f"w{i}", NODES[i % 2], scale_labels(i)) for i in range(n_pods)]
    return objs


def policy(i: int, n_pods: int, pod_cidr: str) -> dict:
    """Selects one scale pod (app=w<i % pods>); two ingress rules, one egress rule."""
    base = pod_cidr.split("/")[0].rsplit(".", 2)[0]  # "10.1"
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"p-{i:05d}", "namespace": "scale"},
            "spec": {
                "podSelector": {"matchLabels": {"app": f"w{i % n_pods}"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"group": f"g{(i + 1) % 10}"}}},
                              {"podSelector": {"matchLabels": {"role": f"r{i % 250}"}}},
                              {"namespaceSelector": {"matchLabels": {"team": "perf"}},
                               "podSelector": {"matchLabels": {"role": "client"}}}],
                     "ports": [{"port": 8080}, {"port": "http"}]},
                    {"from": [{"ipBlock": {"cidr": f"{base}.0.0/16",
                                           "except": [f"{base}.{i % 2 + 1}.0/28"]}},
                              {"namespaceSelector": {"matchExpressions": [
                                  {"key": "team", "operator": "In", "values": ["ops", "perf"]}]}}],
                     "ports": [{"port": 9000, "endPort": 9100}, {"port": 53, "protocol": "UDP"}]}],
                "egress": [
                    {"to": [{"podSelector": {"matchExpressions": [
                        {"key": "group", "operator": "In", "values": [f"g{i % 10}", f"g{(i + 3) % 10}"]}]}},
                            {"ipBlock": {"cidr": "192.168.56.0/24"}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 8080}]}]}}


def valid(objs: list[dict]) -> list[dict]:
    return [objects.validate(json.loads(json.dumps(o))) for o in objs]
