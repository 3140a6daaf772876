"""The demo behind ``contivctl lab up --demo``: apply the demo workload, then
probe what should connect and what should not, and say whether each matched."""
from __future__ import annotations

from contivctl.output import message, progress, render

#: (source pod, destination, port, expected to connect, why)
PROBES = [
    ("tools/client", "svc:shop/web", None, True, "Service shop/web balances to the web pods"),
    ("shop/web-1", "shop/web-2", None, True, "pod to pod across nodes (VXLAN)"),
    ("shop/web-1", "shop/db", None, True, "allowed by NetworkPolicy shop/db-allow-web"),
    ("tools/client", "shop/db", None, False, "shop/db is isolated; only app=web may connect"),
]


def run_demo(name: str, fmt: str, timeout: float) -> int:
    from lab import ops  # noqa: PLC0415
    from lab.cluster import Lab  # noqa: PLC0415
    from lab.kube import Kube  # noqa: PLC0415
    rows = []
    with progress() as pr:
        kube = Kube(Lab(name), progress=pr.message, step=pr.step)
        try:
            pr.message(f"lab {name}: applying {ops.DEMO.name}")
            results = kube.apply(ops.read_manifests([str(ops.DEMO)]), timeout=timeout)
            for r in results:
                pr.message(f"  {r['object']}: {r['action']}")
            for i, (src, dst, port, expect, why) in enumerate(PROBES):
                pr.step("probes", i, len(PROBES))
                r = ops.run_probe(kube, src, dst, port, "TCP", 1.0)
                rows.append({"src": src, "dst": dst, "expect": "allowed" if expect else "blocked",
                             "result": "allowed" if r.connected else f"blocked ({r.error})",
                             "answered_by": r.answered_by or "-", "ok": r.connected == expect, "why": why})
            pr.step("probes", len(PROBES), len(PROBES))
        finally:
            kube.close()
    render({"probes": rows}, fmt, rows=rows,
           columns=[("SOURCE", "src"), ("DESTINATION", "dst"), ("EXPECTED", "expect"),
                    ("RESULT", "result"), ("ANSWERED BY", "answered_by"), ("MATCH", "ok")],
           wide=[("WHY", "why")])
    bad = [r for r in rows if not r["ok"]]
    if bad:
        message((f"demo: {len(bad)} probe(s) did not behave as expected", "red"))
        return 1
    message(f"demo: all {len(rows)} probes behaved as expected. Explore with "
            f"`contivctl lab status --name {name}`; see the blocked probe's path with "
            f"`contivctl trace pod-to-pod tools/client shop/db --port 5432 --lab {name}`; "
            f"remove with `contivctl lab down --name {name}`")
    return 0
