"""The three setups of bench/vpp_traffic.py: pods in namespaces with traffic
servers, on a lab (A: the agent's VPP data plane, C: the Linux one) or on
two VPPs configured message by message here (B: the hand-configured VPP of
the same shape, optionally with cnat's features switched on).
"""
from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import say, stop_workers  # noqa: E402 -- bench/ helpers
from policy_world import namespace, pod, valid  # noqa: E402 -- bench/ module
from trafficrun import run_worker, start_server  # noqa: E402 -- bench/ helpers
from vpputil import lab_vpp_api, lab_vpp_pid, resolve_vpp_pid  # noqa: E402
from agent.vpp.values import NONE  # noqa: E402
from lab import sysnet  # noqa: E402
from lab.cluster import Lab, stop_processes  # noqa: E402
from lab.kube import Kube  # noqa: E402

NODES = ("node1", "node2")
#: (pod, node): two per node
PODS = (("client", "node1"), ("server-local", "node1"), ("server", "node2"), ("idle", "node2"))
PAIRS = {"cross-node": "server", "same-node": "server-local"}
K8S_NS = "perf"
MTU = 1450
UNDERLAY_GW = "192.168.56.1"
VNI, VXLAN_PORT = 10, 4789   # the agent's defaults (agent.config)
BD = 1


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip() or 'failed'}")
    return p


def mac(prefix: str, ip: str) -> str:
    """prefix + the IPv4 address, as agent.vpp.render and agent.linux.links derive theirs."""
    return prefix + ":" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def main_core(pid: int) -> int | None:
    """The CPU a VPP's main thread is pinned to (None: not pinned to one)."""
    try:
        for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                v = line.split(":", 1)[1].strip()
                return int(v) if v.isdigit() else None
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- what both kinds share
class Rig:
    """One setup: pods in namespaces, traffic servers in the server pods."""

    label = "?"

    def __init__(self) -> None:
        self.servers: list[subprocess.Popen] = []

    def ns(self, pod_name: str) -> str:
        raise NotImplementedError

    def ip(self, pod_name: str) -> str:
        raise NotImplementedError

    def vpp_pids(self) -> dict[str, int]:
        return {}

    def agent_pids(self) -> dict[str, int]:
        return {}

    def start_servers(self) -> None:
        for name in set(PAIRS.values()):
            if not start_server(self.ns(name), self.servers):
                raise RuntimeError(f"{self.label}: the traffic server in {name} did not start")

    def stop_servers(self) -> None:
        stop_workers(self.servers)
        self.servers = []

    def worker(self, mode: str, dst: str, seconds: float) -> dict:
        ip = self.ip(dst)
        return run_worker(self.ns("client"), mode, ip, seconds, f"{self.label}: {mode} client -> {dst} ({ip})")

    def pod_shape(self, pod_name: str = "client") -> dict:
        """The pod's eth0 as the traffic sees it: MTU and the offloads af_packet cares about."""
        ns = self.ns(pod_name)
        out: dict = {}
        link = json.loads(sh("ip", "-n", ns, "-j", "link", "show", "eth0").stdout or "[]")
        out["mtu"] = link[0]["mtu"] if link else None
        feats = sh("ip", "netns", "exec", ns, "ethtool", "-k", "eth0", check=False).stdout
        # tx-tcp-segmentation, not the "tcp-segmentation-offload" summary: newer kernels
        # keep tx-tcp-accecn-segmentation on, which shows the summary as on
        for k in ("tx-checksumming", "tx-tcp-segmentation", "generic-segmentation-offload",
                  "scatter-gather", "generic-receive-offload"):
            m = re.search(rf"^\s*{k}: (\w+)", feats, re.M)
            out[k] = m.group(1) if m else "?"
        return out

    def host_mtus(self, node: str) -> dict[str, int]:
        """MTUs of the pods' node-side veth ends (everything veth but eth0 and vpp0)."""
        links = json.loads(sh("ip", "-n", self.node_ns(node), "-j", "-d", "link", "show", "type",
                              "veth").stdout or "[]")
        return {x["ifname"]: x["mtu"] for x in links if x["ifname"] not in ("eth0", "vpp0")}

    def node_ns(self, node: str) -> str:
        raise NotImplementedError

    def vpp_shape(self, api) -> dict:
        """Interfaces, RX modes, cnat features and ACL lists of one VPP."""
        ifs = api.dump("sw_interface_dump", sw_if_index=NONE)
        names = {d.sw_if_index: d.interface_name for d in ifs}
        out: dict = {"interfaces": sorted(n for n in names.values() if n != "local0")}
        modes: dict[str, int] = {}
        for line in api.cli("show interface rx-placement").splitlines():
            m = re.search(r"queue \d+ \((\w+)\)", line)
            if m:
                modes[m.group(1)] = modes.get(m.group(1), 0) + 1
        out["rx_modes"] = modes
        for label, arc, feat in (("cnat-input", "ip4-unicast", "cnat-input-ip4"),
                                 ("cnat-lookup", "ip4-unicast", "cnat-lookup-ip4")):
            on = []
            for sw, n in names.items():
                if n == "local0":
                    continue
                r = api.call("feature_is_enabled", **api.fill("feature_is_enabled", arc_name=arc,
                                                              feature_name=feat, sw_if_index=sw))
                if r.is_enabled:
                    on.append(n)
            out[label] = sorted(on)
        out["acl_lists"] = sum(1 for d in api.dump("acl_interface_list_dump", sw_if_index=NONE) if d.count)
        return out

    def close(self) -> None:
        raise NotImplementedError


