"""Validation of names at the boundary (CNI, API, YAML, CLI).

Everything that later becomes a link name, a key segment or a file name is
checked here once, so that deeper layers can trust it.
"""
from __future__ import annotations

import re

from agent.errors import InvalidInput

#: Linux IFNAMSIZ is 16 including the terminating NUL.
IFNAME_MAX = 15

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The CNI spec: alphanumerics plus '_', '.', '-' for container IDs (non-empty).
# Always applied with fullmatch: '$' would also match before a trailing newline.
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def check_ifname(name: str, what: str = "interface name") -> str:
    """Return ``name`` if it is a valid Linux interface name, else raise InvalidInput."""
    if not name:
        raise InvalidInput(f"{what} is empty")
    if len(name.encode()) > IFNAME_MAX:
        raise InvalidInput(f"{what} {name!r} is longer than {IFNAME_MAX} bytes")
    if name in (".", "..") or any(c in name for c in "/:\0") or any(c.isspace() for c in name):
        raise InvalidInput(f"{what} {name!r} contains '/', ':', whitespace or is '.'/'..'")
    return name


def check_namespace(name: str) -> str:
    """Kubernetes namespace names are DNS-1123 labels (≤ 63)."""
    if not name or len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
        raise InvalidInput(f"namespace {name!r} is not a valid DNS-1123 label")
    return name


def check_object_name(name: str, what: str = "name") -> str:
    """Kubernetes object names (pods, services, policies) are DNS-1123 subdomains (≤ 253)."""
    if not name or len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        raise InvalidInput(f"{what} {name!r} is not a valid DNS-1123 subdomain")
    return name


def check_dns_label(name: str, what: str = "name") -> str:
    """Names that must be DNS-1123 labels (node names in the lab, port names)."""
    if not name or len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
        raise InvalidInput(f"{what} {name!r} is not a valid DNS-1123 label")
    return name


def check_node_name(name: str) -> str:
    """Node names become etcd key segments; Kubernetes allows DNS-1123 subdomains."""
    return check_object_name(name, "node name")


def check_container_id(cid: str, what: str = "container ID") -> str:
    """CNI container IDs: non-empty, alphanumerics and ``_.-`` (CNI spec)."""
    if not cid or len(cid) > 256 or not _CONTAINER_ID.fullmatch(cid):
        raise InvalidInput(f"{what} {cid!r} must be non-empty and contain only "
                           "letters, digits, '_', '.', '-'")
    return cid


def check_label_value(value: str) -> str:
    """Label values: ≤ 63 characters, alphanumerics and ``-_.`` inside."""
    if len(value) > 63 or not _LABEL_NAME.fullmatch(value):
        raise InvalidInput(f"label value {value!r} is invalid")
    return value


def check_label_key(key: str) -> str:
    """Label keys: optional DNS subdomain prefix, '/', then a name ≤ 63."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        raise InvalidInput(f"label key {key!r} has an invalid prefix")
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise InvalidInput(f"label key {key!r} is invalid")
    return key
