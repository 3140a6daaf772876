"""VPP interfaces and what lives on them: interfaces (loopback, af_packet,
memif), memif sockets, VXLAN tunnels, addresses, unnumbered. See
:mod:`agent.vpp.values`."""
from __future__ import annotations

from agent.errors import InvalidInput
from agent.model.names import check_ifname
from agent.reconciler import Dependency, Retrieved
from agent.vpp.base import VppDescriptor
from agent.vpp.errors import VppApiError
from agent.vpp.values import (MEMIF_FILENAME_MAX, MEMIF_SOCKET_PREFIX, NONE, Address, Interface,
                              MemifSocket, Unnumbered, Vxlan, address_key, if_key_of, interface_key,
                              memifsock_key, tag, unnumbered_key, untag, vxlan_key)

ADMIN_UP = 1
#: af_packet: QDISC_BYPASS. Not CKSUM_GSO: with it, large GSO frames from
#: Linux overflow the underlay and VPP's segmentation corrupts the inner IPv4
#: length; the pod's eth0 has TX checksum offload off instead.
AF_PACKET_FLAGS = 1
AF_PACKET_MODE_ETHERNET = 1  # 0 is refused (-7)
#: a 2 KiB frame: the default (~10 KiB) made each pod interface cost +76 MiB of
#: VPP memory and ~400 ms to set up, against +11 MiB and ~45 ms
TX_FRAME_SIZE = 2048
MEMIF_ROLE_MASTER, MEMIF_MODE_ETHERNET = 0, 0
RX_MODE_INTERRUPT = 2
RX_MODES = (1, 2, 3)  # polling, interrupt, adaptive: what VPP's default can be
#: VPP's answer when a memif socket is not there (INVALID_ARGUMENT); one
#: that still has an interface (-74) is an error: the delete is retried
SOCKET_GONE = -73
KINDS = ("loopback", "af_packet", "memif")


def _str(x) -> str:
    return str(x).lower()


