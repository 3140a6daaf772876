"""The Store contract (agent/store/base.py), run against every implementation.

Not collected by itself: each implementation's test module subclasses
:class:`StoreContract` and provides a ``store`` fixture, e.g.::

    class TestMemoryStore(StoreContract):
        @pytest.fixture
        def store(self):
            ...

Every test works relative to ``store.revision()`` and under its own key
prefix, so the same tests run against a fresh MemoryStore and against a real
etcd shared by the whole session (whose revision is wherever earlier tests
left it).
"""
from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest

from agent.store.base import (KV, Absent, Compacted, Delete, Event, ModRevisionIs, Put,
                              WatchBatch)

#: Upper bound for any asynchronous watch delivery (polled, not slept).
WAIT = 5.0


class Collector:
    """A watch callback that records what it gets and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[WatchBatch | Exception] = []
        self._cond = threading.Condition()

    def __call__(self, item) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    @property
    def batches(self) -> list[WatchBatch]:
        with self._cond:
            return [i for i in self.items if isinstance(i, WatchBatch)]

    @property
    def errors(self) -> list[Exception]:
        with self._cond:
            return [i for i in self.items if isinstance(i, Exception)]

    @property
    def events(self) -> list[Event]:
        return [e for b in self.batches for e in b.events]

    def wait(self, pred, timeout: float = WAIT) -> None:
        """Block until ``pred(self)`` holds; fail the test (with what arrived) on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                items = list(self.items)
                if pred(items):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"watch delivery timed out; got {items!r}")
                self._cond.wait(left)

    def wait_events(self, n: int, timeout: float = WAIT) -> list[Event]:
        self.wait(lambda items: sum(len(i.events) for i in items
                                    if isinstance(i, WatchBatch)) >= n, timeout)
        return self.events

    def wait_error(self, timeout: float = WAIT) -> Exception:
        self.wait(lambda items: any(isinstance(i, Exception) for i in items), timeout)
        return self.errors[0]


def triples(events) -> list[tuple[str, bytes | None, int]]:
    return [(e.key, e.value, e.revision) for e in events]


