#!/usr/bin/env python3
"""Pod starts during a resync: CNI ADD latency while the agent resyncs N Services.

Run as root from the repository::

    .venv/bin/python bench/resync_contention.py [--services 10000] [--resyncs 3] [--json FILE]

The agent resyncs its whole desired state every ``resync_interval`` (300 s)
and when asked through its API (``resync()``); CNI requests need the desired-state lock that the
resync holds for part of the time. This measures what a pod start meets:

* a one-node lab (real etcd, the real agent) holding ``--services`` Services x
  5 endpoints, written into etcd as bench/services_scale.py writes them;
* **baseline**, in the same run: ``--quiet`` pod ADDs with nothing else going
  on -- the real ``contiv-cni`` executable, CNI environment and config on
  stdin, each into a fresh pod network namespace;
* **during**: ``--resyncs`` API resyncs; for as long as each runs, pod ADDs
  back to back, the same way. Reported: the resync's wall time, how many ADDs
  were served meanwhile, the slowest and the median, and their ratios to the
  quiet median.

Writing the Services and waiting for the agent to start next to them show a
progress bar on stderr when it is a terminal, plain lines otherwise.

Every pod is deleted and every namespace and lab removed on exit, also on
error or Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import services_scale as svc  # noqa: E402 -- bench/ module: the lab and the objects
from common import require_root, run_bench  # noqa: E402 -- bench/ helpers
from cni.install import CONF_NAME  # noqa: E402
from lab import sysnet  # noqa: E402


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.lab = svc.Bench(argparse.Namespace(sizes=[args.services], changes=0, adds=0))
        self.pods: list[tuple[str, str]] = []  # (container id, netns)
        self.out: dict = {"machine": svc.machine(), "services": args.services}

    def add(self) -> float:
        """One pod ADD as a runtime does it; its wall time in seconds."""
        paths = self.lab.lab.paths
        n = len(self.pods)
        cid, ns = f"rsc{n}", f"{self.lab.lab.name}-rsc{n}"
        sysnet.netns_add(ns)
        self.pods.append((cid, ns))
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": sysnet.netns_path(ns),
               "CNI_IFNAME": "eth0", "CNI_PATH": str(paths.cni_bin), "PATH": "/usr/bin:/bin"}
        t = time.perf_counter()
        p = subprocess.run([str(paths.cni_bin / "contiv-cni")], input=self.conf, env=env,
                           capture_output=True, text=True, timeout=120)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"ADD {cid} failed: {p.stdout.strip()[-300:]} {p.stderr.strip()[-300:]}")
        return dt

    def run(self) -> dict:
        svc.say(f"lab up (1 node), {self.args.services} Services")
        self.lab.lab.up(nodes=1)
        self.lab.store = self.lab.lab.store()
        self.lab.stop_agent()
        svc.write(self.lab.store, [op for i in range(self.args.services) for op in svc.puts(i)],
                  f"writing {self.args.services:,} Services + slices to etcd")
        self.lab.start_agent()
        conflist = json.loads((self.lab.lab.paths.cni_conf_dir(svc.NODE) / CONF_NAME).read_text())
        self.conf = json.dumps(dict(conflist["plugins"][0], cniVersion=conflist["cniVersion"],
                                    name=conflist["name"]))
        quiet = [self.add() for _ in range(self.args.quiet)]
        self.out["quiet_s"] = quiet
        self.out["resyncs"] = []
        for k in range(self.args.resyncs):
            done = threading.Event()
            box: dict = {}

            def resync():
                try:
                    box["record"] = self.lab.client(timeout=600).resync()
                finally:
                    done.set()
            th = threading.Thread(target=resync)
            t0 = time.perf_counter()
            th.start()
            lat = []
            while not done.is_set():
                lat.append(self.add())
            th.join()
            wall = time.perf_counter() - t0
            rec = box.get("record")
            self.out["resyncs"].append({"wall_s": wall, "adds_s": lat,
                                        "ok": rec.ok if rec is not None else None})
            svc.say(f"resync {k + 1}: {wall:.2f} s, {len(lat)} ADDs meanwhile, slowest "
                    f"{max(lat) * 1000:.0f} ms")
        return self.out

    def close(self) -> None:
        rt_env = {"CNI_COMMAND": "DEL", "CNI_IFNAME": "eth0", "PATH": "/usr/bin:/bin"}
        paths = self.lab.lab.paths
        for cid, ns in self.pods:
            try:
                subprocess.run([str(paths.cni_bin / "contiv-cni")], input=getattr(self, "conf", "{}"),
                               env={**rt_env, "CNI_CONTAINERID": cid, "CNI_NETNS": sysnet.netns_path(ns),
                                    "CNI_PATH": str(paths.cni_bin)},
                               capture_output=True, text=True, timeout=60)
            finally:
                sysnet.netns_del(ns)
        self.lab.close()


def report(out: dict) -> str:
    ms = lambda x: x * 1000  # noqa: E731
    q = statistics.median(out["quiet_s"])
    lines = [f"Pod ADDs during a resync, {out['services']:,} Services x 5 endpoints; commit "
             f"{out['machine']['commit']}, load {out['machine']['loadavg_start']} -> "
             f"{out['machine']['loadavg_end']}",
             "",
             f"quiet ADD (baseline, same run): median {ms(q):.1f} ms over {len(out['quiet_s'])}",
             "",
             "| resync | wall (s) | ADDs meanwhile | slowest ADD (ms) | median ADD (ms) | slowest / quiet |",
             "|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(out["resyncs"], 1):
        lat = r["adds_s"]
        lines.append(f"| {i} | {r['wall_s']:.2f} | {len(lat)} | {ms(max(lat)):.0f} | "
                     f"{ms(statistics.median(lat)):.0f} | {max(lat) / q:.0f}x |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--resyncs", type=int, default=3)
    ap.add_argument("--quiet", type=int, default=10, help="baseline ADDs (default 10)")
    ap.add_argument("--json", help="write every figure and sample to this file")
    args = ap.parse_args()
    if not require_root("resync_contention"):
        return 2
    if args.services < 1 or args.resyncs < 1 or args.quiet < 1:
        print("error: --services, --resyncs and --quiet must be at least 1", file=sys.stderr)
        return 2
    return run_bench(lambda: Bench(args), report, args.json, "resync_contention")


if __name__ == "__main__":
    sys.exit(main())
