"""contivctl install cni: atomic, idempotent, chains what is installed, removes only its own files."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cni import install as inst


@pytest.fixture
def dirs(tmp_path):
    b, c = tmp_path / "bin", tmp_path / "net.d"
    b.mkdir()
    return b, c


def test_install_then_again_is_unchanged_and_leaves_no_temp_files(dirs):
    b, c = dirs
    first = inst.install(str(b), str(c), "/run/x.sock", chain=[])
    assert [a["action"] for a in first] == ["installed", "installed"]
    second = inst.install(str(b), str(c), "/run/x.sock", chain=[])
    assert [a["action"] for a in second] == ["unchanged", "unchanged"]
    assert sorted(os.listdir(b)) == ["contiv-cni"] and sorted(os.listdir(c)) == [inst.CONF_NAME]
    assert os.stat(b / "contiv-cni").st_mode & 0o777 == 0o755
    conf = json.loads((c / inst.CONF_NAME).read_text())
    assert conf["plugins"] == [{"type": "contiv-cni", "agentSocket": "/run/x.sock"}]
    third = inst.install(str(b), str(c), "/run/y.sock", chain=[])
    assert [a["action"] for a in third] == ["unchanged", "updated"]


def test_installed_plugin_runs_and_answers_version(dirs):
    b, c = dirs
    inst.install(str(b), str(c), "/nonexistent.sock", chain=[], interpreter=os.path.realpath(sys.executable))
    head = (b / "contiv-cni").read_text().splitlines()[0]
    assert head.startswith("#!") and head.endswith(" -IS")
    p = subprocess.run([str(b / "contiv-cni")], env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True)
    assert p.returncode == 0 and json.loads(p.stdout)["supportedVersions"][-1] == "1.1.0"
    p = subprocess.run([str(b / "contiv-cni")], input='{"cniVersion":"1.0.0","name":"n","type":"contiv-cni",'
                       '"agentSocket":"/nonexistent.sock"}', capture_output=True, text=True,
                       env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/proc/self/ns/net",
                            "CNI_IFNAME": "eth0", "CNI_PATH": str(b)})
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 11  # agent down: try again later


def test_chain_defaults_to_the_chainable_plugins_found(dirs, tmp_path):
    b, c = dirs
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in ("portmap", "tuning", "bridge"):
        (plugins / name).write_text("#!/bin/sh\n")
    acts = inst.install(str(b), str(c), "/run/x.sock", plugin_dirs=[str(plugins)])
    assert acts[1]["chain"] == ["portmap", "tuning"]
    conf = json.loads((c / inst.CONF_NAME).read_text())
    assert [p["type"] for p in conf["plugins"]] == ["contiv-cni", "portmap", "tuning"]
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}


def test_missing_chained_plugin_fails_before_writing_anything(dirs):
    b, c = dirs
    with pytest.raises(FileNotFoundError, match="bandwidth"):
        inst.install(str(b), str(c), "/run/x.sock", chain=["bandwidth"])
    assert os.listdir(b) == [] and not c.exists()


def test_uninstall_removes_only_our_files(dirs):
    b, c = dirs
    inst.install(str(b), str(c), "/run/x.sock", chain=[])
    acts = inst.uninstall(str(b), str(c))
    assert [a["action"] for a in acts] == ["removed", "removed"]
    assert [a["action"] for a in inst.uninstall(str(b), str(c))] == ["absent", "absent"]
    (b / "contiv-cni").write_text("#!/bin/sh\necho someone else's\n")
    c.mkdir(exist_ok=True)
    (c / inst.CONF_NAME).write_text('{"name": "other"}')
    assert [a["action"] for a in inst.uninstall(str(b), str(c))] == ["kept (not ours)"] * 2
    assert (b / "contiv-cni").exists() and (c / inst.CONF_NAME).exists()
