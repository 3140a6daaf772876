"""The data-plane seam: the one place where the agent meets a data plane.

The agent is data-plane neutral: it watches the cluster, allocates addresses,
builds *intents* (:mod:`agent.builders`: node transport, pod attachments,
Service ports, compiled NetworkPolicies) and reconciles values through the
generic scheduler. A :class:`Dataplane` turns intents into values of its own
descriptors and answers diagnostics. The Linux data plane
(:mod:`agent.linux.plane`) is one implementation; a new one is added by
implementing this protocol, registering it in :data:`REGISTRY`, and passing
the contract suite (``tests/dataplane_contract.py``).

Rules every implementation follows (DESIGN.md):

* values are frozen dataclasses under keys ``<plane>/<type>/...``, each type
  owned by one descriptor whose ``retrieve`` finds only what this project
  created (tags), so resync and drift detection work the same everywhere;
* rendering is pure: the same intent gives the same values;
* the Service and policy renderers may keep state between calls (group ids,
  shared sets), but only what they can rebuild from scratch after ``reset``;
* partition names: a Service renderer's start with ``svc``, a policy
  renderer's with ``pol`` -- the syncs use the prefixes to find partitions
  that a full rebuild no longer produces;
* diagnostics return typed records (:mod:`agent.model.diag`) or raise
  :class:`agent.errors.NotSupported` with the reason.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

from agent.errors import InvalidInput

#: name -> "module:Class" of every data plane this build knows; imported only
#: when chosen, so that a node running one never loads the other's libraries.
REGISTRY: dict[str, str] = {
    "linux": "agent.linux.plane:LinuxDataplane",
    "vpp": "agent.vpp.plane:VppDataplane",
}


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the data plane found out about the node when it was opened."""

    underlay: str  # the interface carrying node-to-node traffic
    node_ip: str  # the address tunnels terminate on
    node_ips: tuple[str, ...]  # every global IPv4 address (node ports listen on all)
    mtu: int  # pod and overlay MTU


@dataclass(frozen=True, slots=True)
class PodInterface:
    """An interface of a CNI result: ``sandbox`` is the pod's netns path for
    an interface inside the pod, empty for one on the node."""

    name: str
    mac: str
    sandbox: str = ""
    #: a socket the pod's program connects to (a memif's), "" for a netdev
    socket: str = ""


@dataclass(slots=True)
class PolicyDelta:
    """What changed in NetworkPolicy enforcement, in data-plane-neutral terms
    (:class:`agent.policies.PolicySync` computes it; a renderer turns it into
    partitions).

    * ``policies``: ref -> recompiled policy (None: gone), each with whether it
      is *rendered here* (``here``: it selects a pod of this node);
    * ``dispatch``: local pod ref -> (the pod, or None when it is gone or not
      on this node any more; the policies isolating it for ingress; for egress);
    * ``moves``: a pod entering (True) or leaving (False) what a peer selects,
      by the peer's ident (``Peer.ident``): shared by every policy with that peer;
    * ``full``: a rebuild from scratch (after ``reset``)."""

    policies: dict[str, Any] = field(default_factory=dict)
    here: set[str] = field(default_factory=set)
    dispatch: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    moves: list[tuple[str, Any, bool]] = field(default_factory=list)
    full: bool = False


Partitions = dict[str, dict[str, object]]
Patches = dict[str, tuple[dict[str, object], set[str]]]


class ServiceRenderer(Protocol):
    """Service ports (:class:`agent.builders.services.ServicePort`) to values.

    :class:`agent.services.ServiceSync` decides *which* Services changed and
    which pods back each port; the renderer decides how the data plane holds
    them. ``endpoint_limit``: the most endpoints one port can balance over
    (None: no limit); the sync reports the rest as a problem of the Service."""

    endpoint_limit: int | None

    def reset(self) -> None:
        """Forget everything: a full rebuild follows."""

    def nodes(self, t) -> bool:
        """This node and its peers as they are now (the node transport,
        :class:`agent.builders.nodes.NodeTransport`, handed over whenever the
        node's values are built); True when the renderer's output depends on
        something that changed (node ports of peers held here): every Service
        is rebuilt then."""

    def service(self, key: tuple[str, str], ports: Sequence[Any]) -> dict[str, object]:
        """The values of Service ``key`` (its own partition); ``ports`` empty
        when the Service is gone or has nothing to render."""

    def local_pods(self, changes: Mapping[str, str | None]) -> Partitions:
        """Local pods (ref -> IP, None: gone or not local) changed: the
        partitions that depend on them (e.g. hairpin)."""

    def shared(self, force: bool = False) -> Partitions:
        """Partitions shared by every Service that changed since the last call
        (all of them with ``force``)."""

    def describe(self, values: Mapping[str, object]) -> list[str]:
        """A Service's values in the data plane's own words, for diagnostics."""


class PolicyRenderer(Protocol):
    """Compiled NetworkPolicies to values (see :class:`PolicyDelta`)."""

    def reset(self) -> None:
        """Forget everything: a full rebuild follows."""

    def render(self, delta: PolicyDelta, pods: Mapping[str, Any]) -> tuple[Partitions, Patches]:
        """Partitions to replace and partitions to patch in place ((values to
        set, keys to remove)) for ``delta``; ``pods``: every known pod
        (:class:`agent.builders.policies.PodInfo`) by ref."""


