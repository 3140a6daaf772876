"""Every name validator at the boundary (agent/model/names.py), table-driven."""
from __future__ import annotations

import pytest

from agent.errors import InvalidInput
from agent.model import names

# (validator, value) that must be accepted and returned unchanged
VALID = [
    (names.check_ifname, "eth0"),
    (names.check_ifname, "a"),
    (names.check_ifname, "x" * 15),                  # IFNAMSIZ - 1
    (names.check_ifname, "é" * 7 + "a"),             # 15 bytes, 8 characters
    (names.check_ifname, "€" * 5),                   # 15 bytes, 5 characters
    (names.check_ifname, "veth-1.2_3@x"),
    (names.check_ifname, "..."),
    (names.check_namespace, "default"),
    (names.check_namespace, "kube-system"),
    (names.check_namespace, "0"),
    (names.check_namespace, "a" * 63),
    (names.check_object_name, "web-0"),
    (names.check_object_name, "a.b-c.d"),
    (names.check_object_name, "a" * 253),
    (names.check_object_name, "0.0"),
    (names.check_dns_label, "http"),
    (names.check_dns_label, "a" * 63),
    (names.check_node_name, "node-1.example.com"),
    (names.check_node_name, "k8s-worker-2"),
    (names.check_container_id, "abc"),
    (names.check_container_id, "1"),
    (names.check_container_id, "A_b.c-D"),
    (names.check_container_id, "f" * 64),
    (names.check_container_id, "0" * 256),
    (names.check_label_value, ""),
    (names.check_label_value, "a"),
    (names.check_label_value, "v1.2_3-x"),
    (names.check_label_value, "a" * 63),
    (names.check_label_key, "app"),
    (names.check_label_key, "app.kubernetes.io/name"),
    (names.check_label_key, "example.com/" + "a" * 63),
    (names.check_label_key, "a" * 63),
    (names.check_label_key, "A_b.c"),
]


@pytest.mark.parametrize("check,value", VALID,
                         ids=[f"{c.__name__}:{v[:20]!r}" for c, v in VALID])
def test_valid_names_are_returned_unchanged(check, value):
    assert check(value) == value


