#!/usr/bin/env python3
"""Pod-to-pod TCP over VPP: the agent's VPP data plane against a hand-configured VPP and Linux.

Run as root from the repository::

    .venv/bin/python bench/vpp_traffic.py [--rounds 7] [--seconds 3] [--idle-seconds 10]
                                          [--hand-cnat] [--json FILE]

Three setups of the same shape, up at the same time, two nodes each with two
pods per node (``client`` and ``server-local`` on node1, ``server`` and
``idle`` on node2):

* **A** -- the agent's VPP data plane: a ``--dataplane vpp`` lab (one VPP per
  node, real agents, real etcd), the pods applied through ``lab.kube.Kube``
  (so wired by the real ``contiv-cni`` and the agent: veth + af_packet, loop0
  as BVI of a bridge domain holding the VXLAN tunnel, cnat's features on the
  pod interfaces and loop0 as the agent enables them for Services).
* **B** -- a hand-configured VPP of the same shape: two VPPs started with
  ``agent.vpp.process.VppProcess`` (the same startup.conf as the lab's) in
  network namespaces made here, configured message by message through
  ``agent.vpp.papi.VppApi`` as /tmp/vx/two.py does: the uplink as an af_packet
  interface on a veth into an underlay bridge, loop0 (BVI of bridge domain 1,
  learning off) with the gateway address and proxy ARP, a VXLAN tunnel in the
  bridge domain (split horizon group 1) with the peer's static MAC, neighbour
  and route; each pod a veth pair (MTU 1450 both ends, TX checksum offload off
  in the pod, default route via the gateway, onlink) whose node end VPP takes
  as an af_packet interface with the agent's settings (``ifdesc``'s mode,
  flags and 2 KiB TX frames), unnumbered to loop0, proxy ARP, a static
  neighbour and a /32 route. No cnat, no ACL: what pod-to-pod needs and
  nothing else. Each VPP's main thread is pinned to the CPU the lab's VPP of
  the same node pinned itself to (VPP pins its main thread to the CPU it
  starts on), so both pairs sit on the CPUs alike; the placements are printed.
* **C** -- the Linux data plane: a ``--dataplane linux`` lab with the same pods
  (veth, routes, VXLAN device, nftables; TX checksum offload on).

Measured, client -> server (cross-node: VXLAN between the two VPPs, or the two
kernels) and client -> server-local (same node): **TCP throughput** (one
connection, ``sendall`` of 256 KiB buffers for ``--seconds``) and **TCP
connection rate** (short connections one after another for ``--seconds``:
connect, the server closes, the client reads EOF). The workers are
bench/traffic.py's, as bench/policy_scale.py uses them: Python, standard
library, started with ``ip netns exec`` in the pods' namespaces (``iperf3`` is
not installed here; a Python sender is CPU-bound, which shows per-packet costs
more, not less). ``--rounds`` rounds; in each, per pair, every setup runs
back to back (bulk, then rate), the order rotating from round to round, so
setups compared with each other are measured seconds apart. Figures: the
median over rounds of the per-round ratios A/B (target >= 0.9: the agent's
configuration must cost nothing against a hand-made VPP of the same shape)
and A/C (reported: af_packet is the ceiling of this VPP build -- no DPDK, no
vhost-net for TAP -- so Linux's veth path is expected to be several times
faster; docs/vpp.md).

``--hand-cnat`` adds a condition **B+cnat**: the hand-configured VPPs with
cnat's features switched on as the agent switches them on (the whole feature
set and the SNAT policy's pod table on the pod interfaces, session lookup and
return writeback on loop0), toggled per run -- it tells how much of A/B is
cnat.

Also measured: each VPP's **idle CPU** (% of one core: utime + stime of the
whole process from /proc/<pid>/stat over ``--idle-seconds``, all VPPs in one
window) and **VmRSS**, per node, with no pods and with the pods (before any
traffic), plus VmRSS after the traffic; the lab agents' idle CPU in the same
windows (lab A's agents ping their VPP every 0.5 s). A shape check prints, per
setup, the client pod's eth0 (MTU, TX checksum, TSO, GSO) and each VPP's
interfaces, RX modes and cnat features, and warns when A and B differ where
they should not.

Everything (both labs, the hand-made namespaces and VPPs, the workers) is
removed on exit, also on error, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import (git_revision, progress, require_root, require_vpp, run_bench, say,  # noqa: E402
                    uninterruptible)
from trafficrun import Run, paired, traffic_rounds  # noqa: E402 -- bench/ helpers
from vpputil import idle_window, proc_figures  # noqa: E402 -- bench/ helpers
from vpprigs import NODES, PAIRS, PODS, HandRig, LabRig, Rig, main_core  # noqa: E402 -- bench/ module

# --------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args) -> None:
        self.args = args
        tag = os.urandom(2).hex()
        self.a = LabRig("A", f"vta{tag}", "vpp")
        self.b = HandRig(tag, cnat_ready=args.hand_cnat)
        self.c = LabRig("C", f"vtc{tag}", "linux")
        self.out: dict = {"machine": machine(), "args": vars(args),
                          "command": " ".join([".venv/bin/python", "bench/vpp_traffic.py"] + sys.argv[1:])}

    def conditions(self) -> list[tuple[str, Rig, object]]:
        """(label, rig, context for the run); B+cnat is B with cnat's features on."""
        conds = [("A", self.a, nullcontext), ("B", self.b, nullcontext), ("C", self.c, nullcontext)]
        if self.args.hand_cnat:
            @contextmanager
            def cnat():
                self.b.set_cnat(True)
                try:
                    yield
                finally:
                    self.b.set_cnat(False)
            conds.insert(2, ("B+cnat", self.b, cnat))
        return conds

    def idle(self, what: str) -> dict:
        pids = {f"{r.label} {n} VPP": p for r in (self.a, self.b) for n, p in r.vpp_pids().items()}
        pids.update({f"{r.label} {n} agent": p for r in (self.a, self.c) for n, p in r.agent_pids().items()})
        say(f"idle window ({what}): {self.args.idle_seconds:g}s")
        w = idle_window(pids, self.args.idle_seconds)
        say("  " + "; ".join(f"{k} {v['cpu_percent_of_one_core']:.1f}% {v['vmrss_kib'] / 1024:.0f} MiB"
                             for k, v in w.items() if "VPP" in k))
        return w

    def shape(self) -> dict:
        out: dict = {"pods": {}, "host_mtu": {}, "vpp": {}}
        for r in (self.a, self.b, self.c):
            out["pods"][r.label] = {p: r.pod_shape(p) for p in ("client", "server", "server-local")}
            out["host_mtu"][r.label] = {n: r.host_mtus(n) for n in NODES}
        for r in (self.a, self.b):
            for n in NODES:
                api = r.vpp_api(n)
                try:
                    out["vpp"][f"{r.label} {n}"] = r.vpp_shape(api)
                    out.setdefault("vpp_version", api.version())
                finally:
                    api.close()
        return out

    def warm_up(self, conds) -> None:
        """Every pair on every setup answers before anything is timed (and ARP,
        neighbours, sessions are warm): a short rate and bulk run each."""
        for label, rig, ctx in conds:
            for pair, dst in PAIRS.items():
                with ctx():
                    x = rig.worker("rate", dst, 0.5)
                    b = rig.worker("bulk", dst, 0.5)
                if not x["connections"] or x["errors"] or not b["complete"]:
                    raise RuntimeError(f"{label} {pair}: warm-up failed: rate {x}, bulk {b}")

    def traffic(self, conds) -> dict:
        a = self.args

        def runner(rig: Rig, ctx) -> Run:
            def run(mode: str, dst: str) -> dict:
                with ctx():
                    return rig.worker(mode, dst, a.seconds)
            return run
        return traffic_rounds([(c, runner(rig, ctx)) for c, rig, ctx in conds], PAIRS, a.rounds,
                              f"traffic: {a.rounds} rounds x {len(PAIRS)} pairs x {len(conds)} setups "
                              f"x 2 tests x {a.seconds:g}s")

    def run(self) -> dict:
        a = self.args
        conds = self.conditions()
        n_runs = a.rounds * len(PAIRS) * len(conds) * 2
        say(f"setups: A lab {self.a.lab.name} (VPP), B hand-configured VPPs ({self.b.prefix}*), "
            f"C lab {self.c.lab.name} (Linux); then {n_runs} runs of {a.seconds:g}s "
            f"(about {n_runs * (a.seconds + 0.4):.0f} s of traffic)")
        with progress("A: lab up (VPP data plane, 2 nodes)"):
            self.a.up()
        cores = {n: main_core(p) for n, p in self.a.vpp_pids().items()}
        with progress("B: hand-configured VPPs up"):
            self.b.up(cores)
        with progress("C: lab up (Linux data plane, 2 nodes)"):
            self.c.up()
        self.out["vpp_main_core"] = {f"{r.label} {n}": main_core(p) for r in (self.a, self.b)
                                     for n, p in r.vpp_pids().items()}
        say("VPP main threads on CPUs: " + ", ".join(f"{k} {v}" for k, v in self.out["vpp_main_core"].items()))
        self.out["idle_no_pods"] = self.idle("no pods")
        with progress("pods: 2 per node in A, B and C"):
            self.a.add_pods()
            self.b.add_pods()
            self.c.add_pods()
        self.out["ips"] = {r.label: {p: r.ip(p) for p, _ in PODS} for r in (self.a, self.b, self.c)}
        self.out["idle_pods"] = self.idle("2 pods per node, no traffic")
        self.out["shape"] = self.shape()
        for r in (self.a, self.b, self.c):
            r.start_servers()
        say("warm-up: every pair on every setup")
        self.warm_up(conds)
        self.out["traffic"] = self.traffic(conds)
        self.out["rss_after_traffic"] = {f"{r.label} {n} VPP": proc_figures(p)
                                         for r in (self.a, self.b) for n, p in r.vpp_pids().items()}
        self.out["afpacket_blocks"] = self.afpacket_blocks()
        self.out["conditions"] = [c for c, _, _ in conds]
        return self.out

    def afpacket_blocks(self) -> dict:
        """af_packet's RX blocks since each VPP started: how many reached VPP because the
        kernel's block-retire timer expired (TPACKET_V3: a block is handed over when
        full or when its timer -- here one jiffy -- expires) rather than full."""
        out = {}
        for r in (self.a, self.b):
            for n in NODES:
                api = r.vpp_api(n)
                try:
                    text = api.cli("show errors")
                finally:
                    api.close()
                got = {}
                for line in text.splitlines():
                    m = re.match(r"\s*(\d+)\s+af-packet-input\s+(timed out block|total received block)", line)
                    if m:
                        got[m.group(2)] = got.get(m.group(2), 0) + int(m.group(1))
                out[f"{r.label} {n}"] = got
        return out

    def close(self) -> None:
        with uninterruptible():
            for r in (self.b, self.a, self.c):
                try:
                    r.close()
                except Exception as e:  # noqa: BLE001 -- the others must go too
                    say(f"closing {r.label}: {e}")


