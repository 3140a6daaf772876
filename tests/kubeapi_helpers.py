"""Helpers of the lab Kubernetes API server's tests (tests/unit/test_kubeapi*.py;
their fixtures are in tests/unit/conftest.py): objects, errors. Not collected."""
from __future__ import annotations

import json

import pytest
from kubernetes import client


def pod(name, ns="default", labels=None, node=None):
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "spec": spec,
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}}}


def api_error(fn, *args, **kw) -> tuple[int, dict]:
    with pytest.raises(client.ApiException) as e:
        fn(*args, **kw)
    return e.value.status, json.loads(e.value.body) if e.value.body else {}


def own(labels: dict) -> dict:
    """Labels without the one the server puts on every Namespace."""
    return {k: v for k, v in labels.items() if k != "kubernetes.io/metadata.name"}


def rv(obj) -> int:
    return int(obj.metadata.resource_version)
