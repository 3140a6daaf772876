"""Link descriptors: pod veth pairs, the gateway dummy, the VXLAN device.

Ownership: every link we create carries the alias ``contiv:<owner>``
(``contiv:pod:<ns>/<name>``, ``contiv:node``); retrieve returns only those.
"""
from __future__ import annotations

import errno
import ipaddress
import os
from dataclasses import replace
from functools import partial

from agent.errors import InvalidInput, NotFound
from agent.linux import rtnl
from agent.linux.netns import Netlink, is_errno, nl_error
from agent.linux.values import TAG_PREFIX, LocalLink, Veth, Vxlan, local_key, veth_key, vxlan_key
from agent.model.names import check_ifname
from agent.reconciler import Descriptor, Retrieved

IFF_UP = 0x1


def pod_mac(ips: tuple[str, ...]) -> str:
    """A stable, locally administered MAC for the pod end, derived from its
    first IPv4 address (0a:58:<ip>), so CHECK and resync can verify it."""
    for ip in ips:
        addr = ipaddress.ip_interface(ip).ip
        if addr.version == 4:
            return "0a:58:" + ":".join(f"{b:02x}" for b in addr.packed)
    return ""


def _attr(msg, name, default=None):
    v = msg.get_attr(name)
    return default if v is None else v


def _kind(link) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else ""


def _addrs(ipr, index: int) -> tuple[str, ...]:
    out = []
    for a in ipr.get_addr(index=index):
        addr = _attr(a, "IFA_ADDRESS")
        if addr and not addr.startswith("fe80:"):
            out.append(f"{addr}/{a['prefixlen']}")
    return tuple(sorted(out))


def _add_addrs(ipr, index: int, ips, ifname: str) -> None:
    for ip in ips:
        iface = ipaddress.ip_interface(ip)
        try:
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except Exception as e:  # noqa: BLE001
            if not is_errno(e, errno.EEXIST):
                raise nl_error(e, "addr add", dev=ifname, address=ip) from None


def _cidr(ip: str) -> tuple[str, int]:
    """``"10.1.1.2/32"`` -> ``("10.1.1.2", 32)``; a bare address is a host prefix."""
    addr, _, plen = ip.partition("/")
    return addr, int(plen) if plen else (128 if ":" in addr else 32)


def _owned_links(ipr, prefix: str = TAG_PREFIX):
    for link in ipr.get_links():
        alias = _attr(link, "IFLA_IFALIAS", "")
        if alias.startswith(prefix):
            yield link, alias


class _LinkBase(Descriptor):
    def __init__(self, nl: Netlink) -> None:
        self.nl = nl

    def _set_alias(self, index: int, alias: str, ifname: str) -> None:
        try:
            self.nl.fast.link_set(index, alias=alias)
        except Exception as e:  # noqa: BLE001
            raise nl_error(e, "link set alias", dev=ifname) from None

    def _get(self, ifname: str):
        try:
            return self.nl.node.link("get", ifname=ifname)[0]
        except Exception as e:  # noqa: BLE001
            raise nl_error(e, "link get", dev=ifname) from None

    def delete(self, key, value, metadata, ctx) -> None:
        try:
            self.nl.node.link("del", ifname=value.name if hasattr(value, "name") else value.host_if)
        except Exception as e:  # noqa: BLE001
            if not is_errno(e, errno.ENODEV):
                raise nl_error(e, "link del", dev=key.rsplit("/", 1)[-1]) from None


