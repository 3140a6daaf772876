"""The Store contract against the in-memory store (tests/store_contract.py)."""
from __future__ import annotations

import pytest

from agent.store import open_store
from agent.store.memory import MemoryStore
from tests.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self):
        s = MemoryStore()
        yield s
        s.close()


def test_memory_store_starts_at_revision_one_like_etcd():
    assert MemoryStore().revision() == 1


def test_open_store_memory_scheme_gives_a_fresh_store_each_time():
    a, b = open_store("memory://"), open_store("memory://")
    assert isinstance(a, MemoryStore) and a is not b
    a.put("/k", b"v")
    assert b.get("/k") is None


def test_queued_watch_batches_merge_into_one_up_to_the_first_other_item():
    import queue  # noqa: PLC0415
    from agent.store import Compacted, Event, WatchBatch, merge_queued  # noqa: PLC0415
    q = queue.Queue()
    ev = [Event(f"/k{i}", b"v", i + 1) for i in range(4)]
    for e in ev[1:3]:
        q.put(WatchBatch((e,), e.revision))
    q.put(WatchBatch((), 9))  # a progress notification: no events, a later revision
    stop = Compacted(1)
    q.put(stop)
    q.put(WatchBatch((ev[3],), 4))
    merged, other = merge_queued(q, WatchBatch((ev[0],), 1))
    assert merged == WatchBatch(tuple(ev[:3]), 9) and other is stop
    assert q.get_nowait() == WatchBatch((ev[3],), 4), "what follows the other item stays queued"
    merged, other = merge_queued(q, WatchBatch((ev[0],), 1), limit=1)
    assert merged == WatchBatch((ev[0],), 1) and other is None
