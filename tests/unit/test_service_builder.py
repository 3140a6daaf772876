"""The Services builder (``agent.builders.services.build_service``), table-driven.

Each case is a Service spec, its EndpointSlices (in a compact form expanded by
:func:`slice_`), the pods that exist, and what must come out: every Service
port in a compact text form (frontends, endpoints, affinity, traffic-policy
flags) plus the problems reported, as regular expressions that must each
match exactly one problem. The comparison is exact: a frontend or an
endpoint too many fails a case as surely as one too few.

Compact forms::

    frontend  "10.96.0.10:80 cluster-ip"   "*:30080 node-port ext"
    endpoint  "10.1.1.2:8080 @node1 local default/web-a"   (pod empty: no targetRef)
"""
from __future__ import annotations

import re

import pytest
import yaml

from agent.builders.services import DEFAULT_AFFINITY_TIMEOUT, NODEPORT_RANGE, build_service

NODE = "node1"
NS = "default"


def fmt_front(f) -> str:
    return f"{f.ip or '*'}:{f.port} {f.kind}" + (" ext" if f.external else "")


def fmt_ep(e) -> str:
    return f"{e.ip}:{e.port} @{e.node}" + (" local" if e.local else "") + (f" {e.pod}" if e.pod else "")


def fmt_port(sp) -> dict:
    return {"service": sp.service, "name": sp.name, "protocol": sp.protocol,
            "frontends": [fmt_front(f) for f in sp.frontends],
            "endpoints": [fmt_ep(e) for e in sp.endpoints],
            "affinity": sp.affinity_timeout, "external_local": sp.external_local,
            "internal_local": sp.internal_local}


def service(name: str, spec: dict, status: dict | None = None) -> dict:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": NS, "name": name},
           "spec": spec}
    if status is not None:
        svc["status"] = status
    return svc


def slice_(svc_name: str, spec: dict) -> dict:
    """``{name, ports: [[name, port, proto]], endpoints: [{ip, node, pod, ready, terminating,
    serving}], addressType}`` -> an EndpointSlice as the reflector stores it."""
    eps = []
    for e in spec.get("endpoints", []):
        ep = {"addresses": e["ip"] if isinstance(e["ip"], list) else [e["ip"]]}
        if "node" in e:
            ep["nodeName"] = e["node"]
        cond = {k: e[k] for k in ("ready", "serving", "terminating") if k in e}
        if cond:
            ep["conditions"] = cond
        if e.get("pod"):
            pns, _, pname = e["pod"].rpartition("/")
            ep["targetRef"] = {"kind": "Pod", "namespace": pns or NS, "name": pname}
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": NS, "name": spec.get("name", f"{svc_name}-0"),
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": spec.get("addressType", "IPv4"),
            "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in spec.get("ports", [])],
            "endpoints": eps}


# Two pods serving "http" on 8080 and "dns" on 5353/UDP, one per node: the
# slice most cases use.
WEB_SLICE = {"ports": [["http", 8080, "TCP"]],
             "endpoints": [{"ip": "10.1.1.2", "node": "node1", "pod": "web-a"},
                           {"ip": "10.1.2.2", "node": "node2", "pod": "web-b"}]}
WEB_EPS = ["10.1.1.2:8080 @node1 local default/web-a", "10.1.2.2:8080 @node2 default/web-b"]
PODS = ["web-a", "web-b", "web-c", "web-d"]

