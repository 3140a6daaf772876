"""CNIHandler end to end without root: a real PodNetwork, PodIPAM on a
MemoryStore and a real Scheduler, over the fake data plane
(tests/fakedataplane.py: a dict standing in for the kernel)."""
from __future__ import annotations

import json
import re

import pytest

from agent.cnihandler import SUPPORTED_VERSIONS, CNIHandler, parse_cni_args, shape_result
from agent.desired import DesiredState
from agent.errors import DataplaneError, Unavailable
from agent.ipam.pods import PodIPAM
from agent.model import keys
from agent.model.records import Allocation, NodeInfo
from agent.dataplane import PodInterface
from agent.podnet import PodNetwork, PodResult
from agent.reconciler import Scheduler
from agent.store.memory import MemoryStore
from tests.fakedataplane import FakeDataplane, FakeKernel, PodLink, fake_mac, host_ifname, link_key

GATEWAY = "10.1.1.1"
NODE = NodeInfo(name="node-a", index=1, node_ip="192.168.0.1", pod_subnets=("10.1.1.0/24",),
                gateways=(GATEWAY,), vtep_mac="02:00:00:00:00:01")
MTU = 1450


# ------------------------------------------------------------------ fixtures
class FlakyStore(MemoryStore):
    """A MemoryStore that can be switched to answer like an unreachable etcd."""

    down = False

    def _check(self):
        if self.down:
            raise Unavailable("etcd at memory:// is unreachable")

    def get(self, key):
        self._check()
        return super().get(key)

    def list(self, prefix):
        self._check()
        return super().list(prefix)

    def txn(self, compare, success, failure=()):
        self._check()
        return super().txn(compare, success, failure)


class Env:
    def __init__(self, tmp_path, subnet: str = "10.1.1.0/24") -> None:
        self.kernel = FakeKernel()
        self.plane = FakeDataplane(self.kernel)
        self.store = FlakyStore()
        self.ipam = PodIPAM(self.store, NODE.name, subnet, reserved=[GATEWAY])
        self.scheduler = Scheduler(self.plane.descriptors())
        self.podnet = PodNetwork(self.ipam, DesiredState(self.scheduler), lambda: NODE, mtu=MTU,
                                 plane=self.plane)
        self.status_answer = (0, "")
        self.handler = CNIHandler(self.podnet, lambda: self.status_answer)
        self.tmp = tmp_path
        self.netns = self.new_netns("pod")

    def new_netns(self, name: str) -> str:
        p = self.tmp / f"netns-{name}"
        p.touch()
        return str(p)

    def env(self, command: str, cid: str = "c1", ifname: str = "eth0", netns: str | None = None,
            **extra) -> dict:
        e = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname,
             "CNI_NETNS": netns or self.netns, "CNI_PATH": "/opt/cni/bin"}
        e.update(extra)
        return {k: v for k, v in e.items() if v is not None}

    def call(self, command: str, version: str = "1.1.0", conf: dict | None = None, **kw):
        c = {"cniVersion": version, "name": "contiv", "type": "contiv-cni"}
        c.update(conf or {})
        return self.run(self.env(command, **kw), json.dumps(c).encode())

    def run(self, env: dict, stdin: bytes):
        r = self.handler.handle(env, stdin)
        body = json.loads(r.body) if r.body else None
        return r.exit_code, body

    def addresses(self) -> list[str]:
        return sorted(ip for a in self.ipam.list() for ip in a.ips)

    def claims_as_cidrs(self) -> list[str]:
        return [f"{c}/32" for c in self.claims()]

    def claims(self) -> list[str]:
        kvs, _ = self.store.list(keys.IPAM_IPS)
        return [kv.key[len(keys.IPAM_IPS):] for kv in kvs]


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def assert_error(res, code: int, match: str | None = None, version: str = "1.1.0"):
    exit_code, body = res
    assert exit_code == 1, body
    assert body["code"] == code, body
    assert body["cniVersion"] == version
    assert isinstance(body["msg"], str) and body["msg"]
    if match:
        assert re.search(match, body["msg"]), body["msg"]


