"""A pod's memif without a VPP (unit tier): the annotation, the second
address (IPAM on a memory store), the CNI result, the VPP values and the
messages they become (checked against VPP 26.10's API definitions by the
recording fake, which is not a VPP: tests/vpp/test_vpp_memif.py runs the
real thing), and the policies that cover the memif too."""
from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest

from agent import podopts
from agent.cluster import ClusterSnapshot
from agent.errors import Exhausted
from agent.ipam.pods import PodIPAM
from agent.model import keys
from agent.store.memory import MemoryStore
from agent.vpp import render, values as vv
from agent.vpp.ifdesc import MemifSocketDescriptor
from agent.vpp.recorder import Recorder, default_api_dir
from tests.fakedataplane import FakeDataplane
from tests.unit import test_cnihandler as cnit
from tests.unit.test_vpp_core import POD, UPLINK, scheduler, transport

HAVE_DEFS = default_api_dir().is_dir()
needs_defs = pytest.mark.skipif(not HAVE_DEFS, reason="no VPP API definitions (../shared/vpp-api)")
MEMIF_POD = dataclasses.replace(POD, memif="10.1.1.3/32")


def pod_obj(annotations=None, ns="default", name="web-0"):
    md = {"name": name, "namespace": ns}
    if annotations is not None:
        md["annotations"] = annotations
    return {"metadata": md, "spec": {}, "status": {}}


# ------------------------------------------------------------------ the annotation
@pytest.mark.parametrize("value,want", [("true", True), ("True", True), (" false ", False),
                                        ("false", False)])
def test_the_annotation_says_true_or_false(value, want):
    assert podopts.pod_options(pod_obj({podopts.MEMIF: value})).memif is want


@pytest.mark.parametrize("obj", [None, pod_obj(), pod_obj({}), pod_obj({"contiv.io/other": "x"})])
def test_no_annotation_asks_for_nothing(obj):
    assert podopts.pod_options(obj) == podopts.NONE


@pytest.mark.parametrize("value", ["yes", "1", "", 1, None, True])
def test_any_other_value_is_an_error_naming_the_annotation(value):
    with pytest.raises(podopts.PodOptionError, match="contiv.io/memif"):
        podopts.pod_options(pod_obj({podopts.MEMIF: value}))


class NoReads(MemoryStore):
    def get(self, key):
        raise AssertionError(f"read {key} although the snapshot had it")


def test_the_pod_comes_from_the_snapshot_else_from_etcd():
    snap, obj = ClusterSnapshot(), pod_obj({podopts.MEMIF: "true"})
    snap.objects["pod"][("default", "web-0")] = obj
    assert podopts.mirrored_pod(snap, NoReads(), "default", "web-0") is obj
    store = MemoryStore()
    store.put(keys.k8s_key("pod", "default", "late"), json.dumps(pod_obj(name="late")).encode())
    store.put(keys.k8s_key("pod", "default", "bad"), b"{not json")
    empty = ClusterSnapshot()
    assert podopts.mirrored_pod(empty, store, "default", "late")["metadata"]["name"] == "late"
    assert podopts.mirrored_pod(empty, store, "default", "bad") is None
    assert podopts.mirrored_pod(empty, store, "default", "nobody") is None
    assert podopts.mirrored_pod(empty, NoReads(), "", "podman-name") is None, "no namespace: no pod"
    assert podopts.mirrored_pod(empty, NoReads(), "default", "Not_A_Name") is None, "no such pod"


# ------------------------------------------------------------------ IPAM
def test_a_memif_takes_a_second_address_in_the_same_transaction():
    store = MemoryStore()
    ipam = PodIPAM(store, "n1", "10.1.1.0/29", reserved=["10.1.1.1"])
    alloc, created = ipam.allocate("c1", "eth0", memif=True)
    assert created and alloc.ips == ("10.1.1.2/32",) and alloc.memif == "10.1.1.3/32"
    claims = {kv.key for kv in store.list(keys.IPAM_IPS)[0]}
    assert claims == {keys.ip_claim_key("10.1.1.2"), keys.ip_claim_key("10.1.1.3")}
    plain, _ = ipam.allocate("c2", "eth0")
    assert plain.ips == ("10.1.1.4/32",) and plain.memif == ""
    assert "memif" not in json.loads(plain.to_json()), "the record keeps its shape without one"
    assert ipam.release("c1", "eth0").memif == "10.1.1.3/32"
    assert {kv.key for kv in store.list(keys.IPAM_IPS)[0]} == {keys.ip_claim_key("10.1.1.4")}
    assert ipam.stats()["used"] == 1


