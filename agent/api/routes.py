"""The agent's router: :data:`agent.api.contract.ENDPOINTS` over a facade.

Each route is the same thin adapter: check the declared parameters (query
string for GET, JSON body for POST), call the facade's method of the same
name, return the record as JSON. CNI requests come in with the CNI
environment as ``X-CNI-*`` headers and stdin as the raw body, and go out as
the exact bytes the plugin must print plus its exit status in ``X-CNI-Exit``.
"""
from __future__ import annotations

from agent.api.contract import CNI_HEADERS, CNI_PATH, ENDPOINTS, Endpoint, NodeAPI
from agent.api.server import RawResponse, Request, Router

__all__ = ["CNI_HEADERS", "build_router"]


def _route(api: NodeAPI, ep: Endpoint):
    def handle(req: Request):
        get = ep.method == "GET"
        src = req.query if get else req.json()
        args = {p.name: p.parse(src.get(p.name), from_query=get) for p in ep.params}
        result = getattr(api, ep.name)(**args)
        status = ep.unready if ep.unready and not result.ready else 200
        return status, result.to_dict()
    return handle


def build_router(api: NodeAPI) -> Router:
    r = Router()

    def cni(req: Request):
        # http.server decodes header bytes as latin-1; the plugin sent the
        # runtime's environment bytes as they were: decode them as os.environ does
        env = {k: req.headers[h].encode("latin-1").decode("utf-8", "surrogateescape")
               for k, h in CNI_HEADERS.items() if h in req.headers}
        res = api.cni(env, req.body)
        return RawResponse(200, res.body, {"X-CNI-Exit": str(res.exit_code)})

    r.add("POST", CNI_PATH, cni)
    for ep in ENDPOINTS.values():
        r.add(ep.method, ep.path, _route(api, ep))
    return r
