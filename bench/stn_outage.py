"""What stealing the NIC costs the node: how long ``contivctl stn steal`` and
``restore`` take, and how long the node stops answering meanwhile --
against the same moves done by hand with ``ip`` in the same run.

Usage (root, from the repository root; figures in docs/performance.md)::

    .venv/bin/python bench/stn_outage.py [--runs 5] [--dataplane linux|vpp|both] [--json FILE]

The STN test network (tests/stnnet.py: a node whose only NIC is a veth to a
gateway that routes to a remote host). A pinger in the remote host sends an
ICMP echo to the node's address every 2 ms and keeps the time of every
answer; the *outage* of an operation is the longest stretch without an
answer while it runs (the echo interval is its resolution).

Timed, ``--runs`` times each, medians, each command a new process as an
operator runs it inside the node:

* ``stn steal eth0 --check none`` (the steal alone), ``stn restore eth0``;
* ``stn steal eth0`` (default check: until the gateway answered, confirmed);
* the baselines: a bridge made and the address and default route moved
  onto it, and back, by ``ip -batch`` (one process, no snapshot, no check)
  -- the least a steal onto a bridge can cost the node; and ``stn status``
  -- the least any ``contivctl stn`` command costs (interpreter and imports).

On VPP (``--dataplane vpp``, where a VPP is found) a VPP and an agent run in
the node and VPP takes the NIC; the baseline stays the Linux one.
"""
from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import machine, require_root, require_vpp, say, write_json  # noqa: E402
from tests.stnnet import CONTIVCTL, GW_IP, NODE_IP, StnNet, _in_netns  # noqa: E402

INTERVAL = 0.002


class Pinger:
    """Echoes from ``netns`` to ``dst`` every INTERVAL; :meth:`gap` is the
    longest time without an answer between two instants."""

    def __init__(self, netns: str, dst: str) -> None:
        self.answers: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(netns, dst), daemon=True)
        self._t.start()
        time.sleep(0.2)

    def _run(self, netns: str, dst: str) -> None:
        leave = _in_netns(netns)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        finally:
            leave()
        ident, seq, nxt = os.getpid() & 0xFFFF, 0, time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= nxt:
                seq = (seq + 1) & 0xFFFF
                body = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                s.sendto(body[:2] + struct.pack("!H", _csum(body)) + body[4:], (dst, 0))
                nxt = now + INTERVAL
            if select.select([s], [], [], max(0.0, nxt - time.monotonic()))[0]:
                data, addr = s.recvfrom(256)
                ihl = (data[0] & 0xF) * 4
                if addr[0] == dst and data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == ident:
                    self.answers.append(time.monotonic())
        s.close()

    def gap(self, start: float, end: float) -> float:
        """The longest time in [start, end] between two answers (or an end)."""
        pts = [start] + [t for t in self.answers if start <= t <= end] + [end]
        return max(b - a for a, b in zip(pts, pts[1:]))

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


def _csum(b: bytes) -> int:
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def timed(fn, pinger: Pinger) -> tuple[float, float]:
    """(wall seconds of ``fn()``, outage seconds while it ran and until the next answer)."""
    t0 = time.monotonic()
    fn()
    t1 = time.monotonic()
    time.sleep(0.3)  # let the answer after it arrive
    return t1 - t0, pinger.gap(t0, t1 + 0.3)


def baseline_steal(net: StnNet) -> None:
    script = (f"link add stnbr-eth0 type bridge stp_state 0 forward_delay 0\n"
              f"link set stnbr-eth0 up\nlink set eth0 master stnbr-eth0\n"
              f"addr add {NODE_IP}/24 dev stnbr-eth0\naddr del {NODE_IP}/24 dev eth0\n"
              f"route replace default via {GW_IP} dev stnbr-eth0\n")
    subprocess.run(["ip", "-n", net.node, "-batch", "-"], input=script, text=True, check=True)


def baseline_restore(net: StnNet) -> None:
    script = (f"link del stnbr-eth0\naddr add {NODE_IP}/24 dev eth0\n"
              f"route replace default via {GW_IP} dev eth0\n")
    subprocess.run(["ip", "-n", net.node, "-batch", "-"], input=script, text=True, check=True)


