"""Drift check: the agent's routes and docs/api.yaml name the same endpoints.

``build_router`` only registers closures over the agent object, so a bare
namespace stands in for the agent; nothing is called.
"""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import yaml

from agent.api.routes import CNI_HEADERS, build_router

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict:
    with API_DOC.open() as f:
        return yaml.safe_load(f)


def registered() -> set[tuple[str, str]]:
    router = build_router(types.SimpleNamespace())
    return {(m.upper(), p) for m, p in router._routes}


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in doc["paths"].items()
            for m in item if m in HTTP_METHODS}


def test_doc_is_openapi_3(doc):
    assert str(doc["openapi"]).startswith("3.0.")
    assert doc["paths"], "docs/api.yaml documents no path"


def test_every_route_is_documented(doc):
    missing = registered() - documented(doc)
    assert not missing, f"routes missing from docs/api.yaml: {sorted(missing)}"


def test_every_documented_endpoint_exists(doc):
    extra = documented(doc) - registered()
    assert not extra, f"docs/api.yaml documents endpoints the agent does not serve: {sorted(extra)}"


def test_cni_headers_are_documented(doc):
    params = doc["paths"]["/v1/cni"]["post"].get("parameters", [])
    resolved = []
    for p in params:
        if "$ref" in p:
            name = p["$ref"].rsplit("/", 1)[-1]
            p = doc["components"]["parameters"][name]
        resolved.append(p)
    names = {p["name"].lower() for p in resolved if p.get("in") == "header"}
    assert set(CNI_HEADERS.values()) <= names, sorted(set(CNI_HEADERS.values()) - names)
    headers = doc["paths"]["/v1/cni"]["post"]["responses"]["200"]["headers"]
    assert "x-cni-exit" in {h.lower() for h in headers}