class InterfaceDescriptor(VppDescriptor):
    """Loopbacks, af_packet interfaces and memif masters, tagged
    ``contiv:<name>``; metadata ``{"sw_if_index": n}``. An af_packet
    interface needs its Linux interface (``linux/veth/<host_if>`` for a
    pod's), a memif its socket (``vpp/memifsock/<id>``)."""

    name = "vpp-interface"
    key_prefix = "vpp/interface/"

    def __init__(self, api, ifs, memif=lambda: True) -> None:
        super().__init__(api, ifs)
        self.memif = memif  # whether VPP has the memif plugin (its dump is read only then)

    def validate(self, key, v: Interface) -> None:
        if key != interface_key(v.name):
            raise InvalidInput(f"key {key} does not match interface {v.name}")
        if v.kind not in KINDS:
            raise InvalidInput(f"VPP interface kind {v.kind!r} is not one of {', '.join(KINDS)}")
        if v.kind == "af_packet":
            check_ifname(v.host_if, "af_packet host interface")
        if v.kind == "memif" and v.needs != memifsock_key(v.instance):
            raise InvalidInput(f"memif {v.name} must need its socket {memifsock_key(v.instance)}")
        if len(tag(v.name)) > 63:
            raise InvalidInput(f"VPP interface name {v.name!r} is too long for a tag")

    def dependencies(self, key, v: Interface):
        if not v.needs:
            return ()
        return (Dependency("socket-exists" if v.kind == "memif" else "host-link-exists", v.needs),)

    def create(self, key, v: Interface, ctx):
        if v.kind == "loopback":
            sw = self.call("create_loopback_instance", mac_address=v.mac, is_specified=True,
                           user_instance=v.instance).sw_if_index
        elif v.kind == "memif":
            sw = self._create_memif(v)
        else:
            try:
                sw = self.call("af_packet_create_v3", mode=AF_PACKET_MODE_ETHERNET, hw_addr=v.mac,
                               host_if_name=v.host_if, tx_frame_size=TX_FRAME_SIZE,
                               flags=AF_PACKET_FLAGS).sw_if_index
            except VppApiError as e:
                # a leftover of ours, untagged by an interrupted create: take it
                # back only if it is on our host interface and carries no tag
                sw = self._adopt(v, e)
        self.ifs.set(v.name, sw)
        try:
            self.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw, tag=tag(v.name))
            if v.mtu:
                self.call("sw_interface_set_mtu", sw_if_index=sw, mtu=[v.mtu, 0, 0, 0])
            self.call("sw_interface_set_flags", sw_if_index=sw, flags=ADMIN_UP)
        except BaseException:
            self._remove(v, sw)  # leak-proof: no half-made interface stays
            raise
        return {"sw_if_index": sw}

    def _create_memif(self, v: Interface) -> int:
        """A memif's queues take their interface's default rx mode at every
        (re)connection of the pod, and the interface takes VPP's global
        default when it is made -- polling, unless the startup.conf says
        otherwise: one memif would keep VPP's main thread at 100% of a core.
        So the global default is interrupt while the memif is made (and put
        back: a DPDK NIC made later keeps what the operator chose)."""
        old = self.call("sw_interface_get_default_rx_mode").mode
        switch = old in RX_MODES and old != RX_MODE_INTERRUPT
        if switch:
            self.call("sw_interface_set_default_rx_mode", mode=RX_MODE_INTERRUPT)
        try:
            return self.call("memif_create_v2", role=MEMIF_ROLE_MASTER, mode=MEMIF_MODE_ETHERNET,
                             rx_queues=1, tx_queues=1, id=0, socket_id=v.instance,
                             hw_addr=v.mac).sw_if_index
        except VppApiError as e:
            return self._adopt(v, e)
        finally:
            if switch:
                self.call("sw_interface_set_default_rx_mode", mode=old)

    def _adopt(self, v: Interface, error: VppApiError) -> int:
        if v.kind == "memif":
            where = f"memif socket {v.instance}"
            sw = {d.socket_id: d.sw_if_index for d in self.api.dump("memif_dump") if d.id == 0}.get(v.instance)
        else:
            where = v.host_if
            sw = {d.host_if_name: d.sw_if_index for d in self.api.dump("af_packet_dump")}.get(v.host_if)
        if sw is None:
            raise error
        details = self.api.dump("sw_interface_dump", sw_if_index=sw)
        if details and details[0].tag:
            raise InvalidInput(f"VPP already has an interface on {where} that is not ours "
                               f"(tag {details[0].tag!r})")
        return sw

    def _remove(self, v: Interface, sw: int) -> None:
        if v.kind == "loopback":
            self.call("delete_loopback", sw_if_index=sw)
        elif v.kind == "memif":
            self.call("memif_delete", sw_if_index=sw)
        else:
            self.call("af_packet_delete", host_if_name=v.host_if)
        self.ifs.drop(v.name)

    def delete(self, key, v: Interface, metadata, ctx):
        sw = (metadata or {}).get("sw_if_index", self.ifs.index(v.name))
        if sw is None:
            return
        try:
            self._remove(v, sw)
        except VppApiError as e:
            if e.retval not in (-2, -3, -6):  # gone already (no such interface / entry)
                raise

    def retrieve(self, correlate, ctx):
        hosts = {d.sw_if_index: d.host_if_name for d in self.api.dump("af_packet_dump")}
        memifs = {d.sw_if_index: d.socket_id for d in self.api.dump("memif_dump")} if self.memif() else {}
        out, found = [], {}
        for d in self.api.dump("sw_interface_dump", sw_if_index=NONE):
            name = untag(d.tag or "")
            if name is None or name.startswith("vx-"):
                continue
            want = correlate.get(interface_key(name))
            if d.sw_if_index in hosts:
                v = Interface(name, "af_packet", _str(d.l2_address), hosts[d.sw_if_index],
                              mtu=want.mtu if want else 0, needs=want.needs if want else "")
            elif d.sw_if_index in memifs:
                sock = memifs[d.sw_if_index]
                v = Interface(name, "memif", _str(d.l2_address), instance=sock,
                              mtu=want.mtu if want else 0, needs=memifsock_key(sock))
            else:
                inst = d.interface_name[4:] if d.interface_name.startswith("loop") else ""
                v = Interface(name, "loopback", _str(d.l2_address),
                              instance=int(inst) if inst.isdigit() else 0,
                              mtu=want.mtu if want else 0)
            found[name] = d.sw_if_index
            out.append(Retrieved(interface_key(name), v, {"sw_if_index": d.sw_if_index}))
        self.ifs.replace(found, keep={n for n in self.ifs.names() if n.startswith("vx-")})
        return out


