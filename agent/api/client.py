"""Python client of the agent's local API (used by contivctl and the lab)."""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlencode

from agent import errors
from agent.config import DEFAULT_SOCKET

_BY_NAME = {c.__name__: c for c in (errors.InvalidInput, errors.NotFound, errors.TemporaryError,
                                    errors.Conflict, errors.Unavailable, errors.FatalError,
                                    errors.DataplaneError, errors.Exhausted)}


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
    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, *, params: dict | None = None, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        if params:
            path = f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"
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

    def call(self, method: str, path: str, *, params: dict | None = None, json_body=None):
        body = json.dumps(json_body).encode() if json_body is not None else None
        status, _, raw = self.request(method, path, params=params, body=body,
                                      headers={"Content-Type": "application/json"} if body else None)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise errors.ContivError(f"agent answered {status} with a non-JSON body") from None
        if status >= 400:
            cls = _BY_NAME.get((data or {}).get("error"), errors.ContivError)
            raise cls((data or {}).get("message", f"HTTP {status}"), hint=(data or {}).get("hint"))
        return data

    def get(self, path: str, **params):
        return self.call("GET", path, params=params or None)

    def post(self, path: str, json_body=None, **params):
        return self.call("POST", path, params=params or None, json_body=json_body)
