"""Fixtures of the unit tier shared by several modules: the lab's Kubernetes
API server and a real ``kubernetes`` client configured for it
(tests/unit/test_kubeapi*.py)."""
from __future__ import annotations

import pytest


@pytest.fixture
def server():
    from lab.kubeapi import KubeAPIServer  # noqa: PLC0415
    with KubeAPIServer(bookmark_interval=0.1, history=50) as srv:
        yield srv


@pytest.fixture
def kube_client(server, tmp_path):
    """A ``kubernetes`` API client configured (kubeconfig) for ``server``."""
    config = pytest.importorskip("kubernetes.config", reason="the kubernetes client is a test dependency")
    path = tmp_path / "kubeconfig"
    server.kubeconfig(str(path))
    c = config.new_client_from_config(config_file=str(path))
    yield c
    c.close()
