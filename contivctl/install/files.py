"""The files ``contivctl install node`` writes, rendered as text (pure).

No I/O and no clock: the planner diffs the text against what is on disk, so
anything varying would make every run an update. Every renderer checks all of
its input first (the agent's settings as ``agent run`` checks its file) and
raises :class:`~agent.errors.InvalidInput` naming what is wrong. The *why* of
each setting is in the files themselves, where an operator reads it.
"""
from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass, field, fields
from typing import Mapping

import yaml

from agent.config import DATAPLANES, AgentConfig
from agent.errors import InvalidInput

UNIT_NAME = "contiv-agent.service"
STN_UNIT_NAME = "contiv-stn-watch.service"
#: Characters a path may have: systemd unit files interpret whitespace,
#: quotes, backslashes, ``$`` and ``%`` (specifiers) in ExecStart=, and VPP's
#: configuration splits words on whitespace and braces.
_PATH = re.compile(r"/[A-Za-z0-9_.,+=@:~/-]*")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus its NUL
_VPP_RUN = "/run/vpp"  # VPP's own default runtime directory

#: One or two comment lines per agent setting (docs/cli.md, "agent run").
_ABOUT = {
    "node": "This node's name (a DNS-1123 subdomain), as the cluster knows it.",
    "etcd": "etcd endpoint (http://HOST:PORT, unix:///PATH, memory://); empty: a private etcd it starts.",
    "etcd_data_dir": "Data directory of that private etcd.",
    "dataplane": "Data plane: linux (veth, routes, VXLAN, nftables) or vpp (FD.io VPP, docs/vpp.md).",
    "socket": "Where the agent serves its local API (contivctl, the CNI plugin); absolute path.",
    "pod_cidr": "The cluster's pod CIDR (IPv4), the same on every node.",
    "node_prefix": "Prefix length of each node's pod subnet, taken out of pod_cidr.",
    "node_ip": "Underlay address VXLAN terminates on; empty: underlay_if's, or the default route's.",
    "underlay_if": "Underlay interface; empty: the default route's, else the first with a global IPv4.",
    "mtu": "Pod and overlay MTU, 576..9000. 0: the underlay's MTU minus the VXLAN overhead (50).",
    "vxlan_vni": "VXLAN network identifier (the same on every node).",
    "vxlan_port": "VXLAN UDP port (the same on every node).",
    "resync_interval": "Seconds between full resyncs, which repair drift in the data plane; 0: never.",
    "gc_interval": "Seconds between IPAM garbage collections (pods whose netns is gone); 0: never.",
    "history_size": "Reconciler transactions kept for `contivctl agent history`.",
    "log_level": "debug, info, warning, error or critical.",
    "service_cidr": "Services' virtual IPs (the VPP data plane routes them from the node to VPP).",
    "vpp_api_socket": "VPP data plane: VPP's binary API socket (socksvr in VPP's startup.conf).",
    "vpp_stats_socket": "VPP data plane: VPP's stats segment socket (statseg), for interface counters.",
    "vpp_uplink": "VPP data plane (required): the Linux interface VPP takes as its uplink (af_packet).",
    "vpp_uplink_cidr": "VPP data plane (required): this node's ADDRESS/PREFIX on the uplink, the VXLAN\n"
                       "endpoint other nodes tunnel to (e.g. 192.168.56.110/24).",
    "vpp_uplink_gateway": "VPP data plane: next hop beyond the uplink's subnet. Empty: none.",
    "vpp_stn": "VPP data plane: the uplink is the node's only NIC, stolen with `contivctl stn steal\n"
               "--dataplane vpp`; VPP answers for its address only while STN says so (docs/stn.md).",
    "stn_dir": "Where `contivctl stn` keeps its snapshots and state (the agent reports them).",
    "metrics_address": "Prometheus metrics at http://ADDRESS:PORT/metrics (e.g. 0.0.0.0:9402). Empty: off.",
}


