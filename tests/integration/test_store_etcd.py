"""The Store contract against a real etcd, plus what only EtcdStore and
EmbeddedEtcd have: endpoint parsing, unreachable servers, process lifecycle."""
from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from agent.errors import FatalError, InvalidInput, Unavailable
from tests.store_contract import StoreContract

pytestmark = pytest.mark.etcd


class TestEtcdStore(StoreContract):
    @pytest.fixture
    def store(self, etcd_store):
        return etcd_store


# ---------------------------------------------------------------- endpoints
@pytest.mark.parametrize("endpoint,match", [
    ("https://127.0.0.1:2379", "expected http://HOST:PORT or unix:///PATH"),
    ("ftp://127.0.0.1:2379", "expected http://HOST:PORT or unix:///PATH"),
    ("http://", "expected http://HOST:PORT or unix:///PATH"),
    ("http://:2379", "expected http://HOST:PORT or unix:///PATH"),
    ("unix://relative/etcd.sock", "unix socket path must be absolute"),
    ("unix://", "unix socket path must be absolute"),
    ("http://127.0.0.1:abc", "port"),
    ("http://127.0.0.1:99999", "port"),
])
def test_bad_endpoint_is_invalid_input(endpoint, match):
    from agent.store.etcd import EtcdStore
    with pytest.raises(InvalidInput, match=match):
        EtcdStore(endpoint)


@pytest.mark.parametrize("endpoint,expected", [
    ("http://10.0.0.1:2379", ("10.0.0.1", "2379")),
    ("http://etcd.example:32379", ("etcd.example", "32379")),
    ("http://10.0.0.1", ("10.0.0.1", "2379")),
    ("10.0.0.1:4001", ("10.0.0.1", "4001")),
    ("unix:///run/etcd.sock:0", ("unix:///run/etcd.sock", "0")),
    ("unix:///run/etcd.sock", ("unix:///run/etcd.sock", "")),
])
def test_endpoint_parsing(endpoint, expected):
    from agent.store.etcd import _split_endpoint
    assert _split_endpoint(endpoint) == expected


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["tcp", "unix"])
def dead_endpoint(request, tmp_path):
    if request.param == "tcp":
        return f"http://127.0.0.1:{_free_tcp_port()}"
    return f"unix://{tmp_path}/no-etcd.sock:0"


@pytest.mark.parametrize("op", ["get", "list", "put", "delete", "txn", "revision", "watch",
                                "compact"])
def test_unreachable_etcd_raises_unavailable_quickly(dead_endpoint, op):
    from agent.store.base import Put
    from agent.store.etcd import EtcdStore
    s = EtcdStore(dead_endpoint, timeout=1)
    calls = {"get": lambda: s.get("/k"), "list": lambda: s.list("/"),
             "put": lambda: s.put("/k", b"v"), "delete": lambda: s.delete("/k"),
             "txn": lambda: s.txn([], [Put("/k", b"v")]), "revision": s.revision,
             "watch": lambda: s.watch("/", 0, lambda item: None),
             "compact": lambda: s.compact(1)}
    t0 = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            calls[op]()
    finally:
        s.close()  # closing a client that never connected must not raise
    assert time.monotonic() - t0 < 3.0


# ---------------------------------------------------------------- embedded etcd
@pytest.fixture
def short_tmp():
    # unix socket paths are limited to 107 bytes: keep the directory short
    d = Path(tempfile.mkdtemp(prefix="ce-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _embedded(d: Path, **kw):
    from agent.store.embedded import EmbeddedEtcd
    return EmbeddedEtcd(d / "data", client_url="http://127.0.0.1:0",
                        peer_url=kw.pop("peer_url", "http://127.0.0.1:0"),
                        unix_socket=str(d / "etcd.sock:0"), log_file=d / "etcd.log", **kw)


def test_embedded_etcd_start_healthy_stop_leaves_no_process(short_tmp):
    from agent.store.etcd import EtcdStore
    e = _embedded(short_tmp)
    e.start()
    proc = e.proc
    try:
        assert proc is not None and proc.poll() is None
        s = EtcdStore("unix://" + e.unix_socket, timeout=2)
        try:
            r = s.put("/contiv/embedded", b"ok")
            assert s.get("/contiv/embedded").mod_revision == r
        finally:
            s.close()
    finally:
        e.stop()
    assert proc.poll() is not None  # terminated and reaped
    assert e.proc is None
    e.stop()  # a second stop is a no-op
    assert proc.poll() is not None


def test_embedded_etcd_as_context_manager_stops_on_exit(short_tmp):
    with _embedded(short_tmp) as e:
        proc = e.proc
        assert proc.poll() is None
    assert proc.poll() is not None


def test_embedded_etcd_that_cannot_start_raises_and_leaves_no_process(short_tmp):
    e = _embedded(short_tmp, peer_url="not-a-url")
    with pytest.raises(FatalError, match="etcd exited with status"):
        e.start(timeout=10)
    assert e.proc is None


@pytest.mark.parametrize("sock", ["relative/etcd.sock:0", "/abs/etcd.sock"])
def test_embedded_etcd_rejects_bad_unix_socket(sock, tmp_path):
    from agent.store.embedded import EmbeddedEtcd
    with pytest.raises(InvalidInput, match="DIR/NAME:PORT"):
        EmbeddedEtcd(tmp_path, unix_socket=sock)
