"""The scheduler: desired vs actual, a dependency-ordered plan, execution, retry.

State it keeps, per key:

* ``desired`` -- what the builders asked for;
* ``actual`` -- what it believes is configured (value + descriptor metadata),
  replaced wholesale by what descriptors ``retrieve`` on every resync;
* failures -- the last error per key, with the time of the next retry;
* pending -- desired values whose dependencies are not configured.

Every public entry point takes the same lock: transactions are serialised, so
descriptors never run concurrently with each other.

Planning is incremental: a change touches only the changed keys, the values
that (transitively) depend on them and pending values they unblock -- never
the whole state -- so that one Service change stays cheap next to 10,000.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable, Mapping

from agent.errors import FatalError, InvalidInput, TemporaryError
from agent.reconciler.descriptor import Dependency, Descriptor, Retrieved
from agent.reconciler.history import History, OpRecord, TxnRecord
from agent.reconciler import planner
from agent.reconciler.plan import Operation, OpKind, Plan, plain
from agent.reconciler.state import TxnResult, ValueState, Actual, Failure, RetrieveCtx

log = logging.getLogger(__name__)

#: Marker for "delete this key" in a change set.
DELETE = None


class _Ctx:
    """The :class:`~agent.reconciler.descriptor.Context` handed to descriptors."""

    def __init__(self, sched: "Scheduler") -> None:
        self._s = sched

    def metadata(self, key: str) -> Any:
        a = self._s._actual.get(key)
        return a.metadata if a else None


class Scheduler:
    """See the module docstring. ``clock`` is injectable for retry tests."""

    def __init__(self, descriptors: Iterable[Descriptor] = (), *, history_size: int = 256,
                 clock=time.monotonic, backoff_base: float = 0.1, backoff_max: float = 30.0):
        self._descs: dict[str, Descriptor] = {}
        self._desired: dict[str, Any] = {}
        self._actual: dict[str, Actual] = {}
        self._failures: dict[str, Failure] = {}
        self._invalid: dict[str, str] = {}
        self._pending: dict[str, str] = {}
        # reverse dependency indexes: dependency key -> keys that name it
        self._rdeps_actual: dict[str, set[str]] = {}
        self._rdeps_desired: dict[str, set[str]] = {}
        self._deps_cache: dict[str, tuple[Any, tuple[Dependency, ...]]] = {}
        self._lock = threading.RLock()
        self._seq = 0
        self.history = History(history_size)
        self._clock = clock
        self._backoff = (backoff_base, backoff_max)
        #: the first FatalError a descriptor raised: nothing more is retried
        #: after it, and the agent stops (DESIGN.md rule 6)
        self.fatal: FatalError | None = None
        self._ctx = _Ctx(self)
        for d in descriptors:
            self.register(d)

    # ------------------------------------------------------------------ registry
    def register(self, desc: Descriptor) -> None:
        p = desc.key_prefix
        if not p.endswith("/") or p.count("/") != 2:
            raise ValueError(f"descriptor {desc.name}: key_prefix must look like 'plane/type/'")
        if p in self._descs:
            raise ValueError(f"two descriptors for {p}")
        self._descs[p] = desc

    def descriptor_for(self, key: str) -> Descriptor:
        i = key.find("/", key.find("/") + 1)
        d = self._descs.get(key[:i + 1]) if i > 0 else None
        if d is None:
            raise InvalidInput(f"no descriptor owns key {key!r}")
        return d

    @property
    def descriptors(self) -> list[Descriptor]:
        return list(self._descs.values())

    # ------------------------------------------------------------------ public API
    def apply(self, changes: Mapping[str, Any], *, description: str = "") -> TxnResult:
        """Set (value) or remove (None) desired values and reconcile the affected keys."""
        with self._lock:
            affected = self._set_desired(changes)
            return self._run("change", description, affected, None)

    def replace(self, desired: Mapping[str, Any], *, prefixes: Iterable[str] | None = None,
                description: str = "") -> TxnResult:
        """Make ``desired`` the whole desired state (or the part under ``prefixes``)."""
        with self._lock:
            changes = self._replacement(desired, prefixes)
            affected = self._set_desired(changes)
            return self._run("change", description, affected, None)

    def resync(self, desired: Mapping[str, Any] | None = None, *,
               description: str = "resync") -> TxnResult:
        """Retrieve the real data-plane state and reconcile everything against it."""
        with self._lock:
            if desired is not None:
                self._set_desired(self._replacement(desired, None))
            actual = self._retrieve()
            return self._run("resync", description, None, actual)

    def hold(self, desired: Mapping[str, Any], why: str, *, description: str = "resync") -> TxnResult:
        """Make ``desired`` the whole desired state without touching the data
        plane (it cannot be read: ``why``). What is not known to be in place
        is pending with that reason; the next resync does the work."""
        with self._lock:
            self._set_desired(self._replacement(desired, None))
            for k in self._desired:
                if k not in self._actual:
                    self._pending[k] = f"waiting for the data plane: {why}"
            self._seq += 1
            rec = TxnRecord(self._seq, "resync", f"{description} (held: {why})", time.time())
            rec.pending = {k: self._pending[k] for k in self._desired if k in self._pending}
            self.history.add(rec)
            return TxnResult(rec, Plan(pending=dict(rec.pending)), {})

    def dry_run(self, *, resync: bool = True, keys: Iterable[str] | None = None) -> Plan:
        """The plan a resync (or, with ``resync=False``, a retry of everything) would run.

        ``keys``: only those values -- retrieved from their own descriptors,
        correlated with their own desired values -- so that checking one pod
        costs what the pod renders to, not a retrieve of the whole data plane."""
        with self._lock:
            scope = None if keys is None else set(keys)
            actual = self._retrieve(scope) if resync else dict(self._actual)
            if scope is None:
                return self._plan(set(self._desired) | set(actual), actual)
            # what the scope's values need outside it (the node's values) is
            # taken as we believe it; only the scope is read for real
            seen = actual
            actual = {k: a for k, a in self._actual.items() if k not in scope}
            actual.update(seen)
            return self._plan(scope, actual)

    def retry_due(self) -> TxnResult | None:
        """Retry every failed value whose backoff has expired; None if none is due."""
        with self._lock:
            now = self._clock()
            due = {k for k, f in self._failures.items() if f.temporary and f.next_retry <= now}
            if not due:
                return None
            return self._run("retry", "retry after backoff", due, None)

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest scheduled retry (None: nothing to retry)."""
        with self._lock:
            times = [f.next_retry for f in self._failures.values() if f.temporary]
            return max(0.0, min(times) - self._clock()) if times else None

    def desired(self, prefix: str = "") -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in self._desired.items() if k.startswith(prefix)}

    def actual(self, prefix: str = "") -> dict[str, Any]:
        with self._lock:
            return {k: a.value for k, a in self._actual.items() if k.startswith(prefix)}

    def metadata(self, key: str) -> Any:
        with self._lock:
            a = self._actual.get(key)
            return a.metadata if a else None

    def state(self, prefix: str = "") -> list[dict]:
        """Every known key with its state, value, dependencies and last error."""
        with self._lock:
            keys = sorted(k for k in set(self._desired) | set(self._actual) if k.startswith(prefix))
            return [self._key_state(k) for k in keys]

    def states_of(self, keys: Iterable[str]) -> dict[str, str]:
        """The state of each of ``keys`` that is desired or present, in O(len(keys))."""
        with self._lock:
            return {k: self._key_state_enum(k).value for k in keys
                    if k in self._desired or k in self._actual}

    def failed_count(self) -> int:
        """How many values are in state ``failed`` (``counts()["failed"]``), in
        O(failures) rather than O(values): the agent reports it after every change."""
        with self._lock:
            return sum(1 for k in self._failures if self._key_state_enum(k) is ValueState.FAILED)

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {s.value: 0 for s in ValueState}
            for k in set(self._desired) | set(self._actual):
                out[self._key_state_enum(k).value] += 1
            return out

    # ------------------------------------------------------------------ internals
    def _replacement(self, desired: Mapping[str, Any], prefixes: Iterable[str] | None) -> dict:
        pfx = tuple(prefixes) if prefixes is not None else None
        changes: dict[str, Any] = dict(desired)
        for k in self._desired:
            if k not in desired and (pfx is None or k.startswith(pfx)):
                changes[k] = DELETE
        return changes

    def _set_desired(self, changes: Mapping[str, Any]) -> set[str]:
        for k in changes:
            self.descriptor_for(k)  # reject unknown keys before changing anything
        affected = set()
        for k, v in changes.items():
            old = self._desired.get(k, DELETE)
            if v is DELETE:
                if old is DELETE and k not in self._actual:
                    continue
                self._desired.pop(k, None)
                self._index_desired(k, old, None)
                self._invalid.pop(k, None)
                self._pending.pop(k, None)
            else:
                if old is not DELETE and old == v and k in self._actual and k not in self._failures:
                    continue
                self._desired[k] = v
                self._index_desired(k, old, v)
            affected.add(k)
        return affected

    def _deps(self, key: str, value: Any) -> tuple[Dependency, ...]:
        cached = self._deps_cache.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        deps = tuple(self.descriptor_for(key).dependencies(key, value))
        self._deps_cache[key] = (value, deps)
        return deps

    def _index_desired(self, key: str, old: Any, new: Any) -> None:
        if old is not DELETE:
            for d in self._deps(key, old):
                s = self._rdeps_desired.get(d.key)
                if s:
                    s.discard(key)
                    if not s:
                        del self._rdeps_desired[d.key]
        if new is not DELETE:
            for d in self._deps(key, new):
                self._rdeps_desired.setdefault(d.key, set()).add(key)
        else:
            self._deps_cache.pop(key, None)

    def _set_actual(self, key: str, value: Any, metadata: Any) -> None:
        self._drop_actual(key)
        cached = self._deps_cache.get(key)
        deps = cached[1] if cached is not None and cached[0] is value else \
            tuple(self.descriptor_for(key).dependencies(key, value))
        self._actual[key] = Actual(value, metadata, deps)
        for d in deps:
            self._rdeps_actual.setdefault(d.key, set()).add(key)

    def _drop_actual(self, key: str) -> None:
        a = self._actual.pop(key, None)
        if a is None:
            return
        for d in a.deps:
            s = self._rdeps_actual.get(d.key)
            if s:
                s.discard(key)
                if not s:
                    del self._rdeps_actual[d.key]

    def _retrieve(self, scope: set[str] | None = None) -> dict[str, Actual]:
        """Ask every descriptor (in registration order) what really exists;
        with ``scope``, only the descriptors of those keys, about those keys.

        Descriptors see the metadata retrieved so far (not our possibly stale
        belief): a pod route's retrieve needs the pod veth's retrieved index.
        """
        out: dict[str, Actual] = {}
        ctx = RetrieveCtx(out)
        # desired values by descriptor in one pass (every prefix is "plane/type/")
        by_prefix: dict[str, dict[str, Any]] = {p: {} for p in self._descs}
        items = self._desired.items() if scope is None else \
            ((k, self._desired[k]) for k in scope if k in self._desired)
        for k, v in items:
            i = k.find("/", k.find("/") + 1)
            group = by_prefix.get(k[:i + 1]) if i > 0 else None
            if group is not None:
                group[k] = v
        for prefix, desc in self._descs.items():
            correlate = by_prefix[prefix]
            if scope is not None and not correlate:
                continue
            for r in desc.retrieve(correlate, ctx):
                if not isinstance(r, Retrieved) or not r.key.startswith(prefix):
                    raise TypeError(f"{desc.name}.retrieve returned {r!r}")
                out[r.key] = Actual(r.value, r.metadata, tuple(desc.dependencies(r.key, r.value)))
        return out

    # ------------------------------------------------------------------ planning
    def _plan(self, keys: set[str] | None, actual: Mapping[str, Actual]) -> Plan:
        return planner.plan(self, keys, actual)

    # ------------------------------------------------------------------ execution
    def _run(self, kind: str, description: str, keys: set[str] | None,
             retrieved: dict[str, Actual] | None) -> TxnResult:
        t0 = time.perf_counter()
        self._seq += 1
        rec = TxnRecord(self._seq, kind, description, time.time())
        if retrieved is not None:
            # Resync: plan against what the data plane really holds (so the
            # plan can say "drift"), then adopt that view as ours.
            plan = self._plan(None, retrieved)
            for k in list(self._actual):
                if k not in retrieved:
                    self._drop_actual(k)
            for k, a in retrieved.items():
                # In place and equivalent: keep the desired object as the actual
                # one -- the retrieved copy would double the memory of a warm
                # restart and miss the dependency cache (keyed by identity).
                value = self._desired[k] if k in plan.unchanged else a.value
                self._set_actual(k, value, a.metadata)
        else:
            plan = self._plan(keys, self._actual)
        errors = self._execute(plan, rec)
        # bookkeeping of invalid and pending values
        for k, why in plan.invalid.items():
            self._invalid[k] = why
            self._failures.pop(k, None)
        for k in (keys if keys is not None else set(self._desired)):
            if k not in plan.invalid:
                self._invalid.pop(k, None)
        for k, why in plan.pending.items():
            self._pending[k] = why
        for k in list(self._pending):
            if k in self._actual or k not in self._desired:
                self._pending.pop(k, None)
        # A failure of something neither desired nor present is moot (a failed
        # create that was then withdrawn); left in place it would be "due" for
        # ever and keep the agent's loop spinning.
        for k in [k for k in self._failures if k not in self._desired and k not in self._actual]:
            del self._failures[k]
        rec.pending = dict(plan.pending)
        rec.invalid = dict(plan.invalid)
        rec.duration_ms = (time.perf_counter() - t0) * 1000
        if plan.operations or kind == "resync":
            self.history.add(rec)
        return TxnResult(rec, plan, errors)

    def _execute(self, plan: Plan, rec: TxnRecord) -> dict[str, str]:
        errors: dict[str, str] = {}
        ops = plan.operations
        i = 0
        descs = [self.descriptor_for(o.key) for o in ops]
        while i < len(ops):
            desc = descs[i]
            group = desc.batch_group
            j = i + 1
            if group is not None:
                while j < len(ops) and descs[j].batch_group is group:
                    j += 1
            batch = ops[i:j]
            batch_descs = dict(zip((o.key for o in batch), descs[i:j]))
            i = j
            runnable = []
            ahead: set[str] = set()  # created earlier in this same batch
            for o in batch:
                if o.kind is not OpKind.DELETE:
                    missing = self._missing_dep(o.key, o.value, ahead)
                    if missing is None:
                        ahead.add(o.key)
                    else:
                        plan.pending[o.key] = f"waiting for {missing.key} ({missing.label}): it failed"
                        rec.operations.append(OpRecord(o.kind.value, o.key, o.reason, False,
                                                       "skipped: dependency not configured"))
                        continue
                runnable.append(o)
            if not runnable:
                continue
            t = time.perf_counter()
            if group is not None:
                try:
                    results = group.apply(runnable, [batch_descs[o.key] for o in runnable], self._ctx)
                except Exception as e:  # noqa: BLE001 -- a batch fails as a whole
                    results = [e] * len(runnable)
            else:
                results = [self._call(desc, o) for o in runnable]
            per_op_ms = (time.perf_counter() - t) * 1000 / len(runnable)
            for o, res in zip(runnable, results):
                err = self._settle(o, res)
                if err:
                    errors[o.key] = err
                rec.operations.append(OpRecord(o.kind.value, o.key, o.reason, not err, err, per_op_ms))
        return errors

    def _missing_dep(self, key: str, value: Any, ahead: set[str] = frozenset()) -> Dependency | None:
        for d in self._deps(key, value):
            if d.key not in self._actual and d.key not in ahead:
                return d
        return None

    def _call(self, desc: Descriptor, op: Operation) -> Any:
        try:
            if op.kind is OpKind.CREATE:
                return desc.create(op.key, op.value, self._ctx)
            if op.kind is OpKind.UPDATE:
                return desc.update(op.key, op.old, op.value, self._actual[op.key].metadata, self._ctx)
            a = self._actual.get(op.key)
            desc.delete(op.key, op.value, a.metadata if a else None, self._ctx)
            return None
        except Exception as e:  # noqa: BLE001 -- classified in _settle
            return e

    def _settle(self, op: Operation, res: Any) -> str:
        """Record the outcome of one operation; returns the error text or ''."""
        k = op.key
        if isinstance(res, Exception):
            temporary = not isinstance(res, (InvalidInput, FatalError))
            if isinstance(res, FatalError) and self.fatal is None:
                self.fatal = res
            if not isinstance(res, (TemporaryError, InvalidInput, FatalError)):
                log.warning("%s %s: unexpected %s", op.kind.value, k, type(res).__name__,
                            exc_info=res)
            msg = getattr(res, "message", None) or str(res) or type(res).__name__
            prev = self._failures.get(k)
            attempts = prev.attempts + 1 if prev else 1
            base, cap = self._backoff
            self._failures[k] = Failure(op.kind, msg, temporary, attempts,
                                        self._clock() + min(cap, base * 2 ** (attempts - 1)))
            if op.kind is OpKind.CREATE:
                self._drop_actual(k)
            return msg
        self._failures.pop(k, None)
        if op.kind is OpKind.DELETE:
            self._drop_actual(k)
        else:
            self._set_actual(k, op.value, res)
            self._pending.pop(k, None)
        return ""

    # ------------------------------------------------------------------ reporting
    def _key_state_enum(self, k: str) -> ValueState:
        if k in self._invalid:
            return ValueState.INVALID
        if k in self._failures:
            return ValueState.FAILED if k in self._desired else ValueState.OBSOLETE
        if k in self._desired:
            return ValueState.CONFIGURED if k in self._actual else ValueState.PENDING
        return ValueState.OBSOLETE

    def _key_state(self, k: str) -> dict:
        st = self._key_state_enum(k)
        value = self._desired.get(k, self._actual[k].value if k in self._actual else None)
        out = {"key": k, "state": st.value, "descriptor": self.descriptor_for(k).name,
               "value": plain(value)}
        deps = self._deps(k, value) if k in self._desired else (
            self._actual[k].deps if k in self._actual else ())
        if deps:
            out["dependencies"] = [{"label": d.label, "key": d.key} for d in deps]
        if k in self._failures:
            f = self._failures[k]
            out["error"] = f.error
            out["attempts"] = f.attempts
        elif k in self._invalid:
            out["error"] = self._invalid[k]
        elif k in self._pending:
            out["reason"] = self._pending[k]
        return out
