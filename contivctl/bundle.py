"""The support bundle of ``contivctl report``: everything about a node (or
every node of a lab) that a maintainer asks for, in one ``tar.gz``.

Every part is collected on its own: a part that fails (an agent that does not
answer, a tool that is missing) is listed in ``index.json`` with its error and
the rest is still collected. Secrets never enter it: configuration values
whose key names a secret, and passwords in URLs, are replaced by
``<redacted>`` (:func:`redact`) before anything is written.

Sources: the agents' API (``agent.api.client.AgentClient``), the data plane's
own tools in the node's network namespace (iproute2 and nft, run with
argument lists, never a shell), the agents' logs, versions.
"""
from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|credential|private[-_]?key|api[-_]?key", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]+):[^@/\s]+@", re.I)

#: the agent API's parts of each node: file name -> call (JSON of its record)
API_PARTS: dict[str, Callable[[Any], Any]] = {
    "health": lambda api: api.health(),
    "status": lambda api: api.status(),
    "pods": lambda api: api.pods(),
    "nodes": lambda api: api.nodes(),
    "ipam": lambda api: api.ipam(),
    "services": lambda api: api.services(),
    "policies": lambda api: api.policies(),
    "plan": lambda api: api.plan(),
    "history": lambda api: api.history(limit=500),
    "state": lambda api: api.state(),
    "netstat": lambda api: api.netstat(),
    "sessions": lambda api: api.sessions(),
}
#: the node's kernel networking as its own tools print it (in its namespace)
TOOL_PARTS: dict[str, list[str]] = {
    "ip-link.txt": ["ip", "-d", "-s", "link", "show"],
    "ip-addr.txt": ["ip", "addr", "show"],
    "ip-route.txt": ["ip", "route", "show", "table", "all"],
    "ip-rule.txt": ["ip", "rule", "show"],
    "ip-neigh.txt": ["ip", "neigh", "show"],
    "nft-ruleset.txt": ["nft", "list", "ruleset"],
}
#: VPP's own view on VPP nodes (its debug CLI, through the agent)
VPP_SHOWS = ("show version verbose", "show interface", "show interface address", "show hardware-interfaces",
             "show ip fib", "show bridge-domain", "show vxlan tunnel", "show cnat translation",
             "show cnat session", "show acl-plugin acl", "show acl-plugin interface", "show errors",
             "show runtime", "show memory main-heap")


def redact(value: Any) -> Any:
    """``value`` (JSON data) with secrets replaced: values of keys that name a
    secret, and the password of any ``scheme://user:password@`` in text."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", value)
    return value


@dataclass
class Bundle:
    """Parts collected so far (name -> bytes) and the index of every attempt."""

    parts: dict[str, bytes] = field(default_factory=dict)
    index: list[dict] = field(default_factory=list)

    def collect(self, name: str, get: Callable[[], Any]) -> Any:
        """Add part ``name`` from ``get()`` (bytes, text, or JSON data -- also a
        record, by its ``to_dict``) and return what ``get()`` gave; a failure
        is indexed, never raised (None is returned)."""
        t = time.monotonic()
        try:
            data = get()
        except Exception as e:  # noqa: BLE001 -- one part failing must not stop the rest
            self.index.append({"part": name, "ok": False, "error": _why(e),
                               "seconds": round(time.monotonic() - t, 3)})
            return None
        plain = data.to_dict() if hasattr(data, "to_dict") else data
        if isinstance(plain, str):
            blob = redact(plain).encode()
        elif isinstance(plain, bytes):
            blob = redact(plain.decode(errors="replace")).encode()
        else:
            blob = json.dumps(redact(plain), indent=2, default=str).encode() + b"\n"
        self.parts[name] = blob
        self.index.append({"part": name, "ok": True, "bytes": len(blob),
                           "seconds": round(time.monotonic() - t, 3)})
        return data

    @property
    def failed(self) -> list[dict]:
        return [i for i in self.index if not i["ok"]]

    def write(self, path: str, meta: dict) -> None:
        """The tar.gz at ``path`` (written to a temporary file, then renamed:
        never half a bundle under the name). ``index.json`` comes first."""
        index = json.dumps({**meta, "parts": self.index}, indent=2).encode() + b"\n"
        tmp = f"{path}.tmp-{os.getpid()}"
        top = os.path.basename(path).split(".")[0] or "contiv-report"
        try:
            with tarfile.open(tmp, "w:gz") as tar:
                for name, blob in [("index.json", index), *sorted(self.parts.items())]:
                    info = tarfile.TarInfo(f"{top}/{name}")
                    info.size, info.mtime, info.mode = len(blob), int(time.time()), 0o600
                    tar.addfile(info, io.BytesIO(blob))
            os.chmod(tmp, 0o600)  # logs and state of the node: root's
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _why(e: Exception) -> str:
    return getattr(e, "message", None) or f"{type(e).__name__}: {e}"


def run_tool(argv: list[str], netns: str | None = None, timeout: float = 20) -> str:
    """A tool's output, in network namespace ``netns`` (a name under
    /run/netns) when given; raises with its stderr when it fails."""
    full = (["ip", "netns", "exec", netns] if netns else []) + argv
    try:
        p = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise RuntimeError(f"{argv[0]} is not installed") from None
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-300:]}")
    return p.stdout


def node_parts(b: Bundle, prefix: str, api, netns: str | None, log: Callable[[], str] | None) -> None:
    """Every part of one node under ``prefix/``."""
    got = {name: b.collect(f"{prefix}/{name}.json", lambda call=call: call(api))
           for name, call in API_PARTS.items()}
    if got["status"] is not None and got["status"].agent.dataplane == "vpp":
        from agent.api.contract import DUMPS  # noqa: PLC0415
        for what in DUMPS:
            b.collect(f"{prefix}/vpp/dump-{what}.json", lambda what=what: api.dataplane_dump(what))
        for cmd in VPP_SHOWS:
            b.collect(f"{prefix}/vpp/{cmd.replace(' ', '-')}.txt", lambda cmd=cmd: api.dataplane_cli(cmd).output)
    for name, argv in TOOL_PARTS.items():
        b.collect(f"{prefix}/{name}", lambda argv=argv: run_tool(argv, netns))
    if log is not None:
        b.collect(f"{prefix}/agent.log", log)


def versions() -> dict:
    from contivctl import __version__  # noqa: PLC0415
    out = {"contivctl": __version__, "python": platform.python_version(), "kernel": platform.release(),
           "machine": platform.machine()}
    for name, argv in (("iproute2", ["ip", "-V"]), ("nftables", ["nft", "--version"])):
        try:
            out[name] = run_tool(argv).strip()
        except Exception as e:  # noqa: BLE001 -- a version we cannot tell is said so
            out[name] = f"unknown ({_why(e)})"
    return out
