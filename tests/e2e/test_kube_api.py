"""End to end: a lab with a Kubernetes API (``lab up --kube-api``), used as a
user would -- the official ``kubernetes`` client with the kubeconfig that
``contivctl lab kubeconfig`` prints: objects created through the API get
wired (pods a node, an address, Running; Services a cluster IP and
endpoints), reach the agents through the reflector, answer probes, and go
again when deleted."""
from __future__ import annotations

import json
import os

import pytest

from tests.helpers import eventually
from tests.conftest import IS_ROOT, unique_lab_name
from tests.e2e.labtools import cli

pytestmark = [pytest.mark.root, pytest.mark.e2e]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not IS_ROOT:
        pytest.skip("needs root: creates network namespaces and links")
    name = unique_lab_name()
    try:
        up = cli("lab", "up", "--name", name, "--nodes", "2", "--kube-api")
        assert up.returncode == 0, up.stderr
        assert "Kubernetes API on http://127.0.0.1:" in up.stderr
        conf = cli("lab", "kubeconfig", "--name", name)
        assert conf.returncode == 0, conf.stderr
        path = tmp_path_factory.mktemp("kube") / "config"
        path.write_text(conf.stdout)
        from kubernetes import client, config  # noqa: PLC0415
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(path), client_configuration=cfg)
        yield name, client.CoreV1Api(client.ApiClient(cfg))
    finally:
        down = cli("lab", "down", "--name", name)
        # the control plane and the reflector went with the lab
        left = [pid for pid in os.listdir("/proc") if pid.isdigit() and name in _cmdline(pid)]
        assert down.returncode == 0 and not left, (down.stderr, [_cmdline(p) for p in left])


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait(pred, timeout=60.0):
    return eventually(pred, timeout)


def etcd_pod(name: str, ref: str) -> dict | None:
    from lab.cluster import Lab  # noqa: PLC0415
    ns, pod = ref.split("/")
    kv = Lab(name).store().get(f"/contiv/k8s/pod/{ns}/{pod}")
    return json.loads(kv.value) if kv else None


def test_objects_created_by_a_kubernetes_client_are_wired_and_reachable(env):
    name, core = env
    core.create_namespace({"metadata": {"name": "api"}})
    for pod, node in (("server", "node2"), ("client", "node1")):
        core.create_namespaced_pod("api", {
            "metadata": {"name": pod, "labels": {"app": pod}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab",
                                                       "ports": [{"containerPort": 8080}]}]}})
    core.create_namespaced_service("api", {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    server = wait(lambda: (p := core.read_namespaced_pod("server", "api")).status.pod_ip and p)
    assert server.status.phase == "Running" and server.spec.node_name == "node2"
    svc = core.read_namespaced_service("web", "api")
    assert svc.spec.cluster_ip and svc.spec.cluster_ip != "None"  # admitted with a cluster IP
    # the reflector carried it to etcd, where the agents read it
    assert wait(lambda: (etcd_pod(name, "api/server") or {}).get("status", {}).get("podIP") == server.status.pod_ip)
    r = wait(lambda: (x := cli("lab", "probe", "--name", name, "api/client", "svc:api/web", "-o", "json"))
             .returncode == 0 and x)
    assert r, "the Service never answered"
    assert json.loads(r.stdout)["answered_by"] == "api/server"


def test_a_pod_deleted_through_the_api_is_unwired_and_gone_from_etcd(env):
    name, core = env
    core.create_namespaced_pod("default", {"metadata": {"name": "brief"},
                                           "spec": {"containers": [{"name": "c", "image": "lab"}]}})
    assert wait(lambda: core.read_namespaced_pod("brief", "default").status.pod_ip)
    assert wait(lambda: etcd_pod(name, "default/brief"))
    from lab.cluster import Lab  # noqa: PLC0415
    from lab import sysnet  # noqa: PLC0415
    netns = Lab(name).paths.pod_ns("default", "brief")
    assert sysnet.netns_exists(netns)
    core.delete_namespaced_pod("brief", "default")
    assert wait(lambda: etcd_pod(name, "default/brief") is None)
    assert wait(lambda: not sysnet.netns_exists(netns))  # CNI DEL ran, its namespace is gone


def test_a_lab_without_a_kubernetes_api_says_so():
    r = cli("lab", "kubeconfig", "--name", "nokubex")
    assert r.returncode == 3 and "nokubex" in r.stderr
