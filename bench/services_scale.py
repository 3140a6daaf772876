#!/usr/bin/env python3
"""Services scale: one node's agent programming N Services x 5 endpoints.

Run as root from the repository::

    .venv/bin/python bench/services_scale.py [--dataplane linux|vpp] [--sizes 100,1000,10000]
                                             [--changes 20] [--adds 10] [--json FILE]

A one-node lab (real etcd, the real agent, the Linux data plane: nftables in
the node's namespace). For each size N, in increasing order, the Services and
their EndpointSlices are written straight into etcd where the reflector would
put them (``agent.model.keys.k8s_key``), in transactions of 100 puts, while
the agent is stopped. Each Service is ClusterIP, one TCP port 80 -> 8080, five
ready endpoints spread over 50 fake node names; every 10th Service has one
endpoint on the agent's own node (so it also gets a per-endpoint ``sep-*``
chain, as hairpin traffic needs). Endpoints carry no ``targetRef`` (as for
selector-less Services), so no pods need to exist.

Measured at each size:

(a) full sync, twice: **cold** (the ``ip contiv`` table deleted first:
    everything is programmed) and **warm** (the table left in place, as after
    an agent restart: the resync should find nothing to do). Timed from the
    agent process start until the agent's ``health()`` says ready, and -- through an
    etcd watch, so without polling the agent -- from the agent's node record
    (written once interpreter, imports, netlink and the subnet claim are done)
    to its first "ready" status report (right after the start-up resync, the
    watch and the API server): *the sync*. The agent's own record of its
    start-up resync (``history()``) gives the reconciler's share
    (``duration_ms``: planning + execution, not the retrieve) and the
    nftables share (the sum of the operations' ``duration_ms``; operations
    of one batch share its transaction's time equally). The other phases are
    timed separately with the agent's own code: interpreter + imports, the
    etcd listing, folding it into a snapshot, building and rendering every
    Service (``ServiceSync.partitions`` with the agent's ``NftServiceRenderer``),
    and (inside the node's namespace)
    the descriptors' ``retrieve`` of the table.
(b) one change, incremental: one endpoint address of one Service's slice is
    changed in etcd (``--changes`` times, alternating two addresses), and the
    time from just before the put until the agent reports (``/contiv/status/
    node1``, received through an etcd watch, so no polling load on the agent)
    an applied revision at least the put's. The agent's transaction for it
    comes from ``history()``. Likewise ``--adds`` times "add one Service
    (and its slice) next to N" -- kube-proxy's published anchor -- and the
    removal of those Services again.
(c) the agent's VmRSS after each step, and the latency of one
    ``health()`` call (the lab and CNI STATUS call it).

The API calls are the typed client's (``agent.api.client.AgentClient``).
Long silent phases (writing the objects, waiting for the agent, the timed
changes) show a progress bar on stderr when it is a terminal, plain lines
otherwise.

The run ends with a table and the ratios of one change at the largest size
against the smallest. Targets (from the issue): full sync of 10,000 Services
<= 2 s; one change <= 20 ms at 10,000 and within 2x of its cost at 100;
anchor: kube-proxy's nftables mode takes ~141 ms to add one Service next to
10,000.

With ``--dataplane vpp`` the node runs the VPP data plane (its own VPP, the
Services as cnat translations: docs/vpp.md) and what is nftables-specific
changes as follows, and the output says so:

* **cold** start: the node's VPP is restarted while the agent is stopped, so
  VPP comes back empty and the agent's start-up resync programs the node
  (uplink, loop0, bridge domain, ...) and every translation. (On Linux only
  the ``ip contiv`` table is deleted; the node's own links stay. On VPP the
  node part is about 15 values next to N translations.)
* the retrieve timing runs the agent's VPP descriptors here, over a second
  API connection to the node's VPP (interfaces first, as in a resync), and
  "one element added" becomes one translation made (and removed again)
  through the translations' batch group, the agent's path for a change;
* the offline build renders with the agent's ``CnatServiceRenderer``;
* the VPP process's VmRSS is reported next to the agent's.

Everything (the lab) is removed on exit, also on error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import progress, require_root, require_vpp, rss_kib, run_bench, say  # noqa: E402 -- bench/ helpers
from vpputil import lab_vpp_api, lab_vpp_pid  # noqa: E402 -- bench/ helpers (VPP runs only)
from agent.model import keys  # noqa: E402
from agent.model.records import AgentStatus  # noqa: E402
from agent.store.base import Delete, Put  # noqa: E402
from lab.cluster import Lab, _pid_alive, stop_processes  # noqa: E402

NS = "bench"
NODE = "node1"
EPS = 5
FAKE_NODES = 50
CHUNK = 100  # etcd allows 128 operations per transaction
SVC_BASE = ipaddress.IPv4Address("10.96.0.10")
EP_BASE = ipaddress.IPv4Address("10.128.0.0")
ALT_BASE = ipaddress.IPv4Address("10.250.0.0")
SERVICE_CIDR = "10.96.0.0/12"  # the agent's default service_cidr (the lab does not change it)


# --------------------------------------------------------------------------- objects
def svc_name(i: int) -> str:
    return f"s{i:05d}"


def service(i: int) -> dict:
    name = svc_name(i)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
            "spec": {"type": "ClusterIP", "clusterIP": str(SVC_BASE + i), "clusterIPs": [str(SVC_BASE + i)],
                     "selector": {"app": name}, "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoint_slice(i: int, variant: int = 0) -> dict:
    """Five endpoints; ``variant`` n moves endpoint #1 (always remote) to another address."""
    name = svc_name(i)
    eps = []
    for j in range(EPS):
        addr = EP_BASE + i * EPS + j
        if j == 1 and variant:
            addr = ALT_BASE + (i * 8 + variant) % (1 << 16)
        node = NODE if (j == 0 and i % 10 == 0) else f"fake{(i * EPS + j) % FAKE_NODES}"
        eps.append({"addresses": [str(addr)], "nodeName": node,
                    "conditions": {"ready": True, "serving": True, "terminating": False}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-0", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def puts(i: int, variant: int = 0) -> list[Put]:
    s = service(i)
    sl = endpoint_slice(i, variant)
    return [Put(keys.k8s_key("service", NS, s["metadata"]["name"]), json.dumps(s).encode()),
            Put(keys.k8s_key("endpointslice", NS, sl["metadata"]["name"]), json.dumps(sl).encode())]


def write(store, ops: list, what: str = "") -> int:
    """``ops`` in transactions of ``CHUNK``; with ``what``, progress is shown."""
    rev = 0
    if not what:
        for k in range(0, len(ops), CHUNK):
            rev = store.txn([], ops[k:k + CHUNK])[1]
        return rev
    with progress(what, len(ops)) as advance:
        for k in range(0, len(ops), CHUNK):
            rev = store.txn([], ops[k:k + CHUNK])[1]
            advance(len(ops[k:k + CHUNK]))
    return rev


# --------------------------------------------------------------------------- helpers
def summary(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    q = statistics.quantiles(s, n=10, method="inclusive") if len(s) > 1 else [s[0]] * 9
    return {"n": len(s), "p50": statistics.median(s), "p90": q[8], "min": s[0], "max": s[-1],
            "mean": statistics.fmean(s)}


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.lab = Lab("svb" + os.urandom(2).hex())
        self.store = None
        self.vpp = args.dataplane == "vpp"
        self.out: dict = {"sizes": {}, "machine": machine(), "dataplane": args.dataplane}

    # ---- agent life
    @property
    def node(self):
        return self.lab.state().node(NODE)

    def client(self, timeout: float = 30.0):
        """The node's agent (:class:`agent.api.contract.NodeAPI`)."""
        from agent.api.client import AgentClient
        return AgentClient(self.node.socket, timeout=timeout)

    def stop_agent(self) -> None:
        pid = self.node.pid
        stop_processes([pid], timeout=30)
        if _pid_alive(pid):
            raise RuntimeError(f"agent {pid} did not stop")

    def start_agent(self, timeout: float = 900.0) -> dict:
        """Start the agent as ``lab up`` does; returns start-to-ready wall time and
        the start-up resync record."""
        # The agent's own writes mark its phases, seen through a watch (no
        # polling): the node record is written once imports, netlink and the
        # subnet claim are done; the first "ready" status right after the
        # start-up resync, the watch and the API server have started.
        marks: dict[str, float] = {}
        node_key, status_key = keys.node_key(NODE), keys.status_key(NODE)

        def cb(item):
            now = time.perf_counter()
            for ev in getattr(item, "events", ()):
                if ev.key == node_key and ev.value:
                    marks.setdefault("registered", now)
                elif ev.key == status_key and ev.value and AgentStatus.from_json(ev.value).ready:
                    marks.setdefault("reported_ready", now)
        w = self.store.watch(keys.ROOT, self.store.revision() + 1, cb)
        time.sleep(0.05)
        t0 = time.perf_counter()
        pid = self.lab.start_agent(NODE)
        with progress("agent start-up (until ready)"):
            # a starting agent answers ready=False; before its socket exists, Unavailable
            self.lab.wait_ready(NODE, timeout, poll=0.01, health_timeout=60)
            ready_s = time.perf_counter() - t0
        deadline = time.perf_counter() + 10
        while len(marks) < 2 and time.perf_counter() < deadline:
            time.sleep(0.01)
        w.cancel()
        hist = self.client(timeout=120).history(limit=10000).transactions
        (rec,) = [t for t in hist if t.description == "start-up resync"]
        phases = [ln.split("start-up: ", 1)[1] for ln in self.lab.paths.agent_log(NODE).read_text(
            errors="replace").splitlines() if "start-up: " in ln]
        say(f"  agent: {phases[-1] if phases else '(no start-up line in its log)'}")
        return {"ready_s": ready_s, "resync": txn_summary(rec), "rss_kib": rss_kib(pid),
                "vpp_rss_kib": rss_kib(lab_vpp_pid(self.lab, NODE)) if self.vpp else None,
                "agent_phases": phases[-1] if phases else "",
                "to_registered_s": marks["registered"] - t0,
                # list + build + retrieve + plan + nft, and starting the watch and the API
                "sync_s": marks["reported_ready"] - marks["registered"]}

    def health_ms(self, n: int = 5) -> float:
        c = self.client()
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            c.health()
            xs.append((time.perf_counter() - t) * 1000)
        return statistics.median(xs)

    # ---- one change, timed through the status watch
    def timed_change(self, ops: list, describe: str) -> dict:
        q: queue.Queue = queue.Queue()
        status_key = keys.status_key(NODE)

        def cb(item):
            if hasattr(item, "events"):
                now = time.perf_counter()
                for ev in item.events:
                    if ev.key == status_key and ev.value:
                        q.put((now, AgentStatus.from_json(ev.value).applied_revision))
        w = self.store.watch(status_key, self.store.revision() + 1, cb)
        try:
            time.sleep(0.05)  # let the watch be established before the clock starts
            t0 = time.perf_counter()
            _, rev = self.store.txn([], ops)
            while True:
                t, applied = q.get(timeout=120)
                if applied >= rev:
                    break
        finally:
            w.cancel()
        e2e_ms = (t - t0) * 1000
        hist = self.client().history(limit=20).transactions
        # "service ns/name" (one transaction per Service) or "services: ns/name, ..."
        mine = [h for h in hist if describe in h.description]
        return {"e2e_ms": e2e_ms, "revision": rev, "txn": txn_summary(mine[-1]) if mine else None}

    # ---- phases timed outside the agent
    def offline_phases(self, n: int) -> dict:
        """The agent's start-up work before the data plane, with its own code, here:
        the etcd listing, folding it into a cluster snapshot, and building every
        Service's values (``ServiceSync.partitions``: builder, and the agent's nftables
        renderer with its group ids)."""
        from agent.cluster import ClusterSnapshot
        from agent.desired import DesiredState
        from agent.reconciler import Scheduler
        from agent.services import ServiceSync
        from agent.store.base import Event
        t = time.perf_counter()
        kvs, _ = self.store.list(keys.ROOT)
        list_s = time.perf_counter() - t
        snap = ClusterSnapshot()
        t = time.perf_counter()
        for kv in kvs:
            if kv.key.startswith(keys.WATCHED):
                snap.apply(Event(kv.key, kv.value, kv.mod_revision))
        decode_s = time.perf_counter() - t
        if self.vpp:  # the renderer VppDataplane.service_renderer() makes
            from agent.vpp.services import CnatServiceRenderer
            renderer = CnatServiceRenderer(lambda: (self.node.data_ip,), SERVICE_CIDR)
        else:
            from agent.linux.svcstate import NftServiceRenderer
            renderer = NftServiceRenderer()
        sync = ServiceSync(snap, DesiredState(Scheduler()), NODE, renderer)
        t = time.perf_counter()
        parts = sync.partitions()
        build_s = time.perf_counter() - t
        return {"etcd_list_s": list_s, "decode_s": decode_s, "build_render_s": build_s,
                "service_values": sum(len(v) for v in parts.values()), "objects": len(kvs)}

    def retrieve_vpp(self) -> dict:
        """The VPP counterpart of :meth:`retrieve_in_node`, in this process over a
        second API connection to the node's VPP: every VPP descriptor's
        ``retrieve`` in the agent's order (interfaces first: the others find ours
        through them), and one translation made through the translations' batch
        group (``call_many`` of one ``cnat_translation_update``; removed again,
        untimed) -- the fixed cost of a one-Service change at this size."""
        from agent.reconciler.plan import Operation, OpKind
        from agent.vpp.descriptors import descriptors
        from agent.vpp.svcdesc import CnatPath, CnatTranslation, translation_key

        class Ctx:  # what the batch group asks of the scheduler: metadata by key
            def __init__(self):
                self.meta: dict = {}

            def metadata(self, key):
                return self.meta.get(key)
        api = lab_vpp_api(self.lab, NODE)
        try:
            out: dict = {}
            ds = descriptors(api, (self.lab.state().pod_cidr, SERVICE_CIDR))
            for d in ds:
                t = time.perf_counter()
                r = d.retrieve({}, None)
                out[d.name] = [time.perf_counter() - t, len(r)]
            (td,) = [d for d in ds if d.name == "vpp-cnat-translation"]
            v = CnatTranslation("10.111.255.254", 9, "tcp", (CnatPath("10.250.255.254", 9),))
            key = translation_key(v.proto, v.vip, v.port)
            xs = []
            for _ in range(5):
                ctx = Ctx()
                t = time.perf_counter()
                res = td.batch_group.apply([Operation(OpKind.CREATE, key, v, "bench")], [td], ctx)
                xs.append(time.perf_counter() - t)
                if not isinstance(res[0], dict):
                    raise RuntimeError(f"one translation: {res}")
                ctx.meta[key] = res[0]
                assert td.batch_group.apply([Operation(OpKind.DELETE, key, v, "bench")], [td], ctx) == [None]
            out["one-translation-txn"] = [sorted(xs)[2], 5]
            self.out.setdefault("vpp_version", api.version())
            return out
        finally:
            api.close()

    def retrieve_in_node(self) -> dict:
        """Timed in the node's namespace with the agent's own descriptors: their
        ``retrieve`` of the table (one shared context, as in one resync) and one
        element added (and removed again) through the batch group the agent
        uses -- the fixed cost of a one-element change at this table size."""
        code = (
            "import json, time\n"
            "from agent.linux.nft.lib import Nftables\n"
            "from agent.linux.nft.descriptors import descriptors\n"
            "from agent.linux.nft.values import NftElement, NftSet, element_key\n"
            "from agent.linux import svcrender\n"
            "from agent.reconciler.plan import Operation, OpKind\n"
            "n = Nftables(); out = {}; ctx = object()\n"
            "base = svcrender.render_base('10.1.1.1', 'vxlan0')\n"
            "ds = descriptors(n)\n"
            "for d in ds:\n"
            "    corr = {k: v for k, v in base.items() if k.startswith(d.key_prefix)}\n"
            "    t = time.perf_counter(); r = d.retrieve(corr, ctx)\n"
            "    out[d.name] = [time.perf_counter() - t, len(r)]\n"
            "t = time.perf_counter(); n.run('list table ip contiv')\n"
            "out['list-text'] = [time.perf_counter() - t, 0]\n"
            "sets = [v for v in base.values() if isinstance(v, NftSet) and v.static and ':' not in v.spec\n"
            "        and v.spec.count('.') == 2]\n"
            "el = NftElement(sets[0].name, '10.255.255.254 . tcp . 9')\n"
            "(ed,) = [d for d in ds if d.name == 'nft-element']\n"
            "key = element_key(el.set, el.key); xs = []\n"
            "for _ in range(5):\n"
            "    t = time.perf_counter()\n"
            "    res = ed.batch_group.apply([Operation(OpKind.CREATE, key, el, 'bench')], [ed], None)\n"
            "    xs.append(time.perf_counter() - t)\n"
            "    assert res == [None], res\n"
            "    assert ed.batch_group.apply([Operation(OpKind.DELETE, key, el, 'bench')], [ed], None) == [None]\n"
            "out['one-element-txn'] = [sorted(xs)[2], 5]\n"
            "print(json.dumps(out))\n")
        p = subprocess.run(["ip", "netns", "exec", self.node.netns, sys.executable, "-c", code],
                           capture_output=True, text=True, cwd=REPO)
        if p.returncode:
            say(f"retrieve timing failed: {p.stderr.strip()[-500:]}")
            return {}
        return json.loads(p.stdout)

    def import_time(self) -> float:
        if self.vpp:  # what a VPP agent imports by the time it serves (VppDataplane.open + renderers)
            code = ("import time; t = time.perf_counter(); import contivctl.main, agent.daemon, agent.store.etcd, "
                    "agent.api.server, agent.api.routes, agent.facade; from agent.vpp import plane, render, "
                    "services, svcdesc, policies, poldesc, papi, descriptors, messages; "
                    "from agent.linux import links, netns, routes; import vpp_papi; "
                    "print(time.perf_counter() - t)")
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
            return time.perf_counter() - t, float(p.stdout)
        # what a Linux agent imports by the time it serves (agent.linux.plane picks the renderers)
        code = ("import time; t = time.perf_counter(); import contivctl.main, agent.daemon, agent.store.etcd, "
                "agent.api.server, agent.api.routes, agent.facade; from agent import linux; "
                "from agent.linux import plane, render, svcrender, svcstate, polstate, netns; "
                "import agent.linux.nft.descriptors; print(time.perf_counter() - t)")
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
        return time.perf_counter() - t, float(p.stdout)

    # ---- the run
    def run(self) -> dict:
        say(f"lab up (1 node, {self.args.dataplane} data plane)")
        self.lab.up(nodes=1, dataplane=self.args.dataplane)
        if self.vpp:
            say("VPP: cold = the node's VPP restarted empty while the agent is stopped (node values and "
                "every translation programmed); retrieve = the agent's VPP descriptors over a second API "
                "connection; no nftables figures")
        self.store = self.lab.store()
        have = 0
        for n in self.args.sizes:
            say(f"--- {n} Services")
            r: dict = {}
            self.stop_agent()
            ops = [op for i in range(have, n) for op in puts(i)]
            t = time.perf_counter()
            write(self.store, ops, f"writing {n - have:,} Services + slices to etcd")
            r["etcd_write_s"] = time.perf_counter() - t
            have = n
            if self.vpp:  # VPP comes back empty: everything is programmed again
                self.lab.stop_vpp(NODE, kill=False)
                self.lab.start_vpp(NODE)
            else:
                subprocess.run(["ip", "netns", "exec", self.node.netns, "nft", "delete", "table", "ip",
                                "contiv"], check=True)
            say("cold start")
            r["cold"] = self.start_agent()
            say(f"  ready in {r['cold']['ready_s']:.2f}s; resync {r['cold']['resync']}")
            r["health_ms"] = self.health_ms()
            self.stop_agent()
            say("warm restart")
            r["warm"] = self.start_agent()
            say(f"  ready in {r['warm']['ready_s']:.2f}s; resync {r['warm']['resync']}")
            r["retrieve"] = self.retrieve_vpp() if self.vpp else self.retrieve_in_node()
            r["offline"] = self.offline_phases(n)
            say(f"  offline {r['offline']}")
            # (b) one endpoint change, then add/remove one Service
            target = n // 2 + 1 if (n // 2 + 1) % 10 else n // 2 + 3  # no local endpoint
            changes = []
            adds, dels = [], []
            extra = [100000 + n + k for k in range(self.args.adds)]
            with progress("timed changes: endpoint changes, Service adds and removals",
                          self.args.changes + 2 * len(extra)) as advance:
                for k in range(self.args.changes):
                    changes.append(self.timed_change(puts(target, variant=(k % 2) + 1)[1:],
                                                     f"{NS}/{svc_name(target)}"))
                    advance()
                write(self.store, puts(target)[1:])  # back to the original slice
                for i in extra:
                    adds.append(self.timed_change(puts(i), f"{NS}/{svc_name(i)}"))
                    advance()
                for i in extra:
                    dels.append(self.timed_change(
                        [Delete(op.key) for op in puts(i)[::-1]], f"{NS}/{svc_name(i)}"))
                    advance()
            r["change"] = changes
            r["add"], r["remove"] = adds, dels
            r["rss_kib"] = rss_kib(self.node.pid)
            if self.vpp:
                r["vpp_rss_kib"] = rss_kib(lab_vpp_pid(self.lab, NODE))
            r["health_ms_after"] = self.health_ms()
            self.out["sizes"][n] = r
            say(f"  change e2e p50 {summary([c['e2e_ms'] for c in changes])['p50']:.1f} ms, "
                f"add p50 {summary([c['e2e_ms'] for c in adds])['p50']:.1f} ms, rss {r['rss_kib'] / 1024:.0f} MiB"
                + (f", VPP rss {r['vpp_rss_kib'] / 1024:.0f} MiB" if self.vpp else ""))
        self.out["import_s"] = self.import_time()
        return self.out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.lab.down()


def txn_summary(rec) -> dict:
    """The figures of one agent transaction (an ``agent.model.api.TxnRecord``)."""
    ops = rec.operations
    by: dict[str, list] = {}
    for o in ops:
        kind = o.key.split("/")[1] + ":" + o.op
        by.setdefault(kind, []).append(o.duration_ms)
    ops_ms = sum(o.duration_ms for o in ops)
    return {"duration_ms": rec.duration_ms, "operations": len(ops), "ops_ms": round(ops_ms, 3),
            "plan_ms": round(rec.duration_ms - ops_ms, 3), "ok": rec.ok,
            "by_kind": {k: len(v) for k, v in sorted(by.items())}}


def machine() -> dict:
    import hashlib

    import agent

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout

    # the code measured: the commit plus any uncommitted change of the agent,
    # identified by the hash of the diff (the agent is imported from REPO:
    # run from a copy of a tree to measure that tree while it keeps changing)
    diff = git("diff", "HEAD", "--", "agent", "lab")
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "nft": subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip(),
            "commit": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": git("diff", "HEAD", "--stat", "--", "agent", "lab").strip().splitlines(),
            "uncommitted_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else "",
            "untracked": [ln[3:] for ln in git("status", "--porcelain", "--", "agent", "lab").splitlines()
                          if ln.startswith("??")],
            "agent_imported_from": str(Path(agent.__file__).parent),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}


def report(out: dict) -> str:
    sizes = sorted(out["sizes"])
    lines = []

    def row(label, f, fmt="{:.1f}"):
        vals = []
        for n in sizes:
            try:
                v = f(out["sizes"][n])
                vals.append(fmt.format(v) if v is not None else "-")
            except (KeyError, TypeError, statistics.StatisticsError, IndexError):
                vals.append("-")
        lines.append(f"| {label} | " + " | ".join(vals) + " |")

    vpp = out.get("dataplane") == "vpp"
    dp = "VPP" if vpp else "nft"
    if vpp:
        lines.append(f"data plane: VPP {out.get('vpp_version', '')} (cnat); cold = VPP restarted empty; "
                     "retrieve = the agent's VPP descriptors; no nftables figures")
        lines.append("")
    lines.append("| Services (x 5 endpoints) | " + " | ".join(f"{n:,}" for n in sizes) + " |")
    lines.append("|---|" + "---:|" * len(sizes))
    p = lambda xs, q: summary(xs)[q]  # noqa: E731
    row("cold start to ready (s)", lambda r: r["cold"]["ready_s"], "{:.2f}")
    row("  start to registered (s)", lambda r: r["cold"]["to_registered_s"], "{:.2f}")
    row("  registered to ready: the sync (s)", lambda r: r["cold"]["sync_s"], "{:.2f}")
    row("  start-up resync txn (ms)", lambda r: r["cold"]["resync"]["duration_ms"])
    row(f"    of which {dp} operations (ms)", lambda r: r["cold"]["resync"]["ops_ms"])
    row("    operations", lambda r: r["cold"]["resync"]["operations"], "{:,}")
    row("warm restart to ready (s)", lambda r: r["warm"]["ready_s"], "{:.2f}")
    row("  registered to ready: the sync (s)", lambda r: r["warm"]["sync_s"], "{:.2f}")
    row("  start-up resync txn (ms)", lambda r: r["warm"]["resync"]["duration_ms"])
    row("    operations", lambda r: r["warm"]["resync"]["operations"], "{:,}")
    row("one endpoint change, e2e p50 (ms)", lambda r: p([c["e2e_ms"] for c in r["change"]], "p50"))
    row("one endpoint change, e2e p90 (ms)", lambda r: p([c["e2e_ms"] for c in r["change"]], "p90"))
    row("  agent txn p50 (ms)", lambda r: p([c["txn"]["duration_ms"] for c in r["change"] if c["txn"]], "p50"), "{:.2f}")
    row(f"    of which {dp} (ms)", lambda r: p([c["txn"]["ops_ms"] for c in r["change"] if c["txn"]], "p50"), "{:.2f}")
    row("add one Service, e2e p50 (ms)", lambda r: p([c["e2e_ms"] for c in r["add"]], "p50"))
    row("add one Service, e2e p90 (ms)", lambda r: p([c["e2e_ms"] for c in r["add"]], "p90"))
    row("  agent txn p50 (ms)", lambda r: p([c["txn"]["duration_ms"] for c in r["add"] if c["txn"]], "p50"), "{:.2f}")
    row("remove one Service, e2e p50 (ms)", lambda r: p([c["e2e_ms"] for c in r["remove"]], "p50"))
    row("agent RSS after (MiB)", lambda r: r["rss_kib"] / 1024, "{:.0f}")
    row("agent RSS after cold start (MiB)", lambda r: r["cold"]["rss_kib"] / 1024, "{:.0f}")
    if vpp:
        row("VPP RSS after (MiB)", lambda r: r["vpp_rss_kib"] / 1024, "{:.0f}")
        row("VPP RSS after cold start (MiB)", lambda r: r["cold"]["vpp_rss_kib"] / 1024, "{:.0f}")
    row("agent health() call (ms)", lambda r: r["health_ms_after"], "{:.1f}")
    row("offline: etcd list (s)", lambda r: r["offline"]["etcd_list_s"], "{:.3f}")
    row("offline: decode into snapshot (s)", lambda r: r["offline"]["decode_s"], "{:.3f}")
    row("offline: build + render every Service (s)", lambda r: r["offline"]["build_render_s"], "{:.3f}")
    if vpp:
        row("retrieve, all VPP descriptors (s)", lambda r: sum(v[0] for k, v in r["retrieve"].items()
                                                               if k.startswith("vpp-")), "{:.3f}")
        row("retrieve: cnat translations (s)", lambda r: r["retrieve"]["vpp-cnat-translation"][0], "{:.3f}")
        row("  translations found", lambda r: r["retrieve"]["vpp-cnat-translation"][1], "{:,}")
        row("VPP: one translation made, agent path (ms)",
            lambda r: r["retrieve"]["one-translation-txn"][0] * 1000, "{:.3f}")
    else:
        row("retrieve, all descriptors (s)", lambda r: sum(v[0] for k, v in r["retrieve"].items()
                                                           if k.startswith("nft-")), "{:.3f}")
        row("retrieve: sets (s)", lambda r: r["retrieve"]["nft-set"][0], "{:.3f}")
        row("retrieve: chains (s)", lambda r: r["retrieve"]["nft-chain"][0], "{:.3f}")
        row("retrieve: elements (s)", lambda r: r["retrieve"]["nft-element"][0], "{:.3f}")
        row("nft: list table, text (s)", lambda r: r["retrieve"]["list-text"][0], "{:.3f}")
        row("nft: one element added, agent path (ms)", lambda r: r["retrieve"]["one-element-txn"][0] * 1000, "{:.3f}")
    lines.append("")
    lo, hi = sizes[0], sizes[-1]

    def ratio(f):
        a, b = f(out["sizes"][lo]), f(out["sizes"][hi])
        return f"{b / a:.2f}x ({a:.1f} -> {b:.1f} ms)"
    lines.append(f"ratio one endpoint change {hi:,} vs {lo:,}: e2e p50 "
                 + ratio(lambda r: p([c["e2e_ms"] for c in r["change"]], "p50"))
                 + "; agent txn p50 "
                 + ratio(lambda r: p([c["txn"]["duration_ms"] for c in r["change"] if c["txn"]], "p50")))
    lines.append(f"ratio add one Service {hi:,} vs {lo:,}: e2e p50 "
                 + ratio(lambda r: p([c["e2e_ms"] for c in r["add"]], "p50")))
    lines.append(f"interpreter + imports of the agent: {out['import_s'][0]:.2f}s wall "
                 f"({out['import_s'][1]:.2f}s imports)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataplane", choices=("linux", "vpp"), default="linux",
                    help="the lab node's data plane (default linux: nftables; vpp: cnat)")
    ap.add_argument("--sizes", default="100,1000,10000",
                    type=lambda s: sorted(int(x.replace("_", "")) for x in s.split(",")))
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--adds", type=int, default=10)
    ap.add_argument("--json", help="write every figure and sample to this file")
    args = ap.parse_args()
    if not require_root("services_scale"):
        return 2
    if args.dataplane == "vpp" and not require_vpp("services_scale"):
        return 2
    return run_bench(lambda: Bench(args), report, args.json, "services_scale")


if __name__ == "__main__":
    sys.exit(main())
