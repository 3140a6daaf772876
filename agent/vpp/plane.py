"""The VPP data plane (:class:`agent.dataplane.Dataplane`): FD.io VPP
programmed through the one vpp_papi chokepoint (:mod:`agent.vpp.papi`).

What it holds (see :mod:`agent.vpp.render` for the shape, docs/vpp.md for
the whole mapping): the uplink and the pods' gateway (``loop0``, BVI of the
bridge domain that carries the VXLAN tunnels to the other nodes), pods on
af_packet interfaces over veth pairs, Services as cnat translations
(:mod:`agent.vpp.services`), NetworkPolicies as ACL-plugin rules on the pods'
interfaces (:mod:`agent.vpp.policies`).

VPP may be absent when the agent starts, or restart under it. A monitor
thread keeps (re)connecting; :meth:`generation` counts successful
connections, and the agent resyncs whenever it changes -- a restarted VPP
comes back empty and gets everything again, pods' af_packet interfaces
re-attached to their veths. Until then :meth:`ready` says why not (CNI
STATUS) and operations fail as temporary errors (retried).
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any, Callable, Mapping

from agent.dataplane import NodeFacts
from agent.errors import FatalError
from agent.linux.plane import VethPods
from agent.model.diag import InterfaceCounters, Session, SocketInfo

READ_TIMEOUT = 5.0  # seconds VPP may take to answer one message (see _real)

log = logging.getLogger(__name__)

DEFAULT_POD_MTU = 1450  # af_packet over the underlay's 1500 with VXLAN (50)
MONITOR_INTERVAL = 0.5


class VppDataplane(VethPods):
    """See the module docstring; opened once per agent."""

    name = "vpp"
    host_in_subnet = True  # the host interconnect sends from it (render.render_host)

    def __init__(self, cfg=None, *, api_factory: Callable[[str], Any] | None = None) -> None:
        self._factory = api_factory
        self._service_cidr = cfg.service_cidr if cfg is not None else ""
        self._pod_cidr = ""  # set when opened: the host interconnect's route
        self.api = None
        self.netlink = None
        self.facts: NodeFacts | None = None
        self.uplink = None
        self._stn_dir = ""  # vpp_stn: STN's directory, read at every node render
        self._stn_keys: tuple[str, ...] = ()
        self._stn_mtu, self._stn_mac = 1500, ""  # the NIC's, read when opened
        self.stats_socket = ""
        self._descriptors: list = []
        #: whether this VPP has what memifs need (messages.MEMIF), learnt at
        #: every connection; until the first, a memif pod's values wait for VPP
        self.supports_memif = True
        #: the (eth0) addresses of the local pods with a memif, as rendered:
        #: the policy renderer puts their lists on the memif too
        self._memifs: set[str] = set()
        #: the node's own address in its pod subnet: the agent sets it (Dataplane.host_address)
        self.host_address = ""
        self._why = "not opened"
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def open(self, cfg) -> NodeFacts:
        from agent.linux.links import VethDescriptor  # noqa: PLC0415 -- the pods' Linux side
        from agent.linux.netns import Netlink  # noqa: PLC0415
        from agent.linux.routes import PodRouteDescriptor  # noqa: PLC0415
        from agent.vpp import render  # noqa: PLC0415
        from agent.vpp.descriptors import descriptors  # noqa: PLC0415
        self.uplink = render.Uplink(cfg.vpp_uplink, cfg.vpp_uplink_cidr, cfg.vpp_uplink_gateway)
        stn = getattr(cfg, "vpp_stn", False)  # an AgentConfig has it; a harness's namespace may not
        self._stn_dir = cfg.stn_dir if stn else ""
        self._service_cidr = cfg.service_cidr
        self._pod_cidr = cfg.pod_cidr
        self.stats_socket = cfg.vpp_stats_socket
        node_ip = str(ipaddress.ip_interface(cfg.vpp_uplink_cidr).ip)
        self.facts = NodeFacts(cfg.vpp_uplink, node_ip, (node_ip,), cfg.mtu or DEFAULT_POD_MTU)
        self.api = self._factory(cfg.vpp_api_socket) if self._factory else self._real(cfg.vpp_api_socket)
        self.netlink = Netlink()
        if stn:
            self._stn_mtu, self._stn_mac = self._link_facts(cfg.vpp_uplink)
        # a stolen NIC's subnet: VPP answers ARP for it towards the host
        owned = (cfg.pod_cidr, cfg.service_cidr) + \
            ((str(ipaddress.ip_interface(cfg.vpp_uplink_cidr).network),) if stn else ())
        self._descriptors = [VethDescriptor(self.netlink), PodRouteDescriptor(self.netlink)] + \
            descriptors(self.api, owned, lambda: self.supports_memif)
        self._why = f"VPP at {cfg.vpp_api_socket} is not reachable yet"
        self._try_connect()
        self._monitor = threading.Thread(target=self._watch, name="vpp-monitor", daemon=True)
        self._monitor.start()
        return self.facts

    @staticmethod
    def _real(socket_path: str):
        from agent.vpp.papi import VppApi  # noqa: PLC0415
        # A VPP that dies closes its socket, noticed at once; the read timeout
        # bounds one that is alive but does not answer (seen: a VPP spinning at
        # ~80 af_packet pods, docs/vpp.md "Faults"), so a CNI ADD waits at most
        # this long before it fails with "try again" (30 s was tried: VPP did
        # not answer within that either, and every ADD waited 30 s).
        return VppApi(socket_path, timeout=READ_TIMEOUT, client_name="contiv-agent")

    def _try_connect(self) -> None:
        from agent.vpp.errors import VppUnavailable, VppVersionMismatch  # noqa: PLC0415
        from agent.vpp.messages import MEMIF, required  # noqa: PLC0415
        with self._lock:
            try:
                self.api.reconnect()
                self.api.require(required())  # VppVersionMismatch (fatal) names what differs
                try:
                    self.api.require(MEMIF)
                    self.supports_memif = True
                except VppVersionMismatch as e:
                    self.supports_memif = False
                    log.warning("VPP without what pods' memifs need (%s): pods asking for one are "
                                "refused", e.message)
            except VppUnavailable as e:
                self._why = e.message
                return
            self._why = ""
        log.info("connected to VPP %s (connection %d)", self.api.version(), self.api.generation)

    def _watch(self) -> None:
        """Reconnect when VPP is gone; notice it going (a cheap ping)."""
        from agent.vpp.errors import VppUnavailable  # noqa: PLC0415
        while not self._stop.wait(MONITOR_INTERVAL):
            try:
                if self._why:
                    self._try_connect()
                else:
                    self.api.call("control_ping")
            except VppUnavailable as e:
                log.warning("VPP went away: %s", e.message)
                self._why = e.message
            except FatalError as e:
                log.error("VPP: %s", e.message)
                self._why = e.message
            except Exception:  # noqa: BLE001 -- the monitor must outlive one odd reply
                log.exception("VPP monitor")

    def generation(self) -> int:
        # the chokepoint counts connections; one that failed `require` leaves
        # ready() false, and the agent resyncs only once it is ready
        return self.api.generation if self.api is not None else 0

    def ready(self) -> str:
        return self._why

    def descriptors(self) -> list:
        return list(self._descriptors)

    def close(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=2)
        if self.api is not None:
            self.api.close()
        if self.netlink is not None:
            self.netlink.close()

    # ------------------------------------------------------------ rendering
    def render_node(self, t) -> dict[str, object]:
        from agent.vpp import render  # noqa: PLC0415
        uplink = self._stn_uplink() if self._stn_dir else self.uplink
        out = render.render_node(t, uplink, self._service_cidr, self._pod_cidr, self.host_address)
        if self._stn_dir:
            out.update(render.render_stn_host(self._stn_mtu))
        self._stn_keys = tuple(k for k in out if render.is_stn_key(k)) if uplink.carry and uplink.stn else ()
        return out

    def _stn_uplink(self):
        """The uplink of a ``vpp_stn`` node. VPP holds the NIC at all times
        -- af_packet with the NIC's own MAC, the one the network knows the
        node's address by -- because VPP's af_packet takes the NIC's link
        down when it lets go of it (the network's neighbours then forget the
        node and relearn it a retransmission later: ~0.4 s without answer);
        but it carries the node's address only while STN's record says the
        address has left the NIC (stealing after the move, pending,
        confirmed). Otherwise the kernel has the NIC's traffic and VPP, with
        no address there, drops its copy."""
        from agent.errors import ContivError  # noqa: PLC0415
        from agent.model.stn import uplink_of  # noqa: PLC0415
        from agent.stndir import StnDir  # noqa: PLC0415
        from agent.vpp import render  # noqa: PLC0415
        idle = render.Uplink(self.uplink.host_if, self.uplink.cidr, self.uplink.gateway, self._stn_mac,
                             stn=True, carry=False)
        files = StnDir(self._stn_dir)
        try:
            st = files.state(self.uplink.host_if)
            if st is None or st.dataplane != "vpp" or not (
                    st.phase in ("pending", "confirmed") or (st.phase == "stealing" and st.moved)):
                return idle
            cidr, gateway, mac = uplink_of(files.snapshot(self.uplink.host_if))
        except ContivError as e:
            log.warning("STN record of %s unreadable, leaving the NIC to Linux: %s", self.uplink.host_if, e)
            return idle
        if ipaddress.ip_interface(cidr) != ipaddress.ip_interface(self.uplink.cidr):
            # the host holds the snapshot's address: VPP answering for another would split the node
            log.error("STN snapshot of %s has %s, the agent is configured with %s (vpp_uplink_cidr): "
                      "VPP does not answer for either", self.uplink.host_if, cidr, self.uplink.cidr)
            return idle
        return render.Uplink(self.uplink.host_if, self.uplink.cidr, self.uplink.gateway or gateway,
                             mac or self._stn_mac, stn=True)

    def stn_keys(self) -> tuple[str, ...]:
        return self._stn_keys

    def _link_facts(self, ifname: str) -> tuple[int, str]:
        """MTU and MAC of Linux link ``ifname`` (1500 and "" -- VPP's own
        MAC -- when it cannot be read)."""
        try:
            link = self.netlink.node.link("get", ifname=ifname)[0]
        except Exception:  # noqa: BLE001 -- no such NIC (yet)
            return 1500, ""
        return link.get_attr("IFLA_MTU") or 1500, link.get_attr("IFLA_ADDRESS") or ""

    def render_pod(self, p) -> dict[str, object]:
        from agent.vpp import render  # noqa: PLC0415
        ip = str(ipaddress.ip_interface(p.ips[0]).ip)
        if p.memif:
            self._memifs.add(ip)
        else:
            self._memifs.discard(ip)  # (the address may have gone to a pod without one)
        return render.render_pod(p)

    def pod_interfaces(self, p, metadata):
        """The veth's two ends, and the pod's memif when it has one: its
        socket as the pod sees it (``@`` for an abstract socket)."""
        from agent.dataplane import PodInterface  # noqa: PLC0415
        from agent.vpp.render import memif_socket_path  # noqa: PLC0415
        out = super().pod_interfaces(p, metadata)
        if p.memif:
            out += (PodInterface(f"memif-{p.ifname}", "", p.netns, memif_socket_path(p.ifname)),)
        return out

    def has_memif(self, pod_ip: str) -> bool:
        """Whether the local pod of ``pod_ip`` has a memif (as last rendered)."""
        return pod_ip in self._memifs

    def _node_ips(self) -> tuple[str, ...]:
        """The node's addresses at the time of asking (the renderers are made
        before the plane is opened)."""
        return self.facts.node_ips if self.facts is not None else ()

    def service_renderer(self):
        from agent.vpp.services import CnatServiceRenderer  # noqa: PLC0415
        return CnatServiceRenderer(self._node_ips, self._service_cidr)

    def policy_renderer(self):
        from agent.vpp.policies import AclPolicyRenderer  # noqa: PLC0415
        from agent.vpp.render import HOST_LINUX_IP  # noqa: PLC0415
        # the node reaches its pods from the host interconnect's addresses
        return AclPolicyRenderer(
            lambda: self._node_ips() + (HOST_LINUX_IP,) + ((self.host_address,) if self.host_address else ()),
            self.has_memif)

    # ------------------------------------------------------------ resync
    def prefetch(self) -> None:
        pass  # VPP's dumps are quick next to nftables' listing

    def wait_prefetch(self) -> None:
        pass

    def discard_prefetch(self) -> None:
        pass

    # ------------------------------------------------------------ diagnostics
    def counters(self, pods: Mapping[str, str]) -> list[InterfaceCounters]:
        """From VPP's stats segment, our interfaces as VPP sees them (``rx`` is
        what VPP received: from a pod, what it sent). An af_packet interface
        is named after the Linux interface it reads (a pod's veth: the name
        ``pods`` maps to the pod), others by VPP's name."""
        from agent.vpp.papi import interface_counters  # noqa: PLC0415
        from agent.vpp.values import NONE, TAG_PREFIX  # noqa: PLC0415
        ours = {d.interface_name for d in self.api.dump("sw_interface_dump", sw_if_index=NONE)
                if (d.tag or "").startswith(TAG_PREFIX)}
        out = []
        for vpp_name, c in interface_counters(self.stats_socket).items():
            if vpp_name not in ours:
                continue
            name = vpp_name[5:] if vpp_name.startswith("host-") else vpp_name
            out.append(InterfaceCounters(name, pods.get(name, "node"), **c))
        return sorted(out, key=lambda c: (c.owner != "node", c.owner, c.name))

    def sessions(self) -> list[Session]:
        from agent.vpp.services import sessions  # noqa: PLC0415
        return sessions(self.api)

    def session_limit(self) -> int | None:
        return None  # cnat's session table grows with its hash: no fixed count to report

    def sockets(self, netns: str) -> list[SocketInfo]:
        from agent.linux.sockdiag import pod_sockets  # noqa: PLC0415 -- pods are Linux namespaces here too
        return pod_sockets(netns)

    def trace_start(self, flow) -> Any:
        """A pcap filter for the flow and a capture on VPP's input nodes
        (:mod:`agent.vpp.trace`); one trace at a time per VPP."""
        from agent.vpp import trace  # noqa: PLC0415
        return trace.start(self.api, flow)

    def trace_collect(self, handle) -> list:
        from agent.vpp import trace  # noqa: PLC0415
        return trace.collect(self.api, handle)

    def cli(self, command: str) -> str:
        """VPP's debug CLI (``cli_inband``), through the chokepoint."""
        return self.api.cli(command)

    def dump(self, what: str) -> list[dict]:
        from agent.vpp.inspect import DUMPS  # noqa: PLC0415
        return DUMPS[what](self.api)