class MemifSocketDescriptor(VppDescriptor):
    """VPP's memif socket filenames of ours (:class:`MemifSocket`): those
    whose filename starts with :data:`MEMIF_SOCKET_PREFIX` -- an operator's
    sockets (and VPP's default, id 0) are left alone. VPP opens the socket
    (in the pod's network namespace) when its first memif is made."""

    name = "vpp-memif-socket"
    key_prefix = "vpp/memifsock/"

    def __init__(self, api, ifs, memif=lambda: True) -> None:
        super().__init__(api, ifs)
        self.memif = memif  # whether VPP has the memif plugin: without it there is nothing of ours

    def validate(self, key, v: MemifSocket) -> None:
        if key != memifsock_key(v.id) or not 0 < v.id < NONE:
            raise InvalidInput(f"key {key} does not name memif socket {v.id} (1..2^32-2)")
        if not v.filename.startswith(MEMIF_SOCKET_PREFIX):
            raise InvalidInput(f"memif socket {v.filename!r} is not one of ours ({MEMIF_SOCKET_PREFIX}...)")
        if len(v.filename.encode()) > MEMIF_FILENAME_MAX:
            raise InvalidInput(f"memif socket filename {v.filename!r} is longer than "
                               f"{MEMIF_FILENAME_MAX} bytes")

    def create(self, key, v: MemifSocket, ctx):
        # an identical add is accepted by VPP: a retried create is harmless
        self.call("memif_socket_filename_add_del_v2", is_add=True, socket_id=v.id,
                  socket_filename=v.filename)

    def delete(self, key, v: MemifSocket, metadata, ctx):
        try:
            self.call("memif_socket_filename_add_del_v2", is_add=False, socket_id=v.id,
                      socket_filename=v.filename)
        except VppApiError as e:
            if e.retval != SOCKET_GONE:
                raise

    def retrieve(self, correlate, ctx):
        if not self.memif():
            return []
        return [Retrieved(memifsock_key(d.socket_id), MemifSocket(d.socket_id, d.socket_filename))
                for d in self.api.dump("memif_socket_filename_dump")
                if d.socket_id and d.socket_filename.startswith(MEMIF_SOCKET_PREFIX)]


