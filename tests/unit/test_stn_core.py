"""STN's decisions that need no network: a confirmation and the deadline
cannot both win, a steal under way is left alone, the directory's safety
checks and the snapshot's validation (the rest runs for real in
tests/integration/test_stn.py and tests/vpp/test_vpp_stn.py)."""
from __future__ import annotations

import os
import time

import pytest

from agent.errors import InvalidInput
from agent.model.stn import SNAPSHOT_VERSION, Snapshot, StnState
from agent.stndir import StnDir
from stn.core import Stn

# a NIC no machine has: were a guard to act by mistake, it would fail on netlink, not touch a real NIC
NIC = "stnt0"
SNAP = Snapshot(SNAPSHOT_VERSION, NIC, 1.0, {"mac": "02:00:00:00:00:01", "mtu": 1500, "up": True},
                ({"family": 4, "address": "192.0.2.10", "prefixlen": 24, "scope": 0},))


@pytest.fixture
def stn(tmp_path):
    d = tmp_path / "stn"
    d.mkdir(mode=0o700)
    s = Stn(str(d))
    s.files.save_snapshot(SNAP)
    return s


def test_a_confirmation_that_lands_after_the_guard_looked_wins(stn):
    stn.files.save_state(StnState(NIC, "linux", "pending", 1.0, "stnbr-stnt0", deadline=time.time() - 1))

    def due(st):
        return st is not None and st.phase == "pending" and time.time() >= st.deadline
    assert due(stn.files.state(NIC)), "the guard's look without the lock: due"
    stn.confirm(NIC)  # lands between that look and the restore
    assert stn.restore(NIC, only_if=due) is None, "decided again under the lock: not due any more"
    assert stn.files.state(NIC).phase == "confirmed" and stn.files.ifaces() == [NIC]
    assert stn.expire(NIC) == ""


def test_a_steal_under_way_is_left_alone_by_the_watchdog(stn):
    stn.files.save_state(StnState(NIC, "linux", "stealing", 1.0, "stnbr-stnt0", pid=os.getpid()))
    with stn._locked() as held:  # the stealing process holds the lock
        assert held
        assert stn._watch(NIC) == ""
    assert stn.files.state(NIC).phase == "stealing"


def test_a_directory_others_can_write_to_is_refused(stn):
    os.chmod(stn.files.path, 0o777)
    with pytest.raises(InvalidInput, match="writable by it alone"):
        stn.confirm(NIC)


@pytest.mark.parametrize("change, text", [
    ({"iface": "eth1"}, "it is of interface 'eth1', not 'stnt0'"),
    ({"link": {"mac": "02:00:00:00:00:01", "mtu": "1500", "up": True}}, "mtu and up are missing"),
    ({"addresses": ({"family": 4, "address": "192.0.2.10"},)}, "an entry of addresses lacks"),
    ({"neighbours": ({"family": 5, "dst": "192.0.2.1", "lladdr": "02:00:00:00:00:02"},)}, "family 5"),
])
def test_a_snapshot_that_could_not_be_applied_whole_is_refused(stn, change, text):
    from dataclasses import replace
    bad = replace(SNAP, **change)
    with open(stn.files.snapshot_path(NIC), "w") as f:
        f.write(bad.to_json())
    with pytest.raises(InvalidInput, match=text):
        stn.files.snapshot(NIC)


def test_the_agent_reads_a_state_of_another_interface_as_corrupt(tmp_path):
    d = StnDir(str(tmp_path))
    os.chmod(tmp_path, 0o700)
    d.save_state(StnState(NIC, "vpp", "confirmed", 1.0, "stn-host"))
    os.replace(d.state_path(NIC), d.state_path("eth1"))
    with pytest.raises(InvalidInput, match="corrupt"):
        d.state("eth1")
    assert d.holder("eth1", "vpp") == "", "unreadable: the NIC is left to Linux"
