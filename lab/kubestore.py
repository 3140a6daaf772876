"""The object store behind the lab's Kubernetes API server (:mod:`lab.kubeapi`).

It keeps what a real API server keeps in etcd and its watch cache, for the
six kinds the project reads (:data:`RESOURCES`), with the semantics clients
depend on:

* One global resourceVersion counter: every change (create, update, delete)
  takes the next one; a list carries the counter it was served at. On the
  wire resourceVersions are strings; here they are ints.
* A bounded event history per resource (``history`` events each). It serves
  watches that start from a resourceVersion and lists at an exact one (the
  state at an older version is rebuilt by undoing newer events). Anything
  older than the history is *Expired* (HTTP 410), as after an etcd
  compaction; :meth:`KubeStore.compact` forgets the history on purpose.
* Watches (:class:`Watch`) get their own queue once started, so a later
  compaction does not break them; :meth:`KubeStore.cut_watches` breaks them
  all, as a dropped connection would (:class:`WatchCut`).
* Errors are :class:`KubeError` subclasses that render as the API's
  ``Status`` objects and also are the project's typed errors
  (:mod:`agent.errors`), so in-process callers can handle them as usual.

Patches: JSON merge patch (RFC 7386) and JSON patch (RFC 6902) are
implemented; a strategic merge patch is applied as a JSON merge patch (lists
are replaced, not merged by key; ``$patch``-style directives are dropped).
Not implemented: validation and defaulting beyond what a watcher relies on
(pass an ``admit`` hook for that), graceful deletion, finalizers, owner
references and garbage collection (deleting a Namespace deletes its objects
at once), dryRun, server-side apply.
"""
from __future__ import annotations

import base64
import copy
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import Callable

from lab.kubeobj import (AlreadyExists, BUILTIN_NAMESPACES, BadRequest, Expired, Invalid, KubeError,
                          NotFoundError, RESOURCES, Resource, TooLargeResourceVersion,
                          _STATUS_ON_CREATE, _conflict, _details, _parse_rv, field_matcher, json_patch,
                          label_matcher, merge_patch, not_found, resource)
from agent.errors import InvalidInput
from lab.kubewatch import Subscription, Watch, _Event

log = logging.getLogger(__name__)


# -- the store ------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _namespace_label(ns: dict) -> None:
    # the real API server labels every Namespace with its name (so that
    # NetworkPolicy namespaceSelectors can pick one by name)
    md = ns["metadata"]
    md["labels"] = {**(md.get("labels") or {}), "kubernetes.io/metadata.name": md["name"]}


def _key(obj: dict) -> tuple[str, str]:
    md = obj["metadata"]
    return md.get("namespace") or "", md["name"]


