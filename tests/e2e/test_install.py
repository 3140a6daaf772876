"""End to end: ``contivctl install node`` as a user runs it, into a root of
its own (``--root``: the machine's /etc stays untouched), and an upgrade in
place under running pods.

The "newer package" is a copy of this checkout whose CNI plugin source
differs: installing from it replaces the plugin, keeps the unit (it did not
change) and the user's edited configuration, and says so.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import IS_ROOT
from lab.ops import pod_netns
from tests.e2e.labtools import REPO, assert_one_line_error, cli, kube_lab
from tests.helpers import dataplanes

pytestmark = [pytest.mark.root, pytest.mark.e2e]

UNIT = "etc/systemd/system/contiv-agent.service"
CONF = "etc/contiv/agent.yaml"


def install(root: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-m", "contivctl.main", "install", "node", "--root", str(root),
                           "--node", "n1", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def actions(r: subprocess.CompletedProcess) -> dict[str, str]:
    assert r.returncode == 0, r.stderr
    return {a["file"]: a["action"] for a in json.loads(r.stdout)["actions"]}


@pytest.fixture
def root(tmp_path):
    if not IS_ROOT:
        pytest.skip("needs root: installs files owned by root, runs systemd-analyze")
    return tmp_path


def test_a_node_install_writes_everything_once_and_dry_run_changes_nothing(root):
    plan = actions(install(root, "--dry-run", "-o", "json"))
    assert set(plan.values()) == {"create"} and not list(root.iterdir())
    got = actions(install(root, "-o", "json"))
    assert got == plan
    for f in ("opt/cni/bin/contiv-cni", "etc/cni/net.d/10-contiv.conflist", CONF, UNIT,
              "etc/sysctl.d/90-contiv.conf", "etc/modules-load.d/contiv.conf"):
        assert (root / f).is_file(), f
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/contiv-agent.service") == "/" + UNIT
    assert json.loads((root / "etc/cni/net.d/10-contiv.conflist").read_text())["cniVersion"] == "1.0.0"
    assert set(actions(install(root, "-o", "json")).values()) == {"unchanged"}
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(root / UNIT)], capture_output=True, text=True)
        assert v.returncode == 0, v.stderr


def vpp_config(root: Path) -> str:
    """Agent settings of a VPP node (the uplink is required), outside the root."""
    f = root.parent / f"{root.name}-vpp.yaml"
    f.write_text("dataplane: vpp\nvpp_uplink: eth1\nvpp_uplink_cidr: 192.168.56.10/24\n")
    return str(f)


def test_a_vpp_node_gets_vpps_startup_and_the_ordering(root):
    got = actions(install(root, "--config", vpp_config(root), "-o", "json"))
    assert got["/etc/contiv/vpp/startup.conf"] == "create"
    assert got["/etc/systemd/system/vpp.service.d/contiv.conf"] == "create"
    assert "vpp.service" in (root / UNIT).read_text()
    assert not (root / "etc/systemd/system/contiv-stn-watch.service").exists(), "no STN: no watchdog"


def test_a_vpp_stn_node_gets_the_stn_watchdog_enabled(root):
    conf = Path(vpp_config(root))
    conf.write_text(conf.read_text() + "vpp_stn: true\n")
    got = actions(install(root, "--config", str(conf), "-o", "json"))
    unit = "etc/systemd/system/contiv-stn-watch.service"
    assert got["/" + unit] == "create"
    assert "stn watch --dir /var/lib/contiv/stn" in (root / unit).read_text()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/contiv-stn-watch.service") == "/" + unit


def test_an_upgrade_replaces_the_plugin_keeps_the_users_configuration_and_says_so(root, tmp_path_factory):
    assert install(root).returncode == 0
    conf = root / CONF
    conf.write_text(conf.read_text() + 'log_level: "debug"\n')  # the user's own setting
    newer = tmp_path_factory.mktemp("newer") / "src"
    shutil.copytree(REPO, newer, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info"))
    plugin = newer / "cni" / "plugin.py"
    plugin.write_text(plugin.read_text() + "\n# a newer package\n")
    r = install(root, cwd=newer)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split()[-2:] for ln in r.stdout.splitlines()[1:] if ln.strip()}
    assert rows["/opt/cni/bin/contiv-cni"][0] == "update"
    assert "unchanged" in rows["/" + UNIT]
    assert rows["/" + CONF][0] == "kept" or "kept" in r.stdout.splitlines()[[
        ln.split()[0] for ln in r.stdout.splitlines()].index("/" + CONF)]
    assert 'log_level: "debug"' in conf.read_text()
    assert "# a newer package" in (root / "opt/cni/bin/contiv-cni").read_text()


def test_a_unit_changed_by_hand_is_shown_and_kept_until_forced(root):
    assert install(root).returncode == 0
    unit = root / UNIT
    unit.write_text(unit.read_text().replace("RestartSec=", "RestartSec=1\n#RestartSec="))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    r = install(root, "--node", "n2")  # the unit is the same; the configuration differs, and is kept
    assert_one_line_error(r, 2, "changed by hand", "/" + UNIT, "--force")
    assert "-#RestartSec=" in r.stdout and "-RestartSec=1" in r.stdout  # the diff, old -> new
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing changed
    assert actions(install(root, "--force", "-o", "json"))["/" + UNIT] == "update"


def test_uninstall_removes_what_install_wrote_and_nothing_else(root):
    assert install(root).returncode == 0
    (root / CONF).write_text("node: n1\n# mine now\n")
    (root / "etc/cni/net.d/99-other.conflist").write_text("{}")
    r = install(root, "--uninstall", "-o", "json")
    got = actions(r)
    assert got["/" + CONF] == "kept" and got["/" + UNIT] == "remove"
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())
    assert left == sorted([CONF, "etc/cni/net.d/99-other.conflist", "var/lib/contiv/install.json"])


def test_a_full_disk_leaves_the_old_file_and_says_so(root):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(root)], check=True)
    try:
        assert install(root).returncode == 0
        plugin = root / "opt/cni/bin/contiv-cni"
        plugin.write_bytes(plugin.read_bytes() + b"\n# changed by hand\n")
        before = plugin.read_bytes()
        with open(root / "filler", "wb", buffering=0) as f:  # the disk fills up
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        r = install(root, "--force")
        assert_one_line_error(r, 4, "cannot write /opt/cni/bin/contiv-cni", "No space left")
        assert plugin.read_bytes() == before
        assert not [p.name for p in root.rglob(".*") if p.name != ".contiv"]  # no temporary file left
    finally:
        subprocess.run(["umount", str(root)], check=True)


@pytest.mark.parametrize("args,status,needles", [
    (["--dataplane", "dpdk"], 2, ["dpdk", "linux", "vpp"]),
    (["--chain", "portmap,flannel"], 2, ["flannel"]),
    (["--cni-version", "2.0.0"], 2, ["2.0.0"]),
])
def test_bad_input_is_one_line_and_changes_nothing(root, args, status, needles):
    assert_one_line_error(install(root, *args), status, *needles)
    assert not list(root.iterdir())


def test_a_root_that_does_not_exist_is_one_line(root):
    r = cli("install", "node", "--root", str(root / "nope"))
    assert_one_line_error(r, 2, "nope", "no such directory")


@pytest.mark.parametrize("dataplane", dataplanes())
def test_pods_keep_talking_through_an_upgrade_that_restarts_the_agent(root, dataplane):
    """What an upgrade does to a running node: the agent stops, the new files
    land, the agent starts again (systemd's restart). Pods on the node keep
    talking to a pod on another node all along: nothing of theirs depends
    on the agent process."""
    manifest = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "up"}}] + [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": "up"},
         "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab"}]}}
        for n, node in (("a", "node1"), ("b", "node2"))]
    with kube_lab(manifest, dataplane) as (lab, kube):
        b_ip = kube.pod("up/b")["status"]["podIP"]
        netns = os.path.basename(pod_netns(kube, "up/a")[1])
        ping = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-q", "-i", "0.05", "-w", "8", "-W", "1", b_ip],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1)
            lab.stop_agent("node1")
            assert install(root).returncode == 0
            lab.start_agent("node1")
            lab.wait_ready("node1", 60)
        finally:
            out, err = ping.communicate(timeout=30)
        sent, received = (int(x) for x in re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
        assert sent >= 100 and received == sent, out + err