# ------------------------------------------------------------------ ADD results
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_result_has_the_layout_of_the_requested_version(env, version):
    dns = {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
    code, body = env.call("ADD", version, conf={"dns": dns},
                          CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
    assert code == 0, body
    h = host_ifname("c1", "eth0")
    host = {"name": h, "mac": fake_mac(h)}
    pod = {"name": "eth0", "mac": fake_mac(h + "/pod"), "sandbox": env.netns}
    ip = {"address": "10.1.1.2/32", "gateway": GATEWAY, "interface": 1}
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        ip = {"version": "4", **ip}  # required before 1.0.0, gone after
    if version == "1.1.0":
        host["mtu"] = pod["mtu"] = MTU  # interface mtu is new in 1.1.0
    assert body == {"cniVersion": version, "interfaces": [host, pod], "ips": [ip],
                    "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}], "dns": dns}
    # what the result claims is what was programmed and recorded
    assert env.kernel.links[h].netns == env.netns
    assert env.kernel.links[h].owner == "contiv:pod:default/web-0"
    assert list(env.kernel.routes) == ["10.1.1.2/32"]
    alloc = env.ipam.get("c1", "eth0")
    assert (alloc.pod_namespace, alloc.pod_name, alloc.netns) == ("default", "web-0", env.netns)


def test_ipv6_result_shape():
    r = PodResult(Allocation("n", "c", "eth0", ("10.1.1.2/32", "fd00::2/128")),
                  (PodInterface("h", "m1"), PodInterface("eth0", "m2", "/ns")),
                  ("10.1.1.1", "fd00::1"), 1500)
    out = shape_result("0.4.0", r)
    assert out["ips"] == [
        {"version": "4", "address": "10.1.1.2/32", "interface": 1, "gateway": "10.1.1.1"},
        {"version": "6", "address": "fd00::2/128", "interface": 1, "gateway": "fd00::1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"},
                             {"dst": "::/0", "gw": "fd00::1"}]
    assert out["dns"] == {}


def test_repeated_add_returns_the_same_result_and_programs_nothing_new(env):
    first = env.call("ADD")
    log = list(env.kernel.log)
    assert env.call("ADD") == first
    assert env.kernel.log == log
    assert env.addresses() == ["10.1.1.2/32"]


def test_add_of_the_same_attachment_in_another_netns_is_refused(env):
    env.call("ADD")
    other = env.new_netns("other")
    code, body = env.call("ADD", netns=other)
    assert code == 1 and body["code"] != 0
    assert "already attached" in body["msg"]
    assert env.ipam.get("c1", "eth0").netns == env.netns  # the first one is untouched


def test_pods_get_distinct_addresses(env):
    ips = [env.call("ADD", cid=f"c{i}")[1]["ips"][0]["address"] for i in range(5)]
    assert ips == [f"10.1.1.{i}/32" for i in range(2, 7)]
    assert len(env.kernel.links) == 5


# ------------------------------------------------------------------ failed ADD leaks nothing
@pytest.mark.parametrize("failing", ["link", "route"])
def test_dataplane_failure_during_add_releases_the_address(env, failing):
    h = host_ifname("c1", "eth0")
    key = link_key(h) if failing == "link" else "fake/route/10.1.1.2/32"
    env.kernel.fail[("create", key)] = DataplaneError("device or resource busy", op="create")
    res = env.call("ADD")
    assert_error(res, 101, "busy")
    assert env.ipam.list() == [] and env.claims() == []
    # what did get created was removed again
    assert env.kernel.links == {} and env.kernel.routes == {}
    assert env.scheduler.desired() == {}
    # once the data plane recovers, the same ADD succeeds (next-fit: with the next address)
    env.kernel.fail.clear()
    code, body = env.call("ADD")
    assert code == 0 and body["ips"][0]["address"] == "10.1.1.3/32"
    assert env.addresses() == ["10.1.1.3/32"] and env.claims() == ["10.1.1.3"]


def test_invalid_rendered_value_fails_add_and_releases_the_address(env):
    good_render = env.plane.render_pod

    def bad_render(att):
        out = good_render(att)
        h = host_ifname(att.container_id, att.ifname)
        out[link_key(h)] = PodLink(h, att.netns, att.ifname, (), att.mtu, "contiv:pod:x")
        return out
    env.plane.render_pod = bad_render
    assert_error(env.call("ADD"), 101, "invalid")
    assert env.ipam.list() == [] and env.claims() == [] and env.kernel.links == {}


def test_exhausted_pool_is_code_100(tmp_path):
    env = Env(tmp_path, subnet="10.1.1.0/30")  # one usable address (.2) besides the gateway
    assert env.call("ADD", cid="c1")[0] == 0
    assert_error(env.call("ADD", cid="c2"), 100, "no free pod address")
    assert env.addresses() == ["10.1.1.2/32"]


def test_unreachable_store_is_code_11_try_again(env):
    env.store.down = True
    assert_error(env.call("ADD"), 11, "unreachable")
    env.store.down = False
    assert env.kernel.links == {} and env.ipam.list() == []


def test_store_failing_during_the_commit_undoes_the_data_plane(env):
    """The address's etcd transaction runs while the data plane is programmed:
    when it fails, what was programmed is taken back and the ADD says retry."""
    assert env.call("ADD", cid="c0")[0] == 0  # the IPAM has read its state: no read before the commit
    env.store.down = True
    assert_error(env.call("ADD", cid="c1"), 11, "unreachable")
    env.store.down = False
    assert sorted(env.kernel.links) == [host_ifname("c0", "eth0")]
    assert list(env.kernel.routes) == ["10.1.1.2/32"]
    code, body = env.call("ADD", cid="c1")
    assert code == 0, body
    assert len(env.kernel.links) == 2 and env.addresses() == sorted(env.claims_as_cidrs())


def test_an_address_another_writer_took_meanwhile_goes_the_serial_way(env):
    """A reserved address whose claim exists already (another writer: not
    this agent's view) loses its transaction; the ADD then allocates serially
    and answers with a free address -- the first attempt leaves nothing."""
    assert env.call("ADD", cid="c0")[0] == 0
    env.store.put(keys.ip_claim_key("10.1.1.3"), b'{"node": "elsewhere"}')
    code, body = env.call("ADD", cid="c1")
    assert code == 0, body
    assert body["ips"][0]["address"] == "10.1.1.4/32"
    assert sorted(env.kernel.routes) == ["10.1.1.2/32", "10.1.1.4/32"]
    assert env.addresses() == ["10.1.1.2/32", "10.1.1.4/32"]


# ------------------------------------------------------------------ DEL / CHECK
def test_del_removes_everything_and_is_idempotent(env):
    env.call("ADD")
    delete_env = env.env("DEL", CNI_NETNS=None)  # DEL does not need the netns
    assert env.run(delete_env, json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "t"})
                   .encode()) == (0, None)
    assert env.kernel.links == {} and env.kernel.routes == {}
    assert env.ipam.list() == [] and env.claims() == []
    assert env.call("DEL") == (0, None)
    assert env.call("DEL", cid="never-added") == (0, None)


def test_del_failing_in_the_dataplane_keeps_the_address(env):
    env.call("ADD")
    h = host_ifname("c1", "eth0")
    env.kernel.fail[("delete", link_key(h))] = DataplaneError("busy")
    assert_error(env.call("DEL"), 101, "busy")
    assert env.addresses() == ["10.1.1.2/32"]  # not reusable while the link may hold it


def test_check_passes_after_add_and_detects_drift(env):
    _, result = env.call("ADD")
    assert env.call("CHECK", conf={"prevResult": result}) == (0, None)
    # wrong previous result
    bad = dict(result, ips=[{"address": "10.1.1.99/32", "interface": 1}])
    assert_error(env.call("CHECK", conf={"prevResult": bad}), 999, "differ")
    # the interface disappeared behind the agent's back
    env.kernel.links.clear()
    assert_error(env.call("CHECK", conf={"prevResult": result}), 999,
                 rf"fake/link/{host_ifname('c1', 'eth0')}: drift")
    # an attachment that was never added
    assert_error(env.call("CHECK", cid="c9"), 999, "no address allocated")


# ------------------------------------------------------------------ STATUS / GC / VERSION
@pytest.mark.parametrize("answer,expected", [
    ((0, ""), (0, None)),
    ((50, "the agent is starting"), (50, "the agent is starting")),
    ((51, "pod network at capacity"), (51, "pod network at capacity")),
])
def test_status_maps_the_status_callable(env, answer, expected):
    env.status_answer = answer
    res = env.call("STATUS", CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    if expected[0] == 0:
        assert res == (0, None)
    else:
        assert_error(res, expected[0], expected[1])


def test_gc_releases_attachments_not_listed(env):
    for cid in ("c1", "c2", "c3"):
        assert env.call("ADD", cid=cid)[0] == 0
    valid = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c3", "ifname": "eth0"}]
    res = env.call("GC", conf={"cni.dev/valid-attachments": valid},
                   CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    assert res == (0, None)
    assert sorted(a.container_id for a in env.ipam.list()) == ["c1", "c3"]
    assert sorted(env.kernel.links) == sorted(host_ifname(c, "eth0") for c in ("c1", "c3"))
    assert sorted(env.kernel.routes) == ["10.1.1.2/32", "10.1.1.4/32"]
    assert sorted(env.claims()) == ["10.1.1.2", "10.1.1.4"]
    # an empty list: nothing is valid any more
    assert env.call("GC", conf={"cni.dev/valid-attachments": []})[0] == 0
    assert env.ipam.list() == [] and env.kernel.links == {} and env.claims() == []


def test_gc_without_a_list_releases_nothing(env):
    """A GC whose list is missing is a bad request, not "nothing is valid"
    (which would tear down every pod on the node)."""
    env.call("ADD")
    assert_error(env.call("GC"), 7, "cni.dev/valid-attachments")
    assert len(env.ipam.list()) == 1 and len(env.kernel.links) == 1


def test_gc_accepts_the_early_spec_name_of_the_list(env):
    """libcni sends the list as cni.dev/valid-attachments and as
    cni.dev/attachments (the name an early 1.1.0 text used); some runtimes
    send only the latter."""
    env.call("ADD", cid="keep")
    env.call("ADD", cid="stale")
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    assert env.call("GC", conf={"cni.dev/attachments": valid}) == (0, None)
    assert [a.container_id for a in env.ipam.list()] == ["keep"]


def test_version_command_needs_no_config(env):
    code, body = env.run({"CNI_COMMAND": "VERSION"}, b"")
    assert code == 0
    assert body == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}


# ------------------------------------------------------------------ bad input -> error codes
NEED = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
        "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
        "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH")}


