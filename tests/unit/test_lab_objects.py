"""The lab's API-server behaviour that needs no lab: stamping objects."""
from lab.kube import Kube


def test_namespaces_get_the_metadata_name_label_like_the_api_server_adds():
    ns = Kube._stamp(None, {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "x", "labels": {"team": "a"}}}, None)
    assert ns["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": "x"}
    assert ns["metadata"]["uid"] and ns["metadata"]["creationTimestamp"]
    again = Kube._stamp(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, ns)
    assert again["metadata"]["uid"] == ns["metadata"]["uid"]
    pod = Kube._stamp(None, {"kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}}, None)
    assert pod["metadata"]["labels"] == {"a": "b"}
