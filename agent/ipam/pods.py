"""Pod address allocation inside one node's subnet.

An allocation is one etcd transaction creating two keys, each only if absent:

* ``/contiv/ipam/ips/<address>`` -- the cluster-wide claim that makes an
  address impossible to hand out twice, whatever the agents' caches believe;
* ``/contiv/ipam/pods/<node>/<cid>/<ifname>`` -- the :class:`Allocation`,
  which makes ADD idempotent and lets the agent rebuild its pods after a restart.

A pod that asks for a memif (VPP) gets a second address in the same
transaction (:attr:`Allocation.memif`, claimed like the first).

Release deletes both in one transaction. Addresses are chosen next-fit (a
cursor that moves on), as the reference host-local plugin does, so a freed
address is not reused at once by the next pod.

A node owns its subnet, so the pod-start path need not wait for etcd before
it programs the data plane: :meth:`PodIPAM.reserve` picks the address
locally and :meth:`PodIPAM.commit` writes the same transaction as
:meth:`PodIPAM.allocate` -- the caller runs it concurrently with the data
plane and answers only once it succeeded (nothing is lost if the agent dies
right after answering). A commit that loses (another writer had the address
or the attachment) gives the reservation back; the caller then undoes its
work and takes the serial path.
"""
from __future__ import annotations

import ipaddress
import json
import os
import threading
import time
from typing import Iterable

from agent.errors import Exhausted, InvalidInput
from agent.model import keys
from agent.model.records import Allocation
from agent.store.base import Absent, Delete, ModRevisionIs, Put, Store


