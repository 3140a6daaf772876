"""agent/builders/sessions.py: a data plane's sessions named in Kubernetes
terms -- client pod, Service and port, backend pod -- and their summary."""
from __future__ import annotations

from agent.builders.sessions import name_sessions, select, summary
from agent.model import api as rec
from agent.model.diag import Session

WEB = rec.ServiceInfo(
    "shop/web", "shop", "web", "NodePort", "10.96.0.2", ("203.0.113.7",), "None", "Cluster", "Cluster",
    (rec.ServicePortInfo("http", "TCP", (rec.FrontendInfo("cluster-ip", "10.96.0.2", 80),
                                         rec.FrontendInfo("external-ip", "203.0.113.7", 80),
                                         rec.FrontendInfo("node-port", "*node*", 30080)), ()),
     rec.ServicePortInfo("", "UDP", (rec.FrontendInfo("cluster-ip", "10.96.0.2", 53),), ())),
    rec.ServiceDataplane(0, "programmed", ()), ())
PODS = {"10.1.1.2": "shop/web-1", "10.1.2.2": "shop/web-2", "10.1.1.3": "tools/client"}
NODE_IPS = ("192.168.56.11",)


def named(*sessions: Session) -> list[rec.NamedSession]:
    return name_sessions(sessions, [WEB], PODS, NODE_IPS)


def test_a_cluster_ip_session_names_client_service_port_and_backend():
    (n,) = named(Session("tcp", "10.1.1.3", 40000, "10.96.0.2", 80, "10.1.2.2", 8080, "ESTABLISHED", 99))
    assert (n.client, n.service, n.service_port, n.backend) == ("tools/client", "shop/web", "http", "shop/web-2")
    assert (n.state, n.timeout, n.reply_src, n.reply_sport) == ("ESTABLISHED", 99, "10.1.2.2", 8080)


def test_the_protocol_must_match_and_an_unnamed_port_is_protocol_slash_port():
    udp, tcp = named(Session("udp", "10.1.1.3", 5353, "10.96.0.2", 53, "10.1.1.2", 5353),
                     Session("tcp", "10.1.1.3", 5353, "10.96.0.2", 53, "10.1.1.2", 5353))
    assert (udp.service, udp.service_port) == ("shop/web", "UDP/53")
    assert tcp.service == "" and tcp.service_port == ""  # no TCP/53 frontend: not the Service's


def test_node_ports_answer_on_the_nodes_addresses_only():
    here, elsewhere = named(Session("tcp", "198.51.100.9", 1000, "192.168.56.11", 30080, "10.1.1.2", 8080),
                            Session("tcp", "198.51.100.9", 1000, "192.168.56.99", 30080, "192.168.56.99", 30080))
    assert (here.client, here.service, here.backend) == ("", "shop/web", "shop/web-1")  # client outside
    assert (elsewhere.service, elsewhere.backend) == ("", "")


def test_external_ip_and_untranslated_pod_to_pod():
    ext, direct = named(Session("tcp", "198.51.100.9", 1, "203.0.113.7", 80, "10.1.1.2", 8080),
                        Session("tcp", "10.1.1.3", 2, "10.1.2.2", 8080, "10.1.2.2", 8080))
    assert ext.service == "shop/web" and ext.backend == "shop/web-1"
    # nothing translated: the destination itself is who answers
    assert (direct.client, direct.service, direct.backend) == ("tools/client", "", "shop/web-2")


def test_select_by_service_and_by_pod_as_client_or_backend():
    ns = named(Session("tcp", "10.1.1.3", 1, "10.96.0.2", 80, "10.1.2.2", 8080),
               Session("tcp", "10.1.2.2", 2, "10.1.1.2", 8080, "10.1.1.2", 8080),
               Session("udp", "192.168.56.11", 3, "192.168.56.12", 4789, "192.168.56.12", 4789))
    assert [n.sport for n in select(ns, service="shop/web")] == [1]
    assert [n.sport for n in select(ns, pod="shop/web-2")] == [1, 2]  # backend of 1, client of 2
    assert [n.sport for n in select(ns, service="shop/web", pod="shop/web-1")] == []
    assert len(select(ns)) == 3


def test_summary_counts_per_service_and_backend_most_first():
    other = rec.ServiceInfo("shop/db", "shop", "db", "ClusterIP", "10.96.0.3", (), "None", None, "Cluster",
                            (rec.ServicePortInfo("pg", "TCP", (rec.FrontendInfo("cluster-ip", "10.96.0.3", 5432),),
                                                 ()),), rec.ServiceDataplane(0, "programmed", ()), ())
    ns = name_sessions([Session("tcp", "10.1.1.3", p, "10.96.0.2", 80, ip, 8080)
                        for p, ip in ((1, "10.1.2.2"), (2, "10.1.2.2"), (3, "10.1.1.2"), (4, "10.1.9.9"))] +
                       [Session("tcp", "10.1.1.3", 5, "10.96.0.3", 5432, "10.1.1.2", 5432),
                        Session("tcp", "10.1.1.3", 6, "10.1.2.2", 8080, "10.1.2.2", 8080)],
                       [WEB, other], PODS)
    assert summary(ns) == [
        rec.ServiceSessions("shop/web", 4, {"10.1.9.9": 1, "shop/web-1": 1, "shop/web-2": 2}),
        rec.ServiceSessions("shop/db", 1, {"shop/web-1": 1})]
