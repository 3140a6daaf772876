"""End to end: ``contivctl lab`` driven through its CLI, as a user would.

One two-node lab (real etcd, real agents, real contiv-cni, real packets) is
shared by the tests of this module, in file order: up, apply, probe, re-apply,
delete, bad input, apply timeout, namespace delete, down. Half-created labs (``up`` killed,
interrupted or timed out) are in test_lab_cleanup.py. Every lab is removed at the end, also
when a test fails.

"Nothing else changed" is checked with sentinels that a sloppy ``lab down``
would hit: a namespace, a process and a file of a *neighbour* lab whose name
starts with ours (``<name>x``), plus the host namespace's links, which the lab
must never touch. (Other engineers' labs may come and go on this machine while
the tests run, so the global namespace list is not compared as a whole.)
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab.paths import LAB_ROOT
from tests.helpers import dataplanes
from tests.e2e.labtools import (CLI, FREE_PORT, NS, REPO, Neighbour, PODS, TCP_PORT, UDP_PORT, WAIT,
                                agent, assert_one_line_error, cli, host_links, kube_pod,
                                lab_status, leftovers, netns_names, pod_manifest, probe_api,
                                probe_json, status_json, unique, wait_until, write)

pytestmark = [pytest.mark.root, pytest.mark.e2e]


# --------------------------------------------------------------------------- the shared lab
@dataclass
class Env:
    name: str
    links_before: set
    up: subprocess.CompletedProcess
    neighbour: Neighbour
    tmp: Path
    dataplane: str

    @property
    def processes(self) -> int:
        """etcd, two agents, the pod responder -- and a VPP per VPP node."""
        return 4 + (2 if self.dataplane == "vpp" else 0)


@pytest.fixture(scope="module", params=dataplanes())
def env(request, tmp_path_factory):
    name = unique("e")
    links = host_links()
    assert leftovers(name).empty()
    neighbour = Neighbour(name)
    try:
        neighbour.create()
        up = cli("lab", "up", "--name", name, "--nodes", "2", "--dataplane", request.param)
        yield Env(name, links, up, neighbour, tmp_path_factory.mktemp("lab"), request.param)
    finally:
        from lab.cluster import Lab
        Lab(name).down()
        neighbour.remove()


@pytest.fixture(scope="module")
def applied(env):
    """The namespace and four pods, applied once through the CLI."""
    if env.up.returncode != 0:
        pytest.fail(f"lab up failed: {env.up.stderr}")
    return cli("lab", "apply", "--name", env.name, "-f", write(env.tmp, pod_manifest()),
               "--timeout", WAIT)


def pod_ip(env: Env, pod: str) -> str:
    return kube_pod(env.name, f"{NS}/{pod}")["status"]["podIP"]


# --------------------------------------------------------------------------- up
def test_up_creates_nodes_etcd_agents_and_responder(env):
    assert env.up.returncode == 0, env.up.stderr
    assert f"lab {env.name}: up with 2 nodes" in env.up.stderr
    rows = [line.split() for line in env.up.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["node1", "node2"]
    left = leftovers(env.name)
    assert left.netns == {f"{env.name}-underlay", f"{env.name}-node1", f"{env.name}-node2"}
    assert len(left.processes) == env.processes
    assert "state.json" in left.files
    st = status_json(env.name)
    assert st["healthy"] is True and st["complete"] is True and st["etcd_running"] is True
    assert [n["node"] for n in st["nodes"]] == ["node1", "node2"]
    for n in st["nodes"]:
        assert n["running"] and n["ready"], n
        assert n["agent_pid"] in left.processes
        assert "error" not in n


def test_second_up_reports_existing_lab_and_changes_nothing(env):
    before = leftovers(env.name)
    state = (LAB_ROOT / env.name / "state.json").read_text()
    r = cli("lab", "up", "--name", env.name, "--nodes", "3")
    assert r.returncode == 0, r.stderr
    assert "already exists (2 nodes); nothing changed" in r.stderr
    after = leftovers(env.name)
    assert after.netns == before.netns
    assert after.processes == before.processes
    assert (LAB_ROOT / env.name / "state.json").read_text() == state
    assert json.loads(cli("lab", "up", "--name", env.name, "-o", "json").stdout)["created"] is False
    assert env.name in cli("lab", "list").stdout.split()


# --------------------------------------------------------------------------- apply, probe
def test_apply_creates_pods_on_their_nodes(env, applied):
    assert applied.returncode == 0, applied.stderr
    actions = dict(line.rsplit(None, 1) for line in applied.stdout.splitlines()[1:])
    assert actions == {f"Namespace {NS}": "created",
                       **{f"Pod {NS}/{p}": "created" for p in PODS}}
    ips = set()
    for pod, node in PODS.items():
        obj = kube_pod(env.name, f"{NS}/{pod}")
        assert obj["spec"]["nodeName"] == node
        assert obj["status"]["phase"] == "Running"
        ip = obj["status"]["podIP"]
        ips.add(ip)
        assert Path(f"/var/run/netns/{env.name}-pod-{NS}.{pod}").exists()
        # the node's agent allocated that address to that pod
        allocs = agent(env.name, node).ipam().allocations
        assert [a.ips for a in allocs if a.pod_name == pod and a.pod_namespace == NS] == \
            [(f"{ip}/32",)]
    assert len(ips) == len(PODS)
    pods = {p["pod"]: p for p in lab_status(env.name)["pods"]}
    assert {f"{NS}/{p}" for p in PODS} <= set(pods)


@pytest.mark.parametrize("src,dst,protocol", [
    ("a1", "a2", "TCP"), ("a1", "a2", "UDP"),   # same node
    ("a1", "b1", "TCP"), ("b2", "a2", "UDP"),   # across nodes (VXLAN)
])
def test_probe_connects_and_destination_answers(env, applied, src, dst, protocol):
    assert applied.returncode == 0, applied.stderr
    rc, r = probe_json(env.name, f"{NS}/{src}", f"{NS}/{dst}", "--protocol", protocol)
    assert rc == 0, r
    assert r == {"src": f"{NS}/{src}", "dst": f"{NS}/{dst}", "address": pod_ip(env, dst),
                 "port": TCP_PORT if protocol == "TCP" else UDP_PORT, "protocol": protocol,
                 "connected": True, "answered_by": f"{NS}/{dst}",
                 "client_seen": pod_ip(env, src),  # pod to pod: no address translation
                 "ms": r["ms"], "error": ""}
    assert isinstance(r["ms"], float) and r["ms"] > 0
    if PODS[src] == PODS[dst]:
        return  # the human-readable form (and a lower-case --protocol): cross-node cases only
    text = cli("lab", "probe", "--name", env.name, f"{NS}/{src}", f"{NS}/{dst}", "--protocol",
               protocol.lower())
    assert text.returncode == 0
    assert f"connected, answered by {NS}/{dst}" in text.stdout


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_each_node_reaches_every_pod_on_both_nodes(env, applied, node):
    """The node's own stack (kubelet, host-network programs) reaches its pods
    and the other node's -- on VPP through the host interconnect, from the
    node's own address in its pod subnet, which the other node answers."""
    from lab.probe import probe  # noqa: PLC0415
    from lab.sysnet import netns_path  # noqa: PLC0415
    assert applied.returncode == 0, applied.stderr
    for pod in PODS:
        r = probe(netns_path(f"{env.name}-{node}"), pod_ip(env, pod), TCP_PORT, "TCP", 2.0)
        assert r.connected and r.answered_by == f"{NS}/{pod}", (node, pod, r)