class Dataplane(Protocol):
    """A data plane: its descriptors, how it renders intents, diagnostics."""

    #: the name it is registered under ("linux", "vpp")
    name: str
    #: whether it gives pods that ask for one a memif (agent.podopts)
    supports_memif: bool
    #: whether the node's host sends to pods from an address of the node's
    #: pod subnet (agent.builders.nodes.host_address), which IPAM then keeps
    host_in_subnet: bool
    #: that address, set by the agent before the first render ("" none: it
    #: is not, or a pod of an earlier version holds it)
    host_address: str

    def open(self, cfg) -> NodeFacts:
        """Connect (netlink, nftables, the VPP API...) and learn the node's
        facts (:class:`agent.config.AgentConfig` says what is configured).
        Raises ``InvalidInput`` for a configuration that cannot work,
        ``Unavailable`` for a data plane that is not there (yet)."""

    def descriptors(self) -> list:
        """Its descriptors (:class:`agent.reconciler.Descriptor`), in retrieve order."""

    def ready(self) -> str:
        """Empty when the data plane can serve pods, else why not (CNI STATUS)."""

    def generation(self) -> int:
        """How many times the data plane has been (re)connected: the agent
        resyncs whenever it changes (a restarted VPP comes back empty); 0
        while it never was. Always 1 for a data plane that cannot go away."""

    def render_node(self, t) -> dict[str, object]:
        """The node's own values from its transport (:class:`agent.builders.nodes.NodeTransport`):
        forwarding, the pods' gateway, tunnels to every peer, and the fixed
        parts of Services and policies."""

    def render_pod(self, p) -> dict[str, object]:
        """A pod attachment's values (:class:`agent.builders.pods.PodAttachment`)."""

    def pod_interfaces(self, p, metadata: Callable[[str], Any]) -> tuple[PodInterface, ...]:
        """The interfaces of a configured pod for its CNI result, the pod's own
        last; ``metadata(key)`` reads what a descriptor returned on create."""

    def pod_host_if(self, container_id: str, ifname: str) -> str:
        """The node-side name of a pod's interface (deterministic: DEL and
        diagnostics find it without the allocation)."""

    def service_renderer(self) -> ServiceRenderer: ...

    def policy_renderer(self) -> PolicyRenderer: ...

    def prefetch(self) -> None:
        """Start reading the data plane for the next resync's retrieve on a
        thread of its own (an optimisation; may do nothing)."""

    def wait_prefetch(self) -> None:
        """Wait for a prefetch started before (nothing when none runs)."""

    def discard_prefetch(self) -> None:
        """Drop what a prefetch read (used, or no longer to be trusted)."""

    def stn_keys(self) -> tuple[str, ...]:
        """The keys of the values that hold a NIC STN stole for this data
        plane, as last rendered (empty: nothing stolen, or a data plane that
        leaves STN to ``contivctl stn``'s own steps, as Linux's bridge does)."""

    def close(self) -> None:
        """Release sockets and threads; the data plane's state stays as it is."""

    # ------------------------------------------------------------ diagnostics
    def counters(self, pods: Mapping[str, str]) -> list:
        """Interface counters (:class:`agent.model.diag.InterfaceCounters`) of
        the node's own interfaces and of the given pods (host interface name
        -> pod ref)."""

    def sessions(self) -> list:
        """Connection / NAT sessions (:class:`agent.model.diag.Session`)."""

    def session_limit(self) -> int | None:
        """How many sessions its table holds at most; None where it has no
        fixed limit to report."""

    def sockets(self, netns: str) -> list:
        """The TCP and UDP sockets (:class:`agent.model.diag.SocketInfo`) of
        the pod network namespace at ``netns``; NotFound if it is gone."""

    def trace_start(self, flow) -> Any:
        """Start recording the packets of one flow (:class:`agent.model.diag.TraceFlow`,
        both directions, translated or not) before its probe is sent; a
        handle for :meth:`trace_collect`. ``Conflict`` while another trace
        holds what only one can (VPP's one trace filter); ``NotSupported``
        where the data plane cannot trace."""

    def trace_collect(self, handle) -> list:
        """Stop the trace ``handle`` and return its packets
        (:class:`agent.model.diag.TracedPacket`) in the order they were seen;
        releases everything the trace set up, also when it fails."""

    def cli(self, command: str) -> str:
        """The output of a command of the data plane's own CLI; NotSupported
        where there is none."""

    def dump(self, what: str) -> list[dict]:
        """Its objects of one kind (interfaces, routes, nat, acl, vxlan,
        sessions) as plain JSON in its own terms; NotSupported for a kind it
        has no such objects of."""


def create(name: str, cfg=None) -> Dataplane:
    """A new, unopened data plane of the registered ``name``; ``cfg``
    (:class:`agent.config.AgentConfig`) when its renderers need settings
    before it is opened."""
    target = REGISTRY.get(name)
    if target is None:
        raise InvalidInput(f"unknown data plane {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(cfg)
