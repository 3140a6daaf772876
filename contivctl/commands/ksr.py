"""``contivctl ksr run``: the Kubernetes state reflector (docs/ksr.md)."""
from __future__ import annotations

import typer

from contivctl.context import new_app

app = new_app(no_args_is_help=True, help="The Kubernetes state reflector: Kubernetes objects into etcd.")


@app.command("run")
def run(kubeconfig: str = typer.Option(None, "--kubeconfig",
                                       help="Outside a cluster: its kubeconfig (default: in-cluster)."),
        etcd: str = typer.Option(..., "--etcd", help="The cluster's etcd (http://HOST:PORT or unix:///PATH)."),
        health_address: str = typer.Option("0.0.0.0:9403", "--health-address",
                                           help="HOST:PORT of /healthz, /readyz, /status, /metrics."),
        identity: str = typer.Option("", "--id", help="This replica's name in the election (default: "
                                                      "host name and process id)."),
        lease_ttl: int = typer.Option(10, "--lease-ttl", min=2, max=300,
                                      help="Seconds a dead leader keeps the lead."),
        log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error")) -> None:
    """Mirror Namespaces, Nodes, Pods, Services, EndpointSlices and
    NetworkPolicies into etcd for the agents; one replica leads (an etcd lease)."""
    import logging  # noqa: PLC0415

    from agent.errors import InvalidInput  # noqa: PLC0415
    from ksr.run import run as run_reflector  # noqa: PLC0415
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise InvalidInput(f"unknown log level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_reflector(kubeconfig, etcd, health_address, identity, lease_ttl)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="ksr")
