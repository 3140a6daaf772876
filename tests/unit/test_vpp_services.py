"""Services -> cnat translations and the messages they cost, without a VPP.

Every Service goes the agent's way -- ``ServiceSync`` builds its ports, the
VPP data plane's ``CnatServiceRenderer`` renders them, a ``Scheduler`` over
the VPP descriptors applies them -- onto the unit tier's ``Recorder``, which
checks each message against VPP 26.10's API definitions and has vpp_papi
encode it (it is not a VPP: what VPP does with them is tests/vpp's job).

Checked: what every kind of Service becomes (table-driven), that a change
costs one message per frontend, that rendering is deterministic and a rebuild
from scratch changes nothing, that a failing request fails only its value,
which objects ``retrieve`` takes for ours, and the session records.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState
from agent.errors import InvalidInput
from agent.reconciler import Descriptor, Retrieved, Scheduler
from agent.services import ServiceSync
from agent.vpp import services as S
from agent.vpp import svcdesc as D
from agent.vpp.recorder import Recorder

API_DIR = Path(__file__).parents[3] / "shared" / "vpp-api"
pytestmark = pytest.mark.skipif(not API_DIR.is_dir(),
                                reason=f"VPP API definitions not found at {API_DIR}")
OWNED = ("10.1.0.0/16", "10.96.0.0/12")
ME, PEER = "192.168.77.101", "192.168.77.102"
REJECT = "10.111.255.255"  # the Service CIDR's last address
PODS = {"a": ("node1", "10.1.1.2"), "b": ("node1", "10.1.1.3"), "c": ("node2", "10.1.2.2")}


class FakeLinux(Descriptor):
    """The pods' Linux side (veth, routes in the pod): a dict, same protocol."""

    def __init__(self, prefix: str) -> None:
        self.key_prefix, self.name, self.held = prefix, "fake-" + prefix, {}

    def create(self, key, value, ctx):
        self.held[key] = value
        return {}

    def delete(self, key, value, metadata, ctx):
        self.held.pop(key, None)

    def retrieve(self, correlate, ctx):
        return [Retrieved(k, v, {}) for k, v in self.held.items()]


def vpp_descriptors(api, owned):
    """The data plane's VPP descriptors, as the plane registers them."""
    from agent.vpp.descriptors import descriptors  # noqa: PLC0415
    return descriptors(api, owned)


class Rig:
    """Node 1 of a two-node cluster, with its local pods a and b."""

    def __init__(self) -> None:
        from agent.builders.nodes import NodeTransport, Peer, vtep_mac  # noqa: PLC0415
        from agent.builders.pods import PodAttachment  # noqa: PLC0415
        from agent.model.records import NodeInfo  # noqa: PLC0415
        from agent.vpp import render  # noqa: PLC0415
        from agent.vpp.values import pod_ifname  # noqa: PLC0415
        self.rec = Recorder(API_DIR)
        self.descs = vpp_descriptors(self.rec, OWNED)
        self.sched = Scheduler([FakeLinux("linux/veth/"), FakeLinux("linux/podroute/"), *self.descs])
        me = NodeInfo("node1", 1, ME, ("10.1.1.0/24",), ("10.1.1.1",), vtep_mac(1), "vpp")
        t = NodeTransport(me, (Peer("node2", PEER, vtep_mac(2), ("10.1.2.0/24",), ("10.1.2.1",)),),
                          10, 4789, 1450, "vpp0")
        values = {**render.render_node(t, render.Uplink("vpp0", f"{ME}/24")),
                  **S.node_values(render.BVI, "10.96.0.0/12")}
        self.snap = ClusterSnapshot()
        for name, (node, ip) in PODS.items():
            self.snap.objects["pod"][("default", name)] = {
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node}, "status": {"podIP": ip}}
            if node == "node1":
                values.update(render.render_pod(PodAttachment(
                    "c" + name * 9, "eth0", f"/run/netns/{name}", (f"{ip}/32",), ("10.1.1.1",),
                    1450, f"default/{name}")))
                values.update(S.pod_values(pod_ifname(ip)))
        res = self.sched.apply(values)
        assert res.ok and not res.plan.pending, (res.errors, res.plan.pending)
        self.desired = DesiredState(self.sched)
        self.renderer = S.CnatServiceRenderer(lambda: [ME], "10.96.0.0/12", [PEER])
        self.sync = ServiceSync(self.snap, self.desired, "node1", self.renderer)
        self.rec.clear()

    def put(self, name: str, spec: dict, eps=("a", "c"), status=None, ports=None) -> None:
        """Service ``name`` with endpoints on pods ``eps`` (port 8080)."""
        self.snap.objects["service"][("default", name)] = {
            "metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status or {}}
        self.snap.objects["endpointslice"][("default", name)] = {
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": ports or [{"name": p.get("name", ""), "port": 8080,
                                "protocol": p.get("protocol", "TCP")} for p in spec["ports"]],
            "endpoints": [{"addresses": [PODS[p][1]], "nodeName": PODS[p][0],
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": p}}
                          for p in eps]}
        self.sync.on_change(Change("service", "default", name, False))
        self.sync.on_change(Change("endpointslice", "default", name, False))

    def flush(self) -> None:
        self.sync.flush()

    def partition(self, name: str) -> dict:
        return self.desired.partition(f"svc/default/{name}")

    def states(self, name: str) -> set[str]:
        values = self.partition(name)
        return set(self.sched.states_of(values).values())


