#!/usr/bin/env python3
"""CNI ADD/DEL latency: ``contiv-cni`` against the reference ``bridge`` plugin.

Run as root from the repository::

    .venv/bin/python bench/cni_latency.py [--dataplane linux|vpp] [--iterations 50]
                                          [--warmup 5] [--idle-seconds 10] [--json FILE]

Contenders, measured in the same run, interleaved:

* **reference**: Debian's ``/usr/lib/cni/bridge`` with ``host-local`` IPAM
  (``isGateway``, no masquerade; the host-local data directory is a private
  temporary directory).
* **contiv**: ``contiv-cni`` exactly as the lab installs it (interpreter line
  ``#!python3.11 -IS``), talking to the real agent of a one-node lab (real
  etcd, real netlink work) over the agent's unix socket. With
  ``--dataplane vpp`` the lab node runs the VPP data plane (its own VPP; a
  pod is a veth pair whose node end VPP takes as an af_packet interface, see
  docs/vpp.md); everything else -- the reference, the caller, the method --
  stays identical, so the two runs' ratios compare the data planes' ADD/DEL.

How the comparison is kept fair (and why):

* **Same caller, same method.** Both plugins are started by this one process
  through :meth:`lab.cniexec.Runtime.exec`, i.e. ``subprocess.run`` with the
  CNI environment variables and the network configuration on stdin -- what a
  container runtime does. The time measured is that call's wall time, process
  creation and reaping included, for both.
* **Each plugin runs in its own "node" namespace, entered the same way.** The
  bridge plugin creates its bridge (and turns on ``ip_forward``) in the
  namespace it runs in; it must not run in the host's. ``ip netns exec``
  would add its own start-up cost (an extra exec, a mount namespace, a sysfs
  remount), so instead the calling thread of this process enters the node
  namespace with ``setns(2)`` *outside* the timed region, spawns the plugin
  (a child inherits its parent thread's namespace) and returns home. The
  reference plugin runs in a private namespace ``cnib<id>-refnode`` (only
  ``lo`` at first; its bridge ``cni-ref0`` lives there and dies with it);
  ``contiv-cni`` runs in the lab node's namespace, where its agent runs --
  as kubelet on that node would run it. Same mechanism, same cost, no
  ``preexec_fn`` (which would force fork instead of vfork for both and
  inflate the baseline, compressing the ratio).
* **Fresh pod namespaces.** Every ADD goes into a namespace created for it
  before timing starts and removed after its DEL (untimed).
* **Interleaved.** Each iteration runs both contenders, ADD then DEL; the
  order alternates every iteration (ref first, then contiv first), so drift
  and machine noise hit both equally. Warm-up iterations run the same
  sequence and are discarded.
* **Same configuration version.** The reference plugin speaks CNI up to
  1.0.0, so both get ``cniVersion`` 1.0.0 and the same ``CNI_ARGS`` that
  containerd passes (``IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..``).
* The harness's own garbage collector is off during the timed loop.

Also measured, interleaved in the same loop ("floors", to show where the
time goes): bare interpreter start (``python3.11 -IS -c pass``), ``contiv-cni``
answering VERSION (interpreter + plugin code, no I/O), ``contiv-cni``
answering STATUS (adds the unix-socket HTTP round trip through the agent's API
server with a trivial handler), and ``bridge`` answering VERSION (the Go
runtime's start-up). The agent's own ADD breakdown (``ipam_ms``,
``render_ms``, ``dataplane_ms``, ``total_ms``) is read from the agent's ``pods()``
after each ADD (untimed). After the run: the agent's resident memory
(``VmRSS``/``VmHWM``) and its CPU use over an idle window (``--idle-seconds``),
in % of one core -- to show there is no busy loop. On VPP also the VPP
process's (same window) and, inside the agent, the share of the VPP
operations (the af_packet interface, unnumbered, proxy ARP, neighbour, route,
cnat feature) in the ADD and DEL transactions.

Everything created (namespaces, the reference bridge, temporary directories,
the lab) is removed on exit, also on error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from agent.model import keys  # noqa: E402
from agent.nsenter import setns  # noqa: E402
from common import (git_revision, proc_status, require_root, require_vpp,  # noqa: E402 -- bench/ helpers
                    stop_signals_interrupt, uninterruptible, write_json)
from vpputil import idle_window, lab_vpp_pid, proc_figures  # noqa: E402 -- bench/ helpers
from lab import sysnet  # noqa: E402
from lab.cluster import Lab  # noqa: E402
from lab.cniexec import Runtime  # noqa: E402

REF_DIR = "/usr/lib/cni"
CNI_VERSION = "1.0.0"  # the newest version the Debian reference plugins speak
IFNAME = "eth0"
K8S_NS = "bench"


# --------------------------------------------------------------------------- namespaces
class NetnsSwitch:
    """Moves the calling thread into a named network namespace and back.

    Only the calling thread changes namespace; a child spawned meanwhile is
    born in it. Used so that both plugins are spawned identically (no
    ``ip netns exec``, no ``preexec_fn``) yet each in its node's namespace.
    """

    def __init__(self) -> None:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._fds: dict[str, int] = {}

    def enter(self, name: str) -> None:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(sysnet.netns_path(name), os.O_RDONLY)
        setns(fd, name)

    def home(self) -> None:
        setns(self._home, "the bench's own")

    def close(self) -> None:
        try:
            self.home()
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


# --------------------------------------------------------------------------- statistics
def summary(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    q = statistics.quantiles(s, n=100, method="inclusive") if len(s) > 1 else [s[0]] * 99
    return {"n": len(s), "p50": statistics.median(s), "p90": q[89], "mean": statistics.fmean(s),
            "min": s[0], "max": s[-1], "stdev": statistics.stdev(s) if len(s) > 1 else 0.0}


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --------------------------------------------------------------------------- /proc
def agent_pid(lab: Lab, node: str) -> int:
    """The agent's pid. The lab starts it through ``ip netns exec``, which execs
    in place; should that ever fork instead, take the child that runs it."""
    pid = lab.state().node(node).pid
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if any(b"contivctl" in c for c in cmd) and not cmd[0].endswith(b"ip"):
        return pid
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"contivctl" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise RuntimeError(f"cannot find the agent process of {node} (pid {pid}: {cmd})")


# --------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.id = secrets.token_hex(3)
        self.lab = Lab("cb" + self.id)  # lab names are <= 8 chars; random: cannot clash
        self.store = None  # the lab's etcd, where the pods' objects go (iteration)
        self.lab_attempted = False
        self.ns_prefix = f"cnib{self.id}-"  # our own namespaces (reference side)
        self.ref_node_ns = self.ns_prefix + "refnode"
        self.tmp = Path(tempfile.mkdtemp(prefix="cni-bench-"))
        self.nsw: NetnsSwitch | None = None
        self.pod_namespaces: set[str] = set()
        self.samples: dict[str, list[float]] = {k: [] for k in (
            "ref_add", "ref_del", "contiv_add", "contiv_del", "floor_python", "floor_contiv_version",
            "floor_contiv_status", "floor_bridge_version")}
        self.agent: dict[str, list[float]] = {k: [] for k in (
            "ipam_ms", "render_ms", "dataplane_ms", "total_ms", "overhead_ms",
            "add_veth_create_ms", "add_vpp_ops_ms", "add_afpacket_create_ms", "del_txn_ms",
            "del_veth_delete_ms", "del_vpp_ops_ms")}
        self.vpp_pid = 0

    # -- setup / teardown ---------------------------------------------------
    def setup(self) -> None:
        say = lambda m: print(f"  lab: {m}", file=sys.stderr)  # noqa: E731
        if self.lab.exists():
            raise RuntimeError(f"a lab named {self.lab.name} exists already; not touching it")
        self.lab_attempted = True
        _, created = self.lab.up(nodes=1, dataplane=self.args.dataplane, progress=say)
        self.store = self.lab.store()
        if not created:
            raise RuntimeError(f"lab {self.lab.name} was not created by this run")
        st = self.lab.state()
        self.node = st.node("node1")
        self.client = self.lab.client("node1")
        self.agent_pid = agent_pid(self.lab, "node1")
        self.vpp_pid = lab_vpp_pid(self.lab, "node1") if self.args.dataplane == "vpp" else 0
        sysnet.netns_add(self.ref_node_ns)
        self.nsw = NetnsSwitch()
        self.ref_rt = Runtime([REF_DIR])
        self.contiv_rt = Runtime([str(self.lab.paths.cni_bin), REF_DIR])
        plugin = self.lab.conflist("node1")["plugins"][0]
        self.contiv_conf = json.dumps({**plugin, "cniVersion": CNI_VERSION, "name": "contiv"}).encode()
        self.contiv_status_conf = json.dumps({**plugin, "cniVersion": "1.1.0",
                                              "name": "contiv"}).encode()
        (self.tmp / "host-local").mkdir()
        self.ref_conf = json.dumps({
            "cniVersion": CNI_VERSION, "name": "ref", "type": "bridge", "bridge": "cni-ref0",
            "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": "10.99.0.0/16",
                     "dataDir": str(self.tmp / "host-local")}}).encode()
        self.plugin_python = Path(self.lab.paths.cni_bin / "contiv-cni").read_text() \
            .splitlines()[0][2:].split()[0]

    def teardown(self) -> None:
        """Remove everything this run made; each step runs even if another fails."""
        steps = []
        if self.nsw is not None:
            # Back home first: lab.down() kills the processes it finds in lab namespaces.
            steps.append(("leave namespaces", self.nsw.close))
        steps.append(("delete namespaces", lambda: [
            sysnet.netns_del(ns) for ns in sorted(self.pod_namespaces) + sysnet.netns_list(self.ns_prefix)]))
        if self.store is not None:
            steps.append(("close the etcd client", self.store.close))
        if self.lab_attempted:
            steps.append((f"lab {self.lab.name} down", self.lab.down))
        steps.append(("remove temporary files", lambda: shutil.rmtree(self.tmp, ignore_errors=True)))
        with uninterruptible():
            for what, fn in steps:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 -- keep cleaning, but say what is left
                    print(f"cni_latency: clean-up step '{what}' failed: {e}", file=sys.stderr)

    # -- one timed invocation ----------------------------------------------
    def _cni(self, who: str, command: str, cid: str, netns: str):
        rt, plugin, conf, node_ns = (
            (self.ref_rt, "bridge", self.ref_conf, self.ref_node_ns) if who == "ref" else
            (self.contiv_rt, "contiv-cni", self.contiv_conf, self.node.netns))
        args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={K8S_NS};K8S_POD_NAME={cid[:12]}"
        self.nsw.enter(node_ns)
        try:
            inv = rt.exec(plugin, command, conf, container_id=cid, netns=sysnet.netns_path(netns),
                          ifname=IFNAME, args=args)
        finally:
            self.nsw.home()
        if inv.exit_code != 0:
            raise RuntimeError(f"{plugin} {command} {cid[:12]} failed (exit {inv.exit_code}): "
                               f"{inv.stdout.decode(errors='replace').strip()} {inv.stderr.strip()}")
        if command == "ADD":
            res = json.loads(inv.stdout)
            if not res.get("ips"):
                raise RuntimeError(f"{plugin} ADD returned no address: {res}")
        return inv.seconds

    def _timed(self, argv: list[str], env: dict, stdin: bytes = b"") -> float:
        """A floor measurement, with the same call Runtime.exec makes."""
        t = time.perf_counter()
        p = subprocess.run(argv, input=stdin, env=env, capture_output=True)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"{argv} failed: {p.stdout!r} {p.stderr!r}")
        return dt

    def _floors(self) -> dict[str, float]:
        base = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        plugin = str(self.lab.paths.cni_bin / "contiv-cni")
        out = {"floor_python": self._timed([self.plugin_python, "-IS", "-c", "pass"], base),
               "floor_contiv_version": self._timed([plugin], {**base, "CNI_COMMAND": "VERSION"}),
               "floor_bridge_version": self._timed([f"{REF_DIR}/bridge"],
                                                   {**base, "CNI_COMMAND": "VERSION"})}
        self.nsw.enter(self.node.netns)
        try:
            out["floor_contiv_status"] = self._timed(
                [plugin], {**base, "CNI_COMMAND": "STATUS", "CNI_PATH": str(self.lab.paths.cni_bin)},
                self.contiv_status_conf)
        finally:
            self.nsw.home()
        return out

    def _agent_timing(self, cid: str) -> dict | None:
        for p in self.client.pods().pods:
            if p.container_id == cid:
                return (p.timings or {}).get("add")
        return None

    def _txn_timings(self, cid: str) -> dict[str, float]:
        """From the agent's transaction history (``history()``): the veth
        create of this pod's ADD, and its DEL transaction with the veth delete.
        (``pods()`` cannot give DEL figures: the record goes with the allocation.)"""
        want = {f"cni add {K8S_NS}/{cid[:12]}": "add", f"cni del {cid}/{IFNAME}": "del"}
        out = {}
        for t in self.client.history(limit=16).transactions:
            kind = want.get(t.description)
            if kind is None:
                continue
            veth = [o.duration_ms for o in t.operations if o.key.startswith("linux/veth/")]
            vpp = [o for o in t.operations if o.key.startswith("vpp/")]
            if kind == "add" and veth:
                out["add_veth_create_ms"] = veth[0]
            if kind == "add" and vpp:
                out["add_vpp_ops_ms"] = sum(o.duration_ms for o in vpp)
                afp = [o.duration_ms for o in vpp if o.key.startswith("vpp/interface/")]
                if afp:
                    out["add_afpacket_create_ms"] = afp[0]
            if kind == "del":
                out["del_txn_ms"] = t.duration_ms
                if veth:
                    out["del_veth_delete_ms"] = veth[0]
                if vpp:
                    out["del_vpp_ops_ms"] = sum(o.duration_ms for o in vpp)
        return out

    # -- the loop -------------------------------------------------------------
    def iteration(self, i: int, record: bool) -> None:
        order = ("ref", "contiv") if i % 2 == 0 else ("contiv", "ref")
        pods = {}
        for who in order:
            cid = secrets.token_hex(32)  # like containerd's sandbox IDs
            ns = (self.ns_prefix + f"pod-{i}" if who == "ref"
                  else self.lab.paths.pod_ns(K8S_NS, f"p{i}"))
            self.pod_namespaces.add(ns)
            sysnet.netns_add(ns)
            pods[who] = (cid, ns)
        # the pod is in the cluster's state before its sandbox is made (the
        # reflector mirrors it when it is created): the agent finds what it
        # asks by annotation (nothing) in its snapshot, as in a cluster --
        # without it every ADD would read etcd once more (~0.5 ms) looking
        pod_key = keys.k8s_key("pod", K8S_NS, pods["contiv"][0][:12])
        self.store.put(pod_key, json.dumps({"metadata": {"namespace": K8S_NS,
                                                         "name": pods["contiv"][0][:12]}}).encode())
        try:
            add = {who: self._cni(who, "ADD", *pods[who]) for who in order}
            timing = self._agent_timing(pods["contiv"][0])
            dele = {who: self._cni(who, "DEL", *pods[who]) for who in order}
            self.store.delete(pod_key)
            txns = self._txn_timings(pods["contiv"][0]) if record else {}
            floors = self._floors() if not self.args.no_floors else {}
        finally:
            for _, ns in pods.values():
                sysnet.netns_del(ns)
                self.pod_namespaces.discard(ns)
        if not record:
            return
        for who in order:
            self.samples[f"{who}_add"].append(ms(add[who]))
            self.samples[f"{who}_del"].append(ms(dele[who]))
        for k, v in floors.items():
            self.samples[k].append(ms(v))
        if timing:
            for k in ("ipam_ms", "render_ms", "dataplane_ms", "total_ms"):
                self.agent[k].append(float(timing[k]))
            self.agent["overhead_ms"].append(ms(add["contiv"]) - float(timing["total_ms"]))
        for k, v in txns.items():
            self.agent[k].append(float(v))

    def run(self) -> dict:
        a = self.args
        rss_before = proc_status(self.agent_pid)
        vpp_before = proc_figures(self.vpp_pid) if self.vpp_pid else None
        self.loadavg = [os.getloadavg()]
        total = a.warmup + a.iterations
        gc.collect()
        gc.disable()
        try:
            t0 = time.monotonic()
            for i in range(total):
                self.iteration(i, record=i >= a.warmup)
                if (i + 1) % 10 == 0 or i + 1 == total:
                    print(f"  {i + 1}/{total} iterations ({a.warmup} warm-up), "
                          f"{time.monotonic() - t0:.0f}s", file=sys.stderr)
        finally:
            gc.enable()
        self.loadavg.append(os.getloadavg())
        status = proc_status(self.agent_pid)
        print(f"  idle window: {a.idle_seconds:g}s", file=sys.stderr)
        idle = idle_window({"agent": self.agent_pid, **({"vpp": self.vpp_pid} if self.vpp_pid else {})},
                           a.idle_seconds)
        out = self.report(rss_before, status, idle["agent"])
        if self.vpp_pid:
            v = idle["vpp"]  # its memory figures: read after the window
            out["vpp"] = {"pid": self.vpp_pid, "vmrss_kib_before": vpp_before["vmrss_kib"],
                          "vmrss_kib_after": v["vmrss_kib"], "vmhwm_kib": v.get("vmhwm_kib"),
                          "threads": v.get("threads"), "cpus_allowed": v.get("cpus_allowed"),
                          "idle_seconds": v["idle_seconds"], "idle_cpu_seconds": v["cpu_seconds"],
                          "idle_cpu_percent_of_one_core": v["cpu_percent_of_one_core"]}
        return out

    # -- results --------------------------------------------------------------
    def report(self, before: dict, after: dict, idle: dict) -> dict:
        """``before``/``after``: the agent's /proc status; ``idle``: its vpputil.idle_window figures."""
        st = {k: summary(v) for k, v in self.samples.items()}
        agent = {k: summary(v) for k, v in self.agent.items()}
        ratio = lambda a, b, q: st[a][q] / st[b][q]  # noqa: E731
        ratios = {"add_p50": ratio("contiv_add", "ref_add", "p50"),
                  "add_p90": ratio("contiv_add", "ref_add", "p90"),
                  "del_p50": ratio("contiv_del", "ref_del", "p50"),
                  "del_p90": ratio("contiv_del", "ref_del", "p90")}
        kib = lambda s: int(s.split()[0])  # noqa: E731 -- "12345 kB"
        return {
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version(), "plugin_interpreter": self.plugin_python,
                        "reference": REF_DIR + "/bridge + host-local",
                        "loadavg_1_5_15_before": [round(x, 2) for x in self.loadavg[0]],
                        "loadavg_1_5_15_after": [round(x, 2) for x in self.loadavg[1]]},
            "command": " ".join([".venv/bin/python", "bench/cni_latency.py"] + sys.argv[1:]),
            "dataplane": self.args.dataplane,
            "commit": git_revision(REPO),
            "iterations": self.args.iterations, "warmup": self.args.warmup, "cni_version": CNI_VERSION,
            "latency_ms": st, "ratios_contiv_over_reference": ratios,
            "agent_breakdown_ms": agent,
            "agent": {"pid": self.agent_pid,
                      "vmrss_kib_before": kib(before["VmRSS"]), "vmrss_kib_after": kib(after["VmRSS"]),
                      "vmhwm_kib": kib(after["VmHWM"]), "threads": int(after["Threads"]),
                      "idle_seconds": idle["idle_seconds"], "idle_cpu_seconds": idle["cpu_seconds"],
                      "idle_cpu_percent_of_one_core": idle["cpu_percent_of_one_core"],
                      "clk_tck": idle["clk_tck"]},
            "samples_ms": self.samples, "agent_samples_ms": self.agent,
        }


