"""One fixed record per endpoint of the local API, every field filled: what
tests/unit/test_api_doc.py checks against docs/api.yaml and sends through a
real API server (not collected)."""
from __future__ import annotations

from agent.model import api as rec
from agent.model.diag import InterfaceCounters, SocketInfo, TracedPacket, TraceFlow, TraceStep
from agent.model.records import AgentStatus, Allocation, NodeInfo
from agent.model.stn import StnEntry, StnState, StnStatus

NODE = NodeInfo("node1", 1, "192.168.56.10", ("10.1.1.0/24",), ("10.1.1.1",), "02:c0:00:00:00:01",
                "linux", ("192.168.56.10",))
ALLOC = Allocation("node1", "3f9c2a7d1e5b", "eth0", ("10.1.1.2/32",), "/var/run/netns/p", "default",
                   "web-1", 1795808756.5, 1400)
TXN = rec.TxnRecord(7, "resync", "resync requested through the API", 1795808776.25, 0.5,
                    [rec.OpRecord("create", "linux/route/10.1.1.2/32", "drift: missing in data plane",
                                  True, "", 0.25),
                     rec.OpRecord("delete", "linux/route/10.1.1.3/32", "found in data plane, not desired",
                                  False, "EPERM", 0.125)],
                    {"linux/podroute/x": "waiting for linux/veth/x (pod-interface-exists)"},
                    {"linux/route/bad": "invalid prefix"})
ISOLATION = rec.Isolation(True, ("shop/db-allow-web",),
                          (rec.RuleInfo("shop/db-allow-web ingress[0]", ["namespace shop pods {app=web}"],
                                        ("TCP/postgres",)),),
                          {"shop/bad": "unknown operator Equals"})
