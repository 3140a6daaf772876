"""NetworkPolicy (networking.k8s.io/v1) compiled into per-pod effective rules.

Pure and data-plane neutral; the heart of policy enforcement and of
``contivctl policies explain``. Semantics, as Kubernetes defines them:

* ``policyTypes`` defaults to Ingress, plus Egress when ``egress`` has rules;
* a pod selected by any policy of a type is *isolated* for that direction;
  traffic in an isolated direction needs a rule of one of those policies
  admitting it (policies are additive); a non-isolated direction is open;
* a connection needs both: egress allowed at the source pod and ingress
  allowed at the destination pod; replies to allowed connections are allowed
  (the data plane is stateful);
* peers: ``podSelector`` (pods of the policy's namespace), ``namespaceSelector``
  (all pods of matching namespaces), both (matching pods of matching
  namespaces), ``ipBlock`` (CIDR minus ``except``); an absent or empty
  ``from``/``to`` means every peer; absent or empty ``ports`` every port;
* ports by number, by range (``endPort``) and by name -- a name is resolved
  against the *destination* pod's container ports (for ingress the selected
  pod itself, for egress each peer pod); TCP, UDP, SCTP;
* traffic from a pod's own node to the pod is always allowed (kubelet probes;
  most CNIs do the same); it is not a policy decision.

An invalid policy fails closed: the pods its podSelector can be shown to
select are isolated in the directions it names (both if unreadable), and none
of its rules opens anything.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

import orjson  # idents are computed for every peer of every policy: a C encoder


def _canonical(x) -> str:
    return orjson.dumps(x, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()

PROTOCOLS = ("TCP", "UDP", "SCTP")


class PolicyError(ValueError):
    pass


# ---------------------------------------------------------------- selectors
def check_selector(sel) -> None:
    if sel is None or not isinstance(sel, dict):
        raise PolicyError("selector must be a mapping")
    ml = sel.get("matchLabels") or {}
    if not isinstance(ml, dict):
        raise PolicyError("matchLabels must be a mapping")
    for e in sel.get("matchExpressions") or []:
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            raise PolicyError("matchExpressions entries need a key")
        op, vals = e.get("operator"), e.get("values")
        if op in ("In", "NotIn"):
            if not isinstance(vals, list) or not vals:
                raise PolicyError(f"operator {op} needs values")
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                raise PolicyError(f"operator {op} takes no values")
        else:
            raise PolicyError(f"unknown operator {op!r}")


def selects(sel: dict, labels: dict) -> bool:
    """Label selector semantics (a validated selector; {} matches everything)."""
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != str(v):
            return False
    for e in sel.get("matchExpressions") or []:
        k, op = e["key"], e["operator"]
        vals = [str(v) for v in e.get("values") or []]
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


# ---------------------------------------------------------------- model
@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    ip: str
    labels: tuple[tuple[str, str], ...]
    node: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, containerPort)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_dict(self) -> dict:
        return dict(self.labels)

    def named_port(self, name: str, protocol: str) -> int | None:
        for n, p, port in self.ports:
            if n == name and p == protocol:
                return port
        return None


def pod_info(obj: dict) -> PodInfo | None:
    md, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ip = st.get("podIP")
    if not ip:
        return None
    ports = tuple((p.get("name", ""), p.get("protocol", "TCP"), p["containerPort"])
                  for c in spec.get("containers") or [] for p in c.get("ports") or []
                  if isinstance(p, dict) and isinstance(p.get("containerPort"), int))
    labels = tuple(sorted((str(k), str(v)) for k, v in (md.get("labels") or {}).items()))
    return PodInfo(md.get("namespace", "default"), md.get("name", ""), ip, labels,
                   spec.get("nodeName", ""), ports)


@dataclass(frozen=True, slots=True)
class Port:
    """``port`` None: every port of ``protocol``; ``name``: a named port."""

    protocol: str
    port: int | None = None
    end: int | None = None
    name: str = ""

    def text(self) -> str:
        if self.name:
            return f"{self.protocol}/{self.name}"
        if self.port is None:
            return f"{self.protocol}/*"
        return f"{self.protocol}/{self.port}" + (f"-{self.end}" if self.end else "")

    def admits(self, protocol: str, port: int, dst: PodInfo | None) -> bool:
        if protocol != self.protocol:
            return False
        if self.name:
            return dst is not None and dst.named_port(self.name, protocol) == port
        if self.port is None:
            return True
        return self.port <= port <= (self.end or self.port)


@dataclass(frozen=True, slots=True)
class Peer:
    """One entry of from/to: ``pods`` (selected pod refs) or ``cidr`` with ``excepts``.

    ``ident`` names what the peer selects, canonically: peers with equal
    idents -- in any policies -- select the same pods or addresses in every
    cluster state, so a data plane can give them one shared set."""

    kind: str  # "pods" | "cidr"
    pods: frozenset[str] = frozenset()
    cidr: str = ""
    excepts: tuple[str, ...] = ()
    text: str = ""
    ident: str = ""

    def admits(self, ip: str, pod: PodInfo | None) -> bool:
        if self.kind == "pods":
            return pod is not None and pod.ref in self.pods
        a = ipaddress.ip_address(ip)
        return a in ipaddress.ip_network(self.cidr) and not any(
            a in ipaddress.ip_network(e) for e in self.excepts)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ingress/egress rule; ``peers`` None = every peer, ``ports`` () = every port."""

    policy: str
    direction: str  # ingress | egress
    index: int
    peers: tuple[Peer, ...] | None
    ports: tuple[Port, ...]

    @property
    def name(self) -> str:
        return f"{self.policy} {self.direction}[{self.index}]"


