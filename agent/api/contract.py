"""The agent's local API: one table of endpoints, one protocol.

:class:`NodeAPI` is what every caller of a node's agent programs against --
the CLI, the lab, STN, install, the tests and the benchmarks -- and what the
agent implements (:class:`agent.facade.AgentFacade`). :data:`ENDPOINTS` binds
each of its methods to an HTTP method and path: the router
(:mod:`agent.api.routes`) and the client (:mod:`agent.api.client`) are both
built from it, so the two cannot disagree, and a test checks it against
docs/api.yaml (the reference). No other module spells a ``/v1/`` path.

Parameters are declared with their type and bounds; the router checks them
at the boundary and answers 400 (``InvalidInput``) naming the parameter.
GET parameters travel in the query string, POST parameters in a JSON body.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import InvalidInput
from agent.model import api as rec
from agent.model.diag import TRACE_PROTOCOLS

PROTOCOLS = ("TCP", "UDP", "SCTP")
#: what ``dataplane_dump`` lists (agent.dataplane.Dataplane.dump)
DUMPS = ("interfaces", "routes", "nat", "acl", "vxlan", "sessions")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: ``kind`` is ``str``, ``int`` or ``any`` (JSON as is)."""

    name: str
    kind: str = "str"
    default: Any = None
    required: bool = False
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()
    upper: bool = False  # normalise text to upper case before checking choices

    def parse(self, raw: Any, *, from_query: bool) -> Any:
        """The checked value of ``raw`` (a query string, or a JSON value)."""
        if raw is None or raw == "":
            if self.required:
                raise InvalidInput(f"parameter {self.name} is required")
            return self.default
        if self.kind == "int":
            if from_query:
                try:
                    raw = int(raw)
                except ValueError:
                    raise InvalidInput(f"query parameter {self.name}={raw!r} is not an integer") from None
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise InvalidInput(f"parameter {self.name} {raw!r} must be an integer")
            lo = self.lo if self.lo is not None else -(1 << 63)
            hi = self.hi if self.hi is not None else 1 << 63
            if not lo <= raw <= hi:
                raise InvalidInput(f"parameter {self.name}={raw} out of range {lo}..{hi}")
        elif self.kind == "str":
            if not isinstance(raw, str):
                raise InvalidInput(f"parameter {self.name} must be a string")
            if self.upper:
                raw = raw.upper()
            if self.choices and raw not in self.choices:
                raise InvalidInput(f"{self.name} {raw!r} is not {', '.join(self.choices[:-1])} "
                                   f"or {self.choices[-1]}")
        return raw


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A :class:`NodeAPI` method bound to HTTP: ``result`` parses its answer.
    ``unready``: the status of an answer whose record says it is not ready
    (``result.ready`` false), still carrying the record -- a load balancer
    or kubelet probe reads the status alone."""

    name: str
    method: str
    path: str
    result: type
    params: tuple[Param, ...] = ()
    unready: int | None = None


_PREFIX = Param("prefix", default="")
#: a trace's flow: what the probe sends (agent.model.diag.TraceFlow)
_PROTO = Param("protocol", required=True, choices=TRACE_PROTOCOLS, upper=True)
_SPORT = Param("sport", "int", required=True, lo=1, hi=65535)
_DST = Param("dst", required=True)
_DPORT = Param("dport", "int", 0, lo=0, hi=65535)

#: Every endpoint but ``/v1/cni`` (raw bytes in and out; see :meth:`NodeAPI.cni`).
ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (
    Endpoint("health", "GET", "/v1/health", rec.Health, unready=503),
    Endpoint("status", "GET", "/v1/status", rec.NodeStatus),
    Endpoint("ipam", "GET", "/v1/ipam", rec.IpamInfo),
    Endpoint("ipam_gc", "POST", "/v1/ipam/gc", rec.GcResult, (Param("valid", "any"),)),
    Endpoint("pods", "GET", "/v1/pods", rec.PodList),
    Endpoint("nodes", "GET", "/v1/nodes", rec.NodeList),
    Endpoint("state", "GET", "/v1/state", rec.StateList, (_PREFIX,)),
    Endpoint("desired", "GET", "/v1/desired", rec.DesiredValues, (_PREFIX,)),
    Endpoint("plan", "GET", "/v1/plan", rec.PlanRecord),
    Endpoint("resync", "POST", "/v1/resync", rec.TxnRecord),
    Endpoint("history", "GET", "/v1/history", rec.History,
             (Param("limit", "int", 50, lo=1, hi=10000), Param("since", "int", 0, lo=0))),
    Endpoint("services", "GET", "/v1/services", rec.ServiceList,
             (Param("namespace"), Param("name"))),
    Endpoint("policies", "GET", "/v1/policies", rec.PolicyList, (Param("namespace"), Param("pod"))),
    Endpoint("netstat", "GET", "/v1/netstat", rec.Netstat, (Param("pod"),)),
    Endpoint("sockets", "GET", "/v1/pods/sockets", rec.PodSockets, (Param("pod", required=True),)),
    Endpoint("sessions", "GET", "/v1/sessions", rec.SessionList, (Param("service"), Param("pod"))),
    Endpoint("dataplane_cli", "POST", "/v1/dataplane/cli", rec.CliOutput,
             (Param("command", required=True),)),
    Endpoint("dataplane_dump", "GET", "/v1/dataplane/dump", rec.DumpResult,
             (Param("what", required=True, choices=DUMPS),)),
    Endpoint("trace_start", "POST", "/v1/trace", rec.TraceHandle,
             (_PROTO, Param("src", required=True), _SPORT, _DST, _DPORT)),
    Endpoint("trace_probe", "POST", "/v1/trace/probe", rec.ProbeRecord,
             (Param("pod", required=True), _PROTO, _SPORT, _DST, _DPORT,
              Param("timeout_ms", "int", 1000, lo=10, hi=30000))),
    Endpoint("trace_collect", "POST", "/v1/trace/collect", rec.TraceSegment,
             (Param("id", required=True),)),
    Endpoint("stn_sync", "POST", "/v1/stn/sync", rec.StnSync),
    Endpoint("explain", "POST", "/v1/policies/explain", rec.Explanation,
             (Param("src", required=True), Param("dst", required=True),
              Param("port", "int", required=True, lo=1, hi=65535),
              Param("protocol", default="TCP", choices=PROTOCOLS, upper=True))),
)}

CNI_PATH = "/v1/cni"

#: CNI environment variable <-> request header of ``POST /v1/cni``
CNI_HEADERS = {
    "CNI_COMMAND": "x-cni-command",
    "CNI_CONTAINERID": "x-cni-containerid",
    "CNI_NETNS": "x-cni-netns",
    "CNI_IFNAME": "x-cni-ifname",
    "CNI_ARGS": "x-cni-args",
    "CNI_PATH": "x-cni-path",
}


class NodeAPI(Protocol):
    """What a node's agent answers. Every method raises the project's typed
    errors (:mod:`agent.errors`): ``InvalidInput`` for a bad argument,
    ``Unavailable`` when the agent cannot be reached, ``NotFound``...

    The local implementation is :class:`agent.facade.AgentFacade`; the remote
    one :class:`agent.api.client.AgentClient` (the agent's unix socket)."""

    def health(self) -> rec.Health:
        """Ready for CNI requests, or the CNI STATUS code and why not."""

    def status(self) -> rec.NodeStatus:
        """The agent's record, its node, MTU, underlay and value counts."""

    def ipam(self) -> rec.IpamInfo:
        """The node subnet and every allocation in it."""

    def ipam_gc(self, valid: list[dict] | None = None) -> rec.GcResult:
        """Release allocations whose netns is gone, or (``valid`` given, as CNI
        GC's ``cni.dev/valid-attachments``) every one not listed."""

    def pods(self) -> rec.PodList:
        """Local attachments with data-plane state and CNI timings."""

    def nodes(self) -> rec.NodeList:
        """The node registry."""

    def state(self, prefix: str = "") -> rec.StateList:
        """Every value the reconciler knows (keys starting with ``prefix``)."""

    def desired(self, prefix: str = "") -> rec.DesiredValues:
        """The desired values (keys starting with ``prefix``) as plain JSON."""

    def plan(self) -> rec.PlanRecord:
        """What a resync would change now; reads the data plane, changes nothing."""

    def resync(self) -> rec.TxnRecord:
        """Retrieve the data plane and repair every drift; the transaction."""

    def history(self, limit: int = 50, since: int = 0) -> rec.History:
        """The last ``limit`` transactions with a sequence number above ``since``."""

    def services(self, namespace: str | None = None, name: str | None = None) -> rec.ServiceList:
        """Services as this node renders them."""

    def policies(self, namespace: str | None = None, pod: str | None = None) -> rec.PolicyList:
        """Per pod, the NetworkPolicies selecting it and its effective rules."""

    def explain(self, src: str, dst: str, port: int, protocol: str = "TCP") -> rec.Explanation:
        """The offline verdict for a new connection SRC -> DST:PORT."""

    def netstat(self, pod: str | None = None) -> rec.Netstat:
        """Counters of the node's interfaces and its pods' (of one pod,
        ``ns/name``, with ``pod``: NotFound naming the node it runs on, or the
        closest name, when it is not on this node)."""

    def sockets(self, pod: str) -> rec.PodSockets:
        """The TCP and UDP sockets inside a local pod's network namespace."""

    def sessions(self, service: str | None = None, pod: str | None = None) -> rec.SessionList:
        """The data plane's sessions with client pod, Service and backend pod;
        only one Service's (``ns/name``) or one pod's with the filters."""

    def trace_start(self, protocol: str, src: str, sport: int, dst: str, dport: int = 0) -> rec.TraceHandle:
        """Start recording the packets of one flow on this node's data plane
        (before its probe is sent; see :meth:`trace_probe`); collect them by
        the handle's id. ``Conflict`` while the data plane holds another
        trace it cannot run beside; a trace not collected within a minute is
        removed by the next one."""

    def trace_probe(self, pod: str, protocol: str, sport: int, dst: str, dport: int = 0,
                    timeout_ms: int = 1000) -> rec.ProbeRecord:
        """Send one probe from local pod ``pod`` (``ns/name``) from port
        ``sport`` (ICMP: echo identifier) to ``dst``:``dport`` and wait up to
        ``timeout_ms`` for the answer."""

    def trace_collect(self, id: str) -> rec.TraceSegment:  # noqa: A002 -- the API's name
        """Stop trace ``id``: its packets here, each step labelled in
        Kubernetes terms; NotFound for an unknown (or expired) id."""

    def dataplane_cli(self, command: str) -> rec.CliOutput:
        """Run a command of the data plane's own CLI (VPP's ``show ...``);
        NotSupported on a data plane without one."""

    def dataplane_dump(self, what: str) -> rec.DumpResult:
        """The data plane's objects of one kind (``DUMPS``) in its own terms."""

    def stn_sync(self) -> rec.StnSync:
        """Re-read STN's record (``contivctl stn`` changed it) and resync: on
        VPP, the data plane takes the stolen NIC with the node's address, or
        lets it go. Whether what STN needs is in place."""

    def cni(self, env: dict[str, str], body: bytes) -> rec.CNIReply:
        """One CNI request as the runtime made it: ``CNI_*`` variables and stdin."""
