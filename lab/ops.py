"""Lab operations behind ``contivctl lab ...``: target resolution, probes,
the reachability matrix, status, the demo. The CLI only parses and renders."""
from __future__ import annotations

import concurrent.futures
import ipaddress
from pathlib import Path

from agent.errors import InvalidInput, NotFound
from lab import objects
from lab.cluster import Lab, Step, _pid_alive
from lab.kube import Kube
from lab.probe import ProbeResult, probe

DEMO = Path(__file__).parent / "data" / "demo.yaml"


def read_manifests(sources: list[str]) -> list[dict]:
    """Objects from files, directories (*.yaml, *.yml, *.json, sorted) or '-' (stdin)."""
    import sys  # noqa: PLC0415
    if not sources:
        raise InvalidInput("no manifest given", hint="use -f FILE, -f DIR or -f -")
    out = []
    for src in sources:
        if src == "-":
            out += objects.load_documents(sys.stdin.read(), "stdin")
            continue
        p = Path(src)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
            if not files:
                raise InvalidInput(f"directory {src} holds no .yaml/.yml/.json file")
        elif p.exists():
            files = [p]
        else:
            raise InvalidInput(f"no such file or directory: {src}")
        for f in files:
            out += objects.load_documents(f.read_text(), str(f))
    return out


def pod_netns(kube: Kube, ref: str) -> tuple[dict, str]:
    pod = kube.pod(ref)
    netns = pod["metadata"].get("annotations", {}).get("lab.contiv.io/netns", "")
    if not netns or not Path(netns).exists():
        raise NotFound(f"pod {ref} has no network namespace (is it running?)")
    return pod, netns


def _first_port(pod: dict, protocol: str) -> int | None:
    for p in objects.container_ports(pod):
        if p["protocol"] == protocol:
            return p["containerPort"]
    return None


def resolve(kube: Kube, dst: str, port: int | None, protocol: str) -> tuple[str, int, str]:
    """DST -> (address, port, label). DST is ns/name (pod), svc:ns/name,
    IP[:port] or node:NAME:PORT."""
    if dst.startswith("svc:"):
        svc = kube.service(dst[4:])
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None":
            raise InvalidInput(f"service {dst[4:]} is headless: probe a pod instead")
        ports = [p for p in svc["spec"]["ports"] if p["protocol"] == protocol]
        if port is None:
            if not ports:
                raise InvalidInput(f"service {dst[4:]} has no {protocol} port")
            port = ports[0]["port"]
        return ip, port, dst
    if dst.startswith("node:"):
        parts = dst.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise InvalidInput(f"{dst!r}: use node:NAME:PORT")
        return kube.state.node(parts[1]).service_ip, int(parts[2]), dst
    host, sep, p = dst.rpartition(":")
    candidate = host if sep and p.isdigit() else dst
    try:
        ipaddress.ip_address(candidate)
        if sep and p.isdigit():
            return candidate, int(p), dst
        if port is None:
            raise InvalidInput(f"{dst}: give a port (IP:PORT or --port)")
        return candidate, port, dst
    except ValueError:
        pass
    if "/" not in dst and ":" in dst:
        raise InvalidInput(f"cannot parse destination {dst!r}",
                           hint="ns/name, svc:ns/name, IP[:PORT] or node:NAME:PORT")
    pod = kube.pod(dst)
    ip = pod.get("status", {}).get("podIP")
    if not ip:
        raise NotFound(f"pod {dst} has no IP yet")
    if port is None:
        port = _first_port(pod, protocol)
        if port is None:
            raise InvalidInput(f"pod {dst} declares no {protocol} port; pass --port")
    ns = pod["metadata"]["namespace"]
    return ip, port, f"{ns}/{pod['metadata']['name']}"


#: probe source naming the lab's underlay namespace: a client outside the cluster
UNDERLAY = "underlay"


