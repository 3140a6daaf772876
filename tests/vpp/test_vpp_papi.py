"""The vpp_papi chokepoint against a real VPP (started by agent.vpp.process,
inside a private network namespace). Skips, saying how to get a VPP, when
none is found. Run with VPP_PREFIX=/opt/vpp (or a vpp on PATH)."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from agent.errors import InvalidInput
from agent.vpp import process
from agent.vpp.errors import (VppApiError, VppMessageInvalid, VppUnavailable,
                              VppVersionMismatch)
from agent.vpp.papi import VppApi
from agent.vpp.process import VppProcess
from tests.unit.test_vpp_apidefs import VALID

pytestmark = pytest.mark.vpp
AVAILABLE, REASON = process.availability()
needs_vpp = [pytest.mark.root,
             pytest.mark.skipif(not AVAILABLE, reason=f"needs a VPP: {REASON}")]
NO = 0xFFFFFFFF


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def netns():
    """A network namespace with a veth pair (vpp1 <-> peer1) for af_packet."""
    name = "cvpp" + secrets.token_hex(3)
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "vpp1", "type", "veth", "peer", "name", "peer1")
        _ip("-n", name, "link", "set", "vpp1", "up")
        _ip("-n", name, "link", "set", "peer1", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def vpp(netns):
    p = VppProcess(netns=netns)
    try:
        p.start()
        yield p
    finally:
        p.close()
    assert not p.config.runtime_dir.exists()


@pytest.fixture
def api(vpp):
    a = VppApi(str(vpp.api_socket), api_dir=vpp.install.api_dir)
    try:
        yield a.connect()
    finally:
        a.close()


# -- what needs a VPP -------------------------------------------------------------
class TestWithVpp:
    pytestmark = needs_vpp

    def test_connects_and_reports_its_version(self, api, vpp):
        assert api.connected and api.generation == 1
        assert "26.10" in api.version()
        assert "vpp v26.10" in api.cli("show version")
        assert process.find_vpp().binary == vpp.install.binary
        out = subprocess.run(["ip", "netns", "identify", str(vpp.pid)],
                             capture_output=True, text=True).stdout.strip()
        assert out == vpp.netns                           # it runs in the namespace

    def test_require_passes_for_what_the_agent_sends(self, api):
        api.require(sorted({name for name, _ in VALID} | {"sw_interface_dump", "acl_dump"}))
        with pytest.raises(VppMessageInvalid, match="unknown message"):
            api.require(["no_such_message"])

    def test_require_and_call_detect_a_crc_mismatch(self, vpp, tmp_path):
        shutil.copytree(vpp.install.api_dir, tmp_path / "api")
        f = tmp_path / "api" / "core" / "interface.api.json"
        old = VppApi(str(vpp.api_socket), api_dir=vpp.install.api_dir).defs.crc(
            "sw_interface_set_flags")
        f.write_text(f.read_text().replace(old, "0x12345678"))
        with VppApi(str(vpp.api_socket), api_dir=tmp_path / "api") as odd:
            with pytest.raises(VppVersionMismatch) as e:
                odd.require(["sw_interface_set_flags", "sw_interface_dump"])
            assert e.value.different == {"sw_interface_set_flags": ("0x12345678", old)}
            assert e.value.missing == []
            with pytest.raises(VppVersionMismatch, match="sw_interface_set_flags"):
                odd.call("sw_interface_set_flags", sw_if_index=0, flags=0)

    def test_failing_call_raises_with_retval(self, api):
        with pytest.raises(VppApiError) as e:
            api.call("sw_interface_set_flags", sw_if_index=12345, flags=1)
        assert (e.value.retval, e.value.error_name) == (-2, "INVALID_SW_IF_INDEX")
        assert e.value.message_name == "sw_interface_set_flags"
        assert e.value.arguments == {"sw_if_index": 12345, "flags": 1}
        with pytest.raises(VppApiError) as e:     # what the recorder assumes, checked
            api.call("acl_add_replace", acl_index=77, count=0, r=[])
        assert e.value.error_name == "NO_SUCH_ENTRY"
        with pytest.raises(VppMessageInvalid):    # never sent
            api.call("sw_interface_set_flags", sw_if_index=-1)

    def test_dump_sees_a_tagged_loopback(self, api):
        idx = api.call("create_loopback").sw_if_index
        try:
            api.call("sw_interface_tag_add_del", is_add=True, sw_if_index=idx, tag="contiv:t")
            mine = [d for d in api.dump("sw_interface_dump") if d.sw_if_index == idx]
            assert [(d.tag, d.interface_name.startswith("loop")) for d in mine] == \
                [("contiv:t", True)]
            assert [d.sw_if_index for d in api.dump("sw_interface_dump", sw_if_index=idx)] \
                == [idx]
        finally:
            api.call("delete_loopback", sw_if_index=idx)
        assert api.dump("sw_interface_dump", sw_if_index=idx) == []
        # a "get" service: details, then a reply whose retval is checked
        (exporter,) = api.dump("ipfix_all_exporter_get", cursor=0)
        assert type(exporter).__name__ == "ipfix_all_exporter_details"

    def test_the_unit_tier_messages_are_accepted_by_vpp(self, api):
        """Every VALID message of the unit tier, sent for real, in an order
        that makes the references exist; retval 0 for each."""
        d = api.defs
        cases = dict((n, b) for n, b in VALID)          # first variant of each
        created = api.call("af_packet_create_v3", **cases["af_packet_create_v3"](d))
        i = created.sw_if_index
        api.call("sw_interface_set_flags", sw_if_index=i, flags=1)
        api.call("sw_interface_add_del_address", sw_if_index=i, is_add=True,
                 prefix="10.0.0.2/24")
        route = d.fill("ip_route_add_del", {"is_add": True, "route": {
            "prefix": "10.1.0.0/24", "paths": [{"sw_if_index": i, "proto": 0,
                                               "nh": {"address": {"ip4": "10.0.0.1"}}}]}})
        api.call("ip_route_add_del", **route)
        vx = api.call("vxlan_add_del_tunnel_v3", **cases["vxlan_add_del_tunnel_v3"](d))
        api.call("bridge_domain_add_del_v2", **cases["bridge_domain_add_del_v2"](d))
        api.call("sw_interface_set_l2_bridge", rx_sw_if_index=vx.sw_if_index, bd_id=1)
        acl = api.call("acl_add_replace", **cases["acl_add_replace"](d)).acl_index
        api.call("acl_interface_set_acl_list", **d.fill("acl_interface_set_acl_list", {
            "sw_if_index": i, "n_input": 1, "acls": [acl]}))
        api.call("nat44_ed_plugin_enable_disable", **cases["nat44_ed_plugin_enable_disable"](d))
        api.call("nat44_add_del_lb_static_mapping",
                 **cases["nat44_add_del_lb_static_mapping"](d))
        assert api.call("cnat_translation_update", **cases["cnat_translation_update"](d)).id \
            != NO
        api.call("bpf_trace_filter_set", **cases["bpf_trace_filter_set"](d))
        node = api.call("get_node_index", node_name="af-packet-input").node_index
        api.call("trace_capture_packets", **{**cases["trace_capture_packets"](d),
                                             "node_index": node})
        assert "10.1.0.0/24" in api.cli("show ip fib 10.1.0.0/24")
        assert [a.acl_index for a in api.dump("acl_dump", acl_index=acl)] == [acl]

    def test_call_many_pipelines_1000_requests(self, api, capsys):
        lo = api.call("create_loopback").sw_if_index
        try:
            def routes(base: int, add: bool) -> list[dict]:
                return [api.fill("ip_route_add_del", is_add=add, route={
                    "table_id": 0, "prefix": f"10.{base + n // 250}.{n % 250}.0/24",
                    "paths": [{"sw_if_index": lo, "proto": 0}]}) for n in range(1000)]
            one_by_one, batch = routes(100, True), routes(150, True)
            t0 = time.perf_counter()
            for kw in one_by_one:
                api.call("ip_route_add_del", **kw)
            t_sync = time.perf_counter() - t0
            t0 = time.perf_counter()
            replies = api.call_many("ip_route_add_del", batch)
            t_async = time.perf_counter() - t0
            with capsys.disabled():
                print(f"\n1,000 ip_route_add_del: sync {t_sync:.3f} s, "
                      f"call_many {t_async:.3f} s")
            assert len(replies) == 1000 and {r.retval for r in replies} == {0}
            assert t_async < t_sync
            # the FIB summary counts prefixes per length: the 2,000 routes are in
            per_len = dict(line.split() for line in api.cli("show ip fib summary").splitlines()
                           if re.fullmatch(r"\s*\d+\s+\d+\s*", line))
            assert int(per_len["24"]) >= 2000
            api.call_many("ip_route_add_del", routes(100, False) + routes(150, False))
            bad = [{"sw_if_index": lo, "flags": 1}, {"sw_if_index": 99999, "flags": 1},
                   {"sw_if_index": lo, "flags": 0}]
            with pytest.raises(VppApiError) as e:
                api.call_many("sw_interface_set_flags", bad)
            assert (e.value.index, e.value.retval) == (1, -2)
            assert [r.retval for r in e.value.replies] == [0, -2, 0]
        finally:
            api.call("delete_loopback", sw_if_index=lo)

    def test_kill_gives_unavailable_then_reconnect_after_restart(self, netns):
        with VppProcess(netns=netns) as p:
            api = VppApi(str(p.api_socket), api_dir=p.install.api_dir).connect()
            try:
                gen = api.generation
                api.call("create_loopback")
                p.kill()
                t0 = time.monotonic()
                with pytest.raises(VppUnavailable, match="lost the connection"):
                    api.call("show_version")
                assert time.monotonic() - t0 < 2
                assert not api.connected
                with pytest.raises(VppUnavailable, match="not connected"):
                    api.call("show_version")
                with pytest.raises(VppUnavailable):
                    api.reconnect()                    # VPP is still down
                p.start()
                api.reconnect(wait=5)
                assert api.generation == gen + 1
                # a new VPP: the loopback is gone, only local0 remains
                assert [d.sw_if_index for d in api.dump("sw_interface_dump")] == [0]
            finally:
                api.close()

    def test_start_failure_quotes_vpp_output(self):
        p = VppProcess(extra_config="no-such-section { x }\n")
        try:
            with pytest.raises(VppUnavailable, match=r"(?s)exited with status.*no-such-section"):
                p.start(timeout=10)
            assert not p.running
        finally:
            p.close()


# -- what needs no VPP -------------------------------------------------------------
def _api_dir() -> Path:
    inst = process.find_vpp()
    if inst is not None and inst.api_dir.is_dir():
        return inst.api_dir
    shared = Path(__file__).parents[3] / "shared" / "vpp-api"
    if not shared.is_dir():
        pytest.skip("no VPP API definitions")
    return shared


@pytest.fixture
def fake_server():
    """Unix socket servers that are not VPP, each answering in its own way."""
    d = Path(tempfile.mkdtemp(prefix="cvppsock-"))
    socks: list[socket.socket] = []

    def serve(behaviour: str) -> str:
        path = str(d / f"{behaviour}.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(4)
        socks.append(s)

        def loop() -> None:
            while True:
                try:
                    c, _ = s.accept()
                except OSError:
                    return
                if behaviour == "garbage":
                    c.recv(64)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                elif behaviour == "silent":
                    time.sleep(3)
                c.close()
        threading.Thread(target=loop, daemon=True).start()
        return path
    try:
        yield serve
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("behaviour,pattern", [
    ("close", "closed the connection"), ("garbage", "frame: not a VPP API socket"),
    ("silent", "no answer within 1 s"),
])
def test_a_socket_that_is_not_vpp_gives_one_clear_error(fake_server, behaviour, pattern):
    api = VppApi(fake_server(behaviour), api_dir=_api_dir(), timeout=1)
    t0 = time.monotonic()
    with pytest.raises(VppUnavailable, match=pattern) as e:
        api.connect()
    assert time.monotonic() - t0 < 3
    assert e.value.socket_path.endswith(f"{behaviour}.sock") and not api.connected


def test_missing_socket_is_unavailable(tmp_path):
    with pytest.raises(VppUnavailable, match="does not exist"):
        VppApi(str(tmp_path / "api.sock"), api_dir=_api_dir()).connect()


def test_startup_conf_and_argv_for_a_namespace(tmp_path, monkeypatch):
    fake = process.VppInstall(tmp_path / "prefix", tmp_path / "prefix" / "bin" / "vpp")
    monkeypatch.setattr(process, "find_vpp", lambda prefix=None: fake)
    p = VppProcess(tmp_path / "rt", name="node1", netns="lab-node1")
    conf = process.render_startup_conf(p.config)
    for want in (f"runtime-dir {tmp_path}/rt", f"socket-name {tmp_path}/rt/api.sock",
                 "prefix node1", "plugin dpdk_plugin.so { disable }", "page-size 4k",
                 f"pidfile {tmp_path}/rt/vpp.pid", "main-heap-page-size 4k"):
        assert want in conf
    assert p.argv()[:5] == ["ip", "netns", "exec", "lab-node1", str(fake.binary)]
    assert p.argv()[-2:] == ["-c", str(tmp_path / "rt" / "startup.conf")]
    with pytest.raises(InvalidInput, match="too long"):
        process.render_startup_conf(process.VppConfig(Path("/" + "x" * 120), "p"))


def test_availability_says_how_to_get_a_vpp(monkeypatch, tmp_path):
    monkeypatch.setattr(process, "find_vpp", lambda prefix=None: None)
    ok, reason = process.availability()
    assert not ok and "VPP_PREFIX" in reason and "install" in reason
    assert os.linesep not in reason
