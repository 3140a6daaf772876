"""What each data plane does with a stolen NIC: one class per data plane.

A side names the *holder* -- the link that carries the node's addresses
and routes while the NIC is stolen -- and does the data-plane-specific
steps around the moves :mod:`stn.core` does itself (addresses, routes,
rules, neighbours from the NIC to the holder and back):

* :class:`LinuxSide`: a bridge takes the NIC's MAC and MTU and enslaves the
  NIC; the node's addresses and routes move onto the bridge (pods plug into
  it as they would into any Linux bridge).
* :class:`VppSide`: the agent's veth pair is the host interconnect --
  ``stn-host`` keeps the node's addresses and routes, VPP has ``stn-vpp`` --
  and the node's agent has VPP take the NIC itself (af_packet here, DPDK in
  production) with the node's address and an ``stn`` rule that hands the
  host the packets for that address VPP does not consume itself.

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

VPP_HOST = "stn-host"  # agent.vpp.render.STN_HOST_IF: the agent makes it


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

    def teardown(self, ipr, snap: Snapshot, holder: str) -> None:
        netcfg.delete_link(ipr, holder)

    def taken(self, ipr, holder: str) -> bool:
        """A link of the bridge's name exists: not STN's to take."""
        return bool(ipr.link_lookup(ifname=holder))

    def up(self) -> bool:
        """A bridge that went does not come back by itself: never."""
        return False

    def holds(self, ipr, state: StnState, snap: Snapshot) -> bool:
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
        """``stn-host`` is the agent's (it outlives every steal: see
        agent.vpp.render.render_stn_host): wait until the agent made it."""
        end = time.monotonic() + self.wait
        while not ipr.link_lookup(ifname=holder):
            if time.monotonic() > end:
                raise Unavailable(f"{holder} does not exist: the agent makes it on a node with vpp_stn",
                                  hint="run the agent with dataplane: vpp and vpp_stn: true (docs/stn.md)")
            try:
                self.agent.stn_sync()
            except Exception:  # noqa: BLE001 -- an agent still starting: wait
                time.sleep(0.2)

    def taken(self, ipr, holder: str) -> bool:
        """``stn-host`` carries an IPv4 address: someone else's steal."""
        found = ipr.link_lookup(ifname=holder)
        return bool(found) and bool(ipr.get_addr(index=found[0], family=socket.AF_INET))

    def attach(self, ipr, snap: Snapshot, holder: str) -> None:
        """The kernel lets go of what arrives on the NIC: af_packet hands VPP
        a copy of every frame, and the kernel, which keeps the node's address
        on ``stn-host``, would answer ARP for it and take packets for it on
        the NIC too (strict reverse-path filtering drops them: their way
        back is ``stn-host``). VPP has the NIC open already (the agent keeps
        it so on a ``vpp_stn`` node) and answers for the addresses once they
        are off it (:meth:`take`)."""
        netcfg.write_sysctls(snap.iface, {k: v for k, v in (("ipv4/rp_filter", "1"), ("ipv4/arp_ignore", "8"),
                                                             ("ipv6/disable_ipv6", "1"))
                                          if k in snap.link.get("sysctl", {})})

    def take(self, snap: Snapshot, state: StnState) -> None:
        """Have the agent program VPP from the state on record (the addresses
        moved), and wait until it reports the uplink in place."""
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
        # VPP stops answering for the node's addresses (state "restoring");
        # it keeps the NIC open. Best effort: a dead VPP has let go of the
        # NIC already, and a dead agent must not keep the node from getting
        # its address back
        try:
            self.agent.stn_sync()
        except Exception:  # noqa: BLE001
            pass

    def teardown(self, ipr, snap: Snapshot, holder: str) -> None:
        """``stn-host`` stays (the agent's); the node's addresses leave it,
        and the routes through them with them."""
        found = ipr.link_lookup(ifname=holder)
        for a in snap.addresses if found else ():
            netcfg.drop_address(ipr, found[0], a)


    def holds(self, ipr, state: StnState, snap: Snapshot) -> bool:
        """VPP runs and ``stn-host`` carries the node's address (a reboot
        keeps STN's record but not the links' configuration: then the
        watchdog restores, and steals again from the snapshot)."""
        found = ipr.link_lookup(ifname=state.holder)
        if not found or not self.up():
            return False
        have = {a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=found[0])}
        return all(a["address"] in have for a in snap.addresses if a["family"] == 4)

    def up(self) -> bool:
        """VPP answers on its API socket and the agent is ready to program
        it (a steal that no agent completes would cut the node off for the
        30 s :meth:`take` waits, again and again)."""
        try:
            if not self.agent.health().ready:
                return False
        except Exception:  # noqa: BLE001 -- no agent: not up
            return False
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
    end = time.monotonic() + (10.0 if wait else 0.0)
    while agent is not None:
        try:
            if agent.stn_sync().ready or time.monotonic() > end:
                return
        except Unavailable:
            return  # no agent here
        except Exception:  # noqa: BLE001 -- an agent's failure must not keep the NIC stolen or given back
            return
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
