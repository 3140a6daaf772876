"""How long ``contivctl trace`` takes on a 3-node lab (issue 11: under 3 s),
against the cheapest diagnostic that starts the same CLI and asks one agent
(``contivctl policies explain``) in the same run.

Usage (root, from the repository root; figures in docs/performance.md)::

    .venv/bin/python bench/trace_latency.py [--runs 7] [--dataplane linux|vpp] [--json FILE]

A lab of 3 nodes (``--dataplane``) gets the demo workload (examples/demo.yaml).
Timed, ``--runs`` times each, medians, each a new process as a user runs it:

* ``trace pod-to-service tools/client shop/web`` (allowed, DNAT, maybe a tunnel);
* ``trace pod-to-pod shop/web-1 shop/web-2 --port 8080`` (across nodes);
* ``trace pod-to-pod tools/client shop/db --port 5432`` (blocked by a policy);
* the baseline: ``policies explain tools/client shop/db --port 5432``.

For each trace also the command's own ``ms`` (from its JSON: arming every
node, the probe, collecting and stitching; CLI start-up excluded).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import machine, require_root, require_vpp, run_bench, say  # noqa: E402
from lab import ops  # noqa: E402
from lab.cluster import Lab  # noqa: E402
from lab.kube import Kube  # noqa: E402

CLI = [sys.executable, "-m", "contivctl.main"]
TRACES = {
    "pod-to-service tools/client -> shop/web": ["pod-to-service", "tools/client", "shop/web"],
    "pod-to-pod shop/web-1 -> shop/web-2:8080 (across nodes)": ["pod-to-pod", "shop/web-1", "shop/web-2",
                                                               "--port", "8080"],
    "pod-to-pod tools/client -> shop/db:5432 (blocked)": ["pod-to-pod", "tools/client", "shop/db", "--port", "5432"],
}


def timed(argv: list[str], runs: int) -> dict:
    """Wall time of ``argv`` (a new process each run) and, for a trace, its own ms."""
    walls, own, verdicts = [], [], set()
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env={**os.environ, "NO_COLOR": "1"})
        walls.append(time.perf_counter() - t)
        if r.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
        if "trace" in argv:
            d = json.loads(r.stdout)
            own.append(d["ms"] / 1000)
            verdicts.add(d["verdict"])
    out = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls)}
    if own:
        out.update(own_median_s=statistics.median(own), verdicts=sorted(verdicts))
    return out


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.lab = Lab(f"trb{os.getpid() % 10000}")
        self.kube = None

    def run(self) -> dict:
        a = self.args
        t = time.perf_counter()
        self.lab.up(nodes=3, dataplane=a.dataplane)
        self.kube = Kube(self.lab)
        self.kube.apply(ops.read_manifests([str(ops.DEMO)]), timeout=120)
        say(f"trace_latency: lab {self.lab.name} ({a.dataplane}) with the demo in {time.perf_counter() - t:.1f} s")
        lab = ["--lab", self.lab.name]
        out = {"dataplane": a.dataplane, "args": vars(a), "machine": machine(REPO), "traces": {}}
        for name, argv in TRACES.items():
            out["traces"][name] = timed(CLI + ["trace", *argv, *lab, "-o", "json"], a.runs)
        out["baseline"] = timed(CLI + ["policies", "explain", "tools/client", "shop/db", "--port", "5432", *lab],
                                a.runs)
        return out

    def close(self) -> None:
        if self.kube is not None:
            self.kube.close()
        self.lab.down()



def report(out: dict) -> str:
    ms = lambda d: f"{d['median_s'] * 1e3:.0f} ms [{d['min_s'] * 1e3:.0f}-{d['max_s'] * 1e3:.0f}]"  # noqa: E731
    base = out["baseline"]
    L = [f"data plane {out['dataplane']}, 3 nodes, the demo workload; medians of {out['args']['runs']} runs "
         "[min-max], each a new process", "",
         "| command | whole CLI | trace itself | verdict | ratio to explain |", "|---|---:|---:|---|---:|"]
    for name, d in out["traces"].items():
        L.append(f"| trace {name} | {ms(d)} | {d['own_median_s'] * 1e3:.0f} ms | {', '.join(d['verdicts'])} | "
                 f"{d['median_s'] / base['median_s']:.2f}x |")
    L.append(f"| baseline: policies explain tools/client shop/db | {ms(base)} | - | - | 1.00x |")
    L += ["", f"commit {out['machine']['commit']}, load average {out['machine']['loadavg_start']} -> "
          f"{out['machine'].get('loadavg_end')}"]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dataplane", choices=("linux", "vpp"), default="linux")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("need --runs >= 1")
    if not require_root("trace_latency"):
        return 2
    if args.dataplane == "vpp" and not require_vpp("trace_latency"):
        return 2
    return run_bench(lambda: Bench(args), report, args.json, "trace_latency")


if __name__ == "__main__":
    sys.exit(main())