@dataclass(frozen=True)
class NodeOptions:
    """What one node's files are rendered from.

    ``dataplane``: ``linux`` or ``vpp``. ``node``: the node's name.
    ``contivctl``: absolute path of the executable the agent's unit runs.
    ``config``: the agent settings the user gave (:class:`agent.config.AgentConfig`
    keys; ``node`` and ``dataplane`` there must agree with the options).
    ``config_path``: where the agent's configuration is installed.
    ``vpp_binary`` and ``vpp_startup_path``: the VPP that ``vpp.service`` runs, and
    its configuration (VPP nodes only). Paths must be absolute and free of
    whitespace, quotes, ``$`` and ``%``.
    """

    dataplane: str
    node: str
    contivctl: str
    config: Mapping[str, object] = field(default_factory=dict)
    config_path: str = "/etc/contiv/agent.yaml"
    vpp_binary: str = "/usr/bin/vpp"
    vpp_startup_path: str = "/etc/contiv/vpp/startup.conf"


def _path(value: object, what: str) -> str:
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        raise InvalidInput(f"{what} {value!r} must be an absolute path of letters, digits and _.,+=@:~/-",
                           hint="no whitespace, quotes, '$' or '%' (systemd and VPP interpret them)")
    return value


def _given(o: NodeOptions) -> dict[str, object]:
    """The user's settings, typed as :func:`agent.config.load_config` types a
    file's (it takes a path only, so its checks are mirrored here; the unit
    tests load the rendered file back through it)."""
    defaults = AgentConfig()
    known = {f.name for f in fields(AgentConfig) if f.name != "extra"}
    unknown = sorted(str(k) for k in o.config if k not in known)
    if unknown:
        raise InvalidInput(f"unknown agent setting(s) {', '.join(unknown)}",
                           hint=f"known: {', '.join(sorted(known))}")
    out: dict[str, object] = {}
    for k, v in o.config.items():
        want = type(getattr(defaults, k))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        # bool is an int subclass: YAML's true/yes/on must not pass as a number
        if (isinstance(v, bool) and want is not bool) or not isinstance(v, want):
            raise InvalidInput(f"agent setting {k}: {v!r} is not a {want.__name__}")
        # what YAML cannot hold on one line (or at all), or the agent could not run with
        if isinstance(v, str) and not v.isprintable():
            raise InvalidInput(f"agent setting {k}: {v!r} holds a control or unprintable character")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidInput(f"agent setting {k}: {v!r} is not a finite number")
        out[k] = v
    return out


def _settings(o: NodeOptions) -> tuple[dict[str, object], AgentConfig]:
    """Check everything ``o`` holds; (the user's settings with node and
    data plane, the agent configuration they mean)."""
    if o.dataplane not in DATAPLANES:
        raise InvalidInput(f"dataplane {o.dataplane!r} is not one of {', '.join(DATAPLANES)}")
    for what in ("contivctl", "config_path", "vpp_binary", "vpp_startup_path"):
        _path(getattr(o, what), what)
    given = _given(o)
    for k in ("node", "dataplane"):
        if k in given and given[k] != getattr(o, k):
            raise InvalidInput(f"agent setting {k} {given[k]!r} contradicts the option {getattr(o, k)!r}",
                               hint=f"give the same {k} in both, or only as the option")
    given.update(node=o.node, dataplane=o.dataplane)
    return given, AgentConfig(**given).validated()


def _scalar(v: object) -> str:
    # strings always double-quoted ("", "on", "::1", "10" stay strings); PyYAML
    # writes numbers as it reads them back (1.0e-05, not 1e-05, which is a string)
    text = yaml.safe_dump(v, default_style='"' if isinstance(v, str) else None,
                          allow_unicode=True, width=1 << 30)
    return text.splitlines()[0]


def agent_yaml(o: NodeOptions) -> str:
    """The agent's configuration (``agent run --config``): every setting once,
    commented; those the user did not give are commented out at their default."""
    given, cfg = _settings(o)
    out = ["# The Contiv agent's configuration: `contivctl agent run --config` reads it.",
           "# Written by `contivctl install node`; yours from now on (install keeps it).",
           "# A commented-out key has the agent's default, shown. After a change:",
           "#   systemctl restart contiv-agent",
           "# Keys and values: docs/cli.md, \"contivctl agent run\"."]
    for f in fields(AgentConfig):
        if f.name == "extra":
            continue
        out.append("")
        out += [f"# {line}" for line in _ABOUT.get(f.name, "(see docs/cli.md)").splitlines()]
        value = _scalar(getattr(cfg, f.name))
        out.append(f"{f.name}: {value}" if f.name in given else f"# {f.name}: {value}")
    return "\n".join(out) + "\n"