class Run:
    def __init__(self, dataplane: str, runs: int) -> None:
        self.dataplane, self.runs = dataplane, runs
        self.net = StnNet()
        self.node = None
        self.env = {"CONTIV_SOCKET": f"{self.net.dir}/no-agent.sock"}
        if dataplane == "vpp":
            from tests.vpp.test_vpp_stn import VppNode  # noqa: PLC0415 -- VPP and an agent in the node
            self.node = VppNode(self.net, Path(tempfile.mkdtemp(prefix="stn-bench-")))
            self.env = {"CONTIV_SOCKET": self.node.sock}
        self.pinger = Pinger(self.net.remote, NODE_IP)

    def stn(self, *args: str) -> None:
        extra = ["--dataplane", self.dataplane] if args[0] == "steal" else []
        if self.node is not None:
            extra += ["--vpp-api-socket", str(self.node.vpp.api_socket)]
        r = subprocess.run(["ip", "netns", "exec", self.net.node, *CONTIVCTL, "stn", *args, *extra,
                            "--dir", self.net.dir], capture_output=True, text=True,
                           env={**os.environ, **self.env}, timeout=120)
        if r.returncode:
            raise SystemExit(f"stn {' '.join(args)}: {r.stderr.strip()}")

    def measure(self) -> dict:
        rows: dict[str, list[tuple[float, float]]] = {}

        def add(name, fn):
            rows.setdefault(name, []).append(timed(fn, self.pinger))
        for i in range(self.runs):
            say(f"{self.dataplane}: run {i + 1}/{self.runs}")
            add("steal --check none", lambda: self.stn("steal", "eth0", "--check", "none"))
            add("restore", lambda: self.stn("restore", "eth0"))
            add("steal (until the gateway answers)", lambda: self.stn("steal", "eth0"))
            self.stn("restore", "eth0")
            time.sleep(0.3)
            if self.dataplane == "linux":
                add("baseline: stn status (CLI start)", lambda: self.stn("status"))
                add("baseline: ip -batch onto a bridge", lambda: baseline_steal(self.net))
                add("baseline: ip -batch back", lambda: baseline_restore(self.net))
        return {name: {"wall_ms": round(statistics.median(w for w, _ in v) * 1000, 1),
                       "outage_ms": round(statistics.median(o for _, o in v) * 1000, 1),
                       "outage_max_ms": round(max(o for _, o in v) * 1000, 1),
                       "outage_all_ms": [round(o * 1000, 1) for _, o in v]}
                for name, v in rows.items()}

    def close(self) -> None:
        self.pinger.stop()
        if self.node is not None:
            self.node.close()
        self.net.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dataplane", choices=("linux", "vpp", "both"), default="both")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not require_root("stn_outage"):
        return 2
    planes = ["linux", "vpp"] if a.dataplane == "both" else [a.dataplane]
    if "vpp" in planes and not require_vpp("stn_outage", "" if a.dataplane == "both" else "--dataplane vpp"):
        if a.dataplane == "vpp":
            return 2
        planes = ["linux"]
    out = {"machine": machine(REPO), "runs": a.runs, "results": {}}
    for dp in planes:
        r = Run(dp, a.runs)
        try:
            out["results"][dp] = r.measure()
        finally:
            r.close()
    base = out["results"].get("linux", {})
    print(f"{'data plane':<7} {'operation':<36} {'wall ms':>8} {'outage ms':>10} {'max':>7} {'x baseline':>11}")
    for dp, res in out["results"].items():
        for name, f in res.items():
            ref = base.get("baseline: ip -batch back" if "restore" in name else "baseline: ip -batch onto a bridge")
            ratio = f"{f['wall_ms'] / ref['wall_ms']:.1f}x" if ref and not name.startswith("baseline") else ""
            print(f"{dp:<7} {name:<36} {f['wall_ms']:>8} {f['outage_ms']:>10} {f['outage_max_ms']:>7} {ratio:>11}")
    print(f"(medians of {a.runs}; outage: longest time the node left pings every {INTERVAL * 1000:g} ms "
          "unanswered while the command ran; commit " + out["machine"]["commit"] + ")")
    write_json(a.json, out, "stn_outage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