@pytest.mark.parametrize("port,protocol,expect", [
    (TCP_PORT, "TCP", True), (UDP_PORT, "UDP", True), (FREE_PORT, "TCP", False)])
def test_matrix_without_policies(env, applied, port, protocol, expect):
    assert applied.returncode == 0, applied.stderr
    r = cli("lab", "probe", "--name", env.name, "--matrix", "--port", str(port), "--protocol",
            protocol, "-n", NS, "-o", "json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    refs = sorted(f"{NS}/{p}" for p in PODS)
    assert sorted(m) == refs
    assert {s: sorted(row) for s, row in m.items()} == {s: refs for s in refs}
    # no policy: every pair connects on a served port; nobody answers on a free one
    assert {v for row in m.values() for v in row.values()} == {expect}


def test_probe_exit_statuses(env, applied):
    assert applied.returncode == 0, applied.stderr
    # 1: blocked -- nobody serves the port (TCP refused, UDP port unreachable)
    for protocol in ("TCP", "UDP"):
        rc, r = probe_json(env.name, f"{NS}/a1", f"{NS}/b1", "--port", str(FREE_PORT),
                           "--protocol", protocol)
        assert rc == 1 and r["connected"] is False and r["answered_by"] == "", r
        assert r["error"] == "refused", r
    blocked = cli("lab", "probe", "--name", env.name, f"{NS}/a1", f"{NS}/a2", "--port", str(FREE_PORT))
    assert blocked.returncode == 1 and "blocked (refused)" in blocked.stdout
    # 2: unknown pods and bad arguments, one line each
    n = env.name
    assert_one_line_error(cli("lab", "probe", "--name", n, f"{NS}/a1", f"{NS}/nosuch"), 2,
                          f"pod {NS}/nosuch not found")
    assert_one_line_error(cli("lab", "probe", "--name", n, f"{NS}/nosuch", f"{NS}/a1"), 2,
                          f"pod {NS}/nosuch not found")
    assert_one_line_error(cli("lab", "probe", "--name", n, f"{NS}/a1"), 2, "SRC and DST")
    assert_one_line_error(cli("lab", "probe", "--name", n, f"{NS}/a1", f"{NS}/b1", "--protocol", "ICMP"),
                          2, "--protocol ICMP")
    assert_one_line_error(cli("lab", "probe", "--name", n, "--matrix"), 2, "--matrix needs --port")
    assert_one_line_error(cli("lab", "probe", "--name", n, "--matrix", "--port", "80", f"{NS}/a1"), 2,
                          "--matrix takes no SRC/DST")
    bad_port = cli("lab", "probe", "--name", n, f"{NS}/a1", f"{NS}/b1", "--port", "0")
    assert bad_port.returncode == 2 and "--port" in bad_port.stderr


# --------------------------------------------------------------------------- update, delete
def test_reapply_with_new_labels_updates_pods_in_place(env, applied):
    assert applied.returncode == 0, applied.stderr
    before = {p: kube_pod(env.name, f"{NS}/{p}") for p in PODS}
    netns_ino = {p: os.stat(f"/var/run/netns/{env.name}-pod-{NS}.{p}").st_ino for p in PODS}
    tag = secrets.token_hex(3)
    labels = {"b1": {"app": "b", "rev": tag}, "b2": {"app": "b", "rev": tag, "tier": "x"}}
    # through stdin this time (-f -)
    r = cli("lab", "apply", "--name", env.name, "-f", "-", "--timeout", WAIT, stdin=pod_manifest(labels))
    assert r.returncode == 0, r.stderr
    actions = dict(line.rsplit(None, 1) for line in r.stdout.splitlines()[1:])
    assert actions[f"Pod {NS}/b1"] == actions[f"Pod {NS}/b2"] == "configured"
    # a pod whose manifest did not change is not touched
    assert actions[f"Pod {NS}/a1"] == actions[f"Pod {NS}/a2"] == "unchanged"
    assert actions[f"Namespace {NS}"] == "unchanged"
    for pod in PODS:
        after = kube_pod(env.name, f"{NS}/{pod}")
        want = labels.get(pod, before[pod]["metadata"]["labels"])
        assert after["metadata"]["labels"] == want
        for f in ("uid", "creationTimestamp"):
            assert after["metadata"][f] == before[pod]["metadata"][f], (pod, f)
        assert after["status"]["podIP"] == before[pod]["status"]["podIP"]
        assert after["spec"]["nodeName"] == before[pod]["spec"]["nodeName"]
        # the same sandbox: its namespace was not re-created
        assert os.stat(f"/var/run/netns/{env.name}-pod-{NS}.{pod}").st_ino == netns_ino[pod]
    # the agent still holds the one original attachment (same container id)
    pods2 = {p.name: p for p in agent(env.name, "node2").pods().pods}
    assert pods2["b1"].container_id == before["b1"]["metadata"]["uid"]
    # the updated pods are still probe-able, as sources and as destinations
    pr = probe_api(env.name, f"{NS}/a1", f"{NS}/b2")
    assert pr["connected"] and pr["answered_by"] == f"{NS}/b2", pr
    pr = probe_api(env.name, f"{NS}/b2", f"{NS}/a2", protocol="UDP")
    assert pr["connected"] and pr["answered_by"] == f"{NS}/a2", pr
    # the same manifest again: nothing to do
    again = cli("lab", "apply", "--name", env.name, "-f", "-", "--timeout", WAIT, stdin=pod_manifest(labels))
    assert again.returncode == 0, again.stderr
    assert set(dict(line.rsplit(None, 1) for line in again.stdout.splitlines()[1:]).values()) == {"unchanged"}


def test_user_annotations_are_kept_next_to_the_labs_own(env, applied):
    assert applied.returncode == 0, applied.stderr
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "notes", "namespace": NS, "annotations": None},
           "spec": {"nodeName": "node2", "containers": [{"name": "c"}]}}
    f = write(env.tmp, yaml.safe_dump(doc), "notes.yaml")
    r = cli("lab", "apply", "--name", env.name, "-f", f, "--timeout", WAIT)  # "annotations:" empty
    assert r.returncode == 0, r.stderr
    try:
        assert probe_api(env.name, f"{NS}/notes", f"{NS}/a1")["connected"]
        doc["metadata"]["annotations"] = {"example.com/note": "hello"}
        r = cli("lab", "apply", "--name", env.name, "-f", write(env.tmp, yaml.safe_dump(doc), "notes.yaml"),
                "--timeout", WAIT)
        assert r.returncode == 0 and "configured" in r.stdout, r.stderr
        ann = kube_pod(env.name, f"{NS}/notes")["metadata"]["annotations"]
        assert ann["example.com/note"] == "hello"
        assert ann["lab.contiv.io/netns"] == f"/var/run/netns/{env.name}-pod-{NS}.notes"
        assert probe_api(env.name, f"{NS}/notes", f"{NS}/a1")["connected"]
    finally:
        d = cli("lab", "delete", "--name", env.name, "-f", f, "--timeout", WAIT)
    assert d.returncode == 0, d.stderr


