"""The guard of a pending steal: ``python -m stn.guard --dir DIR IFACE``.

Started detached by ``contivctl stn steal`` as soon as the snapshot is
saved; rolls the steal back if the process doing it dies midway, and
restores the NIC at the deadline if no confirmation came; it keeps trying
until the NIC is given back or confirmed. It outlives the command on
purpose: the terminal that ran the steal may be the very connection the
steal cut.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stn.guard")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--socket", default="")
    ap.add_argument("--vpp-api-socket", default="")
    ap.add_argument("iface")
    a = ap.parse_args(argv)
    from stn.api import open_stn  # noqa: PLC0415
    stn = open_stn(a.dir, a.socket, a.vpp_api_socket)
    while True:
        try:
            if stn.guard_once(a.iface):
                return 0
        except Exception:  # noqa: BLE001 -- a restore that failed (it kept the snapshot): again
            time.sleep(1.0)
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
