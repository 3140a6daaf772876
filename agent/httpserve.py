"""A tiny HTTP endpoint on a thread of its own: the agent's metrics, the
reflector's health and metrics.

Not prometheus_client's ``start_http_server`` nor a plain ``http.server``
bind: those ask DNS for the address's name (``getfqdn``) -- 10 s of resolver
timeouts on a node without DNS, all of them in the agent's start-up
(measured in the lab)."""
from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from agent.config import parse_address

log = logging.getLogger(__name__)

#: path -> () -> (status, content type, body)
Routes = dict[str, Callable[[], tuple[int, str, bytes]]]


def serve(address: str, routes: Routes, what: str = "address") -> ThreadingHTTPServer:
    """Serve ``routes`` (GET only) on ``address`` (``HOST:PORT``; port 0: any);
    stop with ``shutdown()`` and ``server_close()``. ``what`` names the
    setting in errors."""
    host, port = parse_address(address, what)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_error(404, f"served here: {', '.join(sorted(routes))}")
                return
            status, ctype, body = route()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            log.debug("http: " + fmt, *args)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

        def server_bind(self) -> None:  # no getfqdn: see the module docstring
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(self.server_address)
            self.server_address = self.socket.getsockname()
            self.server_name, self.server_port = host, self.server_address[1]

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name=f"http:{address}", daemon=True).start()
    return server


def prometheus(registry) -> Callable[[], tuple[int, str, bytes]]:
    """The route of a ``prometheus_client`` registry's text exposition."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415
    return lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry))
