"""Entering network namespaces for real (root): the agent's socket opener and
the lab's worker threads, both over agent.nsenter.setns, go in and leave no
thread of the caller behind (DESIGN.md rule 10)."""
from __future__ import annotations

import os
import subprocess

import pytest

from agent.errors import NotFound
from agent.linux.netns import Netlink
from lab.nsthread import in_netns

pytestmark = pytest.mark.root


def _inode(path: str) -> int:
    return os.stat(path).st_ino


@pytest.fixture
def netns():
    name = f"nsenter-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_the_lab_runs_a_function_inside_and_the_caller_stays_home(netns):
    home = _inode("/proc/thread-self/ns/net")
    assert in_netns(netns, lambda: _inode("/proc/thread-self/ns/net")) == _inode(netns)
    assert _inode("/proc/thread-self/ns/net") == home


def test_the_agent_opens_a_socket_inside_and_its_opener_goes_home(netns):
    nl = Netlink()
    try:
        home = _inode("/proc/thread-self/ns/net")
        links = [link.get_attr("IFLA_IFNAME") for link in nl.pod(netns).get_links()]
        assert links == ["lo"]  # the fresh namespace, not ours
        assert _inode("/proc/thread-self/ns/net") == home
        with pytest.raises(NotFound, match="/proc/self/status.*cannot enter network namespace /proc/self/status"):
            nl.pod("/proc/self/status")  # a file, not a namespace: named in the error
        # the opener thread went home after both
        assert _inode(f"/proc/self/task/{nl._opener._thread.native_id}/ns/net") == home
    finally:
        nl.close()
