"""agent/linux/conntrack.py without root: the dump request's bytes and the
decoding of ctnetlink entries built as the kernel packs them;
tests/integration/test_conntrack.py reads a real table."""
from __future__ import annotations

import socket
import struct

import pytest

from agent.errors import DataplaneError
from agent.linux import conntrack as ct
from agent.linux.nlmsg import message, nla

NESTED = 0x8000


def tup(family: int, src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    v4 = family == socket.AF_INET
    ip = nla(ct.CTA_TUPLE_IP | NESTED,
             nla(ct.CTA_IP_V4_SRC if v4 else ct.CTA_IP_V6_SRC, socket.inet_pton(family, src)) +
             nla(ct.CTA_IP_V4_DST if v4 else ct.CTA_IP_V6_DST, socket.inet_pton(family, dst)))
    pr = nla(ct.CTA_TUPLE_PROTO | NESTED, nla(ct.CTA_PROTO_NUM, bytes([proto])) +
             nla(ct.CTA_PROTO_SRC_PORT, struct.pack(">H", sport)) + nla(ct.CTA_PROTO_DST_PORT, struct.pack(">H", dport)))
    return ip + pr


def entry(family, orig, reply, *extra: bytes) -> bytes:
    return struct.pack("=BBH", family, 0, 0) + nla(ct.CTA_TUPLE_ORIG | NESTED, tup(family, *orig)) + \
        nla(ct.CTA_TUPLE_REPLY | NESTED, tup(family, *reply)) + b"".join(extra)


def test_the_request_dumps_one_family():
    req = ct.request(3, socket.AF_INET6)
    assert struct.unpack_from("=IHHII", req) == (20, (1 << 8) | 1, 0x301, 3, 0)
    assert struct.unpack_from("=BBH", req, 16) == (socket.AF_INET6, 0, 0)


def test_a_translated_udp_entry_and_its_timeout():
    s = ct.parse(entry(socket.AF_INET, ("10.1.1.3", "10.96.0.10", 17, 40000, 53),
                       ("10.1.2.7", "10.1.1.3", 17, 5353, 40000), nla(ct.CTA_TIMEOUT, struct.pack(">I", 29))))
    assert (s.protocol, s.src, s.sport, s.dst, s.dport, s.reply_src, s.reply_sport, s.timeout, s.state) == \
        ("udp", "10.1.1.3", 40000, "10.96.0.10", 53, "10.1.2.7", 5353, 29, "")
    assert s.translated


def test_a_tcp_entry_with_its_state_and_counters_over_ipv6():
    info = nla(ct.CTA_PROTOINFO | NESTED, nla(ct.CTA_PROTOINFO_TCP | NESTED, nla(ct.CTA_PROTOINFO_TCP_STATE, b"\x03")))
    counters = nla(ct.CTA_COUNTERS_ORIG | NESTED, nla(ct.CTA_COUNTERS_PACKETS, struct.pack(">Q", 7)) +
                   nla(ct.CTA_COUNTERS_BYTES, struct.pack(">Q", 4242)))
    s = ct.parse(entry(socket.AF_INET6, ("fd00::3", "fd00::2", 6, 41000, 80), ("fd00::2", "fd00::3", 6, 80, 41000),
                       info, counters))
    assert (s.protocol, s.src, s.reply_src, s.state, s.packets, s.bytes) == \
        ("tcp", "fd00::3", "fd00::2", "ESTABLISHED", 7, 4242)
    assert not s.translated


def test_an_entry_without_its_reply_tuple_is_skipped():
    only = struct.pack("=BBH", 2, 0, 0) + nla(ct.CTA_TUPLE_ORIG | NESTED,
                                              tup(socket.AF_INET, "1.1.1.1", "2.2.2.2", 6, 1, 2))
    assert ct.parse(only) is None


class Scripted:
    def __init__(self, answers):
        self.answers, self.pending = answers, []

    def send(self, data):
        self.pending = list(self.answers.pop(0))

    def recv(self, n):
        return self.pending.pop(0)


def test_a_dump_reads_both_families_until_done():
    e = entry(socket.AF_INET, ("10.0.0.1", "10.0.0.2", 17, 1, 2), ("10.0.0.2", "10.0.0.1", 17, 2, 1))
    done = lambda seq: message(3, 2, seq, b"\0\0\0\0")  # noqa: E731
    got = ct.dump(Scripted([[message(0x101, 2, 1, e) + message(0x101, 2, 7, e), done(1)], [done(2)]]))
    assert [(s.src, s.dport) for s in got] == [("10.0.0.1", 2)]  # the stale sequence number is skipped


def test_a_refused_dump_names_the_errno():
    with pytest.raises(DataplaneError) as e:
        ct.dump(Scripted([[message(2, 0, 1, struct.pack("=i", -1) + b"\0" * 16)]]))
    assert "EPERM" in e.value.message