CASES = yaml.safe_load(r"""
- id: clusterip-tcp
  spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.10:80 cluster-ip"], endpoints: WEB_EPS}

- id: clusterip-protocol-defaults-to-tcp-and-unnamed-port
  spec: {clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080}]}
  slices: [{ports: [["", 8080, TCP]], endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}]}]
  ports:
  - {name: "", protocol: TCP, frontends: ["10.96.0.10:80 cluster-ip"],
     endpoints: ["10.1.1.2:8080 @node1 local default/web-a"]}

- id: clusterip-udp
  spec: {clusterIP: 10.96.0.11, ports: [{name: dns, port: 53, targetPort: dns, protocol: UDP}]}
  slices:
  - ports: [[dns, 5353, UDP]]
    endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}, {ip: 10.1.2.2, node: node2, pod: web-b}]
  ports:
  - {name: dns, protocol: UDP, frontends: ["10.96.0.11:53 cluster-ip"],
     endpoints: ["10.1.1.2:5353 @node1 local default/web-a", "10.1.2.2:5353 @node2 default/web-b"]}

- id: clusterip-sctp
  spec: {clusterIP: 10.96.0.12, ports: [{name: sig, port: 3868, protocol: SCTP}]}
  slices: [{ports: [[sig, 3868, SCTP]], endpoints: [{ip: 10.1.2.2, node: node2, pod: web-b}]}]
  ports:
  - {name: sig, protocol: SCTP, frontends: ["10.96.0.12:3868 cluster-ip"],
     endpoints: ["10.1.2.2:3868 @node2 default/web-b"]}

- id: several-ports-each-with-its-own-endpoints
  spec:
    clusterIP: 10.96.0.13
    ports:
    - {name: http, port: 80, targetPort: http}
    - {name: dns-tcp, port: 53, targetPort: 5353, protocol: TCP}
    - {name: dns-udp, port: 53, targetPort: 5353, protocol: UDP}
  slices:
  - ports: [[http, 8080, TCP], [dns-tcp, 5353, TCP], [dns-udp, 5353, UDP]]
    endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.13:80 cluster-ip"],
     endpoints: ["10.1.1.2:8080 @node1 local default/web-a"]}
  - {name: dns-tcp, protocol: TCP, frontends: ["10.96.0.13:53 cluster-ip"],
     endpoints: ["10.1.1.2:5353 @node1 local default/web-a"]}
  - {name: dns-udp, protocol: UDP, frontends: ["10.96.0.13:53 cluster-ip"],
     endpoints: ["10.1.1.2:5353 @node1 local default/web-a"]}

- id: port-matched-by-name-and-protocol
  # the slice's "dns" is UDP: the TCP Service port of that name has no endpoint
  spec: {clusterIP: 10.96.0.14, ports: [{name: dns, port: 53, protocol: TCP}]}
  slices: [{ports: [[dns, 53, UDP]], endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}]}]
  ports:
  - {name: dns, protocol: TCP, frontends: ["10.96.0.14:53 cluster-ip"], endpoints: []}

- id: named-target-port-resolved-per-pod-through-the-slices
  # two pods name their port "http" but serve it on different numbers: the
  # endpoint controller writes one slice per mapping
  spec: {clusterIP: 10.96.0.15, ports: [{name: web, port: 80, targetPort: http}]}
  slices:
  - {name: s-0, ports: [[web, 8080, TCP]], endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}]}
  - {name: s-1, ports: [[web, 9090, TCP]], endpoints: [{ip: 10.1.2.2, node: node2, pod: web-b}]}
  ports:
  - {name: web, protocol: TCP, frontends: ["10.96.0.15:80 cluster-ip"],
     endpoints: ["10.1.1.2:8080 @node1 local default/web-a", "10.1.2.2:9090 @node2 default/web-b"]}

- id: same-endpoint-in-two-slices-counted-once
  spec: {clusterIP: 10.96.0.16, ports: [{name: http, port: 80}]}
  slices: [WEB, {name: dup, ports: [[http, 8080, TCP]], endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}]}]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.16:80 cluster-ip"], endpoints: WEB_EPS}

- id: nodeport
  spec: {type: NodePort, clusterIP: 10.96.0.20, ports: [{name: http, port: 80, nodePort: 30080}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.20:80 cluster-ip", "*:30080 node-port ext"],
     endpoints: WEB_EPS}

- id: nodeport-range-bounds-are-inclusive
  spec: {type: NodePort, clusterIP: 10.96.0.21, ports: [{name: lo, port: 80, nodePort: 30000},
                                                          {name: hi, port: 81, nodePort: 32767}]}
  slices: []
  ports:
  - {name: lo, protocol: TCP, frontends: ["10.96.0.21:80 cluster-ip", "*:30000 node-port ext"], endpoints: []}
  - {name: hi, protocol: TCP, frontends: ["10.96.0.21:81 cluster-ip", "*:32767 node-port ext"], endpoints: []}

- id: external-ips-on-a-clusterip-service
  spec: {clusterIP: 10.96.0.22, externalIPs: [203.0.113.7, 203.0.113.8],
         ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP,
     frontends: ["10.96.0.22:80 cluster-ip", "203.0.113.7:80 external-ip ext", "203.0.113.8:80 external-ip ext"],
     endpoints: WEB_EPS}

- id: loadbalancer-ingress-ips-are-external-frontends
  spec: {type: LoadBalancer, clusterIP: 10.96.0.23, externalIPs: [203.0.113.7],
         ports: [{name: http, port: 80, nodePort: 30081}]}
  status: {loadBalancer: {ingress: [{ip: 198.51.100.1}, {hostname: lb.example.com}, {ip: 203.0.113.7}]}}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP,
     frontends: ["10.96.0.23:80 cluster-ip", "*:30081 node-port ext", "203.0.113.7:80 external-ip ext",
                 "198.51.100.1:80 load-balancer ext"],
     endpoints: WEB_EPS}

- id: loadbalancer-ingress-ignored-on-other-types
  spec: {type: NodePort, clusterIP: 10.96.0.24, ports: [{name: http, port: 80, nodePort: 30082}]}
  status: {loadBalancer: {ingress: [{ip: 198.51.100.1}]}}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.24:80 cluster-ip", "*:30082 node-port ext"],
     endpoints: WEB_EPS}

- id: headless-has-no-frontend-and-no-problem
  spec: {clusterIP: None, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []

- id: external-name-renders-nothing
  spec: {type: ExternalName, externalName: example.com}
  slices: []
  ports: []

- id: session-affinity-default-timeout
  spec: {clusterIP: 10.96.0.30, sessionAffinity: ClientIP, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.30:80 cluster-ip"], endpoints: WEB_EPS,
     affinity: DEFAULT_AFFINITY}

- id: session-affinity-config-without-timeout-uses-default
  spec: {clusterIP: 10.96.0.31, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {}},
         ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.31:80 cluster-ip"], endpoints: WEB_EPS,
     affinity: DEFAULT_AFFINITY}

- id: session-affinity-custom-timeout
  spec: {clusterIP: 10.96.0.32, sessionAffinity: ClientIP,
         sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.32:80 cluster-ip"], endpoints: WEB_EPS, affinity: 60}

- id: session-affinity-none-ignores-config
  spec: {clusterIP: 10.96.0.33, sessionAffinity: None,
         sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.33:80 cluster-ip"], endpoints: WEB_EPS}

- id: external-traffic-policy-local
  spec: {type: NodePort, clusterIP: 10.96.0.40, externalTrafficPolicy: Local,
         ports: [{name: http, port: 80, nodePort: 30090}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.40:80 cluster-ip", "*:30090 node-port ext"],
     endpoints: WEB_EPS, external_local: true}

- id: external-traffic-policy-local-means-nothing-without-external-frontends-kind
  spec: {clusterIP: 10.96.0.41, externalTrafficPolicy: Local, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.41:80 cluster-ip"], endpoints: WEB_EPS}

- id: internal-traffic-policy-local
  spec: {clusterIP: 10.96.0.42, internalTrafficPolicy: Local, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.42:80 cluster-ip"], endpoints: WEB_EPS,
     internal_local: true}

- id: both-policies-local
  spec: {type: LoadBalancer, clusterIP: 10.96.0.43, externalTrafficPolicy: Local,
         internalTrafficPolicy: Local, ports: [{name: http, port: 80, nodePort: 30091}]}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.43:80 cluster-ip", "*:30091 node-port ext"],
     endpoints: WEB_EPS, external_local: true, internal_local: true}

- id: endpoint-conditions
  spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80}]}
  slices:
  - ports: [[http, 8080, TCP]]
    endpoints:
    - {ip: 10.1.1.2, node: node1, pod: web-a}                                 # no conditions: ready
    - {ip: 10.1.1.3, node: node1, pod: web-b, ready: false}                   # not ready
    - {ip: 10.1.1.4, node: node1, pod: web-c, ready: true, terminating: true} # terminating
    - {ip: 10.1.1.5, node: node2, pod: web-d, ready: true, serving: true, terminating: false}
    - {ip: 10.1.1.6, node: node2, serving: true, ready: false, terminating: true}
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.50:80 cluster-ip"],
     endpoints: ["10.1.1.2:8080 @node1 local default/web-a", "10.1.1.5:8080 @node2 default/web-d"]}

- id: endpoints-without-target-pod-and-without-node
  # selector-less Services: hand-made slices, no targetRef; no nodeName is not local
  spec: {clusterIP: 10.96.0.51, ports: [{name: http, port: 80}]}
  slices:
  - ports: [[http, 8080, TCP]]
    endpoints: [{ip: 192.0.2.10}, {ip: 192.0.2.11, node: node1}]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.51:80 cluster-ip"],
     endpoints: ["192.0.2.10:8080 @", "192.0.2.11:8080 @node1 local"]}

- id: unknown-pod-skipped-and-reported
  spec: {clusterIP: 10.96.0.52, ports: [{name: http, port: 80}]}
  slices:
  - name: web-0
    ports: [[http, 8080, TCP]]
    endpoints: [{ip: 10.1.1.2, node: node1, pod: web-a}, {ip: 10.1.1.9, node: node1, pod: ghost},
                {ip: 10.1.1.8, node: node1, pod: other/web-a}]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.52:80 cluster-ip"],
     endpoints: ["10.1.1.2:8080 @node1 local default/web-a"]}
  problems:
  - 'endpointslice default/web-0: endpoint \[.10\.1\.1\.9.\] points to unknown pod default/ghost'
  - 'unknown pod other/web-a'

- id: ipv6-slices-ignored
  spec: {clusterIP: 10.96.0.53, ports: [{name: http, port: 80}]}
  slices:
  - WEB
  - {name: v6, addressType: IPv6, ports: [[http, 8080, TCP]], endpoints: [{ip: "fd00::2", node: node1, pod: web-c}]}
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.53:80 cluster-ip"], endpoints: WEB_EPS}

- id: invalid-port-skipped-other-ports-build
  spec:
    clusterIP: 10.96.0.60
    ports:
    - {name: zero, port: 0}
    - {name: big, port: 65536}
    - {name: text, port: "80"}
    - {name: flag, port: true}
    - {name: icmp, port: 81, protocol: ICMP}
    - {name: http, port: 80}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.60:80 cluster-ip"], endpoints: WEB_EPS}
  problems:
  - 'service default/svc: port #0 \(0/TCP\) is invalid'
  - 'port #1 \(65536/TCP\) is invalid'
  - "port #2 \\('80'/TCP\\) is invalid"
  - 'port #3 \(True/TCP\) is invalid'
  - 'port #4 \(81/ICMP\) is invalid'

- id: invalid-target-port-skipped-other-ports-build
  spec:
    clusterIP: 10.96.0.61
    ports:
    - {name: zero, port: 81, targetPort: 0}
    - {name: big, port: 82, targetPort: 70000}
    - {name: empty, port: 83, targetPort: ""}
    - {name: long, port: 84, targetPort: sixteen-chars-xx}
    - {name: http, port: 80, targetPort: http}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.61:80 cluster-ip"], endpoints: WEB_EPS}
  problems:
  - 'port zero: targetPort 0 is invalid'
  - 'port big: targetPort 70000 is invalid'
  - "port empty: targetPort '' is invalid"
  - "port long: targetPort 'sixteen-chars-xx' is invalid"

- id: node-port-outside-range-skipped-other-ports-build
  spec:
    type: NodePort
    clusterIP: 10.96.0.62
    ports:
    - {name: low, port: 81, nodePort: 29999}
    - {name: high, port: 82, nodePort: 32768}
    - {name: bad, port: 83, nodePort: 0}
    - {name: http, port: 80, nodePort: 30100}
  slices: [WEB]
  ports:
  - {name: http, protocol: TCP, frontends: ["10.96.0.62:80 cluster-ip", "*:30100 node-port ext"],
     endpoints: WEB_EPS}
  problems:
  - 'nodePort 29999 is outside 30000-32767'
  - 'nodePort 32768 is outside 30000-32767'
  - 'nodePort 0 is outside 30000-32767'

- id: bad-cluster-ip-renders-nothing
  spec: {clusterIP: 10.96.0.999, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ["clusterIP '10.96.0.999' is not an address"]

- id: cluster-ip-with-a-leading-zero-renders-nothing
  spec: {clusterIP: "10.96.0.07", ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ["clusterIP '10.96.0.07' is not an address"]

- id: external-ip-with-a-nul-renders-nothing
  spec: {clusterIP: 10.96.0.68, externalIPs: ["198.51.100.1\0"], ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ["external IP '198[.]51[.]100[.]1.x00' is not an IPv4 address"]

- id: cluster-ip-that-is-a-number-is-not-an-address
  spec: {clusterIP: 5, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ["clusterIP 5 is not an address"]

- id: ipv6-cluster-ip-reported
  spec: {clusterIP: "fd00:10:96::1", ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ['IPv6 cluster IP fd00:10:96::1 is not supported']

- id: bad-external-ip-renders-nothing
  spec: {clusterIP: 10.96.0.63, externalIPs: [not-an-ip], ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ["external IP 'not-an-ip' is not an IPv4 address"]

- id: external-ip-that-is-not-a-string
  spec: {clusterIP: 10.96.0.66, externalIPs: [167772161], ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ["external IP 167772161 is not an IPv4 address"]

- id: bad-loadbalancer-ingress-ip
  spec: {type: LoadBalancer, clusterIP: 10.96.0.67, ports: [{name: http, port: 80, nodePort: 30101}]}
  status: {loadBalancer: {ingress: [{ip: 198.51.100.300}]}}
  slices: [WEB]
  ports: []
  problems: ["external IP '198.51.100.300' is not an IPv4 address"]

- id: bad-affinity-timeout-renders-nothing
  spec: {clusterIP: 10.96.0.64, sessionAffinity: ClientIP,
         sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ['sessionAffinity timeout 0 is invalid']

- id: affinity-timeout-above-a-day-rejected
  spec: {clusterIP: 10.96.0.65, sessionAffinity: ClientIP,
         sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}, ports: [{name: http, port: 80}]}
  slices: [WEB]
  ports: []
  problems: ['sessionAffinity timeout 86401 is invalid']
""")


