"""agent/linux/sockdiag.py without root: the request's bytes, decoding the
kernel's inet_diag_msg, and the dump's end and errors (a scripted socket);
tests/integration/test_sockdiag.py compares it with ss on real sockets."""
from __future__ import annotations

import socket
import struct

import pytest

from agent.errors import DataplaneError
from agent.linux import sockdiag
from agent.linux.nlmsg import message


def diag_msg(family: int, state: int, src: str, sport: int, dst: str, dport: int, rq=0, wq=0,
             uid=0, inode=0) -> bytes:
    """An inet_diag_msg as the kernel packs it (ports big-endian, addresses in 16 bytes)."""
    a = socket.inet_pton(family, src).ljust(16, b"\0")
    b = socket.inet_pton(family, dst).ljust(16, b"\0")
    return struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", sport, dport) + a + b + \
        struct.pack("=I8sIIIII", 0, b"\0" * 8, 0, rq, wq, uid, inode)


def test_the_request_is_an_inet_diag_req_v2_dump_of_every_state():
    req = sockdiag.request(7, socket.AF_INET6, socket.IPPROTO_UDP)
    n, kind, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (n, kind, flags, seq, pid) == (16 + 56, 20, 0x301, 7, 0) and len(req) == n
    assert struct.unpack_from("=BBBxI", req, 16) == (socket.AF_INET6, socket.IPPROTO_UDP, 0, 0xFFFFFFFF)
    assert req[24:] == b"\0" * 48  # no socket id: all of them


def test_decoding_v4_and_v6_with_ss_state_names():
    s = sockdiag.parse("tcp", diag_msg(socket.AF_INET, 10, "0.0.0.0", 8080, "0.0.0.0", 0, 1, 128, 0, 42))
    assert (s.protocol, s.state, s.local, s.lport, s.peer, s.pport, s.recv_q, s.send_q, s.inode) == \
        ("tcp", "LISTEN", "0.0.0.0", 8080, "0.0.0.0", 0, 1, 128, 42)
    s = sockdiag.parse("udp", diag_msg(socket.AF_INET6, 7, "fd00::2", 53, "::", 0, uid=1000))
    assert (s.state, s.local, s.lport, s.peer, s.uid) == ("UNCONN", "fd00::2", 53, "::", 1000)
    # state 7 is CLOSE for TCP (ss: UNCONN is UDP's word for it)
    assert sockdiag.parse("tcp", diag_msg(socket.AF_INET, 7, "10.0.0.1", 1, "10.0.0.2", 2)).state == "CLOSE"
    assert sockdiag.parse("tcp", diag_msg(socket.AF_INET, 99, "10.0.0.1", 1, "10.0.0.2", 2)).state == "99"


class Scripted:
    """A netlink socket answering each request with the next datagrams."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self.pending = list(self.answers.pop(0))
        return len(data)

    def recv(self, n: int) -> bytes:
        return self.pending.pop(0)


def test_a_dump_reads_until_done_and_skips_other_sequence_numbers():
    listen = diag_msg(socket.AF_INET, 10, "0.0.0.0", 80, "0.0.0.0", 0)
    stale = message(20, 2, 99, diag_msg(socket.AF_INET, 1, "1.1.1.1", 1, "2.2.2.2", 2))
    done = lambda seq: message(3, 2, seq, struct.pack("=i", 0))  # noqa: E731
    sock = Scripted([[stale + message(20, 2, 1, listen), done(1)], [done(2)]])
    out = sockdiag.dump(sock, ("tcp",))
    assert [(s.state, s.lport) for s in out] == [("LISTEN", 80)]
    assert len(sock.sent) == 2  # IPv4, then IPv6


def test_a_refused_dump_is_a_dataplane_error_naming_errno():
    err = message(2, 0, 1, struct.pack("=i", -95) + b"\0" * 16)
    with pytest.raises(DataplaneError) as e:
        sockdiag.dump(Scripted([[err]]), ("udp",))
    assert "errno 95" in e.value.message and e.value.args_["protocol"] == "udp"