FLOW = TraceFlow("TCP", "10.1.1.2", 61000, "10.96.0.10", 80)
FIXED = {
    "health": rec.Health("node1", True, 0, "", 3),
    "status": rec.NodeStatus(AgentStatus("node1", 10, True, 8379, 1795808745.25, 1795808772.5, "linux", 0,
                                         "", "0.1.0"),
                             NODE, 1450, "eth0", {"configured": 6, "pending": 0},
                             {"time": 1795808745.5, "seq": 1, "operations": 2, "errors": 0},
                             {"pod": 1, "registry": 1}, {"node": "node1", "mtu": 0},
                             {"reachable": True, "error": "", "checked": 1795808772.5},
                             StnStatus("/var/lib/contiv/stn", (StnEntry(
                                 StnState("eth0", "vpp", "confirmed", 1795808745.5, "stn-host", 1795808805.5,
                                          "192.168.56.1", 1795808746.0, "", 0),
                                 ("192.168.56.10/24",), "192.168.56.1",
                                 "/var/lib/contiv/stn/eth0.snapshot.json"),), ())),
    "stn_sync": rec.StnSync("eth0", True, ""),
    "ipam": rec.IpamInfo("node1", "10.1.0.0/16", "10.1.1.0/24", 253, 1, 252, ("10.1.1.1",), (ALLOC,)),
    "ipam_gc": rec.GcResult((ALLOC,)),
    "pods": rec.PodList("node1", (rec.PodStatus("default/web-1", "default", "web-1", "3f9c2a7d1e5b", "eth0",
                                                ("10.1.1.2/32",), "/var/run/netns/p", "cv7a55dd20214",
                                                1795808756.5, "ok",
                                                {"pod": "default/web-1", "add": {"total_ms": 7.5}}),)),
    "nodes": rec.NodeList((NODE,)),
    "state": rec.StateList((rec.ValueState("linux/podroute/cv7a55dd20214/0.0.0.0/0", "pending", "linux-podroute",
                                           {"dst": "0.0.0.0/0", "onlink": True},
                                           ({"label": "pod-interface-exists", "key": "linux/veth/cv7a55dd20214"},),
                                           "netlink: EEXIST", 2, "waiting for linux/veth/cv7a55dd20214"),)),
    "desired": rec.DesiredValues({"linux/veth/cv7a55dd20214": {"host_if": "cv7a55dd20214", "mtu": 1450}}),
    "plan": rec.PlanRecord((rec.PlannedOp("create", "linux/route/10.1.1.2/32", "drift: missing in data plane",
                                          {"dst": "10.1.1.2/32"}),),
                           {"linux/podroute/x": "waiting"}, {"linux/route/bad": "invalid prefix"}),
    "resync": TXN,
    "history": rec.History((TXN, rec.TxnRecord(8, "change", "cni add default/web-1", 1795808777.5))),
    "services": rec.ServiceList((rec.ServiceInfo(
        "shop/web", "shop", "web", "NodePort", "10.96.0.2", ("192.0.2.7",), "ClientIP", "Local", "Cluster",
        (rec.ServicePortInfo("http", "TCP",
                             (rec.FrontendInfo("cluster-ip", "10.96.0.2", 80),
                              rec.FrontendInfo("node-port", "*node*", 30080)),
                             (rec.EndpointInfo("10.1.1.2", 8080, "node1", True, "shop/web-1", True),
                              rec.EndpointInfo("10.1.2.2", 8080, "node2", False, "shop/web-2", False))),),
        rec.ServiceDataplane(3, "programmed", ("10.96.0.2 . tcp . 80 -> goto svc-x",)),
        ("port 2: node port 99999 outside the range",)),)),
    "policies": rec.PolicyList((rec.PodPolicies("shop/db", "10.1.2.3", "node1", ISOLATION,
                                                rec.Isolation(False, (), (), {})),)),
    "explain": rec.Explanation("tools/client", "shop/db", 5432, "UDP", False, "denied: shop/db is isolated",
                               (rec.ExplainStep("egress", True, "not isolated for egress"),
                                rec.ExplainStep("ingress", False, "denied", "shop/db-allow-web",
                                                "shop/db-allow-web ingress[0]"))),
    "netstat": rec.Netstat("node1", "linux", 1765000000.25, (
        InterfaceCounters("cv0a1b2c3d4e5f", "shop/web-1", 10, 980, 0, 0, 12, 1100, 1, 0),)),
    "sockets": rec.PodSockets("shop/web-1", "node1", "/var/run/netns/cni-1", (
        SocketInfo("tcp", "LISTEN", "0.0.0.0", 8080, "0.0.0.0", 0, 0, 128, 0, 4242),)),
    "sessions": rec.SessionList("node1", "linux", 3, 262144, (
        rec.NamedSession("tcp", "10.1.1.2", 40000, "10.96.0.10", 80, "10.1.2.3", 8080, "ESTABLISHED",
                         431999, 6, 420, "tools/client", "shop/web", "http", "shop/web-2"),),
        (rec.ServiceSessions("shop/web", 1, {"shop/web-2": 1}),)),
    "trace_start": rec.TraceHandle("node1", "linux", "5f0c1d2e3a4b"),
    "trace_probe": rec.ProbeRecord("tools/client", "node1", FLOW, False, "timeout: no answer", 1000.5),
    "trace_collect": rec.TraceSegment("node1", "linux", FLOW, (
        TracedPacket("request", "TCP", "10.1.1.2", 61000, "10.96.0.10", 80, (
            TraceStep("prerouting", "in", "", "", "cv0a1b2c3d4e5f", "", "from pod tools/client"),
            TraceStep("ip contiv nat-prerouting", "service", "DNAT 10.96.0.10:80 -> 10.1.2.3:8080", "", "", "",
                      "Service shop/web 10.96.0.10:80 (http) -> pod shop/web-2 (10.1.2.3) port 8080"),
            TraceStep("ip contiv pol-ingress", "policy", "pol-ingress -> grp-i-1 rule 9", "drop", "", "ingress",
                      "denied: shop/web-2 is isolated for ingress by policy shop/deny-all"))),)),
    "dataplane_cli": rec.CliOutput("node1", "vpp", "show version", "vpp v26.10-rc0\n"),
    "dataplane_dump": rec.DumpResult("node1", "vpp", "vxlan", (
        {"interface": "vxlan_tunnel2", "src": "192.168.56.101", "dst": "192.168.56.102", "vni": 10},)),
}
CNI_REPLY = rec.CNIReply(1, b'{"cniVersion":"1.1.0","code":4,"msg":"bad netns"}')
