"""Records of the agent's local API: what every API call takes and returns.

Each record is exactly the JSON body docs/api.yaml documents for its
endpoint (``to_dict``), and is rebuilt from it by ``from_dict``: the client
(:mod:`agent.api.client`) hands callers these typed records, the agent's
facade (:mod:`agent.facade`) returns them, and the router turns them into
JSON. The reconciler's transaction records (:class:`TxnRecord`) live here
too: the history the API serves *is* the scheduler's record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.model.diag import InterfaceCounters, Session, SocketInfo, TracedPacket, TraceFlow
from agent.model.records import AgentStatus, Allocation, NodeInfo, _Record
from agent.model.stn import StnStatus


# ------------------------------------------------------------------ agent
@dataclass(frozen=True, slots=True)
class Health(_Record):
    """``GET /v1/health``: ready for CNI requests, or why not (CNI STATUS codes)."""

    node: str
    ready: bool
    cni_status: int
    message: str
    applied_revision: int


@dataclass(frozen=True, slots=True)
class NodeStatus(_Record):
    """``GET /v1/status``: the agent, its node, and counts of what it manages."""

    agent: AgentStatus
    node: NodeInfo | None
    mtu: int
    underlay: str
    values: dict
    last_resync: dict
    cluster: dict
    config: dict
    store: dict = field(default_factory=dict)
    #: the NICs STN holds for the data plane (``contivctl stn``), from STN's directory
    stn: StnStatus | None = None


@dataclass(frozen=True, slots=True)
class StnSync(_Record):
    """``POST /v1/stn/sync``: the agent re-read STN's record and rendered
    the node's values again.
    ``uplink``: the NIC the data plane now holds for STN ("" none: given
    back, or a data plane that leaves STN to ``contivctl stn``); ``ready``:
    everything STN needs of the data plane is in place; ``message``: why not."""

    uplink: str
    ready: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class NodeList(_Record):
    """``GET /v1/nodes``: the node registry as this agent sees it."""

    nodes: tuple[NodeInfo, ...]


# ------------------------------------------------------------------ IPAM and pods
@dataclass(frozen=True, slots=True)
class IpamInfo(_Record):
    """``GET /v1/ipam``: the node's pod subnet and its allocations."""

    node: str
    pod_cidr: str
    subnet: str
    total: int
    used: int
    free: int
    gateway: tuple[str, ...]
    allocations: tuple[Allocation, ...]


@dataclass(frozen=True, slots=True)
class GcResult(_Record):
    """``POST /v1/ipam/gc``: the allocations released."""

    released: tuple[Allocation, ...]


@dataclass(frozen=True, slots=True)
class PodStatus(_Record):
    """One local pod attachment: addresses, interface, data-plane state, timings."""

    _omit_empty = ("memif",)

    pod: str
    namespace: str
    name: str
    container_id: str
    ifname: str
    ips: tuple[str, ...]
    netns: str
    host_if: str
    created: float
    dataplane: str
    timings: dict = field(default_factory=dict)
    netns_gone: bool = False  # its network namespace no longer exists: a leak `ipam gc` releases
    memif: str = ""  # the address of its memif (VPP; asked for by annotation), "" if none


@dataclass(frozen=True, slots=True)
class PodList(_Record):
    """``GET /v1/pods``."""

    node: str
    pods: tuple[PodStatus, ...]


# ------------------------------------------------------------------ reconciler
@dataclass(frozen=True, slots=True)
class ValueState(_Record):
    """One data-plane value with its state (``GET /v1/state``)."""

    _omit_empty = ("dependencies", "error", "attempts", "reason")

    key: str
    state: str
    descriptor: str
    value: Any
    dependencies: tuple[dict, ...] = ()
    error: str = ""
    attempts: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StateList(_Record):
    values: tuple[ValueState, ...]


@dataclass(frozen=True, slots=True)
class DesiredValues(_Record):
    """``GET /v1/desired``: key -> value as plain JSON."""

    values: dict