@dataclass(slots=True)
class CompiledPolicy:
    ref: str
    namespace: str
    types: tuple[str, ...]
    selected: frozenset[str]  # pod refs
    rules: list[Rule] = field(default_factory=list)
    error: str = ""  # non-empty: invalid, failing closed


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str
    policy: str = ""
    rule: str = ""

    def to_dict(self) -> dict:
        return {"allowed": self.allowed, "reason": self.reason, "policy": self.policy,
                "rule": self.rule}


class PolicyModel:
    """Pods, namespaces and policies, and everything derived from them."""

    def __init__(self, pods: Iterable[PodInfo], namespaces: dict[str, dict],
                 policies: Iterable[dict]) -> None:
        self.pods = {p.ref: p for p in pods}
        self.by_ip = {p.ip: p for p in self.pods.values()}
        self.ns_labels = {n: {str(k): str(v) for k, v in (labels or {}).items()}
                          for n, labels in namespaces.items()}
        # peer ident -> the pods it selects: policies repeat the same peers
        self._selection: dict[str, frozenset] = {}
        self.policies = [self.compile(p) for p in policies]
        self.policies.sort(key=lambda c: c.ref)

    # ------------------------------------------------------------ compile
    def _pods_in(self, namespace: str | None, pod_sel: dict | None, ns_sel: dict | None) -> frozenset:
        out = []
        for p in self.pods.values():
            if ns_sel is not None:
                if not selects(ns_sel, self.ns_labels.get(p.namespace, {})):
                    continue
            elif p.namespace != namespace:
                continue
            if pod_sel is not None and not selects(pod_sel, p.label_dict()):
                continue
            out.append(p.ref)
        return frozenset(out)

    def _peer_pods(self, namespace: str, peer: dict) -> tuple[str, frozenset]:
        """(ident, pods) of a selector peer (a policy's own podSelector is the
        peer ``{"podSelector": ...}``: the same pods of its namespace)."""
        ident = peer_ident(namespace, peer)
        pods = self._selection.get(ident)
        if pods is None:
            pods = self._selection[ident] = self._pods_in(
                namespace, peer.get("podSelector"), peer.get("namespaceSelector"))
        return ident, pods

    def compile(self, obj: dict) -> CompiledPolicy:
        md, spec = obj.get("metadata") or {}, obj.get("spec")
        ns = md.get("namespace", "default")
        ref = f"{ns}/{md.get('name', '?')}"
        try:
            if not isinstance(spec, dict):
                raise PolicyError("spec is missing")
            check_selector(spec.get("podSelector"))
            _, selected = self._peer_pods(ns, {"podSelector": spec["podSelector"]})
        except PolicyError as e:
            return CompiledPolicy(ref, ns, (), frozenset(), [], f"podSelector: {e}")
        types = spec.get("policyTypes")
        try:
            if types is None or types == []:
                # the API server defaults an absent *or empty* list (len == 0)
                types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
            if not isinstance(types, list) or not types or not set(types) <= {"Ingress", "Egress"}:
                raise PolicyError(f"policyTypes {types!r} is invalid")
            cp = CompiledPolicy(ref, ns, tuple(sorted(set(types))), selected)
            for direction, key in (("ingress", "from"), ("egress", "to")):
                if direction.capitalize() not in cp.types:
                    continue
                rules = spec.get(direction) or []
                if not isinstance(rules, list):
                    raise PolicyError(f"{direction} must be a list")
                for i, r in enumerate(rules):
                    cp.rules.append(self._rule(ref, ns, direction, i, r or {}, key))
            return cp
        except (PolicyError, ValueError, TypeError, KeyError) as e:
            # fail closed: isolate what it selects, in the directions it names
            bad_types = tuple(t for t in (types if isinstance(types, list) else [])
                              if t in ("Ingress", "Egress")) or ("Egress", "Ingress")
            return CompiledPolicy(ref, ns, tuple(sorted(bad_types)), selected, [], str(e))

    def _rule(self, ref: str, ns: str, direction: str, i: int, r: dict, key: str) -> Rule:
        if not isinstance(r, dict):
            raise PolicyError(f"{direction}[{i}] must be a mapping")
        peers = None
        raw_peers = r.get(key)
        if raw_peers:
            peers = []
            for j, p in enumerate(raw_peers):
                if not isinstance(p, dict) or not p:
                    raise PolicyError(f"{direction}[{i}].{key}[{j}] is empty")
                if "ipBlock" in p:
                    blk = p["ipBlock"]
                    net = ipaddress.ip_network(str(blk["cidr"]), strict=False)
                    exc = []
                    for e in blk.get("except") or []:
                        en = ipaddress.ip_network(str(e), strict=False)
                        if not en.subnet_of(net):
                            raise PolicyError(f"except {e} is not inside {net}")
                        exc.append(str(en))
                    peers.append(Peer("cidr", cidr=str(net), excepts=tuple(exc),
                                      text=f"ipBlock {net}" + (f" except {', '.join(exc)}" if exc else ""),
                                      ident=_canonical(["cidr", str(net), sorted(set(exc))])))
                    continue
                ps, nss = p.get("podSelector"), p.get("namespaceSelector")
                if ps is not None:
                    check_selector(ps)
                if nss is not None:
                    check_selector(nss)
                ident, pods = self._peer_pods(ns, p)
                text = " ".join(filter(None, [
                    f"namespaces {_sel_text(nss)}" if nss is not None else f"namespace {ns}",
                    f"pods {_sel_text(ps)}" if ps is not None else "all pods"]))
                peers.append(Peer("pods", pods=pods, text=text, ident=ident))
            peers = tuple(peers)
        ports = []
        for j, p in enumerate(r.get("ports") or []):
            proto = p.get("protocol") or "TCP"
            if proto not in PROTOCOLS:
                raise PolicyError(f"protocol {proto!r}")
            port = p.get("port")
            end = p.get("endPort")
            if isinstance(port, str) and not port.isdigit():
                if end is not None:
                    raise PolicyError("endPort with a named port")
                ports.append(Port(proto, name=port))
            elif port is None:
                if end is not None:
                    raise PolicyError("endPort without port")
                ports.append(Port(proto))
            else:
                port = int(port)
                if not 1 <= port <= 65535 or (end is not None and not port <= int(end) <= 65535):
                    raise PolicyError(f"port {port}-{end} out of range")
                ports.append(Port(proto, port, int(end) if end is not None else None))
        return Rule(ref, direction, i, peers, tuple(ports))

    # ------------------------------------------------------------ queries
    def selecting(self, pod: PodInfo, direction: str) -> list[CompiledPolicy]:
        t = direction.capitalize()
        return [c for c in self.policies if pod.ref in c.selected and t in c.types]

    def effective(self, pod: PodInfo) -> dict:
        out = {"pod": pod.ref, "ip": pod.ip, "node": pod.node}
        for direction in ("ingress", "egress"):
            pols = self.selecting(pod, direction)
            out[direction] = {
                "isolated": bool(pols),
                "policies": [c.ref for c in pols],
                "rules": [_rule_dict(r) for c in pols for r in c.rules if r.direction == direction],
                "invalid": {c.ref: c.error for c in pols if c.error}}
        return out

    def _check(self, direction: str, subject: PodInfo, peer_ip: str, peer: PodInfo | None,
               protocol: str, port: int, dst: PodInfo | None) -> Verdict:
        pols = self.selecting(subject, direction)
        if not pols:
            return Verdict(True, f"{subject.ref} is not isolated for {direction}")
        for c in pols:
            for r in c.rules:
                if r.direction != direction:
                    continue
                if r.peers is not None and not any(pe.admits(peer_ip, peer) for pe in r.peers):
                    continue
                if r.ports and not any(pt.admits(protocol, port, dst) for pt in r.ports):
                    continue
                return Verdict(True, f"allowed by NetworkPolicy {c.ref} ({direction} rule {r.index})",
                               c.ref, r.name)
        who = peer.ref if peer else peer_ip
        prep = "from" if direction == "ingress" else "to"
        return Verdict(False, f"denied: {subject.ref} is isolated for {direction} by "
                              f"{'policy' if len(pols) == 1 else 'policies'} "
                              f"{', '.join(c.ref for c in pols)}; no rule admits {protocol}/{port} "
                              f"{prep} {who}", pols[0].ref)

    def explain(self, src: str, dst: str, port: int, protocol: str = "TCP") -> dict:
        """Verdict for a new connection SRC -> DST:PORT (pods as ns/name, or IPs)."""
        sp, sip = self._endpoint(src)
        dp, dip = self._endpoint(dst)
        if sp is not None and sp is dp:
            # a pod reaching its own IP never leaves its network namespace:
            # no policy can see it (upstream e2e: "loopback follows no policy")
            return {"src": src, "dst": dst, "port": port, "protocol": protocol, "allowed": True,
                    "verdict": f"allowed: {sp.ref} connecting to itself never leaves its network "
                               "namespace; NetworkPolicy does not apply", "steps": []}
        steps = []
        if sp is not None:
            steps.append(("egress", self._check("egress", sp, dip, dp, protocol, port, dp)))
        if dp is not None:
            steps.append(("ingress", self._check("ingress", dp, sip, sp, protocol, port, dp)))
        denied = next((v for _, v in steps if not v.allowed), None)
        final = denied or next((v for _, v in reversed(steps) if v.policy), None) or \
            Verdict(True, "allowed: no NetworkPolicy isolates either end")
        return {"src": src, "dst": dst, "port": port, "protocol": protocol,
                "allowed": denied is None, "verdict": final.reason,
                "steps": [{"direction": d, **v.to_dict()} for d, v in steps]}

    def _endpoint(self, ref: str) -> tuple[PodInfo | None, str]:
        if ref in self.pods:
            p = self.pods[ref]
            return p, p.ip
        try:
            ipaddress.ip_address(ref)
        except ValueError:
            raise PolicyError(f"{ref!r} is neither a known pod (ns/name) nor an IP address") from None
        return self.by_ip.get(ref), ref


def peer_ident(namespace: str, peer: dict) -> str:
    """The ident of a selector peer (see ``Peer``): its selectors, and the
    policy's namespace unless a namespaceSelector makes it irrelevant."""
    nss = peer.get("namespaceSelector")
    return _canonical(["pods", namespace if nss is None else None, peer.get("podSelector"), nss])


def _sel_text(sel: dict | None) -> str:
    if not sel:
        return "{}"
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        vals = ",".join(str(v) for v in e.get("values") or [])
        parts.append(f"{e['key']} {e['operator']}" + (f" ({vals})" if vals else ""))
    return "{" + ", ".join(parts) + "}"


def _rule_dict(r: Rule) -> dict:
    return {"rule": r.name, "peers": "all" if r.peers is None else [p.text for p in r.peers],
            "ports": [p.text() for p in r.ports] or ["all"]}