def test_delete_pod_releases_address_and_namespace(env, applied):
    assert applied.returncode == 0, applied.stderr
    victim = kube_pod(env.name, f"{NS}/b2")
    ip = victim["status"]["podIP"]
    ipam_before = agent(env.name, "node2").ipam()
    assert f"{ip}/32" in [i for a in ipam_before.allocations for i in a.ips]
    f = write(env.tmp, pod_manifest(only=["b2"]), "b2.yaml")

    r = cli("lab", "delete", "--name", env.name, "-f", f, "--timeout", WAIT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split() == ["Pod", f"{NS}/b2", "deleted"]
    assert kube_pod(env.name, f"{NS}/b2") is None
    ipam = agent(env.name, "node2").ipam()
    assert f"{ip}/32" not in [i for a in ipam.allocations for i in a.ips]
    assert ipam.used == ipam_before.used - 1
    assert "b2" not in {p.name for p in agent(env.name, "node2").pods().pods}
    assert f"{env.name}-pod-{NS}.b2" not in netns_names()
    assert f"{NS}/b2" not in {p["pod"] for p in lab_status(env.name)["pods"]}
    # nothing answers at the old address any more; the other pods still do
    gone = probe_api(env.name, f"{NS}/a1", f"{ip}:{TCP_PORT}", timeout=1)
    assert gone["connected"] is False, gone
    assert probe_api(env.name, f"{NS}/a1", f"{NS}/b1")["connected"]

    again = cli("lab", "delete", "--name", env.name, "-f", f, "--timeout", WAIT)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1].split() == ["Pod", f"{NS}/b2", "not", "found"]
    # applied again, it gets a fresh sandbox and works
    back = cli("lab", "apply", "--name", env.name, "-f", f, "--timeout", WAIT)
    assert back.returncode == 0, back.stderr
    new = kube_pod(env.name, f"{NS}/b2")
    assert new["metadata"]["uid"] != victim["metadata"]["uid"]
    assert probe_api(env.name, f"{NS}/a1", f"{NS}/b2")["answered_by"] == f"{NS}/b2"


