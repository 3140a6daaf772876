"""The startup.conf `contivctl install node` writes for VPP nodes, run by a real
VPP: it starts, its API socket answers the agent's client, its stats socket
the counters reader. Everything (sockets, CLI socket, log) under a temporary
directory -- derived from the API socket's, as on a node from /run/vpp."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.procs import terminate
from agent.vpp import process
from agent.vpp.errors import VppUnavailable
from agent.vpp.papi import VppApi, interface_counters
from contivctl.install import files

HAVE_VPP, WHY = process.availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]
#: what a VPP without an api-segment prefix (as on a node) leaves in /dev/shm
SHM = [Path("/dev/shm/vpe-api"), Path("/dev/shm/global_vm")]


@pytest.fixture
def rundir():
    d = Path(tempfile.mkdtemp(prefix="cvi-"))  # short: unix socket paths
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_vpp_runs_with_the_installed_startup_conf_and_answers_on_its_sockets(rundir):
    if any(p.exists() for p in SHM):
        pytest.skip("a VPP with the default shared-memory prefix runs here: a second one would clash")
    inst = process.find_vpp()
    o = files.NodeOptions("vpp", "node1", str(Path(sys.executable).parent / "contivctl"), {
        "vpp_uplink": "eth1", "vpp_uplink_cidr": "192.168.56.110/24",
        "vpp_api_socket": str(rundir / "api.sock"), "vpp_stats_socket": str(rundir / "stats.sock")},
        vpp_binary=str(inst.binary), vpp_startup_path=str(rundir / "startup.conf"))
    conf = files.vpp_startup(o)
    assert "/run/vpp" not in conf and "/var/log" not in conf  # nothing of this test outside rundir
    (rundir / "startup.conf").write_text(conf)
    env = dict(os.environ)
    if inst.library_path():
        env["LD_LIBRARY_PATH"] = inst.library_path()
    out = open(rundir / "vpp.out", "wb")
    proc = subprocess.Popen([str(inst.binary), "-c", str(rundir / "startup.conf")], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    api = None
    try:
        api = VppApi(str(rundir / "api.sock"))
        deadline = time.monotonic() + 20.0
        while not api.connected:
            try:
                api.connect()
            except VppUnavailable:
                # a VPP that refused the configuration has exited: say so at once
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"VPP (exit status {proc.poll()}) did not answer on its API socket; "
                                "its output:\n" + (rundir / "vpp.out").read_text(errors="replace")[-2000:])
                time.sleep(0.1)
        assert api.version()  # e.g. 26.10-rc0~374-g...
        assert (rundir / "cli.sock").is_socket()
        # its log, where derived: VPP notes each start there
        assert f"Start: PID {proc.pid} " in (rundir / "vpp.log").read_text(errors="replace")
        counters = interface_counters(str(rundir / "stats.sock"))
        assert "local0" in counters, counters
        assert proc.poll() is None
    finally:
        if api is not None:
            api.close()
        status = terminate(proc, 10.0)
        out.close()
        for p in SHM:  # ours: none existed before it started
            p.unlink(missing_ok=True)
    assert status != -9, "VPP did not stop on SIGTERM"