def machine() -> dict:
    from agent.vpp.process import find_vpp  # noqa: PLC0415
    inst = find_vpp()
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "vpp_binary": str(inst.binary) if inst else None,
            "iperf3": bool(shutil.which("iperf3")), "commit": git_revision(REPO),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}


# --------------------------------------------------------------------------- report
def report(out: dict) -> str:
    L = []
    m = out["machine"]
    res = out["traffic"]
    conds = out["conditions"]
    L.append(f"pod-to-pod TCP, {out['args']['rounds']} rounds x {out['args']['seconds']:g}s per run; "
             f"VPP {out['shape'].get('vpp_version', '?')}; {m['cpus']} CPUs, kernel {m['kernel']}, "
             f"commit {m['commit']}; workers: bench/traffic.py (Python; iperf3 "
             f"{'installed, not used' if m['iperf3'] else 'not installed'})")
    L.append("A = the agent's VPP data plane (lab), B = hand-configured VPP of the same shape, "
             "C = the Linux data plane (lab)" + (", B+cnat = B with cnat's features on as the agent has them"
                                                 if "B+cnat" in conds else ""))
    L.append("")
    head = "| client -> server | " + " | ".join(f"{c} (median)" for c in conds) + \
        " | A/B: median of paired rounds [range] | target >= 0.9 | A/C [range] |"
    if "B+cnat" in conds:
        head += " A/(B+cnat) [range] |"
    L.append(head)
    L.append("|---|" + "---:|" * len(conds) + "---:|---|---:|" + ("---:|" if "B+cnat" in conds else ""))
    for pair in PAIRS:
        for k, unit, fmt in (("gbit_s", "TCP throughput (Gbit/s)", "{:.2f}"),
                             ("conn_s", "TCP connections/s", "{:.0f}")):
            ab = paired(res, "A", "B", pair, k)
            ac = paired(res, "A", "C", pair, k)
            row = f"| {pair} {unit} | " + " | ".join(fmt.format(statistics.median(res[c][pair][k])) for c in conds)
            row += (f" | **{ab['ratio']:.2f}x** [{ab['min']:.2f}-{ab['max']:.2f}] | "
                    f"{'met' if ab['ratio'] >= 0.9 else 'NOT met'} | {ac['ratio']:.2f}x [{ac['min']:.2f}-{ac['max']:.2f}] |")
            if "B+cnat" in conds:
                ax = paired(res, "A", "B+cnat", pair, k)
                row += f" {ax['ratio']:.2f}x [{ax['min']:.2f}-{ax['max']:.2f}] |"
            L.append(row)
    bad = [(c, p) for c in conds for p in PAIRS if res[c][p]["rate_errors"] or res[c][p]["incomplete"]]
    for c, p in bad:
        L.append(f"WARNING: {c} {p}: {res[c][p]['rate_errors']} connection errors, "
                 f"{res[c][p]['incomplete']} incomplete bulk runs")
    L.append("")
    keys = [k for k in out["idle_pods"] if "VPP" in k]
    L.append("| VPP per node | " + " | ".join(keys) + " |")
    L.append("|---|" + "---:|" * len(keys))
    rows = (("idle CPU, no pods (% of one core)", "idle_no_pods", lambda v: f"{v['cpu_percent_of_one_core']:.2f}"),
            ("VmRSS, no pods (MiB)", "idle_no_pods", lambda v: f"{v['vmrss_kib'] / 1024:.1f}"),
            ("idle CPU, 2 pods (% of one core)", "idle_pods", lambda v: f"{v['cpu_percent_of_one_core']:.2f}"),
            ("VmRSS, 2 pods (MiB)", "idle_pods", lambda v: f"{v['vmrss_kib'] / 1024:.1f}"),
            ("VmRSS after the traffic (MiB)", "rss_after_traffic", lambda v: f"{v['vmrss_kib'] / 1024:.1f}"))
    for label, sect, f in rows:
        L.append(f"| {label} | " + " | ".join(f(out[sect][k]) if k in out[sect] else "-" for k in keys) + " |")
    L.append("| main thread on CPU | " + " | ".join(str(out["vpp_main_core"].get(k[:-4], "?")) for k in keys) + " |")
    w = out["idle_pods"]
    agents = [k for k in w if "agent" in k]
    L.append(f"(idle window {w[keys[0]]['idle_seconds']:.1f}s, clock tick 1/{w[keys[0]]['clk_tck']} s; "
             "agents in the same window, 2 pods: "
             + ", ".join(f"{k} {w[k]['cpu_percent_of_one_core']:.2f}%" for k in agents) + ")")
    L.append("")
    sh_ = out["shape"]
    L.append("shape check (client pod's eth0: MTU, tx-checksumming, TSO, GSO):")
    for r, pods in sh_["pods"].items():
        c = pods["client"]
        L.append(f"  {r}: mtu {c['mtu']}, tx-csum {c['tx-checksumming']}, tso {c['tx-tcp-segmentation']}, "
                 f"gso {c['generic-segmentation-offload']}; node-side veth MTUs "
                 + ", ".join(f"{n} {sorted(set(v.values()))}" for n, v in sh_["host_mtu"][r].items()))
    for k, v in sh_["vpp"].items():
        L.append(f"  VPP {k}: {len(v['interfaces'])} interfaces, RX modes {v['rx_modes']}, cnat-input on "
                 f"{len(v['cnat-input'])}, cnat-lookup on {len(v['cnat-lookup'])}, ACL lists {v['acl_lists']}")
    blocks = out.get("afpacket_blocks") or {}
    if blocks:
        L.append("af_packet RX blocks handed to VPP by the kernel's retire timer / all, since start: "
                 + ", ".join(f"{k} {v.get('timed out block', 0):,}/{v.get('total received block', 0):,}"
                             for k, v in blocks.items()))
    for w_ in shape_warnings(sh_):
        L.append(f"WARNING: {w_}")
    L.append(f"load average start {m['loadavg_start']}, end {m.get('loadavg_end')}")
    return "\n".join(L)


