"""agent.nsenter: the one setns(2) wrapper, and its error.

Only failures are exercised here (they leave the calling thread where it
was, and need no root); entering real namespaces is in
tests/integration/test_nsenter.py."""
from __future__ import annotations

import errno

import pytest

from agent import nsenter


def test_a_failure_names_the_namespace():
    with open("/dev/null") as f, pytest.raises(OSError) as e:  # an fd, but not of a namespace
        nsenter.setns(f.fileno(), "/run/netns/pod-a")
    assert e.value.errno == errno.EINVAL
    assert "cannot enter network namespace /run/netns/pod-a" in str(e.value)


def test_a_failure_without_a_name_names_the_fd():
    with pytest.raises(OSError) as e:
        nsenter.setns(-1)
    assert e.value.errno == errno.EBADF and "network namespace at fd -1" in str(e.value)


def test_the_agent_and_the_lab_use_the_one_wrapper():
    from agent.linux import netns
    from lab import nsthread
    assert netns.setns is nsenter.setns and nsthread.in_netns is nsenter.in_netns


def test_in_netns_hands_back_the_failure_of_entering():
    with pytest.raises(OSError) as e:  # no such namespace file: nothing was entered
        nsenter.in_netns("/run/netns/contiv-test-no-such-namespace", lambda: 1)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        nsenter.socket_in("/run/netns/contiv-test-no-such-namespace", 2, 1)
