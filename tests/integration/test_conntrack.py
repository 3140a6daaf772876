"""ctnetlink for real (root): a fresh network namespace with conntrack on and
a DNAT rule; the entries agent/linux/conntrack.py reads are the ones
pyroute2's independent decoder reads, the translated ones with the DNAT
target as their answering side."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest

from lab.nsthread import in_netns

pytestmark = pytest.mark.root

RULES = """
table ip cttest {
  chain out { type nat hook output priority -100; udp dport 9999 dnat to 127.0.0.2:9998; }
  chain track { type filter hook output priority 0; ct state new counter; }
}
"""


@pytest.fixture
def netns():
    name = f"cttest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=RULES, text=True, check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_the_table_is_what_pyroute2_reads_with_the_dnat_target(netns):
    def inside():
        from pyroute2 import Conntrack

        from agent.linux import conntrack
        for port in range(30000, 30050):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", port))
                s.sendto(b"x", ("127.0.0.1", 9999 if port % 2 else 7000))
        ours = conntrack.sessions()
        with Conntrack() as c:
            ref = [(e.tuple_orig.saddr, e.tuple_orig.sport, e.tuple_orig.daddr, e.tuple_orig.dport,
                    e.tuple_reply.saddr, e.tuple_reply.sport) for e in c.dump_entries()]
        return ours, ref
    ours, ref = in_netns(netns, inside)
    assert len(ours) == 50
    assert sorted((s.src, s.sport, s.dst, s.dport, s.reply_src, s.reply_sport) for s in ours) == sorted(ref)
    dnat = [s for s in ours if s.dport == 9999]
    assert len(dnat) == 25 and all((s.reply_src, s.reply_sport) == ("127.0.0.2", 9998) and s.translated
                                   for s in dnat)
    assert all(s.protocol == "udp" and 0 < s.timeout <= 30 for s in ours)