class KubeStore:
    """Objects, resourceVersions, event history and watches; thread-safe.

    ``history``: events kept per resource. ``bookmark_interval``: seconds
    between BOOKMARK events of watches that asked for them. ``admit(verb,
    new, old)``: an optional admission hook called (under the store lock) on
    create and update with the object about to be stored; it returns the
    object to store (possibly changed) and raises InvalidInput to reject it
    (answered as 422 Invalid).
    """

    def __init__(self, *, history: int = 1000, bookmark_interval: float = 60.0,
                 admit: Callable[[str, dict, dict | None], dict] | None = None,
                 builtin_namespaces: bool = True):
        self.history, self.bookmark_interval, self._admit = history, bookmark_interval, admit
        self._cond = threading.Condition(threading.RLock())
        self._rv = 0
        self._objects: dict[str, dict[tuple[str, str], dict]] = {r.plural: {} for r in RESOURCES}
        self._events: dict[str, deque[_Event]] = {r.plural: deque() for r in RESOURCES}
        # every event after floor[plural] is still in the history
        self._floor = {r.plural: 0 for r in RESOURCES}
        self._watches: set[Watch] = set()
        for ns in BUILTIN_NAMESPACES if builtin_namespaces else ():
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    @property
    def resource_version(self) -> int:
        """The current (latest) resourceVersion."""
        return self._rv

    # -- writes
    def _commit(self, res: Resource, type_: str, obj: dict, prev: dict | None) -> dict:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        objs = self._objects[res.plural]
        if type_ == "DELETED":
            objs.pop(_key(obj), None)
        else:
            objs[_key(obj)] = obj
        ev = _Event(self._rv, type_, obj, prev)
        hist = self._events[res.plural]
        hist.append(ev)
        while len(hist) > self.history:
            self._floor[res.plural] = hist.popleft().rv
        for w in self._watches:
            if w.resource is res and w._state == "open":
                w._offer(ev)
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def _resource_of(self, obj: dict) -> Resource:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise Invalid("an object needs apiVersion, kind and metadata")
        try:
            res = resource(obj.get("kind", ""))
        except NotFoundError:
            raise BadRequest(f"{obj.get('apiVersion')}/{obj.get('kind')} is not a served kind") from None
        if obj.get("apiVersion") != res.api_version:
            raise BadRequest(f"{obj.get('apiVersion')}/{obj.get('kind')} is not served "
                             f"(expected apiVersion {res.api_version})")
        return res

    def _check_namespace(self, res: Resource, md: dict) -> None:
        if res.namespaced:
            ns = md.setdefault("namespace", "default")
            if ("", ns) not in self._objects["namespaces"]:
                raise not_found(resource("namespaces"), ns)
        else:
            md.pop("namespace", None)

    def create(self, obj: dict) -> dict:
        """Store a new object (``metadata.name`` or ``generateName``); sets
        uid, creationTimestamp, generation, resourceVersion. AlreadyExists
        (409) if the name is taken; NotFound if its namespace does not exist."""
        res = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        md = obj["metadata"]
        with self._cond:
            if not md.get("name"):
                if not md.get("generateName"):
                    raise Invalid(f'{res.kind} "" is invalid: metadata.name: Required value: name '
                                  "or generateName is required",
                                  details={"kind": res.kind, "causes": [{"field": "metadata.name"}]})
                md["name"] = md["generateName"] + "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
            self._check_namespace(res, md)
            if _key(obj) in self._objects[res.plural]:
                raise AlreadyExists(f'{res.plural} "{md["name"]}" already exists',
                                    details=_details(res, md["name"]))
            for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                md.pop(k, None)
            md.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            if res.plural in _STATUS_ON_CREATE:
                obj["status"] = copy.deepcopy(_STATUS_ON_CREATE[res.plural])
            if res.plural == "namespaces":
                obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
                _namespace_label(obj)
            if self._admit:
                obj = self._admitted("create", obj, None)
            return self._commit(res, "ADDED", obj, None)

    def _admitted(self, verb: str, obj: dict, old: dict | None) -> dict:
        try:
            return self._admit(verb, obj, old)
        except KubeError:
            raise
        except InvalidInput as e:
            raise Invalid(e.message, details={"kind": obj.get("kind"),
                                              "name": obj["metadata"].get("name")}) from None

    def _current(self, res: Resource, namespace: str | None, name: str) -> dict:
        obj = self._objects[res.plural].get(((namespace or "") if res.namespaced else "", name))
        if obj is None:
            raise not_found(res, name)
        return obj

    def update(self, obj: dict, *, subresource: str | None = None) -> dict:
        """Replace an object (PUT). A set ``metadata.resourceVersion`` must be
        the current one (else Conflict 409); an empty one updates
        unconditionally. For kinds with a status subresource the main
        resource keeps the old status, and ``subresource="status"`` changes
        only the status. An update that changes nothing is not an event."""
        res = self._resource_of(obj)
        md = obj["metadata"]
        if subresource not in (None, "status") or (subresource and not res.status):
            raise not_found(res, f'{md.get("name")}/{subresource}')
        with self._cond:
            old = self._current(res, md.get("namespace", "default"), md.get("name", ""))
            rv = md.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise _conflict(res, md["name"], "the object has been modified; please apply your "
                                "changes to the latest version and try again")
            if subresource:
                new = copy.deepcopy(old)
                new["status"] = copy.deepcopy(obj.get("status"))
            else:
                new = copy.deepcopy(obj)
                for k in ("uid", "creationTimestamp", "generation", "namespace", "deletionTimestamp"):
                    if k in old["metadata"]:
                        new["metadata"][k] = old["metadata"][k]
                    else:
                        new["metadata"].pop(k, None)
                if res.plural == "namespaces":
                    _namespace_label(new)
                if res.status:
                    new.pop("status", None)
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                if self._admit:
                    new = self._admitted("update", new, copy.deepcopy(old))
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)
            return self._commit(res, "MODIFIED", new, old)

    def update_status(self, obj: dict) -> dict:
        """Replace only the status of an object (the ``status`` subresource)."""
        return self.update(obj, subresource="status")

    def patch(self, kind: str, namespace: str | None, name: str, patch, *,
              patch_type: str = "merge", subresource: str | None = None) -> dict:
        """Patch an object: ``patch_type`` is ``merge`` (RFC 7386), ``json``
        (RFC 6902) or ``strategic`` (applied as a merge patch). A
        ``metadata.resourceVersion`` in the patch is a precondition."""
        res = resource(kind)
        with self._cond:
            old = self._current(res, namespace, name)
            if patch_type == "json":
                new = json_patch(old, patch)
            elif patch_type in ("merge", "strategic"):
                if not isinstance(patch, dict):
                    raise BadRequest("a merge patch must be a JSON object")
                new = merge_patch(old, patch, strategic=patch_type == "strategic")
            else:
                raise BadRequest(f"unknown patch type {patch_type!r}")
            if not isinstance(new.get("metadata"), dict) or new["metadata"].get("name") != name \
                    or new.get("kind") != res.kind or new.get("apiVersion") != res.api_version:
                raise Invalid(f'{res.kind} "{name}" is invalid: a patch may not change kind, '
                              "apiVersion, metadata.name or metadata.namespace")
            new["metadata"]["namespace"] = old["metadata"].get("namespace")
            if res.namespaced is False:
                new["metadata"].pop("namespace", None)
            return self.update(new, subresource=subresource)

    def delete(self, kind: str, namespace: str | None, name: str, *,
               preconditions: dict | None = None) -> dict:
        """Delete an object at once; returns its last state with the
        resourceVersion of the deletion (as the DELETED event carries it).
        Deleting a Namespace first deletes every object in it."""
        res = resource(kind)
        with self._cond:
            old = self._current(res, namespace, name)
            for field in ("uid", "resourceVersion"):
                want = (preconditions or {}).get(field)
                if want and want != old["metadata"].get(field):
                    raise _conflict(res, name, f"Precondition failed: {field} in precondition: "
                                    f"{want}, {field} in object meta: {old['metadata'].get(field)}")
            if res.plural == "namespaces":
                for r in RESOURCES:
                    for key in sorted(k for k in self._objects[r.plural] if r.namespaced and k[0] == name):
                        self._commit(r, "DELETED", self._objects[r.plural][key], self._objects[r.plural][key])
            return self._commit(res, "DELETED", old, old)

    # -- reads
    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        """One object; NotFound (404) if absent."""
        res = resource(kind)
        with self._cond:
            return copy.deepcopy(self._current(res, namespace, name))

    def _snapshot(self, res: Resource, rv: int) -> dict:
        """The resource's objects as they were at ``rv``: the current ones with
        every newer event undone."""
        if rv > self._rv:
            raise TooLargeResourceVersion(f"Too large resource version: {rv}, current: {self._rv}",
                                          details={"causes": [{"reason": "ResourceVersionTooLarge",
                                                               "message": "Too large resource version"}],
                                                   "retryAfterSeconds": 1})
        if rv < self._floor[res.plural]:
            raise Expired("The resourceVersion for the provided list is too old.")
        objs = dict(self._objects[res.plural])
        for ev in reversed(self._events[res.plural]):
            if ev.rv <= rv:
                break
            if ev.type == "ADDED":
                objs.pop(_key(ev.obj), None)
            else:
                objs[_key(ev.obj)] = ev.prev
        return objs

    def _matcher(self, res: Resource, namespace, label_selector, field_selector):
        labels, fields = label_matcher(label_selector), field_matcher(res, field_selector)
        return lambda o: ((not namespace or not res.namespaced or o["metadata"].get("namespace") == namespace)
                          and labels(o["metadata"].get("labels") or {}) and fields(o))

    def list(self, kind: str, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
             resource_version: str | None = None, resource_version_match: str | None = None) -> dict:
        """A ``<Kind>List`` with ``metadata.resourceVersion``. ``limit`` pages
        (``metadata.continue`` names the next page, served at the first
        page's resourceVersion; Expired once that left the history).
        ``resource_version_match="Exact"`` lists the state at that version."""
        res = resource(kind)
        match = self._matcher(res, namespace, label_selector, field_selector)
        with self._cond:
            start = None
            if continue_:
                if resource_version not in (None, "", "0"):
                    raise BadRequest("specifying resource version is not allowed when using continue")
                try:
                    token = json.loads(base64.urlsafe_b64decode(continue_.encode()))
                    at, start = int(token["rv"]), tuple(token["start"])
                except (ValueError, KeyError, TypeError):
                    raise BadRequest("continue key is not valid: malformed token") from None
                try:
                    objs = self._snapshot(res, at)
                except Expired:
                    raise Expired("The provided continue parameter is too old to display a consistent "
                                  "list result. You can start a new list without the continue "
                                  "parameter.") from None
            elif resource_version_match == "Exact":
                if resource_version in (None, "", "0"):
                    raise BadRequest('resourceVersionMatch "Exact" needs a non-zero resourceVersion')
                at = _parse_rv(resource_version)
                objs = self._snapshot(res, at)
            elif resource_version_match not in (None, "", "NotOlderThan"):
                raise BadRequest(f"resourceVersionMatch: Unsupported value: {resource_version_match!r}")
            else:
                if resource_version_match and resource_version in (None, ""):
                    raise BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
                if resource_version not in (None, ""):
                    self._snapshot(res, _parse_rv(resource_version))   # only to check it is not too large
                at, objs = self._rv, self._objects[res.plural]
            keys = sorted(k for k, o in objs.items() if (start is None or k > start) and match(o))
            meta: dict = {"resourceVersion": str(at)}
            if limit and len(keys) > limit:
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"rv": at, "start": list(keys[limit - 1])}).encode()).decode()
                if not label_selector and not field_selector:
                    meta["remainingItemCount"] = len(keys) - limit
                keys = keys[:limit]
            items = []
            for k in keys:
                item = copy.deepcopy(objs[k])
                item.pop("kind", None)       # list items carry no kind/apiVersion on the wire
                item.pop("apiVersion", None)
                items.append(item)
            return {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta,
                    "items": items}

    def watch(self, kind: str, namespace: str | None = None, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout: float | None = None, bookmarks: bool = False,
              send_initial_events: bool | None = None) -> Watch:
        """Start a watch. Without a resourceVersion (or "0") it first yields
        ADDED for every matching object, then every change; from a
        resourceVersion it yields exactly the changes after it, or one ERROR
        event (410 Expired) if the history no longer reaches back that far.
        ``send_initial_events`` with bookmarks ends the initial ADDED events
        with a BOOKMARK annotated ``k8s.io/initial-events-end``."""
        res = resource(kind)
        match = self._matcher(res, namespace, label_selector, field_selector)
        with self._cond:
            w = Watch(self, res, match, None if timeout is None else time.monotonic() + timeout, bookmarks)
            initial = resource_version in (None, "", "0") if send_initial_events is None else send_initial_events
            if initial:
                for k in sorted(self._objects[res.plural]):
                    w._offer(_Event(self._rv, "ADDED", self._objects[res.plural][k], None))
                if send_initial_events and bookmarks:
                    w._queue.append(w._bookmark(self._rv, {"k8s.io/initial-events-end": "true"}))
            elif resource_version not in (None, "", "0"):
                rv = _parse_rv(resource_version)
                if rv > self._rv:
                    self._snapshot(res, rv)     # raises TooLargeResourceVersion
                if rv < self._floor[res.plural]:
                    err = Expired(f"too old resource version: {rv} ({self._floor[res.plural] + 1})")
                    w._queue.append({"type": "ERROR", "object": err.status()})
                    w._state = "closed"
                    return w
                for ev in self._events[res.plural]:
                    if ev.rv > rv:
                        w._offer(ev)
            self._watches.add(w)
            return w

    def subscribe(self, callback: Callable[[str, dict], None], kind: str, namespace: str | None = None,
                  **watch_args) -> Subscription:
        """Call ``callback(type, object)`` on a thread for every event of a
        watch (arguments as :meth:`watch`); ``close()`` the result to stop."""
        return Subscription(self, callback, dict(kind=kind, namespace=namespace, **watch_args))

    # -- test hooks
    def compact(self) -> int:
        """Forget the event history: any resourceVersion older than the
        current one is now Expired. Open watches are not affected."""
        with self._cond:
            for r in RESOURCES:
                self._events[r.plural].clear()
                self._floor[r.plural] = self._rv
            return self._rv

    def cut_watches(self) -> int:
        """Break every open watch (their iteration raises WatchCut); returns
        how many were open."""
        with self._cond:
            n = 0
            for w in list(self._watches):
                if w._state == "open":
                    w._state, n = "cut", n + 1
                self._watches.discard(w)
            self._cond.notify_all()
            return n

    def close(self) -> None:
        """End every open watch cleanly."""
        with self._cond:
            for w in list(self._watches):
                w._close_locked()
            self._cond.notify_all()

    # -- YAML
    def load_yaml(self, text: str) -> list[dict]:
        """Create every object of a (multi-document) YAML text, Namespaces
        first, a ``List`` expanded; returns the created objects."""
        import yaml  # noqa: PLC0415 -- PyYAML is only needed here
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            raise InvalidInput(f"not valid YAML: {str(e).splitlines()[0]}") from None
        objs = []
        for d in docs:
            objs.extend(d["items"] if isinstance(d, dict) and d.get("kind") == "List" else [d])
        for o in objs:
            if not isinstance(o, dict) or not o.get("apiVersion") or not o.get("kind") \
                    or not (o.get("metadata") or {}).get("name"):
                raise InvalidInput("every object needs apiVersion, kind and metadata.name")
        objs.sort(key=lambda o: o.get("kind") != "Namespace")
        return [self.create(o) for o in objs]

    def load_file(self, path: str) -> list[dict]:
        """:meth:`load_yaml` on a file's text."""
        with open(path, encoding="utf-8") as f:
            return self.load_yaml(f.read())
