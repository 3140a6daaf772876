"""The Linux data plane: descriptors over netlink (pyroute2) and sysctl.

These are the only modules of the agent that import pyroute2. Objects we
create are tagged so that ``retrieve`` can tell ours from everybody else's:
links carry an alias ``contiv:<owner>``, routes the protocol number
:data:`agent.linux.values.RTPROT_CONTIV`, neighbours and FDB entries live only
on links we own.
"""
from __future__ import annotations


def descriptors(netlink) -> list:
    """Every Linux descriptor, bound to one :class:`agent.linux.netns.Netlink`."""
    from agent.linux.links import LocalLinkDescriptor, VethDescriptor, VxlanDescriptor
    from agent.linux.neigh import FdbDescriptor, NeighborDescriptor
    from agent.linux.routes import PodRouteDescriptor, RouteDescriptor
    from agent.linux.sysctl import SysctlDescriptor
    return [VethDescriptor(netlink), LocalLinkDescriptor(netlink), VxlanDescriptor(netlink),
            RouteDescriptor(netlink), PodRouteDescriptor(netlink), NeighborDescriptor(netlink),
            FdbDescriptor(netlink), SysctlDescriptor()]