class LabRig(Rig):
    """A: a ``--dataplane vpp`` lab; C: a ``--dataplane linux`` lab."""

    def __init__(self, label: str, name: str, dataplane: str) -> None:
        super().__init__()
        self.label = label
        self.dataplane = dataplane
        self.lab = Lab(name)
        self.kube: Kube | None = None
        self._ips: dict[str, str] = {}

    def up(self) -> None:
        self.lab.up(nodes=2, dataplane=self.dataplane, timeout=120)
        self.kube = Kube(self.lab)

    def add_pods(self) -> None:
        objs = [namespace(K8S_NS, {"team": K8S_NS})] + \
            [pod(K8S_NS, name, node, {"app": name}) for name, node in PODS]
        self.kube.apply(valid(objs), timeout=300)

    def ns(self, pod_name: str) -> str:
        return self.lab.paths.pod_ns(K8S_NS, pod_name)

    def ip(self, pod_name: str) -> str:
        if pod_name not in self._ips:
            self._ips[pod_name] = self.kube.pod(f"{K8S_NS}/{pod_name}")["status"]["podIP"]
        return self._ips[pod_name]

    def node_ns(self, node: str) -> str:
        return self.lab.state().node(node).netns

    def vpp_pids(self) -> dict[str, int]:
        if self.dataplane != "vpp":
            return {}
        return {n: lab_vpp_pid(self.lab, n) for n in NODES}

    def agent_pids(self) -> dict[str, int]:
        return {n.name: n.pid for n in self.lab.state().nodes}

    def vpp_api(self, node: str):
        return lab_vpp_api(self.lab, node)

    def close(self) -> None:
        self.stop_servers()
        if self.kube is not None:
            self.kube.close()
        self.lab.down()