@pytest.mark.parametrize("command,var", [(c, v) for c, vs in NEED.items() for v in vs])
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_missing_environment_variable_is_code_4(env, command, var, how):
    e = env.env(command)
    if how == "unset":
        del e[var]
    else:
        e[var] = ""
    conf = json.dumps({"cniVersion": "1.1.0", "name": "n", "type": "t"}).encode()
    assert_error(env.run(e, conf), 4, f"{var} is not set")
    assert env.ipam.list() == [] and env.kernel.log == []


@pytest.mark.parametrize("env_patch,match", [
    ({"CNI_COMMAND": None}, "CNI_COMMAND is not set"),
    ({"CNI_COMMAND": "add"}, "CNI_COMMAND 'add' is not one of"),
    ({"CNI_COMMAND": "UPDATE"}, "CNI_COMMAND 'UPDATE' is not one of"),
    ({"CNI_CONTAINERID": "bad id"}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "-abc"}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": "x" * 16}, "CNI_IFNAME .* longer than 15 bytes"),
    ({"CNI_IFNAME": "é" * 8}, "CNI_IFNAME .* longer than 15 bytes"),
    ({"CNI_IFNAME": "eth0:1"}, "CNI_IFNAME .* contains"),
    ({"CNI_IFNAME": "eth 0"}, "CNI_IFNAME .* contains"),
    ({"CNI_NETNS": "var/run/netns/x"}, "CNI_NETNS .* is not an existing namespace path"),
    ({"CNI_NETNS": "/nonexistent/netns"}, "CNI_NETNS .* is not an existing namespace path"),
    ({"CNI_ARGS": "K8S_POD_NAME"}, "CNI_ARGS: 'K8S_POD_NAME' is not KEY=VALUE"),
    ({"CNI_ARGS": "=web-0"}, "CNI_ARGS: '=web-0' is not KEY=VALUE"),
    ({"CNI_ARGS": "K8S_POD_NAMESPACE=default;junk"}, "CNI_ARGS: 'junk'"),
])
def test_bad_environment_is_code_4(env, env_patch, match):
    e = env.env("ADD")
    for k, v in env_patch.items():
        if v is None:
            e.pop(k)
        else:
            e[k] = v
    conf = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "t"}).encode()
    version = "1.1.0" if "CNI_COMMAND" in env_patch else "1.0.0"
    assert_error(env.run(e, conf), 4, match, version)
    assert env.ipam.list() == [] and env.kernel.log == []


