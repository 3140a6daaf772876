"""How long the diagnostics take at scale: ``contivctl netstat`` with N pods
on a node and ``contivctl nat sessions`` with S sessions in its table (issue
11: under 1 s with 1,000 pods / 10,000 sessions), each against the system
tool reading the same kernel state in the same run.

Usage (root, from the repository root; figures in docs/performance.md)::

    .venv/bin/python bench/diag_scale.py [--pods 1000] [--sessions 10000] [--runs 7]
        [--dataplane linux|vpp] [--json FILE]

A lab (``--dataplane``) of as many nodes as ``--pods`` need at 250 a node
(a node's /24 holds 253) gets ``--pods`` pods spread over its nodes, plus
``server`` on node1 behind the UDP Service ``dns``, and then ``--sessions``
UDP flows from the pod ``p0000`` to the Service -- each from its own source
port, one datagram each, so each is one translated session (the node's
conntrack UDP timeout is raised to 600 s in its namespace for the run, so
none expires while measured). Timed, ``--runs`` times each, medians:

* ``netstat``: the API call to node1 (``AgentClient.netstat()``, in this
  process), the whole CLI over every node (``contivctl netstat --lab L -o
  json``, a new process) and the baseline ``ip -s -j link show`` in node1's
  namespace (Linux) -- what ``netstat`` adds over iproute2 reading the same
  counters;
* ``nat sessions``: the API call, the CLI (``nat sessions --all -o json``, and
  ``--summary``), and the baseline ``conntrack -L`` in the node's namespace
  (Linux; VPP: ``vppctl``-less, the baseline is the agent's own ``vpp dump
  sessions``: cnat's sessions without the naming).

Prints a table with the ratios to the baselines and writes the figures as
JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import machine, progress, require_root, require_vpp, run_bench, say  # noqa: E402
from lab.cluster import Lab  # noqa: E402
from lab.kube import Kube  # noqa: E402
from lab.ops import pod_netns  # noqa: E402
from lab import objects  # noqa: E402

NS = "diag"
NODE = "node1"
DNS_PORT = 53
PODS_PER_NODE = 250  # below a node's /24 (253 addresses)
FIRST_PORT = 10000  # the flows' source ports: FIRST_PORT .. FIRST_PORT + sessions - 1
CLI = [sys.executable, "-m", "contivctl.main"]


def manifest(pods: int) -> list[dict]:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "namespace": NS,
                                                               "labels": {"app": "dns"}},
             "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "lab", "ports": [
                 {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": NS},
             "spec": {"selector": {"app": "dns"}, "ports": [{"name": "dns", "port": DNS_PORT, "targetPort": "dns",
                                                            "protocol": "UDP"}]}}]
    nodes = lab_nodes(pods)
    for i in range(pods):  # round robin: p0000 (the flows' client) on node1
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i:04d}", "namespace": NS},
                     "spec": {"nodeName": f"node{1 + i % nodes}", "containers": [{"name": "main", "image": "lab"}]}})
    return [objects.validate(d) for d in docs]


def lab_nodes(pods: int) -> int:
    """Nodes enough for ``pods`` (+ the server): a node's /24 holds 253 pods."""
    return -(-(pods + 1) // PODS_PER_NODE)


def flows(netns: str, vip: str, n: int) -> None:
    """``n`` UDP flows from the namespace at ``netns`` to ``vip``:53, one
    datagram each from its own source port (bound explicitly: ports the kernel
    picks at random repeat, and a repeated 5-tuple is the same session)."""
    from agent.nsenter import socket_in  # noqa: PLC0415
    for i in range(n):
        with socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("0.0.0.0", FIRST_PORT + i))
            s.sendto(b"x", (vip, DNS_PORT))


def timed(fn, runs: int) -> dict:
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    return {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs), "runs": xs}


