"""VPP layer 2 for node-to-node transport: the bridge domain (tagged
``contiv:bd<id>``), its ports (the BVI loopback, the VXLAN tunnels) and
static MAC entries (a peer's BVI MAC behind its tunnel). See
:mod:`agent.vpp.values`."""
from __future__ import annotations

from agent.reconciler import Dependency, Retrieved
from agent.vpp.base import VppDescriptor
from agent.vpp.errors import VppApiError
from agent.vpp.values import (NONE, BridgeDomain, BridgePort, L2Fib, bd_key, bdport_key, if_key_of,
                              l2fib_key, tag)

PORT_NORMAL, PORT_BVI = 0, 1


def _bd_tag(bd: int) -> str:
    return tag(f"bd{bd}")


class BridgeDomainDescriptor(VppDescriptor):
    name = "vpp-bd"
    key_prefix = "vpp/bd/"

    def _set(self, v: BridgeDomain, is_add: bool) -> None:
        self.call("bridge_domain_add_del_v2", bd_id=v.id, flood=v.flood, uu_flood=v.flood,
                  forward=True, learn=v.learn, arp_term=False, is_add=is_add, bd_tag=_bd_tag(v.id))

    def create(self, key, v: BridgeDomain, ctx):
        self._set(v, True)

    def delete(self, key, v: BridgeDomain, metadata, ctx):
        try:
            self._set(v, False)
        except VppApiError as e:
            if e.retval != -6:
                raise

    def ours(self) -> list:
        return [d for d in self.api.dump("bridge_domain_dump", bd_id=NONE, sw_if_index=NONE)
                if d.bd_tag == _bd_tag(d.bd_id)]

    def retrieve(self, correlate, ctx):
        return [Retrieved(bd_key(d.bd_id), BridgeDomain(d.bd_id, bool(d.learn), bool(d.flood)))
                for d in self.ours()]


class BridgePortDescriptor(VppDescriptor):
    """One of our interfaces in one of our bridge domains (the BVI, or a tunnel
    in split-horizon group 1)."""

    name = "vpp-bdport"
    key_prefix = "vpp/bdport/"

    def __init__(self, api, ifs, bds: BridgeDomainDescriptor) -> None:
        super().__init__(api, ifs)
        self.bds = bds

    def dependencies(self, key, v: BridgePort):
        return (Dependency("interface-exists", if_key_of(v.ifname)),
                Dependency("bridge-domain-exists", bd_key(v.bd)))

    def _set(self, v: BridgePort, ctx, enable: bool) -> None:
        self.call("sw_interface_set_l2_bridge", rx_sw_if_index=self.sw(v.ifname, ctx), bd_id=v.bd,
                  port_type=PORT_BVI if v.bvi else PORT_NORMAL, shg=v.shg, enable=enable)

    def create(self, key, v: BridgePort, ctx):
        self._set(v, ctx, True)

    def delete(self, key, v: BridgePort, metadata, ctx):
        if self.ifs.index(v.ifname) is not None:
            self._set(v, ctx, False)

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        out = []
        for d in self.bds.ours():
            for port in d.sw_if_details:
                name = names.get(port.sw_if_index)
                if name is not None:
                    v = BridgePort(name, d.bd_id, port.sw_if_index == d.bvi_sw_if_index, port.shg)
                    out.append(Retrieved(bdport_key(name), v))
        return out


class L2FibDescriptor(VppDescriptor):
    """A static MAC entry in one of our bridge domains."""

    name = "vpp-l2fib"
    key_prefix = "vpp/l2fib/"

    def __init__(self, api, ifs, bds: BridgeDomainDescriptor) -> None:
        super().__init__(api, ifs)
        self.bds = bds

    def dependencies(self, key, v: L2Fib):
        return (Dependency("port-exists", bdport_key(v.ifname)),)

    def create(self, key, v: L2Fib, ctx):
        self.call("l2fib_add_del", mac=v.mac, bd_id=v.bd, sw_if_index=self.sw(v.ifname, ctx),
                  is_add=True, static_mac=True)

    def delete(self, key, v: L2Fib, metadata, ctx):
        try:
            self.call("l2fib_add_del", mac=v.mac, bd_id=v.bd, sw_if_index=NONE, is_add=False)
        except VppApiError as e:
            if e.retval not in (-6, -2, -1):
                raise

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        out = []
        for bd in self.bds.ours():
            for d in self.api.dump("l2_fib_table_dump", bd_id=bd.bd_id):
                name = names.get(d.sw_if_index)
                if name is None or not d.static_mac or d.bvi_mac:
                    continue
                mac = str(d.mac).lower()
                out.append(Retrieved(l2fib_key(bd.bd_id, mac), L2Fib(bd.bd_id, mac, name)))
        return out

