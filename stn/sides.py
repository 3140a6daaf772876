"""What each data plane does with a stolen NIC: one class per data plane.

A side names the *holder* -- the link that carries the node's addresses
and routes while the NIC is stolen -- and does the data-plane-specific
steps around the moves :mod:`stn.core` does itself (addresses, routes,
rules, neighbours from the NIC to the holder and back):

* :class:`LinuxSide`: a bridge takes the NIC's MAC and MTU and enslaves the
  NIC; the node's addresses and routes move onto the bridge (pods plug into
  it as they would into any Linux bridge).
* :class:`VppSide`: a veth pair is the host interconnect -- ``stn-host``
  keeps the node's addresses and routes, VPP takes ``stn-vpp`` -- and the
  node's agent has VPP take the NIC itself (af_packet here, DPDK in
  production) with the node's address and an ``stn`` rule that hands VPP
  the packets for that address it does not consume itself.

``holds`` is the watchdog's question: does the data plane still hold the
NIC? ``up``: is the data plane back, to take it again? Every method may be
repeated (a retried restore runs them again).
"""
from __future__ import annotations

import hashlib
import os
import socket
import time

from agent.errors import InvalidInput, Unavailable
from agent.model.stn import Snapshot, StnState
from stn import netcfg

#: the MAC VPP's stn plugin writes as destination on what it hands the host
STN_HOST_MAC = "00:00:00:00:00:02"
VPP_HOST, VPP_PEER = "stn-host", "stn-vpp"


class LinuxSide:
    """The Linux data plane: a bridge owns the NIC. ``agent``: the node's
    agent, if one runs, told so that its VXLAN device leaves by the bridge."""

    name = "linux"
    moves_neighbours = True

    def __init__(self, agent=None) -> None:
        self.agent = agent

    def holder(self, iface: str) -> str:
        name = f"stnbr-{iface}"
        return name if len(name) <= 15 else "stnbr-" + hashlib.sha1(iface.encode()).hexdigest()[:9]

    def create_holder(self, ipr, snap: Snapshot, holder: str) -> None:
        link = snap.link
        if not ipr.link_lookup(ifname=holder):
            # no STP and no forwarding delay: the bridge forwards at once (a
            # listening bridge would cut the node off for 15 s per port)
            ipr.link("add", ifname=holder, kind="bridge", br_stp_state=0, br_forward_delay=0)
        idx = netcfg.ifindex(ipr, holder)
        netcfg.set_link(ipr, idx, address=link["mac"], mtu=link["mtu"])
        netcfg.set_link(ipr, idx, state="up")

    def attach(self, ipr, snap: Snapshot, holder: str) -> None:
        nic = netcfg.ifindex(ipr, snap.iface)
        netcfg.set_link(ipr, nic, master=netcfg.ifindex(ipr, holder))
        netcfg.set_link(ipr, nic, state="up")

    def take(self, snap: Snapshot, state: StnState) -> None:
        """The kernel forwards as soon as the NIC is a port; an agent running
        here moves its VXLAN device onto the bridge."""
        _tell(self.agent, wait=True)

    def release(self, ipr, snap: Snapshot, holder: str) -> None:
        _tell(self.agent, wait=False)  # its VXLAN device back onto the NIC
        nic = netcfg.ifindex(ipr, snap.iface)
        if netcfg.link_info(ipr, nic)["master"]:
            netcfg.set_link(ipr, nic, master=0)

    def teardown(self, ipr, holder: str) -> None:
        netcfg.delete_link(ipr, holder)

    def up(self) -> bool:
        """A bridge that went does not come back by itself: never."""
        return False

    def holds(self, ipr, state: StnState) -> bool:
        found = ipr.link_lookup(ifname=state.holder)
        if not found:
            return False
        try:
            nic = netcfg.link_info(ipr, netcfg.ifindex(ipr, state.iface))
        except Exception:  # noqa: BLE001 -- a NIC that vanished: not held
            return False
        return nic["master"] == found[0] and netcfg.link_info(ipr, found[0])["up"]


