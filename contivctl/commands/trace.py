"""``contivctl trace pod-to-pod | pod-to-service``: one real probe and the
path it took, node by node, in Kubernetes terms (docs/cli.md, "trace").

The command arms a trace on every node it can reach (a lab's every node; on
a real node, that node), has the source pod's agent send the probe, collects
what each node saw and stitches one path (:mod:`contivctl.tracepath`). A
trace is always collected again, also when the probe fails, so nothing is
left armed. Exit status: 0 when the probe reached its destination, 1 when
it did not (the path says where it stopped), the usual error statuses else.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import typer

from contivctl.context import LAB, ctx, lab_name, new_app
from contivctl.output import Node, render, tree

app = new_app(no_args_is_help=True, help="Send one probe and show the path it took through the data plane.")

FORMATS = ("tree", "json", "yaml")
PORT = typer.Option(None, "--port", "-p", min=1, max=65535, help="Destination port (pod-to-pod: required "
                                                                 "for TCP and UDP).")
PROTOCOL = typer.Option("TCP", "--protocol", help="TCP | UDP | ICMP.", case_sensitive=False)
TIMEOUT = typer.Option(1.0, "--timeout", min=0.05, max=30.0, help="Seconds to wait for the answer.")
OUT = typer.Option("tree", "--output", "-o", help="tree | json | yaml", case_sensitive=False)


@app.command("pod-to-pod")
def pod_to_pod(src: str = typer.Argument(..., help="Source pod, ns/name."),
               dst: str = typer.Argument(..., help="Destination pod, ns/name."),
               port: int = PORT, protocol: str = PROTOCOL, timeout: float = TIMEOUT,
               lab: str = LAB, output: str = OUT) -> None:
    """Trace one probe from pod SRC to pod DST (TCP SYN, UDP datagram or ICMP echo)."""
    fmt, proto = _checked(output, protocol)
    first = ctx.target(lab, None)
    s, d = _pod(first, src), _pod(first, dst)
    if proto != "ICMP" and port is None:
        from agent.errors import InvalidInput  # noqa: PLC0415
        raise InvalidInput(f"a {proto} trace needs the destination port: --port P")
    explain = None
    if proto != "ICMP":
        ex = first.explain(src, dst, port, proto)
        explain = {"allowed": ex.allowed, "verdict": ex.verdict}
    _trace(lab, s, {"kind": "pod", "name": dst, "ip": d.ip, "node": d.node}, proto, d.ip, port or 0,
           timeout, fmt, explain)


@app.command("pod-to-service")
def pod_to_service(src: str = typer.Argument(..., help="Source pod, ns/name."),
                   service: str = typer.Argument(..., help="The Service, ns/name."),
                   port: int = PORT, protocol: str = typer.Option(None, "--protocol",
                                                                  help="TCP | UDP (default: the port's)."),
                   timeout: float = TIMEOUT, lab: str = LAB, output: str = OUT) -> None:
    """Trace one probe from pod SRC to a Service's cluster IP (its first port, or --port)."""
    from agent.errors import InvalidInput, NotFound  # noqa: PLC0415
    fmt, proto = _checked(output, protocol or "TCP")
    first = ctx.target(lab, None)
    s = _pod(first, src)
    ns, _, name = service.partition("/")
    if not ns or not name:
        raise InvalidInput(f"Service {service!r}: give it as NAMESPACE/NAME")
    found = first.services(namespace=ns, name=name).services
    if not found:
        raise NotFound(f"no Service {service}", hint="`contivctl services` lists them")
    svc = found[0]
    if not svc.cluster_ip or svc.cluster_ip == "None":
        raise InvalidInput(f"Service {service} has no cluster IP (headless): trace a pod instead")
    ports = [p for p in svc.ports for f in p.frontends
             if f.kind == "cluster-ip" and (port is None or f.port == port)
             and (protocol is None or p.protocol.upper() == proto)]
    if not ports:
        raise InvalidInput(f"Service {service} has no {'port ' + str(port) if port else proto + ' port'}",
                           hint="ports: " + ", ".join(f"{f.port}/{p.protocol}" for p in svc.ports
                                                      for f in p.frontends if f.kind == "cluster-ip"))
    sp = ports[0]
    fport = next(f.port for f in sp.frontends if f.kind == "cluster-ip" and (port is None or f.port == port))
    _trace(lab, s, {"kind": "service", "name": service, "ip": svc.cluster_ip, "port_name": sp.name},
           sp.protocol.upper(), svc.cluster_ip, fport, timeout, fmt, None)


def _checked(output: str, protocol: str) -> tuple[str, str]:
    from agent.errors import InvalidInput  # noqa: PLC0415
    fmt, proto = output.lower(), protocol.upper()
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown output format {output!r}; use one of {', '.join(FORMATS)}")
    if proto not in ("TCP", "UDP", "ICMP"):
        raise InvalidInput(f"protocol {protocol!r} is not TCP, UDP or ICMP")
    return fmt, proto


def _pod(api, ref: str):
    """The cluster's record of pod ``ref`` (its IP and node), as the agent knows it."""
    from agent.errors import InvalidInput, NotFound  # noqa: PLC0415
    ns, _, name = ref.partition("/")
    if not ns or not name or "/" in name:
        raise InvalidInput(f"pod {ref!r}: give it as NAMESPACE/NAME")
    found = [p for p in api.policies(namespace=ns, pod=name).pods if p.pod == ref]
    if not found:
        import difflib  # noqa: PLC0415
        known = [p.pod for p in api.policies().pods]
        close = difflib.get_close_matches(ref, known, n=1)
        raise NotFound(f"no pod {ref} with an address", hint=f"did you mean {close[0]}?" if close else None)
    return found[0]


