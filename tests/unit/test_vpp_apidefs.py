"""VPP API definitions: loading, lookups, validation and fill, against the real
VPP 26.10 definitions (../shared/vpp-api). No VPP, no root."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from pathlib import Path

import pytest

from agent.errors import InvalidInput
from agent.vpp import apidefs
from agent.vpp.errors import VppMessageInvalid
from agent.vpp.papi import encode

API_DIR = Path(__file__).parents[3] / "shared" / "vpp-api"
pytestmark = pytest.mark.skipif(not API_DIR.is_dir(),
                                reason=f"VPP API definitions not found at {API_DIR}")
NO = 0xFFFFFFFF


@pytest.fixture(scope="module")
def defs():
    return apidefs.load(API_DIR)


def _route(defs, **extra):
    path = {"sw_if_index": 1, "proto": 0, "nh": {"address": {"ip4": "10.0.0.1"}}}
    route = {"table_id": 0, "prefix": "10.1.0.0/24", "paths": [path], **extra}
    return defs.fill("ip_route_add_del", {"is_add": True, "route": route})


def _acl(defs):
    rule = {"is_permit": 1, "src_prefix": "10.1.0.0/16", "dst_prefix": "0.0.0.0/0",
            "proto": 6, "dstport_or_icmpcode_first": 80, "dstport_or_icmpcode_last": 80,
            "srcport_or_icmptype_last": 65535}
    return defs.fill("acl_add_replace", {"acl_index": NO, "tag": "contiv:policy:ns/p",
                                         "r": [rule, {**rule, "is_permit": 0}]})


def _cnat(defs):
    ep = {"addr": "10.96.0.10", "sw_if_index": NO, "port": 80}
    tr = {"vip": ep, "id": NO, "ip_proto": 6, "is_real_ip": 1,
          "paths": [{"dst_ep": {"addr": "10.1.1.2", "sw_if_index": NO, "port": 8080},
                     "src_ep": {"sw_if_index": NO}}]}
    return defs.fill("cnat_translation_update", {"translation": tr})


#: (message, builder(defs) -> kwargs): messages the data plane will send.
VALID = [
    ("af_packet_create_v3", lambda d: {"host_if_name": "vpp1", "mode": 1,
                                       "use_random_hw_addr": True, "num_rx_queues": 1}),
    ("af_packet_create_v3", lambda d: {"host_if_name": "vpp1", "mode": 1,
                                       "hw_addr": "02:fe:00:00:00:01"}),
    ("sw_interface_set_flags", lambda d: {"sw_if_index": 1, "flags": 1}),
    ("sw_interface_set_flags", lambda d: {"sw_if_index": 1, "flags": 0}),
    ("sw_interface_add_del_address", lambda d: {"sw_if_index": 1, "is_add": True,
                                                "prefix": "10.1.1.1/24"}),
    ("sw_interface_add_del_address",
     lambda d: {"sw_if_index": 1, "is_add": True,
                "prefix": ipaddress.ip_interface("fd00::1/64")}),
    ("ip_route_add_del", _route),
    ("ip_route_add_del", lambda d: _route(d, prefix=ipaddress.ip_network("10.2.0.0/16"))),
    ("vxlan_add_del_tunnel_v3", lambda d: {"is_add": True, "src_address": "192.168.16.1",
                                           "dst_address": "192.168.16.2", "vni": 10,
                                           "decap_next_index": NO, "instance": NO}),
    ("bridge_domain_add_del_v2", lambda d: {"bd_id": 1, "flood": True, "uu_flood": True,
                                            "forward": True, "learn": True,
                                            "bd_tag": "contiv:node", "is_add": True}),
    ("sw_interface_set_l2_bridge", lambda d: {"rx_sw_if_index": 2, "bd_id": 1,
                                              "port_type": 1, "enable": True}),
    ("acl_add_replace", _acl),
    ("acl_interface_set_acl_list", lambda d: d.fill("acl_interface_set_acl_list", {
        "sw_if_index": 1, "n_input": 1, "acls": [0, 1]})),
    ("nat44_ed_plugin_enable_disable", lambda d: {"enable": True, "sessions": 63 * 1024}),
    ("nat44_add_del_lb_static_mapping", lambda d: d.fill(
        "nat44_add_del_lb_static_mapping", {
            "is_add": True, "flags": 4 | 64, "external_addr": "10.96.0.10",
            "external_port": 80, "protocol": 6, "tag": "contiv:svc:default/web",
            "locals": [{"addr": "10.1.1.2", "port": 8080, "probability": 50},
                       {"addr": ipaddress.IPv4Address("10.1.2.2"), "port": 8080,
                        "probability": 50}]})),
    ("cnat_translation_update", _cnat),
    ("bpf_trace_filter_set", lambda d: {"is_add": True, "filter": "tcp port 80"}),
    ("trace_capture_packets", lambda d: {"node_index": 0, "max_packets": 50,
                                         "use_filter": True, "verbose": True}),
    ("cli_inband", lambda d: {"cmd": "show version"}),
]


@pytest.mark.parametrize("name,build", VALID, ids=[v[0] for v in VALID])
def test_valid_messages_pass_and_vpp_papi_encodes_them(defs, name, build):
    kwargs = build(defs)
    defs.validate(name, kwargs)
    assert len(encode(name, kwargs, API_DIR)) > 0


#: (message, kwargs, field expected in the error, pattern of the reason)
INVALID = [
    ("af_packet_create_v3", {"host_if_nam": "vpp1", "mode": 1}, "host_if_nam",
     r"unknown field.*did you mean host_if_name"),
    ("af_packet_create_v3", {"host_if_name": "vpp1"}, "mode",
     r"left out.*receive 0.*not a value of af_packet_mode"),
    ("af_packet_create_v3", {"host_if_name": "vpp1", "mode": 0}, "mode",
     r"0 is not a value of af_packet_mode"),
    ("af_packet_create_v3", {"host_if_name": "x" * 64, "mode": 1}, "host_if_name",
     r"too long: 64 characters, at most 63"),
    ("af_packet_create_v3", {"host_if_name": "vpp1", "mode": 1, "hw_addr": b"\x02\x00"},
     "hw_addr", r"fixed array of 6 bytes, got 2"),
    ("af_packet_create_v3", {"host_if_name": "vpp1", "mode": 1, "hw_addr": "02:fe:00"},
     "hw_addr", r"not a MAC address"),
    ("af_packet_create_v3", {"host_if_name": "vpp1", "mode": 1, "num_rx_queues": 70000},
     "num_rx_queues", r"70000 is out of range for u16"),
    ("sw_interface_set_flags", {"sw_if_index": -1, "flags": 1}, "sw_if_index",
     r"-1 is out of range for u32"),
    ("sw_interface_set_flags", {"sw_if_index": 2**32, "flags": 1}, "sw_if_index",
     r"out of range for u32"),
    ("sw_interface_set_flags", {"sw_if_index": "1"}, "sw_if_index", r"expected an integer"),
    ("sw_interface_set_flags", {"sw_if_index": True}, "sw_if_index", r"expected an integer"),
    ("sw_interface_set_flags", {"sw_if_index": 1, "flags": 8}, "flags",
     r"bits outside the flags if_status_flags"),
    ("sw_interface_set_flags", {"sw_if_index": None}, "sw_if_index", r"is None"),
    ("sw_interface_set_flags", {"sw_if_index": 1, "context": 7}, "context",
     r"set by the API client"),
    ("sw_interface_add_del_address", {"sw_if_index": 1, "prefix": "10.1.1.1"}, "prefix",
     r"not ADDRESS/LENGTH"),
    ("sw_interface_add_del_address", {"sw_if_index": 1, "prefix": "10.1.1.300/24"},
     "prefix", r"not an IP address"),
    ("sw_interface_add_del_address", {"sw_if_index": 1, "prefix": "10.1.1.1/40"}, "prefix",
     r"prefix length 40 is over 32"),
    ("sw_interface_add_del_address", {"sw_if_index": 1, "is_add": 2}, "is_add",
     r"expected bool"),
    ("ip_route_add_del", {"route": {"prefix": "10.1.0.0/24", "n_paths": 1, "paths": [
        {"sw_if_index": 1}]}}, "route.paths[0].label_stack", r"left out.*fixed array"),
    ("ip_route_add_del", {"route": {"prefix": "10.1.0.0/24", "n_paths": 1, "paths": [
        {"sw_if_index": 1, "label_stack": [{}]}]}}, "route.paths[0].label_stack",
     r"fixed array of 16 fib_mpls_label entries, got 1"),
    ("ip_route_add_del", {"route": {"prefix": "10.1.0.0/24", "n_paths": 2, "paths": []}},
     "route.n_paths", r"is 2 but paths has 0 entries"),
    ("ip_route_add_del", {"route": {"prefix": {"address": {"af": 0, "un": {"ip6": "fd00::1"}},
                                               "len": 64}}},
     "route.prefix.address.un", r"holds ip6 but af is 0"),
    ("ip_route_add_del", {"route": {"prefix": ipaddress.ip_interface("10.0.0.1/24")}},
     "route.prefix", r"expected a dict of prefix fields, got IPv4Interface"),
    ("vxlan_add_del_tunnel_v3", {"src_address": "192.168.16.1", "dst_address": "fe80::1/64"},
     "dst_address", r"not an IP address"),
    ("vxlan_add_del_tunnel_v3", {"src_address": b"\xc0\xa8\x10\x01"}, "src_address",
     r"expected a dict of address fields, got bytes"),
    ("vxlan_add_del_tunnel_v3", {"vni": 1.5}, "vni", r"expected an integer"),
    ("bridge_domain_add_del_v2", {"bd_id": 1, "mac_age": 256}, "mac_age",
     r"256 is out of range for u8"),
    ("bridge_domain_add_del_v2", {"bd_id": 1, "bd_tag": "täg"}, "bd_tag", r"must be ASCII"),
    ("sw_interface_set_l2_bridge", {"rx_sw_if_index": 1, "port_type": 7}, "port_type",
     r"7 is not a value of l2_port_type"),
    ("acl_add_replace", {"acl_index": NO, "r": [{"is_permit": 1}]}, "count",
     r"must be given: r has 1 entries"),
    ("acl_add_replace", {"acl_index": NO, "count": 1, "r": [{"is_permit": 3}]},
     "r[0].is_permit", r"3 is not a value of acl_action"),
    ("acl_add_replace", {"acl_index": NO, "count": 1, "r": [{"src_prefx": "10.0.0.0/8"}]},
     "r[0].src_prefx", r"unknown field of acl_rule \(did you mean src_prefix"),
    ("acl_add_replace", {"acl_index": NO, "count": 1, "r": {"is_permit": 1}}, "r",
     r"expected a list of acl_rule"),
    ("acl_interface_set_acl_list", {"sw_if_index": 1, "count": 1, "acls": [NO + 1]},
     "acls[0]", r"out of range for u32"),
    ("nat44_add_del_lb_static_mapping", {"is_add": True, "external_addr": "10.96.0.10",
                                         "local_num": 1, "locals": [{"addr": "fd00::1"}]},
     "locals[0].addr", r"not an IPv4 address"),
    ("nat44_add_del_lb_static_mapping", {"flags": 256}, "flags", r"256 is out of range for u8"),
    ("cnat_translation_update", {"translation": {"vip": {"addr": "10.96.0.10",
                                                         "prt": 80}}},
     "translation.vip.prt", r"unknown field of cnat_endpoint \(did you mean port"),
    ("cnat_translation_update", {"translation": {"ip_proto": 7}}, "translation.ip_proto",
     r"7 is not a value of ip_proto"),
    ("bpf_trace_filter_set", {"filter": 42}, "filter", r"expected str, got int"),
    ("trace_capture_packets", {"max_packets": -5}, "max_packets", r"out of range for u32"),
    ("cli_inband", {"cmd": b"show version"}, "cmd", r"expected str, got bytes"),
]


@pytest.mark.parametrize("name,kwargs,field,pattern", INVALID,
                         ids=[f"{c[0]}-{c[2]}" for c in INVALID])
def test_invalid_messages_name_the_field(defs, name, kwargs, field, pattern):
    with pytest.raises(VppMessageInvalid) as e:
        defs.validate(name, kwargs)
    assert e.value.message_name == name
    assert e.value.field == field
    assert re.search(pattern, e.value.reason), e.value.reason
    assert str(e.value).startswith(f"VPP message {name}.{field}:")


def test_unknown_message_suggests_near_names(defs):
    with pytest.raises(VppMessageInvalid, match=r"unknown message.*vxlan_add_del_tunnel_v3"):
        defs.validate("vxlan_add_del_tunnl_v3", {})
    with pytest.raises(VppMessageInvalid, match="unknown message"):
        apidefs.load(API_DIR).validate("no_such_message_at_all", {})


def test_message_invalid_is_invalid_input_so_never_retried(defs):
    with pytest.raises(InvalidInput):
        defs.validate("sw_interface_set_flags", {"sw_if_index": -1})


def test_vpp_papi_alone_would_send_what_validation_rejects(defs):
    """Why the validator exists: these encode without complaint in vpp_papi."""
    silent = [
        ("acl_add_replace", {"acl_index": NO, "count": 1,
                             "r": [{"is_permit": 1, "src_prefx": "10.0.0.0/8"}]}),
        ("acl_add_replace", {"acl_index": NO, "count": 3, "r": []}),
        ("sw_interface_set_l2_bridge", {"rx_sw_if_index": 1, "port_type": 7}),
        ("af_packet_create_v3", {"host_if_name": "vpp1"}),
    ]
    for name, kwargs in silent:
        assert encode(name, kwargs, API_DIR)
        with pytest.raises(VppMessageInvalid):
            defs.validate(name, kwargs)


@pytest.mark.parametrize("ftype,value", [
    ("address", "10.1.1.1"), ("address", "fd00::1"), ("address", ipaddress.ip_address("10.0.0.1")),
    ("address", {"af": 1, "un": {"ip6": ipaddress.ip_address("fd00::1")}}),
    ("prefix", "10.1.0.0/24"), ("prefix", ipaddress.ip_network("fd00::/64")),
    ("prefix", {"address": "10.1.0.0", "len": 24}),
    ("address_with_prefix", "10.1.1.1/24"), ("address_with_prefix", ipaddress.ip_interface("10.1.1.1/24")),
    ("address_with_prefix", ipaddress.ip_network("10.1.1.0/24")),   # via the aliased prefix
    ("ip4_address", "10.1.1.1"), ("ip4_address", b"\x0a\x01\x01\x01"),
    ("ip4_address", ipaddress.IPv4Address("10.1.1.1")), ("ip6_prefix", "fd00::/8"),
    ("mac_address", "02:fe:00:00:00:01"), ("mac_address", b"\x02\xfe\x00\x00\x00\x01"),
])
def test_address_forms_that_vpp_papi_converts_are_accepted(defs, ftype, value):
    from agent.vpp.validate import Checker
    Checker(defs, defs.message("cli_inband")).value(ftype, value, "x")


@pytest.mark.parametrize("ftype,value,pattern", [
    ("address", "10.1.1", r"not an IP address"), ("ip4_address", "fd00::1", r"not an IPv4"),
    ("ip4_address", b"\x0a\x01", r"fixed array of 4 bytes"),
    ("prefix", ipaddress.ip_interface("10.0.0.1/8"), r"expected a dict"),
    ("ip4_prefix", ipaddress.ip_network("fd00::/8"), r"expected a dict"),
    ("prefix", "10.0.0.0/8/9", r"not ADDRESS/LENGTH"), ("ip6_prefix", "fd00::/129", r"over 128"),
    ("mac_address", "02-fe-00-00-00-01", r"not a MAC"), ("address", {"un": {"ip5": b""}},
                                                          r"unknown member of address_union"),
])
def test_malformed_addresses_are_rejected(defs, ftype, value, pattern):
    from agent.vpp.validate import Checker
    with pytest.raises(VppMessageInvalid, match=pattern):
        Checker(defs, defs.message("cli_inband")).value(ftype, value, "x")


def test_index_has_fields_defaults_arrays_and_crc(defs):
    raw = json.loads((API_DIR / "plugins" / "af_packet.api.json").read_text())
    crc = next(m[-1]["crc"] for m in raw["messages"] if m[0] == "af_packet_create_v3")
    assert defs.crc("af_packet_create_v3") == crc
    assert len(defs.messages) > 1500 and "sw_interface_dump" in defs.messages
    f = defs.message("af_packet_create_v3").by_name
    assert (f["host_if_name"].type, f["host_if_name"].length) == ("string", 64)
    assert f["num_rx_queues"].default == 1 and not f["mode"].has_default
    path = defs.types["fib_path"].by_name["label_stack"]
    assert (path.type, path.length) == ("fib_mpls_label", 16)
    r = defs.message("acl_add_replace").by_name["r"]
    assert (r.length, r.count_field) == (0, "count")
    assert defs.enums["af_packet_mode"].values == {"AF_PACKET_API_MODE_ETHERNET": 1,
                                                   "AF_PACKET_API_MODE_IP": 2}
    assert defs.enums["if_status_flags"].flags            # declared `enum`, used as bits
    assert defs.enums["ip_flow_hash_config"].flags        # declared `enumflag`
    assert not defs.enums["trace_filter_flag"].flags      # 0..4 are choices, not bits
    assert defs.aliases["mac_address"] == apidefs.Alias("mac_address", "u8", 6)
    assert defs.types["address_union"].kind == "union"


def test_services_tell_requests_dumps_and_related_messages(defs):
    assert defs.is_dump("sw_interface_dump")
    assert defs.service("sw_interface_dump").details == "sw_interface_details"
    assert not defs.is_dump("ip_route_add_del")
    assert defs.related("ip_route_add_del") == ["ip_route_add_del", "ip_route_add_del_reply"]
    with pytest.raises(VppMessageInvalid, match="not a request"):
        defs.service("sw_interface_details")


def test_fill_pads_fixed_arrays_and_sets_counts(defs):
    kw = _route(defs)
    path = kw["route"]["paths"][0]
    assert len(path["label_stack"]) == 16 and kw["route"]["n_paths"] == 1
    assert path["sw_if_index"] == 1                     # what was given is kept
    acl = _acl(defs)
    assert acl["count"] == 2
    given = defs.fill("acl_add_replace", {"count": 5, "r": []})
    assert given["count"] == 5                          # never overrides what was given
    assert defs.fill("dns_resolve_name", {"name": b"ab"})["name"] == b"ab" + bytes(254)
    # a too-short MAC (an alias of u8[6]) is a mistake to report, not to pad
    assert defs.fill("af_packet_create_v3", {"hw_addr": b"\x02"})["hw_addr"] == b"\x02"
    full = defs.fill("ip_route_add_del", {"route": {"paths": [{"label_stack": [{"label": 5}]}]}})
    assert full["route"]["paths"][0]["label_stack"][0] == {"label": 5}
    assert len(full["route"]["paths"][0]["label_stack"]) == 16


def test_record_builds_zero_filled_reply_tuples(defs):
    r = defs.record("sw_interface_details", {"sw_if_index": 3, "interface_name": "loop0"})
    assert (r.sw_if_index, r.interface_name, r.tag, r.l2_address) == (3, "loop0", "", bytes(6))
    with pytest.raises(VppMessageInvalid, match="unknown field"):
        defs.record("sw_interface_details", {"nope": 1})


def test_validation_is_cheap(defs):
    import time
    kw = {"sw_if_index": 1, "flags": 1}
    t = time.perf_counter()
    for _ in range(2000):
        defs.validate("sw_interface_set_flags", kw)
    assert (time.perf_counter() - t) / 2000 < 100e-6   # ~3 us measured


def _fake_defs(root: Path) -> Path:
    d = root / "share" / "vpp" / "api" / "core"
    d.mkdir(parents=True)
    (d / "x.api.json").write_text("{}")
    return d.parent


def test_find_api_dir_order(tmp_path, monkeypatch):
    a, b, c = (_fake_defs(tmp_path / n) for n in ("arg", "env", "path"))
    exe = tmp_path / "path" / "bin" / "vpp"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("VPP_PREFIX", str(tmp_path / "env"))
    assert apidefs.find_api_dir(tmp_path / "arg") == a
    assert apidefs.find_api_dir() == b
    monkeypatch.delenv("VPP_PREFIX")
    assert apidefs.find_api_dir() == c
    monkeypatch.setenv("VPP_PREFIX", str(tmp_path / "nothing-here"))
    assert apidefs.find_api_dir() == c                 # an empty prefix is skipped


def test_load_is_cached_and_rejects_empty_dirs(tmp_path):
    assert apidefs.load(API_DIR) is apidefs.load(str(API_DIR) + "/")
    from agent.vpp.errors import VppUnavailable
    with pytest.raises(VppUnavailable, match="no VPP API definitions"):
        apidefs.load(tmp_path)