@pytest.mark.parametrize("stdin,code,match", [
    (b"", 6, "failed to decode"),
    (b"{", 6, "failed to decode"),
    (b"\xff\xfe", 6, "failed to decode"),
    (b"[]", 6, "must be a JSON object"),
    (b'"conf"', 6, "must be a JSON object"),
    (b'{"name": "n", "type": "t"}', 7, "no cniVersion"),
    (b'{"cniVersion": "", "name": "n", "type": "t"}', 7, "no cniVersion"),
    (b'{"cniVersion": 1, "name": "n", "type": "t"}', 7, "no cniVersion"),
    (b'{"cniVersion": "0.2.0", "name": "n", "type": "t"}', 1, "incompatible CNI version 0.2.0"),
    (b'{"cniVersion": "2.0.0", "name": "n", "type": "t"}', 1, "incompatible CNI version 2.0.0"),
    (b'{"cniVersion": "1.1", "name": "n", "type": "t"}', 1, "incompatible CNI version 1.1"),
    (b'{"cniVersion": "1.1.0", "type": "t"}', 7, "no name"),
    (b'{"cniVersion": "1.1.0", "name": "", "type": "t"}', 7, "no name"),
    (b'{"cniVersion": "1.1.0", "name": "n"}', 7, "no type"),
    (b'{"cniVersion": "1.1.0", "name": "n", "type": "t", "mtu": 100}', 7, "mtu 100"),
    (b'{"cniVersion": "1.1.0", "name": "n", "type": "t", "mtu": "1500"}', 7, "mtu '1500'"),
    (b'{"cniVersion": "1.1.0", "name": "n", "type": "t", "mtu": true}', 7, "mtu True"),
])
def test_bad_network_configuration(env, stdin, code, match):
    assert_error(env.run(env.env("ADD"), stdin), code, match)
    assert env.ipam.list() == []


