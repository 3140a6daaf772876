"""The vocabulary of the lab's Kubernetes API (:mod:`lab.kubeapi`,
:mod:`lab.kubestore`): the resources it serves, its errors (rendered as the
API's ``Status`` objects, and the project's typed errors too), label and
field selectors, and patches (JSON merge patch, RFC 7386; JSON patch, RFC
6902; a strategic merge patch applied as a merge patch)."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Callable

from agent.errors import Conflict, ContivError, InvalidInput, NotFound, TemporaryError


@dataclass(frozen=True)
class Resource:
    """One served resource: where it lives in the API and how it behaves."""
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool             # has a ``status`` subresource
    short: tuple[str, ...] = ()
    #: the real API answers DELETE with the deleted object for these
    #: (pods, services, namespaces) and with a Status for the rest
    returns_deleted: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", False, True, ("ns",), True),
    Resource("", "v1", "pods", "Pod", True, True, ("po",), True),
    Resource("", "v1", "services", "Service", True, True, ("svc",), True),
    Resource("", "v1", "nodes", "Node", False, True, ("no",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, False, ("netpol",)),
)
_BY_NAME = {n.lower(): r for r in RESOURCES for n in (r.plural, r.kind, *r.short)}
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# status a real API server resets on create (its PrepareForCreate); a Node
# keeps the status the kubelet registers it with
_STATUS_ON_CREATE = {"pods": {"phase": "Pending"}, "services": {"loadBalancer": {}},
                     "namespaces": {"phase": "Active"}}
_FIELDS = {"pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                    "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP"),
           "nodes": ("spec.unschedulable",), "namespaces": ("status.phase",),
           "services": ("spec.clusterIP", "spec.type")}


def resource(name: str) -> Resource:
    """The resource named by a plural, a kind or a short name (any case)."""
    r = _BY_NAME.get(str(name).lower())
    if r is None:
        raise NotFoundError(f"the server doesn't have a resource type \"{name}\"")
    return r


# -- errors ---------------------------------------------------------------------

class KubeError(ContivError):
    """An error the API answers with a ``Status`` object (:meth:`status`)."""
    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.details = details
        self.http_status = self.code

    def status(self) -> dict:
        out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


class NotFoundError(KubeError, NotFound):
    code, reason = 404, "NotFound"


class AlreadyExists(KubeError, Conflict):
    code, reason = 409, "AlreadyExists"


class ConflictError(KubeError, Conflict):
    code, reason = 409, "Conflict"


class Expired(KubeError, InvalidInput):
    """The resourceVersion is older than the history: relist (HTTP 410 Gone)."""
    code, reason = 410, "Expired"


class Forbidden(KubeError, InvalidInput):
    code, reason = 403, "Forbidden"


class Unauthorized(KubeError, InvalidInput):
    code, reason = 401, "Unauthorized"


class Invalid(KubeError, InvalidInput):
    code, reason = 422, "Invalid"


class BadRequest(KubeError, InvalidInput):
    code, reason = 400, "BadRequest"


class TooLargeResourceVersion(KubeError, TemporaryError):
    """A resourceVersion newer than the store's (the real server waits, then
    answers this 504 Timeout)."""
    code, reason = 504, "Timeout"


class WatchCut(TemporaryError):
    """The watch stream was broken (:meth:`KubeStore.cut_watches`); re-watch."""


def _details(res: Resource, name: str, uid: str | None = None) -> dict:
    d = {"name": name, "kind": res.plural}
    if res.group:
        d["group"] = res.group
    if uid:
        d["uid"] = uid
    return d


def not_found(res: Resource, name: str) -> NotFoundError:
    return NotFoundError(f'{res.plural} "{name}" not found', details=_details(res, name))


def _conflict(res: Resource, name: str, why: str) -> ConflictError:
    return ConflictError(f'Operation cannot be fulfilled on {res.plural} "{name}": {why}',
                         details=_details(res, name))


def _parse_rv(value) -> int:
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError
        return rv
    except (TypeError, ValueError):
        raise BadRequest(f"resourceVersion: Invalid value: {value!r}: must be a non-negative "
                         "integer") from None


# -- selectors ------------------------------------------------------------------

_LABEL_REQ = re.compile(r"^(!?)\s*([\w./-]+)\s*(?:(==|=|!=)\s*([\w.-]*)|\s+(in|notin)\s*\(([^)]*)\))?$")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b``)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def label_matcher(text: str | None) -> Callable[[dict], bool]:
    """A predicate on labels for a label selector: ``k=v``, ``k==v``,
    ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``."""
    reqs = []
    for part in _split_top(text or ""):
        m = _LABEL_REQ.match(part)
        if not m:
            raise BadRequest(f"unable to parse requirement: {part!r}")
        neg, key, op, val, setop, setvals = m.groups()
        if neg and (op or setop):
            raise BadRequest(f"unable to parse requirement: {part!r}")
        vals = {v.strip() for v in (setvals or "").split(",") if v.strip()}
        reqs.append((neg, key, op or setop, val, vals))

    def match(labels: dict) -> bool:
        for neg, key, op, val, vals in reqs:
            have = key in labels
            v = labels.get(key)
            ok = (not have if neg else have if op is None else
                  (have and v == val) if op in ("=", "==") else
                  (v != val) if op == "!=" else (have and v in vals) if op == "in" else
                  (v not in vals))
            if not ok:
                return False
        return True
    return match


def _field(obj: dict, path: str) -> str:
    v = obj
    for part in path.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def field_matcher(res: Resource, text: str | None) -> Callable[[dict], bool]:
    """A predicate on objects for a field selector (``path=v``, ``==``,
    ``!=``) over the fields the real API indexes for the resource."""
    reqs = []
    for part in _split_top(text or ""):
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise BadRequest(f"invalid selector: {part!r}; can't understand {part!r}")
        path, op, val = m.groups()
        if path not in ("metadata.name", "metadata.namespace") + _FIELDS.get(res.plural, ()):
            raise BadRequest(f'field label not supported: {path}')
        reqs.append((path, op == "!=", val.strip()))
    return lambda obj: all((_field(obj, p) == v) != neg for p, neg, v in reqs)


# -- patches --------------------------------------------------------------------

def merge_patch(target, patch, *, strategic: bool = False):
    """RFC 7386 JSON merge patch. ``strategic`` also drops the ``$``-keys of
    a strategic merge patch (their list-merge semantics are not modelled)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if strategic and k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v, strategic=strategic)
    return out


