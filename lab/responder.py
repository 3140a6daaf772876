"""The lab's pod responder: one process serving every pod's containerPorts.

For each pod it opens, inside the pod's network namespace, a listener per
declared port (TCP and UDP; SCTP where the kernel has it) and answers every
connection or datagram with the pod's ``namespace/name`` and the client
address it saw (so tests can tell whether a source address was NATed). One process for the
whole lab instead of one per pod keeps ``lab apply`` of hundreds of pods cheap.

Sockets are created by a thread that enters the pod namespace only for the
``socket()`` call and returns (a socket stays bound to the namespace it was
created in); serving happens in the main thread with a selector.

Control: JSON lines on a unix socket -- ``{"op": "add", "pod": "ns/name",
"netns": PATH, "ports": [[80, "TCP"], ...]}``, ``{"op": "remove", "pod": ...}``,
``{"op": "list"}``; each answered with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lab.nsthread import in_netns

PROTOS = {"TCP": (socket.SOCK_STREAM, 0), "UDP": (socket.SOCK_DGRAM, 0),
          "SCTP": (socket.SOCK_STREAM, socket.IPPROTO_SCTP)}


def sockets_in_netns(netns: str, specs: list[tuple[int, str]]) -> list[tuple[socket.socket, str]]:
    """Create listening sockets inside ``netns``."""
    def listeners() -> list[tuple[socket.socket, str]]:
        out = []
        for port, proto in specs:
            stype, sproto = PROTOS[proto]
            try:
                s = socket.socket(socket.AF_INET, stype, sproto)
            except OSError:
                continue  # e.g. SCTP on a kernel without it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            if stype == socket.SOCK_STREAM:
                s.listen(128)
            s.setblocking(False)
            out.append((s, proto))
        return out
    return in_netns(netns, listeners)


class Responder:
    def __init__(self, control: str) -> None:
        self.sel = selectors.DefaultSelector()
        self.pods: dict[str, list[tuple[socket.socket, str]]] = {}
        self.lock = threading.Lock()
        Path(control).unlink(missing_ok=True)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.ctl.bind(control)
        finally:
            os.umask(old)
        self.ctl.listen(64)
        self.ctl.setblocking(False)
        self.sel.register(self.ctl, selectors.EVENT_READ, ("ctl", None))

    def handle_ctl(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(10)
        f = conn.makefile("rwb")
        try:
            for line in f:
                try:
                    reply = self.command(json.loads(line))
                except Exception as e:  # noqa: BLE001 -- reported to the client
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()
        except OSError:
            pass
        finally:
            f.close()
            conn.close()

    def command(self, req: dict) -> dict:
        op = req.get("op")
        if op == "add":
            pod = req["pod"]
            self.remove(pod)
            socks = sockets_in_netns(req["netns"], [(int(p), str(proto).upper()) for p, proto in req["ports"]])
            for s, proto in socks:
                self.sel.register(s, selectors.EVENT_READ, (proto, pod))
            self.pods[pod] = socks
            return {"ok": True, "listening": [[s.getsockname()[1], proto] for s, proto in socks]}
        if op == "remove":
            return {"ok": True, "removed": self.remove(req["pod"])}
        if op == "list":
            return {"ok": True, "pods": {p: [[s.getsockname()[1], proto] for s, proto in socks]
                                         for p, socks in self.pods.items()}}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def remove(self, pod: str) -> bool:
        socks = self.pods.pop(pod, None)
        for s, _ in socks or []:
            self.sel.unregister(s)
            s.close()
        return socks is not None

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select(timeout=1.0):
                kind, pod = key.data
                s = key.fileobj
                try:
                    if kind == "ctl":
                        conn, _ = s.accept()
                        # control connections are short; serve them inline
                        self.handle_ctl(conn)
                    elif kind == "UDP":
                        data, addr = s.recvfrom(2048)
                        s.sendto(f"{pod} {addr[0]}\n".encode(), addr)
                    else:
                        conn, addr = s.accept()
                        try:
                            conn.setblocking(True)
                            conn.settimeout(1)
                            conn.sendall(f"{pod} {addr[0]}\n".encode())
                            conn.shutdown(socket.SHUT_WR)
                        finally:
                            conn.close()
                except OSError:
                    continue


class ResponderClient:
    def __init__(self, control: str) -> None:
        self.control = control

    def call(self, req: dict) -> dict:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.control)
            s.sendall(json.dumps(req).encode() + b"\n")
            f = s.makefile("rb")
            line = f.readline()
        finally:
            s.close()
        reply = json.loads(line)
        if not reply.get("ok"):
            from agent.errors import DataplaneError  # noqa: PLC0415
            raise DataplaneError(f"pod responder: {reply.get('error')}")
        return reply


def start_responder(paths) -> int:
    """Start the lab's responder (detached); returns its pid once it listens."""
    log = open(paths.responder_log, "ab")
    try:
        p = subprocess.Popen([sys.executable, "-m", "lab.responder", "--control", paths.responder_socket],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    finally:
        log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"pod responder exited with {p.returncode}; see {paths.responder_log}")
        try:
            ResponderClient(paths.responder_socket).call({"op": "list"})
            return p.pid
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pod responder did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--control", required=True)
    a = ap.parse_args()
    Responder(a.control).serve()


if __name__ == "__main__":
    main()