@pytest.mark.parametrize("command,versions", [
    ("CHECK", ("0.3.0", "0.3.1")),
    ("STATUS", ("0.3.0", "0.3.1", "0.4.0", "1.0.0")),
    ("GC", ("0.3.0", "0.3.1", "0.4.0", "1.0.0")),
])
def test_commands_newer_than_the_config_version_are_code_1(env, command, versions):
    env.call("ADD")
    keep = {"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}
    for v in SUPPORTED_VERSIONS:
        res = env.call(command, v, conf=keep)
        if v in versions:
            assert_error(res, 1, f"does not allow {command}", v)
        else:
            assert res[0] == 0, (v, res)
    assert len(env.ipam.list()) == 1  # nothing released c1: it was valid all along


@pytest.mark.parametrize("valid,match", [
    ({"containerID": "c1", "ifname": "eth0"}, "must be a list"),
    ([{"containerID": "c1"}], "string containerID and ifname"),
    ([{"containerID": "c1", "ifname": 0}], "string containerID and ifname"),
    (["c1"], "string containerID and ifname"),
])
def test_gc_with_malformed_valid_attachments_is_code_7_and_releases_nothing(env, valid, match):
    env.call("ADD")
    assert_error(env.call("GC", conf={"cni.dev/valid-attachments": valid}), 7, match)
    assert len(env.ipam.list()) == 1


@pytest.mark.parametrize("raw,expected", [
    ("", {}),
    (";;", {}),
    ("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
     {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-0"}),
    ("A=b=c;IgnoreUnknown=1", {"A": "b=c", "IgnoreUnknown": "1"}),
    ("EMPTY=", {"EMPTY": ""}),
])
def test_parse_cni_args(raw, expected):
    assert parse_cni_args(raw) == expected
