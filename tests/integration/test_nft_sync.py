"""A large nftables sync, pipelined, against the kernel (root).

A start-up sync commits its netlink pieces on a worker thread while it encodes
the next ones (agent/linux/nft/pipeline.py). Here the agent's own renderer and
descriptors program 2,500 Services (each with endpoints on this node and on
others) into a fresh network namespace twice -- in pieces, and as one piece --
and the kernel must end up holding exactly the same ruleset; and a restarted
agent that moves one endpoint of every Service ends where a fresh sync does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import json, sys
from agent.cluster import ClusterSnapshot
from agent.desired import DesiredState
from agent.linux import svcrender
from agent.linux.nft import descriptors as nd
from agent.linux.nft.lib import Nftables
from agent.model import keys
from agent.reconciler import Scheduler
from agent.linux.svcstate import NftServiceRenderer
from agent.services import ServiceSync
from agent.store.base import Event

n_services, piece, variant = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
snap = ClusterSnapshot()
rev = 0
for i in range(n_services):
    name, ip = f"s{i:05d}", f"10.96.{i // 250}.{i % 250 + 1}"
    svc = {"metadata": {"name": name, "namespace": "bench"},
           "spec": {"type": "NodePort" if i % 7 == 0 else "ClusterIP", "clusterIP": ip,
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                               **({"nodePort": 30000 + i} if i % 7 == 0 else {})}]}}
    eps = [{"addresses": [f"10.{128 + variant * (j == 1)}.{(i * 5 + j) // 250}.{(i * 5 + j) % 250 + 1}"],
            "nodeName": "node1" if j == 0 else "node2", "conditions": {"ready": True}}
           for j in range(5)]
    sl = {"metadata": {"name": name + "-0", "namespace": "bench",
                       "labels": {"kubernetes.io/service-name": name}},
          "addressType": "IPv4", "endpoints": eps,
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    for kind, obj in (("service", svc), ("endpointslice", sl)):
        rev += 1
        snap.apply(Event(keys.k8s_key(kind, "bench", obj["metadata"]["name"]),
                         json.dumps(obj).encode(), rev))
desired = dict(svcrender.render_base("192.168.56.10", "eth0"))
for part in ServiceSync(snap, DesiredState(Scheduler()), "node1", NftServiceRenderer()).partitions().values():
    desired.update(part)
nd.NftBatch.PIECE = piece
descs = nd.descriptors(Nftables())
out = {}
if len(sys.argv) > 4:  # "prefetch": list the table ahead, then change one element first
    descs[0].batch_group.prefetch()
    if sys.argv[4] == "change-first":
        descs[0].batch_group._prefetch._thread.join()  # the listing predates the change
        from agent.reconciler.plan import Operation, OpKind
        from agent.linux.nft.values import NftElement, element_key
        (ed,) = [d for d in descs if d.name == "nft-element"]
        el = NftElement("svc-noep-np", "tcp . 39999")
        out["change"] = str(ed.batch_group.apply(
            [Operation(OpKind.CREATE, element_key(el.set, el.key), el, "test")], [ed], None))
res = Scheduler(descs).resync(desired, description="test")
out.update({"errors": {k: str(v) for k, v in res.errors.items()},
            "operations": [f"{o.kind.value} {o.key}" for o in res.plan.operations]})
print(json.dumps(out))
"""


def _netns(name: str):
    subprocess.run(["ip", "netns", "add", name], check=True)


def _sync(netns: str, services: int, piece: int, variant: int = 0, *prefetch: str) -> dict:
    p = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", WORKER, str(services),
                        str(piece), str(variant), *prefetch], capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _ruleset(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "ip", "contiv"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def two_namespaces():
    names = [f"nftsync-{os.getpid()}-{k}" for k in ("pieces", "whole")]
    try:
        for n in names:
            _netns(n)
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


def test_a_pipelined_sync_programs_exactly_what_one_piece_does(two_namespaces):
    pieces, whole = two_namespaces
    a = _sync(pieces, 2500, 500)  # ~10 pieces: the worker thread runs
    b = _sync(whole, 2500, 10**9)  # one piece, on the caller's thread
    assert a["errors"] == {} and b["errors"] == {}, (a, b)
    assert len(a["operations"]) == len(b["operations"]) > 5000
    rules_a, rules_b = _ruleset(pieces), _ruleset(whole)
    assert rules_a == rules_b
    # what was rendered is there: a cluster IP of the last Service, a node port
    assert "10.96.9.250 . tcp . 80" in rules_a and "30000" in rules_a


def test_a_pipelined_resync_that_changes_endpoints_equals_a_fresh_sync(two_namespaces):
    """A restarted agent finds the old state (retrieve) and moves one endpoint
    of every Service: thousands of element updates, in pieces."""
    changed, fresh = two_namespaces
    assert _sync(changed, 2500, 10**9)["errors"] == {}
    moved = _sync(changed, 2500, 500, variant=1)
    assert moved["errors"] == {} and len(moved["operations"]) >= 2500, moved["errors"]
    assert _sync(fresh, 2500, 10**9, variant=1)["errors"] == {}
    rules = _ruleset(changed)
    assert rules == _ruleset(fresh)
    assert "10.129.0.2" in rules and "10.128.0.2 " not in rules


def test_a_prefetched_listing_serves_the_retrieve_unless_a_change_came_first(two_namespaces):
    """The agent lists its table on a thread at start-up (NftBatch.prefetch):
    the start-up resync must find everything in place through it -- and a
    transaction in between must make it list afresh, not trust the old one."""
    ns, _ = two_namespaces
    assert _sync(ns, 300, 10**9)["errors"] == {}
    same = _sync(ns, 300, 10**9, 0, "prefetch")
    assert same["errors"] == {} and same["operations"] == [], same
    # an element of ours added after the prefetch: the resync must see it and remove it
    changed = _sync(ns, 300, 10**9, 0, "change-first")
    assert changed["change"] == "[None]", changed
    assert changed["errors"] == {} and changed["operations"] == [
        "delete nft/elements/svc-noep-np/~unowned"], changed
    assert "39999" not in _ruleset(ns)
