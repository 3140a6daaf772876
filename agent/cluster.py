"""The agent's in-memory view of the cluster, fed by the etcd watch.

Kubernetes objects are kept as the JSON dicts the reflector wrote; the node
registry as :class:`NodeInfo`. :meth:`ClusterSnapshot.apply` returns what
changed so the agent rebuilds only the partitions that depend on it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import orjson  # a C JSON decoder: the start-up listing of a large cluster is mostly JSON

from agent.errors import InvalidInput
from agent.model import keys
from agent.model.records import NodeInfo
from agent.store.base import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """``kind`` is a k8s kind segment (``pod``...) or ``registry`` for node records."""

    kind: str
    namespace: str
    name: str
    deleted: bool


class ClusterSnapshot:
    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in keys.KINDS}
        self.nodes: dict[str, NodeInfo] = {}
        self.revision = 0
        self.lock = threading.RLock()
        self.bad: dict[str, str] = {}  # key -> why it was ignored (reported once)

    def reset(self) -> None:
        with self.lock:
            for d in self.objects.values():
                d.clear()
            self.nodes.clear()

    def apply(self, ev: Event) -> Change | None:
        """Fold one event in; None if the key is not one we track or is malformed."""
        with self.lock:
            if ev.key.startswith(keys.NODES):
                name = ev.key[len(keys.NODES):]
                if ev.deleted:
                    self.nodes.pop(name, None)
                    return Change("registry", "", name, True)
                try:
                    self.nodes[name] = NodeInfo.from_json(ev.value)
                except InvalidInput as e:
                    self._bad(ev.key, e.message)
                    return None
                return Change("registry", "", name, False)
            ref = keys.parse_k8s_key(ev.key)
            if ref is None:
                return None
            bucket = self.objects[ref.kind]
            if ev.deleted:
                bucket.pop((ref.namespace, ref.name), None)
                return Change(ref.kind, ref.namespace, ref.name, True)
            try:
                obj = orjson.loads(ev.value)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:  # orjson.JSONDecodeError is one
                self._bad(ev.key, f"not a JSON object: {e}")
                return None
            bucket[(ref.namespace, ref.name)] = obj
            return Change(ref.kind, ref.namespace, ref.name, False)

    def _bad(self, key: str, why: str) -> None:
        if self.bad.get(key) != why:
            log.warning("ignoring %s: %s", key, why)
        self.bad[key] = why

    def counts(self) -> dict[str, int]:
        with self.lock:
            out = {k: len(v) for k, v in self.objects.items()}
            out["registry"] = len(self.nodes)
            return out
