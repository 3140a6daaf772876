"""Per-node subnets carved out of the cluster pod CIDR.

A node's subnet is claimed with one etcd transaction that creates both the
claim (``/contiv/ipam/subnets/<network>``) and the node's reverse entry
(``/contiv/ipam/nodes/<node>``) only if neither exists; losing a race simply
moves on to the next free index. Claims are sticky: a node that re-registers
gets the subnet it had, so its pods keep their addresses across restarts.
"""
from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass

from agent.errors import Exhausted, InvalidInput
from agent.model import keys
from agent.store.base import Absent, Delete, Put, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeSubnet:
    index: int
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network

    @property
    def gateway(self) -> str:
        """The pods' gateway: the first host address of the node subnet."""
        return str(self.subnet.network_address + 1)


def parse_cidr(text: str, what: str = "CIDR") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise InvalidInput(f"{what} {text!r} is invalid: {e}") from None


def subnet_at(pod_cidr, prefix: int, index: int):
    """The ``index``-th subnet of length ``prefix`` inside ``pod_cidr``."""
    size = 1 << (pod_cidr.max_prefixlen - prefix)
    return ipaddress.ip_network((int(pod_cidr.network_address) + index * size, prefix))


class SubnetAllocator:
    """Claims node subnets in ``pod_cidr``; see the module docstring."""

    def __init__(self, store: Store, pod_cidr: str = "10.1.0.0/16", node_prefix: int = 24) -> None:
        self.store = store
        self.pod_cidr = parse_cidr(pod_cidr, "pod CIDR")
        if not self.pod_cidr.prefixlen < node_prefix <= self.pod_cidr.max_prefixlen - 2:
            raise InvalidInput(f"node subnet prefix /{node_prefix} does not fit in {self.pod_cidr}",
                               hint="it must be longer than the pod CIDR's and leave room for pods")
        self.node_prefix = node_prefix
        self.count = 1 << (node_prefix - self.pod_cidr.prefixlen)

    def lookup(self, node: str) -> NodeSubnet | None:
        kv = self.store.get(keys.node_subnet_key(node))
        if kv is None:
            return None
        data = json.loads(kv.value)
        return NodeSubnet(int(data["index"]), parse_cidr(data["subnet"]))

    def claim(self, node: str, wanted: str | None = None) -> NodeSubnet:
        """The node's subnet: the one it already has; else ``wanted`` (the
        Node object's ``spec.podCIDR``, where the cluster allocates them);
        else the lowest free one. Which wins, and why: a claim the node
        holds (its pods have addresses in it) over a podCIDR that changed
        (logged); a podCIDR over our own choice; our own choice when the
        podCIDR does not fit (outside pod_cidr, another size, or the pod
        CIDR's first subnet, which is never handed out) -- logged."""
        have = self.lookup(node)
        if have is not None:
            if have.subnet.subnet_of(self.pod_cidr) and have.subnet.prefixlen == self.node_prefix:
                if wanted and str(have.subnet) != wanted:
                    log.warning("node %s: keeping its subnet %s; its Node's podCIDR is %s (pods have "
                                "addresses in the subnet it holds)", node, have.subnet, wanted)
                return have
            raise InvalidInput(f"node {node} holds subnet {have.subnet}, which does not match "
                               f"pod CIDR {self.pod_cidr} /{self.node_prefix}",
                               hint="all agents of a cluster must share podCIDR and nodePrefix")
        index = self._index_of(node, wanted) if wanted else None
        if index is not None:
            got = self._try(node, index)
            if got is not None:
                return got
            raise InvalidInput(f"node {node}'s podCIDR {wanted} is claimed by another node",
                               hint="the cluster's and contivctl's pod CIDR allocations disagree: "
                                    "give the agents the cluster's pod CIDR and node prefix")
        claimed, _ = self.store.list(keys.IPAM_SUBNETS)
        taken = {kv.key[len(keys.IPAM_SUBNETS):] for kv in claimed}
        # Index 0 is left unused: the pod CIDR's own network address never
        # becomes a node's subnet, and index doubles as a 1-based node ID.
        for index in range(1, self.count):
            net = subnet_at(self.pod_cidr, self.node_prefix, index)
            if str(net.network_address) in taken:
                continue
            got = self._try(node, index)
            if got is not None:
                return got
        raise Exhausted(f"no free /{self.node_prefix} subnet left in pod CIDR {self.pod_cidr}",
                        hint="use a larger pod CIDR or remove stale nodes")

    def _try(self, node: str, index: int) -> NodeSubnet | None:
        """Claim subnet ``index`` for ``node`` in one transaction: the
        claim, or the node's own (a concurrent registration of it won)."""
        net = subnet_at(self.pod_cidr, self.node_prefix, index)
        rec = json.dumps({"node": node, "index": index, "subnet": str(net)}).encode()
        ok, _ = self.store.txn(
            [Absent(keys.subnet_claim_key(str(net.network_address))), Absent(keys.node_subnet_key(node))],
            [Put(keys.subnet_claim_key(str(net.network_address)), rec), Put(keys.node_subnet_key(node), rec)])
        return NodeSubnet(index, net) if ok else self.lookup(node)

    def _index_of(self, node: str, wanted: str) -> int | None:
        """The index of ``wanted`` in the pod CIDR; None (logged) when it
        cannot be this node's subnet here."""
        try:
            net = ipaddress.ip_network(wanted, strict=True)
        except ValueError:
            net = None
        if net is None or net.version != self.pod_cidr.version or not net.subnet_of(self.pod_cidr) \
                or net.prefixlen != self.node_prefix:
            log.warning("node %s: its Node's podCIDR %s is not a /%d of pod CIDR %s: choosing one here",
                        node, wanted, self.node_prefix, self.pod_cidr)
            return None
        index = (int(net.network_address) - int(self.pod_cidr.network_address)) >> (
            self.pod_cidr.max_prefixlen - self.node_prefix)
        if index == 0:
            log.warning("node %s: its Node's podCIDR %s is the pod CIDR's first subnet, which is never "
                        "handed out (its index is the node's ID, 1-based): choosing one here", node, wanted)
            return None
        return index

    def release(self, node: str) -> bool:
        """Give the node's subnet back (node removal); True if it had one."""
        have = self.lookup(node)
        if have is None:
            return False
        self.store.txn([], [Delete(keys.node_subnet_key(node)),
                            Delete(keys.subnet_claim_key(str(have.subnet.network_address)))])
        return True