def agent_unit(o: NodeOptions) -> str:
    """``contiv-agent.service``: the agent under systemd (see its comments)."""
    _settings(o)
    vpp = o.dataplane == "vpp"
    bin_dir, _ = posixpath.split(o.vpp_binary)
    env = [] if not vpp or posixpath.basename(bin_dir) != "bin" else [
        "# the API definitions the agent checks its messages against: those of the VPP",
        "# vpp.service runs (PREFIX/share/vpp/api)",
        f"Environment=VPP_PREFIX={posixpath.dirname(bin_dir)}"]
    unit = [
        "# The Contiv node agent, written by `contivctl install node` (ours: install replaces",
        "# it; put local changes in a drop-in: systemctl edit contiv-agent).",
        f"# Its settings are in {o.config_path}.",
        "[Unit]",
        f"Description=Contiv node agent ({o.dataplane} data plane)",
        "# etcd and the other nodes are reached over the network",
        "Wants=network-online.target",
        "After=network-online.target",
    ]
    if vpp:
        unit += [
            "# The agent programs VPP through its API socket: VPP starts first (and stops",
            "# last). Wants=, not Requires=: the agent outlives a VPP restart (it reconnects",
            "# and programs the new VPP from scratch), so stopping or restarting vpp.service",
            "# must not take it down; and an agent whose VPP failed to start says so",
            "# (`contivctl status`, CNI STATUS) where an agent that is not running cannot.",
            "Wants=vpp.service",
            "After=vpp.service",
        ]
    unit += [
        "",
        "[Service]",
        "# exec: `systemctl start` fails at once if the executable cannot be run",
        "Type=exec",
        *env,
        f"ExecStart={o.contivctl} agent run --config {o.config_path}",
        "Restart=on-failure",
        "RestartSec=2",
        "# exit status 2 is invalid input (a bad configuration): retrying cannot help",
        "RestartPreventExitStatus=2",
        "# /run/contiv holds the agent's API socket. Kept when the agent stops: it is not",
        "# the agent's alone (a lab on this machine keeps its state under /run/contiv/lab),",
        "# and the agent removes its own socket when it stops, a stale one when it starts.",
        "RuntimeDirectory=contiv",
        "RuntimeDirectoryPreserve=yes",
        "# /var/lib/contiv: the private etcd's data (etcd_data_dir) and install's manifest",
        "StateDirectory=contiv",
        "# Pods are not in this unit's cgroup (the container runtime starts them) and their",
        "# links, routes, nftables and VPP state outlive the agent, so a restart (an upgrade)",
        "# leaves them alone whatever the KillMode. mixed: SIGTERM to the agent alone, which",
        "# stops in order -- its API, its loop, its last report to etcd, then the private",
        "# etcd it started -- and SIGKILL to whatever is left once it has exited.",
        "# control-group would SIGTERM that etcd together with the agent (its last report",
        "# fails); process would leave a stale etcd holding its port and data directory.",
        "KillMode=mixed",
        "# it stops within 15 s (5 for its loop, 10 for its etcd); not systemd's 90 for a hung one",
        "TimeoutStopSec=30",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(unit) + "\n"


def stn_watch_unit(o: NodeOptions) -> str:
    """``contiv-stn-watch.service``: STN's watchdog (``contivctl stn watch``),
    on nodes whose agent has VPP take the stolen NIC (``vpp_stn``)."""
    _, cfg = _settings(o)
    return "\n".join([
        "# STN's watchdog, written by `contivctl install node` (ours: install replaces it).",
        "# While STN has the node's NIC stolen for VPP, it gives the node its own configuration",
        "# back within seconds when VPP dies, and steals the NIC again when VPP is back",
        "# (docs/stn.md). It is nobody's dependant on purpose: it must outlive both VPP and",
        "# the agent, whose deaths are what it watches for.",
        "[Unit]",
        "Description=Contiv STN watchdog (gives the node's NIC back when VPP dies)",
        "# never given up on: a watchdog that stopped restarting is no watchdog",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={o.contivctl} --socket {_path(cfg.socket, 'socket')} stn watch "
        f"--dir {_path(cfg.stn_dir, 'stn_dir')} --vpp-api-socket {_path(cfg.vpp_api_socket, 'vpp_api_socket')}",
        "Restart=always",
        "RestartSec=1",
        "# /var/lib/contiv/stn: the snapshots it restores from",
        "StateDirectory=contiv",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]) + "\n"


def sysctl_conf(o: NodeOptions) -> str:
    """``/etc/sysctl.d/90-contiv.conf``: what the agent needs from boot on."""
    _settings(o)
    out = ["# Kernel settings of a Contiv node, written by `contivctl install node` (ours).",
           "# Only what the agent itself needs; conntrack sizes and timeouts are the node's."]
    if o.dataplane == "vpp":
        out += ["# VPP data plane: none. VPP forwards the pods' traffic; the node's own stack only",
                "# sends and receives (through contiv-host): it forwards nothing."]
    else:
        out += ["# Linux data plane: the node routes between its pods, the VXLAN overlay and the",
                "# underlay. The agent sets it too (and repairs it on resync); this holds it from",
                "# boot on, before the agent runs, and through `sysctl --system`.",
                "net.ipv4.ip_forward = 1"]
    return "\n".join(out) + "\n"


#: (why, modules) per data plane: what agent/linux and agent/vpp use
_MODULES = {
    "linux": [
        ("pods' veth pairs and the overlay device contiv-vx", "veth vxlan"),
        ("the table `ip contiv` (Services, NetworkPolicies); conntrack and NAT under it",
         "nf_tables nf_conntrack nf_nat"),
        ("its expressions beyond nf_tables' core: ct state (policies, Services' reject\n"
         "checks), dnat/snat and `type nat` chains (Services, hairpin, external SNAT),\n"
         "numgen random (a Service's endpoint), fib daddr type local (node ports),\n"
         "reject (no endpoints, policies' default deny)",
         "nft_ct nft_nat nft_chain_nat nft_numgen nft_fib_ipv4 nft_reject_ipv4"),
        ("ctnetlink: `contivctl nat sessions` reads the conntrack table", "nf_conntrack_netlink"),
    ],
    "vpp": [
        ("pods' veth pairs and the host interconnect (contiv-host); VPP reaches their node\n"
         "ends, and the uplink, through AF_PACKET sockets. No nftables, conntrack or VXLAN\n"
         "device: VPP does Services (cnat), policies (ACL plugin) and VXLAN itself", "veth af_packet"),
    ],
}


def modules_conf(o: NodeOptions) -> str:
    """``/etc/modules-load.d/contiv.conf``: kernel modules to load at boot,
    one name a line (comments on lines of their own)."""
    _settings(o)
    out = ["# Kernel modules a Contiv node uses, written by `contivctl install node` (ours).",
           "# The kernel would load each on first use; loading them at boot makes a missing one",
           "# an error of systemd-modules-load at boot, not a failed change at the first pod,",
           "# and works where autoloading is off. Built-in modules are fine here."]
    if o.dataplane == "linux":
        out.append("# Needs Linux >= 5.1 (nft_chain_nat).")
    groups = _MODULES[o.dataplane] + [("sock_diag: `contivctl netstat -s POD` lists a pod's sockets",
                                       "inet_diag tcp_diag udp_diag")]
    for why, mods in groups:
        out += [f"# {line}" for line in why.splitlines()] + mods.split()
    return "\n".join(out) + "\n"


def _vpp_paths(cfg: AgentConfig) -> dict[str, str]:
    """Where VPP puts its run-time files: all in the API socket's directory
    (its runtime-dir; ``/run/vpp`` by default, VPP's own default), the CLI
    socket as ``cli.sock`` there; its log in ``/var/log/vpp/vpp.log`` for that
    default, else beside the sockets (a second VPP, a test: one directory)."""
    api = _path(cfg.vpp_api_socket, "vpp_api_socket")
    run = posixpath.dirname(api)
    p = {"run": run, "api": api, "stats": _path(cfg.vpp_stats_socket, "vpp_stats_socket"),
         "cli": posixpath.join(run, "cli.sock"),
         "log": "/var/log/vpp/vpp.log" if run == _VPP_RUN else posixpath.join(run, "vpp.log")}
    for k in ("api", "stats", "cli"):
        if len(p[k]) > _SUN_PATH_MAX:
            raise InvalidInput(f"VPP socket {p[k]} is too long for a unix socket path "
                               f"({len(p[k])} > {_SUN_PATH_MAX} bytes)")
    return p


def vpp_startup(o: NodeOptions) -> str:
    """VPP's ``startup.conf`` for the node (``o.vpp_startup_path``), from the
    agent's VPP settings (paths: :func:`_vpp_paths`)."""
    p = _vpp_paths(_settings(o)[1])
    return f"""\
# VPP's configuration on a Contiv node, written by `contivctl install node`; yours from
# now on (install keeps it). vpp.service runs VPP with it (its drop-in contiv.conf), not
# with the package's /etc/vpp/startup.conf. After a change: systemctl restart vpp (the
# agent reconnects and programs the new VPP from scratch). The agent needs the API and
# stats sockets at its vpp_api_socket and vpp_stats_socket, and the plugins af_packet
# (pods, uplink), vxlan (node to node), acl (policies), cnat (Services): docs/vpp.md.

unix {{
  # in the foreground: systemd supervises it (and takes its output into the journal)
  nodaemon
  # the directory of its run-time files (here: its sockets); VPP creates it
  runtime-dir {p["run"]}
  # vppctl's socket: vppctl -s {p["cli"]}
  cli-listen {p["cli"]}
  # VPP notes there each start and every command run at its CLI (vppctl)
  log {p["log"]}
  # on a crash, dump all of VPP's memory (the heap and packet buffers are what a
  # core is read for), whatever the service's core size limit
  full-coredump
  coredump-size unlimited
  # gid vpp   -- lets the group vpp (FD.io's packages create it) use the sockets
}}

# the last API messages, kept for post-mortems (vppctl api trace save FILE)
api-trace {{ on }}

# the binary API: the agent (vpp_papi) connects here
socksvr {{ socket-name {p["api"]} }}

# the stats segment: the agent reads interface counters through this socket
statseg {{ socket-name {p["stats"]} page-size 4k }}

# The heap, the packet buffers and the stats segment on ordinary 4 KiB pages: no
# hugepages need to be set aside (vm.nr_hugepages) for af_packet interfaces. With
# hugepages reserved, 2m here means fewer TLB misses (and DPDK needs them).
memory {{ main-heap-page-size 4k }}
buffers {{ page-size 4k }}

cpu {{
  # No worker threads: the main thread forwards, on core 1 if there is one (VPP's
  # default), else the first core. To pin it, and to add workers (with DPDK):
  # main-core 1
  # corelist-workers 2-3
}}

plugins {{
  # The uplink and the pods are af_packet interfaces on Linux devices: no DPDK.
  plugin dpdk_plugin.so {{ disable }}
}}

# To give VPP a NIC of its own with DPDK (FD.io's vpp-plugin-dpdk package): reserve
# hugepages, set the page sizes above to 2m, enable the plugin above instead
# (plugin dpdk_plugin.so {{ enable }}), bind the NIC to vfio-pci and name it by its
# PCI address (lspci; ethtool -i IFACE shows an interface's):
# dpdk {{
#   dev 0000:00:08.0 {{ name nic0 num-rx-queues 1 }}
# }}
# The NIC then leaves Linux. This agent takes its uplink (vpp_uplink) as an af_packet
# interface on a Linux device, so such a NIC cannot be that uplink yet.
"""


def vpp_dropin(o: NodeOptions) -> str:
    """The drop-in for the distribution's ``vpp.service`` that makes it run
    ``o.vpp_binary -c o.vpp_startup_path``."""
    log = _vpp_paths(_settings(o)[1])["log"]
    out = ["# Written by `contivctl install node` (ours): vpp.service runs VPP with the Contiv",
           f"# node's configuration, {o.vpp_startup_path}, so that the package's own",
           "# /etc/vpp/startup.conf is never rewritten. The rest of the unit is the package's.",
           "[Service]",
           "# empty first: a drop-in adds to the package's ExecStart=, and a service may have only one",
           "ExecStart=",
           f"ExecStart={o.vpp_binary} -c {o.vpp_startup_path}"]
    if log.startswith("/var/log/vpp/"):
        out += ["# the directory of VPP's log (FD.io's packages create it; a VPP built from source",
                "# does not, and VPP then runs without its log)",
                "LogsDirectory=vpp"]
    return "\n".join(out) + "\n"
