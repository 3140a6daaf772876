"""Reconciler: ordering, cascade, retry, resync after drift, foreign objects."""
from __future__ import annotations

import pytest

from agent.reconciler import OpKind, Plan, Scheduler
from tests.unit.fakeplane import (FakePlane, IfaceDescriptor, Route, RouteDescriptor, iface,
                                  route, temp)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def env():
    plane = FakePlane()
    clock = Clock()
    s = Scheduler([IfaceDescriptor(plane), RouteDescriptor(plane)], clock=clock)
    return plane, s, clock


def test_dependencies_order_creation_regardless_of_input_order(env):
    plane, s, _ = env
    r = s.apply(dict([route("10.0.0.0/24", "eth1"), iface("eth1")]))
    assert r.ok
    assert plane.log == [("create", "fake/iface/eth1"), ("create", "fake/route/10.0.0.0/24")]


def test_value_waits_for_missing_dependency_then_is_created(env):
    plane, s, _ = env
    r = s.apply(dict([route("10.0.0.0/24", "eth1")]))
    assert "fake/route/10.0.0.0/24" in r.plan.pending
    assert "interface-exists" in r.plan.pending["fake/route/10.0.0.0/24"]
    assert plane.log == []
    assert s.state()[0]["state"] == "pending"
    s.apply(dict([iface("eth1")]))
    assert plane.log == [("create", "fake/iface/eth1"), ("create", "fake/route/10.0.0.0/24")]
    assert {x["state"] for x in s.state()} == {"configured"}