def test_a_pair_half_taken_by_another_writer_moves_on_to_the_next_pair():
    store = MemoryStore()
    ipam = PodIPAM(store, "n1", "10.1.1.0/28", reserved=["10.1.1.1"])
    ipam.stats()  # loaded: the other writer's claim is news to it
    store.put(keys.ip_claim_key("10.1.1.3"), b"{}")
    alloc, created = ipam.allocate("c1", "eth0", memif=True)
    assert created and (alloc.ips[0], alloc.memif) == ("10.1.1.4/32", "10.1.1.5/32")
    assert ipam.allocate("c2", "eth0")[0].ips == ("10.1.1.6/32",), "10.1.1.2 free, the cursor moved on"


def test_reserve_and_commit_carry_the_memif_and_a_full_pool_says_so():
    store = MemoryStore()
    ipam = PodIPAM(store, "n1", "10.1.1.0/30", reserved=["10.1.1.1"])  # one free address
    assert ipam.reserve("c1", "eth0", memif=True) is None, "no pair: allocate answers"
    with pytest.raises(Exhausted):
        ipam.allocate("c1", "eth0", memif=True)
    ipam = PodIPAM(MemoryStore(), "n1", "10.1.1.0/29", reserved=["10.1.1.1"])
    r = ipam.reserve("c1", "eth0", memif=True)
    assert r.memif and ipam.commit(r)
    assert ipam.get("c1", "eth0") == r