@dataclass(frozen=True, slots=True)
class PlannedOp(_Record):
    op: str
    key: str
    reason: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class PlanRecord(_Record):
    """``GET /v1/plan``: what a resync would do now (typed data, DESIGN.md rule 3)."""

    operations: tuple[PlannedOp, ...]
    pending: dict
    invalid: dict


@dataclass(slots=True)
class OpRecord(_Record):
    """One executed operation of a transaction."""

    op: str
    key: str
    reason: str
    ok: bool
    error: str = ""
    duration_ms: float = 0.0

    def to_dict(self) -> dict:
        d = {"op": self.op, "key": self.key, "reason": self.reason, "ok": self.ok,
             "duration_ms": round(self.duration_ms, 3)}
        if self.error:
            d["error"] = self.error
        return d


@dataclass(slots=True)
class TxnRecord(_Record):
    """One transaction: ``kind`` is ``change``, ``resync`` or ``retry``.

    Mutable while the scheduler executes it; kept in the history afterwards."""

    seq: int
    kind: str
    description: str
    started: float  # wall clock, seconds since the epoch
    duration_ms: float = 0.0
    operations: list[OpRecord] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.operations)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "description": self.description,
                "started": self.started, "duration_ms": round(self.duration_ms, 3),
                "ok": self.ok, "operations": [o.to_dict() for o in self.operations],
                "pending": dict(self.pending), "invalid": dict(self.invalid)}

    @classmethod
    def from_dict(cls, data: dict) -> "TxnRecord":
        # hand-written: a bench reads 10,000 of these with 20,000 operations each
        ops = [OpRecord(o["op"], o["key"], o["reason"], o["ok"], o.get("error", ""),
                        o.get("duration_ms", 0.0)) for o in data.get("operations") or ()]
        return cls(data["seq"], data["kind"], data["description"], data["started"],
                   data.get("duration_ms", 0.0), ops, dict(data.get("pending") or {}),
                   dict(data.get("invalid") or {}))


@dataclass(frozen=True, slots=True)
class History(_Record):
    """``GET /v1/history``: recent transactions, oldest first."""

    transactions: tuple[TxnRecord, ...]


# ------------------------------------------------------------------ Services
@dataclass(frozen=True, slots=True)
class FrontendInfo(_Record):
    kind: str  # cluster-ip | node-port | external-ip | load-balancer
    address: str  # "*node*" for node ports
    port: int


@dataclass(frozen=True, slots=True)
class EndpointInfo(_Record):
    ip: str
    port: int
    node: str
    local: bool
    pod: str
    ready: bool = True


@dataclass(frozen=True, slots=True)
class ServicePortInfo(_Record):
    name: str
    protocol: str
    frontends: tuple[FrontendInfo, ...]
    endpoints: tuple[EndpointInfo, ...]


@dataclass(frozen=True, slots=True)
class ServiceDataplane(_Record):
    """How many values the Service renders to, their state, and the data
    plane's own words for them (nftables elements, VPP translations)."""

    values: int
    state: str
    elements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServiceInfo(_Record):
    service: str
    namespace: str
    name: str
    type: str
    cluster_ip: str | None
    external_ips: tuple[str, ...]
    session_affinity: str
    external_traffic_policy: str | None
    internal_traffic_policy: str
    ports: tuple[ServicePortInfo, ...]
    dataplane: ServiceDataplane
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServiceList(_Record):
    """``GET /v1/services``."""

    services: tuple[ServiceInfo, ...]


# ------------------------------------------------------------------ NetworkPolicies
@dataclass(frozen=True, slots=True)
class RuleInfo(_Record):
    rule: str
    peers: Any  # "all" or a list of peer descriptions
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Isolation(_Record):
    """One direction of a pod's effective policy."""

    isolated: bool
    policies: tuple[str, ...]
    rules: tuple[RuleInfo, ...]
    invalid: dict


