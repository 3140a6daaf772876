"""agent.linux.rtnl: the hand-written RTNETLINK messages of the pod-start path.

Encoding is checked byte for byte against pyroute2's encoding of the same
request (what the descriptors sent before, and what the kernel accepts);
decoding against a real echo of this kernel (and pyroute2's reading of it);
the socket's request/answer logic against a scripted kernel: a fake socket
that answers each request as rtnetlink does (answers, then an
acknowledgement carrying the request's sequence number). No root: nothing
reaches the kernel; tests/integration/test_rtnl.py does it for real.
"""
from __future__ import annotations

import errno
import os
import struct

import pytest
from pyroute2 import IPBatch
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from agent.errors import DataplaneError
from agent.linux import rtnl
from agent.linux.netns import is_errno, nl_error
from agent.linux.routes import _route_args

# RTM_NEWLINK as this kernel (6.18) echoed it to NLM_F_ECHO on the creation of
# a veth pair: host end cvabcdef01234 (MTU 1450), its peer eth0 put into
# another namespace (index 2 there); sequence number 7.
REAL_ECHO = bytes.fromhex(
    "e80500001000000007000000252d0000000001000200000043100000ffffffff120003006376616263646566"
    "303132333400000008000d00e803000005001000000000000500110000000000050043000000000008000400"
    "aa050000080032004400000008003300ffff000008001b000000000008001e000000000008003d0000000000"
    "08001f000200000008002800ffff0000080029000000010008003a000000010008003f000000010008004000"
    "0000010008003b00f8ff070008003c00ffff0000080042000000000008002000020000000500210000000000"
    "080023000100000008002f000000000008003000010000000600440000000000060045000000000005002700"
    "000000000a000100e64c781a34ee00000a000200ffffffffffff0000cc001700000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000006400070000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000c002b0005000200000000001000120009000100"
    "7665746800000000080025000000000008000500020000000c0006006e6f71756575650030031a008c000200"
    "8800010000000000000000000000000001000000010000000100000001000000000000000100000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000010270000e803000000000000000000000000000000000000"
    "01000000a0020a00080001000000000014000500ffff0000c19b040094860000e8030000f400020000000000"
    "40000000aa05000001000000010000000100000001000000ffffffffa00f0000e803000000000000803a0900"
    "805101000300000058020000100000000000000001000000010000000100000060ea00000000000000000000"
    "0000000000000000000000000000000001000000000000000000000010270000e80300000100000000000000"
    "00000000010000000000000000000000010000000000000000000000000000000000000080ee360000000000"
    "000000000100000000000000000000000000000000000000000000000004000000000000ffff0000ffffffff"
    "0100000000000000000000000000000034010300260000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000003c000600070000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000140007000000000000000000"
    "0000000000000000050008000000000024000e00000000000000000000000000000000000000000000000000"
    "000000000000000004003e8004004180"
)


def _unheader(b: bytes) -> bytes:
    """A message without its sequence number and port id (pyroute2 fills
    those in from its own counters)."""
    return b[:8] + bytes(8) + b[16:]


def _pyroute2(call, *args, **kwargs) -> bytes:
    """What pyroute2's IPRoute method would send for these arguments."""
    b = IPBatch()
    try:
        getattr(b, call)(*args, **kwargs)
        return _unheader(bytes(b.batch))
    finally:
        b.close()


# --------------------------------------------------------------------------- encoding
def test_the_veth_request_is_what_pyroute2_encodes():
    peer = [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 9), ("IFLA_MTU", 1450),
            ("IFLA_ADDRESS", "0a:58:0a:01:01:02")]
    msg = ifinfmsg()
    msg["flags"] = msg["change"] = rtnl.IFF_UP
    msg["attrs"] = [("IFLA_IFNAME", "cv0123456789a"), ("IFLA_MTU", 1450), ("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_KIND", "veth"),
        ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]})]})]
    msg["header"]["type"] = rtnl.RTM_NEWLINK
    msg["header"]["flags"] = 0x60D  # REQUEST | ACK | ECHO | EXCL | CREATE
    msg["header"]["sequence_number"] = 42
    msg.encode()
    ours = rtnl.veth_newlink(42, "cv0123456789a", "eth0", 9, 1450, "0a:58:0a:01:01:02")
    assert ours == bytes(msg.data)


