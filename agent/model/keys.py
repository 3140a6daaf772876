"""The etcd key grammar (documented in docs/etcd-layout.md).

Every key the project reads or writes is built and parsed here and nowhere
else, so a layout change is one edit.

::

    /contiv/k8s/<kind>/<namespace>/<name>   namespaced Kubernetes objects (JSON)
    /contiv/k8s/<kind>/<name>               cluster-scoped ones (namespace, node)
    /contiv/nodes/<node>                    node registry (NodeInfo)
    /contiv/ipam/subnets/<network-address>  node subnet claim
    /contiv/ipam/nodes/<node>               node -> subnet (reverse of the claim)
    /contiv/ipam/ips/<address>              pod address claim (cluster-wide unique)
    /contiv/ipam/pods/<node>/<cid>/<ifname> pod allocation (Allocation)
    /contiv/status/<node>                   agent status (AgentStatus)
    /contiv/ksr/leader                      the reflector replica that writes /contiv/k8s/
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.errors import InvalidInput
from agent.model import names

ROOT = "/contiv/"
K8S = ROOT + "k8s/"
NODES = ROOT + "nodes/"
IPAM = ROOT + "ipam/"
IPAM_SUBNETS = IPAM + "subnets/"
IPAM_NODES = IPAM + "nodes/"
IPAM_IPS = IPAM + "ips/"
IPAM_PODS = IPAM + "pods/"
STATUS = ROOT + "status/"
#: the reflector replica allowed to write /contiv/k8s/ (held with a lease)
KSR_LEADER = ROOT + "ksr/leader"

#: Kinds the reflector mirrors, mapped to whether they are namespaced.
KINDS: dict[str, bool] = {
    "pod": True,
    "service": True,
    "endpointslice": True,
    "networkpolicy": True,
    "namespace": False,
    "node": False,
}

#: Kubernetes ``kind`` -> key segment.
KIND_SEGMENT = {
    "Pod": "pod",
    "Service": "service",
    "EndpointSlice": "endpointslice",
    "NetworkPolicy": "networkpolicy",
    "Namespace": "namespace",
    "Node": "node",
}

#: Prefixes whose changes the agent acts on. Status and IPAM keys are written by
#: agents themselves and are deliberately excluded: reacting to them would make
#: every status write wake every other agent.
WATCHED = (K8S, NODES)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A parsed ``/contiv/k8s/...`` key."""

    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def k8s_key(kind: str, namespace: str, name: str) -> str:
    """Key of a Kubernetes object; ``kind`` is a key segment (``pod``) or a Kind (``Pod``)."""
    seg = KIND_SEGMENT.get(kind, kind)
    if seg not in KINDS:
        raise InvalidInput(f"unsupported kind {kind!r}; supported: {', '.join(KIND_SEGMENT)}")
    names.check_object_name(name, f"{seg} name")
    if KINDS[seg]:
        names.check_namespace(namespace)
        return f"{K8S}{seg}/{namespace}/{name}"
    return f"{K8S}{seg}/{name}"


def k8s_prefix(kind: str) -> str:
    seg = KIND_SEGMENT.get(kind, kind)
    if seg not in KINDS:
        raise InvalidInput(f"unsupported kind {kind!r}")
    return f"{K8S}{seg}/"


def parse_k8s_key(key: str) -> ObjectRef | None:
    """Parse a Kubernetes object key; None if the key is not one."""
    if not key.startswith(K8S):
        return None
    parts = key[len(K8S):].split("/")
    if not parts or parts[0] not in KINDS:
        return None
    if KINDS[parts[0]]:
        return ObjectRef(parts[0], parts[1], parts[2]) if len(parts) == 3 else None
    return ObjectRef(parts[0], "", parts[1]) if len(parts) == 2 else None


def node_key(node: str) -> str:
    return NODES + names.check_node_name(node)


def status_key(node: str) -> str:
    return STATUS + names.check_node_name(node)


def subnet_claim_key(network_address: str) -> str:
    return IPAM_SUBNETS + network_address


def node_subnet_key(node: str) -> str:
    return IPAM_NODES + names.check_node_name(node)


def ip_claim_key(address: str) -> str:
    return IPAM_IPS + address


def allocation_prefix(node: str) -> str:
    return f"{IPAM_PODS}{names.check_node_name(node)}/"


def allocation_key(node: str, container_id: str, ifname: str) -> str:
    names.check_container_id(container_id)
    names.check_ifname(ifname)
    return f"{allocation_prefix(node)}{container_id}/{ifname}"
