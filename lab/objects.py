"""Kubernetes objects the lab accepts, validated as the API server would.

Supported: v1 Namespace, v1 Pod, v1 Service, networking.k8s.io/v1
NetworkPolicy. :func:`load_documents` parses multi-document YAML; each object
is checked by its kind's validator and normalised (defaults filled in), so
the agents only ever see what a real API server would have admitted. Every
error names the object and the field.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

from agent.errors import InvalidInput
from agent.model import names

SUPPORTED = {("v1", "Namespace"), ("v1", "Pod"), ("v1", "Service"),
             ("networking.k8s.io/v1", "NetworkPolicy")}
PROTOCOLS = ("TCP", "UDP", "SCTP")
NODEPORT_RANGE = (30000, 32767)
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class ObjectError(InvalidInput):
    pass


def _err(obj_ref: str, field: str, msg: str) -> ObjectError:
    return ObjectError(f"{obj_ref}: {field}: {msg}")


def ref(obj: dict) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    name = md.get("name", "?")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"


def load_documents(text: str, source: str = "input") -> list[dict]:
    """Parse multi-document YAML into validated, normalised objects."""
    import yaml  # noqa: PLC0415
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        # str(e) spans several lines (context, an excerpt, a caret); the CLI
        # promises one line: where, and what the parser expected.
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidInput(f"{source} is not valid YAML: {where}{what}") from None
    out = []
    for i, d in enumerate(docs):
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            out.extend(validate(x, f"{source}[{i}]") for x in d["items"])
        else:
            out.append(validate(d, f"{source}[{i}]"))
    return out


def validate(obj: Any, where: str = "object") -> dict:
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: a Kubernetes object must be a mapping")
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in SUPPORTED:
        raise InvalidInput(f"{where}: {obj.get('apiVersion')}/{obj.get('kind')} is not a supported "
                           "kind", hint="supported: " + ", ".join(f"{a}/{k}" for a, k in sorted(SUPPORTED)))
    md = obj.get("metadata")
    if not isinstance(md, dict) or not md.get("name"):
        raise InvalidInput(f"{where}: {key[1]} has no metadata.name")
    obj = dict(obj)
    md = dict(md)
    obj["metadata"] = md
    if key[1] != "Namespace":
        md.setdefault("namespace", "default")
        names.check_namespace(str(md["namespace"]))
    try:
        if key[1] == "Namespace":
            names.check_dns_label(md["name"], "Namespace name")
        elif key[1] == "Service":
            names.check_dns_label(md["name"], "Service name")
        else:
            names.check_object_name(md["name"], f"{key[1]} name")
    except InvalidInput as e:
        raise ObjectError(f"{where}: {e.message}") from None
    _labels(md.get("labels"), ref(obj), "metadata.labels")
    if md.get("annotations") is not None and not isinstance(md["annotations"], dict):
        raise _err(ref(obj), "metadata.annotations", "must be a mapping")
    return {"Namespace": _namespace, "Pod": _pod, "Service": _service,
            "NetworkPolicy": _policy}[key[1]](obj)


def _labels(labels: Any, r: str, field: str) -> dict:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise _err(r, field, "must be a mapping")
    for k, v in labels.items():
        try:
            names.check_label_key(str(k))
            names.check_label_value("" if v is None else str(v))
        except InvalidInput as e:
            raise _err(r, field, e.message) from None
    return labels


def _int(v: Any, r: str, field: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _err(r, field, f"must be an integer in {lo}..{hi}, not {v!r}")
    return v


def _protocol(v: Any, r: str, field: str) -> str:
    p = "TCP" if v is None else v
    if p not in PROTOCOLS:
        raise _err(r, field, f"protocol {v!r} is not one of {', '.join(PROTOCOLS)}")
    return p


def _port_name(v: Any, r: str, field: str) -> str:
    if not isinstance(v, str) or len(v) > 15 or not _PORT_NAME.fullmatch(v) or not re.search("[a-z]", v) \
            or "--" in v:
        raise _err(r, field, f"{v!r} is not a valid port name (IANA_SVC_NAME: ≤ 15 lower-case "
                             "letters, digits and '-', at least one letter)")
    return v


def _namespace(obj: dict) -> dict:
    obj.setdefault("spec", {})
    return obj


def _pod(obj: dict) -> dict:
    r = ref(obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise _err(r, "spec", "is required")
    spec = dict(spec)
    obj["spec"] = spec
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise _err(r, "spec.containers", "needs at least one container")
    seen: dict[tuple[int, str], str] = {}
    port_names: set[str] = set()
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name"):
            raise _err(r, f"spec.containers[{i}].name", "is required")
        for j, p in enumerate(c.get("ports") or []):
            f = f"spec.containers[{i}].ports[{j}]"
            if not isinstance(p, dict):
                raise _err(r, f, "must be a mapping")
            port = _int(p.get("containerPort"), r, f + ".containerPort", 1, 65535)
            proto = _protocol(p.get("protocol"), r, f + ".protocol")
            p["protocol"] = proto
            if (port, proto) in seen:
                raise _err(r, f, f"port conflict: {proto}/{port} is already declared by "
                                 f"{seen[(port, proto)]}")
            seen[(port, proto)] = f"container {c['name']}"
            if "name" in p:
                _port_name(p["name"], r, f + ".name")
                if p["name"] in port_names:
                    raise _err(r, f + ".name", f"duplicate port name {p['name']!r}")
                port_names.add(p["name"])
    node = spec.get("nodeName")
    if node is not None and not isinstance(node, str):
        raise _err(r, "spec.nodeName", "must be a string")
    return obj


def container_ports(pod: dict) -> list[dict]:
    """Every declared port of a (validated) pod: [{name, containerPort, protocol}]."""
    return [p for c in pod["spec"]["containers"] for p in (c.get("ports") or [])]


def _service(obj: dict) -> dict:
    r = ref(obj)
    spec = dict(obj.get("spec") or {})
    obj["spec"] = spec
    typ = spec.setdefault("type", "ClusterIP")
    if typ not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise _err(r, "spec.type", f"{typ!r} is not supported (ClusterIP, NodePort, LoadBalancer)")
    if spec.get("selector") is not None:
        _labels(spec["selector"], r, "spec.selector")
    ports = spec.get("ports")
    headless = spec.get("clusterIP") == "None"
    if not isinstance(ports, list) or (not ports and not headless):
        raise _err(r, "spec.ports", "needs at least one port")
    seen, names_seen = set(), set()
    for i, p in enumerate(ports):
        f = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            raise _err(r, f, "must be a mapping")
        p["port"] = _int(p.get("port"), r, f + ".port", 1, 65535)
        p["protocol"] = _protocol(p.get("protocol"), r, f + ".protocol")
        if len(ports) > 1 and not p.get("name"):
            raise _err(r, f + ".name", "is required when a Service has several ports")
        if p.get("name"):
            _port_name(p["name"], r, f + ".name")
            if p["name"] in names_seen:
                raise _err(r, f + ".name", f"duplicate port name {p['name']!r}")
            names_seen.add(p["name"])
        if (p["port"], p["protocol"]) in seen:
            raise _err(r, f, f"duplicate {p['protocol']}/{p['port']}")
        seen.add((p["port"], p["protocol"]))
        tp = p.setdefault("targetPort", p["port"])
        if isinstance(tp, str) and not tp.isdigit():
            _port_name(tp, r, f + ".targetPort")
        else:
            p["targetPort"] = _int(int(tp) if isinstance(tp, str) else tp, r, f + ".targetPort", 1, 65535)
        if "nodePort" in p:
            if typ == "ClusterIP":
                raise _err(r, f + ".nodePort", "may not be set on a ClusterIP Service")
            _int(p["nodePort"], r, f + ".nodePort", *NODEPORT_RANGE)
    ip = spec.get("clusterIP")
    if ip not in (None, "", "None"):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _err(r, "spec.clusterIP", f"{ip!r} is not an IP address or 'None'") from None
    if headless and typ != "ClusterIP":
        raise _err(r, "spec.clusterIP", "None (headless) requires type ClusterIP")
    aff = spec.setdefault("sessionAffinity", "None")
    if aff not in ("None", "ClientIP"):
        raise _err(r, "spec.sessionAffinity", f"{aff!r} is not None or ClientIP")
    if aff == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        t = cfg.get("timeoutSeconds", 10800)
        _int(t, r, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", 1, 86400)
    etp = spec.get("externalTrafficPolicy")
    if etp is not None:
        if etp not in ("Cluster", "Local"):
            raise _err(r, "spec.externalTrafficPolicy", f"{etp!r} is not Cluster or Local")
        if typ == "ClusterIP":
            raise _err(r, "spec.externalTrafficPolicy", "only applies to NodePort and LoadBalancer")
    elif typ != "ClusterIP":
        spec["externalTrafficPolicy"] = "Cluster"
    itp = spec.setdefault("internalTrafficPolicy", "Cluster")
    if itp not in ("Cluster", "Local"):
        raise _err(r, "spec.internalTrafficPolicy", f"{itp!r} is not Cluster or Local")
    for i, e in enumerate(spec.get("externalIPs") or []):
        try:
            ipaddress.ip_address(e)
        except ValueError:
            raise _err(r, f"spec.externalIPs[{i}]", f"{e!r} is not an IP address") from None
    return obj


def _selector(sel: Any, r: str, field: str) -> dict:
    if sel is None:
        raise _err(r, field, "is required")
    if not isinstance(sel, dict):
        raise _err(r, field, "must be a mapping")
    unknown = set(sel) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise _err(r, field, f"unknown field(s) {', '.join(sorted(unknown))}")
    _labels(sel.get("matchLabels"), r, field + ".matchLabels")
    exprs = sel.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise _err(r, field + ".matchExpressions", "must be a list")
    for i, e in enumerate(exprs):
        f = f"{field}.matchExpressions[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            raise _err(r, f, "needs a key")
        try:
            names.check_label_key(e["key"])
        except InvalidInput as ex:
            raise _err(r, f + ".key", ex.message) from None
        op = e.get("operator")
        vals = e.get("values")
        if op in ("In", "NotIn"):
            if not isinstance(vals, list) or not vals:
                raise _err(r, f + ".values", f"must be non-empty for operator {op}")
            for v in vals:
                try:
                    names.check_label_value(str(v))
                except InvalidInput as ex:
                    raise _err(r, f + ".values", ex.message) from None
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                raise _err(r, f + ".values", f"must be empty for operator {op}")
        else:
            raise _err(r, f + ".operator", f"{op!r} is not In, NotIn, Exists or DoesNotExist")
    return sel


def _peers(peers: Any, r: str, field: str) -> None:
    if peers is None:
        return
    if not isinstance(peers, list):
        raise _err(r, field, "must be a list")
    for i, p in enumerate(peers):
        f = f"{field}[{i}]"
        if not isinstance(p, dict) or not p:
            raise _err(r, f, "must set podSelector, namespaceSelector or ipBlock")
        unknown = set(p) - {"podSelector", "namespaceSelector", "ipBlock"}
        if unknown:
            raise _err(r, f, f"unknown field(s) {', '.join(sorted(unknown))}")
        if "ipBlock" in p:
            if len(p) > 1:
                raise _err(r, f, "ipBlock may not be combined with selectors")
            blk = p["ipBlock"]
            if not isinstance(blk, dict) or "cidr" not in blk:
                raise _err(r, f + ".ipBlock.cidr", "is required")
            try:
                net = ipaddress.ip_network(str(blk["cidr"]), strict=False)
            except ValueError as e:
                raise _err(r, f + ".ipBlock.cidr", str(e)) from None
            for j, ex in enumerate(blk.get("except") or []):
                try:
                    exn = ipaddress.ip_network(str(ex), strict=False)
                except ValueError as e:
                    raise _err(r, f"{f}.ipBlock.except[{j}]", str(e)) from None
                if exn.version != net.version or not exn.subnet_of(net) or exn == net:
                    raise _err(r, f"{f}.ipBlock.except[{j}]", f"{ex} must be strictly inside {net}")
        for sel in ("podSelector", "namespaceSelector"):
            if sel in p:
                _selector(p[sel], r, f"{f}.{sel}")


def _policy_ports(ports: Any, r: str, field: str) -> None:
    if ports is None:
        return
    if not isinstance(ports, list):
        raise _err(r, field, "must be a list")
    for i, p in enumerate(ports):
        f = f"{field}[{i}]"
        if not isinstance(p, dict):
            raise _err(r, f, "must be a mapping")
        p["protocol"] = _protocol(p.get("protocol"), r, f + ".protocol")
        port = p.get("port")
        if isinstance(port, str) and not port.isdigit():
            _port_name(port, r, f + ".port")
            if "endPort" in p:
                raise _err(r, f + ".endPort", "may not be used with a named port")
        elif port is not None:
            port = _int(int(port) if isinstance(port, str) else port, r, f + ".port", 1, 65535)
            p["port"] = port
            if "endPort" in p:
                _int(p["endPort"], r, f + ".endPort", port, 65535)
        elif "endPort" in p:
            raise _err(r, f + ".endPort", "requires port")


def _policy(obj: dict) -> dict:
    r = ref(obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise _err(r, "spec", "is required")
    _selector(spec.get("podSelector"), r, "spec.podSelector")
    types = spec.get("policyTypes")
    if types is not None:
        # an empty list is defaulted like an absent one (as the API server does)
        if not isinstance(types, list) or not set(types) <= {"Ingress", "Egress"} or len(types) > 2:
            raise _err(r, "spec.policyTypes", "must be a list of Ingress and/or Egress")
    for direction, peer_key in (("ingress", "from"), ("egress", "to")):
        rules = spec.get(direction)
        if rules is None:
            continue
        if not isinstance(rules, list):
            raise _err(r, f"spec.{direction}", "must be a list")
        for i, rule in enumerate(rules):
            f = f"spec.{direction}[{i}]"
            if rule is None:
                rules[i] = rule = {}
            if not isinstance(rule, dict):
                raise _err(r, f, "must be a mapping")
            unknown = set(rule) - {peer_key, "ports"}
            if unknown:
                raise _err(r, f, f"unknown field(s) {', '.join(sorted(unknown))}")
            _peers(rule.get(peer_key), r, f"{f}.{peer_key}")
            _policy_ports(rule.get("ports"), r, f"{f}.ports")
    return obj


def order_for_apply(objs: Iterable[dict]) -> list[dict]:
    """Namespaces first, then Services, Pods, NetworkPolicies (as kubectl sorts)."""
    rank = {"Namespace": 0, "Service": 1, "Pod": 2, "NetworkPolicy": 3}
    return sorted(objs, key=lambda o: rank[o["kind"]])
