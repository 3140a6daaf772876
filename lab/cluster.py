"""A lab's life: up (underlay, nodes, etcd, agents) and down (everything gone).

Topology of lab ``L`` with N nodes::

    netns L-underlay:  bridge br0 (underlay gateway, e.g. 192.168.56.1/24)
                       etcd listening on the gateway address and on a unix
                       socket in the lab directory (reachable from any netns)
    netns L-nodeK:     eth0 (192.168.56.10+K) on br0, the agent of nodeK
    netns L-pod-NS.P:  one per pod, wired by the real contiv-cni

The state file records what was made; ``down`` does not rely on it alone: it
also removes every namespace named ``L-*`` and every process whose command
line names the lab directory, so a half-created or crashed lab goes too.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from agent.errors import InvalidInput, NotFound, Unavailable
from cni import install as cni_install
from lab import sysnet
from lab.paths import LabPaths, check_lab_name

ETCD_PORT = 2379
METRICS_PORT = 9402  # each agent's Prometheus metrics, on its node address (the underlay reaches it)
#: a VPP node's second NIC, taken by VPP (its uplink)
VPP_UPLINK = "vpp0"


def node_dataplanes(spec: str, nodes: int) -> dict[str, str]:
    """``linux``, ``vpp``, or per node ``node1=vpp,node2=linux`` (nodes not
    named get linux) -> node name -> data plane."""
    names = [f"node{i}" for i in range(1, nodes + 1)]
    if spec in ("linux", "vpp"):
        return dict.fromkeys(names, spec)
    out = dict.fromkeys(names, "linux")
    for part in spec.split(","):
        node, eq, plane = part.strip().partition("=")
        if not eq or plane not in ("linux", "vpp"):
            raise InvalidInput(f"--dataplane {spec!r}: use linux, vpp, or node1=vpp,node2=linux")
        if node not in out:
            raise InvalidInput(f"--dataplane {spec!r}: the lab has no node {node!r} "
                               f"(nodes: {', '.join(names)})")
        out[node] = plane
    return out

#: A progress callback: (what, done, total), e.g. ("nodes ready", 2, 3).
Step = Callable[[str, int, int], None]


@dataclass
class NodeState:
    """``ip``: the node's own (management) address; ``data_ip``: where its
    data plane takes traffic for node ports and tunnels -- the same on a
    Linux node, VPP's uplink address on a VPP node."""

    name: str
    netns: str
    ip: str
    socket: str
    pid: int = 0
    dataplane: str = "linux"
    data_ip: str = ""
    vpp_pid: int = 0

    @property
    def service_ip(self) -> str:
        """The address node ports answer on."""
        return self.data_ip or self.ip


@dataclass
class LabState:
    name: str
    nodes: list[NodeState]
    dataplane: str = "linux"
    pod_cidr: str = "10.1.0.0/16"
    underlay: str = "192.168.56.0/24"
    etcd_pid: int = 0
    responder_pid: int = 0
    created: float = 0.0
    complete: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.underlay).network_address + 1)

    @property
    def etcd_tcp(self) -> str:
        return f"http://{self.gateway}:{ETCD_PORT}"

    def node(self, name: str) -> NodeState:
        for n in self.nodes:
            if n.name == name:
                return n
        raise NotFound(f"lab {self.name} has no node {name!r}",
                       hint="nodes: " + ", ".join(n.name for n in self.nodes))

    def save(self, paths: LabPaths) -> None:
        tmp = paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, paths.state)

    @classmethod
    def load(cls, paths: LabPaths) -> "LabState":
        try:
            data = json.loads(paths.state.read_text())
        except FileNotFoundError:
            raise NotFound(f"no lab named {paths.name!r}",
                           hint="create one with `contivctl lab up`") from None
        except ValueError as e:
            raise InvalidInput(f"lab state {paths.state} is corrupt: {e}",
                               hint=f"`contivctl lab down --name {paths.name}` removes it") from None
        data["nodes"] = [NodeState(**n) for n in data["nodes"]]
        return cls(**data)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still "exists"; it is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def lab_processes(root: Path) -> list[int]:
    """Every process whose command line names the lab directory."""
    needle = str(root) + "/"
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != me and needle in _cmdline(int(d)) + " ":
            out.append(int(d))
    return out


