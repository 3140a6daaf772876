"""Host plumbing for the lab through iproute2 (argument lists, never a shell).

The lab is a CLI-side tool, not the agent: it may call ``ip``; it never
touches a namespace it did not create (everything is prefixed with the lab name).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agent.errors import DataplaneError

NETNS_DIR = Path("/var/run/netns")


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise DataplaneError(f"{' '.join(cmd)}: {p.stderr.strip() or 'failed'}", op="ip",
                             args={"argv": cmd})
    return p


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    """Several ip commands in one process (``ip -batch``); much faster than one each."""
    if not lines:
        return
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    p = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if p.returncode != 0:
        raise DataplaneError(f"ip -batch: {p.stderr.strip() or 'failed'}", op="ip-batch",
                             args={"lines": lines})


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_add(name: str) -> None:
    if not netns_exists(name):
        ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def netns_del(name: str) -> None:
    if netns_exists(name):
        ip("netns", "del", name, check=False)


def netns_list(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def netns_pids(name: str) -> list[int]:
    """The pids of the processes in network namespace ``name`` (``ip netns pids``;
    none if it does not exist)."""
    p = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def tx_checksum_off(dev: str, netns: str | None = None) -> None:
    """Turn off TX checksum offload of ``dev`` (ethtool)."""
    cmd = ["ethtool", "-K", dev, "tx", "off"]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise DataplaneError(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}",
                             hint="apt-get install ethtool")
