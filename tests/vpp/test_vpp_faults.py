"""Faults on a VPP lab (real VPPs, real agents, real packets; root).

* VPP restarting under a running agent: CNI STATUS says not ready while it
  is gone, the agent resyncs when it is back (VPP comes back empty), and a
  connection across nodes works again.
* VPP not running when the agent starts: the agent holds its desired state,
  says why it is not ready, and programs everything once VPP appears.
* One object VPP refuses: that value is FAILED with VPP's error and retried;
  the others are programmed; once the cause is gone, the retry succeeds.
"""
from __future__ import annotations

import pytest

from agent.vpp.process import availability
from tests.e2e.labtools import kube_lab, wait_until

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp, pytest.mark.e2e,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]
NS = "faults"
WAIT = 30.0  # liveness bounds, not performance claims


def pod(name, node):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab",
                                                       "ports": [{"containerPort": 8080}]}]}}


@pytest.fixture(scope="module")
def env():
    with kube_lab([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                   pod("a", "node1"), pod("b", "node2")], "vpp", timeout=WAIT) as (lab, kube):
        yield lab, kube


def connects(kube, src="a", dst="b") -> bool:
    from lab.ops import run_probe  # noqa: PLC0415
    return run_probe(kube, f"{NS}/{src}", f"{NS}/{dst}", 8080, "TCP", 1.0).connected


def health(lab, node):
    """The agent's health, or None while it does not answer (starting)."""
    from agent.errors import Unavailable  # noqa: PLC0415
    try:
        return lab.client(node).health()
    except Unavailable:
        return None


def test_a_vpp_restart_under_a_running_agent_is_ridden_out(env):
    lab, kube = env
    assert connects(kube)
    lab.stop_vpp("node1")  # SIGKILL, as a crash
    h = wait_until(lambda: (lambda x: x if x is not None and not x.ready else None)(health(lab, "node1")),
              "CNI STATUS to say not ready while VPP is gone", 10)
    assert h.cni_status == 50 and "VPP" in h.message, h
    lab.start_vpp("node1")
    wait_until(lambda: (health(lab, "node1") or h).ready, "the agent to be ready with the new VPP")
    wait_until(lambda: connects(kube), "a connection across nodes after the resync")
    assert connects(kube, "b", "a")
    assert lab.client("node1").plan().operations == (), "the resync left drift"
    hist = lab.client("node1").history(limit=200).transactions
    assert any("(re)connected" in t.description for t in hist)


def test_an_agent_started_without_vpp_programs_everything_once_vpp_appears(env):
    lab, kube = env
    lab.stop_agent("node1")
    lab.stop_vpp("node1")
    lab.start_agent("node1")
    # (an answer in the instant between the API's start and readiness is "agent on node1 is starting")
    h = wait_until(lambda: (lambda x: x if x is not None and "is starting" not in x.message else None)(
        health(lab, "node1")), "the agent to answer without VPP")
    assert not h.ready and "VPP" in h.message, h
    held = [v for v in lab.client("node1").state().values if v.state == "pending"]
    assert held and all("waiting for the data plane" in v.reason for v in held if v.reason)
    assert not connects(kube)
    lab.start_vpp("node1")
    wait_until(lambda: (health(lab, "node1") or h).ready, "ready once VPP is there")
    wait_until(lambda: connects(kube), "the pods wired before to work again")
    assert lab.client("node1").plan().operations == ()


def test_one_object_vpp_refuses_fails_alone_and_is_retried(env):
    """A tunnel instance taken by somebody else: the agent's tunnel to node2
    fails with VPP's error, everything else is programmed; once the other
    tunnel goes, the retry succeeds."""
    from agent.vpp.papi import VppApi  # noqa: PLC0415
    lab, kube = env
    (ours,) = lab.client("node1").state(prefix="vpp/vxlan/vx-node2").values
    instance = ours.value["instance"]  # the tunnel's instance number: node2's index
    lab.stop_agent("node1")
    lab.stop_vpp("node1")
    lab.start_vpp("node1")
    sock = str(lab.paths.vpp_dir("node1") / "api.sock")
    with VppApi(sock) as api:
        args = api.fill("vxlan_add_del_tunnel_v3", is_add=True, instance=instance, src_address="192.0.2.1",
                        dst_address="192.0.2.2", vni=999, decap_next_index=0xFFFFFFFF,
                        mcast_sw_if_index=0xFFFFFFFF, src_port=4789, dst_port=4789)
        api.call("vxlan_add_del_tunnel_v3", **args)  # not ours: no tag
        lab.start_agent("node1")
        wait_until(lambda: health(lab, "node1"), "the agent to answer")

        def failed():
            vals = {v.key: v for v in lab.client("node1").state().values}
            v = vals.get("vpp/vxlan/vx-node2")
            return (v, vals) if v is not None and v.state == "failed" else None
        tunnel, values = wait_until(failed, "the agent's tunnel to node2 to fail")
        assert "vxlan_add_del_tunnel_v3" in tunnel.error, tunnel.error
        pod_if = [k for k in values if k.startswith("vpp/interface/p")]
        assert pod_if and all(values[k].state == "configured" for k in pod_if), \
            "the pod's own values are programmed regardless"
        api.call("vxlan_add_del_tunnel_v3", **{**args, "is_add": False})
    wait_until(lambda: connects(kube), "the retried tunnel to carry a connection", 45)
    assert lab.client("node1").plan().operations == ()
