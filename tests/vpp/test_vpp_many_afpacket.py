"""VPP keeps answering with many af_packet interfaces readable at once (root;
a real VPP).

VPP 26.10's main loop goes back to ``epoll_wait`` for as long as one call
fills its 16 events, and an af_packet socket stays readable until the
af-packet-input node -- which runs only after that loop -- hands its ring
block back: 16 such sockets ready at once and the main thread never leaves
the poll (its API and CLI stop answering: a VPP node of the lab stalled at
70-85 pods). ``scripts/vpp-build.sh`` bounds that loop (docs/vpp.md, "Many
af_packet interfaces"). This makes the moment on purpose: VPP stopped
(SIGSTOP), one frame sent into each of 24 af_packet interfaces, VPP
continued -- its CLI must answer. A VPP built without the bound fails here,
and that is the truth about it.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time

import pytest

from agent.vpp.process import availability

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]
N = 24  # more than the 16 events one epoll_wait takes


def vppctl(vpp, *cmd: str, timeout: float = 5.0) -> str:
    return subprocess.run([str(vpp.install.binary.parent / "vppctl"), "-s", str(vpp.config.cli_socket), *cmd],
                          capture_output=True, text=True, timeout=timeout, check=True).stdout


def send_frame(netns: str, ifname: str) -> None:
    """One broadcast Ethernet frame out of ``ifname`` in ``netns``."""
    from agent.nsenter import socket_in
    s = socket_in(f"/run/netns/{netns}", socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        s.send(b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"contiv" * 10)
    finally:
        s.close()


@pytest.fixture
def vpp(tmp_path):
    from agent.vpp.process import VppProcess
    ns = f"mafp-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        for i in range(N):
            subprocess.run(["ip", "-n", ns, "link", "add", f"a{i}", "type", "veth", "peer", "name", f"b{i}"],
                           check=True)
            for end in (f"a{i}", f"b{i}"):
                subprocess.run(["ip", "-n", ns, "link", "set", end, "up"], check=True)
        proc = VppProcess(tmp_path / "vpp", netns=ns).start(15)
        for i in range(N):
            vppctl(proc, "create", "host-interface", "name", f"a{i}")
            vppctl(proc, "set", "interface", "state", f"host-a{i}", "up")
        yield proc, ns
    finally:
        if proc is not None:
            if proc.pid:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            proc.stop()
            proc.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_vpp_answers_after_more_af_packet_interfaces_than_one_poll_takes_became_readable(vpp):
    proc, ns = vpp
    placement = vppctl(proc, "show", "interface", "rx-placement")
    assert placement.count("interrupt") >= N, placement  # af_packet's default: the case that stalls
    pid = int(subprocess.run(["pgrep", "-n", "-f", str(proc.config.conf_file)], capture_output=True,
                             text=True, check=True).stdout.split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(N):
            send_frame(ns, f"b{i}")
        time.sleep(0.2)  # TPACKET_V3 hands a block over after its 1 ms timeout
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        out = vppctl(proc, "show", "version")
    except subprocess.TimeoutExpired:
        pytest.fail("VPP's CLI did not answer within 5 s: its main thread is stuck re-polling epoll "
                    "(build VPP with scripts/vpp-build.sh; docs/vpp.md, 'Many af_packet interfaces')")
    assert "vpp" in out.lower()
    # and the frames were taken in: the input node ran on every interface
    rx = vppctl(proc, "show", "interface")
    assert rx.count("rx packets") >= N, rx
