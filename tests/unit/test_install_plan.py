"""contivctl/install/plan.py: plan with diffs, atomic apply, the manifest, uninstall
of exactly what was installed -- in a temporary root (no root user needed)."""
from __future__ import annotations

import json
import os

import pytest

from agent.errors import InvalidInput, TemporaryError
from contivctl.install import plan as pl
from contivctl.install.plan import Want


def wants(plugin=b"plugin v1\n", conf=b"conf v1\n", user=b"node: a\n"):
    return [Want("/opt/cni/bin/contiv-cni", "CNI plugin", plugin, 0o755),
            Want("/etc/cni/net.d/10-contiv.conflist", "conflist", conf),
            Want("/etc/contiv/agent.yaml", "agent configuration", user, 0o600, user=True),
            Want("/etc/systemd/system/multi-user.target.wants/x.service", "enabled",
                 link="/etc/systemd/system/x.service")]


def install(root, ws, force=False):
    m = pl.Manifest(str(root))
    actions = pl.plan(ws, str(root), m, force)
    pl.apply(actions, str(root), m)
    return {a.path: a.action for a in actions}


def test_a_first_install_creates_everything_and_records_it(tmp_path):
    got = install(tmp_path, wants())
    assert set(got.values()) == {"create"}
    assert (tmp_path / "opt/cni/bin/contiv-cni").read_bytes() == b"plugin v1\n"
    assert (tmp_path / "opt/cni/bin/contiv-cni").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "etc/contiv/agent.yaml").stat().st_mode & 0o777 == 0o600
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/x.service"
    assert os.readlink(link) == "/etc/systemd/system/x.service"
    manifest = json.loads((tmp_path / "var/lib/contiv/install.json").read_text())
    assert set(manifest["files"]) == {w.path for w in wants()}
    assert not [p for p in tmp_path.rglob(".*") if p.name != "install.json"]  # no temporary files left


def test_again_is_unchanged_and_an_upgrade_replaces_ours_but_not_the_users_config(tmp_path):
    install(tmp_path, wants())
    assert set(install(tmp_path, wants()).values()) == {"unchanged"}
    (tmp_path / "etc/contiv/agent.yaml").write_bytes(b"node: mine\n")  # the user's edit
    got = install(tmp_path, wants(plugin=b"plugin v2\n", user=b"node: a\nnew: key\n"))
    assert got["/opt/cni/bin/contiv-cni"] == "update" and got["/etc/contiv/agent.yaml"] == "kept"
    assert (tmp_path / "opt/cni/bin/contiv-cni").read_bytes() == b"plugin v2\n"
    assert (tmp_path / "etc/contiv/agent.yaml").read_bytes() == b"node: mine\n"


def test_a_file_changed_by_hand_is_a_conflict_with_its_diff_until_forced(tmp_path):
    install(tmp_path, wants())
    (tmp_path / "etc/cni/net.d/10-contiv.conflist").write_bytes(b"conf by hand\n")
    m = pl.Manifest(str(tmp_path))
    actions = pl.plan(wants(conf=b"conf v2\n"), str(tmp_path), m)
    (c,) = pl.conflicts(actions)
    assert c.path == "/etc/cni/net.d/10-contiv.conflist" and "changed by hand" in c.note
    assert "-conf by hand" in c.diff and "+conf v2" in c.diff
    with pytest.raises(InvalidInput):
        pl.apply(actions, str(tmp_path), m)
    assert (tmp_path / "etc/cni/net.d/10-contiv.conflist").read_bytes() == b"conf by hand\n"
    assert install(tmp_path, wants(conf=b"conf v2\n"), force=True)["/etc/cni/net.d/10-contiv.conflist"] == "update"


def test_a_file_install_never_wrote_is_not_replaced_unasked(tmp_path):
    (tmp_path / "opt/cni/bin").mkdir(parents=True)
    (tmp_path / "opt/cni/bin/contiv-cni").write_bytes(b"someone else's\n")
    actions = pl.plan(wants(), str(tmp_path), pl.Manifest(str(tmp_path)))
    assert [(a.action, a.note) for a in pl.conflicts(actions)] == [("conflict", "not written by install")]