class VxlanDescriptor(VppDescriptor):
    """A VXLAN tunnel interface to a peer node (tagged ``contiv:<name>``)."""

    name = "vpp-vxlan"
    key_prefix = "vpp/vxlan/"

    def validate(self, key, v: Vxlan) -> None:
        if key != vxlan_key(v.name) or not v.name.startswith("vx-"):
            raise InvalidInput(f"key {key} does not name the tunnel {v.name} (vx-...)")
        if not 0 < v.vni < 1 << 24:
            raise InvalidInput(f"VNI {v.vni} out of range")

    def _args(self, v: Vxlan, is_add: bool) -> dict:
        return dict(is_add=is_add, instance=v.instance, src_address=v.src, dst_address=v.dst,
                    src_port=v.port, dst_port=v.port, vni=v.vni, mcast_sw_if_index=NONE,
                    decap_next_index=NONE)  # ~0: to L2 (0 would drop everything)

    def create(self, key, v: Vxlan, ctx):
        sw = self.call("vxlan_add_del_tunnel_v3", **self._args(v, True)).sw_if_index
        self.ifs.set(v.name, sw)
        try:
            self.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw, tag=tag(v.name))
            self.call("sw_interface_set_flags", sw_if_index=sw, flags=ADMIN_UP)
        except BaseException:
            self.call("vxlan_add_del_tunnel_v3", **self._args(v, False))
            self.ifs.drop(v.name)
            raise
        return {"sw_if_index": sw}

    def delete(self, key, v: Vxlan, metadata, ctx):
        try:
            self.call("vxlan_add_del_tunnel_v3", **self._args(v, False))
        except VppApiError as e:
            if e.retval not in (-6, -2):
                raise
        self.ifs.drop(v.name)

    def retrieve(self, correlate, ctx):
        tags = {d.sw_if_index: untag(d.tag or "") for d in self.api.dump("sw_interface_dump",
                                                                         sw_if_index=NONE)}
        out, found = [], {}
        for d in self.api.dump("vxlan_tunnel_v2_dump", sw_if_index=NONE):
            name = tags.get(d.sw_if_index)
            if not name or not name.startswith("vx-"):
                continue
            found[name] = d.sw_if_index
            out.append(Retrieved(vxlan_key(name), Vxlan(name, str(d.src_address), str(d.dst_address),
                                                        d.vni, d.instance, d.dst_port),
                                 {"sw_if_index": d.sw_if_index}))
        self.ifs.replace(found, keep={n for n in self.ifs.names() if not n.startswith("vx-")})
        return out


class AddressDescriptor(VppDescriptor):
    name = "vpp-address"
    key_prefix = "vpp/address/"

    def dependencies(self, key, v: Address):
        return (Dependency("interface-exists", if_key_of(v.ifname)),)

    def _set(self, v: Address, ctx, is_add: bool) -> None:
        self.call("sw_interface_add_del_address", sw_if_index=self.sw(v.ifname, ctx), is_add=is_add,
                  prefix=v.cidr)

    def create(self, key, v: Address, ctx):
        self._set(v, ctx, True)

    def delete(self, key, v: Address, metadata, ctx):
        if self.ifs.index(v.ifname) is not None:
            self._set(v, ctx, False)

    def retrieve(self, correlate, ctx):
        out = []
        for name, sw in self.ifs.names().items():
            for d in self.api.dump("ip_address_dump", sw_if_index=sw, is_ipv6=False):
                cidr = str(d.prefix)
                out.append(Retrieved(address_key(name, cidr), Address(name, cidr)))
        return out


class UnnumberedDescriptor(VppDescriptor):
    name = "vpp-unnumbered"
    key_prefix = "vpp/unnumbered/"

    def dependencies(self, key, v: Unnumbered):
        return (Dependency("interface-exists", if_key_of(v.ifname)),
                Dependency("lender-exists", if_key_of(v.via)))

    def _set(self, v: Unnumbered, ctx, is_add: bool) -> None:
        self.call("sw_interface_set_unnumbered", sw_if_index=self.sw(v.via, ctx),
                  unnumbered_sw_if_index=self.sw(v.ifname, ctx), is_add=is_add)

    def create(self, key, v: Unnumbered, ctx):
        self._set(v, ctx, True)

    def delete(self, key, v: Unnumbered, metadata, ctx):
        if self.ifs.index(v.ifname) is not None and self.ifs.index(v.via) is not None:
            self._set(v, ctx, False)

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        return [Retrieved(unnumbered_key(names[d.sw_if_index]),
                          Unnumbered(names[d.sw_if_index], names[d.ip_sw_if_index]))
                for d in self.api.dump("ip_unnumbered_dump", sw_if_index=NONE)
                if d.sw_if_index in names and d.ip_sw_if_index in names]