# --------------------------------------------------------------------------- bad input
APPS = "apps/v1"
DEPLOYMENT = f"""\
apiVersion: {APPS}
kind: Deployment
metadata: {{name: web, namespace: e2e}}
spec: {{replicas: 1}}
"""
PORT_CONFLICT = """\
apiVersion: v1
kind: Pod
metadata: {name: clash, namespace: e2e}
spec:
  containers:
  - name: one
    ports: [{containerPort: 80}]
  - name: two
    ports: [{containerPort: 80, protocol: TCP}]
"""
MALFORMED = "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n  - : [\n"
GOOD_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: good, namespace: e2e}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
"""


@pytest.mark.parametrize("text,needles", [
    (DEPLOYMENT, [f"{APPS}/Deployment is not a supported kind"]),
    (GOOD_POD + "---\n" + DEPLOYMENT, [f"[1]: {APPS}/Deployment is not a supported kind"]),
    (PORT_CONFLICT, ["Pod e2e/clash", "port conflict: TCP/80"]),
    (MALFORMED, ["is not valid YAML", "line 4"]),
], ids=["unsupported-kind", "valid-then-unsupported", "port-conflict", "malformed-yaml"])
def test_bad_manifest_is_one_line_usage_error_and_changes_nothing(env, applied, text, needles):
    assert applied.returncode == 0, applied.stderr
    pods_before = lab_status(env.name)["pods"]
    f = write(env.tmp, text, "bad.yaml")
    assert_one_line_error(cli("lab", "apply", "--name", env.name, "-f", f), 2, *needles)
    assert lab_status(env.name)["pods"] == pods_before  # the valid pod was not applied either
    assert f"{env.name}-pod-{NS}.good" not in netns_names()


def test_node_commands_reach_a_labs_node_by_name(env, applied):
    """--lab/--node (or CONTIVCTL_LAB) pick the node's agent: no socket path to type."""
    for node in ("node1", "node2"):
        by_name = json.loads(cli("pods", "--lab", env.name, "--node", node, "-o", "json").stdout)
        from lab.cluster import Lab  # noqa: PLC0415
        sock = Lab(env.name).state().node(node).socket
        by_socket = json.loads(cli("--socket", sock, "pods", "-o", "json").stdout)
        assert by_name == by_socket
        assert {p["pod"] for p in by_name["pods"]} == {f"{NS}/{p}" for p, n in PODS.items() if n == node}
    r = subprocess.run(CLI + ["agent", "status", "--node", "node2", "-o", "json"], capture_output=True,
                       text=True, cwd=REPO, env={**os.environ, "CONTIVCTL_LAB": env.name, "NO_COLOR": "1"})
    assert r.returncode == 0 and json.loads(r.stdout)["node"]["name"] == "node2", r.stderr
    assert_one_line_error(cli("ipam", "--lab", env.name, "--node", "node9"), 3, "no node 'node9'",
                          "node1, node2")
    assert_one_line_error(cli("nodes", "--node", "node1"), 2, "give --lab NAME too")


