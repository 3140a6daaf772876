"""IPAM against a real etcd: node subnets and pod addresses, including agents
racing from separate processes for the same addresses."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.errors import Exhausted, InvalidInput
from agent.ipam.pods import PodIPAM, check_valid_attachments
from agent.ipam.subnets import SubnetAllocator
from agent.model import keys
from agent.model.records import Allocation

pytestmark = pytest.mark.etcd

REPO = Path(__file__).resolve().parents[2]


def claims(store) -> dict[str, dict]:
    kvs, _ = store.list(keys.IPAM_IPS)
    return {kv.key[len(keys.IPAM_IPS):]: json.loads(kv.value) for kv in kvs}


def ip_of(alloc: Allocation) -> str:
    return str(ipaddress.ip_interface(alloc.ips[0]).ip)


# ====================================================================== subnets
def test_subnet_claim_is_sticky_and_unique_per_node(etcd_store):
    sa = SubnetAllocator(etcd_store)
    a, b = sa.claim("node-a"), sa.claim("node-b")
    assert (a.index, str(a.subnet), a.gateway) == (1, "10.1.1.0/24", "10.1.1.1")
    assert (b.index, str(b.subnet), b.gateway) == (2, "10.1.2.0/24", "10.1.2.1")
    # re-registration (same or a restarted agent's allocator) keeps the subnet
    assert sa.claim("node-a") == a
    assert SubnetAllocator(etcd_store).claim("node-b") == b
    assert SubnetAllocator(etcd_store).lookup("node-a") == a
    kvs, _ = etcd_store.list(keys.IPAM_SUBNETS)
    assert {kv.key for kv in kvs} == {keys.subnet_claim_key("10.1.1.0"),
                                      keys.subnet_claim_key("10.1.2.0")}


def test_released_subnet_is_claimed_again_lowest_first(etcd_store):
    sa = SubnetAllocator(etcd_store)
    sa.claim("node-a")
    sa.claim("node-b")
    assert sa.release("node-a") is True
    assert sa.release("node-a") is False
    assert sa.lookup("node-a") is None
    assert sa.claim("node-c").index == 1
    assert sa.claim("node-a").index == 3


def test_ipv6_pod_cidr(etcd_store):
    sa = SubnetAllocator(etcd_store, "fd00:10::/48", 64)
    n = sa.claim("node-a")
    assert (str(n.subnet), n.gateway) == ("fd00:10:0:1::/64", "fd00:10:0:1::1")


def test_tiny_pod_cidr_is_exhausted(etcd_store):
    sa = SubnetAllocator(etcd_store, "10.9.0.0/28", 30)
    got = [str(sa.claim(f"n{i}").subnet) for i in range(3)]
    # index 0 (10.9.0.0/30) is never handed out
    assert got == ["10.9.0.4/30", "10.9.0.8/30", "10.9.0.12/30"]
    with pytest.raises(Exhausted, match=r"no free /30 subnet left in pod CIDR 10.9.0.0/28"):
        sa.claim("n3")
    assert sa.lookup("n3") is None
    assert sa.claim("n1") is not None  # existing nodes still re-register


@pytest.mark.parametrize("pod_cidr,prefix,expect", [
    ("10.1.0.0/16", 25, InvalidInput("does not match pod CIDR 10.1.0.0/16 /25")),
    ("10.2.0.0/16", 24, InvalidInput("does not match pod CIDR 10.2.0.0/16 /24")),
    ("10.1.0.0/17", 24, "10.1.1.0/24"),  # still a /24 inside the pod CIDR: kept
    ("10.0.0.0/8", 24, "10.1.1.0/24"),
])
def test_node_holding_a_subnet_of_another_layout(etcd_store, pod_cidr, prefix, expect):
    SubnetAllocator(etcd_store, "10.1.0.0/16", 24).claim("node-a")
    other = SubnetAllocator(etcd_store, pod_cidr, prefix)
    if isinstance(expect, InvalidInput):
        with pytest.raises(InvalidInput, match=expect.message):
            other.claim("node-a")
        assert str(other.lookup("node-a").subnet) == "10.1.1.0/24"  # left as it was
    else:
        assert str(other.claim("node-a").subnet) == expect


@pytest.mark.parametrize("pod_cidr,prefix,match", [
    ("10.1.0.0/16", 16, r"/16 does not fit"),
    ("10.1.0.0/16", 8, r"/8 does not fit"),
    ("10.1.0.0/16", 31, r"/31 does not fit"),
    ("10.1.0.0/16", 33, r"/33 does not fit"),
    ("10.1.0.1/16", 24, r"pod CIDR '10.1.0.1/16' is invalid"),
    ("10.1.0.0/33", 24, r"pod CIDR '10.1.0.0/33' is invalid"),
    ("pods", 24, r"pod CIDR 'pods' is invalid"),
])
def test_subnet_allocator_rejects_bad_layouts(etcd_store, pod_cidr, prefix, match):
    with pytest.raises(InvalidInput, match=match):
        SubnetAllocator(etcd_store, pod_cidr, prefix)


# ====================================================================== pods
@pytest.fixture
def ipam(etcd_store):
    return PodIPAM(etcd_store, "node-a", "10.1.1.0/24", reserved=["10.1.1.1"])


@pytest.fixture
def small(etcd_store):
    """A /29: network .0, gateway .1, hosts .2-.6, broadcast .7."""
    return PodIPAM(etcd_store, "node-a", "10.1.1.0/29", reserved=["10.1.1.1"])


def test_the_nodes_own_address_is_set_aside_unless_a_pod_holds_it(etcd_store, small):
    """A VPP node's host sends from the subnet's last usable address
    (agent.builders.nodes.host_address): IPAM never hands it out -- but an
    allocation made before (an earlier version's) keeps it, and the node
    does without."""
    total = small.stats()["total"]
    assert small.set_aside("10.1.1.6") == "10.1.1.6"
    assert small.stats()["total"] == total - 1
    got = {small.allocate(f"c{i}", "eth0")[0].ips[0] for i in range(4)}
    assert got == {"10.1.1.2/32", "10.1.1.3/32", "10.1.1.4/32", "10.1.1.5/32"}
    with pytest.raises(Exhausted):
        small.allocate("c9", "eth0")
    # a fresh agent of this node, whose pod already holds the address
    other = PodIPAM(etcd_store, "node-b", "10.1.2.0/29", reserved=["10.1.2.1"])
    held = [other.allocate(f"d{i}", "eth0")[0] for i in range(5)][-1]
    assert held.ips == ("10.1.2.6/32",)
    again = PodIPAM(etcd_store, "node-b", "10.1.2.0/29", reserved=["10.1.2.1"])
    assert again.set_aside("10.1.2.6") == "" and again.get("d4", "eth0") == held


def test_allocation_is_idempotent_per_container_and_interface(etcd_store, ipam):
    a, created = ipam.allocate("c1", "eth0", netns="/proc/1/ns/net", pod_namespace="default",
                               pod_name="web-0")
    assert created
    assert a.ips == ("10.1.1.2/32",)
    assert (a.node, a.pod_ref, a.netns) == ("node-a", "default/web-0", "/proc/1/ns/net")
    again, created = ipam.allocate("c1", "eth0")
    assert (again, created) == (a, False)
    # a restarted agent (fresh instance) answers the same
    assert PodIPAM(etcd_store, "node-a", "10.1.1.0/24", reserved=["10.1.1.1"]).allocate(
        "c1", "eth0") == (a, False)
    second, created = ipam.allocate("c1", "eth1")
    assert created and second.ips != a.ips
    assert ipam.get("c1", "eth0") == a
    assert claims(etcd_store) == {
        "10.1.1.2": {"node": "node-a", "container_id": "c1", "ifname": "eth0"},
        ip_of(second): {"node": "node-a", "container_id": "c1", "ifname": "eth1"}}
    assert sorted(x.ifname for x in ipam.list()) == ["eth0", "eth1"]


def test_whole_subnet_is_handed_out_except_gateway_network_broadcast(etcd_store, small):
    got = [ip_of(small.allocate(f"c{i}", "eth0")[0]) for i in range(5)]
    assert sorted(got) == [f"10.1.1.{i}" for i in range(2, 7)]
    assert small.stats() == {"subnet": "10.1.1.0/29", "total": 5, "used": 5, "free": 0}
    with pytest.raises(Exhausted, match="no free pod address in 10.1.1.0/29 on node node-a"):
        small.allocate("c5", "eth0")
    assert small.get("c5", "eth0") is None
    assert sorted(claims(etcd_store)) == sorted(got)
    # idempotent ADD still answers when the pool is full
    assert small.allocate("c0", "eth0")[1] is False


def test_release_frees_and_next_fit_does_not_reuse_at_once(etcd_store, small):
    a = [small.allocate(f"c{i}", "eth0")[0] for i in range(3)]
    assert [ip_of(x) for x in a] == ["10.1.1.2", "10.1.1.3", "10.1.1.4"]
    assert small.release("c1", "eth0") == a[1]
    assert small.release("c1", "eth0") is None  # DEL is idempotent
    assert "10.1.1.3" not in claims(etcd_store)
    assert small.get("c1", "eth0") is None
    assert small.stats()["used"] == 2
    # the cursor moves on: .5 and .6 first, then it wraps around to the freed .3
    nxt = [ip_of(small.allocate(f"d{i}", "eth0")[0]) for i in range(3)]
    assert nxt == ["10.1.1.5", "10.1.1.6", "10.1.1.3"]
    with pytest.raises(Exhausted):
        small.allocate("d3", "eth0")


def test_address_claimed_by_someone_else_is_skipped(etcd_store, small):
    """The cluster-wide claim wins over what this instance believes is free."""
    etcd_store.put(keys.ip_claim_key("10.1.1.2"), b'{"node": "node-b"}')
    a, _ = small.allocate("c1", "eth0")
    assert ip_of(a) == "10.1.1.3"
    assert claims(etcd_store)["10.1.1.2"] == {"node": "node-b"}


def test_gc_releases_attachments_not_in_the_valid_list(etcd_store, ipam):
    for c in ("c1", "c2", "c3"):
        ipam.allocate(c, "eth0")
    ipam.allocate("c1", "net1")
    released = ipam.gc(check_valid_attachments([{"containerID": "c1", "ifname": "eth0"},
                                                {"containerID": "c3", "ifname": "eth0"}]))
    assert sorted((a.container_id, a.ifname) for a in released) == [("c1", "net1"), ("c2", "eth0")]
    assert sorted((a.container_id, a.ifname) for a in ipam.list()) == [("c1", "eth0"),
                                                                      ("c3", "eth0")]
    assert sorted(c["container_id"] for c in claims(etcd_store).values()) == ["c1", "c3"]
    assert ipam.gc([]) and ipam.list() == []  # an empty list means nothing is valid
    assert claims(etcd_store) == {}


def test_gc_without_list_releases_only_allocations_whose_netns_is_gone(etcd_store, ipam,
                                                                        tmp_path):
    live, dead = tmp_path / "live", tmp_path / "dead"
    live.touch()
    dead.touch()
    ipam.allocate("live", "eth0", netns=str(live))
    ipam.allocate("dead", "eth0", netns=str(dead))
    ipam.allocate("unknown", "eth0")  # no netns recorded: never guessed to be gone
    assert ipam.gc() == []
    dead.unlink()
    released = ipam.gc()
    assert [a.container_id for a in released] == ["dead"]
    assert sorted(a.container_id for a in ipam.list()) == ["live", "unknown"]
    assert ipam.gc() == []


@pytest.mark.parametrize("raw,match", [
    ({"containerID": "c1", "ifname": "eth0"}, "must be a list"),
    ([{"containerID": "c1"}], "string containerID and ifname"),
    ([{"containerID": 1, "ifname": "eth0"}], "string containerID and ifname"),
    (["c1/eth0"], "string containerID and ifname"),
])
def test_valid_attachments_are_checked(raw, match):
    with pytest.raises(InvalidInput, match=match):
        check_valid_attachments(raw)


@pytest.mark.parametrize("cid,ifname,match", [
    ("bad id", "eth0", "container ID"),
    ("c1", "x" * 16, "longer than 15 bytes"),
    ("c1", "a/b", "contains"),
])
def test_allocate_rejects_bad_names_before_touching_etcd(etcd_store, ipam, cid, ifname, match):
    r = etcd_store.revision()
    with pytest.raises(InvalidInput, match=match):
        ipam.allocate(cid, ifname)
    assert etcd_store.revision() == r


# ====================================================================== races
# Each worker is a separate process (its own etcd client, its own PodIPAM
# cache); it says "ready" once imported and connected, then waits for the
# go file so that all of them start at the same moment.
WORKER = textwrap.dedent("""
    import json, os, sys, time
    endpoint, go, mode, name, count = sys.argv[1:6]
    from agent.store.etcd import EtcdStore
    from agent.ipam.pods import PodIPAM
    from agent.ipam.subnets import SubnetAllocator
    store = EtcdStore(endpoint)
    store.revision()
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    if mode == "pods":
        ipam = PodIPAM(store, "race-node", "10.1.1.0/24", reserved=["10.1.1.1"])
        out = [ipam.allocate(f"{name}-c{i}", "eth0")[0].ips[0] for i in range(int(count))]
    else:
        out = [str(SubnetAllocator(store).claim(name).subnet)]
    print(json.dumps(out), flush=True)
""")


def race(endpoint: str, tmp_path: Path, mode: str, workers: dict[str, str],
         count: int = 1) -> dict[str, list[str]]:
    """Run one worker process per ``workers`` entry (label -> node or name
    prefix) at the same moment; return each one's output by label."""
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = {label: subprocess.Popen([sys.executable, "-c", WORKER, endpoint, str(go), mode,
                                      name, str(count)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for label, name in workers.items()}
    try:
        for label, p in procs.items():
            line = p.stdout.readline()
            assert line == "ready\n", f"worker {label} did not start: {line!r} {p.stderr.read()}"
        go.touch()
        out = {}
        for label, p in procs.items():
            stdout, stderr = p.communicate(timeout=60)
            assert p.returncode == 0, f"worker {label} failed: {stderr}"
            out[label] = json.loads(stdout)
        return out
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_processes_racing_for_the_same_subnet_never_share_an_address(etcd_endpoint,
                                                                     etcd_store, tmp_path):
    n, per = 6, 30
    t0 = time.monotonic()
    out = race(etcd_endpoint, tmp_path, "pods", {f"w{i}": f"w{i}" for i in range(n)}, per)
    assert time.monotonic() - t0 < 30
    everything = [ip for ips in out.values() for ip in ips]
    assert len(everything) == n * per
    assert len(set(everything)) == n * per, "an address was handed out twice"
    net = ipaddress.ip_network("10.1.1.0/24")
    addrs = {ipaddress.ip_interface(ip).ip for ip in everything}
    assert all(a in net for a in addrs)
    assert not addrs & {net.network_address, net.broadcast_address,
                        ipaddress.ip_address("10.1.1.1")}
    # etcd holds exactly one claim and one allocation per handed-out address,
    # and they agree with what each worker was told
    c = claims(etcd_store)
    assert len(c) == n * per
    allocs = PodIPAM(etcd_store, "race-node", "10.1.1.0/24").list()
    assert len(allocs) == n * per
    for a in allocs:
        worker = a.container_id.split("-")[0]
        assert a.ips[0] in out[worker]
        assert c[ip_of(a)] == {"node": "race-node", "container_id": a.container_id,
                               "ifname": "eth0"}


def test_nodes_registering_concurrently_get_distinct_subnets(etcd_endpoint, etcd_store,
                                                             tmp_path):
    nodes = [f"node-{i}" for i in range(6)]
    out = race(etcd_endpoint, tmp_path, "subnets", {n: n for n in nodes})
    subnets = [v[0] for v in out.values()]
    assert len(set(subnets)) == len(nodes)
    # no index is skipped: losers move on to the next free one
    assert sorted(subnets, key=ipaddress.ip_network) == [f"10.1.{i}.0/24" for i in range(1, 7)]
    sa = SubnetAllocator(etcd_store)
    assert {n: str(sa.lookup(n).subnet) for n in nodes} == {n: v[0] for n, v in out.items()}
    kvs, _ = etcd_store.list(keys.IPAM_SUBNETS)
    assert len(kvs) == len(nodes)


def test_one_node_registering_from_many_processes_gets_one_subnet(etcd_endpoint, etcd_store,
                                                                  tmp_path):
    """The same node from six processes (an agent restarted while the old one
    is still registering): one claim, and every process is told the same subnet."""
    out = race(etcd_endpoint, tmp_path, "subnets", {f"p{i}": "node-x" for i in range(6)})
    assert {v[0] for v in out.values()} == {"10.1.1.0/24"}
    kvs, _ = etcd_store.list(keys.IPAM_SUBNETS)
    assert len(kvs) == 1
    assert str(SubnetAllocator(etcd_store).lookup("node-x").subnet) == "10.1.1.0/24"
