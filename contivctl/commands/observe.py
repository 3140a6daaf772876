"""Diagnostics of traffic and health: ``netstat``, ``nat sessions`` and
``status`` (docs/cli.md, "Diagnostics").

On a lab (``--lab`` or ``CONTIVCTL_LAB``) they ask every node's agent unless
``--node`` names one -- a pod's commands ask the node the pod runs on -- and
off a lab the local agent. Their JSON is one shape however many nodes
answered: ``{"nodes": [<the agents' records>]}`` (``status`` adds its verdict).
"""
from __future__ import annotations

import time

import typer

from contivctl.context import LAB, NAMESPACE, NODE, OUTPUT, check_output, ctx, lab_name, new_app, pod_ref
from contivctl.output import line, live, render, table_text

nat = new_app(no_args_is_help=True, help="The data plane's translation sessions, named in Kubernetes terms.")

COUNTERS = ("rx_packets", "rx_bytes", "rx_drops", "rx_errors",
            "tx_packets", "tx_bytes", "tx_drops", "tx_errors")
NETSTAT_COLUMNS = [("NODE", "node"), ("INTERFACE", "name"), ("OWNER", "owner"),
                   ("RX-PKTS", "rx_packets"), ("RX-BYTES", "rx_bytes"), ("RX-DROP", "rx_drops"),
                   ("TX-PKTS", "tx_packets"), ("TX-BYTES", "tx_bytes"), ("TX-DROP", "tx_drops")]
NETSTAT_WIDE = [("RX-ERR", "rx_errors"), ("TX-ERR", "tx_errors")]
RATE_COLUMNS = [("RX-PKT/S", "rx_pps"), ("RX-BIT/S", "rx_bps"), ("TX-PKT/S", "tx_pps"),
                ("TX-BIT/S", "tx_bps"), ("DROP/S", "drops_ps")]