@pytest.mark.parametrize("args", [["status"], ["apply", "-f", "-"], ["probe", "a/b", "c/d"],
                                  ["logs", "node1"]])
def test_command_without_lab_says_to_run_lab_up(args):
    nolab = unique("n")
    r = cli("lab", *args, "--name", nolab, stdin="")
    assert_one_line_error(r, 3, f"no lab named '{nolab}'", "`contivctl lab up`")
    assert not (LAB_ROOT / nolab).exists()


# --------------------------------------------------------------------------- agents lagging
def test_apply_timeout_names_the_stopped_agent(env, applied):
    assert applied.returncode == 0, applied.stderr
    pid = {n["node"]: n["agent_pid"] for n in status_json(env.name)["nodes"]}["node2"]
    tag = secrets.token_hex(3)
    os.kill(pid, signal.SIGSTOP)
    try:
        r = cli("lab", "apply", "--name", env.name, "-f", "-", "--timeout", "2",
                stdin=pod_manifest({"a1": {"app": "a", "rev": tag}}))
    finally:
        os.kill(pid, signal.SIGCONT)
    line = assert_one_line_error(r, 4, "timed out", "node2 is at", "lab logs node2")
    assert "node1 is at" not in line  # only the stopped agent lags
    # the object was written; once resumed, the agent catches up and the lab is healthy
    assert kube_pod(env.name, f"{NS}/a1")["metadata"]["labels"]["rev"] == tag
    wait_until(lambda: lab_status(env.name)["healthy"], "the resumed agent")
    ok = cli("lab", "apply", "--name", env.name, "-f", "-", "--timeout", WAIT,
             stdin=pod_manifest({"a1": {"app": "a", "rev": tag + "z"}}))
    assert ok.returncode == 0, ok.stderr
    assert probe_api(env.name, f"{NS}/b1", f"{NS}/a1")["answered_by"] == f"{NS}/a1"