def test_the_veth_request_without_mac_echo_or_up():
    ours = rtnl.veth_newlink(1, "cvx", "eth0", 3, 1500, up=False, peer_up=False, echo=False)
    kind, flags, seq, payload = next(rtnl.messages(ours))
    assert (kind, flags, seq) == (rtnl.RTM_NEWLINK, rtnl.F_CREATE, 1)
    assert struct.unpack_from("=BxHiII", payload) == (0, 0, 0, 0, 0)
    top = dict(rtnl.attrs(payload, 16))
    info = dict(rtnl.attrs(top[rtnl.IFLA_LINKINFO]))
    peer = dict(rtnl.attrs(dict(rtnl.attrs(info[rtnl.IFLA_INFO_DATA]))[rtnl.VETH_INFO_PEER], 16))
    assert rtnl.IFLA_ADDRESS not in peer and peer[rtnl.IFLA_IFNAME] == b"eth0\0"


def test_a_peer_brought_up_carries_its_flags_in_its_own_ifinfomsg():
    msg = rtnl.veth_newlink(1, "cvx", "eth0", 3, 1500, peer_up=True)
    payload = next(rtnl.messages(msg))[3]
    info = dict(rtnl.attrs(dict(rtnl.attrs(payload, 16))[rtnl.IFLA_LINKINFO]))
    peer = dict(rtnl.attrs(info[rtnl.IFLA_INFO_DATA]))[rtnl.VETH_INFO_PEER]
    assert struct.unpack_from("=BxHiII", peer)[3:] == (rtnl.IFF_UP, rtnl.IFF_UP)


@pytest.mark.parametrize("kwargs, ours", [
    ({"ifalias": "contiv:pod:default/web-1"}, {"alias": "contiv:pod:default/web-1"}),
    ({"ifalias": "contiv:pod:x/abc"}, {"alias": "contiv:pod:x/abc"}),  # other padding
    ({"state": "up"}, {"up": True}),
    ({"ifalias": "x", "state": "up"}, {"alias": "x", "up": True}),
])
def test_link_set_is_what_pyroute2_encodes(kwargs, ours):
    assert rtnl.link_set(0, 7, **ours) == _pyroute2("link", "set", index=7, **kwargs)


@pytest.mark.parametrize("address, prefixlen", [
    ("10.1.1.2", 32), ("192.168.77.2", 24), ("fd00::2", 128), ("2001:db8::1:2", 64)])
def test_addr_add_is_what_pyroute2_encodes(address, prefixlen):
    assert rtnl.addr_new(0, 3, address, prefixlen) == _pyroute2(
        "addr", "add", index=3, address=address, prefixlen=prefixlen)


ROUTES = [  # (dst, via, onlink, oif): what the route descriptors make
    ("0.0.0.0/0", "10.1.1.1", True, 2),  # a pod's default route via the gateway
    ("10.1.1.2/32", "", False, 7),  # the node's route to a local pod
    ("10.1.2.0/24", "10.1.2.1", True, 9),  # a peer's pod subnet over VXLAN
    ("::/0", "fd00::1", True, 2),
    ("fd00:1::5/128", "", False, 4),
]


@pytest.mark.parametrize("cmd", ["add", "replace", "del"])
@pytest.mark.parametrize("dst, via, onlink, oif", ROUTES)
def test_routes_are_what_pyroute2_encodes(cmd, dst, via, onlink, oif):
    args = _route_args(dst, via, onlink, 0 if cmd == "del" else oif)  # as the descriptors delete
    # pyroute2's keywords: the rtmsg flags are its ``flags``; no oif is no keyword
    py = {("flags" if k == "rtm_flags" else k): v for k, v in args.items() if k != "oif" or v}
    kind, flags = {"add": (rtnl.RTM_NEWROUTE, rtnl.F_CREATE),
                   "replace": (rtnl.RTM_NEWROUTE, rtnl.F_REPLACE),
                   "del": (rtnl.RTM_DELROUTE, rtnl.F_REQ)}[cmd]
    assert rtnl.route_msg(0, kind, flags, **args) == _pyroute2("route", cmd, **py)


@pytest.mark.parametrize("cmd", ["add", "replace"])
def test_a_route_with_a_preferred_source_is_what_pyroute2_encodes(cmd):
    """The VPP host interconnect's routes: the node sends from its own address
    in its pod subnet."""
    args = _route_args("10.1.0.0/16", "169.254.99.2", False, 5, "10.1.1.254")
    assert args["prefsrc"] == "10.1.1.254"
    py = {("flags" if k == "rtm_flags" else k): v for k, v in args.items()}
    kind, flags = {"add": (rtnl.RTM_NEWROUTE, rtnl.F_CREATE),
                   "replace": (rtnl.RTM_NEWROUTE, rtnl.F_REPLACE)}[cmd]
    assert rtnl.route_msg(0, kind, flags, **args) == _pyroute2("route", cmd, **py)