def render(r: dict) -> str:
    L = r["latency_ms"]
    out = []
    m = r["machine"]
    out.append(f"CNI latency, {r['iterations']} iterations (+{r['warmup']} warm-up), cniVersion "
               f"{r['cni_version']}; contiv on the {r.get('dataplane', 'linux')} data plane; "
               f"{m['cpus']} CPUs, kernel {m['kernel']}, python {m['python']}, commit {r['commit']}")
    out.append(f"load average (1/5/15 min) {m['loadavg_1_5_15_before']} before, "
               f"{m['loadavg_1_5_15_after']} after the timed loop")
    out.append("")
    hdr = f"{'ms':<34}{'p50':>8}{'p90':>8}{'mean':>8}{'min':>8}{'max':>8}"
    out.append(hdr)
    out.append("-" * len(hdr))
    plane = r.get("dataplane", "linux")
    rows = [("ADD  reference (bridge+host-local)", "ref_add"), (f"ADD  contiv-cni ({plane})", "contiv_add"),
            ("DEL  reference (bridge+host-local)", "ref_del"), (f"DEL  contiv-cni ({plane})", "contiv_del"),
            ("floor: python3.11 -IS -c pass", "floor_python"),
            ("floor: contiv-cni VERSION", "floor_contiv_version"),
            ("floor: contiv-cni STATUS (agent)", "floor_contiv_status"),
            ("floor: bridge VERSION", "floor_bridge_version")]
    for label, k in rows:
        s = L.get(k)
        if s:
            out.append(f"{label:<34}{s['p50']:8.2f}{s['p90']:8.2f}{s['mean']:8.2f}{s['min']:8.2f}"
                       f"{s['max']:8.2f}")
    out.append("")
    rt = r["ratios_contiv_over_reference"]
    verdict = "met" if rt["add_p50"] <= 1.0 else "NOT met"
    out.append(f"contiv / reference:  ADD p50 {rt['add_p50']:.2f}x   ADD p90 {rt['add_p90']:.2f}x   "
               f"DEL p50 {rt['del_p50']:.2f}x   DEL p90 {rt['del_p90']:.2f}x")
    out.append(f"target ADD p50 <= 1.00x: {verdict}")
    out.append("")
    A = r["agent_breakdown_ms"]
    if A.get("total_ms"):
        out.append("contiv ADD inside the agent (its pods() timings), ms:")
        out.append(f"{'':<34}{'p50':>8}{'p90':>8}{'mean':>8}{'min':>8}")
        for k, label in (("ipam_ms", "ipam (one etcd txn)"), ("render_ms", "render"),
                         ("dataplane_ms", "dataplane (one txn)"),
                         ("add_veth_create_ms", "  of which veth create"),
                         ("add_vpp_ops_ms", "  of which VPP operations"),
                         ("add_afpacket_create_ms", "    of which af_packet create"),
                         ("total_ms", "agent total"),
                         ("overhead_ms", "plugin process overhead")):
            s = A.get(k)
            if s:
                out.append(f"  {label:<32}{s['p50']:8.2f}{s['p90']:8.2f}{s['mean']:8.2f}{s['min']:8.2f}")
        out.append("  (overhead = plugin wall time - agent total, per ADD: interpreter start, plugin "
                   "code, HTTP round trip, agent request parsing and result shaping)")
        if A.get("del_txn_ms"):
            out.append("contiv DEL inside the agent (its history()), ms:")
            for k, label in (("del_txn_ms", "dataplane txn"),
                             ("del_veth_delete_ms", "  of which veth delete"),
                             ("del_vpp_ops_ms", "  of which VPP operations")):
                s = A.get(k)
                if s:
                    out.append(f"  {label:<32}{s['p50']:8.2f}{s['p90']:8.2f}{s['mean']:8.2f}"
                               f"{s['min']:8.2f}")
        out.append("")
    ag = r["agent"]
    out.append(f"agent pid {ag['pid']}: VmRSS {ag['vmrss_kib_before'] / 1024:.1f} MiB before the run, "
               f"{ag['vmrss_kib_after'] / 1024:.1f} MiB after (VmHWM {ag['vmhwm_kib'] / 1024:.1f} MiB), "
               f"{ag['threads']} threads")
    out.append(f"agent idle CPU: {ag['idle_cpu_seconds']:.3f} s over {ag['idle_seconds']:.1f} s = "
               f"{ag['idle_cpu_percent_of_one_core']:.2f} % of one core "
               f"(resolution 1/{ag['clk_tck']} s)")
    v = r.get("vpp")
    if v:
        out.append(f"VPP pid {v['pid']}: VmRSS {v['vmrss_kib_before'] / 1024:.1f} MiB before the run, "
                   f"{v['vmrss_kib_after'] / 1024:.1f} MiB after (VmHWM {(v['vmhwm_kib'] or 0) / 1024:.1f} MiB), "
                   f"{v['threads']} threads, CPUs {v['cpus_allowed']}")
        out.append(f"VPP idle CPU (same window): {v['idle_cpu_seconds']:.3f} s over {v['idle_seconds']:.1f} s = "
                   f"{v['idle_cpu_percent_of_one_core']:.2f} % of one core")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataplane", choices=("linux", "vpp"), default="linux",
                    help="the data plane of the lab node contiv-cni's agent runs on (default linux); "
                         "the reference stays the bridge plugin")
    ap.add_argument("--iterations", type=int, default=50, help="measured iterations (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="discarded iterations first (default 5)")
    ap.add_argument("--idle-seconds", type=float, default=10.0,
                    help="window for the agent's idle CPU (default 10)")
    ap.add_argument("--no-floors", action="store_true",
                    help="skip the floor measurements (interpreter, VERSION, STATUS)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure (and samples) as JSON")
    args = ap.parse_args(argv)
    if args.iterations < 2 or args.warmup < 0 or args.idle_seconds <= 0:
        ap.error("need --iterations >= 2, --warmup >= 0, --idle-seconds > 0")
    if not require_root("cni_latency"):
        return 2
    if args.dataplane == "vpp" and not require_vpp("cni_latency"):
        return 2
    if not os.access(f"{REF_DIR}/bridge", os.X_OK) or not os.access(f"{REF_DIR}/host-local", os.X_OK):
        print(f"cni_latency: the reference plugins are missing from {REF_DIR} "
              "(apt-get install containernetworking-plugins)", file=sys.stderr)
        return 2
    stop_signals_interrupt()  # Ctrl-C and SIGTERM both end in the clean-up below
    bench = Bench(args)
    try:
        print(f"cni_latency: lab {bench.lab.name}, namespaces {bench.ns_prefix}*", file=sys.stderr)
        bench.setup()
        result = bench.run()
    except KeyboardInterrupt:
        print("cni_latency: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        bench.teardown()
    write_json(args.json, result, "cni_latency")  # first: the figures must survive a closed stdout
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
