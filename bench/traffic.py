"""Traffic workers for bench/policy_scale.py, run inside pod network namespaces.

``ip netns exec NS python bench/traffic.py serve`` starts both servers (bulk
TCP on 5201: reads until EOF and answers the byte count; connection rate on
5202: accepts and answers one byte) and prints ``ready``.
``... traffic.py bulk HOST SECONDS`` sends for SECONDS and prints
``{"bytes", "seconds", "complete"}``; ``... traffic.py rate HOST SECONDS``
opens and closes connections for SECONDS and prints ``{"connections",
"errors", "seconds"}``. Standard library only, and nothing else imported, so
that a worker starts quickly.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

BULK_PORT, RATE_PORT = 5201, 5202
CHUNK = 256 * 1024


def serve() -> int:
    def bulk_conn(c: socket.socket) -> None:
        buf = bytearray(CHUNK)
        total = 0
        with c:
            while True:
                n = c.recv_into(buf)
                if not n:
                    break
                total += n
            c.sendall(f"{total}\n".encode())

    def listener(port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1024)
        return s

    bulk, rate = listener(BULK_PORT), listener(RATE_PORT)

    def bulk_loop() -> None:
        while True:
            c, _ = bulk.accept()
            threading.Thread(target=bulk_conn, args=(c,), daemon=True).start()
    threading.Thread(target=bulk_loop, daemon=True).start()
    print("ready", flush=True)
    while True:  # rate: accept and close at once (the client waits for the EOF)
        c, _ = rate.accept()
        c.close()


def bulk(host: str, seconds: float) -> int:
    buf = memoryview(bytearray(os.urandom(CHUNK)))
    s = socket.create_connection((host, BULK_PORT), timeout=30)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    sent = 0
    while time.perf_counter() < deadline:
        s.sendall(buf)
        sent += CHUNK
    s.shutdown(socket.SHUT_WR)
    ack = s.makefile().readline()
    dt = time.perf_counter() - t0
    s.close()
    got = int(ack)
    print(json.dumps({"bytes": got, "seconds": dt, "complete": got == sent}))
    return 0


def rate(host: str, seconds: float) -> int:
    n = errors = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, RATE_PORT))
            s.recv(1)
            n += 1
        except OSError:
            errors += 1
        finally:
            s.close()
    print(json.dumps({"connections": n, "errors": errors, "seconds": time.perf_counter() - t0}))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve()
    if len(argv) == 3 and argv[0] in ("bulk", "rate"):
        return {"bulk": bulk, "rate": rate}[argv[0]](argv[1], float(argv[2]))
    print("usage: traffic.py serve | bulk HOST SECONDS | rate HOST SECONDS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
