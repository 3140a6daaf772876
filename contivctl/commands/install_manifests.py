"""``contivctl install manifests``: print the Kubernetes objects that run
contivctl in a cluster (:mod:`contivctl.install.manifests`; docs/install.md).

Registered by contivctl/commands/install.py as ``install manifests``. Only
typer is imported here: the renderer (yaml, the agent's configuration) loads
when the command runs, so ``contivctl --help`` stays fast.
"""
from __future__ import annotations

import typer

#: contivctl.install.manifests.DEFAULT_IMAGE, repeated so that --help imports nothing
#: (tests/unit/test_install_manifests.py checks that the two agree)
DEFAULT_IMAGE = "contivctl:0.1.0"


def manifests_cmd(
    dataplane: str = typer.Option("linux", "--dataplane", help="linux | vpp (VPP nodes need "
                                                               "/etc/contiv/vpp-uplink.yaml: docs/install.md)."),
    pod_cidr: str = typer.Option("10.1.0.0/16", "--pod-cidr", help="The cluster's pod CIDR (IPv4)."),
    service_cidr: str = typer.Option("10.96.0.0/12", "--service-cidr",
                                     help="The cluster's Service CIDR (IPv4), as the API server's."),
    etcd: str = typer.Option("", "--etcd", help="An external etcd the nodes reach (http://HOST:PORT or "
                                                "unix:///PATH); default: a bundled one-member etcd."),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="The contivctl image (a placeholder by "
                                                             "default: none is published)."),
    namespace: str = typer.Option("kube-system", "--namespace", help="Where the objects go (it must exist)."),
    output: str = typer.Option("yaml", "--output", "-o", help="yaml | json"),
) -> None:
    """Print what a cluster needs to run contivctl: the node DaemonSet, the
    reflector, etcd, RBAC and configuration (| kubectl apply -f -)."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    from contivctl.install.manifests import manifests, to_yaml  # noqa: PLC0415
    from contivctl.output import render, text  # noqa: PLC0415
    if output not in ("yaml", "json"):
        raise InvalidInput(f"--output {output!r} is not one of yaml, json")
    objs = manifests(dataplane=dataplane, pod_cidr=pod_cidr, service_cidr=service_cidr, etcd=etcd,
                     image=image, namespace=namespace)
    if output == "json":
        # one List: what `kubectl apply -f` takes as a single JSON document
        render({"apiVersion": "v1", "kind": "List", "items": objs}, "json")
    else:
        text(to_yaml(objs))