class StoreContract:
    """Tests every Store implementation must pass. Subclasses provide ``store``."""

    @pytest.fixture
    def p(self) -> str:
        """A key prefix private to the test (etcd is shared by the session)."""
        return f"/contiv/contract/{uuid.uuid4().hex[:8]}/"

    # ------------------------------------------------------------ revisions
    def test_put_bumps_revision_by_one_and_sets_mod_and_create_revision(self, store, p):
        r0 = store.revision()
        r1 = store.put(p + "k", b"v1")
        assert r1 == r0 + 1
        assert store.revision() == r1
        assert store.get(p + "k") == KV(p + "k", b"v1", r1, r1)
        r2 = store.put(p + "k", b"v2")
        assert r2 == r1 + 1
        # an update moves mod_revision, never create_revision
        assert store.get(p + "k") == KV(p + "k", b"v2", r2, r1)

    def test_recreated_key_gets_new_create_revision(self, store, p):
        store.put(p + "k", b"1")
        store.delete(p + "k")
        r = store.put(p + "k", b"2")
        kv = store.get(p + "k")
        assert (kv.mod_revision, kv.create_revision) == (r, r)

    def test_get_missing_key_is_none(self, store, p):
        assert store.get(p + "nothing") is None

    def test_values_are_bytes_round_tripped_exactly(self, store, p):
        raw = bytes(range(256))
        store.put(p + "bin", raw)
        assert store.get(p + "bin").value == raw

    def test_txn_with_many_operations_is_one_revision(self, store, p):
        store.put(p + "old", b"x")
        r0 = store.revision()
        ok, r = store.txn([], [Put(p + "a", b"1"), Put(p + "b", b"2"), Delete(p + "old")])
        assert ok and r == r0 + 1 == store.revision()
        assert store.get(p + "a").mod_revision == store.get(p + "b").mod_revision == r
        assert store.get(p + "old") is None

    @pytest.mark.parametrize("case", [
        "failed compare without failure ops",
        "successful compare without ops",
        "delete of a missing key",
        "txn deleting only missing keys",
    ])
    def test_operations_that_write_nothing_keep_the_revision(self, store, p, case):
        store.put(p + "present", b"x")
        r0 = store.revision()
        if case == "failed compare without failure ops":
            assert store.txn([Absent(p + "present")], [Put(p + "k", b"1")]) == (False, r0)
        elif case == "successful compare without ops":
            assert store.txn([Absent(p + "missing")], []) == (True, r0)
        elif case == "delete of a missing key":
            assert store.delete(p + "missing") is False
        else:
            assert store.txn([], [Delete(p + "missing"), Delete(p + "missing2")]) == (True, r0)
        assert store.revision() == r0
        assert store.get(p + "k") is None

    # ------------------------------------------------------------ delete
    def test_delete_returns_whether_the_key_existed(self, store, p):
        r0 = store.put(p + "k", b"1")
        assert store.delete(p + "k") is True
        assert store.revision() == r0 + 1
        assert store.get(p + "k") is None
        assert store.delete(p + "k") is False
        assert store.revision() == r0 + 1

    def test_concurrent_deletes_of_a_key_report_it_existed_exactly_once(self, store, p):
        keys = [p + str(i) for i in range(100)]
        store.txn([], [Put(k, b"x") for k in keys[:50]])
        store.txn([], [Put(k, b"x") for k in keys[50:]])
        wins: list[str] = []
        barrier = threading.Barrier(6)

        def worker():
            barrier.wait()
            wins.extend(k for k in keys if store.delete(k))

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often: expose check-then-act races
        try:
            ts = [threading.Thread(target=worker) for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        finally:
            sys.setswitchinterval(old)
        assert sorted(wins) == sorted(keys)
        assert store.list(p) == ([], store.revision())

    # ------------------------------------------------------------ list
    @pytest.mark.parametrize("prefix,expected", [
        ("a/", ["a/", "a/1", "a/2", "a/x/y", "a/z"]),
        ("ab/", ["ab/1"]),
        ("a", ["a", "a/", "a/1", "a/2", "a/x/y", "a/z", "ab/1"]),
        ("a/x", ["a/x/y"]),
        ("b/", []),
    ])
    def test_list_is_sorted_by_key_and_isolated_by_prefix(self, store, p, prefix, expected):
        # inserted out of order, with neighbours that share a string prefix
        for k in ["a/z", "ab/1", "a/2", "a", "a/x/y", "a/1", "a/", "b"]:
            store.put(p + k, k.encode())
        kvs, rev = store.list(p + prefix)
        assert [kv.key for kv in kvs] == [p + k for k in expected]
        assert [kv.value for kv in kvs] == [k.encode() for k in expected]
        assert rev == store.revision()
        assert all(kv.mod_revision <= rev for kv in kvs)

    def test_list_revision_is_the_snapshot_revision_even_when_empty(self, store, p):
        r = store.put(p + "elsewhere", b"")
        assert store.list(p + "empty/") == ([], r)

    # ------------------------------------------------------------ txn
    # (key state before, compare, which branch must run)
    TXN_CASES = [
        ("absent", "Absent", True),
        ("present", "Absent", False),
        ("present", "ModRevisionIs(current)", True),
        ("present", "ModRevisionIs(stale)", False),
        ("present", "ModRevisionIs(0)", False),
        ("absent", "ModRevisionIs(0)", True),
        ("absent", "ModRevisionIs(stale)", False),
        ("deleted", "ModRevisionIs(0)", True),
        ("deleted", "ModRevisionIs(stale)", False),
        ("deleted", "Absent", True),
    ]

    @pytest.mark.parametrize("before,compare,succeeds", TXN_CASES)
    def test_txn_compare_picks_the_branch(self, store, p, before, compare, succeeds):
        k = p + "k"
        stale = store.put(p + "other", b"x")  # a real revision k never had
        if before in ("present", "deleted"):
            store.put(k, b"old")
            stale = store.put(k, b"cur") - 1  # k's previous mod_revision
            if before == "deleted":
                store.delete(k)
        cur = store.get(k)
        cmp = {"Absent": Absent(k),
               "ModRevisionIs(current)": ModRevisionIs(k, cur.mod_revision if cur else 0),
               "ModRevisionIs(stale)": ModRevisionIs(k, stale),
               "ModRevisionIs(0)": ModRevisionIs(k, 0)}[compare]
        r0 = store.revision()
        ok, rev = store.txn([cmp], [Put(p + "success", b"s")], [Put(p + "failure", b"f")])
        assert ok is succeeds
        assert rev == r0 + 1 == store.revision()
        assert (store.get(p + "success") is not None) is succeeds
        assert (store.get(p + "failure") is not None) is (not succeeds)
        assert store.get(k) == cur  # compares never write

    @pytest.mark.parametrize("holds", [(True, True), (True, False), (False, True), (False, False)])
    def test_txn_is_all_or_nothing(self, store, p, holds):
        """Every compare must hold; then every success op applies, else none of them."""
        store.put(p + "x", b"1")
        store.put(p + "gone", b"1")
        cmps = [Absent(p + "new") if holds[0] else Absent(p + "x"),
                ModRevisionIs(p + "x", store.get(p + "x").mod_revision if holds[1] else 1)]
        ok, rev = store.txn(cmps, [Put(p + "new", b"n"), Put(p + "x", b"2"), Delete(p + "gone")],
                            [Put(p + "lost", b"l")])
        assert ok is all(holds)
        kvs, _ = store.list(p)
        state = {kv.key[len(p):]: kv.value for kv in kvs}
        if ok:
            assert state == {"new": b"n", "x": b"2"}
            assert {kv.mod_revision for kv in kvs} == {rev}
        else:
            assert state == {"x": b"1", "gone": b"1", "lost": b"l"}

    def test_compare_and_swap_counter_loses_no_update_under_contention(self, store, p):
        """Four threads increment one counter with CAS; every increment survives."""
        k = p + "counter"
        store.put(k, b"0")
        threads, per_thread = 4, 10

        def worker():
            for _ in range(per_thread):
                while True:
                    kv = store.get(k)
                    ok, _ = store.txn([ModRevisionIs(k, kv.mod_revision)],
                                      [Put(k, str(int(kv.value) + 1).encode())])
                    if ok:
                        break

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert not any(t.is_alive() for t in ts)
        assert int(store.get(k).value) == threads * per_thread

    # ------------------------------------------------------------ watch
    def test_watch_delivers_backlog_then_live_events_in_order(self, store, p):
        w = p + "w/"
        start = store.put(w + "a", b"1")
        r2 = store.put(w + "b", b"2")
        store.put(p + "wx/outside", b"no")  # shares the string prefix "w", not "w/"
        assert store.delete(w + "a")
        r3 = store.revision()
        got = Collector()
        h = store.watch(w, start, got)
        try:
            backlog = got.wait_events(3)
            assert triples(backlog) == [(w + "a", b"1", start), (w + "b", b"2", r2),
                                        (w + "a", None, r3)]
            r4 = store.put(w + "c", b"3")
            store.put(p + "wx/outside", b"still no")
            _, r5 = store.txn([], [Put(w + "d", b"4"), Delete(w + "b")])
            events = got.wait_events(6)
            assert triples(events[3:]) == [(w + "c", b"3", r4), (w + "d", b"4", r5),
                                           (w + "b", None, r5)]
            assert [e.deleted for e in events] == [False, False, True, False, False, True]
            revs = [e.revision for e in events]
            assert revs == sorted(revs)
            # a batch's revision covers its events
            assert all(b.revision >= max((e.revision for e in b.events), default=0)
                       for b in got.batches)
            assert got.errors == []
        finally:
            h.cancel()

    def test_watch_from_a_later_revision_skips_older_changes(self, store, p):
        store.put(p + "k", b"old")
        r = store.put(p + "k", b"new")
        got = Collector()
        h = store.watch(p, r, got)
        try:
            assert triples(got.wait_events(1)) == [(p + "k", b"new", r)]
        finally:
            h.cancel()

    def test_watch_from_revision_zero_sees_only_new_changes(self, store, p):
        store.put(p + "before", b"x")
        got = Collector()
        h = store.watch(p, 0, got)
        try:
            r = store.put(p + "after", b"y")
            assert triples(got.wait_events(1)) == [(p + "after", b"y", r)]
        finally:
            h.cancel()

    def test_watch_from_a_compacted_revision_reports_compacted(self, store, p):
        first = store.put(p + "k", b"1")
        store.put(p + "k", b"2")
        mid = store.put(p + "k", b"3")
        store.compact(mid)
        got = Collector()
        try:
            h = store.watch(p, first, got)
        except Compacted as e:  # raising at once is allowed too
            err = e
        else:
            err = got.wait_error()
            h.cancel()
        assert isinstance(err, Compacted)
        assert err.compact_revision == mid
        # the watch is dead: nothing after the error
        store.put(p + "k", b"4")
        assert got.batches == []
        # resuming from the oldest available revision works
        got2 = Collector()
        h2 = store.watch(p, err.compact_revision, got2)
        try:
            assert triples(got2.wait_events(2)) == [(p + "k", b"3", mid),
                                                   (p + "k", b"4", mid + 1)]
        finally:
            h2.cancel()

    def test_list_and_get_survive_compaction(self, store, p):
        store.put(p + "a", b"1")
        r = store.put(p + "b", b"2")
        store.compact(r)
        kvs, _ = store.list(p)
        assert [(kv.key, kv.value) for kv in kvs] == [(p + "a", b"1"), (p + "b", b"2")]

    def test_cancel_stops_delivery(self, store, p):
        got, witness = Collector(), Collector()
        h = store.watch(p + "c/", 0, got)
        hw = store.watch(p, 0, witness)
        try:
            store.put(p + "c/1", b"1")
            got.wait_events(1)
            h.cancel()
            h.cancel()  # cancelling twice is harmless
            store.put(p + "c/2", b"2")
            r = store.put(p + "done", b"")
            # once the witness saw the last write, a live watch would have seen c/2
            witness.wait(lambda items: any(e.revision == r for i in items
                                           if isinstance(i, WatchBatch) for e in i.events))
            time.sleep(0.05)  # a margin for an (erroneous) in-flight delivery
            assert [e.key for e in got.events] == [p + "c/1"]
            assert got.errors == []
        finally:
            hw.cancel()

    def test_two_watches_on_one_prefix_both_get_every_event(self, store, p):
        a, b = Collector(), Collector()
        ha, hb = store.watch(p, 0, a), store.watch(p, 0, b)
        try:
            revs = [store.put(p + str(i), b"x") for i in range(3)]
            assert [e.revision for e in a.wait_events(3)] == revs
            assert [e.revision for e in b.wait_events(3)] == revs
        finally:
            ha.cancel()
            hb.cancel()

    # ---------------------------------------------------------------- leases
    def test_a_key_put_with_a_lease_goes_with_it(self, store, p):
        lease = store.grant_lease(30)
        ok, _ = store.txn((Absent(p + "leader"),), (Put(p + "leader", b"me", lease),))
        assert ok and store.get(p + "leader").value == b"me"
        assert 0 < store.refresh_lease(lease) <= 30
        # a second contender loses while the lease lives
        other = store.grant_lease(30)
        ok, _ = store.txn((Absent(p + "leader"),), (Put(p + "leader", b"you", other),))
        assert not ok and store.get(p + "leader").value == b"me"
        store.revoke_lease(lease)
        assert store.get(p + "leader") is None
        assert store.refresh_lease(lease) == 0  # gone: its holder must start over
        store.revoke_lease(lease)  # revoking again is harmless
        store.revoke_lease(other)

    def test_an_expired_lease_takes_its_keys_with_it(self, store, p):
        lease = store.grant_lease(2)  # etcd's shortest
        store.txn((), (Put(p + "k", b"v", lease), Put(p + "stays", b"v")))
        deadline = time.monotonic() + 10
        while store.get(p + "k") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.get(p + "k") is None and store.get(p + "stays") is not None
        assert store.refresh_lease(lease) == 0
