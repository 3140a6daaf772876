"""Agent configuration: YAML file + overrides -> validated AgentConfig, table-driven."""
from __future__ import annotations

import dataclasses

import pytest

from agent.config import DEFAULT_SOCKET, AgentConfig, load_config
from agent.errors import InvalidInput


@pytest.fixture
def write(tmp_path):
    def _write(text: str | bytes, name: str = "agent.yaml") -> str:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        return str(p)
    return _write


# (YAML text, error pattern)
BAD_FILES = [
    # keys
    ("nodee: n1\n", r"unknown key\(s\) nodee"),
    ("node: n1\nzeta: 1\nalpha: 2\n", r"unknown key\(s\) alpha, zeta"),
    ("node: n1\nextra: {}\n", r"unknown key\(s\) extra"),  # internal field, not a YAML key
    ("node: n1\n1: x\n", r"unknown key\(s\) 1"),
    ("node: n1\non: x\n", r"unknown key\(s\) True"),        # YAML 1.1: 'on' is a boolean
    ("node: n1\n1: x\nabc: y\n", r"unknown key\(s\) 1, abc"),  # keys of mixed types
    # types
    ("node: 123\n", "node must be str"),
    ("node: [n1]\n", "node must be str"),
    ("node: n1\nnode_prefix: '24'\n", "node_prefix must be int"),
    ("node: n1\nnode_prefix: 24.0\n", "node_prefix must be int"),
    ("node: n1\nnode_prefix: true\n", "node_prefix must be int"),
    ("node: n1\nmtu:\n", "mtu must be int"),
    ("node: n1\nresync_interval: '300'\n", "resync_interval must be float"),
    ("node: n1\nresync_interval: true\n", "resync_interval must be float"),
    ("node: n1\ngc_interval: no\n", "gc_interval must be float"),
    ("node: n1\npod_cidr: 10\n", "pod_cidr must be str"),
    # the pod CIDR and node subnets
    ("node: n1\npod_cidr: 10.1.0.0/33\n", "pod_cidr '10.1.0.0/33'"),
    ("node: n1\npod_cidr: 10.1.0.1/16\n", "pod_cidr '10.1.0.1/16': .*host bits set"),
    ("node: n1\npod_cidr: pods\n", "pod_cidr 'pods'"),
    ("node: n1\npod_cidr: ''\n", "pod_cidr ''"),
    ("node: n1\nnode_prefix: 16\n", "node_prefix /16 does not fit pod_cidr 10.1.0.0/16"),
    ("node: n1\nnode_prefix: 8\n", "node_prefix /8 does not fit"),
    ("node: n1\nnode_prefix: 31\n", "node_prefix /31 does not fit"),
    ("node: n1\npod_cidr: 10.9.0.0/28\nnode_prefix: 28\n", "node_prefix /28 does not fit"),
    # IPAM is dual-stack ready, the Linux data plane is not: IPv6 pod networks are refused
    ("node: n1\npod_cidr: fd00::/48\n", "only IPv4 pod networks"),
    ("node: n1\npod_cidr: fd00::/48\nnode_prefix: 64\n", "only IPv4 pod networks"),
    # other fields
    ("node: Node_1\n", "node name 'Node_1' is not a valid DNS-1123 subdomain"),
    ("node: n1\ndataplane: dpdk\n", "dataplane 'dpdk' is not one of linux, vpp"),
    ("node: n1\nnode_ip: 1.2.3\n", "node_ip '1.2.3'"),
    ("node: n1\nnode_ip: 10.0.0.1/24\n", "node_ip '10.0.0.1/24'"),
    ("node: n1\nunderlay_if: averyveryverylongname\n", "underlay_if .* longer than 15 bytes"),
    ("node: n1\nunderlay_if: 'eth0:1'\n", "underlay_if .* contains"),
    ("node: n1\nmtu: 575\n", "mtu 575 out of range 576..9000"),
    ("node: n1\ndataplane: vpp\n", "the VPP data plane needs vpp_uplink and vpp_uplink_cidr"),
    ("node: n1\ndataplane: vpp\nvpp_uplink: vpp0\nvpp_uplink_cidr: 10.0.0.1\n",
     "vpp_uplink_cidr '10.0.0.1' needs a prefix length"),
    ("node: n1\ndataplane: vpp\nvpp_uplink: a-name-longer-than-15\nvpp_uplink_cidr: 10.0.0.1/24\n",
     "vpp_uplink"),
    ("node: n1\ndataplane: vpp\nvpp_uplink: vpp0\nvpp_uplink_cidr: 10.0.0.1/24\n"
     "vpp_api_socket: api.sock\n", "vpp_api_socket 'api.sock' must be an absolute path"),
    ("node: n1\nservice_cidr: 10.96.0.0/33\n", "service_cidr '10.96.0.0/33'"),
    ("node: n1\nmtu: 9001\n", "mtu 9001 out of range"),
    ("node: n1\nmtu: -1\n", "mtu -1 out of range"),
    ("node: n1\nvxlan_vni: 0\n", "vxlan_vni 0 out of range 1..16777215"),
    ("node: n1\nvxlan_vni: 16777216\n", "vxlan_vni 16777216 out of range"),
    ("node: n1\nvxlan_port: 0\n", "vxlan_port 0 out of range"),
    ("node: n1\nvxlan_port: 65536\n", "vxlan_port 65536 out of range"),
    ("node: n1\nsocket: agent.sock\n", "socket 'agent.sock' must be an absolute path"),
    ("node: n1\nresync_interval: -1\n", "resync_interval -1.0 must not be negative"),
    ("node: n1\ngc_interval: -0.5\n", "gc_interval -0.5 must not be negative"),
    ("node: n1\nhistory_size: 0\n", "history_size 0 must be at least 1"),
    ("node: n1\nlog_level: loud\n", "log_level 'loud' is not one of debug, info, warning, error"),
    # not a mapping / not YAML / missing node
    ("node: [unclosed\n", "is not valid YAML"),
    ("node: n1\n  bad indent: x\n", "is not valid YAML"),
    (b"node: n1\n\xff\xfe\n", "is not valid"),  # not UTF-8
    ("- node: n1\n", "must hold a mapping"),
    ("just a string\n", "must hold a mapping"),
    ("", "node name is required"),
    ("# only a comment\n", "node name is required"),
    ("etcd: http://10.0.0.1:2379\n", "node name is required"),
    ("node: ''\n", "node name is required"),
]