def run(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} failed ({p.returncode}): {p.stderr.strip()[-400:]}")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lab = Lab("dg" + secrets.token_hex(3))
        self.kube = None

    def close(self) -> None:
        if self.kube is not None:
            self.kube.close()
        say(f"lab {self.lab.name}: down")
        self.lab.down()

    def run(self) -> dict:
        a = self.args
        nodes = lab_nodes(a.pods)
        say(f"lab {self.lab.name}: up ({nodes} node{'s' if nodes > 1 else ''}, {a.dataplane})")
        self.lab.up(nodes=nodes, dataplane=a.dataplane)
        self.kube = Kube(self.lab)
        st = self.lab.state()
        node_ns = st.node(NODE).netns
        if a.dataplane == "linux":  # no session expires while measured
            run(["ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"])
        with progress(f"applying {a.pods} pods + a Service"):
            t = time.perf_counter()
            self.kube.apply(manifest(a.pods), timeout=3600)
            apply_s = time.perf_counter() - t
        say(f"  applied in {apply_s:.1f}s")
        from agent.api.client import AgentClient  # noqa: PLC0415
        client = AgentClient(st.node(NODE).socket, timeout=120)
        out: dict = {"args": vars(a), "apply_s": apply_s, "machine": machine(REPO), "dataplane": a.dataplane}

        # -- netstat: the API call asks node1; the CLI every node of the lab
        n = client.netstat()
        out["netstat"] = {
            "nodes": nodes, "interfaces": len(n.interfaces),
            "api": timed(client.netstat, a.runs),
            "cli": timed(lambda: run(CLI + ["netstat", "--lab", self.lab.name, "-o", "json"]), a.runs),
            "baseline": timed(lambda: run(["ip", "-n", node_ns, "-s", "-j", "link", "show"]), a.runs)
            if a.dataplane == "linux" else None}
        say(f"  netstat: {len(n.interfaces)} interfaces, API {out['netstat']['api']['median_s'] * 1e3:.0f} ms")

        # -- sessions
        vip = self.kube.service(f"{NS}/dns")["spec"]["clusterIP"]
        src = pod_netns(self.kube, f"{NS}/p0000")[1]
        with progress(f"{a.sessions} UDP flows to the Service"):
            flows(src, vip, a.sessions)
        s = client.sessions()
        base = (lambda: run(["ip", "netns", "exec", node_ns, "conntrack", "-L", "-o", "extended"])) \
            if a.dataplane == "linux" else (lambda: client.dataplane_dump("sessions"))
        out["sessions"] = {
            "total": s.total, "named": sum(1 for x in s.sessions if x.service),
            "api": timed(client.sessions, a.runs),
            "cli": timed(lambda: run(CLI + ["nat", "sessions", "--all", "--lab", self.lab.name, "-o", "json"]),
                         a.runs),
            "cli_summary": timed(lambda: run(CLI + ["nat", "sessions", "--summary", "--lab", self.lab.name]),
                                 a.runs),
            "baseline": timed(base, a.runs),
            "baseline_is": "conntrack -L" if a.dataplane == "linux" else "dataplane_dump('sessions') (API)"}
        say(f"  sessions: {s.total} in the table, {out['sessions']['named']} named to the Service")
        return out



def report(out: dict) -> str:
    ms = lambda d: f"{d['median_s'] * 1e3:.0f} ms [{d['min_s'] * 1e3:.0f}-{d['max_s'] * 1e3:.0f}]"  # noqa: E731
    n, s = out["netstat"], out["sessions"]
    L = [f"data plane {out['dataplane']}; {out['args']['pods']} pods applied in {out['apply_s']:.1f} s; "
         f"medians of {out['args']['runs']} runs [min-max]", "",
         "| what | time | baseline | ratio |", "|---|---:|---:|---:|"]

    def row(label: str, d: dict, base: dict | None) -> None:
        ratio = f"{d['median_s'] / base['median_s']:.2f}x" if base else "-"
        L.append(f"| {label} | {ms(d)} | {ms(base) if base else '-'} | {ratio} |")
    row(f"netstat, API call to node1 ({n['interfaces']} interfaces)", n["api"], n["baseline"])
    row(f"netstat, whole CLI over {n['nodes']} nodes ({out['args']['pods']} pods; -o json, new process)",
        n["cli"], n["baseline"])
    row(f"nat sessions, API call ({s['total']} sessions, {s['named']} to the Service)", s["api"], s["baseline"])
    row("nat sessions --all -o json, whole CLI", s["cli"], s["baseline"])
    row("nat sessions --summary, whole CLI", s["cli_summary"], s["baseline"])
    base = "ip -s -j link show" if out["dataplane"] == "linux" else "none"
    L += ["", f"baselines: netstat -- {base} in the node's namespace; sessions -- {s['baseline_is']}",
          f"commit {out['machine']['commit']}, load average {out['machine']['loadavg_start']} -> "
          f"{out['machine'].get('loadavg_end')}"]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dataplane", choices=("linux", "vpp"), default="linux")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()
    if args.pods < 1 or not 0 <= args.sessions <= 65535 - FIRST_PORT or args.runs < 1:
        ap.error(f"need --pods >= 1, 0 <= --sessions <= {65535 - FIRST_PORT}, --runs >= 1")
    if not require_root("diag_scale"):
        return 2
    if args.dataplane == "vpp" and not require_vpp("diag_scale"):
        return 2
    return run_bench(lambda: Bench(args), report, args.json, "diag_scale")


if __name__ == "__main__":
    sys.exit(main())