def _expand(case: dict) -> tuple[dict, list[dict], list[dict]]:
    svc = service("svc", case["spec"], case.get("status"))
    slices = [slice_("svc", WEB_SLICE if s == "WEB" else s) for s in case["slices"]]
    want = []
    for p in case["ports"]:
        want.append({"service": f"{NS}/svc", "name": p["name"], "protocol": p["protocol"],
                     "frontends": p["frontends"],
                     "endpoints": WEB_EPS if p["endpoints"] == "WEB_EPS" else p["endpoints"],
                     "affinity": DEFAULT_AFFINITY_TIMEOUT if p.get("affinity") == "DEFAULT_AFFINITY"
                     else p.get("affinity", 0),
                     "external_local": p.get("external_local", False),
                     "internal_local": p.get("internal_local", False)})
    return svc, slices, want


def pods(*refs: str) -> dict:
    out = {}
    for r in refs:
        ns, _, name = r.rpartition("/")
        out[(ns or NS, name)] = {"metadata": {"namespace": ns or NS, "name": name}}
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_build_service(case):
    svc, slices, want = _expand(case)
    res = build_service(svc, slices, pods(*PODS), NODE)
    assert [fmt_port(p) for p in res.ports] == want
    patterns = case.get("problems", [])
    assert len(res.problems) == len(patterns), res.problems
    for pat in patterns:
        hits = [p for p in res.problems if re.search(pat, p)]
        assert len(hits) == 1, (pat, res.problems)