def shape_warnings(s: dict) -> list[str]:
    """Where A and B differ in what should be the same shape (cnat, and A's host
    interconnect -- one more af_packet interface in interrupt mode -- differ by design)."""
    from agent.vpp.render import HOST_VETH  # noqa: PLC0415
    host_if = "host-" + HOST_VETH
    out = []
    for p in ("client", "server", "server-local"):
        a, b = s["pods"]["A"][p], s["pods"]["B"][p]
        if a != b:
            out.append(f"pod {p}'s eth0 differs: A {a}, B {b}")
    for n in NODES:
        a, b = s["vpp"][f"A {n}"], s["vpp"][f"B {n}"]
        a_ifs, a_modes = [i for i in a["interfaces"] if i != host_if], dict(a["rx_modes"])
        if len(a_ifs) < len(a["interfaces"]):
            a_modes["interrupt"] = a_modes.get("interrupt", 0) - 1
        if len(a_ifs) != len(b["interfaces"]) or {k: v for k, v in a_modes.items() if v} != b["rx_modes"]:
            out.append(f"VPP {n}: A has {a['interfaces']} {a['rx_modes']}, B {b['interfaces']} {b['rx_modes']}")
        ma, mb = (set(s["host_mtu"][x][n].values()) for x in ("A", "B"))
        if ma != mb:
            out.append(f"{n}: node-side veth MTUs differ: A {ma}, B {mb}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="rounds of runs (default 7)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per run (default 3)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="each idle window (default 10)")
    ap.add_argument("--hand-cnat", action="store_true",
                    help="also measure B with cnat's features on as the agent has them (B+cnat)")
    ap.add_argument("--json", help="write every figure and sample to this file")
    args = ap.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.idle_seconds <= 0:
        ap.error("need --rounds >= 1, --seconds > 0, --idle-seconds > 0")
    if not require_root("vpp_traffic"):
        return 2
    if not require_vpp("vpp_traffic", what=""):
        return 2
    if not shutil.which("ethtool"):
        print("vpp_traffic: needs ethtool (TX checksum offload off in the hand-made pods)", file=sys.stderr)
        return 2
    return run_bench(lambda: Bench(args), report, args.json, "vpp_traffic")


if __name__ == "__main__":
    sys.exit(main())
