"""``contivctl lab``: a multi-node cluster in network namespaces.

The lab library (``lab.*``) does the work and prints nothing; it reports
progress through callbacks, which :func:`contivctl.output.progress` turns
into bars on a terminal and into the usual one-line messages elsewhere.
"""
from __future__ import annotations

import typer

from contivctl.context import OUTPUT, check_output, new_app
from contivctl.output import line, message, progress, render, text, unicode_ok

app = new_app(no_args_is_help=True, help="A multi-node cluster on this machine (namespaces, "
                                         "real agents, real etcd, real packets).")
NAME = typer.Option("lab", "--name", help="Lab name (≤ 8 lower-case letters/digits).")
TIMEOUT = typer.Option(60.0, "--timeout", help="Seconds to wait for every agent to apply.")


def _lab(name: str, must_exist: bool = True):
    from agent.errors import NotFound  # noqa: PLC0415
    from lab.cluster import Lab  # noqa: PLC0415
    lab = Lab(name)
    if must_exist and not lab.exists():
        raise NotFound(f"no lab named {name!r}", hint="create one with `contivctl lab up`")
    return lab


def _kube(name: str, pr=None):
    from lab.kube import Kube  # noqa: PLC0415
    if pr is None:
        return Kube(_lab(name), progress=message)
    return Kube(_lab(name), progress=pr.message, step=pr.step)


@app.command("up")
def up(name: str = NAME, nodes: int = typer.Option(3, "--nodes", min=1, max=32),
       dataplane: str = typer.Option("linux", "--dataplane", help="linux | vpp"),
       pod_cidr: str = typer.Option("10.1.0.0/16", "--pod-cidr"),
       underlay: str = typer.Option("192.168.56.0/24", "--underlay"),
       demo: bool = typer.Option(False, "--demo", help="Apply examples/demo.yaml and show probes."),
       kube_api: bool = typer.Option(False, "--kube-api", help="Serve a Kubernetes API and run the reflector: "
                                                               "objects go API -> reflector -> etcd."),
       timeout: float = TIMEOUT, output: str = OUTPUT) -> None:
    """Create the lab (an existing lab is reported and left unchanged)."""
    import time  # noqa: PLC0415
    fmt = check_output(output)
    lab = _lab(name, must_exist=False)
    t0 = time.monotonic()
    with progress() as pr:
        st, created = lab.up(nodes=nodes, dataplane=dataplane, pod_cidr=pod_cidr, underlay=underlay,
                             timeout=timeout, progress=pr.prefixed(f"lab {name}: "), step=pr.step)
    if kube_api:
        from lab.kubecontrol import start  # noqa: PLC0415
        info = start(lab, timeout)
        message(f"lab {name}: Kubernetes API on {info['url']} (`contivctl lab kubeconfig --name {name}`)")
    if created:
        message(f"lab {name}: up with {len(st.nodes)} nodes in {time.monotonic() - t0:.1f}s")
    else:
        message(f"lab {name} already exists ({len(st.nodes)} nodes); nothing changed")
    if demo:
        from contivctl.commands.labdemo import run_demo  # noqa: PLC0415
        raise typer.Exit(run_demo(name, fmt, timeout))
    render({"lab": name, "created": created, "nodes": [n.__dict__ for n in st.nodes]}, fmt,
           rows=[n.__dict__ for n in st.nodes],
           columns=[("NODE", "name"), ("IP", "ip"), ("NETNS", "netns")], wide=[("SOCKET", "socket")])


@app.command("kubeconfig")
def kubeconfig(name: str = NAME) -> None:
    """Print the kubeconfig of the lab's Kubernetes API (a lab up with --kube-api):
    point kubectl or the kubernetes client at the lab with it."""
    from agent.errors import NotFound  # noqa: PLC0415
    from contivctl.output import text  # noqa: PLC0415
    info = _lab(name).state().extra.get("kube_api")
    if not info:
        raise NotFound(f"lab {name} has no Kubernetes API", hint="create it with `contivctl lab up --kube-api`")
    from pathlib import Path  # noqa: PLC0415
    text(Path(info["kubeconfig"]).read_text())


