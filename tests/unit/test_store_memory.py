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
