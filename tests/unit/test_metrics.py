"""agent/metrics.py without an agent process: what the hooks count and what a
scrape reads, parsed back with prometheus_client's own text parser; the
endpoint served for real on loopback; metrics_address checked at the boundary."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import AgentConfig, parse_address
from agent.errors import InvalidInput
from agent.metrics import Metrics
from agent.model import api as rec
from agent.model.diag import InterfaceCounters


class Stub:
    """The parts of an Agent the collector reads."""

    def __init__(self) -> None:
        self.ready = True
        self.applied_revision = 42
        self.scheduler = SimpleNamespace(counts=lambda: {"configured": 7, "failed": 1})
        self.podnet = SimpleNamespace(host_ifs=lambda: {"cv1": "shop/web-1"})
        self.plane = SimpleNamespace(counters=lambda pods: [
            InterfaceCounters("eth0", "node", 1, 100, 0, 0, 2, 200, 0, 0),
            InterfaceCounters("cv1", pods["cv1"], 10, 1000, 3, 0, 12, 1200, 0, 1)])

    def cni_status(self):
        return 0, ""


def samples(m: Metrics) -> dict:
    """(name, frozenset(labels)) -> value of every sample."""
    text = generate_latest(m.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_hooks_count_cni_requests_add_steps_and_transactions():
    m = Metrics(Stub())
    m.cni("ADD", 0, b'{"cniVersion":"1.0.0"}', 0.012)
    m.cni("ADD", 11, json.dumps({"code": 11, "msg": "try again"}).encode(), 0.002)
    m.cni("BOGUS", 1, b"not json", 0.0)
    m.add_steps("add", {"ipam_ms": 1.5, "render_ms": 0.5, "dataplane_ms": 8.0, "total_ms": 11.0})
    m.add_steps("del", {"total_ms": 5.0})  # DEL steps are not ADD steps
    txn = rec.TxnRecord(1, "change", "cni add", 0.0, 2.5, [rec.OpRecord("create", "k", "r", True),
                                                           rec.OpRecord("delete", "j", "r", False, "EPERM")])
    m.transaction(txn)
    s = samples(m)
    assert s[("contiv_cni_requests_total", frozenset({("command", "ADD"), ("result", "ok")}))] == 1
    assert s[("contiv_cni_requests_total", frozenset({("command", "ADD"), ("result", "11")}))] == 1
    assert s[("contiv_cni_requests_total", frozenset({("command", "invalid"), ("result", "error")}))] == 1
    assert s[("contiv_cni_request_seconds_count", frozenset({("command", "ADD")}))] == 2
    assert s[("contiv_cni_add_step_seconds_sum", frozenset({("step", "dataplane")}))] == pytest.approx(0.008)
    assert s[("contiv_cni_add_step_seconds_count", frozenset({("step", "total")}))] == 1
    assert s[("contiv_reconciler_transactions_total", frozenset({("kind", "change"), ("result", "failed")}))] == 1
    assert s[("contiv_reconciler_operations_total", frozenset({("operation", "delete"), ("result", "failed")}))] == 1
    assert s[("contiv_reconciler_transaction_seconds_sum", frozenset({("kind", "change")}))] == 0.0025


def test_a_scrape_reads_what_the_agent_holds_now():
    a = Stub()
    m = Metrics(a)
    s = samples(m)
    assert s[("contiv_agent_ready", frozenset())] == 1
    assert s[("contiv_applied_revision", frozenset())] == 42
    assert s[("contiv_values", frozenset({("state", "failed")}))] == 1
    pod_rx = frozenset({("interface", "cv1"), ("owner", "shop/web-1"), ("direction", "rx")})
    assert s[("contiv_interface_packets_total", pod_rx)] == 10
    assert s[("contiv_interface_drops_total", pod_rx)] == 3
    a.applied_revision, a.ready = 43, False
    s = samples(m)
    assert s[("contiv_applied_revision", frozenset())] == 43 and s[("contiv_agent_ready", frozenset())] == 0


def test_a_failing_counter_read_leaves_the_other_metrics():
    a = Stub()
    a.plane.counters = lambda pods: 1 / 0
    s = samples(Metrics(a))
    assert s[("contiv_applied_revision", frozenset())] == 42
    assert not [k for k in s if k[0].startswith("contiv_interface_")]


def test_the_endpoint_serves_the_text_format_and_stops(monkeypatch):
    # binding must not ask DNS for the address's name (http.server's getfqdn):
    # on a node without DNS that was 10 s of the agent's start-up
    monkeypatch.setattr(socket, "getfqdn", lambda *a: pytest.fail("getfqdn called"))
    m = Metrics(Stub())
    # a free port (port 0 is refused by the boundary check): ask the kernel for one
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m.start(f"127.0.0.1:{port}")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"contiv_cni_requests", "contiv_values", "contiv_interface_packets"} <= names
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert e.value.code == 404
    finally:
        m.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize("address,want", [("0.0.0.0:9402", ("0.0.0.0", 9402)), ("[::1]:80", ("::1", 80))])
def test_addresses(address, want):
    assert parse_address(address) == want


@pytest.mark.parametrize("address", ["9402", "localhost:9402", "0.0.0.0:0", "0.0.0.0:70000", "0.0.0.0:x", ":9402"])
def test_bad_metrics_addresses_are_refused_naming_the_key(address):
    with pytest.raises(InvalidInput) as e:
        AgentConfig(node="n1", metrics_address=address).validated()
    assert "metrics_address" in e.value.message