def _sport() -> int:
    """The probe's source port (ICMP: echo id): above Linux's ephemeral range
    (32768-60999), so no connection of the pod's own holds it."""
    import os  # noqa: PLC0415
    return 61000 + int.from_bytes(os.urandom(2), "big") % 4000


def _trace(lab, src, dst: dict, proto: str, ip: str, port: int, timeout: float, fmt: str,
           explain: dict | None) -> None:
    from agent.errors import ContivError, NotFound, Unavailable  # noqa: PLC0415
    from contivctl.tracepath import stitch  # noqa: PLC0415
    t0 = time.perf_counter()
    nodes = ctx.targets(lab, None)
    src_api = dict(nodes).get(src.node) if lab_name(lab) else nodes[0][1]
    if src_api is None:
        raise NotFound(f"pod {src.pod} runs on node {src.node or '(not scheduled)'}, not in this lab")
    sport = _sport()
    flow = {"protocol": proto, "src": src.ip, "sport": sport, "dst": ip, "dport": port}
    src_name = src.node if lab_name(lab) else nodes[0][0]
    unreached: dict[str, str] = {}  # node -> why it is not in the path

    def arm(node):
        try:
            return node[0], node[1], node[1].trace_start(**flow).id
        except ContivError as e:  # that node is left out; the others still trace
            unreached[node[0]] = e.message
            return node[0], node[1], None

    def collect(armed):
        try:
            return armed[1].trace_collect(armed[2]).to_dict()
        except ContivError as e:
            unreached[armed[0]] = e.message
            return None

    with ThreadPoolExecutor(len(nodes)) as pool:
        armed = [a for a in pool.map(arm, nodes) if a[2] is not None]
        try:
            if src_name in unreached:
                raise Unavailable(f"cannot trace on node {src_name}, where {src.pod} runs: "
                                  f"{unreached[src_name]}")
            probe = src_api.trace_probe(src.pod, proto, sport, ip, port, int(timeout * 1000)).to_dict()
        finally:  # always: nothing stays armed
            segments = [x for x in pool.map(collect, armed) if x is not None]
    path = stitch(segments, src.node)
    data = {"flow": flow, "src": {"pod": src.pod, "ip": src.ip, "node": src.node}, "dst": dst,
            "probe": {k: probe[k] for k in ("answered", "error", "ms")}, **path,
            "ms": round((time.perf_counter() - t0) * 1000, 1)}
    if explain is not None:
        data["explain"] = explain
    if unreached:
        data["unreached"] = [{"node": n, "error": why} for n, why in sorted(unreached.items())]
    if fmt in ("json", "yaml"):
        render(data, fmt)
    else:
        tree([_tree(data)])
    if data["verdict"] != "delivered":
        raise typer.Exit(1)


_VERDICT_STYLE = {"delivered": "green", "dropped": "red", "lost": "yellow", "not seen": "yellow"}


def _tree(d: dict) -> Node:
    f, dst = d["flow"], d["dst"]
    target = f"{dst['kind']} {dst['name']} ({f['dst']}{':' + str(f['dport']) if f['dport'] else ''})"
    root = Node(f"{f['protocol']} {d['src']['pod']} ({f['src']}:{f['sport']}) -> {target}: ",
                (d["verdict"], _VERDICT_STYLE.get(d["verdict"], "")), f"  {d['reason']}")
    probe = d["probe"]
    root.add("probe: ", ("answered" if probe["answered"] else probe["error"],
                         "green" if probe["answered"] else "yellow"), f" in {probe['ms']:.1f} ms")
    if "explain" in d:
        root.add("policies explain: ", d["explain"]["verdict"])
    for u in d.get("unreached", ()):
        root.add((f"{u['node']}: not traced ({u['error']})", "yellow"))
    branch = None
    key = None
    for group in _runs(d["path"]):
        h = group[0]
        if (h["node"], h["direction"]) != key:
            key = (h["node"], h["direction"])
            branch = root.add((f"{h['node']}", "bold"), f" ({h['direction']})")
        names = " -> ".join(x["name"] for x in group)
        if h["kind"] == "step":  # the data plane's own nodes between the labelled hops
            branch.add(("·", "dim"), (f"        {names}", "dim"))
            continue
        style = "red" if h.get("verdict") == "drop" or h["kind"] == "drop" else ""
        n = branch.add((f"{h['kind']:<8}", style or "cyan"), f" {h.get('label') or h.get('text') or ''}")
        text = h.get("text", "") if h.get("label") else ""
        iface = h.get("interface", "")
        detail = ", ".join(x for x in (names, text, iface if iface not in text else "") if x)
        n.add((detail, "dim"))
    return root


def _runs(path: list[dict]) -> list[list[dict]]:
    """Hops in runs to print as one line: consecutive unlabelled steps, and
    consecutive hops saying the same (VPP's ip4-lookup and ip4-rewrite)."""
    out: list[list[dict]] = []
    for h in path:
        prev = out[-1][-1] if out else None
        same = prev is not None and (prev["node"], prev["direction"], prev["kind"]) == \
            (h["node"], h["direction"], h["kind"]) and \
            (h["kind"] == "step" or (prev.get("label"), prev.get("text")) == (h.get("label"), h.get("text")))
        if same:
            out[-1].append(h)
        else:
            out.append([h])
    return out


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="trace")
