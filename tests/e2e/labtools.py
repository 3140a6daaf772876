"""Helpers of the lab's end-to-end tests: the CLI as a subprocess, what a lab
leaves behind, a neighbour lab as a sentinel, manifests and probes.

Not a test module (pytest does not collect it); the tests import from it.
"""
from __future__ import annotations

import copy
import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab.cluster import _cmdline
from lab.paths import LAB_ROOT

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "contivctl.main"]
NS = "e2e"
PODS = {"a1": "node1", "a2": "node1", "b1": "node2", "b2": "node2"}
TCP_PORT, UDP_PORT, FREE_PORT = 8080, 5353, 9
WAIT = "30"  # --timeout for apply/delete: a liveness bound, not a performance claim


def cli(*args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), input=stdin, capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


def unique(prefix: str) -> str:
    return prefix + secrets.token_hex(3)


def assert_one_line_error(r: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """Exit ``status``; stderr is one ``error:`` line (plus at most one ``hint:``
    line), no traceback, and mentions every needle. Returns the error line."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    assert lines and lines[0].startswith("error: "), r.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    return lines[0]


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    # name and MAC: a link re-created under the same name would show up too
    return {" ".join(line.split()[:1] + line.split()[2:3]) for line in out.splitlines() if line.strip()}


def lab_pids(name: str) -> set[int]:
    """Live processes whose command line names the lab's runtime directory."""
    needle = f"{LAB_ROOT / name}/"
    return {int(d) for d in os.listdir("/proc") if d.isdigit() and needle in _cmdline(int(d)) + " "}


def lab_files(name: str) -> set[str]:
    root = LAB_ROOT / name
    out = set()
    for d, dirs, files in os.walk(root):
        out.update(os.path.relpath(os.path.join(d, f), root) for f in dirs + files)
    return out | ({"."} if root.exists() else set())


@dataclass(frozen=True)
class Leftovers:
    netns: frozenset
    processes: frozenset
    files: frozenset

    def empty(self) -> bool:
        return not (self.netns or self.processes or self.files)


def leftovers(name: str) -> Leftovers:
    return Leftovers(frozenset(n for n in netns_names() if n.startswith(f"{name}-")),
                     frozenset(lab_pids(name)), frozenset(lab_files(name)))


class Neighbour:
    """What a lab named ``<name>x`` would own: a namespace, a process, a file.
    ``lab down --name <name>`` must leave all three alone."""

    def __init__(self, name: str) -> None:
        self.name = name + "x"
        self.netns = f"{self.name}-keep"
        self.dir = LAB_ROOT / self.name
        self.proc: subprocess.Popen | None = None

    def create(self) -> "Neighbour":
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "keep").write_text("keep\n")
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)",
                                      str(self.dir / "keep")])
        return self

    def intact(self) -> bool:
        return (self.netns in netns_names() and (self.dir / "keep").exists()
                and self.proc is not None and self.proc.poll() is None)

    def remove(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        for f in (self.dir / "keep", self.dir):
            try:
                f.rmdir() if f.is_dir() else f.unlink()
            except FileNotFoundError:
                pass


def pod_manifest(labels: dict[str, dict] | None = None, only: list[str] | None = None) -> str:
    """The namespace and the four pods (two pinned per node), each serving a
    TCP and a UDP port; ``only``: just these pods, no namespace."""
    labels = labels or {}
    docs = [] if only else [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
    for pod, node in PODS.items():
        if only and pod not in only:
            continue
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": pod, "namespace": NS,
                                  "labels": labels.get(pod, {"app": pod[0]})},
                     "spec": {"nodeName": node, "containers": [{
                         "name": "main", "image": "lab",
                         "ports": [{"name": "http", "containerPort": TCP_PORT},
                                   {"name": "dns", "containerPort": UDP_PORT, "protocol": "UDP"}]}]}})
    return yaml.safe_dump_all(docs, sort_keys=False)


def write(tmp: Path, text: str, name: str = "m.yaml") -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def status_json(name: str) -> dict:
    r = cli("lab", "status", "--name", name, "-o", "json")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def probe_json(name: str, src: str, dst: str, *extra: str) -> tuple[int, dict]:
    r = cli("lab", "probe", "--name", name, src, dst, "-o", "json", *extra)
    assert r.returncode in (0, 1), (r.returncode, r.stderr)
    return r.returncode, json.loads(r.stdout)


# In-process views (lab.ops, the functions behind the CLI) for the checks *around*
# the behaviour under test: each CLI call costs an interpreter start.
def lab_status(name: str) -> dict:
    from lab.cluster import Lab
    from lab.ops import status
    return status(Lab(name))


def probe_api(name: str, src: str, dst: str, port: int | None = None, protocol: str = "TCP",
              timeout: float = 2.0) -> dict:
    from lab.cluster import Lab
    from lab.kube import Kube
    from lab.ops import run_probe
    k = Kube(Lab(name))
    try:
        return run_probe(k, src, dst, port, protocol, timeout).to_dict()
    finally:
        k.close()


def kube_pod(name: str, ref: str) -> dict | None:
    from lab.cluster import Lab
    from lab.kube import Kube
    k = Kube(Lab(name))
    try:
        ns, _, pod = ref.partition("/")
        return k.get("pod", ns, pod)
    finally:
        k.close()


def agent(name: str, node: str):
    """The typed API (:class:`agent.api.contract.NodeAPI`) of a lab node's agent."""
    from lab.cluster import Lab
    return Lab(name).client(node)


def wait_until(cond, what: str, limit: float = 30.0):
    """Poll ``cond`` until it returns something truthy (a liveness bound only)."""
    deadline = time.monotonic() + limit
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@contextmanager
def kube_lab(manifest: list[dict], dataplane: str, *, nodes: int = 2, timeout: float = 60.0,
             kube_api: bool = False):
    """(lab, kube): a new lab of ``nodes`` on ``dataplane`` with ``manifest``
    applied (validated and defaulted on a copy: the lab fills in node ports in
    place) -- with ``kube_api``, through the lab's Kubernetes API and the
    reflector; always taken down again."""
    from lab import objects  # noqa: PLC0415
    from lab.cluster import Lab  # noqa: PLC0415
    from lab.kube import Kube  # noqa: PLC0415
    from tests.conftest import unique_lab_name  # noqa: PLC0415
    lab = Lab(unique_lab_name())
    kube = None
    try:
        lab.up(nodes=nodes, dataplane=dataplane)
        if kube_api:
            from lab.kubecontrol import start  # noqa: PLC0415
            start(lab)
        kube = Kube(lab)
        kube.apply([objects.validate(copy.deepcopy(o)) for o in manifest], timeout=timeout)
        yield lab, kube
    finally:
        if kube is not None:
            kube.close()
        lab.down()