class VethDescriptor(_LinkBase):
    """A pod's veth pair, created in one netlink request with the peer placed
    straight into the pod namespace (by file descriptor) under its final name;
    metadata: ``{"index", "mac", "pod_index", "pod_mac"}``."""

    name = "linux-veth"
    key_prefix = "linux/veth/"

    def validate(self, key, v: Veth) -> None:
        check_ifname(v.host_if, "host interface name")
        check_ifname(v.pod_if, "pod interface name")
        if key != veth_key(v.host_if):
            raise InvalidInput(f"key {key} does not match host interface {v.host_if}")
        if not v.netns.startswith("/"):
            raise InvalidInput(f"netns {v.netns!r} must be an absolute path")
        if not 68 <= v.mtu <= 65535:
            raise InvalidInput(f"MTU {v.mtu} out of range 68..65535")

    def _add_pair(self, v: Veth, fd: int, mac: str):
        """One RTM_NEWLINK creating both ends (the peer straight into the pod
        namespace under its final name), host end up; NLM_F_ECHO returns the
        new host link -- index, MAC and the peer's index -- so no read-back.
        (The peer cannot come up in the same request: the kernel opens it
        before the two ends know each other, and veth_open says ENOTCONN.)"""
        return self.nl.fast.veth_add(v.host_if, v.pod_if, fd, v.mtu, mac)

    def create(self, key, v: Veth, ctx):
        # The pod namespace's socket is opened by the opener thread while the
        # pair is created here; it is needed only afterwards.
        pod = self.nl.pod_sockets(v.netns)
        try:
            fd = os.open(v.netns, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"network namespace {v.netns} does not exist") from None
        mac = v.mac or pod_mac(v.ips)
        try:
            try:
                host = self._add_pair(v, fd, mac)
            except Exception as e:  # noqa: BLE001
                pod.wait()  # a namespace that cannot be entered is named as such (NotFound)
                if not is_errno(e, errno.EEXIST):
                    raise nl_error(e, "link add veth", dev=v.host_if, peer=v.pod_if,
                                   netns=v.netns) from None
                # A leftover of ours from an interrupted attempt (same
                # deterministic name) -- or the pod already has pod_if. Only a
                # veth tagged as ours is ever removed (DESIGN.md rule 5).
                existing = self._find_host(v.host_if)
                if existing is None:
                    raise InvalidInput(f"interface {v.pod_if} already exists in {v.netns}") from None
                alias = _attr(existing, "IFLA_IFALIAS", "")
                if _kind(existing) != "veth" or not alias.startswith(TAG_PREFIX + "pod:"):
                    raise InvalidInput(f"link {v.host_if} exists in the node namespace and is not "
                                       f"ours (kind {_kind(existing) or '?'}, alias {alias!r})",
                                       hint="remove or rename it") from None
                self.nl.node.link("del", index=existing["index"])
                try:
                    host = self._add_pair(v, fd, mac)
                except Exception as e2:  # noqa: BLE001
                    if is_errno(e2, errno.EEXIST):
                        raise InvalidInput(f"interface {v.pod_if} already exists in {v.netns}") from None
                    raise nl_error(e2, "link add veth", dev=v.host_if, peer=v.pod_if,
                                   netns=v.netns) from None
        finally:
            os.close(fd)
        try:
            index, peer_index = host.index, host.link
            self._set_alias(index, v.tag, v.host_if)
            rt = pod.rtnl()
            # the pod end up and its addresses: one datagram, an answer each
            up, *added = rt.batch([partial(rtnl.link_set, index=peer_index, up=True)] + [
                partial(rtnl.addr_new, index=peer_index, address=a, prefixlen=n)
                for a, n in map(_cidr, v.ips)])
            if isinstance(up, Exception):
                raise nl_error(up, "link set up", dev=v.pod_if, netns=v.netns)
            for ip, res in zip(v.ips, added):
                if isinstance(res, Exception) and not is_errno(res, errno.EEXIST):
                    raise nl_error(res, "addr add", dev=v.pod_if, address=ip)
            if not v.tx_checksum:
                try:
                    rtnl.tx_checksum(rt, v.pod_if, False)
                except OSError as e:
                    raise nl_error(e, "ethtool tx off", dev=v.pod_if, netns=v.netns) from None
            pmac = mac or self._pod_mac(rt, peer_index, v)
        except BaseException:
            # Leak-proof: a half-made pair is removed before the error goes up.
            try:
                self.nl.node.link("del", ifname=v.host_if)
            except Exception:  # noqa: BLE001 -- the original error matters more
                pass
            raise
        return {"index": index, "mac": host.mac, "pod_index": peer_index, "pod_mac": pmac}

    @staticmethod
    def _pod_mac(rt, index: int, v: Veth) -> str:
        """The MAC the kernel gave the pod end (a pod without IPv4 has no
        derived one)."""
        try:
            return rt.link(index=index).mac
        except Exception as e:  # noqa: BLE001
            raise nl_error(e, "link get", dev=v.pod_if, netns=v.netns) from None

    def _find_host(self, host_if: str):
        try:
            return self.nl.node.link("get", ifname=host_if)[0]
        except Exception as e:  # noqa: BLE001
            if is_errno(e, errno.ENODEV):
                return None
            raise nl_error(e, "link get", dev=host_if) from None

    def delete(self, key, v: Veth, metadata, ctx) -> None:
        super().delete(key, v, metadata, ctx)
        if v.netns:
            self.nl.forget(v.netns)

    def retrieve(self, correlate, ctx):
        out = []
        for link, alias in _owned_links(self.nl.node, TAG_PREFIX + "pod:"):
            if _kind(link) != "veth":
                continue
            host_if = _attr(link, "IFLA_IFNAME")
            key = veth_key(host_if)
            meta = {"index": link["index"], "mac": _attr(link, "IFLA_ADDRESS"),
                    "pod_index": _attr(link, "IFLA_LINK")}
            want = correlate.get(key)
            value = Veth(host_if, "", "", (), _attr(link, "IFLA_MTU", 0), alias)
            if want is not None:
                try:
                    pod = self.nl.pod(want.netns)
                    peer = pod.link("get", index=meta["pod_index"])[0]
                except NotFound:
                    peer = None
                except Exception as e:  # noqa: BLE001
                    if not is_errno(e, errno.ENODEV):
                        raise nl_error(e, "link get", netns=want.netns) from None
                    peer = None
                if peer is not None and _attr(peer, "IFLA_LINK") == link["index"]:
                    meta["pod_mac"] = _attr(peer, "IFLA_ADDRESS", "")
                    pod_if = _attr(peer, "IFLA_IFNAME")
                    # read only where it matters (a veth defaults to on)
                    tx = want.tx_checksum or rtnl.tx_checksum(self.nl.pod_fast(want.netns), pod_if)
                    ips = want.ips if want.foreign_ips else _addrs(pod, peer["index"])
                    value = Veth(host_if, want.netns, pod_if, ips,
                                 min(value.mtu, _attr(peer, "IFLA_MTU", 0)), alias, tx, want.mac,
                                 want.foreign_ips)
                    if not peer["flags"] & IFF_UP:
                        value = replace(value, mtu=0)
            out.append(Retrieved(key, value, meta))
        return out

    def equivalent(self, key, desired: Veth, actual: Veth) -> bool:
        # retrieve reports addresses sorted; the order of desired ones is not meaningful
        return replace(desired, ips=tuple(sorted(desired.ips))) == actual


