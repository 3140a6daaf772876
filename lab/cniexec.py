"""Run CNI plugins exactly as a container runtime does (libcni's behaviour).

Each plugin is executed with the CNI environment variables and the network
configuration on stdin. For a conflist, ADD runs the plugins in order and
hands each the previous result as ``prevResult``; DEL runs them in reverse
with the cached ADD result; capabilities become ``runtimeConfig``.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ContivError


class CNIFailure(ContivError):
    """A plugin exited non-zero; ``error`` is its CNI error object (if it printed one)."""

    def __init__(self, plugin: str, command: str, error: dict | None, stderr: str) -> None:
        msg = (error or {}).get("msg") or stderr.strip() or "no output"
        super().__init__(f"CNI {command} by {plugin} failed (code {(error or {}).get('code', '?')}): {msg}")
        self.plugin, self.command, self.error, self.stderr = plugin, command, error, stderr

    @property
    def code(self) -> int | None:
        return (self.error or {}).get("code")


@dataclass
class Invocation:
    plugin: str
    command: str
    exit_code: int
    stdout: bytes
    stderr: str
    seconds: float


@dataclass
class Runtime:
    """The CNI side of a container runtime: where plugins are, how to call them."""

    cni_path: list[str]
    calls: list[Invocation] = field(default_factory=list)
    record: bool = False
    #: argv prefix for every plugin, e.g. ``["nsenter", "--net=/var/run/netns/n1"]``
    #: to run the chain inside a node's network namespace, as a runtime on that node would
    prefix: list[str] = field(default_factory=list)

    def find(self, plugin_type: str) -> str:
        for d in self.cni_path:
            p = Path(d) / plugin_type
            if os.access(p, os.X_OK):
                return str(p)
        raise CNIFailure(plugin_type, "-", {"code": 7, "msg": f"plugin {plugin_type} not found in "
                                                              f"{':'.join(self.cni_path)}"}, "")

    def exec(self, plugin_type: str, command: str, conf: dict | bytes, *, container_id: str = "",
             netns: str = "", ifname: str = "", args: str = "", extra_env: dict | None = None) -> Invocation:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CNI_COMMAND": command, "CNI_PATH": ":".join(self.cni_path)}
        for k, v in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns),
                     ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
            if v:
                env[k] = v
        env.update(extra_env or {})
        data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        t = time.perf_counter()
        p = subprocess.run(self.prefix + [self.find(plugin_type)], input=data, env=env,
                           capture_output=True, timeout=120)
        inv = Invocation(plugin_type, command, p.returncode, p.stdout, p.stderr.decode(errors="replace"),
                         time.perf_counter() - t)
        if self.record:
            self.calls.append(inv)
        return inv

    @staticmethod
    def _check(inv: Invocation) -> dict | None:
        if inv.exit_code != 0:
            try:
                err = json.loads(inv.stdout)
            except ValueError:
                err = None
            raise CNIFailure(inv.plugin, inv.command, err, inv.stderr)
        return json.loads(inv.stdout) if inv.stdout.strip() else None

    # --- conflists (libcni AddNetworkList / DelNetworkList / CheckNetworkList) ---
    def _plugin_conf(self, conflist: dict, plugin: dict, prev: dict | None, caps: dict) -> dict:
        conf = dict(plugin)
        conf["cniVersion"] = conflist["cniVersion"]
        conf["name"] = conflist["name"]
        rc = {k: v for k, v in caps.items() if plugin.get("capabilities", {}).get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def add(self, conflist: dict, container_id: str, netns: str, ifname: str = "eth0",
            args: str = "", capabilities: dict | None = None) -> dict:
        prev = None
        for plugin in conflist["plugins"]:
            inv = self.exec(plugin["type"], "ADD", self._plugin_conf(conflist, plugin, prev, capabilities or {}),
                            container_id=container_id, netns=netns, ifname=ifname, args=args)
            prev = self._check(inv)
        return prev or {}

    def delete(self, conflist: dict, container_id: str, netns: str, ifname: str = "eth0",
               args: str = "", prev: dict | None = None, capabilities: dict | None = None) -> None:
        for plugin in reversed(conflist["plugins"]):
            self._check(self.exec(plugin["type"], "DEL",
                                  self._plugin_conf(conflist, plugin, prev, capabilities or {}),
                                  container_id=container_id, netns=netns, ifname=ifname, args=args))

    def check(self, conflist: dict, container_id: str, netns: str, ifname: str, prev: dict,
              args: str = "", capabilities: dict | None = None) -> None:
        for plugin in conflist["plugins"]:
            self._check(self.exec(plugin["type"], "CHECK",
                                  self._plugin_conf(conflist, plugin, prev, capabilities or {}),
                                  container_id=container_id, netns=netns, ifname=ifname, args=args))
