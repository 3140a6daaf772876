"""The VPP API messages the agent sends: checked (name and CRC) against a VPP
when the agent connects, so that a VPP of another version is refused at once
(VppVersionMismatch, naming what differs) instead of failing one call later."""
from __future__ import annotations

CORE = (
    "control_ping", "show_version", "cli_inband",
    "sw_interface_dump", "sw_interface_tag_add_del", "sw_interface_set_flags", "sw_interface_set_mtu",
    "create_loopback_instance", "delete_loopback", "af_packet_create_v3", "af_packet_delete",
    "af_packet_dump", "sw_interface_add_del_address", "ip_address_dump",
    "sw_interface_set_unnumbered", "ip_unnumbered_dump", "ip_route_add_del", "ip_route_v2_dump",
    "ip_neighbor_add_del", "ip_neighbor_dump", "proxy_arp_add_del", "proxy_arp_dump",
    "proxy_arp_intfc_enable_disable", "proxy_arp_intfc_dump", "bridge_domain_add_del_v2",
    "bridge_domain_dump", "sw_interface_set_l2_bridge", "l2fib_add_del", "l2_fib_table_dump",
    "vxlan_add_del_tunnel_v3", "vxlan_tunnel_v2_dump", "stn_add_del_rule", "stn_rules_dump",
    "feature_enable_disable",
)
#: what pods' memifs need: the memif plugin, and VPP's default rx mode
#: (26.06 on) -- optional: a VPP without them serves every other pod, and a
#: pod asking for a memif there gets CNI error 102
MEMIF = ("memif_socket_filename_add_del_v2", "memif_socket_filename_dump", "memif_create_v2",
         "memif_delete", "memif_dump", "sw_interface_get_default_rx_mode",
         "sw_interface_set_default_rx_mode")


def required() -> tuple[str, ...]:
    """Every message: the core's, the Services', the policies' and the packet trace's."""
    from agent.vpp import policies, services, trace  # noqa: PLC0415
    return CORE + tuple(services.MESSAGES) + tuple(policies.MESSAGES) + tuple(trace.MESSAGES)