def run_probe(kube: Kube, src: str, dst: str, port: int | None, protocol: str,
              timeout: float) -> ProbeResult:
    if src == UNDERLAY:
        from lab import sysnet  # noqa: PLC0415
        netns, src_ref = sysnet.netns_path(kube.lab.paths.underlay_ns), UNDERLAY
    else:
        src_pod, netns = pod_netns(kube, src)
        src_ref = f"{src_pod['metadata']['namespace']}/{src_pod['metadata']['name']}"
    address, port, label = resolve(kube, dst, port, protocol.upper())
    return probe(netns, address, port, protocol, timeout, src=src_ref, dst=label)


def matrix(kube: Kube, port: int, protocol: str, namespaces: list[str] | None,
           timeout: float, step: Step | None = None) -> dict[str, dict[str, bool]]:
    """Probe every pod pair; ``step`` (what, done, total) counts ``probes``."""
    pods = [p for p in kube.list("pod") if p.get("status", {}).get("podIP")
            and (not namespaces or p["metadata"]["namespace"] in namespaces)]
    refs = [(f"{p['metadata']['namespace']}/{p['metadata']['name']}", p) for p in pods]
    refs.sort()
    jobs = [(s, sp, d, dp) for s, sp in refs for d, dp in refs]
    out: dict[str, dict[str, bool]] = {s: {} for s, _ in refs}

    def one(job):
        s, sp, d, dp = job
        netns = sp["metadata"]["annotations"]["lab.contiv.io/netns"]
        r = probe(netns, dp["status"]["podIP"], port, protocol, timeout, src=s, dst=d)
        return s, d, r.connected
    with concurrent.futures.ThreadPoolExecutor(min(64, max(1, len(jobs)))) as ex:
        for i, (s, d, ok) in enumerate(ex.map(one, jobs), 1):
            out[s][d] = ok
            if step:
                step("probes", i, len(jobs))
    return out


def status(lab: Lab) -> dict:
    from agent.api.client import AgentClient  # noqa: PLC0415
    st = lab.state()
    nodes = []
    kube = Kube(lab) if st.complete else None
    revs = kube.agent_revisions() if kube else {}
    for n in st.nodes:
        row = {"node": n.name, "ip": n.ip, "agent_pid": n.pid, "running": _pid_alive(n.pid),
               "ready": False, "applied_revision": revs.get(n.name, 0), "pods": 0}
        try:
            h = AgentClient(n.socket, timeout=3).health()
            row["ready"] = h.ready
            if not h.ready:
                row["error"] = h.message
        except Exception as e:  # noqa: BLE001 -- reported in the row
            row["error"] = getattr(e, "message", str(e))
        nodes.append(row)
    pods = []
    if kube:
        for p in kube.list("pod"):
            node = p["spec"].get("nodeName")
            for row in nodes:
                if row["node"] == node:
                    row["pods"] += 1
            pods.append({"pod": f"{p['metadata']['namespace']}/{p['metadata']['name']}", "node": node,
                         "ip": p.get("status", {}).get("podIP"), "phase": p.get("status", {}).get("phase"),
                         "labels": p["metadata"].get("labels") or {}})
        services = [{"service": f"{s['metadata']['namespace']}/{s['metadata']['name']}",
                     "type": s["spec"]["type"], "cluster_ip": s["spec"].get("clusterIP"),
                     "ports": [f"{p['port']}/{p['protocol']}" for p in s["spec"]["ports"]]}
                    for s in kube.list("service")]
        policies = [f"{x['metadata']['namespace']}/{x['metadata']['name']}" for x in kube.list("networkpolicy")]
        revision = kube.store.revision()
        kube.close()
    else:
        services, policies, revision = [], [], 0
    return {"lab": st.name, "complete": st.complete, "dataplane": st.dataplane,
            "underlay": st.underlay, "pod_cidr": st.pod_cidr, "etcd_revision": revision,
            "etcd_running": _pid_alive(st.etcd_pid), "nodes": nodes, "pods": pods,
            "services": services, "policies": policies,
            "healthy": st.complete and all(r["ready"] for r in nodes)}
