"""The Linux data plane (:class:`agent.dataplane.Dataplane`): veth pairs,
routes, a VXLAN device, nftables for Services and policies.

Everything Linux-specific the agent needs is reached through this class: the
daemon imports no Linux module and names no Linux device. Rendering is in
:mod:`agent.linux.render` (pods, node), :mod:`agent.linux.svcrender` /
:mod:`agent.linux.svcstate` (Services) and :mod:`agent.linux.polrender` /
:mod:`agent.linux.polstate` (policies); the descriptors in the modules
:func:`agent.linux.descriptors` and :mod:`agent.linux.nft.descriptors` list.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from agent.dataplane import NodeFacts, PodInterface
from agent.errors import NotSupported
from agent.linux import conntrack
from agent.linux.sockdiag import pod_sockets
from agent.model.diag import InterfaceCounters, Session, SocketInfo

VXLAN_OVERHEAD = 50


def _ifname(index: int) -> str:
    """An interface's name by index, in the node's namespace (this thread's)."""
    import socket  # noqa: PLC0415
    try:
        return socket.if_indextoname(index) if index else ""
    except OSError:
        return f"if{index}"


class VethPods:
    """Pods as Linux veth pairs (this data plane's, and VPP's, which takes the
    node end as af_packet): what the CNI result and the API say about a pod's
    interfaces, from the veth descriptor's metadata."""

    supports_memif = False  # VPP's overrides it
    host_in_subnet = False  # the node's host routes through its own links (VPP: True)
    host_address = ""

    def pod_interfaces(self, p, metadata: Callable[[str], Any]) -> tuple[PodInterface, ...]:
        from agent.linux import values  # noqa: PLC0415
        host_if = values.host_ifname(p.container_id, p.ifname)
        meta = metadata(values.veth_key(host_if)) or {}
        return (PodInterface(host_if, meta.get("mac", "")),
                PodInterface(p.ifname, meta.get("pod_mac", ""), p.netns))

    def pod_host_if(self, container_id: str, ifname: str) -> str:
        from agent.linux import values  # noqa: PLC0415
        return values.host_ifname(container_id, ifname)


class LinuxDataplane(VethPods):
    """See the module docstring; opened once per agent."""

    name = "linux"

    def __init__(self, cfg=None) -> None:
        self.netlink = None
        self.nft = None
        self._batch = None
        self._descriptors: list = []
        self.facts: NodeFacts | None = None
        self._stn = None  # STN's directory (agent.stndir.StnDir)
        self._nic = ""  # the underlay's NIC, whether STN's bridge holds it or not

    def open(self, cfg) -> NodeFacts:
        from agent import linux  # noqa: PLC0415 -- pyroute2 only once chosen
        from agent.linux.hostinfo import detect_underlay  # noqa: PLC0415
        from agent.linux.netns import Netlink  # noqa: PLC0415
        from agent.linux.nft.descriptors import descriptors as nft_descriptors  # noqa: PLC0415
        from agent.linux.nft.lib import Nftables  # noqa: PLC0415
        from agent.stndir import StnDir  # noqa: PLC0415
        # a NIC STN stole has its address on STN's bridge: the underlay is that
        stn_dir = getattr(cfg, "stn_dir", "")  # an AgentConfig has it; a harness's namespace may not
        self._stn = StnDir(stn_dir) if stn_dir else None
        wanted = cfg.underlay_if
        if wanted and self._stn is not None:
            wanted = self._stn.holder(wanted, "linux") or wanted
        underlay = detect_underlay(wanted, cfg.node_ip)
        self._nic = self._stn.nic_of(underlay.ifname) if self._stn is not None else underlay.ifname
        self.netlink = Netlink()
        self.nft = Nftables()
        nft_descs = nft_descriptors(self.nft)
        self._batch = nft_descs[0].batch_group
        self._descriptors = linux.descriptors(self.netlink) + nft_descs
        self.facts = NodeFacts(underlay.ifname, underlay.ip, underlay.all_ips,
                               cfg.mtu or (underlay.mtu - VXLAN_OVERHEAD))
        self._remove_stale_traces()
        return self.facts

    def _remove_stale_traces(self) -> None:
        """Trace tables an agent left when it stopped mid-trace (they only
        mark packets for tracing, but nobody would ever remove them)."""
        from agent.linux.nftrace import stale_tables  # noqa: PLC0415
        names = [t["table"]["name"] for t in self.nft.list_json("tables ip") if "table" in t]
        for name in stale_tables(names):
            self.nft.run(f"delete table ip {name}")

    def descriptors(self) -> list:
        return list(self._descriptors)

    def ready(self) -> str:
        return ""  # the kernel is always there; what we built is checked by the agent

    def generation(self) -> int:
        return 1

    # ------------------------------------------------------------ rendering
    def _underlay_dev(self, dev: str) -> str:
        """The link VXLAN leaves by: STN's bridge while it holds the NIC (the
        NIC, a bridge port, has no address then), else the NIC (``dev`` is
        the one or the other: the underlay found at start)."""
        if self._stn is None or not self._nic:
            return dev
        return self._stn.holder(self._nic, "linux") or self._nic

    def stn_keys(self) -> tuple[str, ...]:
        from agent.linux import render, values  # noqa: PLC0415
        stolen = self._stn is not None and bool(self._stn.holder(self._nic, "linux"))
        return (values.vxlan_key(render.VXLAN_DEV),) if stolen else ()

    def render_node(self, t) -> dict[str, object]:
        from dataclasses import replace  # noqa: PLC0415
        from agent.linux import polrender, render, svcrender  # noqa: PLC0415
        dev = self._underlay_dev(t.underlay_dev)
        if dev != t.underlay_dev:
            t = replace(t, underlay_dev=dev)
        return {**render.render_node(t), **svcrender.render_base(t.me.gateways[0], render.VXLAN_DEV),
                **polrender.render_base()}

    def render_pod(self, p) -> dict[str, object]:
        from agent.linux import render  # noqa: PLC0415
        return render.render_pod(p)

    def service_renderer(self):
        from agent.linux.svcstate import NftServiceRenderer  # noqa: PLC0415
        return NftServiceRenderer()

    def policy_renderer(self):
        from agent.linux.polstate import NftPolicyRenderer  # noqa: PLC0415
        return NftPolicyRenderer()

    # ------------------------------------------------------------ resync
    def prefetch(self) -> None:
        self._batch.prefetch()

    def wait_prefetch(self) -> None:
        self._batch.wait_prefetch()

    def discard_prefetch(self) -> None:
        self._batch.discard_prefetch()

    def close(self) -> None:
        if self.netlink is not None:
            self.netlink.close()
            self.netlink = None
        if self.nft is not None:
            self.nft.close()
            self.nft = None

    # ------------------------------------------------------------ diagnostics
    def counters(self, pods: Mapping[str, str]) -> list[InterfaceCounters]:
        """Link statistics of the node's own links (underlay, gateway, VXLAN)
        and of the pods' host-side veth ends, as the node sees them: what the
        pod sends is ``rx`` here."""
        from agent.linux import render  # noqa: PLC0415
        own = {render.GW_DEV: "node", render.VXLAN_DEV: "node"}
        if self.facts is not None:
            own[self.facts.underlay] = "node"
        want = {**own, **pods}
        out = []
        for link in self.netlink.node.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name not in want:
                continue
            st = link.get_attr("IFLA_STATS64") or {}
            out.append(InterfaceCounters(
                name, want[name], st.get("rx_packets", 0), st.get("rx_bytes", 0),
                st.get("rx_dropped", 0), st.get("rx_errors", 0), st.get("tx_packets", 0),
                st.get("tx_bytes", 0), st.get("tx_dropped", 0), st.get("tx_errors", 0)))
        return sorted(out, key=lambda c: (c.owner != "node", c.owner, c.name))

    def sessions(self) -> list[Session]:
        """The node's conntrack table (IPv4 and IPv6), read over ctnetlink."""
        return conntrack.sessions()

    def session_limit(self) -> int | None:
        """``nf_conntrack_max`` as the agent's namespace sees it."""
        return conntrack_max()

    def sockets(self, netns: str) -> list[SocketInfo]:
        return pod_sockets(netns)

    def trace_start(self, flow):
        """An nftables trace of ``flow`` (:mod:`agent.linux.nftrace`)."""
        from agent.linux.nftrace import Tracer  # noqa: PLC0415
        return Tracer(flow, self.nft.run).start()

    def trace_collect(self, handle) -> list:
        from agent.linux import nftrace, render  # noqa: PLC0415
        return handle.collect(nftrace.Node(_ifname, render.VXLAN_DEV, self._route_text))

    def _route_text(self, dst: str) -> str:
        """The route the node takes to ``dst`` now, as ``ip route get`` says it."""
        try:
            r = self.netlink.node.route("get", dst=dst)[0]
        except Exception as e:  # noqa: BLE001 -- a diagnostic: say why, do not fail the trace
            return f"no route to {dst} ({e})"
        gw, oif = r.get_attr("RTA_GATEWAY"), r.get_attr("RTA_OIF")
        return f"{dst}{' via ' + gw if gw else ''} dev {_ifname(oif) if oif else '?'}"

    def cli(self, command: str) -> str:
        raise NotSupported("the Linux data plane has no CLI of its own",
                           hint="use ip and nft in the node's namespace")

    def dump(self, what: str) -> list[dict]:
        if what == "sessions":
            return [s.to_dict() for s in self.sessions()]
        raise NotSupported(f"the Linux data plane has no {what} dump of VPP's kind",
                           hint="`contivctl agent state` lists what the agent programmed")


def conntrack_max() -> int | None:
    """The conntrack table's size limit (``nf_conntrack_max``) as this
    thread's namespace sees it; None where conntrack is not loaded."""
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None
