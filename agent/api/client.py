"""The remote :class:`~agent.api.contract.NodeAPI`: a node's agent over its
unix socket. Used by the CLI, the lab, the tests and the benchmarks; it
returns the typed records of :mod:`agent.model.api` and raises the typed
errors the agent answered with (the class name travels in the error body).

The CNI plugin does not use it: it must stay standard-library only and
cheap to start, so it speaks the same protocol by hand (``cni/plugin.py``).
"""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlencode

import orjson

from agent import errors
from agent.api.contract import CNI_HEADERS, CNI_PATH, ENDPOINTS, Endpoint
from agent.config import DEFAULT_SOCKET
from agent.model import api as rec

#: every typed error, by the class name the agent puts in its error body
_BY_NAME = {c.__name__: c for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, errors.ContivError)}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class AgentClient:
    """A node's agent at ``socket_path``; see :class:`agent.api.contract.NodeAPI`."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    # ------------------------------------------------------------ NodeAPI
    def health(self) -> rec.Health:
        """Answers a not-ready agent's record too (its ``unready`` status carries it)."""
        return self._call(ENDPOINTS["health"])

    def status(self) -> rec.NodeStatus:
        return self._call(ENDPOINTS["status"])

    def ipam(self) -> rec.IpamInfo:
        return self._call(ENDPOINTS["ipam"])

    def ipam_gc(self, valid: list[dict] | None = None) -> rec.GcResult:
        return self._call(ENDPOINTS["ipam_gc"], valid=valid)

    def pods(self) -> rec.PodList:
        return self._call(ENDPOINTS["pods"])

    def nodes(self) -> rec.NodeList:
        return self._call(ENDPOINTS["nodes"])

    def state(self, prefix: str = "") -> rec.StateList:
        return self._call(ENDPOINTS["state"], prefix=prefix)

    def desired(self, prefix: str = "") -> rec.DesiredValues:
        return self._call(ENDPOINTS["desired"], prefix=prefix)

    def plan(self) -> rec.PlanRecord:
        return self._call(ENDPOINTS["plan"])

    def resync(self) -> rec.TxnRecord:
        return self._call(ENDPOINTS["resync"])

    def history(self, limit: int = 50, since: int = 0) -> rec.History:
        return self._call(ENDPOINTS["history"], limit=limit, since=since)

    def services(self, namespace: str | None = None, name: str | None = None) -> rec.ServiceList:
        return self._call(ENDPOINTS["services"], namespace=namespace, name=name)

    def policies(self, namespace: str | None = None, pod: str | None = None) -> rec.PolicyList:
        return self._call(ENDPOINTS["policies"], namespace=namespace, pod=pod)

    def explain(self, src: str, dst: str, port: int, protocol: str = "TCP") -> rec.Explanation:
        return self._call(ENDPOINTS["explain"], src=src, dst=dst, port=port, protocol=protocol)

    def netstat(self, pod: str | None = None) -> rec.Netstat:
        return self._call(ENDPOINTS["netstat"], pod=pod)

    def sockets(self, pod: str) -> rec.PodSockets:
        return self._call(ENDPOINTS["sockets"], pod=pod)

    def sessions(self, service: str | None = None, pod: str | None = None) -> rec.SessionList:
        return self._call(ENDPOINTS["sessions"], service=service, pod=pod)

    def trace_start(self, protocol: str, src: str, sport: int, dst: str, dport: int = 0) -> rec.TraceHandle:
        return self._call(ENDPOINTS["trace_start"], protocol=protocol, src=src, sport=sport, dst=dst,
                          dport=dport)

    def trace_probe(self, pod: str, protocol: str, sport: int, dst: str, dport: int = 0,
                    timeout_ms: int = 1000) -> rec.ProbeRecord:
        return self._call(ENDPOINTS["trace_probe"], pod=pod, protocol=protocol, sport=sport, dst=dst,
                          dport=dport, timeout_ms=timeout_ms)

    def trace_collect(self, id: str) -> rec.TraceSegment:  # noqa: A002 -- the API's name
        return self._call(ENDPOINTS["trace_collect"], id=id)

    def dataplane_cli(self, command: str) -> rec.CliOutput:
        return self._call(ENDPOINTS["dataplane_cli"], command=command)

    def dataplane_dump(self, what: str) -> rec.DumpResult:
        return self._call(ENDPOINTS["dataplane_dump"], what=what)

    def stn_sync(self) -> rec.StnSync:
        return self._call(ENDPOINTS["stn_sync"])

    def cni(self, env: dict[str, str], body: bytes) -> rec.CNIReply:
        headers = {h: env[k] for k, h in CNI_HEADERS.items() if k in env}
        status, hdrs, raw = self._request("POST", CNI_PATH, body=body, headers=headers)
        if status >= 400:
            self._raise(status, raw)
        return rec.CNIReply(int(hdrs.get("x-cni-exit", "1")), raw)

    # ------------------------------------------------------------ transport
    def _call(self, ep: Endpoint, **args):
        args = {k: v for k, v in args.items() if v is not None}
        path, body, headers = ep.path, None, None
        if ep.method == "GET":
            if args:
                path = f"{path}?{urlencode(args)}"
        else:
            body = json.dumps(args).encode()
            headers = {"Content-Type": "application/json"}
        status, _, raw = self._request(ep.method, path, body=body, headers=headers)
        if status >= 400 and status != ep.unready:
            self._raise(status, raw)
        try:
            data = orjson.loads(raw)  # large answers (nat sessions): ~2x json's speed
        except ValueError:
            raise errors.ContivError(f"agent answered {status} with a non-JSON body") from None
        return ep.result.from_dict(data)

    @staticmethod
    def _raise(status: int, raw: bytes):
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        cls = _BY_NAME.get(data.get("error"), errors.ContivError)
        raise cls(data.get("message", f"HTTP {status}"), hint=data.get("hint"))

    def _request(self, method: str, path: str, *, body: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise errors.Unavailable(f"the agent at {self.socket_path} is not running ({e.strerror})",
                                     hint="start it with `contivctl agent run`, or pass --socket") from None
        except PermissionError:
            raise errors.Unavailable(f"no permission to use {self.socket_path}",
                                     hint="the agent API is root-only: run as root") from None
        except (OSError, http.client.HTTPException) as e:
            raise errors.Unavailable(f"talking to the agent at {self.socket_path} failed: {e}") from None
        finally:
            conn.close()
