"""Pod-to-pod traffic as bench/policy_scale.py and bench/vpp_traffic.py measure
it: bench/traffic.py's workers started with ``ip netns exec`` in pod
namespaces (a server per server pod, one client run at a time), rounds of
paired runs over several setups, and the paired ratios of the report."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

from common import progress, say

TRAFFIC = str(Path(__file__).resolve().parent / "traffic.py")  # the pod-side workers

#: runs one worker: (mode "bulk" | "rate", destination) -> its JSON result
Run = Callable[[str, str], dict]


def start_server(ns: str, servers: list[subprocess.Popen]) -> bool:
    """Start a traffic server in network namespace ``ns``; it is appended to
    ``servers`` at once (so the clean-up stops it even if it never got ready).
    True once it said it is ready."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TRAFFIC, "serve"],
                         stdout=subprocess.PIPE, text=True)
    servers.append(p)
    return p.stdout.readline().strip() == "ready"


def run_worker(ns: str, mode: str, ip: str, seconds: float, what: str) -> dict:
    """One client run (``bulk`` or ``rate``) from network namespace ``ns`` to
    ``ip`` for ``seconds``; its JSON result. ``what`` names it if it fails."""
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, TRAFFIC, mode, ip, str(seconds)],
                       capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout)


def traffic_rounds(conds: list[tuple[str, Run]], pairs: dict[str, str], rounds: int, what: str) -> dict:
    """``rounds`` rounds; in each, for each pair (name -> destination), a bulk run
    then a rate run on every condition (label, run) back to back -- the order of
    the conditions and of the pairs rotating from round to round -- so that
    conditions compared with each other are measured seconds apart. ``what``
    labels the progress. Returns condition -> pair -> ``gbit_s`` and ``conn_s``
    (one per round), ``rate_errors`` and ``incomplete`` (bulk runs); says each
    condition's medians."""
    res: dict = {c: {p: {"gbit_s": [], "conn_s": [], "rate_errors": 0, "incomplete": 0} for p in pairs}
                 for c, _ in conds}
    items = list(pairs.items())
    with progress(what, rounds * len(items) * len(conds) * 2) as advance:
        for r in range(rounds):
            order = conds[r % len(conds):] + conds[:r % len(conds)]
            for pair, dst in items[r % 2:] + items[:r % 2]:
                for c, run in order:
                    b = run("bulk", dst)
                    res[c][pair]["gbit_s"].append(b["bytes"] * 8 / b["seconds"] / 1e9)
                    res[c][pair]["incomplete"] += not b["complete"]
                    advance()
                for c, run in order:
                    x = run("rate", dst)
                    res[c][pair]["conn_s"].append(x["connections"] / x["seconds"])
                    res[c][pair]["rate_errors"] += x["errors"]
                    advance()
    for c, _ in conds:
        say(f"  {c}: " + "; ".join(f"{pair} {statistics.median(res[c][pair]['gbit_s']):.2f} Gbit/s, "
                                   f"{statistics.median(res[c][pair]['conn_s']):.0f} conn/s" for pair in pairs))
    return res


def paired(res: dict, num: str, den: str, pair: str, k: str) -> dict:
    """Figure ``k`` of ``pair`` (a :func:`traffic_rounds` result): the medians of
    ``den`` (``a``) and ``num`` (``b``) and the median of the per-round ratios
    num/den (runs of one round are seconds apart, so machine load hits both
    sides alike) with their range; rounds where ``den`` measured 0 are left out."""
    x, y = res[den][pair][k], res[num][pair][k]
    ratios = [b / a for a, b in zip(x, y) if a > 0]
    return {"a": statistics.median(x), "b": statistics.median(y), "ratio": statistics.median(ratios),
            "min": min(ratios), "max": max(ratios)}