@pytest.mark.parametrize("text,match", BAD_FILES, ids=[repr(t)[:40] for t, _ in BAD_FILES])
def test_bad_config_file_raises_invalid_input(write, text, match):
    with pytest.raises(InvalidInput, match=match):
        load_config(write(text))


def test_error_names_the_file(write):
    path = write("node: 1\n")
    with pytest.raises(InvalidInput) as e:
        load_config(path)
    assert path in e.value.message


def test_unknown_key_hint_lists_known_keys(write):
    with pytest.raises(InvalidInput) as e:
        load_config(write("nodee: n1\n"))
    assert "node_prefix" in e.value.hint and "extra" not in e.value.hint


@pytest.mark.parametrize("path,match", [
    ("/nonexistent/agent.yaml", "No such file or directory"),
    ("/", "Is a directory"),
])
def test_unreadable_config_file(path, match):
    with pytest.raises(InvalidInput, match=match):
        load_config(path)


# (YAML text, overrides, expected fields)
GOOD = [
    ("node: n1\n", {}, {"node": "n1", "pod_cidr": "10.1.0.0/16", "node_prefix": 24, "mtu": 0,
                        "dataplane": "linux", "socket": DEFAULT_SOCKET, "etcd": ""}),
    ("node: n1\nresync_interval: 10\ngc_interval: 0\n", {},
     {"resync_interval": 10.0, "gc_interval": 0.0}),
    ("node: n1\npod_cidr: 10.9.0.0/28\nnode_prefix: 30\n", {}, {"node_prefix": 30}),  # max - 2
    ("node: n1\nnode_prefix: 17\n", {}, {"node_prefix": 17}),                         # min + 1
    ("node: n1\nmtu: 576\n", {}, {"mtu": 576}),
    ("node: n1\nmtu: 9000\n", {}, {"mtu": 9000}),
    ("node: n1\nvxlan_vni: 16777215\nvxlan_port: 65535\n", {},
     {"vxlan_vni": 16777215, "vxlan_port": 65535}),
    ("node: n1\nnode_ip: 'fd00::1'\nunderlay_if: enp0s31f6\n", {},
     {"node_ip": "fd00::1", "underlay_if": "enp0s31f6"}),
    ("node: n1\ndataplane: vpp\nlog_level: DEBUG\nvpp_uplink: vpp0\nvpp_uplink_cidr: 192.168.56.110/24\n",
     {}, {"dataplane": "vpp", "log_level": "DEBUG", "vpp_uplink": "vpp0",
          "vpp_uplink_cidr": "192.168.56.110/24", "vpp_api_socket": "/run/vpp/api.sock"}),
    # overrides win over the file; None and "" mean "not given"
    ("node: n1\nmtu: 1400\n", {"node": "n2", "mtu": None, "etcd": ""}, {"node": "n2", "mtu": 1400}),
    ("", {"node": "n1", "pod_cidr": "10.2.0.0/16"}, {"node": "n1", "pod_cidr": "10.2.0.0/16"}),
    (None, {"node": "n1", "mtu": 1450}, {"node": "n1", "mtu": 1450}),
]


@pytest.mark.parametrize("text,overrides,expected", GOOD)
def test_good_config(write, text, overrides, expected):
    cfg = load_config(write(text) if text is not None else None, **overrides)
    assert isinstance(cfg, AgentConfig)
    got = cfg.to_dict()
    assert {k: got[k] for k in expected} == expected
    assert type(cfg.resync_interval) is float and type(cfg.gc_interval) is float


@pytest.mark.parametrize("overrides,match", [
    ({}, "node name is required"),
    ({"node": "n1", "pod_cidr": "10.0.0.0/30"}, "node_prefix /24 does not fit"),
    ({"node": "n1", "dataplane": "ovs"}, "dataplane 'ovs'"),
    ({"node": "n1", "mtu": 100}, "mtu 100 out of range"),
])
def test_overrides_are_validated_too(overrides, match):
    with pytest.raises(InvalidInput, match=match):
        load_config(None, **overrides)


def test_override_cannot_smuggle_an_invalid_file_value_past_validation(write):
    # the file is checked as a whole after overrides: a bad file value that an
    # override does not replace still fails
    with pytest.raises(InvalidInput, match="vxlan_vni 0"):
        load_config(write("vxlan_vni: 0\n"), node="n1")


def test_config_is_frozen_and_to_dict_omits_extra():
    cfg = load_config(None, node="n1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node = "n2"  # type: ignore[misc]
    assert "extra" not in cfg.to_dict()
    assert set(cfg.to_dict()) == {f.name for f in dataclasses.fields(AgentConfig)} - {"extra"}
