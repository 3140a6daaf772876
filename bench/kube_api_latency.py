"""One change's latency through the whole path a cluster has: from the
Kubernetes API server's write to the agent's applied revision (issue 13).

Usage (root, from the repository root; figures in docs/performance.md)::

    .venv/bin/python bench/kube_api_latency.py [--changes 100] [--json FILE]

A one-node lab with a Kubernetes API (``lab up --kube-api``: the lab's API
server, the reflector ``contivctl ksr run``, the agent) gets a Service with
two pods and a NetworkPolicy. Then, ``--changes`` times, one at a time, the
policy's port is changed through the API (HTTP, as any client) and timed
until (1) etcd holds the new version -- the reflector's part -- and (2) the
agent reports (its ``health()``, the API layer's) that it has applied that etcd revision:
the change is in the data plane. Printed: p50/p90 of both, and of the
agent's part alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import machine, require_root, write_json  # noqa: E402

NS = "lat"


def manifest() -> list[dict]:
    pod = lambda n: {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": NS,  # noqa: E731
                                                                       "labels": {"app": "web"}},
                     "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "lab",
                                                                   "ports": [{"containerPort": 8080}]}]}}
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, pod("a"), pod("b"),
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
            policy(8080)]


def policy(port: int) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": port}]}]}}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e3


def run(a) -> dict:
    from lab import objects  # noqa: PLC0415
    from lab.cluster import Lab  # noqa: PLC0415
    from lab.kube import Kube  # noqa: PLC0415
    from lab.kubecontrol import start  # noqa: PLC0415
    lab = Lab(f"kl{int(time.time()) % 100000}")
    try:
        lab.up(nodes=1)
        start(lab)
        kube = Kube(lab)
        kube.apply([objects.validate(o) for o in manifest()], timeout=120)
        agent, store = lab.client("node1"), kube.store
        key = "/contiv/k8s/networkpolicy/lat/web"
        etcd_ms, total_ms = [], []
        for i in range(a.changes):
            t = time.perf_counter()
            kube.api.put(policy(9000 + i))
            want = kube.api.get("NetworkPolicy", NS, "web")["metadata"]["resourceVersion"]
            while True:
                kv = store.get(key)
                if kv and json.loads(kv.value)["metadata"]["resourceVersion"] == want:
                    break
                time.sleep(0.0002)
            etcd_ms.append(time.perf_counter() - t)
            while agent.health().applied_revision < kv.mod_revision:
                time.sleep(0.0002)
            total_ms.append(time.perf_counter() - t)
        kube.close()
    finally:
        lab.down()
    agent_only = [b - e for e, b in zip(etcd_ms, total_ms)]
    out = {"args": vars(a), "machine": machine(REPO),
           "etcd_p50_ms": pct(etcd_ms, 0.5), "etcd_p90_ms": pct(etcd_ms, 0.9),
           "agent_p50_ms": pct(agent_only, 0.5), "agent_p90_ms": pct(agent_only, 0.9),
           "total_p50_ms": pct(total_ms, 0.5), "total_p90_ms": pct(total_ms, 0.9)}
    out["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def report(o: dict) -> str:
    return "\n".join([
        f"{o['args']['changes']} NetworkPolicy changes through the lab's Kubernetes API, one at a time", "",
        "| part | p50 | p90 |", "|---|---:|---:|",
        f"| API write -> etcd holds it (the reflector) | {o['etcd_p50_ms']:.1f} ms | {o['etcd_p90_ms']:.1f} ms |",
        f"| etcd -> the agent applied it (watch, policy compile, nftables) | {o['agent_p50_ms']:.1f} ms | "
        f"{o['agent_p90_ms']:.1f} ms |",
        f"| API write -> agent applied | **{o['total_p50_ms']:.1f} ms** | {o['total_p90_ms']:.1f} ms |", "",
        f"commit {o['machine']['commit']}, load average {o['machine']['loadavg_start']} -> "
        f"{o['machine']['loadavg_end']}"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args()
    if a.changes < 1:
        ap.error("need --changes >= 1")
    if not require_root("kube_api_latency"):
        return 2
    out = run(a)
    print(report(out))
    write_json(a.json, out, "kube_api_latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