@app.command("down")
def down(name: str = NAME, output: str = OUTPUT) -> None:
    """Remove every namespace, link, process and file of the lab (also a broken one)."""
    fmt = check_output(output)
    with progress() as pr:
        removed = _lab(name, must_exist=False).down(step=pr.step)
    if fmt in ("json", "yaml"):
        return render(removed, fmt)
    message(f"lab {name}: removed {removed['processes']} process(es), "
            f"{removed['namespaces']} namespace(s)" + (", runtime files" if removed["files"] else ""))


def _manifests(files: list[str], name: str, timeout: float, output: str, op: str) -> None:
    from lab.ops import read_manifests  # noqa: PLC0415
    fmt = check_output(output)
    objs = read_manifests(files)
    with progress() as pr:
        kube = _kube(name, pr)
        try:
            results = getattr(kube, op)(objs, timeout=timeout)
        finally:
            kube.close()
    render({"results": results}, fmt, rows=results,
           columns=[("OBJECT", "object"), ("ACTION", "action")], wide=[("NODE", "node")])


@app.command("apply")
def apply(files: list[str] = typer.Option(..., "-f", "--filename", help="FILE, DIR or -"),
          name: str = NAME, timeout: float = TIMEOUT, output: str = OUTPUT) -> None:
    """Create or update Namespaces, Pods, Services and NetworkPolicies."""
    _manifests(files, name, timeout, output, "apply")


@app.command("delete")
def delete(files: list[str] = typer.Option(..., "-f", "--filename", help="FILE, DIR or -"),
           name: str = NAME, timeout: float = TIMEOUT, output: str = OUTPUT) -> None:
    """Delete the objects named in the manifests."""
    _manifests(files, name, timeout, output, "delete")


@app.command("probe")
def probe(src: str = typer.Argument(None, help="Source pod ns/name, or 'underlay' (outside the cluster)."),
          dst: str = typer.Argument(None, help="ns/name | svc:ns/name | IP[:PORT] | node:NAME:PORT"),
          port: int = typer.Option(None, "--port", min=1, max=65535),
          protocol: str = typer.Option("TCP", "--protocol", help="TCP | UDP | SCTP"),
          timeout: float = typer.Option(2.0, "--timeout"),
          matrix: bool = typer.Option(False, "--matrix", help="Probe every pod pair."),
          namespace: list[str] = typer.Option([], "--namespace", "-n", help="Matrix: only these."),
          name: str = NAME, output: str = OUTPUT) -> None:
    """Connect from a pod; exit 0 when connected, 1 when blocked."""
    from agent.errors import InvalidInput, NotFound  # noqa: PLC0415
    from lab import ops  # noqa: PLC0415
    fmt = check_output(output)
    protocol = protocol.upper()
    if protocol not in ("TCP", "UDP", "SCTP"):
        raise InvalidInput(f"--protocol {protocol}: use TCP, UDP or SCTP")
    kube = _kube(name)
    try:
        if matrix:
            if src or dst:
                raise InvalidInput("--matrix takes no SRC/DST")
            if port is None:
                raise InvalidInput("--matrix needs --port")
            with progress() as pr:
                m = ops.matrix(kube, port, protocol, namespace or None, timeout, step=pr.step)
            _render_matrix(m, fmt)
            return
        if not src or not dst:
            raise InvalidInput("probe needs SRC and DST (or --matrix)")
        try:
            r = ops.run_probe(kube, src, dst, port, protocol, timeout)
        except NotFound as e:  # an unknown pod/service is a usage error for probe (status 2)
            raise InvalidInput(e.message, hint=e.hint) from None
    finally:
        kube.close()
    if fmt in ("json", "yaml"):
        render(r.to_dict(), fmt)
    elif r.connected:
        line(f"{r.src} -> {r.dst} ({r.address}:{r.port}/{r.protocol}): ", ("connected", "green"),
             f", answered by {r.answered_by} in {r.ms:.1f} ms")
    else:
        line(f"{r.src} -> {r.dst} ({r.address}:{r.port}/{r.protocol}): ", (f"blocked ({r.error})", "red"),
             f" after {r.ms:.0f} ms")
    if not r.connected:
        raise typer.Exit(1)


