"""End to end: a ``lab up`` that does not finish -- killed, interrupted with
Ctrl-C, or with agents that miss the deadline -- leaves nothing behind that
``lab down`` (or the interrupted command itself) does not remove, and touches
nothing of a neighbour lab or the host. Each test gets a lab of its own.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from lab.cluster import _cmdline
from tests.e2e.labtools import (CLI, Neighbour, REPO, cli, host_links, lab_pids,
                                leftovers, netns_names, unique, wait_until)

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def _interactive_signals() -> None:
    """Ctrl-C as a terminal's job gets it: a suite started in the background
    by a non-interactive shell inherits SIGINT ignored (POSIX), and a Python
    started so never turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_up(name: str) -> subprocess.Popen:
    # its own process group, as a shell job would be: Ctrl-C goes to the group
    return subprocess.Popen(CLI + ["lab", "up", "--name", name, "--nodes", "2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_interactive_signals)


def _reached(name: str, stage: str) -> bool:
    if stage == "namespaces":
        return any(n.startswith(f"{name}-") for n in netns_names())
    return any("etcd" in _cmdline(p) for p in lab_pids(name))  # etcd started, agents next


@pytest.fixture
def half():
    """A lab name for a half-created lab, plus the host state before; always cleaned up."""
    name = unique("h")
    neighbour = Neighbour(name)
    links = host_links()
    procs: list[subprocess.Popen] = []
    try:
        neighbour.create()
        yield name, links, neighbour, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        from lab.cluster import Lab
        Lab(name).down()
        neighbour.remove()


def _up_until(half, stage: str) -> subprocess.Popen:
    """`lab up` of the half lab, running, once it has reached ``stage``."""
    name, _, _, procs = half
    p = _start_up(name)
    procs.append(p)
    wait_until(lambda: _reached(name, stage) or p.poll() is not None, f"lab up to reach {stage}")
    return p


def _assert_nothing_left(half) -> None:
    name, links, neighbour, _ = half
    assert leftovers(name).empty(), leftovers(name)
    assert host_links() == links
    assert neighbour.intact()


@pytest.mark.parametrize("stage", ["namespaces", "etcd"])
def test_down_cleans_up_after_up_was_killed(half, stage):
    name = half[0]
    p = _up_until(half, stage)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL, "lab up finished before it could be killed"
    left = leftovers(name)
    assert left.netns and left.files  # really half-created
    if stage == "etcd":
        assert left.processes
    r = cli("lab", "down", "--name", name, "-o", "json")
    assert r.returncode == 0, r.stderr
    removed = json.loads(r.stdout)
    assert removed["namespaces"] >= len(left.netns) and removed["files"] is True, removed
    assert removed["processes"] >= len(left.processes), removed
    _assert_nothing_left(half)


@pytest.mark.parametrize("stage", ["namespaces", "etcd"])
def test_ctrl_c_during_up_cleans_up_by_itself(half, stage):
    name = half[0]
    p = _up_until(half, stage)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err)  # 128 + SIGINT, as shells report it
    assert f"lab {name}: failed; cleaning up" in err and "Traceback" not in err, err
    # no `lab down`: the interrupted command removed what it had made
    _assert_nothing_left(half)


def test_agents_that_miss_the_deadline_are_quoted_before_the_clean_up(half):
    """The clean-up after a failed `lab up` removes the agents' logs, so the
    error must carry what they said; and nothing may be left behind."""
    name = half[0]
    # no Python agent answers its health check within 1 ms of being started
    r = cli("lab", "up", "--name", name, "--nodes", "1", "--timeout", "0.001")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"lab {name}: failed; cleaning up" in r.stderr
    assert "agents not ready after" in r.stderr and "node1 agent.log (end)" in r.stderr, r.stderr
    _assert_nothing_left(half)
