#!/usr/bin/env python3
"""NetworkPolicy scale: data-plane cost of 1,000 policies, programming time, one label change.

Run as root from the repository::

    .venv/bin/python bench/policy_scale.py [--dataplane linux|vpp] [--no-traffic] [--pods 100]
                                           [--policies 1000] [--seconds 2] [--reps 7]
                                           [--changes 15] [--json FILE]

Two identical two-node labs (real etcd, real agents, the Linux data plane:
nftables in the node namespaces): **A**, the baseline, never gets a policy;
**B** gets the policies. In each, namespace ``perf`` holds the measured pods:
``client`` on node1, ``server`` on node2 (cross-node: VXLAN, both nodes'
forward hooks) and ``server-local`` on node1 (same node); namespace ``scale``
holds ``--pods`` other pods, half on each node, labelled ``app=w<i>``,
``group=g<i%10>``, ``role=r<i%25>``. Two labs rather than "before/after" in
one: the machine these runs share is busy (load averages of 10-20 on 2 CPUs
were seen), and only runs seconds apart see the same load -- re-programming
1,000 policies between runs would put minutes between them.

(a) Data-plane cost. TCP throughput (one connection, bulk ``sendall`` of 256
    KiB buffers for ``--seconds``) and connection rate (short TCP connects:
    connect, server closes, client sees EOF and closes -- one at a time, for
    ``--seconds``), client -> server and client -> server-local. Client and
    server are Python workers (``bench/traffic.py``) started with ``ip netns exec``
    in the pods' namespaces (``iperf3`` is not among the packages
    scripts/setup.sh installs, so the script does not use it; Python bulk
    transfer is CPU-bound, which makes any per-packet cost *more* visible, not
    less). Conditions: **A** lab A (no policy); **B** lab B with
    ``--policies`` policies selecting the ``scale`` pods (never the measured
    ones; each with two ingress rules and one egress rule, podSelector /
    namespaceSelector / both / ipBlock-with-except peers, numbered, named and
    ranged ports; the measured pods do appear in some peer sets); **C** B plus
    one policy that selects ``server`` and ``server-local`` and admits the
    client (so new connections walk a policy chain: informative, no target).
    ``--reps`` rounds; in each, per pair, A and B (then A and C) run back to
    back, in alternating order. The figure is the median over rounds of the
    per-round ratio B/A (target >= 0.95x), shown with its range.
(b) Programming ``--policies`` policies over the pods: the wall time of
    ``Kube.apply`` (the lab API server: validation, etcd writes) until both
    agents report they applied the last revision, and the agents'
    transactions from their ``history()`` (count, summed and largest
    ``duration_ms``, the nft operations' share; a thread collects the
    history while the apply runs, as the agent keeps only its last 256).
    Applied, deleted (timed the same way) and applied again (a second
    sample): the deletion comes early on purpose, before the agents' first
    periodic resync. Also a **full sync**: at the end both agents are
    stopped and node1's agent started next to the policies, cold (the ``ip
    contiv`` table deleted first: its start-up resync programs everything in
    one transaction) and then warm (the table kept: nothing to do).
(c) One pod-label change taking effect (``--changes`` times, alternating):
    the pod object is rewritten in etcd with one label changed (what the API
    server stores when the pod is re-applied), and the time measured from just
    before the put until both agents report (their status keys, seen through
    an etcd watch: no polling) an applied revision at least the put's. Plus
    each agent's own transaction (``duration_ms``) for it, and the CPU time
    both agents used meanwhile (``/proc/<pid>/stat``, 10 ms ticks). Each
    change is made in lab B and, as the same-run baseline, in lab A (no
    policy), alternating. Three kinds:
    ``version`` (a label no policy refers to: the fixed cost of any pod
    update), ``role`` (the pod leaves the peer sets of ``--policies``/250
    policies and enters those of as many others) and ``group`` (it moves
    between peer sets of hundreds of policies). Target <= 20 ms.

Where the time goes: the same compile/render path the agent runs
(``agent.policies.PolicySync`` with the agent's ``NftPolicyRenderer``, over a
snapshot of the lab's etcd, with a stand-in for the scheduler), timed here per
step: a full build of node1's
policy partitions, one label change of each kind and the arrival of one new
pod that no policy selects or names (``on_change`` -- the scan of every policy
for the pod's membership -- and ``flush``, split into compile, render,
dispatch and group chains; the scheduler's own work is the agent's
transaction, above).

Correctness check of what was measured: after the policies are programmed, a
sample of client -> scale-pod and server -> scale-pod probes must agree with ``policies explain``
(with at least one denied and one allowed); a failed check aborts the run. On
VPP an allowed probe that timed out is tried once more with 3 s and the retry
is reported: the first connection after the policies were programmed was seen
to need more than 1 s there (a data-plane latency worth its own look, not a
policy verdict).

The agents are asked through the typed client (``agent.api.client.AgentClient``).
Long silent phases (labs coming up, applying the policies, the data-plane
rounds, waiting for an agent) show a progress bar on stderr when it is a
terminal, plain lines otherwise.

``--dataplane vpp``: both labs run the VPP data plane (one VPP per node,
pods on veth + af_packet, policies as ACL-plugin rules: docs/vpp.md). What is
nftables-specific changes, and the output says so: the **cold** full sync
clears the agent's ACLs from node1's VPP first (every ACL list on its
interfaces emptied, every ACL tagged ``contiv:pol...`` deleted, through a
second API connection: the counterpart of deleting the ``ip contiv`` table,
pods stay); the one-element ``nft -c`` check is not run; the offline
breakdown uses the agent's ``AclPolicyRenderer`` and splits only the
compiler from the rest (the nftables renderer's step functions do not exist
there). The traffic workers run unchanged (af_packet is the ceiling there:
about 1.6 Gbit/s, see docs/vpp.md).

``--no-traffic``: skip (a) -- the data-plane rounds and the traffic servers --
and keep (b), (c), the correctness check and the offline breakdown.

Everything (the labs, the worker processes) is removed on exit, also on
error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import (cpu_seconds, progress, require_root, require_vpp, rss_kib, run_bench,  # noqa: E402
                    say, stop_workers)
from trafficrun import paired, run_worker, start_server, traffic_rounds  # noqa: E402 -- bench/ helpers
from vpputil import clear_policy_acls, lab_vpp_api, lab_vpp_pid  # noqa: E402 -- bench/ helpers (VPP runs)
from policy_world import NODES, policy, scale_labels, valid, world  # noqa: E402 -- bench/ module
from agent.model import keys  # noqa: E402
from agent.model.records import AgentStatus  # noqa: E402
from lab import ops  # noqa: E402
from lab.cluster import Lab, stop_processes  # noqa: E402
from lab.kube import Kube  # noqa: E402

LABEL_KINDS = {"version": "no policy refers to it",
               "role": "leaves the peer sets of a few policies, enters a few others'",
               "group": "moves between peer sets of many policies"}
PAIRS = {"cross-node": "perf/server", "same-node": "perf/server-local"}


def summary(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    return {"n": len(s), "p50": statistics.median(s), "p90": s[min(len(s) - 1, int(0.9 * len(s)))],
            "mean": statistics.fmean(s), "min": s[0], "max": s[-1]}


# --------------------------------------------------------------------------- bench
class HistoryCollector:
    """Polls each agent's ``history()`` while a long change runs: the agent keeps
    only its last transactions (``history_size``), a thousand policies make more."""

    def __init__(self, bench: "Bench", since: dict[str, int]) -> None:
        self.bench = bench
        self.last = dict(since)
        self.records: dict[str, list] = {n: [] for n in NODES}
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> None:
        for n in NODES:
            got = self.bench.client(n).history(limit=10000, since=self.last[n]).transactions
            # the agent keeps 256 transactions by default: a full page may have lost some
            self.lost = self.lost or len(got) >= 256
            self.records[n] += got
            if got:
                self.last[n] = got[-1].seq

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.poll()


class Rig:
    """One lab with the world applied and a server in each measured server pod."""

    def __init__(self, name: str, args) -> None:
        self.args = args
        self.lab = Lab(name)
        self.kube: Kube | None = None
        self.servers: list[subprocess.Popen] = []

    def up(self) -> float:
        self.lab.up(nodes=2, dataplane=self.args.dataplane)
        self.kube = Kube(self.lab)
        t0 = time.perf_counter()
        self.kube.apply(valid(world(self.args.pods)), timeout=600)
        apply_s = time.perf_counter() - t0
        if self.args.no_traffic:
            return apply_s
        for ref in PAIRS.values():
            if not start_server(self.ns(ref), self.servers):
                raise RuntimeError(f"server in {ref} did not start")
        return apply_s

    def ns(self, ref: str) -> str:
        ns, _, name = ref.partition("/")
        return self.lab.paths.pod_ns(ns, name)

    def ip(self, ref: str) -> str:
        return self.kube.pod(ref)["status"]["podIP"]

    def worker(self, mode: str, dst: str) -> dict:
        return run_worker(self.ns("perf/client"), mode, self.ip(dst), self.args.seconds,
                          f"{mode} to {dst} in lab {self.lab.name}")

    def close(self) -> None:
        stop_workers(self.servers)
        if self.kube:
            self.kube.close()
        say(f"lab {self.lab.name}: down")
        self.lab.down()


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        tag = os.urandom(2).hex()
        self.base = Rig(f"pla{tag}", args)  # never gets a policy: the baseline
        self.rig = Rig(f"plb{tag}", args)   # gets the policies
        self.lab = self.rig.lab
        self.kube: Kube | None = None
        self.vpp = args.dataplane == "vpp"
        self.out: dict = {"machine": machine(), "args": vars(args), "plane": args.dataplane}

    def client(self, node: str, timeout: float = 120.0, rig: "Rig | None" = None):
        """A node's agent (:class:`agent.api.contract.NodeAPI`) in lab B (or ``rig``)."""
        from agent.api.client import AgentClient
        lab = (rig or self.rig).lab
        return AgentClient(lab.state().node(node).socket, timeout=timeout)

    def dataplane(self, name: str, conds: list[tuple[str, Rig]]) -> dict:
        """--reps rounds; in each, for each pair, a bulk run then a rate run on every
        condition back to back (the order rotates), so that conditions compared with each
        other are measured seconds apart."""
        say(f"data plane {name}: {self.args.reps} rounds x {len(PAIRS)} pairs x {len(conds)} labs "
            f"x 2 tests x {self.args.seconds}s")
        res = traffic_rounds([(c, rig.worker) for c, rig in conds], PAIRS, self.args.reps,
                             f"data plane {' vs '.join(c for c, _ in conds)}: traffic runs")
        res["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
        return res

    # ---- agents
    def last_seq(self, rig: "Rig | None" = None) -> dict[str, int]:
        out = {}
        for n in NODES:
            h = self.client(n, rig=rig).history(limit=1).transactions
            out[n] = h[-1].seq if h else 0
        return out

    def policy_txns(self, since: dict[str, int], collected: dict | None = None,
                    rig: "Rig | None" = None) -> dict:
        """The agents' policy transactions after ``since`` (seq per node), from
        ``collected`` (a :class:`HistoryCollector`'s records) or read now."""
        out = {}
        for n in NODES:
            if collected is not None:
                hist = collected[n]
            else:
                hist = self.client(n, rig=rig).history(limit=10000, since=since[n]).transactions
            mine = [t for t in hist if t.description.startswith("network policies")]
            ops_ms = [sum(o.duration_ms for o in t.operations) for t in mine]
            seqs = {t.seq for t in mine}
            out[n] = {"transactions": len(mine), "operations": sum(len(t.operations) for t in mine),
                      "sum_ms": sum(t.duration_ms for t in mine),
                      "max_ms": max((t.duration_ms for t in mine), default=0.0),
                      "ops_ms": sum(ops_ms), "ok": all(t.ok for t in mine),
                      "durations": [t.duration_ms for t in mine],
                      "other": [(t.description, t.duration_ms) for t in hist if t.seq not in seqs]}
        return out

    def timed_write(self, rig: "Rig", key: str, value: dict) -> dict:
        """Put one object; wall time until both agents report a revision >= the put's,
        and the CPU time (utime+stime, 10 ms ticks) both agents spent meanwhile."""
        q: queue.Queue = queue.Queue()
        status = {keys.status_key(n): n for n in NODES}

        def cb(item):
            now = time.perf_counter()
            for ev in getattr(item, "events", ()):
                if ev.key in status and ev.value:
                    q.put((now, status[ev.key], AgentStatus.from_json(ev.value).applied_revision))
        store = rig.kube.store
        pids = [n.pid for n in rig.lab.state().nodes]
        w = store.watch(keys.STATUS, store.revision() + 1, cb)
        try:
            time.sleep(0.05)  # the watch is established before the clock starts
            cpu0 = sum(cpu_seconds(pid) for pid in pids)
            t0 = time.perf_counter()
            rev = store.put(key, json.dumps(value).encode())
            done: dict[str, float] = {}
            while len(done) < len(NODES):
                t, node, applied = q.get(timeout=120)
                if applied >= rev and node not in done:
                    done[node] = (t - t0) * 1000
            cpu_ms = (sum(cpu_seconds(pid) for pid in pids) - cpu0) * 1000
        finally:
            w.cancel()
        return {"e2e_ms": max(done.values()), "per_node_ms": done, "revision": rev,
                "agents_cpu_ms": cpu_ms}

    # ---- (b)
    def program(self, label: str = "program") -> None:
        n, pods = self.args.policies, self.args.pods
        pols = valid([policy(i, pods, self.lab.state().pod_cidr) for i in range(n)])
        since = self.last_seq()
        say(f"applying {n} policies")
        with progress(f"applying {n} policies, until both agents applied them"), \
                HistoryCollector(self, since) as hc:
            t0 = time.perf_counter()
            self.kube.apply(pols, timeout=3600)
            apply_s = time.perf_counter() - t0
        self.out[label] = {"apply_s": apply_s, "agents": self.policy_txns(since, hc.records),
                           "history_lost": hc.lost}
        say(f"  {apply_s:.2f}s")

    def unprogram(self) -> None:
        since = self.last_seq()
        pols = self.kube.list("networkpolicy")
        say(f"deleting {len(pols)} policies")
        with progress(f"deleting {len(pols)} policies, until both agents applied it"), \
                HistoryCollector(self, since) as hc:
            t0 = time.perf_counter()
            self.kube.delete(pols, timeout=3600)
            delete_s = time.perf_counter() - t0
        self.out["unprogram"] = {"delete_s": delete_s, "agents": self.policy_txns(since, hc.records),
                                 "history_lost": hc.lost}
        say(f"  {delete_s:.2f}s")

    def restart(self) -> None:
        """Full sync next to the policies (in etcd): both agents stopped, node1's agent
        started **cold** (``ip contiv`` table deleted first: everything programmed by
        its start-up resync), then restarted **warm** (table kept: nothing to do)."""
        st = self.lab.state()
        stop_processes([n.pid for n in st.nodes], timeout=30)  # node2 stays stopped: quieter
        res = {}
        for kind in ("cold", "warm"):
            st = self.lab.state()
            node = st.node("node1")
            stop_processes([node.pid], timeout=30)
            if kind == "cold" and self.vpp:  # the agent's ACLs out of node1's VPP; pods stay
                api = lab_vpp_api(self.lab, "node1")
                try:
                    res.setdefault("vpp_cleared", clear_policy_acls(api))
                finally:
                    api.close()
            elif kind == "cold":
                subprocess.run(["ip", "netns", "exec", node.netns, "nft", "delete", "table", "ip", "contiv"],
                               check=True)
            t0 = time.perf_counter()
            self.lab.start_agent("node1")
            with progress(f"{kind} start of node1's agent (until ready)"):
                # a starting agent answers ready=False; before its socket exists, Unavailable
                self.lab.wait_ready("node1", 1800, poll=0.02, health_timeout=120)
                ready_s = time.perf_counter() - t0
            hist = self.client("node1").history(limit=10000).transactions
            rec = [t for t in hist if t.description == "start-up resync"][-1]
            res[kind] = {"ready_s": ready_s, "resync_ms": rec.duration_ms,
                         "operations": len(rec.operations), "ok": rec.ok,
                         "ops_ms": sum(o.duration_ms for o in rec.operations)}
            say(f"  {kind} start of node1's agent: ready in {ready_s:.1f}s, start-up resync "
                f"{rec.duration_ms:.0f} ms, {len(rec.operations)} operations")
        self.out["restart"] = res

    def nft_fixed_cost(self) -> None:
        """What any nft transaction costs next to the policies: a one-element batch
        in check mode (``nft -c``: parse, cache, kernel validation, no commit), in
        node1 of lab B and of lab A. Not on VPP (no nftables there)."""
        if self.vpp:
            self.out["nft_check_ms"] = None
            say("  nft one-element check: skipped (VPP data plane: no nftables)")
            return
        out = {}
        for label, rig in (("A", self.base), ("B", self.rig)):
            ns = rig.lab.state().node("node1").netns
            xs = []
            for _ in range(5):
                t = time.perf_counter()
                subprocess.run(["ip", "netns", "exec", ns, "nft", "-c",
                                "add element ip contiv egress-pods { 10.255.255.1 : accept }"], check=True)
                xs.append((time.perf_counter() - t) * 1000)
            out[label] = statistics.median(xs)
        self.out["nft_check_ms"] = out
        say(f"  nft one-element check: lab A {out['A']:.0f} ms, lab B {out['B']:.0f} ms")

    def check_enforced(self) -> None:
        """Probes to a sample of scale pods agree with explain (the client is admitted by
        the policies' third peer, the servers are not)."""
        rnd = random.Random(7)
        refs = [f"scale/w{i}" for i in rnd.sample(range(self.args.pods), min(12, self.args.pods))]
        c = self.client("node1")
        verdicts = []
        retried = []
        for ref in refs:
            for src in ("perf/client", "perf/server"):
                r = ops.run_probe(self.kube, src, ref, 8080, "TCP", 1.0)
                e = c.explain(src, ref, 8080, "TCP")
                if r.connected != e.allowed and self.vpp and e.allowed:
                    # VPP: the first connection after the policies were programmed has been
                    # seen to take > 1 s (its SYN reached the pod, nothing came back within
                    # the second); an allowed probe that timed out is tried once more, with
                    # a longer timeout, and counted (reported, not hidden)
                    t = time.perf_counter()
                    r2 = ops.run_probe(self.kube, src, ref, 8080, "TCP", 3.0)
                    retried.append({"src": src, "dst": ref, "first_error": r.error,
                                    "retry_connected": r2.connected,
                                    "retry_ms": round((time.perf_counter() - t) * 1000, 1)})
                    say(f"  VPP: {src} -> {ref} allowed but timed out after 1 s ({r.error}); retried: "
                        f"{'connected' if r2.connected else 'failed'} in {retried[-1]['retry_ms']:.0f} ms")
                    r = r2
                if r.connected != e.allowed:
                    raise RuntimeError(f"probe and explain disagree on {src} -> {ref}:8080: "
                                       f"{r.connected} vs {e.verdict}")
                verdicts.append(e.allowed)
        if not (any(verdicts) and not all(verdicts)):
            raise RuntimeError(f"the sample proves nothing: verdicts {verdicts}")
        for ref in ("perf/server", "perf/server-local"):
            r = ops.run_probe(self.kube, "perf/client", ref, 8080, "TCP", 1.0)
            if not r.connected:
                raise RuntimeError(f"perf/client -> {ref} blocked: {r.error}")
        self.out["check"] = {"probes": len(verdicts), "allowed": sum(verdicts), "retried": retried}

    # ---- (c)
    def label_changes(self) -> None:
        """Each kind of change in lab B (next to the policies) and, as the same-run
        baseline, in lab A (no policy), alternating A and B change by change."""
        res: dict = {"A": {}, "B": {}}
        key = keys.k8s_key("Pod", "scale", "w7")
        for kind, values in (("version", ("v1", "v2")), ("role", ("r7", "r8")), ("group", ("g7", "g8"))):
            targets = {lab: rig.kube.pod("scale/w7") for lab, rig in (("A", self.base), ("B", self.rig))}
            samples: dict = {"A": [], "B": []}
            for k in range(self.args.changes):
                for lab, rig in (("A", self.base), ("B", self.rig))[::1 if k % 2 else -1]:
                    obj = json.loads(json.dumps(targets[lab]))
                    obj["metadata"]["labels"][kind] = values[(k + 1) % 2]
                    since = self.last_seq(rig)
                    r = self.timed_write(rig, key, obj)
                    r["agents"] = self.policy_txns(since, rig=rig)
                    samples[lab].append(r)
                    targets[lab] = obj
                    time.sleep(0.1)
            for lab, rig in (("A", self.base), ("B", self.rig)):
                obj = json.loads(json.dumps(targets[lab]))
                obj["metadata"]["labels"] = scale_labels(7)  # back as it was
                self.timed_write(rig, key, obj)
                res[lab][kind] = samples[lab]
            e2e = {lab: statistics.median(x["e2e_ms"] for x in samples[lab]) for lab in samples}
            cpu = {lab: statistics.median(x["agents_cpu_ms"] for x in samples[lab]) for lab in samples}
            txn = [max(a["max_ms"] for a in x["agents"].values()) for x in samples["B"]]
            say(f"  label {kind}: e2e p50 A {e2e['A']:.1f} ms, B {e2e['B']:.1f} ms; agents' CPU p50 "
                f"A {cpu['A']:.0f} ms, B {cpu['B']:.0f} ms; B agent txn p50 {statistics.median(txn):.1f} ms")
        self.out["label_change"] = res

    # ---- where the time goes, with the agent's code, here
    def offline(self) -> dict:
        from agent.builders import policies as pb
        from agent.cluster import Change, ClusterSnapshot
        from agent.policies import PolicySync
        from agent.store.base import Event

        class Result:
            errors: dict = {}

        class Desired:  # stands in for the scheduler: records what would be applied
            def __init__(self):
                self.values = 0

            def set_partitions(self, parts, description="", patches=None):
                self.values = sum(len(v) for v in parts.values()) + \
                    sum(len(u) + len(r) for u, r in (patches or {}).values())
                return Result()

            def names(self, prefix=""):  # nothing applied yet: no partition to empty
                return []
        timers: dict[str, float] = {}
        inside: set[str] = set()

        def timed(name, fn):
            def wrap(*a, **kw):
                if name in inside:  # render_policy renders its named-port sets: count it once
                    return fn(*a, **kw)
                inside.add(name)
                t = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    timers[name] = timers.get(name, 0.0) + time.perf_counter() - t
                    inside.discard(name)
            return wrap
        snap = ClusterSnapshot()
        kvs, _ = self.kube.store.list(keys.ROOT)
        for kv in kvs:
            if kv.key.startswith(keys.WATCHED):
                snap.apply(Event(kv.key, kv.value, kv.mod_revision))
        desired = Desired()
        # the agent's renderer, as the agent makes it; the polrender steps it calls
        # (through the module) timed in place, as PolicyModel.compile is
        if self.vpp:
            # the renderer VppDataplane.policy_renderer() makes (node1's address admitted);
            # it has no module-level steps to time: only the compiler is split out
            from agent.vpp.policies import AclPolicyRenderer
            node_ip = self.lab.state().node("node1").data_ip
            polrender, steps = None, {}
            renderer = AclPolicyRenderer(lambda: (node_ip,))
        else:
            from agent.linux import polrender
            from agent.linux.polstate import NftPolicyRenderer
            steps = {"render_policy": "render", "peer_set": "peer_sets", "render_peer_set": "render",
                     "render_dispatch": "dispatch", "render_groups": "groups"}
            renderer = NftPolicyRenderer()
        orig_steps = {f: getattr(polrender, f) for f in steps}
        sync = PolicySync(snap, desired, "node1", renderer)
        orig_compile = pb.PolicyModel.compile
        pb.PolicyModel.compile = timed("compile", orig_compile)
        for f, name in steps.items():
            setattr(polrender, f, timed(name, orig_steps[f]))
        try:
            t = time.perf_counter()
            parts = sync.partitions()
            full = {"total_ms": (time.perf_counter() - t) * 1000,
                    "values": sum(len(v) for v in parts.values())}
            full.update({k: v * 1000 for k, v in timers.items()})
            out = {"full_build_node1": full}
            for kind, value in (("version", "v2"), ("role", "r8"), ("group", "g8")):
                xs = []
                for k in range(5):
                    timers.clear()
                    obj = snap.objects["pod"][("scale", "w7")]
                    obj["metadata"]["labels"] = {**obj["metadata"]["labels"],
                                                 kind: value if k % 2 == 0 else scale_labels(7).get(kind, "v1")}
                    t = time.perf_counter()
                    sync.on_change(Change("pod", "scale", "w7", False))
                    t1 = time.perf_counter()
                    n = sync.flush()
                    t2 = time.perf_counter()
                    xs.append({"on_change_ms": (t1 - t) * 1000, "flush_ms": (t2 - t1) * 1000,
                               "dirty": n, "values": desired.values,
                               **{f"{k2}_ms": v * 1000 for k2, v in timers.items()}})
                out[f"label_{kind}"] = {key: statistics.median(x[key] for x in xs) for key in xs[0]}
            # a new pod that no policy selects or names (what every pod start is)
            timers.clear()
            new = json.loads(json.dumps(snap.objects["pod"][("scale", "w7")]))
            new["metadata"].update(name="fresh", labels={"app": "fresh"})
            new["status"]["podIP"] = "10.1.1.250"
            snap.objects["pod"][("scale", "fresh")] = new
            t = time.perf_counter()
            sync.on_change(Change("pod", "scale", "fresh", False))
            t1 = time.perf_counter()
            n = sync.flush()
            t2 = time.perf_counter()
            out["new_unrelated_pod"] = {"on_change_ms": (t1 - t) * 1000, "flush_ms": (t2 - t1) * 1000,
                                        "dirty": n, "values": desired.values,
                                        **{f"{k2}_ms": v * 1000 for k2, v in timers.items()}}
            return out
        finally:
            pb.PolicyModel.compile = orig_compile
            for f, fn in orig_steps.items():
                setattr(polrender, f, fn)

    # ---- the run
    def run(self) -> dict:
        a = self.args
        for rig in (self.base, self.rig):
            say(f"lab {rig.lab.name}: up, 2 nodes, {a.pods} scale pods + 3 perf pods")
            with progress(f"lab {rig.lab.name}: up, pods running"):
                self.out.setdefault("pods_apply_s", {})[rig.lab.name] = rig.up()
        self.kube = self.rig.kube
        # apply, delete, apply again: the deletion is timed early, before the agents'
        # first periodic resync (300 s after their start)
        self.program("program")
        self.unprogram()
        self.program("program2")
        self.check_enforced()
        if self.vpp:
            api = lab_vpp_api(self.lab, "node1")
            try:
                self.out["vpp_version"] = api.version()
            finally:
                api.close()
        if a.no_traffic:
            self.out["dataplane"] = None
            say("data plane (a): skipped (--no-traffic)")
        else:
            self.traffic()
        say("label changes")
        self.label_changes()
        self.nft_fixed_cost()
        say("offline breakdown")
        self.out["offline"] = self.offline()
        self.out["rss_kib"] = {n.name: rss_kib(n.pid) for n in self.lab.state().nodes}
        if self.vpp:
            self.out["vpp_rss_kib"] = {n: rss_kib(lab_vpp_pid(self.lab, n)) for n in NODES}
        say("full sync: node1's agent started next to the policies")
        self.restart()
        return self.out

    def traffic(self) -> None:
        dp = self.out["dataplane"] = {}
        dp["AB"] = self.dataplane("A (no policy) vs B (policies selecting other pods)",
                                  [("A", self.base), ("B", self.rig)])
        server_policy = valid([{
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "server-from-client", "namespace": "perf"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}}])
        self.kube.apply(server_policy)
        dp["AC"] = self.dataplane("A vs C (B + one policy selecting the servers)",
                                  [("A", self.base), ("C", self.rig)])
        self.kube.delete(server_policy)

    def close(self) -> None:
        for rig in (self.rig, self.base):
            try:
                rig.close()
            except Exception as e:  # noqa: BLE001 -- the other lab must go too
                say(f"closing lab {rig.lab.name}: {e}")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "nft": subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip(),
            "iperf3": bool(subprocess.run(["sh", "-c", "command -v iperf3"], capture_output=True).stdout),
            "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "dirty": bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "agent"],
                                         capture_output=True, text=True).stdout.strip()),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}