def netstat(pod: str = typer.Argument(None, help="A pod (ns/name, or name with -n): only its interfaces."),
            namespace: str = NAMESPACE,
            sockets: bool = typer.Option(False, "--sockets", "-s",
                                         help="The pod's TCP and UDP sockets instead (as ss -tuna)."),
            watch: float = typer.Option(None, "--watch", "-w", min=0.1,
                                        help="Redraw every SECONDS (2 when given alone) with rates; "
                                             "Ctrl-C ends."),
            lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Packets, bytes, drops and errors of the node's and its pods' interfaces,
    from the data plane (Linux: netlink link statistics; VPP: its stats
    segment); "rx" is what the node received: from a pod, what the pod sent."""
    fmt = check_output(output)
    ref = pod_ref(pod, namespace)
    if sockets:
        from agent.errors import InvalidInput  # noqa: PLC0415
        if not ref:
            raise InvalidInput("--sockets shows a pod's sockets: give the POD")
        data = ctx.target_pod(lab, node, ref).sockets(ref).to_dict()
        rows = [{**s, "local_ep": _ep(s["local"], s["lport"]), "peer_ep": _ep(s["peer"], s["pport"], "*")}
                for s in data["sockets"]]
        render(data, fmt, rows=rows,
               columns=[("PROTO", "protocol"), ("STATE", "state"), ("RECV-Q", "recv_q"),
                        ("SEND-Q", "send_q"), ("LOCAL", "local_ep"), ("PEER", "peer_ep")],
               wide=[("UID", "uid"), ("INODE", "inode")])
        return
    targets = [("", ctx.target_pod(lab, node, ref))] if ref else ctx.targets(lab, node)

    def sample() -> dict:
        return {"nodes": [api.netstat(ref).to_dict() for _, api in targets]}

    if watch is None:
        data = sample()
        render(data, fmt, rows=_counter_rows(data), columns=NETSTAT_COLUMNS, wide=NETSTAT_WIDE)
        return
    _watch(sample, watch, fmt)


def _watch(sample, every: float, fmt: str) -> None:
    """Sample every ``every`` s until Ctrl-C (exit 0): a live table with rates
    (over the agents' own clocks), or one JSON document per line with -o json."""
    import json  # noqa: PLC0415
    import signal  # noqa: PLC0415

    def stop(signum, frame):
        raise KeyboardInterrupt
    # Ctrl-C even where the shell started us with SIGINT ignored (a
    # background job); SIGTERM ends the watch as cleanly
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    prev: dict = {}
    try:
        with live() as show:
            while True:
                data = sample()
                if fmt in ("json", "yaml"):
                    show(json.dumps(data, separators=(",", ":")) + "\n")
                else:
                    rows = _counter_rows(data)
                    rates = _rates(prev, data)
                    cols = NETSTAT_COLUMNS + (NETSTAT_WIDE if fmt == "wide" else []) + RATE_COLUMNS
                    show(time.strftime("%H:%M:%S") + f"  every {every:g}s (Ctrl-C ends)\n" + table_text(
                        [h for h, _ in cols],
                        [[_cell({**r, **rates.get((r["node"], r["name"]), {})}.get(k)) for _, k in cols]
                         for r in rows]))
                prev = data
                time.sleep(every)
    except KeyboardInterrupt:
        return


def _counter_rows(data: dict) -> list[dict]:
    return [{"node": n["node"], **c} for n in data["nodes"] for c in n["interfaces"]]


def _rates(prev: dict, now: dict) -> dict:
    """(node, interface) -> per-second rates between two samples ({} for the first)."""
    if not prev:
        return {}
    before = {(n["node"], c["name"]): (n["time"], c) for n in prev["nodes"] for c in n["interfaces"]}
    out = {}
    for n in now["nodes"]:
        for c in n["interfaces"]:
            old = before.get((n["node"], c["name"]))
            if old is None or n["time"] <= old[0]:
                continue
            dt = n["time"] - old[0]

            def rate(k: str, _c=c, _o=old[1], _dt=dt) -> float:
                return max(0, _c.get(k, 0) - _o.get(k, 0)) / _dt  # a counter reset is no negative rate
            out[(n["node"], c["name"])] = {
                "rx_pps": rate("rx_packets"), "tx_pps": rate("tx_packets"),
                "rx_bps": 8 * rate("rx_bytes"), "tx_bps": 8 * rate("tx_bytes"),
                "drops_ps": rate("rx_drops") + rate("tx_drops")}
    return out


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return "-" if v is None else str(v)


def _ep(addr: str, port: int, any_: str = "") -> str:
    """``addr:port`` as ss prints it (``[v6]:port``; ``*`` for a port 0 peer)."""
    if any_ and not port:
        return f"{addr}:*" if addr not in ("0.0.0.0", "::") else "*:*"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# --------------------------------------------------------------------------- nat sessions
@nat.command("sessions")
def sessions(service: str = typer.Option(None, "--service", help="Only this Service's (ns/name)."),
             pod: str = typer.Option(None, "--pod", help="Only sessions of this pod (ns/name), as client or backend."),
             summary: bool = typer.Option(False, "--summary", help="Sessions per Service and table use."),
             all_: bool = typer.Option(False, "--all", "-a",
                                       help="Also sessions with no pod or Service (the node's own: etcd, VXLAN)."),
             lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Translation sessions (Linux: conntrack; VPP: cnat's sessions) with the
    client pod, the Service and port asked for, and the backend pod. Only
    sessions of pods and Services unless --all (the summary counts the whole
    table either way)."""
    fmt = check_output(output)
    data = {"nodes": [api.sessions(service, pod).to_dict() for _, api in ctx.targets(lab, node)]}
    if not all_:
        for n in data["nodes"]:
            n["sessions"] = [s for s in n["sessions"] if s["client"] or s["service"] or s["backend"]]
    if fmt in ("json", "yaml"):
        return render(data, fmt)
    if summary:
        render(data, fmt, rows=[{"node": n["node"], **s, "spread": [f"{b}={c}" for b, c in s["backends"].items()]}
                                for n in data["nodes"] for s in n["summary"]],
               columns=[("NODE", "node"), ("SERVICE", "service"), ("SESSIONS", "sessions"),
                        ("BACKENDS", "spread")])
        for n in data["nodes"]:
            limit = n["limit"]
            use = f"{n['total']} of {limit} ({100.0 * n['total'] / limit:.2f} %)" if limit else \
                f"{n['total']} (the {n['dataplane']} data plane reports no fixed limit)"
            line(f"{n['node']}: session table {use}")
        return
    rows = []
    for n in data["nodes"]:
        for s in n["sessions"]:
            rows.append({**s, "node": n["node"],
                         "who": s["client"] or _ep(s["src"], s["sport"]),
                         "asked": f"{s['service']} ({s['service_port']})" if s["service"] else _ep(s["dst"], s["dport"]),
                         "answer": (f"{s['backend']} " if s["backend"] else "") + _ep(s["reply_src"], s["reply_sport"]),
                         "from": _ep(s["src"], s["sport"]), "to": _ep(s["dst"], s["dport"])})
    render(data, fmt, rows=rows,
           columns=[("NODE", "node"), ("PROTO", "protocol"), ("CLIENT", "who"), ("SERVICE", "asked"),
                    ("BACKEND", "answer"), ("STATE", "state")],
           wide=[("SRC", "from"), ("DST", "to"), ("TIMEOUT", "timeout"), ("PACKETS", "packets"),
                 ("BYTES", "bytes")])


# --------------------------------------------------------------------------- status
def status(lab: str = LAB, node: str = NODE, output: str = OUTPUT,
           timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds to wait for each agent.")) -> None:
    """One screen for the node or the whole lab: agents, data planes, etcd,
    pods, FAILED values, IPAM use and leaked addresses. Exit status 1 when
    anything is unhealthy, each problem in one line."""
    fmt = check_output(output)
    nodes = [_node_health(name, api) for name, api in ctx.targets(lab, node, timeout=timeout)]
    problems = [f"{n['node']}: {p}" for n in nodes for p in n["problems"]]
    data = {"healthy": not problems, "nodes": nodes, "problems": problems}
    rows = [{**n, "pods_text": f"{n['pods_ok']}/{n['pods']} ok" if "pods" in n else None,
             "ipam_text": f"{n['ipam_used']}/{n['ipam_total']}" if "ipam_used" in n else None} for n in nodes]
    render(data, fmt, rows=rows,
           columns=[("NODE", "node"), ("AGENT", "agent"), ("DATAPLANE", "dataplane"), ("ETCD", "etcd"),
                    ("REVISION", "applied_revision"), ("PODS", "pods_text"), ("FAILED", "failed"),
                    ("IPAM", "ipam_text")],
           wide=[("VERSION", "version"), ("LEAKED", "leaked"), ("SERVICES", "services"),
                 ("POLICIES", "policies"), ("STN", "stn")])
    if fmt in ("table", "wide"):
        for p in problems:
            line(("✗ " if _utf8() else "x ", "red"), p)
        if not problems:
            line(("ok: ", "green"), f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} healthy")
    if problems:
        raise typer.Exit(1)


def _utf8() -> bool:
    from contivctl.output import unicode_ok  # noqa: PLC0415
    return unicode_ok()


def _node_health(name: str, api) -> dict:
    """One node's figures and problems; an agent that does not answer is one
    problem, not an exception (the other nodes are still shown)."""
    from agent.errors import ContivError  # noqa: PLC0415
    out: dict = {"node": name or "local", "agent": "unreachable", "problems": []}
    try:
        h = api.health()
        st = api.status()
        pods = api.pods().pods
        ipam = api.ipam()
    except ContivError as e:
        out["problems"].append(f"agent not answering: {e.message}")
        return out
    cluster = st.cluster
    bad = [p for p in pods if p.dataplane != "ok"]
    leaked = [p for p in pods if p.netns_gone]
    failed = st.values.get("failed", 0)
    out.update(node=h.node, agent="ready" if h.ready else "not ready", dataplane=st.agent.dataplane,
               version=st.agent.version, applied_revision=h.applied_revision,
               etcd="ok" if st.store.get("reachable", True) else "unreachable",
               pods=len(pods), pods_ok=len(pods) - len(bad), failed=failed, leaked=len(leaked),
               ipam_used=ipam.used, ipam_total=ipam.total, services=cluster.get("service", 0),
               policies=cluster.get("networkpolicy", 0))
    p = out["problems"]
    if not h.ready:
        p.append(f"not ready (CNI STATUS {h.cni_status}): {h.message}")
    if not st.store.get("reachable", True):
        p.append(f"etcd unreachable: {st.store.get('error', '')}")
    if failed:
        keys = [v.key for v in api.state().values if v.state == "failed"][:3]
        p.append(f"{failed} value{'s' if failed != 1 else ''} FAILED in the data plane ({', '.join(keys)}"
                 f"{', ...' if failed > len(keys) else ''}): see `contivctl agent state`")
    for pod in bad:
        p.append(f"pod {pod.pod}: data plane {pod.dataplane}")
    if leaked:
        p.append(f"{len(leaked)} address{'es' if len(leaked) != 1 else ''} leaked (network namespace gone: "
                 f"{', '.join(x.pod for x in leaked[:3])}): `contivctl ipam gc` releases them")
    if ipam.total and ipam.free == 0:
        p.append(f"IPAM exhausted: {ipam.used}/{ipam.total} addresses in use")
    _stn_health(st.stn, out)
    return out


def _stn_health(stn, out: dict) -> None:
    """What STN holds (``stn``: "eth0 confirmed (vpp)"), and the steals that
    need an operator: pending, given back by the watchdog, unreadable."""
    if stn is None:
        return
    out["stn"] = ", ".join(f"{e.state.iface} {e.state.phase} ({e.state.dataplane})" for e in stn.entries)
    for e in stn.entries:
        s = e.state
        if s.phase == "pending":
            out["problems"].append(f"STN: {s.iface} stolen, not confirmed: it is restored unless "
                                   f"`contivctl stn confirm {s.iface}` comes first")
        elif s.phase == "suspended":
            out["problems"].append(f"STN: {s.iface} given back to the node ({s.error}); stolen again "
                                   "when the data plane is back (`contivctl stn watch`)")
        elif s.phase in ("stealing", "restoring"):
            out["problems"].append(f"STN: {s.iface} {s.phase} (pid {s.pid}); if that process is gone, "
                                   "`contivctl stn watch --once` finishes it")
    out["problems"] += [f"STN: {err}" for err in stn.errors]


# --------------------------------------------------------------------------- report
def report(out: str = typer.Option("", "--output-file", "-o",
                                   help="The bundle to write (default contiv-report-<time>.tar.gz here)."),
           lab: str = LAB, node: str = NODE,
           timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for each agent call.")) -> None:
    """A support bundle (tar.gz): every node's status, pods, nodes, IPAM,
    Services, policies, plan, history, state, counters and sessions, the data
    plane's own view (nft ruleset, ip; VPP's show outputs and dumps), agent
    logs and versions. Parts are collected one by one: a failing part is
    listed with its error in index.json and the rest is still collected.
    Secrets are redacted. Exit status 1 when a part failed (the bundle is
    still written)."""
    from contivctl import bundle as B  # noqa: PLC0415
    from contivctl.output import message  # noqa: PLC0415
    path = out or time.strftime("contiv-report-%Y%m%d-%H%M%S.tar.gz")
    b = B.Bundle()
    b.collect("versions.json", B.versions)
    lab = lab_name(lab)
    if lab:
        from lab.cluster import Lab  # noqa: PLC0415
        from lab.ops import status as lab_status  # noqa: PLC0415
        the_lab = Lab(lab)
        st = the_lab.state()
        b.collect("lab/status.json", lambda: lab_status(the_lab))
        for n in [st.node(node)] if node else st.nodes:
            log = the_lab.paths.agent_log(n.name)
            B.node_parts(b, n.name, ctx.client(n.socket, timeout), n.netns,
                         lambda log=log: log.read_bytes()[-(4 << 20):])
    else:
        ctx.target(None, node)  # --node without a lab: its error
        B.node_parts(b, "node", ctx.client(timeout=timeout), None, _journal)
    b.write(path, {"created": time.time(), "lab": lab, "node": node})
    ok = len(b.index) - len(b.failed)
    line(f"wrote {path}: {ok} of {len(b.index)} parts")
    for f in b.failed:
        message(f"  missing {f['part']}: {f['error']}")
    if b.failed:
        raise typer.Exit(1)


def _journal() -> str:
    """The agent's log on a node: its systemd unit's journal (the last 20,000 lines)."""
    from contivctl.bundle import run_tool  # noqa: PLC0415
    return run_tool(["journalctl", "--no-pager", "-u", "contiv-agent", "-n", "20000"])


def register(app: typer.Typer) -> None:
    """Put the commands at the top of ``contivctl``."""
    app.command("netstat")(netstat)
    app.command("status")(status)
    app.command("report")(report)
    app.add_typer(nat, name="nat")
