"""Neighbour and VXLAN FDB descriptors (both only on links we own)."""
from __future__ import annotations

import errno
import ipaddress
import re

from agent.errors import InvalidInput
from agent.linux.netns import Netlink, is_errno, nl_error
from agent.linux.values import Fdb, Neighbor, fdb_key, neigh_key
from agent.reconciler import Dependency, Descriptor, Retrieved

NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NTF_SELF = 0x02
AF_BRIDGE = 7
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _check_mac(mac: str) -> None:
    if not _MAC.fullmatch(mac):
        raise InvalidInput(f"MAC {mac!r} is not of the form aa:bb:cc:dd:ee:ff (lower case)")


class _OnOwnedLink(Descriptor):
    def __init__(self, nl: Netlink) -> None:
        self.nl = nl

    def dependencies(self, key, v):
        return (Dependency("interface-exists", v.dev_key),)

    def _index(self, v, ctx) -> int:
        return ctx.metadata(v.dev_key)["index"]

    def _owned_devs(self, correlate, ctx) -> dict[int, tuple[str, str]]:
        """index -> (dev name, dev key) for the links the desired values name."""
        out = {}
        for v in correlate.values():
            meta = ctx.metadata(v.dev_key)
            if meta:
                out[meta["index"]] = (v.dev, v.dev_key)
        return out


class NeighborDescriptor(_OnOwnedLink):
    """A permanent neighbour (e.g. a remote node's gateway -> its VTEP MAC)."""

    name = "linux-neigh"
    key_prefix = "linux/neigh/"

    def validate(self, key, v: Neighbor) -> None:
        _check_mac(v.mac)
        ipaddress.ip_address(v.ip)

    def create(self, key, v: Neighbor, ctx):
        try:
            self.nl.node.neigh("replace", dst=v.ip, lladdr=v.mac, ifindex=self._index(v, ctx),
                               state=NUD_PERMANENT)
        except Exception as e:  # noqa: BLE001
            raise nl_error(e, "neigh replace", dev=v.dev, ip=v.ip, mac=v.mac) from None

    def delete(self, key, v: Neighbor, metadata, ctx) -> None:
        meta = ctx.metadata(v.dev_key)
        if not meta:
            return  # the link is gone and its neighbours with it
        try:
            self.nl.node.neigh("del", dst=v.ip, ifindex=meta["index"])
        except Exception as e:  # noqa: BLE001
            if not is_errno(e, errno.ENOENT, errno.ENODEV, errno.ESRCH):
                raise nl_error(e, "neigh del", dev=v.dev, ip=v.ip) from None

    def retrieve(self, correlate, ctx):
        out = []
        for index, (dev, dev_key) in self._owned_devs(correlate, ctx).items():
            for n in self.nl.node.get_neighbours(ifindex=index):
                if not n["state"] & NUD_PERMANENT:
                    continue
                ip, mac = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR") or ""
                out.append(Retrieved(neigh_key(dev, ip), Neighbor(dev, ip, mac, dev_key)))
        return out


class FdbDescriptor(_OnOwnedLink):
    """A VXLAN forwarding entry: frames for ``mac`` go to underlay ``dst``."""

    name = "linux-fdb"
    key_prefix = "linux/fdb/"

    def validate(self, key, v: Fdb) -> None:
        _check_mac(v.mac)
        ipaddress.ip_address(v.dst)

    def create(self, key, v: Fdb, ctx):
        try:
            # pyroute2 fills NTF_SELF/NUD_NOARP only for add/append: spell them out
            self.nl.node.fdb("replace", ifindex=self._index(v, ctx), lladdr=v.mac, dst=v.dst,
                             state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)
        except Exception as e:  # noqa: BLE001
            raise nl_error(e, "fdb replace", dev=v.dev, mac=v.mac, dst=v.dst) from None

    def delete(self, key, v: Fdb, metadata, ctx) -> None:
        meta = ctx.metadata(v.dev_key)
        if not meta:
            return
        try:
            self.nl.node.fdb("del", ifindex=meta["index"], lladdr=v.mac, dst=v.dst)
        except Exception as e:  # noqa: BLE001
            if not is_errno(e, errno.ENOENT, errno.ENODEV):
                raise nl_error(e, "fdb del", dev=v.dev, mac=v.mac) from None

    def retrieve(self, correlate, ctx):
        out = []
        for index, (dev, dev_key) in self._owned_devs(correlate, ctx).items():
            for n in self.nl.node.fdb("dump", ifindex=index):
                if n.get_attr("NDA_IFINDEX") not in (None, index) and n["ifindex"] != index:
                    continue
                mac, dst = n.get_attr("NDA_LLADDR") or "", n.get_attr("NDA_DST") or ""
                if not dst or mac == "00:00:00:00:00:00":
                    continue
                out.append(Retrieved(fdb_key(dev, mac), Fdb(dev, mac, dst, dev_key)))
        return out