def test_a_failed_write_leaves_the_old_file_and_a_true_manifest(tmp_path, monkeypatch):
    import errno  # noqa: PLC0415
    install(tmp_path, wants())
    real_rename = os.rename

    def full_disk(src, dst):  # the conflist's last step fails (a real full disk: tests/integration)
        if str(dst).endswith(".conflist"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_rename(src, dst)
    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(TemporaryError, match="cannot write /etc/cni/net.d/10-contiv.conflist: No space"):
        install(tmp_path, wants(plugin=b"plugin v2\n", conf=b"conf v2\n"))
    monkeypatch.undo()
    # the plugin (first) was replaced and recorded; the conflist is the old one, recorded as such
    manifest = json.loads((tmp_path / "var/lib/contiv/install.json").read_text())
    assert manifest["files"]["/opt/cni/bin/contiv-cni"]["sha256"] == pl.digest(b"plugin v2\n")
    assert manifest["files"]["/etc/cni/net.d/10-contiv.conflist"]["sha256"] == pl.digest(b"conf v1\n")
    assert (tmp_path / "etc/cni/net.d/10-contiv.conflist").read_bytes() == b"conf v1\n"
    assert not list((tmp_path / "etc/cni/net.d").glob(".*"))  # no temporary file left behind


def test_a_path_that_cannot_hold_the_file_is_one_clear_error_before_any_write(tmp_path):
    (tmp_path / "etc/cni").mkdir(parents=True)
    (tmp_path / "etc/cni/net.d").write_text("a file where a directory should be")
    with pytest.raises(InvalidInput, match="net.d"):
        pl.plan(wants(), str(tmp_path), pl.Manifest(str(tmp_path)))
    assert not (tmp_path / "opt").exists()


def test_uninstall_removes_what_install_wrote_and_leaves_what_was_changed(tmp_path):
    install(tmp_path, wants())
    (tmp_path / "etc/contiv/agent.yaml").write_bytes(b"node: mine\n")
    (tmp_path / "etc/cni/net.d/other.conflist").write_bytes(b"not ours\n")
    dry = pl.plan_uninstall(str(tmp_path), pl.Manifest(str(tmp_path)))
    assert (tmp_path / "opt/cni/bin/contiv-cni").exists()  # planning removes nothing
    got = {a.path: a.action for a in pl.uninstall(str(tmp_path), pl.Manifest(str(tmp_path)))}
    assert got == {a.path: a.action for a in dry}
    assert got["/etc/contiv/agent.yaml"] == "kept" and got["/opt/cni/bin/contiv-cni"] == "remove"
    assert not (tmp_path / "opt/cni/bin/contiv-cni").exists()
    assert not os.path.lexists(tmp_path / "etc/systemd/system/multi-user.target.wants/x.service")
    assert (tmp_path / "etc/contiv/agent.yaml").read_bytes() == b"node: mine\n"
    assert (tmp_path / "etc/cni/net.d/other.conflist").exists()
    # what was kept stays in the manifest: a second uninstall still leaves it
    assert [a.action for a in pl.uninstall(str(tmp_path), pl.Manifest(str(tmp_path)))] == ["kept"]


def test_uninstall_of_some_paths_keeps_the_rest_recorded(tmp_path):
    install(tmp_path, wants())
    only = {"/opt/cni/bin/contiv-cni", "/etc/cni/net.d/10-contiv.conflist"}
    assert {a.path for a in pl.uninstall(str(tmp_path), pl.Manifest(str(tmp_path)), only)} == only
    left = set(json.loads((tmp_path / "var/lib/contiv/install.json").read_text())["files"])
    assert left == {w.path for w in wants()} - only


def test_an_unreadable_manifest_is_one_clear_error(tmp_path):
    (tmp_path / "var/lib/contiv").mkdir(parents=True)
    (tmp_path / "var/lib/contiv/install.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="install manifest"):
        pl.Manifest(str(tmp_path))
