"""A pod's memif on a VPP lab (real VPPs, real agents, real packets; root).

Pod ``m`` asks for a memif (``contiv.io/memif: "true"``); its program is a
second VPP started inside the pod's network namespace, which connects to
the pod's socket ``@contiv/memif-eth0`` as the memif slave and takes the
memif address the agent allocated -- the recipe docs/vpp.md gives. Checked
with pings in both directions: from pods and the nodes' own stacks on both
nodes to the memif address, and from the pod's VPP out to them; a policy that
isolates ``m`` filters its memif as it filters its eth0; VPP restarting
under the agent gets the memif back; deleting the pod leaves no memif,
socket or address behind. A memif on a Linux node is refused in one line.
"""
from __future__ import annotations

import ipaddress
import subprocess
import time

import pytest

from agent.vpp.process import availability
from tests.e2e.labtools import kube_lab, wait_until

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp, pytest.mark.e2e,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]
NS = "memif"
WAIT = 30.0  # liveness bounds, not performance claims


def pod(name, node, labels, memif=False):
    md = {"name": name, "namespace": NS, "labels": labels}
    if memif:
        md["annotations"] = {"contiv.io/memif": "true"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab"}]}}


MANIFEST = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            pod("m", "node1", {"app": "m"}, memif=True), pod("a", "node1", {"role": "friend"}),
            pod("b", "node2", {"role": "friend"}), pod("c", "node1", {"role": "stranger"})]
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "friends-only", "namespace": NS},
          "spec": {"podSelector": {"matchLabels": {"app": "m"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}]}]}}


class PodVpp:
    """The memif pod's program: a VPP in the pod's namespace, the memif's slave."""

    def __init__(self, lab, netns: str, tmp) -> None:
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        # interrupt mode, as the agent makes its side: no core spinning per pod
        self.proc = VppProcess(tmp / "podvpp", name="podvpp" + lab.name[-6:], netns=netns,
                               extra_config="interface { default-rx-mode interrupt }\n")
        self.cli_socket = str(self.proc.config.cli_socket)
        self.vppctl = str(self.proc.install.prefix / "bin" / "vppctl")

    def cli(self, command: str) -> str:
        return subprocess.run([self.vppctl, "-s", self.cli_socket, *command.split()], check=True,
                              capture_output=True, text=True, timeout=20).stdout

    def start(self, address: str, gateway: str) -> None:
        """Slave on the pod's socket, the address as a /32, the gateway
        attached (so the node's VPP asking for the address is answered) and
        the default route via it -- what a pod's eth0 gets, in VPP's words."""
        self.proc.start()
        for c in ("create memif socket id 1 filename abstract:contiv/memif-eth0",
                  "create interface memif socket-id 1 id 0 slave",
                  "set interface mtu 1450 memif1/0",
                  f"set interface ip address memif1/0 {address}/32",
                  "set interface state memif1/0 up",
                  f"ip route add {gateway}/32 via memif1/0",
                  f"ip route add 0.0.0.0/0 via {gateway} memif1/0"):
            self.cli(c)

    def pings(self, dst: str) -> bool:
        out = self.cli(f"ping {dst} repeat 2 interval 0.2")
        return " 0 received" not in out and "received" in out

    def close(self) -> None:
        self.proc.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with kube_lab(MANIFEST, "vpp", timeout=WAIT) as (lab, kube):
        podvpp = None
        try:
            (m,) = [p for p in lab.client("node1").pods().pods if p.pod == f"{NS}/m"]
            gateway = lab.client("node1").ipam().gateway[0]
            podvpp = PodVpp(lab, lab.paths.pod_ns(NS, "m"), tmp_path_factory.mktemp("memif"))
            podvpp.start(m.memif.split("/")[0], gateway)
            yield lab, kube, m, podvpp
        finally:
            if podvpp is not None:
                podvpp.close()


def ip_of(kube, name: str) -> str:
    return kube.get("pod", NS, name)["status"]["podIP"]


def ping(lab, src: str, dst: str) -> bool:
    """Pings from pod ``src`` (or ``node:NAME``: the node's own stack): one
    answer of three counts -- the first packet to a new neighbour may be
    the one VPP drops while it asks for the neighbour's MAC."""
    netns = (lab.paths.node_ns(src[5:]) if src.startswith("node:") else lab.paths.pod_ns(NS, src))
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "3", "-i", "0.2", "-W", "1", dst],
                          capture_output=True).returncode == 0


def eventually(check, what: str, timeout: float = WAIT) -> None:
    wait_until(lambda: check() or None, what, timeout)


