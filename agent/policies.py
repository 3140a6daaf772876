"""Keeps NetworkPolicy enforcement current, incrementally.

Partitions: ``pol/<ns>/<name>`` (a policy's chains and sets, rendered only
when it selects a pod of this node), ``polpod/<ns>/<name>`` (a local pod's
dispatch elements) and ``polgroups`` (the group chains in use). A pod change
re-renders only the policies whose selection or peer sets it enters or leaves
(found by evaluating each policy's selectors against that one pod) and the
dispatch of the pods those policies select; everything goes to the scheduler
as one transaction.
"""
from __future__ import annotations

import logging
from typing import Callable

from agent.builders.policies import CompiledPolicy, PodInfo, PolicyError, PolicyModel, pod_info, selects
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState

log = logging.getLogger(__name__)
GROUPS = "polgroups"


def _sel_ok(sel) -> bool:
    return isinstance(sel, dict)


def _membership(obj: dict, pod: PodInfo | None, ns_labels: dict) -> tuple:
    """Everything about ``pod`` that a policy's compiled form depends on."""
    if pod is None:
        return ()
    md, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ns = md.get("namespace", "default")
    labels = pod.label_dict()
    out = []
    try:
        ps = spec.get("podSelector")
        out.append(pod.namespace == ns and _sel_ok(ps) and selects(ps, labels))
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for r in spec.get(direction) or []:
                for p in (r or {}).get(key) or []:
                    if not isinstance(p, dict) or "ipBlock" in p:
                        continue
                    pps, nss = p.get("podSelector"), p.get("namespaceSelector")
                    in_ns = selects(nss, ns_labels.get(pod.namespace, {})) if _sel_ok(nss) \
                        else pod.namespace == ns
                    out.append(in_ns and (pps is None or (_sel_ok(pps) and selects(pps, labels))))
    except (KeyError, TypeError, AttributeError):
        return ("unreadable",)
    return (tuple(out), pod.ip, pod.ports)


