"""The agent and a reflected Node object: its podCIDR and InternalIP, and
which wins over what (docs/etcd-layout.md, "Node facts")."""
from __future__ import annotations

import json

import pytest

from agent.builders.nodes import node_object_facts, with_node_object
from agent.config import AgentConfig
from agent.errors import InvalidInput
from agent.ipam.subnets import SubnetAllocator
from agent.store.memory import MemoryStore


def node(cidr=None, cidrs=None, ips=()):
    spec = {**({"podCIDR": cidr} if cidr else {}), **({"podCIDRs": cidrs} if cidrs else {})}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": spec,
            "status": {"addresses": [{"type": t, "address": a} for t, a in ips]}}


def test_the_facts_a_node_object_states_ipv4_only():
    assert node_object_facts(json.dumps(node("10.1.5.0/24", ips=[("Hostname", "n1"),
                                                                   ("InternalIP", "192.168.56.7")])).encode()) \
        == ("10.1.5.0/24", "192.168.56.7")
    assert node_object_facts(node(cidrs=["fd00::/64", "10.1.6.0/24"], ips=[("InternalIP", "fd00::1")])) \
        == ("10.1.6.0/24", None)
    assert node_object_facts(None) == (None, None)
    assert node_object_facts(b"not json") == (None, None)
    assert node_object_facts(node("10.1.5.1/24")) == (None, None)  # not a network address


def test_the_internal_ip_is_the_underlay_address_unless_the_operator_chose_one():
    cfg = AgentConfig(node="n1")
    raw = json.dumps(node("10.1.5.0/24", ips=[("InternalIP", "192.168.56.7")])).encode()
    got, cidr = with_node_object(cfg, raw)
    assert (got.node_ip, cidr) == ("192.168.56.7", "10.1.5.0/24")
    assert with_node_object(AgentConfig(node="n1", node_ip="192.168.56.9"), raw)[0].node_ip == "192.168.56.9"
    assert with_node_object(AgentConfig(node="n1", underlay_if="eth1"), raw)[0].node_ip == ""


def test_the_pod_cidr_is_claimed_and_a_held_subnet_wins_over_a_changed_one():
    store = MemoryStore()
    sa = SubnetAllocator(store, "10.1.0.0/16", 24)
    assert str(sa.claim("n1", "10.1.5.0/24").subnet) == "10.1.5.0/24"
    assert sa.claim("n1", "10.1.5.0/24").index == 5
    assert str(sa.claim("n1", "10.1.9.0/24").subnet) == "10.1.5.0/24"  # its pods have addresses there
    assert str(sa.claim("n2").subnet) == "10.1.1.0/24"  # no podCIDR: the lowest free one
    with pytest.raises(InvalidInput, match="claimed by another node"):
        sa.claim("n3", "10.1.5.0/24")


@pytest.mark.parametrize("wanted", ["10.2.0.0/24", "10.1.0.0/25", "10.1.0.0/24", "garbage"])
def test_a_pod_cidr_that_cannot_be_used_here_falls_back_to_our_own_choice(wanted):
    sa = SubnetAllocator(MemoryStore(), "10.1.0.0/16", 24)
    assert str(sa.claim("n1", wanted).subnet) == "10.1.1.0/24"
