"""An etcd outage: the agents keep serving and keep the data plane, and once
etcd is back they resume watching and apply what was written meanwhile."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from agent.model import keys
from agent.model.records import AgentStatus
from lab.cluster import _pid_alive

pytestmark = pytest.mark.root


def _wait(pred, timeout=30.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_agents_resume_after_etcd_restart(lab2):
    st = lab2.state()
    os.kill(st.etcd_pid, signal.SIGTERM)
    _wait(lambda: not _pid_alive(st.etcd_pid), 10, "etcd to stop")
    # the agent still answers its API (the data plane is not its to tear down)
    time.sleep(1.5)
    nodes = lab2.client("node1").nodes()
    assert {n.name for n in nodes.nodes} == {"node1", "node2"}
    lab2._start_etcd(st)  # same data directory: the cluster state survives
    st.save(lab2.paths)
    store = lab2.store()
    try:
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "after-outage", "namespace": "default", "uid": "u1"},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.200.1", "selector": {"app": "x"},
                        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}
        rev = _wait(lambda: _try_put(store, keys.k8s_key("Service", "default", "after-outage"), svc),
                    20, "etcd to accept writes")

        def applied():
            out = {}
            for n in ("node1", "node2"):
                kv = store.get(keys.status_key(n))
                out[n] = AgentStatus.from_json(kv.value).applied_revision if kv else 0
            return all(r >= rev for r in out.values())
        _wait(applied, 30, "both agents to apply the write made after the outage")
        names = [s.service for s in lab2.client("node2").services().services]
        assert "default/after-outage" in names
        store.delete(keys.k8s_key("Service", "default", "after-outage"))
    finally:
        store.close()


def _try_put(store, key, obj):
    from agent.errors import Unavailable
    try:
        return store.put(key, json.dumps(obj).encode())
    except Unavailable:
        return 0
