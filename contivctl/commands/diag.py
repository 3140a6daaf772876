"""Diagnostics: pods, nodes, ipam, services, policies (the agent's local API).

Each command makes one call to the agent (:class:`agent.api.client.AgentClient`,
the typed ``NodeAPI``) and hands the record's JSON form to the output sink;
the helpers here only shape table rows and lines from it.
"""
from __future__ import annotations

import typer

from contivctl.context import LAB, NODE, OUTPUT, check_output, ctx, new_app
from contivctl.output import Node, line, render, tree


def pods(lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Pods attached on this node: addresses, interfaces, data-plane state, CNI timing."""
    fmt = check_output(output)
    data = ctx.target(lab, node).pods().to_dict()
    rows = []
    for p in data["pods"]:
        add = p.get("timings", {}).get("add", {})
        rows.append({**p, "add_ms": add.get("total_ms"), "ipam_ms": add.get("ipam_ms"),
                     "dp_ms": add.get("dataplane_ms"), "memif": p.get("memif", "")})
    render(data, fmt, rows=rows,
           columns=[("POD", "pod"), ("IP", "ips"), ("HOST-IF", "host_if"), ("DATAPLANE", "dataplane")],
           wide=[("CONTAINER", "container_id"), ("IFNAME", "ifname"), ("NETNS", "netns"),
                 ("MEMIF", "memif"), ("ADD-MS", "add_ms"), ("IPAM-MS", "ipam_ms"), ("DP-MS", "dp_ms")])


def nodes(lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Nodes in the registry, as this node's agent sees them."""
    fmt = check_output(output)
    data = ctx.target(lab, node).nodes().to_dict()
    render(data, fmt, rows=data["nodes"],
           columns=[("NODE", "name"), ("NODE-IP", "node_ip"), ("POD-SUBNET", "pod_subnets"),
                    ("GATEWAY", "gateways")],
           wide=[("INDEX", "index"), ("VTEP-MAC", "vtep_mac"), ("DATAPLANE", "dataplane")])


def services(name: str = typer.Argument(None, help="Service name (with -n) or ns/name."),
             namespace: str = typer.Option(None, "--namespace", "-n"),
             lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Services with their virtual IPs, ports, endpoints and what the data plane holds."""
    fmt = check_output(output)
    if name and "/" in name:
        namespace, name = name.split("/", 1)
    data = ctx.target(lab, node).services(namespace=namespace, name=name).to_dict()
    render(data, fmt, rows=_service_rows(data) if fmt in ("table", "wide") else [],
           columns=[("SERVICE", "service"), ("TYPE", "type"), ("PORT", "port"),
                    ("FRONTENDS", "frontends"), ("ENDPOINTS", "endpoints"), ("DATAPLANE", "dataplane")],
           wide=[("PODS", "pods"), ("AFFINITY", "affinity"), ("TRAFFIC", "policy"), ("PROBLEMS", "problems")])


def _service_rows(data: dict) -> list[dict]:
    """One row per Service port (a Service without ports: one row)."""
    rows = []
    for s in data["services"]:
        for p in s["ports"] or [{"name": "", "protocol": "-", "frontends": [], "endpoints": []}]:
            rows.append({
                "service": s["service"], "type": s["type"],
                "frontends": [f"{f['address']}:{f['port']}" for f in p["frontends"]],
                "port": f"{p['name'] or '-'}/{p['protocol']}",
                "endpoints": [f"{e['ip']}:{e['port']}" for e in p["endpoints"]] or "none (rejects)",
                "pods": [f"{e['pod']}@{e['node']}" for e in p["endpoints"]],
                "dataplane": s["dataplane"]["state"], "affinity": s["session_affinity"],
                "policy": f"ext={s['external_traffic_policy'] or '-'} int={s['internal_traffic_policy']}",
                "problems": s["problems"]})
    return rows


def policies(args: list[str] = typer.Argument(None, metavar="[POD] | explain SRC DST",
                                             help="A pod (ns/name, or name with -n); or "
                                                  "'explain SRC DST' (pods as ns/name, or IPs)."),
             namespace: str = typer.Option(None, "--namespace", "-n"),
             port: int = typer.Option(None, "--port", min=1, max=65535, help="explain: the port."),
             protocol: str = typer.Option("TCP", "--protocol", help="explain: TCP | UDP | SCTP."),
             lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Which policies select a pod and its effective rules; or `explain`: the verdict
    for SRC -> DST:PORT computed offline from cluster state (no traffic is sent;
    exit status 0 allowed, 1 denied)."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    fmt = check_output(output)
    args = list(args or [])
    if args and args[0] == "explain":
        if len(args) != 3 or port is None:
            raise InvalidInput("usage: contivctl policies explain SRC DST --port P [--protocol X]")
        return _explain(ctx.target(lab, node), args[1], args[2], port, protocol, fmt)
    if len(args) > 1:
        raise InvalidInput("give at most one pod (or: explain SRC DST --port P)")
    pod = args[0] if args else None
    if pod and "/" in pod:
        namespace, pod = pod.split("/", 1)
    data = ctx.target(lab, node).policies(namespace=namespace, pod=pod).to_dict()
    if fmt in ("json", "yaml"):
        return render(data, fmt)
    if pod and not data["pods"]:
        raise InvalidInput(f"no pod {namespace + '/' if namespace else ''}{pod} with an address")
    tree([_policy_tree(p) for p in data["pods"]])


def _policy_tree(p: dict) -> Node:
    """A pod, its two directions, and the rules that allow traffic in each."""
    root = Node(f"{p['pod']} ({p['ip']} on {p['node']})")
    for d in ("ingress", "egress"):
        e = p[d]
        if not e["isolated"]:
            root.add(f"{d}: ", ("open", "green"), " (no policy selects it)")
            continue
        n = root.add(f"{d}: ", ("isolated", "yellow"), f" by {', '.join(e['policies'])}")
        for r in e["rules"]:
            peers = r["peers"] if r["peers"] == "all" else "; ".join(r["peers"]) or "nobody"
            n.add(("allow", "green"), f" {', '.join(r['ports'])} {'from' if d == 'ingress' else 'to'} "
                  f"{peers}   ", (f"[{r['rule']}]", "dim"))
        if not e["rules"]:
            n.add(("(no rule: everything is denied)", "red"))
        for ref, why in e["invalid"].items():
            n.add((f"! {ref} is invalid ({why}): it only isolates", "yellow"))
    return root


def _explain(api, src: str, dst: str, port: int, protocol: str, fmt: str) -> None:
    data = api.explain(src, dst, port, protocol.upper()).to_dict()
    if fmt in ("json", "yaml"):
        render(data, fmt)
    else:
        v = data["verdict"]
        line((v if v.startswith(("allowed", "denied")) else
              ("allowed: " if data["allowed"] else "denied: ") + v, "green" if data["allowed"] else "red"))
        if fmt == "wide":
            for st in data["steps"]:
                line(f"  {st['direction']}: {st['reason']}")
    if not data["allowed"]:
        raise typer.Exit(1)


ipam_app = new_app(help="Pod address management on this node.", invoke_without_command=True)


@ipam_app.callback()
def ipam(typer_ctx: typer.Context, lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Show the node subnet and its allocations."""
    if typer_ctx.invoked_subcommand:
        return
    fmt = check_output(output)
    data = ctx.target(lab, node).ipam().to_dict()
    if fmt in ("table", "wide"):
        line(f"node {data['node']}: subnet {data['subnet']} (gateway {', '.join(data['gateway'])}), "
             f"{data['used']} used, {data['free']} free")
    render(data, fmt, rows=[{**a, "pod": f"{a['pod_namespace']}/{a['pod_name']}" if a["pod_name"] else "-"}
                            for a in data["allocations"]],
           columns=[("IP", "ips"), ("POD", "pod"), ("CONTAINER", "container_id"), ("IFNAME", "ifname")],
           wide=[("NETNS", "netns")])


@ipam_app.command("gc")
def ipam_gc(lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Release allocations whose network namespace no longer exists."""
    fmt = check_output(output)
    data = ctx.target(lab, node).ipam_gc().to_dict()
    render(data, fmt, rows=data["released"], columns=[("RELEASED", "ips"), ("CONTAINER", "container_id")])


def register(app: typer.Typer) -> None:
    app.command("pods")(pods)
    app.command("nodes")(nodes)
    app.command("services")(services)
    app.command("policies")(policies)
    app.add_typer(ipam_app, name="ipam")
