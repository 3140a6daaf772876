#!/usr/bin/env python3
"""Lab scale: how long ``contivctl lab`` takes to build a cluster and to run pods on it.

Run as root from the repository::

    .venv/bin/python bench/lab_scale.py [--nodes 3] [--sizes 50,200] [--up-runs 3]
                                        [--no-breakdown] [--sweep-workers 1,2,4,16]
                                        [--one-node] [--json FILE]

What is timed (wall clock, as a user sees it: the real CLI, run as a subprocess):

* ``lab up --nodes N`` (``--up-runs`` times, each followed by a timed ``lab down``), split
  into phases by the time stamps of the progress lines ``up`` prints on stderr: interpreter
  and imports, network (namespaces, bridge, veths), etcd start, agents ready, pod responder.
* For each size S: ``lab apply -f FILE`` of one multi-document YAML (a Namespace and S pods
  without ``spec.nodeName``, so the scheduler spreads them; each pod declares one TCP port),
  then ``lab delete -f FILE`` of the same file. Per pod: wall / S.

After each apply the run checks that it measured a working cluster: every pod Running with an
address, a few cross-node probes answered by the right pod. After each delete: no pod, no
address left in any node's IPAM. A failed check aborts the run.

Where the time goes (``--no-breakdown`` skips it): the same apply and delete again, in this
process through the Python API the CLI calls (:class:`lab.kube.Kube`), with every step of the
lab's kubelet wrapped by a timer: pod namespace creation (``ip netns add`` + ``lo`` up), CNI
ADD/DEL (the real ``contiv-cni`` process talking to the agent), the responder call, etcd
writes, endpoint sync and the final wait for every agent to apply the revision. Steps run on
the lab's worker threads (``lab.kube.WORKERS``) in parallel, so their sums are thread-seconds,
not wall time; the table gives both. Inside the agent, its ``pods()`` gives each ADD's
``ipam_ms``/``render_ms``/``dataplane_ms``. CPU seconds (utime+stime) over the apply are read
for the agents, etcd and the responder from ``/proc``, and for this process and the processes
it spawned (``ip``, ``contiv-cni``) from ``getrusage``: with 2 CPUs, CPU-seconds / wall says how
busy the machine was.

Also counted: every change etcd recorded during the instrumented apply/delete, by key family
(pods, IPAM records, agents' status reports...), replayed from etcd's history. And, with
``--sweep-workers``, the instrumented run of the largest size again with other numbers of lab
worker threads, to see whether more parallelism would help on this machine.

Memory: VmRSS/VmHWM of every agent, etcd and the responder after each step.

Everything (the lab, temporary files) is removed on exit, also on error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from common import (cpu_seconds, git_revision, kib, proc_status, require_root,  # noqa: E402 -- bench/ helpers
                    stop_signals_interrupt, uninterruptible, write_json)
from lab import sysnet  # noqa: E402
from lab.cluster import Lab  # noqa: E402

CLI = [sys.executable, "-m", "contivctl.main"]
K8S_NS = "scale"
PORT = 8080


# --------------------------------------------------------------------------- helpers
def summary(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    q = statistics.quantiles(s, n=10, method="inclusive") if len(s) > 1 else [s[0]] * 9
    return {"n": len(s), "p50": statistics.median(s), "p90": q[8], "mean": statistics.fmean(s),
            "min": s[0], "max": s[-1], "sum": sum(s)}


def own_cpu() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"self": me.ru_utime + me.ru_stime, "children": ch.ru_utime + ch.ru_stime}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def manifest(size: int, node: str | None = None) -> str:
    """A Namespace and ``size`` pods, each declaring one TCP port; spread by the
    lab's scheduler, or all on ``node``."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": K8S_NS}}]
    for i in range(size):
        spec = {"containers": [{"name": "main", "image": "lab", "ports": [{"containerPort": PORT}]}]}
        if node:
            spec["nodeName"] = node
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"p{i:04d}", "namespace": K8S_NS, "labels": {"app": "scale"}},
                     "spec": spec})
    return yaml.safe_dump_all(docs, sort_keys=False)


class Failure(RuntimeError):
    pass