# --------------------------------------------------------------------------- report
def report(out: dict) -> str:
    L = []
    vpp = out.get("plane") == "vpp"
    if vpp:
        L.append(f"data plane: VPP {out.get('vpp_version', '')} (ACL plugin); cold full sync = the agent's "
                 "ACLs removed from node1's VPP first; no nft figures")
        L.append("")
    dp = out["dataplane"] if isinstance(out["dataplane"], dict) else None
    if dp is None:
        L.append("(a) data plane: skipped (--no-traffic)")
    else:
        L.append("| data plane | baseline A: no policy (median) | with policies (median) | "
                 "ratio: median of paired runs [min-max] | target |")
        L.append("|---|---:|---:|---:|---|")
    for phase, cond, target in (("AB", "B", True), ("AC", "C", False)) if dp else ():
        for pair in PAIRS:
            for k, unit, fmt in (("gbit_s", "TCP throughput (Gbit/s)", "{:.2f}"),
                                 ("conn_s", "TCP connections/s", "{:.0f}")):
                r = paired(dp[phase], cond, "A", pair, k)
                what = f"{out['args']['policies']} policies selecting other pods" if cond == "B" else \
                    "the same + 1 selecting the server"
                L.append(f"| {cond}: {pair} {unit} ({what}) | {fmt.format(r['a'])} | {fmt.format(r['b'])} | "
                         f"{r['ratio']:.3f}x [{r['min']:.2f}-{r['max']:.2f}] | "
                         + (f">= 0.95x {'ok' if r['ratio'] >= 0.95 else 'MISSED'}" if target else "(none)")
                         + " |")
    L.append("")
    p = out["program"]
    n = out["args"]["policies"]
    L.append(f"| programming {n} policies over {out['args']['pods']} pods | node1 | node2 |")
    L.append("|---|---:|---:|")
    p2 = out["program2"]
    L.append(f"| lab apply, wall until both agents applied (s) | {p['apply_s']:.2f} | |")
    L.append(f"| the same again after the deletion (s) | {p2['apply_s']:.2f} | |")
    for label, key, fmt in (("agent transactions", "transactions", "{}"),
                            ("operations", "operations", "{:,}"),
                            ("sum of transaction duration_ms (ms)", "sum_ms", "{:.0f}"),
                            (f"  of which {'VPP' if vpp else 'nft'} operations (ms)", "ops_ms", "{:.0f}"),
                            ("largest transaction (ms)", "max_ms", "{:.0f}")):
        L.append(f"| {label} | " + " | ".join(fmt.format(p["agents"][nd][key]) for nd in NODES) + " |")
    u = out["unprogram"]
    L.append(f"| delete all, wall until both agents applied (s) | {u['delete_s']:.2f} | |")
    L.append("| delete: sum of transaction duration_ms (ms) | "
             + " | ".join(f"{u['agents'][nd]['sum_ms']:.0f}" for nd in NODES) + " |")
    L.append("")
    L.append("| one pod-label change | A: no policy, e2e p50 (ms) | B: next to the policies, e2e p50 "
             "(p90) (ms) | B / A | agents' CPU p50, A / B (ms) | B agent txn p50 (ms, slower node) | "
             "target (B e2e) |")
    L.append("|---|---:|---:|---:|---:|---:|---|")
    for kind in out["label_change"]["B"]:
        a_s, b_s = out["label_change"]["A"][kind], out["label_change"]["B"][kind]
        ea, eb = summary([x["e2e_ms"] for x in a_s]), summary([x["e2e_ms"] for x in b_s])
        ca = statistics.median(x["agents_cpu_ms"] for x in a_s)
        cb = statistics.median(x["agents_cpu_ms"] for x in b_s)
        txn = summary([max(a["max_ms"] for a in x["agents"].values()) for x in b_s])
        L.append(f"| {kind} label ({LABEL_KINDS[kind]}) | {ea['p50']:.1f} | {eb['p50']:.1f} ({eb['p90']:.1f}) | "
                 f"{eb['p50'] / ea['p50']:.1f}x | {ca:.0f} / {cb:.0f} | {txn['p50']:.1f} | "
                 f"<= 20 ms {'ok' if eb['p50'] <= 20 else 'MISSED'} |")
    L.append("")
    off = out["offline"]
    f = off["full_build_node1"]
    if vpp:  # AclPolicyRenderer: the compiler split out, the rest is the renderer and PolicySync
        L.append(f"where the time goes (agent code in this process, ms): full build of node1's policy "
                 f"partitions {f['total_ms']:.0f} (compile {f.get('compile', 0):.0f}, the rest -- ACL "
                 f"renderer and PolicySync -- {f['total_ms'] - f.get('compile', 0):.0f}; {f['values']:,} values)")
    else:
        L.append(f"where the time goes (agent code in this process, ms): full build of node1's policy "
                 f"partitions {f['total_ms']:.0f} (compile {f.get('compile', 0):.0f}, render "
                 f"{f.get('render', 0):.0f}, peer sets {f.get('peer_sets', 0):.0f}, dispatch {f.get('dispatch', 0):.0f}, groups "
                 f"{f.get('groups', 0):.0f}; {f['values']:,} values)")
    for kind in ("label_version", "label_role", "label_group", "new_unrelated_pod"):
        x = off[kind]
        split = (f"compile {x.get('compile_ms', 0):.1f}" if vpp else
                 f"compile {x.get('compile_ms', 0):.1f}, render {x.get('render_ms', 0):.1f}, dispatch "
                 f"{x.get('dispatch_ms', 0):.1f}, groups {x.get('groups_ms', 0):.1f}")
        L.append(f"  {kind.replace('_', ' ')}: on_change {x['on_change_ms']:.1f}, flush {x['flush_ms']:.1f} "
                 f"({split}); "
                 f"{x['dirty']:.0f} policies, pods and peer moves to flush, {x['values']:.0f} values handed over")
    r = out["restart"]
    cold_what = "ACLs removed from VPP" if vpp else "table deleted"
    L.append(f"full sync, node1's agent started next to the policies: cold ({cold_what}) ready in "
             f"{r['cold']['ready_s']:.1f}s, start-up resync {r['cold']['resync_ms']:.0f} ms for "
             f"{r['cold']['operations']:,} operations ({'VPP' if vpp else 'nft'} {r['cold']['ops_ms']:.0f} ms); "
             f"warm ready in {r['warm']['ready_s']:.1f}s, resync {r['warm']['resync_ms']:.0f} ms, "
             f"{r['warm']['operations']:,} operations")
    if vpp and r.get("vpp_cleared"):
        L.append(f"  (cold: {r['vpp_cleared']['acls_deleted']} ACLs deleted, "
                 f"{r['vpp_cleared']['lists_cleared']} interface lists cleared first)")
    c = out["nft_check_ms"]
    if c is None:
        L.append("one-element nft batch in check mode: not run (VPP data plane)")
    else:
        L.append(f"one-element nft batch in check mode (nft -c; process start, cache, kernel validation): "
                 f"lab A {c['A']:.0f} ms, lab B {c['B']:.0f} ms")
    for what, rec in (("apply", p), ("delete", u), ("second apply", p2)):
        bad = [nd for nd in NODES if not rec["agents"][nd]["ok"]]
        if bad:
            L.append(f"WARNING: {what}: some agent transactions had failed operations on {', '.join(bad)} "
                     "(see the agents' logs): its figures measure a failing run")
    if p.get("history_lost") or u.get("history_lost") or p2.get("history_lost"):
        L.append("WARNING: some agent transactions may have left the history before they were read")
    for x in (out.get("check") or {}).get("retried", []):
        L.append(f"NOTE: correctness probe {x['src']} -> {x['dst']} was allowed but timed out after 1 s "
                 f"({x['first_error']}); retried with 3 s: {'connected' if x['retry_connected'] else 'FAILED'} "
                 f"in {x['retry_ms']:.0f} ms")
    L.append("agent RSS (MiB): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in out["rss_kib"].items()))
    if out.get("vpp_rss_kib"):
        L.append("VPP RSS in lab B (MiB): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in out["vpp_rss_kib"].items()))
    L.append(f"load average start {out['machine']['loadavg_start']}, end {out['machine'].get('loadavg_end')}")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataplane", choices=("linux", "vpp"), default="linux",
                    help="both labs' data plane (default linux: nftables; vpp: ACL plugin)")
    ap.add_argument("--no-traffic", action="store_true",
                    help="skip the data-plane rounds (a): only programming, label changes, full sync")
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--changes", type=int, default=15)
    ap.add_argument("--json", help="write every figure and sample to this file")
    args = ap.parse_args()
    if not require_root("policy_scale"):
        return 2
    if args.dataplane == "vpp" and not require_vpp("policy_scale"):
        return 2
    if args.pods < 10:
        print("error: --pods must be at least 10", file=sys.stderr)
        return 2
    return run_bench(lambda: Bench(args), report, args.json, "policy_scale")


if __name__ == "__main__":
    sys.exit(main())
