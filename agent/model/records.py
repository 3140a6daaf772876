"""Records the agents keep in etcd: node registry, pod allocations, agent status.

Each record is a frozen dataclass with ``to_json``/``from_json``; unknown JSON
fields are ignored so that a newer agent's records stay readable by an older one.
Addresses are kept as tuples of strings (CIDR or address) per family, so that
dual-stack is a second element, not a schema change.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from agent.errors import InvalidInput


class _Record:
    """JSON round-trip shared by the records below."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: bytes | str):
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise InvalidInput(f"{cls.__name__}: stored value is not JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise InvalidInput(f"{cls.__name__}: stored value is not an object")
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for k, v in data.items():
            if k in known:
                kwargs[k] = tuple(v) if isinstance(v, list) else v
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise InvalidInput(f"{cls.__name__}: {e}") from None


@dataclass(frozen=True, slots=True)
class NodeInfo(_Record):
    """One node in the registry (``/contiv/nodes/<name>``), written by its agent.

    ``index`` is the node's subnet index in the cluster pod CIDR and doubles as
    a small numeric node ID (VXLAN MAC, VPP tags). ``node_ip`` is the underlay
    address that VXLAN tunnels terminate on; ``vtep_mac`` the MAC of the node's
    VXLAN device; ``gateways`` the pods' gateway address per family.
    """

    name: str
    index: int
    node_ip: str
    pod_subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    vtep_mac: str = ""
    dataplane: str = "linux"
    node_ips: tuple[str, ...] = ()  # every address of the node (NodePort listens on all)


@dataclass(frozen=True, slots=True)
class Allocation(_Record):
    """A pod attachment's addresses (``/contiv/ipam/pods/<node>/<cid>/<ifname>``).

    The allocation is also the agent's durable record of a local pod: after a
    restart the agent rebuilds every local pod's desired data-plane values from
    these records alone (level-triggered resync), so it carries the netns path
    and the pod identity from CNI_ARGS.
    """

    node: str
    container_id: str
    ifname: str
    ips: tuple[str, ...]  # addresses with prefix length, e.g. "10.1.1.5/32"
    netns: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    created: float = 0.0
    mtu: int = 0  # from the network configuration; 0: the node's pod MTU

    @property
    def pod_ref(self) -> str:
        """``ns/name`` if the runtime told us, else the container ID."""
        if self.pod_name:
            # podman and other non-Kubernetes runtimes send a name without a namespace
            return f"{self.pod_namespace}/{self.pod_name}" if self.pod_namespace else self.pod_name
        return self.container_id


@dataclass(frozen=True, slots=True)
class AgentStatus(_Record):
    """What an agent reports about itself (``/contiv/status/<node>``).

    ``applied_revision`` is the etcd revision whose effects the agent has fully
    rendered into its data plane; the lab waits on it after every apply.
    """

    node: str
    applied_revision: int
    ready: bool
    pid: int = 0
    started: float = 0.0
    heartbeat: float = 0.0
    dataplane: str = "linux"
    failed_values: int = 0
    message: str = ""
    version: str = field(default="")
