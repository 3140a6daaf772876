"""contiv-cni under a real container runtime: podman (CNI network backend).

Podman runs in a lab node's network namespace (``nsenter --net``: only the
network namespace changes, so the network namespaces podman mounts for its
containers stay visible to the agent), with a conflist naming our plugin.
Containers run from a busybox root filesystem: no image registry needed.
podman 4.3 (Debian 12) bundles libcni 1.1, which speaks CNI up to 1.0.0.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from lab import sysnet
from lab.cluster import Lab
from lab.cniexec import Runtime
from tests.conftest import unique_lab_name

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    for tool in ("podman", "runc", "busybox"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: scripts/setup.sh installs podman, runc, busybox-static")
    d = tmp_path_factory.mktemp("podman")
    rootfs = d / "rootfs"
    for sub in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        (rootfs / sub).mkdir(parents=True)
    shutil.copy(shutil.which("busybox"), rootfs / "bin" / "busybox")
    for applet in ("sh", "ip", "ping", "cat", "sleep"):
        os.symlink("busybox", rootfs / "bin" / applet)
    lab = Lab(unique_lab_name())
    try:
        lab.up(nodes=1)
        # the plugin and the conflist as `contivctl install cni` writes them,
        # with its defaults (a root of their own: the host's /etc/cni stays untouched)
        root = d / "root"
        root.mkdir()
        r = subprocess.run([sys.executable, "-m", "contivctl.main", "install", "cni", "--root", str(root),
                            "--agent-socket", lab.state().node("node1").socket],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        netd = root / "etc/cni/net.d"
        assert json.loads((netd / "10-contiv.conflist").read_text())["cniVersion"] == "1.0.0"
        conf = d / "containers.conf"
        conf.write_text(f'[network]\nnetwork_backend = "cni"\n'
                        f'cni_plugin_dirs = ["{root}/opt/cni/bin", "/usr/lib/cni"]\n'
                        f'network_config_dir = "{netd}"\n')
        yield lab, rootfs, conf
    finally:
        lab.down()


def podman(env, *args, timeout=60):
    lab, rootfs, conf = env
    # runc + cgroupfs and explicit ulimits: this sandbox runs cgroups in hybrid
    # mode (crun refuses it) and forbids raising rlimits.
    cmd = ["nsenter", f"--net={sysnet.netns_path(lab.paths.node_ns('node1'))}", "podman",
           "--log-level=error", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm",
           "--network", "contiv", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
           "--rootfs", str(rootfs)] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CONTAINERS_CONF": str(conf)})


def test_podman_container_gets_an_address_and_reaches_a_pod(env):
    lab = env[0]
    subnet = lab.client("node1").ipam().subnet
    rt = Runtime(lab.cni_path())
    ns = lab.paths.pod_ns("pm", "target")
    sysnet.netns_add(ns)
    try:
        res = rt.add(lab.conflist("node1"), "pm-target", sysnet.netns_path(ns))
        target = res["ips"][0]["address"].split("/")[0]
        p = podman(env, "/bin/sh", "-c", f"ip -4 addr show eth0; ping -c1 -W2 {target}")
        assert p.returncode == 0, p.stderr + p.stdout
        import ipaddress
        addrs = [w.split("/")[0] for w in p.stdout.split() if w.count(".") == 3 and "/" in w]
        assert addrs and ipaddress.ip_address(addrs[0]) in ipaddress.ip_network(subnet), p.stdout
        assert "1 packets received" in p.stdout
        # --rm: podman called DEL, the address is free again
        allocs = lab.client("node1").ipam().allocations
        assert [a.container_id for a in allocs] == ["pm-target"]
        hist = [t.description for t in lab.client("node1").history().transactions]
        assert any(d.startswith("cni add") for d in hist) and any(d.startswith("cni del") for d in hist)
    finally:
        rt.delete(lab.conflist("node1"), "pm-target", sysnet.netns_path(ns))
        sysnet.netns_del(ns)


def test_podman_containers_in_parallel_get_distinct_addresses(env):
    lab = env[0]
    procs = [subprocess.Popen(
        ["nsenter", f"--net={sysnet.netns_path(lab.paths.node_ns('node1'))}", "podman", "--log-level=error",
         "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm", "--network", "contiv",
         "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000", "--rootfs", str(env[1]),
         "/bin/sh", "-c", "ip -4 -o addr show eth0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CONTAINERS_CONF": str(env[2])}) for _ in range(4)]
    outs = [p.communicate(timeout=90) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    addrs = [o[0].split()[3] for o in outs]
    assert len(set(addrs)) == 4, addrs
    assert lab.client("node1").ipam().allocations == ()


def contivctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contivctl.main", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NO_COLOR": "1"})


def test_the_installed_conflist_passes_its_check_and_a_1_1_0_one_is_what_podman_refuses(env):
    lab, _, conf = env
    root, sock = str(conf.parent / "root"), lab.state().node("node1").socket
    ok = contivctl("install", "cni", "--root", root, "--check", "-o", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    checks = {c["check"]: c for c in json.loads(ok.stdout)["checks"]}
    assert all(c["ok"] for c in checks.values()) and "ready" in checks["agent"]["detail"]
    # what `install cni` wrote before it defaulted to 1.0.0
    assert contivctl("install", "cni", "--root", root, "--agent-socket", sock, "--cni-version", "1.1.0").returncode == 0
    try:
        bad = contivctl("install", "cni", "--root", root, "--check")
        assert bad.returncode == 1 and "1.1.0: podman 4.3" in bad.stdout, bad.stdout
        p = podman(env, "/bin/sh", "-c", "true")
        assert p.returncode != 0 and 'unsupported CNI result version "1.1.0"' in p.stderr, p.stderr
    finally:
        again = contivctl("install", "cni", "--root", root, "--agent-socket", sock)
        assert again.returncode == 0, again.stderr