class VppSide:
    """The VPP data plane: VPP owns the NIC, a veth pair carries the host.

    ``agent``: the node agent's client (:class:`agent.api.client.AgentClient`),
    through which VPP takes and releases the NIC; ``vpp_socket``: VPP's API
    socket, whose accepting connections is what "VPP is alive" means."""

    name = "vpp"
    # the host's frames leave through VPP, which answers ARP for the subnet:
    # neighbours pinned on the host would bypass that; VPP learns its own
    moves_neighbours = False

    def __init__(self, agent, vpp_socket: str = "/run/vpp/api.sock", wait: float = 30.0) -> None:
        self.agent = agent
        self.vpp_socket = vpp_socket
        self.wait = wait

    def holder(self, iface: str) -> str:
        return VPP_HOST

    def create_holder(self, ipr, snap: Snapshot, holder: str) -> None:
        from agent.linux import rtnl  # noqa: PLC0415 -- ethtool on the host end

        if not ipr.link_lookup(ifname=holder):
            ipr.link("add", ifname=holder, kind="veth", peer=VPP_PEER)
        idx, peer = netcfg.ifindex(ipr, holder), netcfg.ifindex(ipr, VPP_PEER)
        netcfg.set_link(ipr, idx, address=STN_HOST_MAC, mtu=snap.link["mtu"])
        netcfg.set_link(ipr, peer, mtu=snap.link["mtu"])
        # af_packet gets Linux's TCP/UDP with partial checksums otherwise
        # (docs/vpp.md, "Pods on veth + af_packet")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            rtnl.tx_checksum(s, holder, False)
        netcfg.set_link(ipr, peer, state="up")
        netcfg.set_link(ipr, idx, state="up")

    def attach(self, ipr, snap: Snapshot, holder: str) -> None:
        """The kernel lets go of what arrives on the NIC: af_packet hands VPP
        a copy of every frame, and the kernel, which keeps the node's address
        on ``stn-host``, would answer ARP for it and take packets for it on
        the NIC too (strict reverse-path filtering drops them: their way
        back is ``stn-host``). VPP itself takes the NIC once its addresses
        are off it (:meth:`take`)."""
        netcfg.write_sysctls(snap.iface, {k: v for k, v in (("ipv4/rp_filter", "1"), ("ipv4/arp_ignore", "8"),
                                                             ("ipv6/disable_ipv6", "1"))
                                          if k in snap.link.get("sysctl", {})})

    def take(self, snap: Snapshot, state: StnState) -> None:
        """Have the agent program VPP from the state on record, and wait until
        it reports the uplink in place."""
        end = time.monotonic() + self.wait
        last = ""
        while time.monotonic() < end:
            try:
                res = self.agent.stn_sync()
                if res.uplink == snap.iface and res.ready:
                    return
                last = res.message
            except Exception as e:  # noqa: BLE001 -- an agent still starting: wait
                last = str(e)
            time.sleep(0.2)
        raise Unavailable(f"VPP did not take {snap.iface} within {self.wait:.0f} s: {last}",
                          hint="is the agent running with --dataplane vpp and vpp_stn? contivctl status")

    def release(self, ipr, snap: Snapshot, holder: str) -> None:
        # best effort: a dead VPP has let go of the NIC already, and a dead
        # agent must not keep the node from getting its address back
        try:
            self.agent.stn_sync()
        except Exception:  # noqa: BLE001
            pass

    def teardown(self, ipr, holder: str) -> None:
        netcfg.delete_link(ipr, holder)  # its peer goes with it

    def holds(self, ipr, state: StnState) -> bool:
        """VPP runs and the host interconnect exists (a reboot keeps STN's
        record but not the links: then the watchdog restores, and steals
        again from the snapshot)."""
        return bool(ipr.link_lookup(ifname=state.holder)) and self.up()

    def up(self) -> bool:
        """VPP answers on its API socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(self.vpp_socket)
                return True
            except OSError:
                return False


def _tell(agent, wait: bool) -> None:
    """Have the node's agent re-read STN's record, if an agent runs here
    (a node without one is nobody's business but STN's). ``wait``: until
    what it moved is in place, for at most 10 s."""
    from agent.errors import Unavailable  # noqa: PLC0415
    end = time.monotonic() + (10.0 if wait else 0.0)
    while agent is not None:
        try:
            if agent.stn_sync().ready or time.monotonic() > end:
                return
        except Unavailable:
            return  # no agent here
        time.sleep(0.2)


def side_for(dataplane: str, agent=None, vpp_socket: str = "") -> LinuxSide | VppSide:
    """The side of ``dataplane`` (``linux`` or ``vpp``)."""
    if dataplane == "linux":
        return LinuxSide(agent)
    if dataplane == "vpp":
        if agent is None:
            raise InvalidInput("STN on VPP needs the node's agent (--socket)")
        return VppSide(agent, vpp_socket or os.environ.get("CONTIV_VPP_API_SOCKET", "/run/vpp/api.sock"))
    raise InvalidInput(f"--dataplane {dataplane!r} is not linux or vpp")
