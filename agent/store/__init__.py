"""Key-value stores: etcd (production, lab, integration tests) and memory (unit tests).

Both implement :class:`agent.store.base.Store`; code above this layer never
imports ``etcd3`` directly.
"""
from agent.store.base import (Absent, Compacted, Delete, Event, KV, ModRevisionIs, Put,
                              Store, WatchBatch, merge_queued)

__all__ = ["Absent", "Compacted", "Delete", "Event", "KV", "ModRevisionIs", "Put", "Store",
           "WatchBatch", "merge_queued", "open_store"]


def open_store(endpoint: str, *, timeout: float = 5.0) -> Store:
    """Open a store from an endpoint string.

    ``memory://`` gives a fresh in-memory store; ``http://host:port`` and
    ``unix:///path`` an etcd client (imported lazily: ``grpc`` costs ~150 ms).
    """
    if endpoint.startswith("memory://"):
        from agent.store.memory import MemoryStore
        return MemoryStore()
    from agent.store.etcd import EtcdStore
    return EtcdStore(endpoint, timeout=timeout)