# --------------------------------------------------------------------------- namespace delete
def test_deleting_the_namespace_stops_each_of_its_pods_once(env, applied):
    assert applied.returncode == 0, applied.stderr
    from lab.cluster import Lab
    from lab.kube import Kube
    from lab.ops import read_manifests
    # a pod the file does not name goes with its namespace too
    extra = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "extra", "namespace": NS},
             "spec": {"containers": [{"name": "c"}]}}
    r = cli("lab", "apply", "--name", env.name, "-f", "-", "--timeout", WAIT, stdin=yaml.safe_dump(extra))
    assert r.returncode == 0, r.stderr
    pods = {p["pod"]: p for p in lab_status(env.name)["pods"] if p["pod"].startswith(f"{NS}/")}
    assert set(pods) == {f"{NS}/{p}" for p in [*PODS, "extra"]}
    uids = {kube_pod(env.name, ref)["metadata"]["uid"] for ref in pods}

    kube = Kube(Lab(env.name))
    kube.runtime.record = True
    try:  # the manifest names the Namespace *and* four of its Pods
        results = kube.delete(read_manifests([write(env.tmp, pod_manifest(), "all.yaml")]), timeout=30)
        dels = [c for c in kube.runtime.calls if c.command == "DEL"]
    finally:
        kube.close()
    assert {x["object"]: x["action"] for x in results} == {
        f"Namespace {NS}": "deleted", **{f"Pod {NS}/{p}": "deleted" for p in PODS}}
    assert len(dels) == len(uids) and all(c.exit_code == 0 for c in dels)  # one CNI DEL per pod
    st = lab_status(env.name)
    assert st["pods"] == [] and st["healthy"] is True
    for node in ("node1", "node2"):
        ipam = agent(env.name, node).ipam()
        assert ipam.allocations == () and ipam.used == 0, ipam
        assert agent(env.name, node).pods().pods == ()
    assert not [n for n in netns_names() if n.startswith(f"{env.name}-pod-")]
    assert leftovers(env.name).netns == {f"{env.name}-underlay", f"{env.name}-node1", f"{env.name}-node2"}


# --------------------------------------------------------------------------- down
def test_down_removes_everything_and_nothing_else(env):
    before = leftovers(env.name)
    assert len(before.processes) == env.processes and len(before.netns) >= 3, before
    r = cli("lab", "down", "--name", env.name, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"processes": env.processes, "namespaces": len(before.netns),
                                    "files": True}
    left = leftovers(env.name)
    assert left.empty(), left
    assert host_links() == env.links_before
    assert env.neighbour.intact()
    # idempotent, and the lab is gone for every command
    again = cli("lab", "down", "--name", env.name)
    assert again.returncode == 0, again.stderr
    assert "removed 0 process(es), 0 namespace(s)" in again.stderr
    assert_one_line_error(cli("lab", "status", "--name", env.name), 3, "`contivctl lab up`")
    assert env.name not in cli("lab", "list").stdout.split()
