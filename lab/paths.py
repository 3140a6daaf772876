"""Where a lab keeps its runtime state: one directory per lab.

``/run/contiv/lab/<name>/`` holds ``state.json``, the etcd data and socket,
one directory per node (agent socket, log, CNI config) and the CNI plugin.
Network namespaces are named ``<name>-...`` so that ``lab down`` can find
every one of them even when the state file is gone.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from agent.errors import InvalidInput

LAB_ROOT = Path(os.environ.get("CONTIV_LAB_ROOT", "/run/contiv/lab"))
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")


def check_lab_name(name: str) -> str:
    # Short, because it prefixes namespace and interface names (≤ 15 bytes).
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"lab name {name!r} must be 1-8 lower-case letters/digits, "
                           "starting with a letter")
    return name


@dataclass(frozen=True)
class LabPaths:
    name: str

    @property
    def root(self) -> Path:
        return LAB_ROOT / self.name

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def etcd_dir(self) -> Path:
        return self.root / "etcd"

    @property
    def etcd_socket(self) -> str:
        # etcd names unix listeners HOST:PORT; the ":0" is part of the file name
        return str(self.root / "etcd.sock:0")

    @property
    def cni_bin(self) -> Path:
        return self.root / "cni" / "bin"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def agent_socket(self, node: str) -> str:
        return str(self.node_dir(node) / "agent.sock")

    def vpp_dir(self, node: str) -> Path:
        """A VPP node's VPP: its config, sockets and logs."""
        return self.node_dir(node) / "vpp"

    def stn_dir(self, node: str) -> Path:
        """Where ``contivctl stn --dir`` keeps a node's steals (its agent reads it)."""
        return self.node_dir(node) / "stn"

    def agent_log(self, node: str) -> Path:
        return self.node_dir(node) / "agent.log"

    def cni_conf_dir(self, node: str) -> Path:
        return self.node_dir(node) / "net.d"

    @property
    def responder_socket(self) -> str:
        return str(self.root / "responder.sock")

    @property
    def responder_log(self) -> Path:
        return self.root / "responder.log"

    # --- network namespaces ---
    @property
    def underlay_ns(self) -> str:
        return f"{self.name}-underlay"

    def node_ns(self, node: str) -> str:
        return f"{self.name}-{node}"

    def pod_ns(self, namespace: str, pod: str) -> str:
        return f"{self.name}-pod-{namespace}.{pod}"

    @property
    def ns_prefix(self) -> str:
        return f"{self.name}-"


def existing_labs() -> list[str]:
    try:
        return sorted(p.name for p in LAB_ROOT.iterdir() if (p / "state.json").exists())
    except FileNotFoundError:
        return []