# (validator, value, error pattern)
INVALID = [
    # interface names: IFNAMSIZ counts bytes, not characters
    (names.check_ifname, "", "interface name is empty"),
    (names.check_ifname, "x" * 16, "longer than 15 bytes"),
    (names.check_ifname, "é" * 8, "longer than 15 bytes"),        # 8 characters, 16 bytes
    (names.check_ifname, "€" * 5 + "a", "longer than 15 bytes"),  # 6 characters, 16 bytes
    (names.check_ifname, "a/b", "contains '/', ':', whitespace"),
    (names.check_ifname, "eth0:1", "contains '/', ':', whitespace"),
    (names.check_ifname, "a b", "contains '/', ':', whitespace"),
    (names.check_ifname, "a\tb", "contains '/', ':', whitespace"),
    (names.check_ifname, "eth0\n", "contains '/', ':', whitespace"),
    (names.check_ifname, "a\u00a0b", "contains '/', ':', whitespace"),  # no-break space
    (names.check_ifname, "a\0b", "contains '/', ':', whitespace"),
    (names.check_ifname, ".", "is '.'/'..'"),
    (names.check_ifname, "..", "is '.'/'..'"),
    # namespaces: DNS-1123 labels
    (names.check_namespace, "", "namespace '' is not a valid DNS-1123 label"),
    (names.check_namespace, "a" * 64, "not a valid DNS-1123 label"),
    (names.check_namespace, "Default", "not a valid DNS-1123 label"),
    (names.check_namespace, "-a", "not a valid DNS-1123 label"),
    (names.check_namespace, "a-", "not a valid DNS-1123 label"),
    (names.check_namespace, "a.b", "not a valid DNS-1123 label"),
    (names.check_namespace, "a_b", "not a valid DNS-1123 label"),
    (names.check_namespace, "a/b", "not a valid DNS-1123 label"),
    (names.check_namespace, "default\n", "not a valid DNS-1123 label"),
    (names.check_namespace, "défaut", "not a valid DNS-1123 label"),
    # object names: DNS-1123 subdomains
    (names.check_object_name, "", "name '' is not a valid DNS-1123 subdomain"),
    (names.check_object_name, "a" * 254, "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "Web", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, ".a", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "a.", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "a..b", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "a_b", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "a/b", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "a b", "not a valid DNS-1123 subdomain"),
    (names.check_object_name, "web\n", "not a valid DNS-1123 subdomain"),
    # DNS labels
    (names.check_dns_label, "", "name '' is not a valid DNS-1123 label"),
    (names.check_dns_label, "a" * 64, "not a valid DNS-1123 label"),
    (names.check_dns_label, "a.b", "not a valid DNS-1123 label"),
    (names.check_dns_label, "HTTP", "not a valid DNS-1123 label"),
    (names.check_dns_label, "x\n", "not a valid DNS-1123 label"),
    # node names become etcd key segments
    (names.check_node_name, "", "node name '' is not a valid DNS-1123 subdomain"),
    (names.check_node_name, "Node1", "node name 'Node1'"),
    (names.check_node_name, "node/1", "node name 'node/1'"),
    (names.check_node_name, "node1\n", "node name"),
    # container IDs (CNI spec: alphanumerics, '_', '.', '-'; non-empty)
    (names.check_container_id, "", "container ID '' must be non-empty"),
    (names.check_container_id, "_abc", "must be non-empty and contain only"),
    (names.check_container_id, "-abc", "must be non-empty and contain only"),
    (names.check_container_id, ".abc", "must be non-empty and contain only"),
    (names.check_container_id, "a b", "must be non-empty and contain only"),
    (names.check_container_id, "a/b", "must be non-empty and contain only"),
    (names.check_container_id, "a:b", "must be non-empty and contain only"),
    (names.check_container_id, "é", "must be non-empty and contain only"),
    (names.check_container_id, "0" * 257, "must be non-empty and contain only"),
    (names.check_container_id, "abc\n", "must be non-empty and contain only"),
    # label values
    (names.check_label_value, "a" * 64, "label value .* is invalid"),
    (names.check_label_value, "-a", "label value .* is invalid"),
    (names.check_label_value, "a.", "label value .* is invalid"),
    (names.check_label_value, "a b", "label value .* is invalid"),
    (names.check_label_value, "a/b", "label value .* is invalid"),
    (names.check_label_value, "v\n", "label value .* is invalid"),
    # label keys
    (names.check_label_key, "", "label key '' is invalid"),
    (names.check_label_key, "a" * 64, "is invalid"),
    (names.check_label_key, "-app", "is invalid"),
    (names.check_label_key, "example.com/", "is invalid"),
    (names.check_label_key, "/app", "has an invalid prefix"),  # an empty prefix is not allowed
    (names.check_label_key, "Example.com/app", "has an invalid prefix"),
    (names.check_label_key, "a/b/c", "has an invalid prefix"),
    (names.check_label_key, "x" * 254 + "/app", "has an invalid prefix"),
    (names.check_label_key, "app\n", "is invalid"),
]


@pytest.mark.parametrize("check,value,match", INVALID,
                         ids=[f"{c.__name__}:{v[:20]!r}" for c, v, _ in INVALID])
def test_invalid_names_raise_invalid_input(check, value, match):
    with pytest.raises(InvalidInput, match=match):
        check(value)


def test_what_names_the_field_in_the_message():
    with pytest.raises(InvalidInput, match="^CNI_IFNAME is empty$"):
        names.check_ifname("", "CNI_IFNAME")
    with pytest.raises(InvalidInput, match="^port name 'A' is not"):
        names.check_dns_label("A", "port name")
    with pytest.raises(InvalidInput, match="^service name 'A' is not"):
        names.check_object_name("A", "service name")


def test_invalid_input_is_not_retried():
    """Name errors must be InvalidInput: the reconciler never retries those."""
    from agent.errors import TemporaryError
    with pytest.raises(InvalidInput) as e:
        names.check_namespace("")
    assert not isinstance(e.value, TemporaryError)
    assert e.value.exit_status == 2 and e.value.http_status == 400