def _render_matrix(m: dict[str, dict[str, bool]], fmt: str) -> None:
    """A grid of numbered pods: ✓ (green) connected, ✗ (red) blocked."""
    if fmt in ("json", "yaml"):
        return render(m, fmt)
    cols = sorted(m)
    ok, no = ("✓", "✗") if unicode_ok() else ("Y", "N")
    width = max([len(c) for c in cols] + [4])
    idx = {c: str(i + 1) for i, c in enumerate(cols)}
    line(" " * (width + 2) + " ".join(f"{idx[c]:>3}" for c in cols))
    for s in cols:
        cells: list = []
        for d in cols:
            cells += [" ", (f"{ok:>3}", "green") if m[s][d] else (f"{no:>3}", "red")]
        line(f"{idx[s]:>2} {s:<{width}}", *cells)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(pod: str = typer.Argument(..., help="Pod ns/name."),
          cmd: list[str] = typer.Argument(..., help="Command (after --)."),
          name: str = NAME) -> None:
    """Run a command inside a pod's network namespace."""
    import os  # noqa: PLC0415

    from lab.ops import pod_netns  # noqa: PLC0415
    kube = _kube(name)
    try:
        _, netns = pod_netns(kube, pod)
    finally:
        kube.close()
    os.execvp("nsenter", ["nsenter", f"--net={netns}", "--"] + list(cmd))


@app.command("status")
def status(name: str = NAME, output: str = OUTPUT) -> None:
    """Nodes, agents, pods and health."""
    from lab.ops import status as lab_status  # noqa: PLC0415
    fmt = check_output(output)
    data = lab_status(_lab(name))
    if fmt in ("json", "yaml"):
        render(data, fmt)
    else:
        render(data, fmt, pairs=[
            ("lab", data["lab"]), ("healthy", data["healthy"]), ("dataplane", data["dataplane"]),
            ("underlay", data["underlay"]), ("pod CIDR", data["pod_cidr"]),
            ("etcd", f"running, revision {data['etcd_revision']}" if data["etcd_running"] else "DOWN")])
        line()
        render(data, fmt, rows=data["nodes"], columns=[
            ("NODE", "node"), ("IP", "ip"), ("AGENT", "running"), ("READY", "ready"),
            ("REVISION", "applied_revision"), ("PODS", "pods")], wide=[("PID", "agent_pid"), ("ERROR", "error")])
        if data["pods"]:
            line()
            render(data, fmt, rows=data["pods"], columns=[("POD", "pod"), ("NODE", "node"), ("IP", "ip"),
                                                          ("PHASE", "phase")], wide=[("LABELS", "labels")])
        if data["services"]:
            line()
            render(data, fmt, rows=data["services"], columns=[("SERVICE", "service"), ("TYPE", "type"),
                                                              ("CLUSTER-IP", "cluster_ip"), ("PORTS", "ports")])
    if not data["healthy"]:
        raise typer.Exit(1)


@app.command("logs")
def logs(node: str = typer.Argument(..., help="Node name, e.g. node1 (or 'etcd')."),
         tail: int = typer.Option(200, "--tail", help="Lines from the end (0: all)."),
         name: str = NAME) -> None:
    """Print a node agent's log."""
    from agent.errors import NotFound  # noqa: PLC0415
    lab = _lab(name)
    path = lab.paths.root / "etcd.log" if node == "etcd" else lab.paths.agent_log(lab.state().node(node).name)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        raise NotFound(f"no log at {path}") from None
    text("".join(ln + "\n" for ln in (lines[-tail:] if tail else lines)))


@app.command("list")
def list_(output: str = OUTPUT) -> None:
    """Labs on this machine."""
    from lab.paths import existing_labs  # noqa: PLC0415
    fmt = check_output(output)
    labs = [{"lab": n} for n in existing_labs()]
    render({"labs": labs}, fmt, rows=labs, columns=[("LAB", "lab")])