# --------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lab = Lab("ls" + secrets.token_hex(3))  # ≤ 8 chars, random: cannot clash
        self.tmp = Path(tempfile.mkdtemp(prefix="lab-scale-"))
        self.result: dict = {"lab": self.lab.name, "nodes": args.nodes, "up": [], "sizes": {}}

    # -- CLI ---------------------------------------------------------------
    def cli(self, *argv: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
        t = time.perf_counter()
        p = subprocess.run(CLI + list(argv), capture_output=True, text=True, cwd=REPO, timeout=timeout)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            raise Failure(f"contivctl {' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
        return dt, p

    def up(self) -> dict:
        """``lab up``, phases from the time stamps of its progress lines."""
        n = self.lab.name
        t0 = time.perf_counter()
        p = subprocess.Popen(CLI + ["lab", "up", "--name", n, "--nodes", str(self.args.nodes)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        marks: list[tuple[float, str]] = []
        for line in p.stderr:
            marks.append((time.perf_counter() - t0, line.strip()))
        p.stdout.read()
        rc = p.wait()
        total = time.perf_counter() - t0
        if rc != 0:
            raise Failure(f"lab up exited {rc}: {[m for _, m in marks]}")

        def at(prefix: str, last: bool = False) -> float:
            hits = [t for t, m in marks if m.startswith(f"lab {n}: {prefix}")]
            if not hits:
                raise Failure(f"lab up printed no '{prefix}' line: {[m for _, m in marks]}")
            return hits[-1] if last else hits[0]
        t_net, t_etcd, t_agents = at("underlay"), at("etcd"), at("agents")
        t_ready, t_done = at("agent node", last=True), at("up with")
        return {"total_s": total,
                "phases_s": {"start (interpreter, imports, checks)": t_net,
                             "network (namespaces, bridge, veths)": t_etcd - t_net,
                             "etcd start + CNI install": t_agents - t_etcd,
                             "agents start until all ready": t_ready - t_agents,
                             "pod responder, state": t_done - t_ready,
                             "output, exit": total - t_done}}

    # -- the lab's processes ---------------------------------------------
    def pids(self) -> dict[str, int]:
        st = self.lab.state()
        out = {f"agent {x.name}": x.pid for x in st.nodes}
        out["etcd"] = st.etcd_pid
        out["responder"] = st.responder_pid
        return out

    def memory(self) -> dict[str, dict]:
        out = {}
        for what, pid in self.pids().items():
            s = proc_status(pid)
            out[what] = {"vmrss_kib": kib(s.get("VmRSS", "")), "vmhwm_kib": kib(s.get("VmHWM", "")),
                         "threads": int(s.get("Threads", "0") or 0)}
        return out

    def cpu(self) -> dict[str, float]:
        out = {what: cpu_seconds(pid) for what, pid in self.pids().items()}
        out.update({f"bench {k}": v for k, v in own_cpu().items()})
        return out

    @staticmethod
    def cpu_delta(a: dict, b: dict) -> dict[str, float]:
        return {k: round(b[k] - a[k], 3) for k in a}

    # -- checks: we measured a working cluster ---------------------------
    def check_running(self, size: int) -> dict[str, int]:
        from lab.kube import Kube  # noqa: PLC0415
        from lab.ops import run_probe  # noqa: PLC0415
        kube = Kube(self.lab)
        try:
            pods = [p for p in kube.list("pod", K8S_NS)]
            running = [p for p in pods if p.get("status", {}).get("phase") == "Running"
                       and p["status"].get("podIP")]
            if len(running) != size:
                raise Failure(f"{len(running)} of {size} pods Running after apply")
            per_node: dict[str, int] = defaultdict(int)
            for p in running:
                per_node[p["spec"]["nodeName"]] += 1
            by_node: dict[str, list] = defaultdict(list)
            for p in running:
                by_node[p["spec"]["nodeName"]].append(f"{K8S_NS}/{p['metadata']['name']}")
            nodes = sorted(by_node)
            for i, a in enumerate(nodes):  # one probe from each node to the next
                src, dst = by_node[a][0], by_node[nodes[(i + 1) % len(nodes)]][-1]
                r = run_probe(kube, src, dst, None, "TCP", 2.0)
                if not r.connected or r.answered_by != dst:
                    raise Failure(f"probe {src} -> {dst}: {r.to_dict()}")
            return dict(sorted(per_node.items()))
        finally:
            kube.close()

    def check_gone(self) -> None:
        for n in self.lab.state().nodes:
            ipam = self.lab.client(n.name).ipam()
            if ipam.used:
                raise Failure(f"{n.name}: {ipam.used} address(es) still allocated after delete")
        if [x for x in sysnet.netns_list(self.lab.paths.ns_prefix) if "-pod-" in x]:
            raise Failure("pod namespaces left after delete")

    def etcd_writes(self, r0: int, r1: int) -> dict[str, int]:
        """Every change the store recorded in (r0, r1], counted by key family."""
        from agent.model import keys  # noqa: PLC0415
        store = self.lab.store()
        got: list = []
        done = threading.Event()

        def cb(batch) -> None:
            if isinstance(batch, Exception):
                got.append(batch)
                done.set()
                return
            got.extend(batch.events)
            # (the batch's header revision is the store's *current* one: only
            # an event at r1 says that the replay got there)
            if any(e.revision >= r1 for e in batch.events):
                done.set()
        w = store.watch(keys.ROOT, r0 + 1, cb)
        try:
            complete = done.wait(60)
        finally:
            w.cancel()
            store.close()
        errors = [e for e in got if isinstance(e, Exception)]
        if errors or not complete:
            raise Failure(f"replaying etcd history ({r0}, {r1}]: "
                          f"{errors[0] if errors else 'did not reach ' + str(r1)}")
        out: dict[str, int] = defaultdict(int)
        for e in got:
            if e.revision > r1:
                continue
            k = e.key[len(keys.ROOT):]
            fam = "/".join(k.split("/")[:2]) if k.startswith("k8s/") else k.split("/")[0]
            out[fam + (" (delete)" if e.deleted else "")] += 1
        out = dict(sorted(out.items()))
        out["revisions"] = r1 - r0  # a transaction writes several keys at one revision
        return out

    def agent_add_timings(self) -> dict[str, dict]:
        vals: dict[str, list[float]] = defaultdict(list)
        for n in self.lab.state().nodes:
            for p in self.lab.client(n.name).pods().pods:
                for k, v in ((p.timings or {}).get("add") or {}).items():
                    vals[k].append(v)
        return {k: summary(v) for k, v in vals.items()}

    # -- one size through the CLI -----------------------------------------
    def size_cli(self, size: int, path: str) -> dict:
        n = self.lab.name
        c0 = self.cpu()
        t_apply, p = self.cli("lab", "apply", "--name", n, "-f", path, "--timeout", "600")
        c1 = self.cpu()
        created = sum(1 for line in p.stdout.splitlines() if line.startswith("Pod ") and
                      line.split()[-1] == "created")
        if created != size:
            raise Failure(f"apply created {created} pods, expected {size}")
        per_node = self.check_running(size)
        agent_add = self.agent_add_timings()
        mem_after_apply = self.memory()
        c2 = self.cpu()
        t_delete, _ = self.cli("lab", "delete", "--name", n, "-f", path, "--timeout", "600")
        c3 = self.cpu()
        self.check_gone()
        return {"apply_s": t_apply, "apply_ms_per_pod": 1000 * t_apply / size,
                "delete_s": t_delete, "delete_ms_per_pod": 1000 * t_delete / size,
                "pods_per_node": per_node, "agent_add_ms": agent_add,
                "cpu_s_apply": self.cpu_delta(c0, c1), "cpu_s_delete": self.cpu_delta(c2, c3),
                "memory_after_apply": mem_after_apply, "memory_after_delete": self.memory()}

    # -- every pod on node1: what do the other agents spend? ----------------
    def size_one_node(self, size: int) -> dict:
        path = str(self.tmp / f"pods-{size}-node1.yaml")
        Path(path).write_text(manifest(size, "node1"))
        n = self.lab.name
        c0 = self.cpu()
        t_apply, _ = self.cli("lab", "apply", "--name", n, "-f", path, "--timeout", "600")
        c1 = self.cpu()
        if self.check_running_on(size) != {"node1": size}:
            raise Failure("pods not all on node1")
        c2 = self.cpu()
        t_delete, _ = self.cli("lab", "delete", "--name", n, "-f", path, "--timeout", "600")
        c3 = self.cpu()
        self.check_gone()
        return {"size": size, "apply_s": t_apply, "delete_s": t_delete,
                "cpu_s_apply": self.cpu_delta(c0, c1), "cpu_s_delete": self.cpu_delta(c2, c3)}

    def check_running_on(self, size: int) -> dict[str, int]:
        from lab.kube import Kube  # noqa: PLC0415
        kube = Kube(self.lab)
        try:
            per: dict[str, int] = defaultdict(int)
            for p in kube.list("pod", K8S_NS):
                if p.get("status", {}).get("phase") == "Running":
                    per[p["spec"]["nodeName"]] += 1
        finally:
            kube.close()
        if sum(per.values()) != size:
            raise Failure(f"{sum(per.values())} of {size} pods Running")
        return dict(per)

    # -- one size, instrumented, in process -------------------------------
    def size_breakdown(self, size: int, path: str) -> dict:
        from lab import kube as kube_mod  # noqa: PLC0415
        from lab.ops import read_manifests  # noqa: PLC0415
        objs = read_manifests([path])
        times: dict[str, list[float]] = defaultdict(list)
        spans: dict[str, list[float]] = defaultdict(list)  # first start, last end per step
        lock = threading.Lock()

        def wrap(key: str, fn):
            def timed(*a, **kw):
                t = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    e = time.perf_counter()
                    with lock:
                        times[key].append(e - t)
                        spans[key] += [t, e]
            return timed

        saved = (sysnet.netns_add, sysnet.netns_del)
        sysnet.netns_add = wrap("netns add (ip netns add, lo up)", sysnet.netns_add)
        sysnet.netns_del = wrap("netns del (ip netns del)", sysnet.netns_del)
        out = {}
        try:
            for op in ("apply", "delete"):
                times.clear()
                spans.clear()
                kube = kube_mod.Kube(self.lab)
                try:
                    kube.runtime.add = wrap("CNI ADD (contiv-cni + agent)", kube.runtime.add)
                    kube.runtime.delete = wrap("CNI DEL (contiv-cni + agent)", kube.runtime.delete)
                    kube.responder.call = wrap("responder call", kube.responder.call)
                    kube._put = wrap("etcd put", kube._put)
                    kube._delete_key = wrap("etcd delete", kube._delete_key)
                    kube._sync_endpoints = wrap("endpoint slices sync", kube._sync_endpoints)
                    kube.wait_agents = wrap("wait for agents (after the last pod)", kube.wait_agents)
                    kube._start_pod = wrap("pod start (worker, all steps)", kube._start_pod)
                    kube._stop_pod = wrap("pod stop (worker, all steps)", kube._stop_pod)
                    r0 = kube.store.revision()
                    c0 = self.cpu()
                    t0 = time.perf_counter()
                    (kube.apply if op == "apply" else kube.delete)(objs, timeout=600)
                    wall = time.perf_counter() - t0
                    cpu = self.cpu_delta(c0, self.cpu())
                    r1 = kube.store.revision()
                finally:
                    kube.close()
                writes = self.etcd_writes(r0, r1)
                if op == "apply":
                    self.check_running(size)
                    agent_add = self.agent_add_timings()
                else:
                    self.check_gone()
                    agent_add = {}
                steps = {k: {**summary(v), "span_s": max(spans[k]) - min(spans[k])}
                         for k, v in times.items()}
                out[op] = {"wall_s": wall, "steps": steps, "cpu_s": cpu, "agent_add_ms": agent_add,
                           "workers": kube_mod.WORKERS, "etcd_writes": writes}
        finally:
            sysnet.netns_add, sysnet.netns_del = saved
        return out

    # -- the whole run -----------------------------------------------------
    def run(self) -> dict:
        a = self.args
        r = self.result
        r["machine"] = {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version(), "loadavg_before": loadavg()}
        r["commit"] = git_revision(REPO)
        for i in range(a.up_runs):
            say(f"lab up --nodes {a.nodes} ({i + 1}/{a.up_runs})")
            u = self.up()
            u["memory"] = self.memory()
            if i < a.up_runs - 1:
                t, _ = self.cli("lab", "down", "--name", self.lab.name)
                u["down_s"] = t
            r["up"].append(u)
        for size in a.sizes:
            path = str(self.tmp / f"pods-{size}.yaml")
            Path(path).write_text(manifest(size))
            say(f"{size} pods: lab apply / lab delete")
            entry = self.size_cli(size, path)
            if not a.no_breakdown:
                say(f"{size} pods: instrumented apply / delete")
                entry["breakdown"] = self.size_breakdown(size, path)
            r["sizes"][str(size)] = entry
        if a.one_node and a.sizes:
            size = min(max(a.sizes), 250)  # a node's pod subnet is a /24
            say(f"{size} pods all on node1: lab apply / lab delete")
            r["one_node"] = self.size_one_node(size)
        if a.sweep_workers and a.sizes:
            from lab import kube as kube_mod  # noqa: PLC0415
            size = max(a.sizes)
            path = str(self.tmp / f"pods-{size}.yaml")
            default = kube_mod.WORKERS
            r["workers_sweep"] = {"size": size, "default": default, "runs": {}}
            try:
                for w in a.sweep_workers:
                    kube_mod.WORKERS = w
                    say(f"{size} pods, {w} worker threads: instrumented apply / delete")
                    b = self.size_breakdown(size, path)
                    r["workers_sweep"]["runs"][str(w)] = {
                        op: {"wall_s": b[op]["wall_s"], "cpu_s": b[op]["cpu_s"],
                             "steps_p50_ms": {k: 1000 * v["p50"] for k, v in b[op]["steps"].items()}}
                        for op in ("apply", "delete")}
            finally:
                kube_mod.WORKERS = default
        t, _ = self.cli("lab", "down", "--name", self.lab.name)
        r["down_s_final"] = t
        r["machine"]["loadavg_after"] = loadavg()
        return r

    def teardown(self) -> None:
        with uninterruptible():
            try:
                self.lab.down()
            except Exception as e:  # noqa: BLE001 -- keep cleaning, but say what is left
                print(f"lab_scale: lab {self.lab.name} down failed: {e}", file=sys.stderr)
            shutil.rmtree(self.tmp, ignore_errors=True)


def say(m: str) -> None:
    print(f"lab_scale: {m}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- output
def render(r: dict) -> str:
    out = [f"lab_scale: {r['nodes']} nodes, commit {r['commit']}, {r['machine']['cpus']} CPUs, "
           f"kernel {r['machine']['kernel']}, Python {r['machine']['python']}, load average "
           f"{r['machine']['loadavg_before']} before / {r['machine']['loadavg_after']} after", ""]
    ups = [u["total_s"] for u in r["up"]]
    out.append(f"{'':<44}{'wall s':>9}{'ms/pod':>9}")
    out.append("-" * 62)
    out.append(f"{'lab up --nodes ' + str(r['nodes']):<44}{statistics.median(ups):9.2f}{'':>9}"
               f"   (median of {len(ups)}: {', '.join(f'{x:.2f}' for x in ups)})")
    downs = [u["down_s"] for u in r["up"] if "down_s" in u] + [r["down_s_final"]]
    out.append(f"{'lab down':<44}{statistics.median(downs):9.2f}{'':>9}"
               f"   (median of {len(downs)}: {', '.join(f'{x:.2f}' for x in downs)})")
    for size, e in r["sizes"].items():
        out.append(f"{'lab apply, ' + size + ' pods':<44}{e['apply_s']:9.2f}{e['apply_ms_per_pod']:9.1f}")
        out.append(f"{'lab delete, ' + size + ' pods':<44}{e['delete_s']:9.2f}{e['delete_ms_per_pod']:9.1f}")
    out.append("")
    out.append("lab up phases (median over runs, s):")
    for k in r["up"][0]["phases_s"]:
        out.append(f"  {k:<42}{statistics.median(u['phases_s'][k] for u in r['up']):9.2f}")
    out.append("")
    for size, e in r["sizes"].items():
        out.append(f"{size} pods: per node {e['pods_per_node']}")
        out.append("  CPU seconds during lab apply / lab delete: " + ", ".join(
            f"{k} {e['cpu_s_apply'][k]:.2f}/{e['cpu_s_delete'][k]:.2f}" for k in e["cpu_s_apply"]))
        A = e["agent_add_ms"]
        if A.get("total_ms"):
            out.append("  agent ADD, ms (p50/p90): " + ", ".join(
                f"{k[:-3]} {A[k]['p50']:.1f}/{A[k]['p90']:.1f}" for k in
                ("ipam_ms", "render_ms", "dataplane_ms", "total_ms") if k in A))
        b = e.get("breakdown")
        if b:
            for op in ("apply", "delete"):
                x = b[op]
                out.append(f"  instrumented {op}: wall {x['wall_s']:.2f} s, {x['workers']} worker threads")
                out.append(f"    {'step':<42}{'calls':>6}{'sum s':>8}{'span s':>8}{'p50 ms':>8}{'p90 ms':>8}")
                for k, s in sorted(x["steps"].items(), key=lambda kv: -kv[1]["sum"]):
                    out.append(f"    {k:<42}{s['n']:6d}{s['sum']:8.2f}{s['span_s']:8.2f}"
                               f"{1000 * s['p50']:8.1f}{1000 * s['p90']:8.1f}")
                cpu = x["cpu_s"]
                total = sum(cpu.values())
                out.append(f"    CPU s: {total:.2f} in all = {total / x['wall_s']:.2f} CPUs busy on "
                           f"average; " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
                out.append("    etcd changes (events by key family): "
                           + ", ".join(f"{k} {v}" for k, v in x["etcd_writes"].items()))
        out.append("")
    o = r.get("one_node")
    if o:
        out.append(f"{o['size']} pods all on node1: apply {o['apply_s']:.2f} s, "
                   f"delete {o['delete_s']:.2f} s; CPU s apply/delete:")
        out.append("  " + ", ".join(f"{k} {o['cpu_s_apply'][k]:.2f}/{o['cpu_s_delete'][k]:.2f}"
                                    for k in o["cpu_s_apply"]))
        out.append("")
    sw = r.get("workers_sweep")
    if sw:
        out.append(f"lab worker threads (instrumented, {sw['size']} pods; default {sw['default']}):")
        out.append(f"  {'threads':>7}{'apply s':>9}{'ms/pod':>8}{'delete s':>10}{'ms/pod':>8}"
                   f"{'CNI ADD p50 ms':>16}{'netns add p50 ms':>18}")
        for w, x in sw["runs"].items():
            st = x["apply"]["steps_p50_ms"]
            out.append(f"  {w:>7}{x['apply']['wall_s']:9.2f}{1000 * x['apply']['wall_s'] / sw['size']:8.1f}"
                       f"{x['delete']['wall_s']:10.2f}{1000 * x['delete']['wall_s'] / sw['size']:8.1f}"
                       f"{st.get('CNI ADD (contiv-cni + agent)', 0):16.1f}"
                       f"{st.get('netns add (ip netns add, lo up)', 0):18.1f}")
        out.append("")
    out.append("memory, MiB (VmRSS / VmHWM):")
    first = r["up"][-1]["memory"]
    last_size = list(r["sizes"])[-1] if r["sizes"] else None
    for what in first:
        row = f"  {what:<14} after up {first[what]['vmrss_kib'] / 1024:6.1f}"
        for size, e in r["sizes"].items():
            m = e["memory_after_apply"].get(what, {})
            d = e["memory_after_delete"].get(what, {})
            row += (f" | {size} pods {m.get('vmrss_kib', 0) / 1024:6.1f}, deleted "
                    f"{d.get('vmrss_kib', 0) / 1024:6.1f}")
        if last_size:
            row += f" | HWM {r['sizes'][last_size]['memory_after_delete'][what]['vmhwm_kib'] / 1024:6.1f}"
        out.append(row)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3, help="lab nodes (default 3)")
    ap.add_argument("--sizes", default="50,200", help="pod counts, comma-separated (default 50,200)")
    ap.add_argument("--up-runs", type=int, default=3, help="lab up/down cycles timed (default 3)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the instrumented runs")
    ap.add_argument("--sweep-workers", default="", metavar="N,N,...",
                    help="also run the instrumented apply/delete of the largest size with these "
                         "numbers of lab worker threads (lab.kube.WORKERS), e.g. 1,2,4,16")
    ap.add_argument("--one-node", action="store_true",
                    help="also apply/delete the largest size (at most 250) with every pod on node1, "
                         "to see what the agents of the other nodes spend on pods they do not run")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = ap.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
        args.sweep_workers = [int(x) for x in args.sweep_workers.split(",") if x.strip()]
    except ValueError:
        ap.error("--sizes, --sweep-workers: comma-separated integers")
    if any(w < 1 for w in args.sweep_workers):
        ap.error("--sweep-workers: at least 1 thread")
    if args.up_runs < 1 or not 1 <= args.nodes <= 32 or any(s < 1 for s in args.sizes):
        ap.error("need --up-runs >= 1, 1 <= --nodes <= 32, sizes >= 1")
    if not require_root("lab_scale"):
        return 2
    stop_signals_interrupt()
    bench = Bench(args)
    try:
        say(f"lab {bench.lab.name}")
        result = bench.run()
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    except Failure as e:
        say(f"FAILED: {e}")
        return 1
    finally:
        bench.teardown()
    write_json(args.json, result, "lab_scale")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