def test_link_get_by_name_or_index():
    by_name = rtnl.link_get(5, name="cvx")
    assert _unheader(by_name) == _pyroute2("link", "get", ifname="cvx")
    kind, flags, seq, payload = next(rtnl.messages(rtnl.link_get(6, index=4)))
    assert (kind, flags, seq) == (rtnl.RTM_GETLINK, rtnl.F_REQ, 6)
    assert struct.unpack_from("=BxHiII", payload)[2] == 4 and len(payload) == 16


@pytest.mark.parametrize("bad", [
    lambda: rtnl.addr_new(1, 2, "10.1.1.300", 32),
    lambda: rtnl.route_msg(1, rtnl.RTM_NEWROUTE, rtnl.F_CREATE, family=rtnl.AF_INET,
                           dst="fd00::", dst_len=64),
    lambda: rtnl.veth_newlink(1, "a", "b", 3, 1500, "0a:58:0a"),
])
def test_malformed_input_is_refused_before_anything_is_sent(bad):
    with pytest.raises(ValueError):
        bad()


# --------------------------------------------------------------------------- decoding
def test_a_real_echo_decodes_as_pyroute2_reads_it():
    ((kind, flags, seq, payload),) = list(rtnl.messages(REAL_ECHO))
    assert (kind, seq) == (rtnl.RTM_NEWLINK, 7)
    link = rtnl.decode_link(payload)
    assert link == rtnl.Link(index=2, flags=0x1043, name="cvabcdef01234", mtu=1450,
                             mac="e6:4c:78:1a:34:ee", link=2, alias="", kind="veth")
    ref = ifinfmsg(REAL_ECHO)
    ref.decode()
    assert (link.index, link.flags, link.name, link.mtu, link.mac, link.link, link.kind) == (
        ref["index"], ref["flags"], ref.get_attr("IFLA_IFNAME"), ref.get_attr("IFLA_MTU"),
        ref.get_attr("IFLA_ADDRESS"), ref.get_attr("IFLA_LINK"),
        ref.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND"))


def test_an_alias_and_nested_flags_decode():
    msg = ifinfmsg()
    msg["index"], msg["flags"] = 12, 1
    msg["attrs"] = [("IFLA_IFNAME", "cvy"), ("IFLA_IFALIAS", "contiv:pod:a/b"),
                    ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan")]})]
    msg["header"]["type"] = rtnl.RTM_NEWLINK
    msg.encode()
    data = bytearray(msg.data)
    # the kernel marks nested attributes with NLA_F_NESTED (0x8000): ignored
    off = 16 + 16 + 8 + 20
    assert struct.unpack_from("=H", data, off + 2)[0] == rtnl.IFLA_LINKINFO
    struct.pack_into("=H", data, off + 2, rtnl.IFLA_LINKINFO | 0x8000)
    link = rtnl.decode_link(next(rtnl.messages(bytes(data)))[3])
    assert (link.index, link.name, link.alias, link.kind, link.link) == (12, "cvy", "contiv:pod:a/b",
                                                                         "vxlan", None)


def test_a_truncated_datagram_yields_only_whole_messages():
    ack = _ack(7)
    assert [m[:3] for m in rtnl.messages(REAL_ECHO + ack)] == [(rtnl.RTM_NEWLINK, 0, 7),
                                                               (rtnl.NLMSG_ERROR, 0x100, 7)]
    assert list(rtnl.messages(REAL_ECHO[:-1])) == []


# --------------------------------------------------------------------------- the socket
def _ack(seq: int, err: int = 0) -> bytes:
    """NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK: the error, then
    the request's header only."""
    body = struct.pack("=i", -err) + struct.pack("=IHHII", 16, 0, 0, seq, 0)
    return struct.pack("=IHHII", 16 + len(body), rtnl.NLMSG_ERROR, 0x100, seq, 0) + body


def _with_seq(msg: bytes, seq: int) -> bytes:
    return msg[:8] + struct.pack("=I", seq) + msg[12:]


class FakeKernel:
    """A socket whose 'kernel' answers each request by answer(kind, payload)
    -> (error, [answers]): answers first, then the acknowledgement, each its own
    datagram as rtnetlink sends them; noise datagrams come first (stale
    answers, notifications)."""

    def __init__(self, answer, noise=()):
        self.answer = answer
        self.sent: list[bytes] = []
        self.queue: list[bytes] = list(noise)
        self.opts = {}
        self.closed = False

    def setsockopt(self, level, opt, value):
        self.opts[(level, opt)] = value

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        for kind, _, seq, payload in rtnl.messages(data):
            err, answers = self.answer(kind, payload)
            self.queue += [_with_seq(a, seq) for a in answers] + [_ack(seq, err)]
        return len(data)

    def recv(self, n: int) -> bytes:
        return self.queue.pop(0)

    def close(self):
        self.closed = True


def test_the_socket_asks_for_short_error_messages():
    sock = FakeKernel(lambda k, p: (0, []))
    rtnl.Rtnl(sock)
    assert sock.opts == {(rtnl.SOL_NETLINK, rtnl.NETLINK_CAP_ACK): 1}


def test_veth_add_returns_the_echoed_host_end():
    sock = FakeKernel(lambda k, p: (0, [REAL_ECHO]))
    link = rtnl.Rtnl(sock).veth_add("cvabcdef01234", "eth0", 5, 1450, "0a:58:0a:01:01:02")
    assert (link.index, link.mac, link.link) == (2, "e6:4c:78:1a:34:ee", 2)
    assert len(sock.sent) == 1


def test_without_an_echo_the_host_end_is_read_back():
    def kernel(kind, payload):
        return 0, ([REAL_ECHO] if kind == rtnl.RTM_GETLINK else [])
    sock = FakeKernel(kernel)
    link = rtnl.Rtnl(sock).veth_add("cvabcdef01234", "eth0", 5, 1450)
    assert link.index == 2
    assert [next(rtnl.messages(m))[0] for m in sock.sent] == [rtnl.RTM_NEWLINK, rtnl.RTM_GETLINK]


def test_stale_answers_and_notifications_are_skipped():
    noise = [_ack(999, errno.EEXIST), _with_seq(REAL_ECHO, 0)]
    sock = FakeKernel(lambda k, p: (0, []), noise=noise)
    rtnl.Rtnl(sock).addr_add(2, "10.1.1.2", 32)  # no error: the EEXIST was not its own
    assert sock.queue == []


@pytest.mark.parametrize("err", [errno.EEXIST, errno.ENODEV, errno.EINVAL, errno.ESRCH])
def test_a_refusal_is_an_oserror_the_callers_recognise(err):
    rt = rtnl.Rtnl(FakeKernel(lambda k, p: (err, [])))
    with pytest.raises(rtnl.RtnlError) as e:
        rt.route("add", family=rtnl.AF_INET, dst="0.0.0.0", dst_len=0, gateway="10.1.1.1", oif=2)
    assert isinstance(e.value, OSError) and e.value.errno == e.value.code == err
    assert is_errno(e.value, err) and not is_errno(e.value, err + 1000)
    typed = nl_error(e.value, "route add", dst="0.0.0.0/0", netns="/run/netns/p")
    assert isinstance(typed, DataplaneError) and typed.op == "route add"
    assert typed.args_ == {"dst": "0.0.0.0/0", "netns": "/run/netns/p"}
    assert typed.message == f"route add(dst=0.0.0.0/0, netns=/run/netns/p): {os.strerror(err)}"


def test_a_batch_is_one_datagram_with_an_outcome_per_request():
    def kernel(kind, payload):
        if kind == rtnl.RTM_NEWADDR and payload[1] == 32:
            return errno.EEXIST, []
        return 0, []
    sock = FakeKernel(kernel)
    up, a, b = rtnl.Rtnl(sock).batch([
        lambda seq: rtnl.link_set(seq, 2, up=True),
        lambda seq: rtnl.addr_new(seq, 2, "10.1.1.2", 32),
        lambda seq: rtnl.addr_new(seq, 2, "fd00::2", 128)])
    assert len(sock.sent) == 1 and len(list(rtnl.messages(sock.sent[0]))) == 3
    assert up == [] and b == []
    assert isinstance(a, rtnl.RtnlError) and a.errno == errno.EEXIST
    seqs = [m[2] for m in rtnl.messages(sock.sent[0])]
    assert len(set(seqs)) == 3 and 0 not in seqs


def test_a_missing_link_is_enodev():
    rt = rtnl.Rtnl(FakeKernel(lambda k, p: (errno.ENODEV, [])))
    with pytest.raises(rtnl.RtnlError) as e:
        rt.link(index=99)
    assert e.value.errno == errno.ENODEV
