"""Diagnostics: pods, nodes, ipam (read from the agent's local API)."""
from __future__ import annotations

import typer

from contivctl.context import OUTPUT, check_output, ctx
from contivctl.output import render


def pods(output: str = OUTPUT) -> None:
    """Pods attached on this node: addresses, interfaces, data-plane state, CNI timing."""
    fmt = check_output(output)
    data = ctx.client().get("/v1/pods")
    rows = []
    for p in data["pods"]:
        add = p.get("timings", {}).get("add", {})
        rows.append({**p, "add_ms": add.get("total_ms"), "ipam_ms": add.get("ipam_ms"),
                     "dp_ms": add.get("dataplane_ms")})
    render(data, fmt, rows=rows,
           columns=[("POD", "pod"), ("IP", "ips"), ("HOST-IF", "host_if"), ("DATAPLANE", "dataplane")],
           wide=[("CONTAINER", "container_id"), ("IFNAME", "ifname"), ("NETNS", "netns"),
                 ("ADD-MS", "add_ms"), ("IPAM-MS", "ipam_ms"), ("DP-MS", "dp_ms")])


def nodes(output: str = OUTPUT) -> None:
    """Nodes in the registry, as this node's agent sees them."""
    fmt = check_output(output)
    data = ctx.client().get("/v1/nodes")
    render(data, fmt, rows=data["nodes"],
           columns=[("NODE", "name"), ("NODE-IP", "node_ip"), ("POD-SUBNET", "pod_subnets"),
                    ("GATEWAY", "gateways")],
           wide=[("INDEX", "index"), ("VTEP-MAC", "vtep_mac"), ("DATAPLANE", "dataplane")])


def services(name: str = typer.Argument(None, help="Service name (with -n) or ns/name."),
             namespace: str = typer.Option(None, "--namespace", "-n"),
             output: str = OUTPUT) -> None:
    """Services with their virtual IPs, ports, endpoints and what the data plane holds."""
    fmt = check_output(output)
    if name and "/" in name:
        namespace, name = name.split("/", 1)
    data = ctx.client().get("/v1/services", namespace=namespace, name=name)
    if fmt in ("json", "yaml"):
        return render(data, fmt)
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
    render(data, fmt, rows=rows, columns=[("SERVICE", "service"), ("TYPE", "type"), ("PORT", "port"),
                                          ("FRONTENDS", "frontends"), ("ENDPOINTS", "endpoints"),
                                          ("DATAPLANE", "dataplane")],
           wide=[("PODS", "pods"), ("AFFINITY", "affinity"), ("TRAFFIC", "policy"), ("PROBLEMS", "problems")])


ipam_app = typer.Typer(help="Pod address management on this node.", invoke_without_command=True)


@ipam_app.callback()
def ipam(typer_ctx: typer.Context, output: str = OUTPUT) -> None:
    """Show the node subnet and its allocations."""
    if typer_ctx.invoked_subcommand:
        return
    fmt = check_output(output)
    data = ctx.client().get("/v1/ipam")
    if fmt in ("json", "yaml"):
        return render(data, fmt)
    print(f"node {data['node']}: subnet {data['subnet']} (gateway {', '.join(data['gateway'])}), "
          f"{data['used']} used, {data['free']} free")
    render(data, fmt, rows=[{**a, "pod": f"{a['pod_namespace']}/{a['pod_name']}" if a["pod_name"] else "-"}
                            for a in data["allocations"]],
           columns=[("IP", "ips"), ("POD", "pod"), ("CONTAINER", "container_id"), ("IFNAME", "ifname")],
           wide=[("NETNS", "netns")])


@ipam_app.command("gc")
def ipam_gc(output: str = OUTPUT) -> None:
    """Release allocations whose network namespace no longer exists."""
    fmt = check_output(output)
    data = ctx.client().post("/v1/ipam/gc", {})
    render(data, fmt, rows=data["released"], columns=[("RELEASED", "ips"), ("CONTAINER", "container_id")])


def register(app: typer.Typer) -> None:
    app.command("pods")(pods)
    app.command("nodes")(nodes)
    app.command("services")(services)
    app.add_typer(ipam_app, name="ipam")
