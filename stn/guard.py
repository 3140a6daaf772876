"""The guard of a pending steal: ``python -m stn.guard --dir DIR IFACE``.

Started detached by ``contivctl stn steal``; waits for the steal's
confirmation and restores the NIC at the deadline if it does not come. It
outlives the command on purpose: the terminal that ran the steal may be the
very connection the steal cut.
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
        st = stn.files.state(a.iface)
        if st is None or st.phase != "pending":
            return 0
        if time.time() >= st.deadline:
            stn.expire(a.iface)
            return 0
        time.sleep(min(0.2, max(0.0, st.deadline - time.time())))


if __name__ == "__main__":
    sys.exit(main())