def test_the_memif_gets_its_own_address_and_socket(env):
    lab, kube, m, _ = env
    memif = ipaddress.ip_interface(m.memif)
    assert memif.network.prefixlen == 32 and str(memif.ip) != ip_of(kube, "m")
    assert memif.ip in ipaddress.ip_network(lab.client("node1").ipam().subnet)
    values = {v.key: v for v in lab.client("node1").state().values}
    name = "m" + ipaddress.ip_address(ip_of(kube, "m")).packed.hex()
    iface = values[f"vpp/interface/{name}"]
    assert iface.state == "configured" and iface.value["kind"] == "memif"
    (sock,) = [v for k, v in values.items() if k.startswith("vpp/memifsock/")]
    assert sock.value["filename"].startswith("abstract:contiv/memif-eth0,netns_name=")
    assert sock.state == "configured"
    # the other pods asked for nothing: no memif
    assert [k for k in values if k.startswith("vpp/interface/m")] == [f"vpp/interface/{name}"]


def test_pods_and_nodes_on_both_nodes_reach_the_memif_and_back(env):
    lab, kube, m, podvpp = env
    addr = m.memif.split("/")[0]
    eventually(lambda: "up" in podvpp.cli("show interface memif1/0").lower()
               and podvpp.pings(ip_of(kube, "a")), "the pod's VPP to reach pod a over the memif")
    for src in ("a", "b", "c", "node:node1", "node:node2"):
        assert ping(lab, src, addr), f"{src} -> memif {addr}"
    for dst in ("a", "b", "c"):
        assert podvpp.pings(ip_of(kube, dst)), f"memif -> {dst}"
    assert ping(lab, "a", ip_of(kube, "m")), "the pod's eth0 works as before"


def test_a_policy_isolating_the_pod_filters_its_memif_too(env):
    lab, kube, m, _ = env
    addr, eth0 = m.memif.split("/")[0], ip_of(kube, "m")
    kube.apply([POLICY], timeout=WAIT)
    try:
        eventually(lambda: not ping(lab, "c", eth0), "the policy to isolate m's eth0 from c")
        eventually(lambda: not ping(lab, "c", addr), "the policy to isolate m's memif from c")
        for src in ("a", "b"):  # admitted by the policy, on both interfaces
            assert ping(lab, src, addr) and ping(lab, src, eth0), src
        name = "m" + ipaddress.ip_address(eth0).packed.hex()
        lists = {v.key for v in lab.client("node1").state(prefix="vpp/acllist/").values}
        assert f"vpp/acllist/{name}" in lists and f"vpp/acllist/p{name[1:]}" in lists
    finally:
        kube.delete([POLICY], timeout=WAIT)
    eventually(lambda: ping(lab, "c", addr), "c to reach the memif again once the policy is gone")


def test_a_vpp_restart_brings_the_memif_back(env):
    lab, kube, m, podvpp = env
    addr = m.memif.split("/")[0]
    assert ping(lab, "b", addr)
    lab.stop_vpp("node1")  # SIGKILL, as a crash
    time.sleep(0.5)
    lab.start_vpp("node1")
    eventually(lambda: ping(lab, "b", addr), "pod b to reach the memif after the resync", 60)
    assert podvpp.pings(ip_of(kube, "b"))
    assert lab.client("node1").plan().operations == (), "the resync left drift"


def test_deleting_the_pod_leaves_no_memif_socket_or_address(env):
    lab, kube, m, _ = env
    from agent.vpp.papi import VppApi  # noqa: PLC0415
    used = lab.client("node1").ipam().used
    (obj,) = [p for p in kube.list("pod", NS) if p["metadata"]["name"] == "m"]
    kube.delete([obj], timeout=WAIT)
    assert lab.client("node1").ipam().used == used - 2, "both addresses released"
    assert not [v for v in lab.client("node1").state().values
                if v.key.startswith(("vpp/memifsock/", "vpp/interface/m"))]
    with VppApi(str(lab.paths.vpp_dir("node1") / "api.sock")) as api:
        assert api.dump("memif_dump") == []
        assert [d.socket_id for d in api.dump("memif_socket_filename_dump")] == [0]


def test_a_memif_on_a_linux_node_is_refused_in_one_line():
    from lab.kube import Kube  # noqa: PLC0415
    with kube_lab([MANIFEST[0]], "linux", nodes=1, timeout=WAIT) as (lab, kube):
        with pytest.raises(Exception) as e:
            kube.apply([pod("m", "node1", {"app": "m"}, memif=True)], timeout=WAIT)
        assert "memif" in str(e.value) and "VPP" in str(e.value), e.value
        assert kube.get("pod", NS, "m") is None
        assert lab.client("node1").ipam().used == 0
        assert isinstance(kube, Kube)