def json_patch(target, ops) -> dict:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(target)
    if not isinstance(ops, list):
        raise BadRequest("a JSON patch must be a list of operations")

    def walk(pointer: str):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        if not parts:
            raise Invalid("a JSON patch may not replace the whole object")
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        return parent, (last if isinstance(parent, dict) else
                        len(parent) if last == "-" else int(last))

    def get(pointer: str):
        parent, key = walk(pointer)
        return parent[key]

    def remove(pointer: str):
        parent, key = walk(pointer)
        return parent.pop(key)

    def add(pointer: str, value):
        parent, key = walk(pointer)
        if isinstance(parent, list):
            parent.insert(key, value)
        else:
            parent[key] = value
    try:
        for op in ops:
            kind, path = op["op"], op["path"]
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif kind in ("move", "copy"):
                value = remove(op["from"]) if kind == "move" else copy.deepcopy(get(op["from"]))
                add(path, value)
            elif kind == "test":
                if get(path) != op["value"]:
                    raise Invalid(f"the test operation failed at {path}")
            else:
                raise BadRequest(f"unknown JSON patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise Invalid(f"the JSON patch could not be applied: {type(e).__name__}: {e}") from None
    return doc


# -- discovery (/api, /apis/...) ------------------------------------------------

VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0+contivctl-lab", "gitCommit": "",
           "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "none",
           "compiler": "python", "platform": "linux/amd64"}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_GROUPS = sorted({(r.group, r.version) for r in RESOURCES if r.group})


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _resource_list(group: str, version: str) -> dict:
    out = []
    for r in RESOURCES:
        if (r.group, r.version) == (group, version):
            out.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": VERBS, "shortNames": list(r.short)})
            if r.status:
                out.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": _gv(group, version),
            "resources": out}


def _group(group: str) -> dict:
    versions = [{"groupVersion": _gv(g, v), "version": v} for g, v in _GROUPS if g == group]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


class MethodNotAllowed(KubeError):
    code, reason = 405, "MethodNotAllowed"


class UnsupportedMediaType(KubeError, InvalidInput):
    code, reason = 415, "UnsupportedMediaType"


def _no_such_path() -> KubeError:
    return NotFoundError("the server could not find the requested resource",
                            details={"causes": [{"reason": "UnexpectedServerResponse",
                                                 "message": "404 page not found"}]})
