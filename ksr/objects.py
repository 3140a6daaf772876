"""The kinds the reflector mirrors, how each is listed and watched with the
official ``kubernetes`` client, and what of an object reaches etcd.

Objects travel as raw JSON (``_preload_content=False``, parsed with orjson):
the client's typed models cost ~10x more to build than the agents ever
read, and turning them back into the API's JSON would lose nothing but time.
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.model import keys

#: annotations kept (prefixes): ours; everything else is somebody else's
#: business (last-applied-configuration alone can be larger than the object)
KEPT_ANNOTATIONS = ("contiv.io/", "lab.contiv.io/")
#: container fields agents never read, some of which carry secrets
DROPPED_CONTAINER_FIELDS = ("env", "envFrom", "command", "args", "volumeMounts", "volumeDevices",
                            "lifecycle", "livenessProbe", "readinessProbe", "startupProbe", "resources",
                            "securityContext", "workingDir", "terminationMessagePath",
                            "terminationMessagePolicy", "imagePullPolicy")


@dataclass(frozen=True)
class Kind:
    """One mirrored kind: its ``kind``, ``apiVersion``, key segment, the
    client API class and the list method that serves every namespace, and
    the API resource (plural) for error messages and RBAC."""

    kind: str
    api_version: str
    api_class: str
    list_method: str
    resource: str
    group: str = ""

    @property
    def segment(self) -> str:
        return keys.KIND_SEGMENT[self.kind]

    @property
    def prefix(self) -> str:
        return f"{keys.K8S}{self.segment}/"


KINDS = (
    Kind("Namespace", "v1", "CoreV1Api", "list_namespace", "namespaces"),
    Kind("Node", "v1", "CoreV1Api", "list_node", "nodes"),
    Kind("Pod", "v1", "CoreV1Api", "list_pod_for_all_namespaces", "pods"),
    Kind("Service", "v1", "CoreV1Api", "list_service_for_all_namespaces", "services"),
    Kind("EndpointSlice", "discovery.k8s.io/v1", "DiscoveryV1Api", "list_endpoint_slice_for_all_namespaces",
         "endpointslices", "discovery.k8s.io"),
    Kind("NetworkPolicy", "networking.k8s.io/v1", "NetworkingV1Api",
         "list_network_policy_for_all_namespaces", "networkpolicies", "networking.k8s.io"),
)


class BadObject(ValueError):
    """An object the reflector cannot mirror (no name, a namespace where
    there must be one...): logged with what names it, and skipped."""


def strip(k: Kind, obj: dict) -> dict:
    """What of ``obj`` reaches etcd: the object as the API returns it, with
    ``apiVersion`` and ``kind`` (list items lack them), without managedFields,
    annotations that are not ours, and, for pods, the container and volume
    details agents never read (environment variables may hold secrets)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise BadObject(f"{k.kind}: not an object with metadata")
    md = dict(obj["metadata"])
    md.pop("managedFields", None)
    ann = md.get("annotations")
    if isinstance(ann, dict):
        kept = {a: v for a, v in ann.items() if a.startswith(KEPT_ANNOTATIONS)}
        if kept:
            md["annotations"] = kept
        else:
            md.pop("annotations")
    out = {**obj, "apiVersion": k.api_version, "kind": k.kind, "metadata": md}
    if k.kind == "Pod" and isinstance(obj.get("spec"), dict):
        spec = {f: v for f, v in obj["spec"].items() if f != "volumes"}
        for field in ("containers", "initContainers"):
            if isinstance(spec.get(field), list):
                spec[field] = [{f: v for f, v in c.items() if f not in DROPPED_CONTAINER_FIELDS}
                               for c in spec[field] if isinstance(c, dict)]
        out["spec"] = spec
    return out


def key_of(k: Kind, obj: dict) -> str:
    """The etcd key of ``obj`` (docs/etcd-layout.md); BadObject if it has
    no valid name or namespace."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    md = obj["metadata"]
    try:
        return keys.k8s_key(k.kind, md.get("namespace", "") if keys.KINDS[k.segment] else "", md.get("name", ""))
    except InvalidInput as e:
        raise BadObject(f"{k.kind} {md.get('namespace', '')}/{md.get('name', '')}: {e.message}") from None
