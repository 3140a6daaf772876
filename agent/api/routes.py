"""The agent's endpoints (documented in docs/api.yaml).

Each handler is a thin adapter: read the request, call one method of the
agent, return JSON. CNI requests come in with the CNI environment as
``X-CNI-*`` headers and stdin as the raw body, and go out as the exact bytes
the plugin must print plus its exit status in ``X-CNI-Exit``.
"""
from __future__ import annotations

from agent.api.server import RawResponse, Request, Router
from agent.reconciler.plan import plain

#: CNI environment variable <-> request header
CNI_HEADERS = {
    "CNI_COMMAND": "x-cni-command",
    "CNI_CONTAINERID": "x-cni-containerid",
    "CNI_NETNS": "x-cni-netns",
    "CNI_IFNAME": "x-cni-ifname",
    "CNI_ARGS": "x-cni-args",
    "CNI_PATH": "x-cni-path",
}


def build_router(agent) -> Router:
    r = Router()

    def cni(req: Request):
        # http.server decodes header bytes as latin-1; the plugin sent the
        # runtime's environment bytes as they were: decode them as os.environ does
        env = {k: req.headers[h].encode("latin-1").decode("utf-8", "surrogateescape")
               for k, h in CNI_HEADERS.items() if h in req.headers}
        res = agent.cni.handle(env, req.body)
        return RawResponse(200, res.body, {"X-CNI-Exit": str(res.exit_code)})

    def health(req: Request):
        code, why = agent.cni_status()
        body = {"node": agent.cfg.node, "ready": agent.ready and code == 0,
                "cni_status": code, "message": why, "applied_revision": agent.applied_revision}
        return (200 if body["ready"] else 503), body

    def status(req: Request):
        info = agent.node_info
        return {"agent": agent.status().to_dict(),
                "node": info.to_dict() if info else None,
                "mtu": agent.mtu, "underlay": agent.underlay.ifname,
                "values": agent.scheduler.counts(), "last_resync": agent.last_resync,
                "cluster": agent.snapshot.counts(), "config": agent.cfg.to_dict()}

    def ipam(req: Request):
        return {"node": agent.cfg.node, "pod_cidr": agent.cfg.pod_cidr, **agent.ipam.stats(),
                "gateway": list(agent.node_info.gateways),
                "allocations": [a.to_dict() for a in agent.ipam.list()]}

    def ipam_gc(req: Request):
        body = req.json()
        valid = body.get("valid")
        if valid is not None:
            from agent.ipam.pods import check_valid_attachments  # noqa: PLC0415
            valid = check_valid_attachments(valid)
        return {"released": [a.to_dict() for a in agent.podnet.gc(valid)]}

    def pods(req: Request):
        return {"node": agent.cfg.node, "pods": agent.podnet.pods()}

    def nodes(req: Request):
        with agent.snapshot.lock:
            return {"nodes": [n.to_dict() for n in sorted(agent.snapshot.nodes.values(),
                                                          key=lambda n: n.name)]}

    def state(req: Request):
        return {"values": agent.scheduler.state(req.query.get("prefix", ""))}

    def plan(req: Request):
        return agent.scheduler.dry_run(resync=True).to_dict()

    def resync(req: Request):
        res = agent.request_resync("resync requested through the API")
        return res.record.to_dict()

    def history(req: Request):
        limit = req.int_arg("limit", 50, 1, 10000)
        since = req.int_arg("since", 0)
        return {"transactions": [t.to_dict() for t in agent.scheduler.history.list(limit, since=since)]}

    def desired(req: Request):
        prefix = req.query.get("prefix", "")
        return {"values": {k: plain(v) for k, v in sorted(agent.desired.merged().items())
                           if k.startswith(prefix)}}

    def services(req: Request):
        return {"services": agent.services.describe(req.query.get("namespace"), req.query.get("name"))}

    def policies(req: Request):
        return {"pods": agent.policies.describe(req.query.get("namespace"), req.query.get("pod"))}

    def explain(req: Request):
        from agent.errors import InvalidInput  # noqa: PLC0415
        body = req.json()
        src, dst, port = body.get("src"), body.get("dst"), body.get("port")
        protocol = str(body.get("protocol") or "TCP").upper()
        if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
            raise InvalidInput("explain needs src and dst (pod ns/name or IP address)")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise InvalidInput(f"port {port!r} must be an integer in 1..65535")
        if protocol not in ("TCP", "UDP", "SCTP"):
            raise InvalidInput(f"protocol {protocol!r} is not TCP, UDP or SCTP")
        return agent.policies.explain(src, dst, port, protocol)

    for method, path, fn in [
        ("POST", "/v1/cni", cni), ("GET", "/v1/health", health), ("GET", "/v1/status", status),
        ("GET", "/v1/ipam", ipam), ("POST", "/v1/ipam/gc", ipam_gc), ("GET", "/v1/pods", pods),
        ("GET", "/v1/nodes", nodes), ("GET", "/v1/state", state), ("GET", "/v1/plan", plan),
        ("POST", "/v1/resync", resync), ("GET", "/v1/history", history),
        ("GET", "/v1/desired", desired), ("GET", "/v1/services", services),
        ("GET", "/v1/policies", policies), ("POST", "/v1/policies/explain", explain),
    ]:
        r.add(method, path, fn)
    return r