def stop_processes(pids: list[int], timeout: float = 5.0) -> None:
    pids = [p for p in pids if _pid_alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
        for p in pids:  # reap our own children so they do not linger as zombies
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
    for p in pids:
        if _pid_alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def python_cmd() -> list[str]:
    return [sys.executable, "-m"]


class Lab:
    """Operations on the lab named ``name``; see the module docstring."""

    def __init__(self, name: str = "lab") -> None:
        self.paths = LabPaths(check_lab_name(name))

    @property
    def name(self) -> str:
        return self.paths.name

    def exists(self) -> bool:
        return self.paths.state.exists()

    def state(self) -> LabState:
        return LabState.load(self.paths)

    # ------------------------------------------------------------------ up
    def up(self, *, nodes: int = 3, dataplane: str = "linux", pod_cidr: str = "10.1.0.0/16",
           underlay: str = "192.168.56.0/24", timeout: float = 60.0,
           progress: Callable[[str], None] | None = None,
           step: Step | None = None) -> tuple[LabState, bool]:
        """Create the lab; returns (state, created). An existing lab is left as is.

        ``progress`` receives one message per phase; ``step`` (what, done,
        total) counts ``nodes started`` and ``nodes ready``. The library
        prints nothing: the caller decides how to show them."""
        say = progress or (lambda _m: None)
        tick = step or (lambda _w, _d, _t: None)
        if self.exists():
            return self.state(), False
        if not 1 <= nodes <= 32:
            raise InvalidInput(f"--nodes {nodes}: a lab has 1 to 32 nodes")
        planes = node_dataplanes(dataplane, nodes)
        if "vpp" in planes.values():
            from agent.vpp.process import availability  # noqa: PLC0415
            ok, why = availability()
            if not ok:
                raise InvalidInput(f"--dataplane {dataplane}: {why}", hint="docs/vpp.md")
        try:
            ul = ipaddress.ip_network(underlay)
            ipaddress.ip_network(pod_cidr)
        except ValueError as e:
            raise InvalidInput(f"bad CIDR: {e}") from None
        if ul.version != 4 or ul.num_addresses < nodes + 16:
            raise InvalidInput(f"--underlay {underlay}: need an IPv4 network with room for "
                               f"{nodes} nodes")
        if sysnet.netns_list(self.paths.ns_prefix):
            raise InvalidInput(f"namespaces named {self.paths.ns_prefix}* exist but lab "
                               f"{self.name} has no state", hint=f"run `contivctl lab down --name {self.name}`")
        self.paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = LabState(self.name, [], dataplane, pod_cidr, underlay, created=time.time())
        for i in range(1, nodes + 1):
            name = f"node{i}"
            vpp = planes[name] == "vpp"
            st.nodes.append(NodeState(name, self.paths.node_ns(name),
                                      str(ul.network_address + 9 + i), self.paths.agent_socket(name),
                                      dataplane=planes[name],
                                      data_ip=str(ul.network_address + 99 + i) if vpp else ""))
        st.save(self.paths)
        try:
            say(f"underlay {underlay} and {nodes} node namespaces")
            self._make_network(st)
            say("etcd")
            self._start_etcd(st)
            st.save(self.paths)
            self._install_cni(st)
            if any(n.dataplane == "vpp" for n in st.nodes):
                say("VPP")
                for n in st.nodes:
                    if n.dataplane == "vpp":
                        n.vpp_pid = self._start_vpp(n)
                st.save(self.paths)
            say("agents")
            for i, n in enumerate(st.nodes, 1):
                n.pid = self._start_agent(st, n)
                tick("nodes started", i, nodes)
            st.save(self.paths)
            self._wait_agents(st, timeout, say, tick)
            from lab.responder import start_responder  # noqa: PLC0415
            st.responder_pid = start_responder(self.paths)
            st.complete = True
            st.save(self.paths)
            return st, True
        except BaseException:
            say("failed; cleaning up")
            self.down()
            raise

    def _make_network(self, st: LabState) -> None:
        ul = self.paths.underlay_ns
        prefix = ipaddress.ip_network(st.underlay).prefixlen
        sysnet.netns_add(ul)
        lines = ["link add br0 type bridge", f"addr add {st.gateway}/{prefix} dev br0", "link set br0 up"]
        for n in st.nodes:
            sysnet.netns_add(n.netns)
            port = f"u-{n.name}"[:15]
            lines += [f"link add {port} type veth peer name eth0 netns {n.netns}",
                      f"link set {port} master br0", f"link set {port} up"]
            if n.dataplane == "vpp":
                # a second NIC for VPP (its uplink): the node's own stack keeps
                # eth0 for the control plane (etcd, the API), as on a two-NIC node
                data = f"v-{n.name}"[:15]
                lines += [f"link add {data} type veth peer name {VPP_UPLINK} netns {n.netns}",
                          f"link set {data} master br0", f"link set {data} up"]
        sysnet.ip_batch(lines, netns=ul)
        for n in st.nodes:
            # a default route, as real nodes have: traffic to addresses nobody
            # routes (e.g. a Service IP without endpoints) reaches the forward
            # hook, where the agent can reject it
            sysnet.ip_batch([f"addr add {n.ip}/{prefix} dev eth0", "link set eth0 up",
                             f"route add default via {st.gateway}"]
                            + ([f"link set {VPP_UPLINK} up"] if n.dataplane == "vpp" else []),
                            netns=n.netns)
        if any(n.dataplane == "vpp" for n in st.nodes):
            # Virtual links hand on TCP/UDP checksums unfinished (the NIC of a
            # real node would finish them). VPP reads raw frames through
            # af_packet and cannot: what the underlay's client and the other
            # nodes send must leave with its checksums done.
            sysnet.tx_checksum_off("br0", netns=ul)
            for n in st.nodes:
                sysnet.tx_checksum_off("eth0", netns=n.netns)

    def _start_etcd(self, st: LabState) -> None:
        from agent.store.embedded import EmbeddedEtcd  # noqa: PLC0415
        etcd = EmbeddedEtcd(self.paths.etcd_dir, client_url=st.etcd_tcp,
                            peer_url="http://127.0.0.1:2380", unix_socket=self.paths.etcd_socket,
                            name=self.name, log_file=self.paths.root / "etcd.log")
        etcd.start(netns=self.paths.underlay_ns)
        st.etcd_pid = etcd.proc.pid
        etcd.proc = None  # detach: the lab's etcd outlives this command

    def _install_cni(self, st: LabState) -> None:
        self.paths.cni_bin.mkdir(parents=True, exist_ok=True)
        for n in st.nodes:
            self.paths.node_dir(n.name).mkdir(parents=True, exist_ok=True)
            cni_install.install(str(self.paths.cni_bin), str(self.paths.cni_conf_dir(n.name)),
                                n.socket, chain=[])

    def _start_vpp(self, n: NodeState) -> int:
        """The node's VPP, in its namespace, with its sockets in the node's
        directory (no DPDK, no hugepages; interrupt mode: an idle VPP does not
        spin). It outlives this command, like the agents."""
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        vpp = VppProcess(self.paths.vpp_dir(n.name), name=f"{self.name}-{n.name}", netns=n.netns)
        vpp.start(timeout=30)
        return vpp.pid

    def _start_agent(self, st: LabState, n: NodeState) -> int:
        cmd = ["ip", "netns", "exec", n.netns] + python_cmd() + [
            "contivctl.main", "agent", "run", "--node", n.name, "--etcd", st.etcd_tcp,
            "--socket", n.socket, "--underlay-if", "eth0", "--pod-cidr", st.pod_cidr, "--dataplane", n.dataplane,
            "--metrics-address", f"{n.ip}:{METRICS_PORT}", "--stn-dir", str(self.paths.stn_dir(n.name))]
        if n.dataplane == "vpp":
            d = self.paths.vpp_dir(n.name)
            prefix = ipaddress.ip_network(st.underlay).prefixlen
            cmd += ["--vpp-uplink", VPP_UPLINK, "--vpp-uplink-cidr", f"{n.data_ip}/{prefix}",
                    "--vpp-uplink-gateway", st.gateway, "--vpp-api-socket", str(d / "api.sock"),
                    "--vpp-stats-socket", str(d / "stats.sock")]
        log = open(self.paths.agent_log(n.name), "ab")
        try:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        return p.pid

    def _wait_agents(self, st: LabState, timeout: float, say: Callable[[str], None],
                     step: Step | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = {n.name for n in st.nodes}
        if step:
            step("nodes ready", 0, len(st.nodes))
        last: dict[str, str] = {}
        while pending:
            for n in st.nodes:
                if n.name not in pending:
                    continue
                ready, why = self._probe_ready(n, health_timeout=2)
                if ready:
                    pending.discard(n.name)
                    say(f"agent {n.name} ready")
                    if step:
                        step("nodes ready", len(st.nodes) - len(pending), len(st.nodes))
                else:
                    last[n.name] = why
            if pending and time.monotonic() > deadline:
                why = "; ".join(f"{n}: {last.get(n, '?')}" for n in sorted(pending))
                # the clean-up that follows removes the logs: quote them now
                tails = "".join(f"\n--- {n} agent.log (end) ---\n{self._log_tail(n, 600)}"
                                for n in sorted(pending))
                raise Unavailable(f"agents not ready after {timeout:.0f}s ({why}){tails}")
            if pending:
                time.sleep(0.1)

    def wait_ready(self, node: str, timeout: float, poll: float = 0.1, *, health_timeout: float = 2.0) -> None:
        """Until ``node``'s agent (e.g. after :meth:`start_agent`) is ready, asking
        every ``poll`` s; Unavailable if it exits or is not ready in ``timeout`` s."""
        n = self.state().node(node)
        deadline = time.monotonic() + timeout
        while True:
            ready, why = self._probe_ready(n, health_timeout)
            if ready:
                return
            if time.monotonic() > deadline:
                raise Unavailable(f"the agent of {node} is not ready after {timeout:.0f}s ({why})\n"
                                  f"--- {node} agent.log (end) ---\n{self._log_tail(node, 600)}")
            time.sleep(poll)

    def _probe_ready(self, n: NodeState, health_timeout: float) -> tuple[bool, str]:
        """(ready, why not) of a starting agent; Unavailable if it exited."""
        from agent.api.client import AgentClient  # noqa: PLC0415
        if not _pid_alive(n.pid):
            raise Unavailable(f"the agent of {n.name} exited during start-up:\n"
                              f"{self._log_tail(n.name, 800)}")
        try:
            h = AgentClient(n.socket, timeout=health_timeout).health()
        except Exception as e:  # noqa: BLE001 -- not up yet (a starting agent's socket may not exist)
            return False, getattr(e, "message", str(e))
        return h.ready, h.message

    def _log_tail(self, node: str, size: int) -> str:
        try:
            return self.paths.agent_log(node).read_text(errors="replace")[-size:] or "(empty)"
        except OSError as e:
            return f"(unreadable: {e.strerror})"

    # ------------------------------------------------------------------ down
    def down(self, step: Step | None = None) -> dict:
        """Remove every process, namespace and file of the lab; idempotent.

        ``step`` (what, done, total) counts ``processes stopped`` and
        ``namespaces removed``."""
        tick = step or (lambda _w, _d, _t: None)
        removed = {"processes": 0, "namespaces": 0, "files": False}
        # Every lab process (agents, etcd, responder) names the lab directory on
        # its command line; matching on that, not on recorded pids, also finds
        # the processes of a lab whose state file never got written.
        pids = set(lab_processes(self.paths.root))
        tick("processes stopped", 0, len(pids))
        stop_processes(sorted(pids))
        tick("processes stopped", len(pids), len(pids))
        removed["processes"] = len(pids)
        namespaces = sysnet.netns_list(self.paths.ns_prefix)
        for i, ns in enumerate(namespaces, 1):
            # namespaces must be empty of processes first: kill stragglers in them
            stop_processes(sysnet.netns_pids(ns), timeout=2)
            sysnet.netns_del(ns)
            removed["namespaces"] += 1
            tick("namespaces removed", i, len(namespaces))
        if self.paths.root.exists():
            shutil.rmtree(self.paths.root, ignore_errors=True)
            removed["files"] = True
        return removed

    # ------------------------------------------------------------------ faults
    # A node's agent and VPP one by one: an agent riding out a VPP restart, or starting first.
    def stop_agent(self, node: str) -> None:
        st = self.state()
        n = st.node(node)
        stop_processes([n.pid])
        n.pid = 0
        st.save(self.paths)

    def start_agent(self, node: str) -> int:
        """Start the node's agent again; does not wait for it to be ready."""
        st = self.state()
        n = st.node(node)
        if _pid_alive(n.pid):
            raise InvalidInput(f"the agent of {node} is running (pid {n.pid})")
        n.pid = self._start_agent(st, n)
        st.save(self.paths)
        return n.pid

    def stop_vpp(self, node: str, *, kill: bool = True) -> None:
        """Stop the VPP of a VPP node -- SIGKILL by default, as a crash would."""
        st = self.state()
        n = st.node(node)
        if n.dataplane != "vpp":
            raise InvalidInput(f"{node} runs the {n.dataplane} data plane, not VPP")
        if kill and _pid_alive(n.vpp_pid):
            os.kill(n.vpp_pid, signal.SIGKILL)
        stop_processes([n.vpp_pid])
        n.vpp_pid = 0
        st.save(self.paths)

    def start_vpp(self, node: str) -> int:
        st = self.state()
        n = st.node(node)
        if n.dataplane != "vpp":
            raise InvalidInput(f"{node} runs the {n.dataplane} data plane, not VPP")
        if _pid_alive(n.vpp_pid):
            raise InvalidInput(f"the VPP of {node} is running (pid {n.vpp_pid})")
        n.vpp_pid = self._start_vpp(n)
        st.save(self.paths)
        return n.vpp_pid

    # ------------------------------------------------------------------ agents
    def client(self, node: str):
        from agent.api.client import AgentClient  # noqa: PLC0415
        return AgentClient(self.state().node(node).socket)

    def store(self):
        from agent.store.etcd import EtcdStore  # noqa: PLC0415
        return EtcdStore("unix://" + self.paths.etcd_socket)

    def conflist(self, node: str) -> dict:
        return json.loads((self.paths.cni_conf_dir(node) / cni_install.CONF_NAME).read_text())

    def cni_path(self) -> list[str]:
        return [str(self.paths.cni_bin), "/usr/lib/cni", "/opt/cni/bin"]
