"""A Kubernetes API server for tests and the lab: the real HTTP/JSON wire
protocol over a :class:`~lab.kubestore.KubeStore`, standard library only.

The real ``kubernetes`` Python client and kubectl talk to it as to a real API
server (``kubeconfig()`` writes the file they load). Served (see
:data:`lab.kubestore.RESOURCES`): core/v1 namespaces, pods, services, nodes;
discovery.k8s.io/v1 endpointslices; networking.k8s.io/v1 networkpolicies --
at the real paths (``/api/v1/namespaces/{ns}/pods``, ``/api/v1/pods`` for
all namespaces, ``/apis/{group}/{version}/...``), with the discovery
documents (``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}[/{version}]``,
``/version``).

Verbs: list (selectors, ``limit``/``continue``, ``resourceVersion`` and
``resourceVersionMatch``), watch (``?watch=true`` or the legacy ``/watch/``
prefix: a chunked stream of one JSON event per line), get, create, update,
patch (merge, strategic -- applied as merge --, JSON patch), delete,
deletecollection, and the ``status`` subresource of pods, services, nodes and
namespaces. Errors are ``Status`` objects with the real reasons and codes.

Not served: protobuf, Table output (kubectl prints its default columns),
server-side apply (415), dryRun (400), OpenAPI documents (404; kubectl needs
``--validate=false`` to create), aggregated discovery, authorization beyond
the :meth:`KubeAPIServer.forbid` test hook, authentication beyond one
optional static bearer token.

Test hooks: :meth:`~KubeAPIServer.compact` (every older resourceVersion
becomes 410 Gone), :meth:`~KubeAPIServer.cut_watches` (every open watch
stream is dropped mid-stream), :meth:`~KubeAPIServer.forbid` (matching
requests get 403 Forbidden with the real message).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from agent.errors import InvalidInput
from lab import kubeobj as ks
from lab.kubeobj import (_GROUPS, RESOURCES, VERSION, BadRequest, KubeError, MethodNotAllowed, Resource,
                         UnsupportedMediaType, _group, _no_such_path, _resource_list)
from lab.kubestore import KubeStore
from lab.kubewatch import Subscription, Watch

log = logging.getLogger(__name__)

PATCH_TYPES = {"application/merge-patch+json": "merge", "application/json-patch+json": "json",
               "application/strategic-merge-patch+json": "strategic"}
DEFAULT_USER = "system:serviceaccount:kube-system:contiv-ksr"
_SERVED = {(r.group, r.version, r.plural): r for r in RESOURCES}


class _Request:
    """A parsed resource request: what, where and which verb."""

    def __init__(self, method: str, path: str, query: dict):
        self.q = {k: v[-1] for k, v in query.items()}
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _no_such_path()
        self.watch = self.q.get("watch") in ("true", "1")
        if rest[:1] == ["watch"]:          # the deprecated /watch/ path prefix
            self.watch, rest = True, rest[1:]
        self.namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and getattr(
                _SERVED.get((group, version, rest[2])), "namespaced", False):
            self.namespace, rest = rest[1], rest[2:]
        res = _SERVED.get((group, version, rest[0])) if rest else None
        if res is None or len(rest) > 3 or (len(rest) == 3 and rest[2] != "status"):
            raise _no_such_path()
        self.resource: Resource = res
        self.name = rest[1] if len(rest) > 1 else None
        self.sub = rest[2] if len(rest) > 2 else None
        if self.sub and not res.status:
            raise _no_such_path()
        if res.namespaced and self.namespace is None and (self.name or method != "GET"):
            # a namespaced resource is only listed/watched across namespaces
            raise _no_such_path() if self.name else MethodNotAllowed(
                "the server does not allow this method on the requested resource")
        if self.name is None:
            self.verb = {"GET": "watch" if self.watch else "list", "POST": "create",
                         "DELETE": "deletecollection"}.get(method)
        else:
            self.verb = {"GET": "watch" if self.watch else "get", "PUT": "update", "PATCH": "patch",
                         "DELETE": "delete"}.get(method)
        if self.verb is None:
            raise MethodNotAllowed("the server does not allow this method on the requested resource")
        if self.verb == "watch" and self.name:   # a watch of one object is a field selector
            sel = self.q.get("fieldSelector")
            self.q["fieldSelector"] = f"metadata.name={self.name}" + (f",{sel}" if sel else "")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive and chunked watch streams
    # headers and body go out in separate writes: with Nagle, the body waits
    # for the client's delayed ACK (40 ms a request)
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, add=False)

    def log_message(self, fmt, *args) -> None:
        log.debug("kubeapi %s: " + fmt, self.address_string(), *args)

    def _send(self, code: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            if "yaml" in (self.headers.get("Content-Type") or ""):
                import yaml  # noqa: PLC0415
                return yaml.safe_load(raw)
            return json.loads(raw)
        except ValueError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None
        except Exception as e:  # yaml.YAMLError, without importing yaml up front
            raise BadRequest(f"the request body is not valid YAML: {e}") from None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api: KubeAPIServer = self.server.api
        url = urlsplit(self.path)
        try:
            body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
            api._authenticate(self.headers.get("Authorization"))
            doc = api._discovery(url.path) if method == "GET" else None
            if doc is not None:
                if isinstance(doc, str):
                    return self._send(200, doc.encode(), "text/plain")
                return self._send(200, doc)
            req = _Request(method, url.path, parse_qs(url.query))
            api._authorize(req)
            if req.q.get("dryRun"):
                raise BadRequest("dryRun is not supported by this server")
            if req.verb == "watch":
                return self._watch(api.store, req)
            code, out = api._serve(req, body, self.headers.get("Content-Type") or "")
            self._send(code, out)
        except KubeError as e:
            self._send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug here must answer 500, not hang the client
            log.exception("kubeapi: %s %s failed", method, self.path)
            self._send(500, KubeError(f"{type(e).__name__}: {e}").status())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        try:
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _watch(self, store: KubeStore, req: _Request) -> None:
        q = req.q
        timeout = q.get("timeoutSeconds")
        if timeout and not timeout.isdigit():
            raise BadRequest(f"timeoutSeconds: Invalid value: {timeout!r}")
        w = store.watch(req.resource.plural, req.namespace, resource_version=q.get("resourceVersion"),
                        label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                        timeout=float(timeout) if timeout else None,
                        bookmarks=q.get("allowWatchBookmarks") in ("true", "1"),
                        send_initial_events={"true": True, "false": False}.get(q.get("sendInitialEvents")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                try:
                    ev = w.next_event(wait=1.0)
                except StopIteration:
                    self._chunk(b"")            # the terminating chunk: a clean end
                    return
                if ev is None:
                    if self._client_gone():     # nothing to send: is anyone still listening?
                        self.close_connection = True
                        return
                    continue
                self._chunk(json.dumps(ev).encode() + b"\n")
        except ks.WatchCut:
            # a dropped connection: no terminating chunk, the socket just goes
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except OSError:
            self.close_connection = True
        finally:
            w.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: "KubeAPIServer"


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class KubeAPIServer:
    """The server (see the module docstring); also the in-process API of its
    store, for the lab's controllers (same objects, versions and events).

    ``history`` and ``bookmark_interval``, ``admit``: see
    :class:`~lab.kubestore.KubeStore`. ``token``: if set, requests must carry
    ``Authorization: Bearer <token>`` (401 otherwise). ``user``: the name
    403 messages give. ``host`` must be a loopback address unless
    ``allow_non_loopback`` (for a server inside a network namespace the lab
    created).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, history: int = 1000,
                 bookmark_interval: float = 60.0, token: str | None = None, user: str = DEFAULT_USER,
                 admit=None, builtin_namespaces: bool = True, allow_non_loopback: bool = False):
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not allow_non_loopback:
            raise InvalidInput(f"the test API server listens on loopback only, not {host!r}",
                               hint="use 127.0.0.1, or allow_non_loopback inside a lab namespace")
        self.host, self.port, self.token, self.user = host, port, token, user
        self.store = KubeStore(history=history, bookmark_interval=bookmark_interval, admit=admit,
                               builtin_namespaces=builtin_namespaces)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self._forbidden: list[tuple[str, str, str | None]] = []

    # -- lifecycle
    def start(self) -> "KubeAPIServer":
        """Listen and serve on a thread; returns self (``url`` is then set)."""
        self._httpd = (_HTTPServer6 if ":" in self.host else _HTTPServer)((self.host, self.port), _Handler)
        self._httpd.api = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="kubeapi", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving: ends every watch, closes every connection, joins
        the threads."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self.store.close()
        with self._lock:
            conns = dict(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)   # wakes handlers blocked on a keep-alive read
            except OSError:
                pass
        for t in conns.values():
            t.join(5)
        self._httpd.server_close()
        self._thread.join(5)
        self._httpd = None

    def __enter__(self) -> "KubeAPIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns[conn] = threading.current_thread()
            else:
                self._conns.pop(conn, None)

    def kubeconfig(self, path: str | None = None, namespace: str = "default") -> str:
        """A kubeconfig for this server (the static token, if any); written to
        ``path`` with mode 0600 when given. Returns the YAML text."""
        import yaml  # noqa: PLC0415
        user = {"token": self.token} if self.token else {}
        text = yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "lab", "cluster": {"server": self.url}}],
            "users": [{"name": "lab", "user": user}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab",
                                                     "namespace": namespace}}],
            "current-context": "lab"}, sort_keys=False)
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                os.fchmod(fd, 0o600)     # O_CREAT's mode does not apply to an existing file
                f.write(text)
        return text

    # -- test hooks
    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Answer 403 to HTTP requests of ``verb`` ("*" for any) on
        ``resource`` (a plural, or e.g. "pods/status") in ``namespace`` (any
        if None). In-process calls are not affected."""
        self._forbidden.append((verb, resource, namespace))

    def clear_forbidden(self) -> None:
        """Undo every :meth:`forbid`."""
        self._forbidden.clear()

    def compact(self) -> int:
        """See :meth:`KubeStore.compact`."""
        return self.store.compact()

    def cut_watches(self) -> int:
        """See :meth:`KubeStore.cut_watches`: HTTP watch streams end without
        their terminating chunk, so clients see a broken stream."""
        return self.store.cut_watches()

    # -- in-process API (see KubeStore for each)
    def create(self, obj: dict) -> dict:
        return self.store.create(obj)

    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        return self.store.get(kind, namespace, name)

    def list(self, kind: str, namespace: str | None = None, **kw) -> dict:
        return self.store.list(kind, namespace, **kw)

    def update(self, obj: dict) -> dict:
        return self.store.update(obj)

    def update_status(self, obj: dict) -> dict:
        return self.store.update_status(obj)

    def patch(self, kind: str, namespace: str | None, name: str, patch, **kw) -> dict:
        return self.store.patch(kind, namespace, name, patch, **kw)

    def delete(self, kind: str, namespace: str | None, name: str, **kw) -> dict:
        return self.store.delete(kind, namespace, name, **kw)

    def watch(self, kind: str, namespace: str | None = None, **kw) -> Watch:
        return self.store.watch(kind, namespace, **kw)

    def subscribe(self, callback, kind: str, namespace: str | None = None, **kw) -> Subscription:
        return self.store.subscribe(callback, kind, namespace, **kw)

    def load_yaml(self, text: str) -> list[dict]:
        return self.store.load_yaml(text)

    def load_file(self, path: str) -> list[dict]:
        return self.store.load_file(path)

    # -- request handling (called by the handler threads)
    def _authenticate(self, header: str | None) -> None:
        if self.token and header != f"Bearer {self.token}":
            raise ks.Unauthorized("Unauthorized")

    def _authorize(self, req: _Request) -> None:
        res = req.resource.plural + (f"/{req.sub}" if req.sub else "")
        for verb, what, ns in self._forbidden:
            if verb in ("*", req.verb) and what == res and ns in (None, req.namespace):
                who = f'{req.resource.plural} "{req.name}"' if req.name else req.resource.plural
                where = f'in the namespace "{req.namespace}"' if req.namespace else "at the cluster scope"
                details = {"kind": req.resource.plural}
                if req.name:
                    details["name"] = req.name
                if req.resource.group:
                    details["group"] = req.resource.group
                raise ks.Forbidden(f'{who} is forbidden: User "{self.user}" cannot {req.verb} resource '
                                   f'"{res}" in API group "{req.resource.group}" {where}', details=details)

    def _discovery(self, path: str):
        parts = [p for p in path.split("/") if p]
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return "ok"
        if parts == ["version"]:
            return VERSION
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}]}
        if parts == ["api", "v1"]:
            return _resource_list("", "v1")
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [_group(g) for g in sorted({g for g, _ in _GROUPS})]}
        if len(parts) == 2 and parts[0] == "apis" and any(g == parts[1] for g, _ in _GROUPS):
            return _group(parts[1])
        if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in _GROUPS:
            return _resource_list(parts[1], parts[2])
        return None

    def _object_from(self, req: _Request, body) -> dict:
        res = req.resource
        if not isinstance(body, dict):
            raise BadRequest(f"the body of a {req.verb} must be a {res.kind} object")
        body.setdefault("apiVersion", res.api_version)
        body.setdefault("kind", res.kind)
        if (body["apiVersion"], body["kind"]) != (res.api_version, res.kind):
            raise BadRequest(f"the object's {body['apiVersion']}/{body['kind']} does not match the "
                             f"expected {res.api_version}/{res.kind}")
        md = body.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise BadRequest("metadata must be an object")
        if res.namespaced:
            if md.get("namespace") not in (None, "", req.namespace):
                raise BadRequest("the namespace of the provided object does not match the namespace "
                                 "sent on the request")
            md["namespace"] = req.namespace
        if req.name and md.get("name") != req.name:
            raise BadRequest(f"the name of the object ({md.get('name')}) does not match the name on "
                             f"the URL ({req.name})")
        return body

    def _serve(self, req: _Request, body, content_type: str) -> tuple[int, dict]:
        s, res, q = self.store, req.resource, req.q
        if req.verb == "list":
            limit = q.get("limit")
            return 200, s.list(res.plural, req.namespace, label_selector=q.get("labelSelector"),
                               field_selector=q.get("fieldSelector"),
                               limit=int(limit) if limit and limit.isdigit() else None,
                               continue_=q.get("continue"), resource_version=q.get("resourceVersion"),
                               resource_version_match=q.get("resourceVersionMatch"))
        if req.verb == "get":
            return 200, s.get(res.plural, req.namespace, req.name)
        if req.verb == "create":
            return 201, s.create(self._object_from(req, body))
        if req.verb == "update":
            return 200, s.update(self._object_from(req, body), subresource=req.sub)
        if req.verb == "patch":
            ptype = PATCH_TYPES.get(content_type.split(";")[0].strip())
            if ptype is None:
                raise UnsupportedMediaType(f"the body of the request was in an unknown format - accepted "
                                           f"media types include: {', '.join(PATCH_TYPES)}")
            return 200, s.patch(res.plural, req.namespace, req.name, body, patch_type=ptype,
                                subresource=req.sub)
        if req.verb == "delete":
            gone = s.delete(res.plural, req.namespace, req.name,
                            preconditions=(body or {}).get("preconditions") if isinstance(body, dict) else None)
            if res.returns_deleted:
                return 200, gone
            details = ks._details(res, req.name, gone["metadata"].get("uid"))
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": details}
        # deletecollection: every matching object, answered with the list of them
        lst = s.list(res.plural, req.namespace, label_selector=q.get("labelSelector"),
                     field_selector=q.get("fieldSelector"))
        items = [s.delete(res.plural, o["metadata"].get("namespace"), o["metadata"]["name"])
                 for o in lst["items"]]
        lst["items"] = items
        lst["metadata"] = {"resourceVersion": str(s.resource_version)}
        return 200, lst