class PolicySync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str, *,
                 render_policy: Callable, render_dispatch: Callable, render_groups: Callable) -> None:
        self.snapshot = snapshot
        self.desired = desired
        self.node = node
        self._render_policy = render_policy
        self._render_dispatch = render_dispatch
        self._render_groups = render_groups
        self.pods: dict[str, PodInfo] = {}
        self.compiled: dict[str, CompiledPolicy] = {}
        self.dirty_policies: set[str] = set()
        self.dirty_pods: set[str] = set()
        self.reported: dict[str, str] = {}

    # ------------------------------------------------------------ inputs
    def _policy_objs(self) -> dict[str, dict]:
        return {f"{ns}/{n}": o for (ns, n), o in self.snapshot.objects["networkpolicy"].items()}

    def _ns_labels(self) -> dict:
        return {n: (o.get("metadata") or {}).get("labels") or {}
                for (_, n), o in self.snapshot.objects["namespace"].items()}

    def on_change(self, ch: Change) -> None:
        with self.snapshot.lock:
            if ch.kind == "networkpolicy":
                self.dirty_policies.add(f"{ch.namespace}/{ch.name}")
            elif ch.kind == "namespace":
                # namespace labels feed namespaceSelectors: re-evaluate them all
                self.dirty_policies |= set(self._policy_objs())
            elif ch.kind == "pod":
                ref = f"{ch.namespace}/{ch.name}"
                old = self.pods.get(ref)
                obj = self.snapshot.objects["pod"].get((ch.namespace, ch.name))
                new = pod_info(obj) if obj is not None else None
                if new == old:
                    return
                ns_labels = self._ns_labels()
                for pref, pobj in self._policy_objs().items():
                    if _membership(pobj, old, ns_labels) != _membership(pobj, new, ns_labels):
                        self.dirty_policies.add(pref)
                if new is None:
                    self.pods.pop(ref, None)
                else:
                    self.pods[ref] = new
                self.dirty_pods.add(ref)

    # ------------------------------------------------------------ build
    def _model(self, policies: list[dict]) -> PolicyModel:
        with self.snapshot.lock:
            return PolicyModel(self.pods.values(), self._ns_labels(), policies)

    def _report(self, cp: CompiledPolicy) -> None:
        if cp.error and self.reported.get(cp.ref) != cp.error:
            log.warning("NetworkPolicy %s is invalid (%s): it fails closed -- the pods it selects "
                        "stay isolated, none of its rules applies", cp.ref, cp.error)
        if cp.error:
            self.reported[cp.ref] = cp.error
        else:
            self.reported.pop(cp.ref, None)

    def _local(self, ref: str) -> bool:
        p = self.pods.get(ref)
        return p is not None and p.node == self.node

    def _policy_values(self, cp: CompiledPolicy) -> dict:
        if not any(self._local(r) for r in cp.selected):
            return {}
        return self._render_policy(cp, self.pods)

    def _dispatch(self, ref: str) -> dict:
        if not self._local(ref):
            return {}
        pod = self.pods[ref]
        ing = tuple(c.ref for c in self.compiled.values() if ref in c.selected and "Ingress" in c.types)
        egr = tuple(c.ref for c in self.compiled.values() if ref in c.selected and "Egress" in c.types)
        return self._render_dispatch(pod, tuple(sorted(ing)), tuple(sorted(egr)))

    def _groups(self) -> dict:
        groups = set()
        for ref in self.pods:
            if not self._local(ref):
                continue
            for d, t in (("ingress", "Ingress"), ("egress", "Egress")):
                g = tuple(sorted(c.ref for c in self.compiled.values() if ref in c.selected and t in c.types))
                if g:
                    groups.add((d, g))
        return self._render_groups(groups)

    def load_pods(self) -> None:
        with self.snapshot.lock:
            self.pods = {}
            for obj in self.snapshot.objects["pod"].values():
                p = pod_info(obj)
                if p is not None:
                    self.pods[p.ref] = p

    def partitions(self) -> dict[str, dict]:
        """Every partition, from scratch (start-up resync)."""
        self.load_pods()
        with self.snapshot.lock:
            objs = list(self._policy_objs().values())
        model = self._model(objs)
        self.compiled = {c.ref: c for c in model.policies}
        for c in model.policies:
            self._report(c)
        parts = {f"pol/{c.ref}": self._policy_values(c) for c in model.policies}
        for ref in self.pods:
            parts[f"polpod/{ref}"] = self._dispatch(ref)
        parts[GROUPS] = self._groups()
        self.dirty_policies.clear()
        self.dirty_pods.clear()
        return parts

    def flush(self) -> int:
        if not self.dirty_policies and not self.dirty_pods:
            return 0
        dirty_p, self.dirty_policies = self.dirty_policies, set()
        dirty_pods, self.dirty_pods = self.dirty_pods, set()
        with self.snapshot.lock:
            objs = self._policy_objs()
        model = self._model([])
        parts: dict[str, dict] = {}
        for ref in sorted(dirty_p):
            old = self.compiled.pop(ref, None)
            if old is not None:
                dirty_pods |= old.selected
            obj = objs.get(ref)
            if obj is None:
                parts[f"pol/{ref}"] = {}
                self.reported.pop(ref, None)
                continue
            cp = model.compile(obj)
            self._report(cp)
            self.compiled[ref] = cp
            dirty_pods |= cp.selected
        for ref in sorted(dirty_p):
            if ref in self.compiled:
                parts[f"pol/{ref}"] = self._policy_values(self.compiled[ref])
        for ref in sorted(dirty_pods):
            parts[f"polpod/{ref}"] = self._dispatch(ref)
        parts[GROUPS] = self._groups()
        res = self.desired.set_partitions(parts, description="network policies: " + ", ".join(
            sorted(dirty_p)[:3] + (["..."] if len(dirty_p) > 3 else [])) if dirty_p else
            "network policies: pods " + ", ".join(sorted(dirty_pods)[:3]))
        if res.errors:
            log.warning("network policies: %d value(s) failed: %s", len(res.errors),
                        "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:3]))
        return len(dirty_p) + len(dirty_pods)

    # ------------------------------------------------------------ diagnostics
    def model(self) -> PolicyModel:
        with self.snapshot.lock:
            objs = list(self._policy_objs().values())
        return self._model(objs)

    def describe(self, namespace: str | None = None, pod: str | None = None) -> list[dict]:
        m = self.model()
        out = []
        for ref, p in sorted(m.pods.items()):
            if (namespace and p.namespace != namespace) or (pod and ref != pod and p.name != pod):
                continue
            out.append(m.effective(p))
        return out

    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict:
        try:
            return self.model().explain(src, dst, port, protocol)
        except PolicyError as e:
            from agent.errors import InvalidInput  # noqa: PLC0415
            raise InvalidInput(str(e)) from None