class HandRig(Rig):
    """B: two VPPs configured by hand (see the module docstring)."""

    label = "B"

    def __init__(self, tag: str, cnat_ready: bool = False) -> None:
        super().__init__()
        self.prefix = f"vth{tag}-"
        self.tmp = Path(tempfile.mkdtemp(prefix="vpp-traffic-"))
        self.under = self.prefix + "under"
        self.procs: dict[str, object] = {}
        self.apis: dict[str, object] = {}
        self.sw: dict[str, dict[str, int]] = {n: {} for n in NODES}   # node -> name -> sw_if_index
        self.pod_sw: dict[str, tuple[str, int]] = {}                   # pod -> (node, sw_if_index)
        self.cnat_ready = cnat_ready
        self.cnat_on = False

    @staticmethod
    def k(node: str) -> int:
        return int(node[-1])

    @staticmethod
    def node_ip(node: str) -> str:
        return f"192.168.56.{100 + HandRig.k(node)}"

    @staticmethod
    def gw(node: str) -> str:
        return f"10.1.{HandRig.k(node)}.1"

    @staticmethod
    def vtep(node: str) -> str:
        from agent.builders.nodes import vtep_mac  # noqa: PLC0415 -- the lab's VTEP MACs
        return vtep_mac(HandRig.k(node))

    def node_ns(self, node: str) -> str:
        return self.prefix + node

    def ns(self, pod_name: str) -> str:
        return self.prefix + "p-" + pod_name

    def ip(self, pod_name: str) -> str:
        node = dict(PODS)[pod_name]
        j = [p for p, n in PODS if n == node].index(pod_name)
        return f"10.1.{self.k(node)}.{2 + j}"

    def vpp_pids(self) -> dict[str, int]:
        return {n: resolve_vpp_pid(p.pid) for n, p in self.procs.items()}

    def vpp_api(self, node: str):
        from agent.vpp.papi import VppApi  # noqa: PLC0415
        return VppApi(str(self.procs[node].api_socket), timeout=30.0, client_name="bench-shape").connect()

    @staticmethod
    def call(api, name: str, **kw):
        return api.call(name, **api.fill(name, **kw))

    # ---- nodes
    def up(self, cores: dict[str, int | None]) -> None:
        """Underlay, two node namespaces, a VPP in each (main thread on ``cores[node]``),
        node configuration; no pods yet."""
        from agent.vpp.ifdesc import AF_PACKET_FLAGS, AF_PACKET_MODE_ETHERNET, TX_FRAME_SIZE  # noqa: PLC0415
        from agent.vpp.papi import VppApi  # noqa: PLC0415
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        self.afp = dict(mode=AF_PACKET_MODE_ETHERNET, tx_frame_size=TX_FRAME_SIZE, flags=AF_PACKET_FLAGS)
        sysnet.netns_add(self.under)
        sysnet.ip_batch(["link add br0 type bridge", f"addr add {UNDERLAY_GW}/24 dev br0", "link set br0 up"],
                        netns=self.under)
        for node in NODES:
            ns = self.node_ns(node)
            sysnet.netns_add(ns)
            port = f"u-{node}"
            sysnet.ip_batch([f"link add {port} type veth peer name vpp0 netns {ns}",
                             f"link set {port} master br0", f"link set {port} up"], netns=self.under)
            sysnet.ip("link", "set", "vpp0", "up", netns=ns)
            p = VppProcess(self.tmp / node, name=f"{self.prefix}{node}", netns=ns, main_core=cores.get(node))
            self.procs[node] = p
            p.start(timeout=30)
            self.apis[node] = VppApi(str(p.api_socket), timeout=30.0, client_name="bench-hand").connect()
        for node in NODES:
            self._node(node)
        for node in NODES:
            for peer in NODES:
                if peer != node:
                    self._peer(node, peer)

    def _node(self, node: str) -> None:
        api, c, sw = self.apis[node], self.call, self.sw[node]
        nip = self.node_ip(node)
        up = c(api, "af_packet_create_v3", hw_addr=mac("02:fd", nip), host_if_name="vpp0", **self.afp).sw_if_index
        sw["uplink"] = up
        c(api, "sw_interface_set_flags", sw_if_index=up, flags=1)
        c(api, "sw_interface_add_del_address", sw_if_index=up, is_add=True, prefix=f"{nip}/24")
        c(api, "ip_route_add_del", is_add=True, route={
            "table_id": 0, "prefix": "0.0.0.0/0",
            "paths": [{"type": 0, "sw_if_index": up, "nh": {"address": {"ip4": UNDERLAY_GW}}}]})
        lo = c(api, "create_loopback_instance", mac_address=self.vtep(node), is_specified=True,
               user_instance=0).sw_if_index
        sw["loop0"] = lo
        c(api, "sw_interface_set_flags", sw_if_index=lo, flags=1)
        c(api, "bridge_domain_add_del_v2", bd_id=BD, flood=True, uu_flood=True, forward=True, learn=False,
          arp_term=False, is_add=True, bd_tag="bench")
        c(api, "sw_interface_set_l2_bridge", rx_sw_if_index=lo, bd_id=BD, port_type=1, shg=0, enable=True)
        gw = self.gw(node)
        c(api, "sw_interface_add_del_address", sw_if_index=lo, is_add=True, prefix=f"{gw}/24")
        c(api, "proxy_arp_add_del", is_add=True, proxy={"table_id": 0, "low": gw, "hi": gw})
        if self.cnat_ready:  # the SNAT policy as the agent sets it (cnat features toggled per run)
            from agent.vpp import svcdesc as D  # noqa: PLC0415
            c(api, "cnat_set_snat_addresses_v2", fwd_fib_index=0, ret_fib_index=0, snat_ip4="0.0.0.0",
              snat_ip6="::", sw_if_index=lo, flags=D.SNAT_FLAG_NO_CLIENT)
            c(api, "cnat_set_snat_policy", policy=D.SNAT_POLICY_K8S)

    def _peer(self, node: str, peer: str) -> None:
        api, c = self.apis[node], self.call
        lo = self.sw[node]["loop0"]
        t = c(api, "vxlan_add_del_tunnel_v3", is_add=True, instance=self.k(peer), src_address=self.node_ip(node),
              dst_address=self.node_ip(peer), src_port=VXLAN_PORT, dst_port=VXLAN_PORT, vni=VNI,
              mcast_sw_if_index=NONE, decap_next_index=NONE).sw_if_index
        self.sw[node][f"vx-{peer}"] = t
        c(api, "sw_interface_set_flags", sw_if_index=t, flags=1)
        c(api, "sw_interface_set_l2_bridge", rx_sw_if_index=t, bd_id=BD, port_type=0, shg=1, enable=True)
        c(api, "l2fib_add_del", mac=self.vtep(peer), bd_id=BD, sw_if_index=t, is_add=True, static_mac=True)
        c(api, "ip_neighbor_add_del", is_add=True, neighbor={
            "sw_if_index": lo, "flags": 1, "mac_address": self.vtep(peer), "ip_address": self.gw(peer)})
        c(api, "ip_route_add_del", is_add=True, route={
            "table_id": 0, "prefix": f"10.1.{self.k(peer)}.0/24",
            "paths": [{"type": 0, "sw_if_index": lo, "nh": {"address": {"ip4": self.gw(peer)}}}]})

    # ---- pods
    def add_pods(self) -> None:
        for name, node in PODS:
            self._pod(name, node)

    def _pod(self, name: str, node: str) -> None:
        api, c = self.apis[node], self.call
        nns, pns = self.node_ns(node), self.ns(name)
        ip, gw = self.ip(name), self.gw(node)
        host = f"vth{self.k(node)}{[p for p, n in PODS if n == node].index(name)}"
        pmac = mac("0a:58", ip)
        sysnet.netns_add(pns)
        sysnet.ip("link", "add", host, "mtu", str(MTU), "type", "veth", "peer", "name", "eth0", "mtu", str(MTU),
                  "address", pmac, "netns", pns, netns=nns)
        sysnet.ip("link", "set", host, "up", netns=nns)
        sysnet.ip_batch(["link set eth0 up", f"addr add {ip}/32 dev eth0",
                         f"route add default via {gw} dev eth0 onlink"], netns=pns)
        sysnet.tx_checksum_off("eth0", netns=pns)
        sw = c(api, "af_packet_create_v3", hw_addr=mac("02:fe", ip), host_if_name=host, **self.afp).sw_if_index
        self.pod_sw[name] = (node, sw)
        c(api, "sw_interface_set_flags", sw_if_index=sw, flags=1)
        c(api, "sw_interface_set_unnumbered", sw_if_index=self.sw[node]["loop0"], unnumbered_sw_if_index=sw,
          is_add=True)
        c(api, "proxy_arp_intfc_enable_disable", sw_if_index=sw, enable=True)
        c(api, "ip_neighbor_add_del", is_add=True, neighbor={
            "sw_if_index": sw, "flags": 1, "mac_address": pmac, "ip_address": ip})
        c(api, "ip_route_add_del", is_add=True, route={
            "table_id": 0, "prefix": f"{ip}/32",
            "paths": [{"type": 0, "sw_if_index": sw, "nh": {"address": {"ip4": ip}}}]})

    def set_cnat(self, on: bool) -> None:
        """cnat's features as the agent enables them (agent.vpp.services: pod mode with
        hairpin on pod interfaces, return mode on loop0), on or off."""
        if on == self.cnat_on:
            return
        from agent.vpp import svcdesc as D  # noqa: PLC0415
        c = self.call
        for name, (node, sw) in sorted(self.pod_sw.items()):
            api = self.apis[node]
            if not on:
                c(api, "cnat_snat_policy_add_del_if", sw_if_index=sw, is_add=0, table=D.SNAT_TABLE_POD)
            c(api, "feature_cnat_enable_disable", sw_if_index=sw, enable_disable=on)
            if on:
                c(api, "cnat_snat_policy_add_del_if", sw_if_index=sw, is_add=1, table=D.SNAT_TABLE_POD)
        for node in NODES:
            for arc, feat in (("ip4-unicast", "cnat-lookup-ip4"), ("ip4-output", "cnat-writeback-ip4")):
                c(self.apis[node], "feature_enable_disable", sw_if_index=self.sw[node]["loop0"], enable=on,
                  arc_name=arc, feature_name=feat)
        self.cnat_on = on

    def close(self) -> None:
        """Each step runs even if another fails."""
        steps = [("traffic servers", self.stop_servers)]
        steps += [(f"API {n}", a.close) for n, a in self.apis.items()]
        steps += [(f"VPP {n}", p.close) for n, p in self.procs.items()]

        def namespaces() -> None:
            for ns in sysnet.netns_list(self.prefix):
                stop_processes(sysnet.netns_pids(ns), timeout=3)
                sysnet.netns_del(ns)
        steps += [("namespaces", namespaces),
                  ("runtime directory", lambda: shutil.rmtree(self.tmp, ignore_errors=True))]
        for what, fn in steps:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 -- keep cleaning, say what is left
                say(f"hand-configured VPP: clean-up step '{what}' failed: {e}")