# ------------------------------------------------------------------ CNI
class Env(cnit.Env):
    """test_cnihandler's, on a data plane with (or without) memifs, and
    a mirrored pod ``default/web-0`` asking for one."""

    def __init__(self, tmp_path, memif: bool, annotation="true"):
        super().__init__(tmp_path)
        self.plane = FakeDataplane(self.kernel, memif=memif)
        self.podnet.plane = self.plane
        self.podnet.pod_object = lambda ns, name: pod_obj({podopts.MEMIF: annotation}, ns, name)

    def add(self, version="1.1.0"):
        return self.call("ADD", version, CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_the_cni_result_names_the_memif_and_its_address(tmp_path, version):
    env = Env(tmp_path, memif=True)
    code, body = env.add(version)
    assert code == 0, body
    memif = body["interfaces"][2]
    assert memif["name"] == "memif-eth0" and memif["sandbox"] == env.netns
    assert memif.get("socketPath") == ("@fake/memif" if version == "1.1.0" else None)
    assert "mtu" not in memif and "mac" not in memif
    pod_ip, memif_ip = body["ips"]
    assert pod_ip["interface"] == 1 and pod_ip["address"] == "10.1.1.2/32", "the pod's address first"
    assert memif_ip["interface"] == 2 and memif_ip["address"] == "10.1.1.3/32" and "gateway" not in memif_ip
    assert env.claims() == ["10.1.1.2", "10.1.1.3"]
    # CHECK with that result as prevResult passes; DEL gives both back
    prev = {"cniVersion": version, **{k: body[k] for k in ("interfaces", "ips")}}
    assert env.call("CHECK", version, conf={"prevResult": prev})[0] == 0
    assert env.call("DEL", version)[0] == 0 and env.claims() == []


def test_a_memif_on_a_plane_without_them_is_code_102_and_allocates_nothing(tmp_path):
    env = Env(tmp_path, memif=False)
    cnit.assert_error(env.add(), 102, r"memif.*this node's data plane \(fake\) does not give: a memif needs VPP")
    assert env.claims() == [] and env.kernel.links == {}


def test_a_malformed_annotation_is_code_102_and_allocates_nothing(tmp_path):
    env = Env(tmp_path, memif=True, annotation="maybe")
    cnit.assert_error(env.add(), 102, "contiv.io/memif: 'maybe'")
    assert env.claims() == []


@pytest.mark.parametrize("found", ["nothing", "an older pod"])
def test_a_pod_not_mirrored_yet_gets_no_memif_and_the_log_says_so(tmp_path, caplog, found):
    env = Env(tmp_path, memif=True)
    old = pod_obj({podopts.MEMIF: "true"})
    old["metadata"]["uid"] = "old-uid"
    env.podnet.pod_object = lambda ns, name: None if found == "nothing" else old
    code, body = env.call("ADD", CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=new")
    assert code == 0 and len(body["ips"]) == 1, body
    assert "pod default/web-0 is not in the cluster state this agent mirrors" in caplog.text


def test_the_pod_of_the_right_uid_gets_its_memif(tmp_path):
    env = Env(tmp_path, memif=True)
    obj = pod_obj({podopts.MEMIF: "true"})
    obj["metadata"]["uid"] = "u1"
    env.podnet.pod_object = lambda ns, name: obj
    code, body = env.call("ADD", CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u1")
    assert code == 0 and len(body["ips"]) == 2, body


@needs_defs
def test_a_vpp_without_the_memif_messages_serves_pods_but_refuses_memifs():
    from agent.vpp import messages  # noqa: PLC0415
    from agent.vpp.plane import VppDataplane  # noqa: PLC0415

    class Connected(Recorder):
        def reconnect(self):
            pass

        def version(self):
            return "26.10"
    Recorder().require(messages.MEMIF)  # VPP 26.10 has them all
    plane = VppDataplane()
    plane.api = Connected()
    plane._try_connect()
    assert plane.supports_memif and plane.ready() == ""
    plane.api.hide("memif_create_v2")
    plane._try_connect()
    assert not plane.supports_memif and plane.ready() == "", "every other pod is served"
    # and a resync asks such a VPP nothing of memifs
    from agent.vpp.base import Interfaces  # noqa: PLC0415
    from agent.vpp.descriptors import core  # noqa: PLC0415
    rec = Recorder()
    for d in core(rec, Interfaces(), ("10.1.0.0/16",), lambda: plane.supports_memif)[:3]:
        d.retrieve({}, None)
    assert not [n for n in rec.names() if n.startswith("memif")]


def test_a_pod_without_the_annotation_gets_one_address(tmp_path):
    env = Env(tmp_path, memif=True, annotation="false")
    code, body = env.add()
    assert code == 0 and len(body["ips"]) == 1 and len(body["interfaces"]) == 2, body


# ------------------------------------------------------------------ VPP values and messages
def test_the_memif_is_a_socket_in_the_pods_namespace_and_a_routed_interface():
    v = render.render_pod(MEMIF_POD)
    name = vv.memif_ifname("10.1.1.2")
    assert name == "m0a010102"
    sid = int(ipaddress.ip_address("10.1.1.3"))
    assert v[vv.memifsock_key(sid)] == vv.MemifSocket(sid, "abstract:contiv/memif-eth0,netns_name=p1")
    iface = v[vv.interface_key(name)]
    assert (iface.kind, iface.instance, iface.needs) == ("memif", sid, vv.memifsock_key(sid))
    assert iface.mtu == POD.mtu, "the overlay's MTU, as the pod's eth0"
    assert v[vv.unnumbered_key(name)] == vv.Unnumbered(name, "loop0")
    assert v[vv.route_key(0, "10.1.1.3/32")] == vv.Route("10.1.1.3/32", name, "10.1.1.3")
    assert vv.proxyarpif_key(name) in v
    assert not [k for k in v if k.startswith("vpp/neighbor/" + name)], "the slave's MAC is the slave's"
    assert set(render.render_pod(POD)) < set(v), "everything else as for any pod"


@pytest.mark.parametrize("netns,want", [("/var/run/netns/cni-1", "cni-1"), ("/run/netns/cni-1", "cni-1"),
                                        ("/proc/42/ns/net", "/proc/42/ns/net"),
                                        ("/var/run/netns/a/b", "/var/run/netns/a/b")])
def test_the_socket_names_the_namespace_as_briefly_as_vpp_reads_it(netns, want):
    assert render.memif_socket(netns, "eth0") == f"abstract:contiv/memif-eth0,netns_name={want}"


@pytest.mark.parametrize("netns,ifname,match", [
    ("/proc/1/ns/net,x", "eth0", "network namespace of letters"),   # VPP: another option
    ("/var/run/netns/pod a", "eth0", "network namespace of letters"),
    ("/var/run/netns/p1", "eth@0", "interface name of letters"),
    ("/x" * 60, "eth0", "longer than VPP's 107 bytes"),
])
def test_a_socket_vpp_would_misread_or_cut_is_refused_as_the_pods_error(netns, ifname, match):
    from agent.errors import InvalidInput, PodOptionError  # noqa: PLC0415
    with pytest.raises(PodOptionError, match=match):
        render.memif_socket(netns, ifname)
    desc = MemifSocketDescriptor(None, None)
    with pytest.raises(InvalidInput, match="longer than 107"):
        desc.validate(vv.memifsock_key(5), vv.MemifSocket(5, vv.MEMIF_SOCKET_PREFIX + "x" * 90))
    with pytest.raises(InvalidInput, match="not one of ours"):
        desc.validate(vv.memifsock_key(5), vv.MemifSocket(5, "/run/vpp/memif.sock"))


def test_a_socket_vpp_cannot_open_fails_the_add_with_code_102_and_leaks_nothing(tmp_path):
    class Vppish(FakeDataplane):  # renders as VPP's does: the socket checked first
        def render_pod(self, p):
            if p.memif:
                render.memif_socket(p.netns, p.ifname)
            return super().render_pod(p)
    env = Env(tmp_path, memif=True)
    env.plane = Vppish(env.kernel, memif=True)
    env.podnet.plane = env.plane
    bad = tmp_path / "ns,x"
    bad.touch()
    cnit.assert_error(env.call("ADD", CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
                               CNI_NETNS=str(bad)), 102, "network namespace of letters")
    assert env.claims() == [] and env.kernel.links == {}


@needs_defs
def test_programming_and_removing_a_memif_sends_only_valid_messages():
    rec = Recorder()
    s = scheduler(rec)
    node = render.render_node(transport(), UPLINK)
    res = s.apply({**node, **render.render_pod(MEMIF_POD)})
    assert res.ok, res.errors
    names = rec.names()
    assert names.index("memif_socket_filename_add_del_v2") < names.index("memif_create_v2")
    (create,) = rec.calls_to("memif_create_v2")
    assert (create["role"], create["mode"], create["id"]) == (0, 0, 0), "master, ethernet, id 0"
    assert create["socket_id"] == int(ipaddress.ip_address("10.1.1.3"))
    assert "contiv:m0a010102" in {c["tag"] for c in rec.calls_to("sw_interface_tag_add_del")}
    rec.clear()
    assert s.replace(node).ok
    assert rec.names().index("memif_delete") < rec.names().index("memif_socket_filename_add_del_v2")
    (gone,) = rec.calls_to("memif_socket_filename_add_del_v2")
    assert gone["is_add"] in (False, 0)


@needs_defs
def test_the_memif_is_made_in_interrupt_mode_and_vpps_default_put_back():
    class Polling(Recorder):  # VPP's default default: polling
        def call(self, name, /, **kw):
            reply = super().call(name, **kw)
            return reply._replace(mode=1) if name == "sw_interface_get_default_rx_mode" else reply
    rec = Polling()
    assert scheduler(rec).apply({**render.render_node(transport(), UPLINK), **render.render_pod(MEMIF_POD)}).ok
    modes = [c["mode"] for c in rec.calls_to("sw_interface_set_default_rx_mode")]
    assert modes == [2, 1], "interrupt while the memif is made, polling again after"
    order = rec.names()
    assert order.index("memif_create_v2") < len(order) - order[::-1].index("sw_interface_set_default_rx_mode")


@needs_defs
def test_a_memif_is_retrieved_from_vpps_dumps():
    rec = Recorder()
    s = scheduler(rec)
    assert s.apply({**render.render_node(transport(), UPLINK), **render.render_pod(MEMIF_POD)}).ok
    sid = int(ipaddress.ip_address("10.1.1.3"))
    (sw,) = [i for i, d in rec.interfaces.items() if d.get("tag") == "contiv:m0a010102"]
    rec.seed("memif_dump", {"sw_if_index": sw, "socket_id": sid, "id": 0})
    rec.seed("memif_socket_filename_dump", {"socket_id": 0, "socket_filename": "/run/vpp/memif.sock"},
             {"socket_id": sid, "socket_filename": render.memif_socket("/run/netns/p1", "eth0")})
    descs = {d.name: d for d in s.descriptors}
    socks = descs["vpp-memif-socket"].retrieve({}, None)
    assert [r.key for r in socks] == [vv.memifsock_key(sid)], "VPP's default socket is not ours"
    found = {r.key: r.value for r in descs["vpp-interface"].retrieve({}, None)}
    assert found[vv.interface_key("m0a010102")].kind == "memif"
    assert found[vv.interface_key("m0a010102")].needs == vv.memifsock_key(sid)


# ------------------------------------------------------------------ policies
@needs_defs
def test_a_pods_policies_go_on_its_memif_too():
    from tests.unit.test_vpp_policies import Node, snapshot  # noqa: PLC0415
    from tests.unit.test_policy_compiler import pod_object  # noqa: PLC0415
    from agent.vpp.poldesc import acllist_key  # noqa: PLC0415
    pods = [pod_object({"ref": "x/a", "ip": "10.1.1.2", "node": "node1", "labels": {"app": "a"}, "ports": []}),
            pod_object({"ref": "x/b", "ip": "10.1.1.4", "node": "node1", "labels": {}, "ports": []})]
    pol = {"metadata": {"name": "deny", "namespace": "x"},
           "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"]}}
    n = Node(snapshot({"x": {}}, pods, [pol]))
    n.renderer = type(n.renderer)(lambda: ["192.168.56.11"], lambda ip: ip == "10.1.1.2")
    n.sync.r = n.renderer
    n.sched.apply({vv.interface_key("m0a010102"): "m0a010102"})
    n.up()
    part = n.desired.partition("polpod/x/a")
    eth0, memif = part[acllist_key("p0a010102")], part[acllist_key("m0a010102")]
    assert (memif.ingress, memif.egress) == (eth0.ingress, eth0.egress) and eth0.ingress
    assert n.desired.partition("polpod/x/b") == {}, "b is not isolated"
