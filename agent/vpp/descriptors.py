"""Every VPP descriptor of the data plane, bound to one channel to VPP."""
from __future__ import annotations

from agent.vpp import ifdesc, l2desc, l3desc
from agent.vpp.base import Interfaces


def core(api, ifs: Interfaces, owned: tuple[str, ...], memif=lambda: True) -> list:
    """Interfaces, tunnels, addresses, L2 and L3: the node and its pods.
    In retrieve order: interfaces and tunnels first (the others find ours
    through them). ``owned``: the prefixes whose special routes and proxy-ARP
    ranges are ours (pod CIDR, Service CIDR); ``memif()``: whether this VPP
    has the memif plugin (its dumps are read only then)."""
    bds = l2desc.BridgeDomainDescriptor(api, ifs)
    return [ifdesc.InterfaceDescriptor(api, ifs, memif), ifdesc.VxlanDescriptor(api, ifs),
            ifdesc.MemifSocketDescriptor(api, ifs, memif), ifdesc.AddressDescriptor(api, ifs),
            ifdesc.UnnumberedDescriptor(api, ifs),
            bds, l2desc.BridgePortDescriptor(api, ifs, bds), l2desc.L2FibDescriptor(api, ifs, bds),
            l3desc.NeighborDescriptor(api, ifs), l3desc.ProxyArpDescriptor(api, ifs, owned),
            l3desc.ProxyArpIfDescriptor(api, ifs), l3desc.RouteDescriptor(api, ifs, owned),
            l3desc.StnRuleDescriptor(api, ifs)]


def descriptors(api, owned: tuple[str, ...], memif=lambda: True) -> list:
    """The core's, then the Services' and the policies' (which build on it)."""
    from agent.vpp import policies, services  # noqa: PLC0415
    ifs = Interfaces()
    return core(api, ifs, owned, memif) + list(services.descriptors(api, ifs, owned)) + \
        list(policies.descriptors(api, ifs))
