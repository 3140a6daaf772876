"""``contivctl agent``: run the node agent, and look inside a running one."""
from __future__ import annotations

import typer

from contivctl.context import LAB, NODE, OUTPUT, check_output, ctx, new_app
from contivctl.output import line, render

app = new_app(no_args_is_help=True, help="Run the node agent and inspect it.")


@app.command("run")
def run(
    node: str = typer.Option("", "--node", help="This node's name (required unless in --config)."),
    etcd: str = typer.Option("", "--etcd", help="etcd endpoint; none: spawn a private etcd."),
    dataplane: str = typer.Option("", "--dataplane", help="linux (default) or vpp."),
    socket: str = typer.Option("", "--socket", help="Serve the API on this socket (default: the global --socket)."),
    config: str = typer.Option("", "--config", help="YAML configuration file."),
    etcd_data_dir: str = typer.Option("", "--etcd-data-dir", help="Data dir of the private etcd."),
    pod_cidr: str = typer.Option("", "--pod-cidr", help="Cluster pod CIDR (default 10.1.0.0/16)."),
    node_ip: str = typer.Option("", "--node-ip", help="Underlay address for VXLAN."),
    underlay_if: str = typer.Option("", "--underlay-if", help="Underlay interface."),
    mtu: int = typer.Option(0, "--mtu", help="Pod MTU; 0: underlay MTU - 50."),
    log_level: str = typer.Option("", "--log-level", help="debug | info | warning | error."),
    vpp_uplink: str = typer.Option("", "--vpp-uplink", help="VPP: the Linux interface VPP takes as its uplink."),
    vpp_uplink_cidr: str = typer.Option("", "--vpp-uplink-cidr", help="VPP: the node's ADDRESS/PREFIX on the uplink."),
    vpp_uplink_gateway: str = typer.Option("", "--vpp-uplink-gateway", help="VPP: next hop beyond the uplink's subnet."),
    vpp_api_socket: str = typer.Option("", "--vpp-api-socket", help="VPP: its API socket (default /run/vpp/api.sock)."),
    vpp_stats_socket: str = typer.Option("", "--vpp-stats-socket", help="VPP: its stats socket (default /run/vpp/stats.sock)."),
    metrics_address: str = typer.Option("", "--metrics-address", help="Serve Prometheus metrics on ADDRESS:PORT (default: off)."),
    stn_dir: str = typer.Option("", "--stn-dir", help="STN's directory, as contivctl stn --dir (default /var/lib/contiv/stn)."),
) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C."""
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from agent.config import load_config  # noqa: PLC0415
    from agent.daemon import Agent  # noqa: PLC0415
    cfg = load_config(config or None, node=node, etcd=etcd, dataplane=dataplane,
                      socket=socket or (ctx.socket if ctx.socket_given else ""),
                      etcd_data_dir=etcd_data_dir, pod_cidr=pod_cidr, node_ip=node_ip,
                      underlay_if=underlay_if, mtu=mtu or None, log_level=log_level,
                      vpp_uplink=vpp_uplink, vpp_uplink_cidr=vpp_uplink_cidr,
                      vpp_uplink_gateway=vpp_uplink_gateway, vpp_api_socket=vpp_api_socket,
                      vpp_stats_socket=vpp_stats_socket, metrics_address=metrics_address, stn_dir=stn_dir)
    level = "debug" if ctx.debug else cfg.log_level
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Agent(cfg)

    def _term(signum, frame):
        agent.request_stop()
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    agent.start()
    try:
        agent.wait()
    finally:
        agent.stop()
    if agent.fatal is not None:
        raise agent.fatal  # exit status 5 with its message (contivctl.errors)


@app.command("status")
def status(lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """The agent's health, node, revision and value counts."""
    fmt = check_output(output)
    data = ctx.target(lab, node).status().to_dict()
    render(data, fmt, pairs=_status_pairs(data))


def _status_pairs(data: dict) -> list[tuple[str, object]]:
    a, n, v = data["agent"], data["node"] or {}, data["values"]
    return [("node", a["node"]), ("ready", a["ready"]), ("dataplane", a["dataplane"]),
            ("node IP", n.get("node_ip")), ("pod subnet", n.get("pod_subnets")),
            ("gateway", n.get("gateways")), ("MTU", data["mtu"]), ("underlay", data["underlay"]),
            ("applied revision", a["applied_revision"]),
            ("values", ", ".join(f"{k} {c}" for k, c in v.items() if c)),
            ("cluster", ", ".join(f"{k} {c}" for k, c in data["cluster"].items() if c) or "-")]


@app.command("plan")
def plan(lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """What a resync would change now (dry run: nothing is touched).

    Exit status 1 when the data plane has drifted from the desired state."""
    fmt = check_output(output)
    data = ctx.target(lab, node).plan().to_dict()
    render(data, fmt, rows=data["operations"],
           columns=[("OP", "op"), ("KEY", "key"), ("REASON", "reason")])
    if fmt not in ("json", "yaml"):
        for k, why in sorted(data["pending"].items()):
            line(("pending", "yellow"), f"  {k}  {why}")
    if data["operations"]:
        raise typer.Exit(1)


def _op_line(o: dict, prefix: str = "") -> tuple:
    """`` {prefix}{op} {key}  ({reason})[  FAILED: error]`` as line parts."""
    parts: tuple = (f"  {prefix}{o['op']:<6} {o['key']}  ({o['reason']})",)
    return parts if o["ok"] else parts + ("  ", (f"FAILED: {o.get('error')}", "red"))


@app.command("history")
def history(limit: int = typer.Option(20, "--limit", min=1), lab: str = LAB, node: str = NODE,
            output: str = OUTPUT) -> None:
    """Recent reconciler transactions with their operations and outcome."""
    fmt = check_output(output)
    data = ctx.target(lab, node).history(limit=limit).to_dict()
    rows = []
    for t in data["transactions"]:
        failed = sum(1 for o in t["operations"] if not o["ok"])
        rows.append({**t, "ops": len(t["operations"]), "failed": failed,
                     "result": "ok" if t["ok"] else f"{failed} failed"})
    render(data, fmt, rows=rows, columns=[("SEQ", "seq"), ("KIND", "kind"), ("OPS", "ops"),
                                          ("RESULT", "result"), ("MS", "duration_ms"),
                                          ("DESCRIPTION", "description")])
    if fmt == "wide":
        for t in data["transactions"]:
            for o in t["operations"]:
                line(*_op_line(o, f"#{t['seq']} "))


@app.command("state")
def state(prefix: str = typer.Option("", "--prefix", help="Only keys starting with this."),
          lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Every data-plane value the agent manages, with its state."""
    fmt = check_output(output)
    data = ctx.target(lab, node).state(prefix=prefix).to_dict()
    render(data, fmt, rows=[{**v, "detail": v.get("error") or v.get("reason")} for v in data["values"]],
           columns=[("KEY", "key"), ("STATE", "state")],
           wide=[("DESCRIPTOR", "descriptor"), ("DETAIL", "detail")])


@app.command("resync")
def resync(lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Retrieve the data plane now and repair any drift."""
    fmt = check_output(output)
    data = ctx.target(lab, node).resync().to_dict()
    if fmt in ("json", "yaml"):
        render(data, fmt)
    else:
        ops = data["operations"]
        line(f"resync #{data['seq']}: {len(ops)} operation(s) in {data['duration_ms']:.1f} ms")
        for o in ops:
            line(*_op_line(o))
    if not data["ok"]:
        raise typer.Exit(1)