@pytest.fixture
def rig():
    return Rig()


def text(values: dict) -> dict[str, str]:
    """Translations as ``key -> "paths [fib] [affinity]"``, to read at a glance."""
    out = {}
    for k, v in values.items():
        if not isinstance(v, D.CnatTranslation):
            out[k] = f"{v.kind} route"
            continue
        paths = ", ".join((f"{p.ip}:{p.port}" if p.ip else "drop") + (f">{p.snat}" if p.snat else "")
                          for p in v.paths)
        out[k] = paths + (" fib" if v.client else "") + (" aff" if v.affinity else "")
    return out


CIP = "vpp/cnat/tcp/10.96.0.10/80"
NP, NP_PEER = f"vpp/cnat/tcp/{ME}/30080", f"vpp/cnat/tcp/{PEER}/30080"
ALL, BOTH_SNAT = "10.1.1.2:8080, 10.1.2.2:8080", "10.1.1.2:8080, 10.1.2.2:8080>loop0 fib"
PORT = [{"port": 80}]
NODEPORT = [{"port": 80, "nodePort": 30080}]
CASES = [
    ("cluster IP, local and remote endpoints: no SNAT, no FIB entry",
     {"clusterIP": "10.96.0.10", "ports": PORT}, ("a", "c"), {CIP: ALL}),
    ("UDP", {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}, ("a",),
     {"vpp/cnat/udp/10.96.0.10/53": "10.1.1.2:8080"}),
    ("SCTP", {"clusterIP": "10.96.0.10", "ports": [{"port": 9, "protocol": "SCTP"}]}, ("c",),
     {"vpp/cnat/sctp/10.96.0.10/9": "10.1.2.2:8080"}),
    ("two ports", {"clusterIP": "10.96.0.10", "ports": [{"name": "a", "port": 80},
                                                        {"name": "b", "port": 81}]}, ("a",),
     {CIP: "10.1.1.2:8080", "vpp/cnat/tcp/10.96.0.10/81": "10.1.1.2:8080"}),
    ("node port: FIB entry, SNAT to remote endpoints only; the peer's node port for pods here",
     {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": NODEPORT}, ("a", "c"),
     {CIP: ALL, NP: BOTH_SNAT, NP_PEER: ALL}),
    ("externalTrafficPolicy Local: this node's endpoints, client kept",
     {"type": "NodePort", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local",
      "ports": NODEPORT}, ("a", "b", "c"),
     {CIP: "10.1.1.2:8080, 10.1.1.3:8080, 10.1.2.2:8080", NP: "10.1.1.2:8080, 10.1.1.3:8080 fib",
      NP_PEER: "10.1.1.2:8080, 10.1.1.3:8080, 10.1.2.2:8080"}),
    ("externalTrafficPolicy Local without a local endpoint: drop",
     {"type": "NodePort", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local",
      "ports": NODEPORT}, ("c",), {CIP: "10.1.2.2:8080", NP: "drop fib", NP_PEER: "10.1.2.2:8080"}),
    ("internalTrafficPolicy Local", {"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local",
                                     "ports": PORT}, ("a", "c"), {CIP: "10.1.1.2:8080"}),
    ("internalTrafficPolicy Local without a local endpoint: drop",
     {"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local", "ports": PORT}, ("c",),
     {CIP: "drop"}),
    ("session affinity", {"clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP", "ports": PORT},
     ("a", "c"), {CIP: ALL + " aff"}),
    ("no endpoints: the cluster IP is an unreach route; the node port rejects",
     {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": NODEPORT}, (),
     {"vpp/route/0/10.96.0.10/32": "unreach route", NP: f"{REJECT}:30080 fib"}),
    ("external IP", {"clusterIP": "10.96.0.10", "externalIPs": ["203.0.113.7"], "ports": PORT},
     ("a", "c"), {CIP: ALL, "vpp/cnat/tcp/203.0.113.7/80": BOTH_SNAT}),
    ("load balancer", {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": NODEPORT},
     ("c",), {CIP: "10.1.2.2:8080", NP: "10.1.2.2:8080>loop0 fib", NP_PEER: "10.1.2.2:8080",
              "vpp/cnat/tcp/198.51.100.1/80": "10.1.2.2:8080>loop0 fib"}),
    ("headless", {"clusterIP": "None", "ports": PORT}, ("a",), {}),
]


@pytest.mark.parametrize("what,spec,eps,want", CASES, ids=[c[0] for c in CASES])
def test_service_kinds(rig, what, spec, eps, want):
    status = {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}} if spec.get("type") == \
        "LoadBalancer" else None
    rig.put("web", spec, eps, status)
    rig.flush()
    assert text(rig.partition("web")) == want
    assert rig.states("web") <= {"configured"}
    # one cnat_translation_update per translation (a route per reject), nothing else
    routes = sum(k.startswith("vpp/route/") for k in want)
    assert sorted(rig.rec.names()) == sorted(["cnat_translation_update"] * (len(want) - routes)
                                             + ["ip_route_add_del"] * routes)


def test_every_message_is_declared_and_known_to_vpp_26_10(rig):
    rig.put("web", {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": NODEPORT})
    rig.flush()
    rig.put("web", {"clusterIP": "10.96.0.10", "ports": PORT}, ("a",))
    rig.flush()
    rig.sched.resync()
    from agent.vpp.messages import MEMIF, required  # noqa: PLC0415
    assert set(rig.rec.names()) <= set(required() + MEMIF)  # what the agent checks at connect
    assert set(S.MESSAGES) <= set(required())
    assert {"cnat_translation_update", "cnat_translation_del", "cnat_translation_dump",
            "cnat_snat_addresses_dump", "feature_is_enabled"} <= set(rig.rec.names())
    rig.rec.require(S.MESSAGES)  # every one exists in the definitions


def test_node_and_pod_values_are_configured(rig):
    actual = rig.sched.actual("vpp/cnat")
    assert actual == {
        "vpp/cnatsnat/default": S.CnatSnat("loop0"),
        "vpp/cnatif/loop0": S.CnatInterface("loop0", "return"),
        "vpp/cnatif/p0a010102": S.CnatInterface("p0a010102", "pod", hairpin=True),
        "vpp/cnatif/p0a010103": S.CnatInterface("p0a010103", "pod", hairpin=True)}
    from agent.vpp.values import Route  # noqa: PLC0415
    assert rig.sched.actual("vpp/route/0/10.96.0.0/12") == {
        "vpp/route/0/10.96.0.0/12": Route("10.96.0.0/12", kind="unreach")}


def test_fixed_parts_send_the_right_messages():
    rec = Recorder(API_DIR)
    descs = vpp_descriptors(rec, OWNED)
    sched = Scheduler(descs)
    from agent.vpp.values import Interface, interface_key  # noqa: PLC0415
    values = {interface_key("loop0"): Interface("loop0", "loopback", "02:c0:00:00:00:01"),
              interface_key("p0a010102"): Interface("p0a010102", "loopback", "02:fe:00:00:00:02",
                                                    instance=2),
              **S.node_values("loop0", ""), **S.pod_values("p0a010102")}
    assert sched.apply(values).ok
    sent = [(c.name, c.kwargs) for c in rec.calls if "cnat" in c.name or "feature" in c.name]
    sw = {c.kwargs["tag"][7:]: c.kwargs["sw_if_index"] for c in rec.calls
          if c.name == "sw_interface_tag_add_del"}
    # in dependency order: the policy before listing a pod interface in it
    assert [n for n, _ in sent].index("cnat_set_snat_policy") < \
        [n for n, _ in sent].index("cnat_snat_policy_add_del_if")
    key = lambda item: (item[0], sorted(item[1].items()))  # noqa: E731
    assert sorted(sent, key=key) == sorted([
        ("cnat_set_snat_addresses_v2", {"fwd_fib_index": 0, "ret_fib_index": 0, "snat_ip4": "0.0.0.0",
                                        "snat_ip6": "::", "sw_if_index": sw["loop0"], "flags": 2}),
        ("cnat_set_snat_policy", {"policy": 2}),
        ("feature_enable_disable", {"sw_if_index": sw["loop0"], "enable": True,
                                    "arc_name": "ip4-unicast", "feature_name": "cnat-lookup-ip4"}),
        ("feature_enable_disable", {"sw_if_index": sw["loop0"], "enable": True,
                                    "arc_name": "ip4-output", "feature_name": "cnat-writeback-ip4"}),
        ("feature_cnat_enable_disable", {"sw_if_index": sw["p0a010102"], "enable_disable": True}),
        ("cnat_snat_policy_add_del_if", {"sw_if_index": sw["p0a010102"], "is_add": 1, "table": 2}),
    ], key=key)
    assert "vpp/route/0/10.96.0.0/12" not in values  # no Service CIDR given: no reject route


# --------------------------------------------------------------------------- what a change costs
def test_one_endpoint_change_is_one_message_per_frontend(rig):
    for i in range(50):
        rig.put(f"s{i}", {"clusterIP": f"10.96.1.{i}", "ports": PORT}, ("a", "c"))
    rig.put("web", {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": NODEPORT}, ("a", "c"))
    rig.flush()
    assert len(rig.rec.calls_to("cnat_translation_update")) == 53
    rig.rec.clear()
    rig.put("web", {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": NODEPORT}, ("b", "c"))
    rig.flush()
    # cluster IP, this node's node port, the peer's node port
    assert rig.rec.names() == ["cnat_translation_update"] * 3
    assert {tuple(str(p["dst_ep"]["addr"]) for p in c["translation"]["paths"])
            for c in rig.rec.calls_to("cnat_translation_update")} == {("10.1.1.3", "10.1.2.2")}
    rig.rec.clear()
    rig.put("s7", {"clusterIP": "10.96.1.7", "ports": PORT}, ("c",))
    rig.flush()
    assert rig.rec.names() == ["cnat_translation_update"]


def test_affinity_or_client_changes_recreate_the_translation(rig):
    rig.put("web", {"clusterIP": "10.96.0.10", "ports": PORT})
    rig.flush()
    rig.rec.clear()
    rig.put("web", {"clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP", "ports": PORT})
    rig.flush()  # VPP keeps a translation's load-balancing kind on update
    assert rig.rec.names() == ["cnat_translation_del", "cnat_translation_update"]


def test_a_deleted_service_deletes_its_translations(rig):
    rig.put("web", {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": NODEPORT})
    rig.flush()
    ids = sorted(rig.sched.metadata(k)["id"] for k in rig.partition("web"))
    rig.rec.clear()
    del rig.snap.objects["service"][("default", "web")]
    rig.sync.on_change(Change("service", "default", "web", True))
    rig.flush()
    assert sorted(c["id"] for c in rig.rec.calls_to("cnat_translation_del")) == ids
    assert rig.rec.names() == ["cnat_translation_del"] * 3 and rig.partition("web") == {}


def test_a_failing_request_fails_only_its_value_and_is_retried(rig):
    rig.rec.fail("cnat_translation_update", -7,
                 when=lambda kw: str(kw["translation"]["vip"]["addr"]) == "10.96.0.11")
    rig.put("one", {"clusterIP": "10.96.0.11", "ports": PORT})
    rig.put("two", {"clusterIP": "10.96.0.12", "ports": PORT})
    rig.flush()
    assert rig.states("one") == {"failed"} and rig.states("two") == {"configured"}
    rig.sched._clock = lambda: 1e12  # the retry is due
    assert rig.sched.retry_due().ok
    assert rig.states("one") == {"configured"}


# --------------------------------------------------------------------------- determinism
def test_rendering_is_deterministic_and_a_rebuild_changes_nothing(rig):
    specs = {c[0]: c for c in CASES}
    for i, (what, spec, eps, _) in enumerate(CASES):
        spec = {**spec, "clusterIP": f"10.96.2.{i}" if spec["clusterIP"] != "None" else "None"}
        spec["ports"] = [{**p, **({"nodePort": 30100 + i} if "nodePort" in p else {})}
                         for p in spec["ports"]]
        status = {"loadBalancer": {"ingress": [{"ip": f"198.51.100.{i}"}]}}
        rig.put(f"s{i}", spec, eps, status)
    assert specs
    rig.flush()
    first = {k: dict(v) for k, v in rig.sync.partitions().items()}
    again = Rig()
    again.snap.objects.update({k: dict(v) for k, v in rig.snap.objects.items()})
    assert {k: dict(v) for k, v in again.sync.partitions().items()} == first
    rig.rec.clear()
    rig.desired.set_partitions(rig.sync.partitions())  # reset + rebuild from scratch
    assert rig.rec.names() == []


def test_two_services_on_one_frontend_first_keeps_it(rig):
    spec = {"clusterIP": "10.96.0.10", "externalIPs": ["203.0.113.7"], "ports": PORT}
    rig.put("a-first", spec)
    rig.put("b-second", {**spec, "clusterIP": "10.96.0.11"})
    rig.flush()  # no "rendered by both" error for the transaction
    assert "vpp/cnat/tcp/203.0.113.7/80" in rig.partition("a-first")
    assert set(rig.partition("b-second")) == {"vpp/cnat/tcp/10.96.0.11/80"}


# --------------------------------------------------------------------------- descriptors
@pytest.mark.parametrize("paths,error", [
    ((), "no path"),  # VPP 26.10 aborts on a translation without paths
    ((D.CnatPath("not-an-ip", 80),), "bad path"),
    ((D.CnatPath("", 80, "loop0"),), "bad path"),  # a drop path SNATs nothing
])
def test_invalid_translations_are_never_sent(paths, error):
    d = D.CnatTranslationDescriptor(Recorder(API_DIR), None, OWNED)
    v = D.CnatTranslation("10.96.0.10", 80, "tcp", paths)
    with pytest.raises(InvalidInput, match=error):
        d.validate(D.translation_key("tcp", "10.96.0.10", 80), v)


# Details as vpp_papi hands them over: named tuples down to the leaves (the
# Recorder makes the outer one from a seed; the nested ones are made here).
DEFS = Recorder(API_DIR).defs if API_DIR.is_dir() else None


def _ep(addr="0.0.0.0", port=0, sw=0xFFFFFFFF):
    return DEFS.record("cnat_endpoint", {"addr": addr, "sw_if_index": sw, "port": port})


def _tr(tid, vip, port, paths, lb=0):
    return {"translation": DEFS.record("cnat_translation", {
        "vip": _ep(vip, port), "id": tid, "ip_proto": 6, "lb_type": lb, "n_paths": len(paths),
        "paths": [DEFS.record("cnat_endpoint_tuple", {"dst_ep": d, "src_ep": s}) for d, s in paths]})}


def test_retrieve_takes_only_our_translations(rig):
    tr = next(d for d in rig.descs if isinstance(d, D.CnatTranslationDescriptor))
    lo, up = rig.descs[0].ifs.index("loop0"), rig.descs[0].ifs.index("uplink")
    rig.rec.seed("ip_address_dump", {"sw_if_index": up, "prefix": f"{ME}/24"})
    rig.rec.seed("cnat_translation_dump",
                 _tr(1, "10.96.0.10", 80, [(_ep("10.1.1.2", 8080), _ep())], lb=1),  # Service CIDR
                 _tr(2, ME, 30080, [(_ep("10.1.2.2", 8080), _ep(sw=lo)),         # a node port
                                    (_ep(port=30080, sw=0), _ep())]),
                 _tr(3, "203.0.113.9", 80, [(_ep("10.1.1.3", 8080), _ep())]),    # pods behind it
                 _tr(4, "192.0.2.10", 80, [(_ep("198.51.100.5", 80), _ep())]),   # someone else's
                 _tr(5, "203.0.113.7", 80, [(_ep("198.51.100.6", 80), _ep())]))  # wanted by us
    want = {"vpp/cnat/tcp/203.0.113.7/80": D.CnatTranslation(
        "203.0.113.7", 80, "tcp", (D.CnatPath("198.51.100.6", 80),), client=True)}
    got = {r.key: (r.value, r.metadata) for r in tr.retrieve(want, None)}
    assert got == {
        CIP: (D.CnatTranslation("10.96.0.10", 80, "tcp", (D.CnatPath("10.1.1.2", 8080),),
                                affinity=True), {"id": 1}),
        NP: (D.CnatTranslation(ME, 30080, "tcp", (D.CnatPath("10.1.2.2", 8080, "loop0"),
                                                  D.CnatPath("", 30080))), {"id": 2}),
        "vpp/cnat/tcp/203.0.113.9/80": (D.CnatTranslation(
            "203.0.113.9", 80, "tcp", (D.CnatPath("10.1.1.3", 8080),)), {"id": 3}),
        "vpp/cnat/tcp/203.0.113.7/80": (want["vpp/cnat/tcp/203.0.113.7/80"], {"id": 5}),
    }


def test_snat_policy_is_ours_by_its_interface(rig):
    snat = next(d for d in rig.descs if isinstance(d, S.CnatSnatDescriptor))
    lo = rig.descs[0].ifs.index("loop0")
    rig.rec.seed("cnat_snat_addresses_dump", {"sw_if_index": 999}, {"sw_if_index": lo})
    assert [(r.key, r.value) for r in snat.retrieve({}, None)] == \
        [("vpp/cnatsnat/default", S.CnatSnat("loop0"))]


def test_pod_interfaces_of_the_snat_policy_come_from_its_listing(rig):
    cif = next(d for d in rig.descs if isinstance(d, S.CnatInterfaceDescriptor))
    names = {d.sw_if_index: d.interface_name for d in rig.rec.dump("sw_interface_dump",
                                                                   sw_if_index=0xFFFFFFFF)}
    pod = names[rig.descs[0].ifs.index("p0a010102")]
    rig.rec.seed_cli("show cnat snat-policy", (
        "Source NAT\n  ip4: loop0 (10.1.1.1);0\n\nIncluded v4 interfaces:\n  host-other\n\n"
        f"k8s pod interfaces:\n  {pod}\n  host-notours\n\nk8s host interfaces:\n  {pod}\n"))
    assert cif._snat_pod_interfaces() == {"p0a010102"}
    # and retrieve asks VPP which cnat features each of our interfaces has
    rig.rec.clear()
    cif.retrieve({}, None)
    asked = {(c["feature_name"], c["sw_if_index"]) for c in rig.rec.calls_to("feature_is_enabled")}
    assert {f for f, _ in asked} == {"cnat-input-ip4", "cnat-lookup-ip4"}
    assert {i for _, i in asked} == set(rig.descs[0].ifs.names().values())


def test_without_a_snat_policy_no_interface_is_listed_in_it(rig):
    cif = next(d for d in rig.descs if isinstance(d, S.CnatInterfaceDescriptor))
    rig.rec.fail("cli_inband", -1)  # VPP: "show cnat snat-policy: no default snat policy"
    assert cif._snat_pod_interfaces() == set()


@pytest.mark.parametrize("mode,hairpin", [("loop", False), ("return", True)])
def test_bad_interface_settings_are_invalid(mode, hairpin):
    d = S.CnatInterfaceDescriptor(Recorder(API_DIR), None)
    with pytest.raises(InvalidInput):
        d.validate(S.interface_key("x"), S.CnatInterface("x", mode, hairpin))


# --------------------------------------------------------------------------- diagnostics
def _swap(p: int) -> int:
    return ((p & 0xFF) << 8) | (p >> 8)


def test_sessions_pair_each_flow_with_its_answer_and_fix_the_byte_order():
    rec = Recorder(API_DIR)

    def sess(src, sport, dst, dport, ts, flags, proto=6):
        t = DEFS.record("cnat_5tuple", {"addr": [src, dst], "port": [_swap(sport), _swap(dport)],
                                        "ip_proto": proto})
        return {"session": DEFS.record("cnat_session", {"tuple": t, "ts_index": ts, "flags": flags})}
    rec.seed("cnat_session_dump",
             sess("10.1.1.3", 40000, "10.96.0.10", 80, 7, 0),
             sess("10.1.2.2", 8080, "10.1.1.3", 40000, 7, S.SESSION_IS_RETURN),
             sess("10.1.1.3", 5353, "10.1.1.1", 53, 9, 0, proto=17))
    got = S.sessions(rec)
    assert [s.to_dict() if hasattr(s, "to_dict") else s for s in got] == [
        s.to_dict() if hasattr(s, "to_dict") else s for s in [
            S.Session("tcp", "10.1.1.3", 40000, "10.96.0.10", 80, "10.1.2.2", 8080),
            S.Session("udp", "10.1.1.3", 5353, "10.1.1.1", 53, "10.1.1.1", 53)]]
    assert [s.translated for s in got] == [True, False]


def test_the_hand_decoded_session_layout_is_what_vpp_papi_packs():
    from agent.vpp.papi import encode  # noqa: PLC0415
    raw = encode("cnat_session_details", {"session": {
        "tuple": {"addr": ["10.1.1.3", "fd00::7"], "port": [0x1234, 0xABCD], "ip_proto": 17},
        "ts_index": 0x01020304, "flags": S.SESSION_IS_RETURN}}, API_DIR)
    assert len(raw) == S._SESSION.size
    _, _, af0, a0, af1, a1, p0, p1, proto, ts, flags = S._SESSION.unpack(raw)
    assert (S._addr(af0, a0), S._addr(af1, a1)) == ("10.1.1.3", "fd00::7")
    assert (p0, p1, proto, ts, flags) == (0x1234, 0xABCD, 17, 0x01020304, S.SESSION_IS_RETURN)


def test_describe_says_where_each_frontend_goes(rig):
    rig.put("web", {"type": "NodePort", "clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP",
                    "ports": NODEPORT})
    rig.flush()
    (info,) = rig.sync.describe("default", "web")
    assert info.dataplane.state == "programmed"
    assert set(info.dataplane.elements) == {
        "tcp 10.96.0.10:80 -> 10.1.1.2:8080, 10.1.2.2:8080 [affinity]",
        f"tcp {ME}:30080 -> 10.1.1.2:8080, 10.1.2.2:8080 (snat loop0) [fib] [affinity]",
        f"tcp {PEER}:30080 -> 10.1.1.2:8080, 10.1.2.2:8080 [affinity]"}


def test_only_a_change_of_the_peers_addresses_asks_for_a_rebuild():
    from agent.builders.nodes import node_transport, vtep_mac  # noqa: PLC0415
    from agent.model.records import NodeInfo  # noqa: PLC0415
    me = NodeInfo("node1", 1, ME, ("10.1.1.0/24",), ("10.1.1.1",), vtep_mac(1))

    def t(*peer_ips):
        peers = [NodeInfo(f"node{i + 2}", i + 2, ip, (f"10.1.{i + 2}.0/24",), (f"10.1.{i + 2}.1",),
                          vtep_mac(i + 2)) for i, ip in enumerate(peer_ips)]
        return node_transport(me, [me, *peers], vni=10, port=4789, mtu=1450, underlay_dev="vpp0")
    r = S.CnatServiceRenderer(lambda: [ME], "10.96.0.0/12", [PEER])
    assert r.nodes(t(PEER)) is False, "the same peer re-registering changes nothing"
    assert r.nodes(t(PEER, "192.168.77.103")) is True and "192.168.77.103" in r.peers
    assert r.nodes(t(PEER, "192.168.77.103")) is False
    assert r.nodes(t()) is True and r.peers == ()