def test_removing_dependency_cascades_dependents_first(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1"), route("10.0.1.0/24", "eth1")]))
    plane.log.clear()
    r = s.apply({"fake/iface/eth1": None})
    kinds = [(o.kind, o.key) for o in r.plan.operations]
    assert kinds[-1] == (OpKind.DELETE, "fake/iface/eth1")
    assert {k for _, k in kinds[:-1]} == {"fake/route/10.0.0.0/24", "fake/route/10.0.1.0/24"}
    assert all("dependency fake/iface/eth1" in o.reason for o in r.plan.operations[:-1])
    # the routes go though still wanted, the interface because it is not: typed, not in words
    assert [o.still_desired for o in r.plan.operations] == [True, True, False]
    # routes are still desired: they wait for the interface
    assert set(r.plan.pending) == {"fake/route/10.0.0.0/24", "fake/route/10.0.1.0/24"}
    assert plane.objects == {}
    s.apply(dict([iface("eth1")]))
    assert len(plane.objects) == 3


def test_recreate_of_dependency_recreates_dependents(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1")]))
    plane.log.clear()
    # same key, different name -> needs_recreate
    s.apply({"fake/iface/eth1": iface("eth9")[1]})
    assert plane.log == [("delete", "fake/route/10.0.0.0/24"), ("delete", "fake/iface/eth1"),
                         ("create", "fake/iface/eth1"), ("create", "fake/route/10.0.0.0/24")]


def test_update_in_place_when_supported(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1")]))
    plane.log.clear()
    r = s.apply(dict([iface("eth1", mtu=9000)]))
    assert plane.log == [("update", "fake/iface/eth1")]
    assert r.plan.operations[0].reason == "value changed"


def test_temporary_failure_is_retried_with_backoff(env):
    plane, s, clock = env
    plane.fail[("create", "fake/iface/eth1")] = temp("device busy")
    r = s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1")]))
    assert r.errors == {"fake/iface/eth1": "device busy"}
    assert "fake/route/10.0.0.0/24" in r.plan.pending
    assert s.retry_due() is None  # backoff not expired
    assert s.next_retry_in() == pytest.approx(0.1)
    clock.t += 0.2
    r2 = s.retry_due()
    assert r2.ok and r2.record.kind == "retry"
    assert ("create", "fake/route/10.0.0.0/24") in plane.log
    assert s.next_retry_in() is None


def test_backoff_grows_exponentially(env):
    plane, s, clock = env
    for _ in range(3):
        plane.fail[("create", "fake/iface/eth1")] = temp()
        if not s.desired():
            s.apply(dict([iface("eth1")]))
        else:
            clock.t += 100
            s.retry_due()
    assert s.next_retry_in() == pytest.approx(0.4)


def test_invalid_value_is_never_attempted(env):
    plane, s, clock = env
    r = s.apply({"fake/iface/x": iface("a-very-long-interface-name")[1]})
    assert r.plan.invalid == {"fake/iface/x": "name too long"}
    assert plane.log == []
    clock.t += 1000
    assert s.retry_due() is None
    assert s.state()[0]["state"] == "invalid"


def test_resync_repairs_drift_and_says_so(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1")]))
    del plane.objects["fake/route/10.0.0.0/24"]  # someone deleted our route
    plane.objects["fake/iface/eth1"] = (iface("eth1", mtu=1400)[1], "contiv")  # and changed MTU
    plane.log.clear()
    r = s.resync()
    reasons = {o.key: o.reason for o in r.plan.operations}
    assert reasons["fake/route/10.0.0.0/24"] == "drift: missing in data plane"
    assert reasons["fake/iface/eth1"] == "drift: data plane differs from desired"
    assert plane.objects["fake/iface/eth1"][0].mtu == 1500


def test_resync_leaves_foreign_objects_alone_and_removes_stale_own(env):
    plane, s, _ = env
    plane.objects["fake/iface/theirs"] = (iface("theirs")[1], "someone-else")
    plane.objects["fake/iface/stale"] = (iface("stale")[1], "contiv")  # ours, from a past life
    r = s.resync({})
    assert [(o.kind, o.key) for o in r.plan.operations] == [(OpKind.DELETE, "fake/iface/stale")]
    assert r.plan.operations[0].reason == "found in data plane, not desired"
    assert "fake/iface/theirs" in plane.objects


def test_resync_with_nothing_to_do_is_empty(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1")]))
    plane.log.clear()
    assert s.dry_run().operations == []
    r = s.resync()
    assert r.plan.operations == [] and plane.log == []


def test_an_empty_plan_is_a_plan_not_nothing(env):
    """A plan with no operation is a real answer: true, not None, and kept
    apart from "no transaction ran" (retry_due's None)."""
    _, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth9")]))  # the route waits for eth9
    p = s.dry_run()
    assert p is not None and p and p.operations == []
    assert bool(Plan()) and p.pending  # pending values, nothing to do: still a plan
    with pytest.raises(TypeError):
        len(p)  # a plan is not a container: ask its operations
    assert s.retry_due() is None  # nothing due: no transaction, no plan
    changed = s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth9")]))
    assert changed.plan and changed.plan.operations == []
    seq = s.history.list()[-1].seq
    s.resync()  # an empty resync is recorded (the audit trail), an empty change is not
    assert [r.kind for r in s.history.list(since=seq)] == ["resync"]


def test_dry_run_does_not_touch_the_data_plane(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1")]))
    plane.objects.pop("fake/iface/eth1")
    plane.log.clear()
    p = s.dry_run()
    assert [(o.kind, o.key) for o in p.operations] == [(OpKind.CREATE, "fake/iface/eth1")]
    assert plane.log == [] and "fake/iface/eth1" not in plane.objects


def test_failed_delete_is_retried(env):
    plane, s, clock = env
    s.apply(dict([iface("eth1")]))
    plane.fail[("delete", "fake/iface/eth1")] = temp()
    r = s.apply({"fake/iface/eth1": None})
    assert not r.ok
    assert s.state()[0]["state"] == "obsolete"
    clock.t += 1
    s.retry_due()
    assert plane.objects == {} and s.state() == []


def test_history_is_bounded_and_records_outcomes(env):
    plane = FakePlane()
    s = Scheduler([IfaceDescriptor(plane), RouteDescriptor(plane)], history_size=3)
    for i in range(5):
        s.apply(dict([iface(f"e{i}")]), description=f"add e{i}")
    recs = s.history.list()
    assert [r.description for r in recs] == ["add e2", "add e3", "add e4"]
    assert recs[-1].operations[0].ok and recs[-1].operations[0].op == "create"


def test_unchanged_desired_value_is_a_noop(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1")]))
    plane.log.clear()
    r = s.apply(dict([iface("eth1")]))
    assert r.plan.operations == [] and plane.log == []


def test_unknown_key_prefix_is_rejected(env):
    _, s, _ = env
    from agent.errors import InvalidInput
    with pytest.raises(InvalidInput):
        s.apply({"nope/x/y": Route("a", "b")})


def test_replace_under_prefix_keeps_other_values(env):
    plane, s, _ = env
    s.apply(dict([iface("eth1"), route("10.0.0.0/24", "eth1"), route("10.0.1.0/24", "eth1")]))
    s.replace(dict([route("10.0.1.0/24", "eth1")]), prefixes=["fake/route/"])
    assert set(plane.objects) == {"fake/iface/eth1", "fake/route/10.0.1.0/24"}


def test_rejected_change_set_changes_nothing(env):
    plane, s, _ = env
    from agent.errors import InvalidInput
    with pytest.raises(InvalidInput):
        s.apply(dict([iface("eth1"), ("nope/x/y", Route("a", "b"))]))
    assert s.desired() == {} and plane.objects == {}


def test_diamond_dependencies_unblock_every_dependent():
    """x needs t and y, y needs t: all three are created in one transaction
    (regression: creating t unblocked x recursively while y was mid-visit, and
    x was left pending behind a "dependency cycle")."""
    from tests.unit.fakeplane import ThingDescriptor, thing
    plane = FakePlane()
    s = Scheduler([ThingDescriptor(plane)])
    r = s.apply(dict([thing("x", "t", "y"), thing("y", "t"), thing("t")]))
    assert r.ok and not r.plan.pending, r.plan.pending
    assert [k for _, k in plane.log] == ["fake/thing/t", "fake/thing/y", "fake/thing/x"]


def test_true_dependency_cycle_is_reported():
    from tests.unit.fakeplane import ThingDescriptor, thing
    plane = FakePlane()
    s = Scheduler([ThingDescriptor(plane)])
    r = s.apply(dict([thing("a", "b"), thing("b", "a")]))
    assert plane.log == []
    assert set(r.plan.pending) == {"fake/thing/a", "fake/thing/b"}


def test_states_of_and_failed_count_agree_with_counts(env):
    plane, s, clock = env
    plane.fail[("create", "fake/iface/bad")] = temp()
    s.apply(dict([iface("ok"), iface("bad"), route("10.0.0.0/24", "missing")]))
    states = s.states_of(["fake/iface/ok", "fake/iface/bad", "fake/route/10.0.0.0/24", "fake/iface/nope"])
    assert states == {"fake/iface/ok": "configured", "fake/iface/bad": "failed",
                      "fake/route/10.0.0.0/24": "pending"}
    assert s.failed_count() == s.counts()["failed"] == 1


def test_resync_keeps_the_desired_object_for_what_it_found_in_place(env):
    """A warm restart finds everything in place: the scheduler then holds one
    copy of each value (the desired one), not the desired and the retrieved."""
    plane, s, _ = env
    (k1, v1), (k2, v2) = iface("eth1"), iface("eth2")
    s.apply({k1: v1, k2: v2})
    copy = iface("eth1")[1]  # equal, not the same object: what a retrieve returns
    plane.objects[k1] = (copy, "contiv")
    plane.objects[k2] = (iface("eth2", mtu=1400)[1], "contiv")  # drifted
    r = s.resync()
    assert [(o.kind, o.key) for o in r.plan.operations] == [(OpKind.UPDATE, k2)]
    assert s.actual()[k1] is v1 and s.actual()[k1] is not copy
    assert s.actual()[k2] == v2  # repaired: its actual is what was written
