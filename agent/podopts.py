"""What a pod asks of its network by annotation, read when the pod starts
(CNI ADD), as Kubernetes network add-ons read theirs: changing an
annotation later changes nothing until the pod is made again.

* ``contiv.io/memif: "true"`` -- a memif next to the pod's ``eth0`` (VPP
  data plane only): a second address of the node's pod subnet, routed to a
  memif whose socket the pod's program reaches as ``@contiv/memif-eth0``
  (docs/vpp.md, "memif").

The reflector keeps annotations under ``contiv.io/`` (ksr.objects), so the
agent reads them from the pod it mirrors.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from agent.errors import InvalidInput, PodOptionError
from agent.model import keys

MEMIF = "contiv.io/memif"
_BOOL = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class PodOptions:
    memif: bool = False


NONE = PodOptions()


def pod_options(pod: dict | None) -> PodOptions:
    """The options of a mirrored pod object (None: unknown pod -- none).
    A value that is not ``"true"``/``"false"`` is an error naming the
    annotation: a pod that asked for something and silently did not get it
    would fail later, somewhere harder to see."""
    ann = ((pod or {}).get("metadata") or {}).get("annotations") or {}
    if not isinstance(ann, dict) or MEMIF not in ann:
        return NONE
    raw = ann[MEMIF]
    value = _BOOL.get(raw.strip().lower()) if isinstance(raw, str) else None
    if value is None:
        raise PodOptionError(f"pod annotation {MEMIF}: {raw!r} is not \"true\" or \"false\"")
    return PodOptions(memif=value)


def mirrored_pod(snapshot, store, namespace: str, name: str) -> dict | None:
    """The mirrored pod, for what it asks at ADD: from the agent's watched
    ``snapshot`` (:class:`agent.cluster.ClusterSnapshot`), else -- the watch
    not there yet -- read from ``store``. A runtime that names no namespace
    runs no Kubernetes pod: None."""
    if not namespace:
        return None
    with snapshot.lock:
        obj = snapshot.objects["pod"].get((namespace, name))
    if obj is not None:
        return obj
    try:
        key = keys.k8s_key("pod", namespace, name)
    except InvalidInput:
        return None  # not a name Kubernetes gives: no pod of its (and nothing asked)
    kv = store.get(key)
    try:
        obj = orjson.loads(kv.value) if kv else None
    except orjson.JSONDecodeError:
        return None  # the snapshot names it as bad when the watch brings it
    return obj if isinstance(obj, dict) else None