def test_cases_cover_every_frontend_kind_and_protocol():
    """The table itself: a kind or protocol the builder can produce but no case
    exercises would leave a hole nobody notices."""
    kinds, protocols = set(), set()
    for case in CASES:
        svc, slices, _ = _expand(case)
        for p in build_service(svc, slices, pods(*PODS), NODE).ports:
            kinds |= {f.kind for f in p.frontends}
            protocols.add(p.protocol)
    assert kinds == {"cluster-ip", "node-port", "external-ip", "load-balancer"}
    assert protocols == {"TCP", "UDP", "SCTP"}


@pytest.mark.parametrize("node,local", [("node1", ["10.1.1.2"]), ("node2", ["10.1.2.2"]),
                                        ("node3", [])])
def test_local_flag_follows_this_node(node, local):
    svc, slices, _ = _expand(next(c for c in CASES if c["id"] == "clusterip-tcp"))
    (sp,) = build_service(svc, slices, pods(*PODS), node).ports
    assert [e.ip for e in sp.local_endpoints] == local
    assert {e.node for e in sp.endpoints} == {"node1", "node2"}


def test_custom_node_port_range():
    svc = service("np", {"type": "NodePort", "clusterIP": "10.96.0.70",
                         "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                   {"name": "b", "port": 81, "nodePort": 40000}]})
    res = build_service(svc, [], {}, NODE, nodeport_range=(40000, 40100))
    assert [p.name for p in res.ports] == ["b"]
    assert res.problems == ["service default/np: nodePort 30080 is outside 40000-40100"]
    # the default range is the Kubernetes one
    assert NODEPORT_RANGE == (30000, 32767)


def test_unknown_pod_becomes_an_endpoint_once_the_pod_exists():
    svc, slices, _ = _expand(next(c for c in CASES if c["id"] == "unknown-pod-skipped-and-reported"))
    res = build_service(svc, slices, pods(*PODS, "ghost", "other/web-a"), NODE)
    assert res.problems == []
    assert [e.pod for e in res.ports[0].endpoints] == ["default/web-a", "other/web-a", "default/ghost"]


def test_builder_does_not_mutate_its_input():
    import copy
    svc, slices, _ = _expand(next(c for c in CASES if c["id"] == "loadbalancer-ingress-ips-are-external-frontends"))
    before = copy.deepcopy((svc, slices))
    build_service(svc, slices, pods(*PODS), NODE)
    assert (svc, slices) == before
