"""The recording fake of VppApi: same interface, real message definitions,
plausible replies, dumps from what was recorded or seeded. No VPP, no root."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from agent.vpp import recorder as recorder_module
from agent.vpp.errors import VppApiError, VppMessageInvalid, VppVersionMismatch
from agent.vpp.papi import VppApi, VppChannel
from agent.vpp.recorder import Call, Recorder
from tests.unit.test_vpp_apidefs import VALID

API_DIR = Path(__file__).parents[3] / "shared" / "vpp-api"
pytestmark = pytest.mark.skipif(not API_DIR.is_dir(),
                                reason=f"VPP API definitions not found at {API_DIR}")
NO = 0xFFFFFFFF


@pytest.fixture
def rec():
    return Recorder(API_DIR)


def _pod_if(rec, name="vpp1"):
    return rec.call("af_packet_create_v3", host_if_name=name, mode=1,
                    use_random_hw_addr=True).sw_if_index


def test_docstring_says_it_is_not_a_vpp():
    assert "This is not a VPP. It checks message shapes, not behaviour." in \
        " ".join(recorder_module.__doc__.split()).replace("**", "")


@pytest.mark.parametrize("method", [m for m in dir(VppChannel)
                                    if not m.startswith("_") and m != "generation"])
def test_same_interface_as_vppapi(method):
    want = inspect.signature(getattr(VppChannel, method))
    for cls in (VppApi, Recorder):
        got = inspect.signature(getattr(cls, method))
        assert list(got.parameters)[: len(want.parameters)] == list(want.parameters), cls
        assert [p.kind for p in got.parameters.values()][: len(want.parameters)] == \
            [p.kind for p in want.parameters.values()], cls


def test_every_valid_message_is_accepted_and_recorded():
    rec = Recorder(API_DIR, check_refs=False)
    for name, build in VALID:
        kwargs = build(rec.defs)
        reply = rec.call(name, **kwargs)
        assert reply.retval == 0
        assert rec.calls[-1] == Call(name, kwargs)
    assert rec.names() == [name for name, _ in VALID]


def test_invalid_message_raises_and_is_not_recorded(rec):
    with pytest.raises(VppMessageInvalid, match=r"sw_interface_set_flags.flags: .*bits outside"):
        rec.call("sw_interface_set_flags", sw_if_index=0, flags=16)
    with pytest.raises(VppMessageInvalid, match="is a dump: use dump"):
        rec.call("sw_interface_dump")
    with pytest.raises(VppMessageInvalid, match="is not a dump"):
        rec.dump("sw_interface_set_flags", sw_if_index=0)
    assert rec.calls == []


def test_create_like_calls_get_fresh_indexes(rec):
    assert [_pod_if(rec, "a"), _pod_if(rec, "b")] == [1, 2]
    assert rec.call("create_loopback").sw_if_index == 3
    first = rec.call("acl_add_replace", acl_index=NO, count=0, r=[]).acl_index
    second = rec.call("acl_add_replace", acl_index=NO, count=0, r=[]).acl_index
    assert (first, second) == (0, 1)
    assert rec.call("acl_add_replace", acl_index=first, tag="again", count=0,
                    r=[]).acl_index == first                      # a replace echoes
    assert rec.call("bridge_domain_add_del_v2", bd_id=NO, is_add=True).bd_id == 1
    assert rec.call("bridge_domain_add_del_v2", bd_id=7, is_add=True).bd_id == 7


def test_interface_dump_reflects_creates_tags_flags_and_deletes(rec):
    idx = _pod_if(rec)
    rec.call("sw_interface_tag_add_del", is_add=True, sw_if_index=idx, tag="contiv:pod:a/b")
    rec.call("sw_interface_set_flags", sw_if_index=idx, flags=1)
    lo = rec.call("create_loopback").sw_if_index
    rows = {d.sw_if_index: d for d in rec.dump("sw_interface_dump")}
    assert set(rows) == {0, idx, lo}
    assert (rows[idx].interface_name, rows[idx].tag, rows[idx].flags) == \
        ("host-vpp1", "contiv:pod:a/b", 1)
    assert [d.sw_if_index for d in rec.dump("sw_interface_dump", sw_if_index=lo)] == [lo]
    rec.call("af_packet_delete", host_if_name="vpp1")
    rec.call("delete_loopback", sw_if_index=lo)
    assert [d.interface_name for d in rec.dump("sw_interface_dump")] == ["local0"]


def test_tunnel_deleted_with_its_creating_arguments(rec):
    args = dict(src_address="192.168.16.1", dst_address="192.168.16.2", vni=10,
                decap_next_index=NO, instance=NO)
    idx = rec.call("vxlan_add_del_tunnel_v3", is_add=True, **args).sw_if_index
    assert idx in rec.interfaces
    rec.call("vxlan_add_del_tunnel_v3", is_add=False, **args)
    assert idx not in rec.interfaces


def test_seeded_dumps_are_returned_and_checked(rec):
    rec.seed("sw_interface_dump", {"sw_if_index": 5, "interface_name": "GigabitEthernet0/8/0"})
    rec.seed("ip_address_dump", {"sw_if_index": 5, "prefix": "10.0.0.1/24"})
    assert [d.interface_name for d in rec.dump("sw_interface_dump")] == \
        ["local0", "GigabitEthernet0/8/0"]
    assert len(rec.dump("ip_address_dump", sw_if_index=5, is_ipv6=False)) == 1
    assert rec.dump("ip_address_dump", sw_if_index=6) == []
    rec.call("sw_interface_set_flags", sw_if_index=5, flags=1)   # seeded: known
    with pytest.raises(VppMessageInvalid, match="unknown field"):
        rec.seed("sw_interface_dump", {"if_name": "x"})
    with pytest.raises(VppMessageInvalid, match="not a dump"):
        rec.seed("sw_interface_set_flags", {})


def test_acl_dump_holds_the_rules(rec):
    rule = {"is_permit": 1, "src_prefix": "10.1.0.0/16", "dst_prefix": "0.0.0.0/0"}
    i = rec.call("acl_add_replace", **rec.fill("acl_add_replace", acl_index=NO, tag="t",
                                                r=[rule])).acl_index
    (acl,) = rec.dump("acl_dump", acl_index=i)
    assert (acl.tag, acl.count, acl.r) == ("t", 1, [rule])
    rec.call("acl_del", acl_index=i)
    assert rec.dump("acl_dump", acl_index=NO) == []


@pytest.mark.parametrize("name,kwargs,retval", [
    ("sw_interface_set_flags", {"sw_if_index": 9, "flags": 1}, -2),
    ("sw_interface_set_l2_bridge", {"rx_sw_if_index": 9, "bd_id": 1}, -2),
    ("acl_interface_set_acl_list", {"sw_if_index": 0, "count": 1, "acls": [4]}, -6),
    ("acl_add_replace", {"acl_index": 0, "count": 0, "r": []}, -6),   # ~0 creates
    ("acl_del", {"acl_index": 3}, -6),
])
def test_references_to_unknown_objects_fail_as_in_vpp(rec, name, kwargs, retval):
    with pytest.raises(VppApiError) as e:
        rec.call(name, **kwargs)
    assert (e.value.retval, e.value.message_name, e.value.arguments) == (retval, name, kwargs)
    assert e.value.error_name in ("INVALID_SW_IF_INDEX", "NO_SUCH_ENTRY")
    assert rec.calls_to(name) == [kwargs]                # VPP did receive it
    Recorder(API_DIR, check_refs=False).call(name, **kwargs)


def test_injected_failures(rec):
    idx = _pod_if(rec)
    rec.fail("sw_interface_set_flags", -7, when=lambda kw: kw["flags"] == 1)
    rec.call("sw_interface_set_flags", sw_if_index=idx, flags=0)
    with pytest.raises(VppApiError, match=r"retval -7 \(INVALID_VALUE\)") as e:
        rec.call("sw_interface_set_flags", sw_if_index=idx, flags=1)
    assert e.value.arguments == {"sw_if_index": idx, "flags": 1}
    rec.call("sw_interface_set_flags", sw_if_index=idx, flags=1)   # only once


def test_call_many_returns_replies_in_order_and_names_the_first_failure(rec):
    a, b = _pod_if(rec, "a"), _pod_if(rec, "b")
    batch = [{"sw_if_index": a, "flags": 1}, {"sw_if_index": 42, "flags": 1},
             {"sw_if_index": b, "flags": 1}]
    assert len(rec.call_many("sw_interface_set_flags", [batch[0], batch[2]])) == 2
    with pytest.raises(VppApiError) as e:
        rec.call_many("sw_interface_set_flags", batch)
    assert (e.value.index, e.value.retval) == (1, -2)
    assert [r.retval for r in e.value.replies] == [0, -2, 0]
    with pytest.raises(VppMessageInvalid, match="request #1"):
        rec.call_many("sw_interface_set_flags", [batch[0], {"sw_if_index": -1}])
    assert rec.call_many("sw_interface_set_flags", []) == []


def test_require_checks_names_and_hidden_messages(rec):
    rec.require(["af_packet_create_v3", "sw_interface_dump", "acl_add_replace"])
    with pytest.raises(VppMessageInvalid, match="unknown message"):
        rec.require(["af_packet_create_v9"])
    rec.hide("acl_add_replace_reply")
    with pytest.raises(VppVersionMismatch, match="missing: acl_add_replace_reply") as e:
        rec.require(["acl_add_replace"])
    assert e.value.missing == ["acl_add_replace_reply"]


def test_cli_answers_what_was_seeded(rec):
    assert rec.cli("show version") == ""
    rec.seed_cli("show ver", "vpp v26.10-rc0")
    assert rec.cli("show version verbose") == "vpp v26.10-rc0"
    assert rec.calls_to("cli_inband")[-1] == {"cmd": "show version verbose"}


def test_restart_forgets_objects_and_bumps_generation(rec):
    idx = _pod_if(rec)
    gen = rec.generation
    rec.restart()
    assert rec.generation == gen + 1
    assert [d.sw_if_index for d in rec.dump("sw_interface_dump")] == [0]
    with pytest.raises(VppApiError):
        rec.call("sw_interface_set_flags", sw_if_index=idx, flags=1)