@dataclass(frozen=True, slots=True)
class PodPolicies(_Record):
    pod: str
    ip: str
    node: str
    ingress: Isolation
    egress: Isolation


@dataclass(frozen=True, slots=True)
class PolicyList(_Record):
    """``GET /v1/policies``."""

    pods: tuple[PodPolicies, ...]


@dataclass(frozen=True, slots=True)
class ExplainStep(_Record):
    direction: str
    allowed: bool
    reason: str
    policy: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Explanation(_Record):
    """``POST /v1/policies/explain``: the offline verdict for one connection."""

    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    verdict: str
    steps: tuple[ExplainStep, ...]


# ------------------------------------------------------------------ CNI
@dataclass(frozen=True, slots=True)
class CNIReply:
    """What the plugin prints (``body``) and its exit status."""

    exit_code: int
    body: bytes


# ------------------------------------------------------------------ the data plane's own view
@dataclass(frozen=True, slots=True)
class CliOutput(_Record):
    """``POST /v1/dataplane/cli``: a data plane's own CLI (VPP's debug CLI)."""

    node: str
    dataplane: str
    command: str
    output: str


@dataclass(frozen=True, slots=True)
class DumpResult(_Record):
    """``GET /v1/dataplane/dump``: the data plane's objects of one kind, in its
    own terms (VPP's API dumps), as plain JSON."""

    node: str
    dataplane: str
    what: str
    items: tuple[dict, ...]


# ------------------------------------------------------------------ diagnostics
@dataclass(frozen=True, slots=True)
class Netstat(_Record):
    """``GET /v1/netstat``: interface counters of the node and its pods (of one
    pod with ``pod``), read at ``time`` (seconds since the epoch, the agent's
    clock: rates are differences over it)."""

    node: str
    dataplane: str
    time: float
    interfaces: tuple[InterfaceCounters, ...]


@dataclass(frozen=True, slots=True)
class PodSockets(_Record):
    """``GET /v1/pods/sockets``: a pod's TCP and UDP sockets (sock_diag)."""

    pod: str
    node: str
    netns: str
    sockets: tuple[SocketInfo, ...]


@dataclass(frozen=True, slots=True)
class NamedSession(Session):
    """A data plane's session (:class:`agent.model.diag.Session`, its fields
    first) with the Kubernetes names behind its addresses ("" where none)."""

    client: str = ""
    service: str = ""
    service_port: str = ""
    backend: str = ""


@dataclass(frozen=True, slots=True)
class ServiceSessions(_Record):
    """Sessions of one Service and how they spread over its backends."""

    service: str
    sessions: int
    backends: dict


@dataclass(frozen=True, slots=True)
class SessionList(_Record):
    """``GET /v1/sessions``: the data plane's session table named in Kubernetes
    terms. ``total``: sessions in the table (before the filters); ``limit``:
    the table's size where the data plane has one (else null)."""

    node: str
    dataplane: str
    total: int
    limit: int | None
    sessions: tuple[NamedSession, ...]
    summary: tuple[ServiceSessions, ...]


# ------------------------------------------------------------------ trace
@dataclass(frozen=True, slots=True)
class TraceHandle(_Record):
    """``POST /v1/trace``: a trace armed on a node, to collect by ``id``."""

    node: str
    dataplane: str
    id: str


@dataclass(frozen=True, slots=True)
class ProbeRecord(_Record):
    """``POST /v1/trace/probe``: the probe sent from a local pod and what came
    back (``answered``; else ``error``: refused, unreachable, timeout...)."""

    pod: str
    node: str
    flow: TraceFlow
    answered: bool
    error: str
    ms: float


@dataclass(frozen=True, slots=True)
class TraceSegment(_Record):
    """``POST /v1/trace/collect``: the flow's packets on one node, each step
    labelled with the Kubernetes object behind it."""

    node: str
    dataplane: str
    flow: TraceFlow
    packets: tuple[TracedPacket, ...]