class PodIPAM:
    """Allocates pod addresses for ``node`` from ``subnet``.

    ``reserved`` addresses (the gateway) are never handed out, nor are the
    network and broadcast addresses. Thread-safe: the agent serves CNI
    requests concurrently.
    """

    def __init__(self, store: Store, node: str, subnet, *, reserved: Iterable[str] = (),
                 host_prefix: int | None = None) -> None:
        self.store = store
        self.node = node
        self.subnet = subnet if not isinstance(subnet, str) else ipaddress.ip_network(subnet)
        self.host_prefix = host_prefix or self.subnet.max_prefixlen  # /32: routed pods
        self._reserved = {ipaddress.ip_address(a) for a in reserved}
        self._reserved |= {self.subnet.network_address, self.subnet.broadcast_address}
        self._used: set = set()
        self._attached: set[tuple[str, str]] = set()  # (container ID, ifname) with an allocation
        self._cursor = int(self.subnet.network_address)
        self._lock = threading.Lock()
        self._loaded = False

    # --- queries ---
    def list(self) -> list[Allocation]:
        kvs, _ = self.store.list(keys.allocation_prefix(self.node))
        return [Allocation.from_json(kv.value) for kv in kvs]

    def get(self, container_id: str, ifname: str) -> Allocation | None:
        kv = self.store.get(keys.allocation_key(self.node, container_id, ifname))
        return Allocation.from_json(kv.value) if kv else None

    def stats(self) -> dict:
        with self._lock:
            self._load()
            total = self.subnet.num_addresses - len(self._reserved)
            return {"subnet": str(self.subnet), "total": total, "used": len(self._used),
                    "free": total - len(self._used)}

    def set_aside(self, ip: str) -> str:
        """Never hand ``ip`` out (the node's own address, as the gateway) --
        unless an allocation holds it already (an earlier version's): then
        nothing changes and the answer is "", else ``ip``."""
        addr = ipaddress.ip_address(ip)
        with self._lock:
            self._load()
            if addr in self._used:
                return ""
            self._reserved.add(addr)
            return ip

    # --- allocation ---
    def _load(self) -> None:
        if self._loaded:
            return
        allocs = self.list()
        self._used = {ipaddress.ip_interface(ip).ip for a in allocs for ip in a.addresses}
        self._attached = {(a.container_id, a.ifname) for a in allocs}
        self._loaded = True

    def _candidates(self):
        first = int(self.subnet.network_address)
        size = self.subnet.num_addresses
        start = self._cursor - first
        for step in range(1, size + 1):
            addr = ipaddress.ip_address(first + (start + step) % size)
            if addr not in self._reserved and addr not in self._used:
                yield addr

    def allocate(self, container_id: str, ifname: str, *, netns: str = "", pod_namespace: str = "",
                 pod_name: str = "", mtu: int = 0, memif: bool = False) -> tuple[Allocation, bool]:
        """Return (allocation, created). An existing allocation for the same
        container and interface is returned as is (ADD is idempotent).
        ``memif``: a second address for the pod's memif."""
        akey = keys.allocation_key(self.node, container_id, ifname)
        with self._lock:
            self._load()
            # No read first: the transaction itself requires the allocation key
            # to be absent, and a failed one tells us to look (one round trip
            # less on every pod start).
            for addrs in self._picks(2 if memif else 1):
                alloc = self._new(container_id, ifname, addrs, netns, pod_namespace, pod_name, mtu)
                if self._claim(alloc):
                    self._used.update(addrs)
                    self._attached.add((container_id, ifname))
                    self._cursor = int(addrs[-1])
                    return alloc, True
                # Lost a race: either an address (someone else's) or this very
                # allocation (a concurrent duplicate ADD) was taken.
                existing = self.store.get(akey)
                if existing is not None:
                    self._attached.add((container_id, ifname))
                    return Allocation.from_json(existing.value), False
                # which of a pair was taken needs a look; a single one was
                self._used.update(addrs if len(addrs) == 1 else [a for a in addrs if self._claimed(a)])
            existing = self.store.get(akey)  # a full pool still answers a repeated ADD
            if existing is not None:
                self._attached.add((container_id, ifname))
                return Allocation.from_json(existing.value), False
            raise Exhausted(f"no free pod address in {self.subnet} on node {self.node}",
                            hint="delete unused pods or run `contivctl ipam gc`")

    def _picks(self, n: int):
        """Groups of ``n`` free addresses, next-fit, each group new: after a
        lost race the next group starts past the last one tried."""
        it = self._candidates()
        while True:
            group = []
            for addr in it:
                group.append(addr)
                if len(group) == n:
                    break
            if len(group) < n:
                return
            yield tuple(group)

    def _claimed(self, addr) -> bool:
        return self.store.get(keys.ip_claim_key(str(addr))) is not None

    def _new(self, container_id: str, ifname: str, addrs: tuple, netns: str, pod_namespace: str,
             pod_name: str, mtu: int) -> Allocation:
        return Allocation(node=self.node, container_id=container_id, ifname=ifname,
                          ips=(f"{addrs[0]}/{self.host_prefix}",), netns=netns,
                          pod_namespace=pod_namespace, pod_name=pod_name, created=time.time(),
                          mtu=mtu, memif=f"{addrs[1]}/{self.host_prefix}" if len(addrs) > 1 else "")

    def _claim(self, alloc: Allocation) -> bool:
        """The allocating transaction: the address claims and the allocation,
        each only if absent."""
        claims = [keys.ip_claim_key(str(ipaddress.ip_interface(ip).ip)) for ip in alloc.addresses]
        akey = keys.allocation_key(self.node, alloc.container_id, alloc.ifname)
        owner = json.dumps({"node": self.node, "container_id": alloc.container_id,
                            "ifname": alloc.ifname}).encode()
        ok, _ = self.store.txn([Absent(c) for c in claims] + [Absent(akey)],
                               [Put(c, owner) for c in claims] + [Put(akey, alloc.to_json().encode())])
        return ok

    def reserve(self, container_id: str, ifname: str, *, netns: str = "", pod_namespace: str = "",
                pod_name: str = "", mtu: int = 0, memif: bool = False) -> Allocation | None:
        """A new allocation chosen locally, its address held, nothing written
        yet (:meth:`commit` writes it); None when this IPAM knows the
        attachment already or has no free address -- :meth:`allocate` then
        answers (with the existing allocation, or Exhausted)."""
        with self._lock:
            self._load()
            if (container_id, ifname) in self._attached:
                return None
            addrs = next(self._picks(2 if memif else 1), None)
            if addrs is None:
                return None
            self._used.update(addrs)
            self._cursor = int(addrs[-1])
            return self._new(container_id, ifname, addrs, netns, pod_namespace, pod_name, mtu)

    def commit(self, alloc: Allocation) -> bool:
        """Write a reserved allocation (one etcd transaction, safe to run on
        another thread). False when another writer has its address or its
        attachment: the reservation is given back."""
        ok = self._claim(alloc)
        with self._lock:
            if ok:
                self._attached.add((alloc.container_id, alloc.ifname))
            else:
                for ip in alloc.addresses:
                    self._used.discard(ipaddress.ip_interface(ip).ip)
        return ok

    def release(self, container_id: str, ifname: str) -> Allocation | None:
        """Free the allocation; None if there was none (DEL is idempotent)."""
        akey = keys.allocation_key(self.node, container_id, ifname)
        with self._lock:
            kv = self.store.get(akey)
            if kv is None:
                return None
            alloc = Allocation.from_json(kv.value)
            ops = [Delete(akey)] + [Delete(keys.ip_claim_key(str(ipaddress.ip_interface(ip).ip)))
                                    for ip in alloc.addresses]
            ok, _ = self.store.txn([ModRevisionIs(akey, kv.mod_revision)], ops)
            if not ok:  # released concurrently
                return None
            for ip in alloc.addresses:
                self._used.discard(ipaddress.ip_interface(ip).ip)
            self._attached.discard((container_id, ifname))
            return alloc

    def gc(self, valid: Iterable[tuple[str, str]] | None = None) -> list[Allocation]:
        """Release allocations whose container is gone.

        With ``valid`` (CNI GC: the runtime's list of live attachments), every
        allocation not in it goes. Without it, only allocations whose network
        namespace no longer exists -- the one signal that a container is gone
        for sure when the runtime never called DEL.
        """
        keep = None if valid is None else {(c, i) for c, i in valid}
        released = []
        for a in self.list():
            if keep is not None:
                gone = (a.container_id, a.ifname) not in keep
            else:
                gone = bool(a.netns) and not os.path.exists(a.netns)
            if gone and self.release(a.container_id, a.ifname):
                released.append(a)
        return released


def check_valid_attachments(raw) -> list[tuple[str, str]]:
    """Parse CNI GC's ``cni.dev/valid-attachments`` list."""
    if not isinstance(raw, list):
        raise InvalidInput("cni.dev/valid-attachments must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str) \
                or not isinstance(item.get("ifname"), str):
            raise InvalidInput("each valid attachment needs string containerID and ifname")
        out.append((item["containerID"], item["ifname"]))
    return out