class LocalLinkDescriptor(_LinkBase):
    """A link holding node-local addresses (the pods' gateway)."""

    name = "linux-local"
    key_prefix = "linux/local/"
    #: Tried in order: some kernels (these machines) have no dummy driver.
    KINDS = ("dummy", "bridge")

    def validate(self, key, v: LocalLink) -> None:
        check_ifname(v.name)

    def create(self, key, v: LocalLink, ctx):
        node = self.nl.node
        for kind in self.KINDS:
            try:
                node.link("add", ifname=v.name, kind=kind, mtu=v.mtu, state="up")
                break
            except Exception as e:  # noqa: BLE001
                if is_errno(e, errno.EEXIST):
                    break
                if not is_errno(e, errno.EOPNOTSUPP) or kind == self.KINDS[-1]:
                    raise nl_error(e, f"link add {kind}", dev=v.name) from None
        link = self._get(v.name)
        self._set_alias(link["index"], v.tag, v.name)
        node.link("set", index=link["index"], state="up", mtu=v.mtu)
        _add_addrs(node, link["index"], v.ips, v.name)
        return {"index": link["index"]}

    def retrieve(self, correlate, ctx):
        out = []
        for link, alias in _owned_links(self.nl.node):
            if _kind(link) in self.KINDS:
                name = _attr(link, "IFLA_IFNAME")
                out.append(Retrieved(local_key(name),
                                     LocalLink(name, _addrs(self.nl.node, link["index"]), alias,
                                               _attr(link, "IFLA_MTU", 0)),
                                     {"index": link["index"]}))
        return out

    def equivalent(self, key, desired: LocalLink, actual: LocalLink) -> bool:
        return replace(desired, ips=tuple(sorted(desired.ips))) == actual


class VxlanDescriptor(_LinkBase):
    """The node-to-node VXLAN device (no learning: peers are static FDB entries)."""

    name = "linux-vxlan"
    key_prefix = "linux/vxlan/"

    def validate(self, key, v: Vxlan) -> None:
        check_ifname(v.name)
        if not 0 < v.vni < 1 << 24:
            raise InvalidInput(f"VNI {v.vni} out of range 1..16777215")
        ipaddress.ip_address(v.local)

    def create(self, key, v: Vxlan, ctx):
        node = self.nl.node
        kwargs = dict(ifname=v.name, kind="vxlan", vxlan_id=v.vni, vxlan_local=v.local,
                      vxlan_port=v.port, vxlan_learning=0, mtu=v.mtu, state="up")
        if v.mac:
            kwargs["address"] = v.mac
        if v.dev:
            kwargs["vxlan_link"] = self._get(v.dev)["index"]
        try:
            node.link("add", **kwargs)
        except Exception as e:  # noqa: BLE001
            raise nl_error(e, "link add vxlan", dev=v.name, vni=v.vni, local=v.local) from None
        link = self._get(v.name)
        self._set_alias(link["index"], v.tag, v.name)
        return {"index": link["index"]}

    def retrieve(self, correlate, ctx):
        out = []
        for link, alias in _owned_links(self.nl.node):
            if _kind(link) != "vxlan":
                continue
            data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
            dev_index = data.get_attr("IFLA_VXLAN_LINK") or 0
            dev = ""
            if dev_index:
                try:
                    dev = _attr(self.nl.node.link("get", index=dev_index)[0], "IFLA_IFNAME", "")
                except Exception:  # noqa: BLE001 -- underlay gone: the value will differ
                    dev = "?"
            name = _attr(link, "IFLA_IFNAME")
            out.append(Retrieved(vxlan_key(name), Vxlan(
                name, data.get_attr("IFLA_VXLAN_ID"), data.get_attr("IFLA_VXLAN_LOCAL") or "",
                data.get_attr("IFLA_VXLAN_PORT"), _attr(link, "IFLA_ADDRESS", ""),
                _attr(link, "IFLA_MTU", 0), dev, alias), {"index": link["index"]}))
        return out
