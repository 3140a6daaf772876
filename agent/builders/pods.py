"""Pod attachments: what one pod interface needs, whatever the data plane."""
from __future__ import annotations

from dataclasses import dataclass

from agent.model.records import Allocation, NodeInfo


@dataclass(frozen=True, slots=True)
class PodAttachment:
    """One pod interface: the container's ``ifname`` in ``netns`` with ``ips``,
    routed through ``gateways`` (one per family) by the node."""

    container_id: str
    ifname: str
    netns: str
    ips: tuple[str, ...]
    gateways: tuple[str, ...]
    mtu: int
    pod_ref: str  # "ns/name", or the container ID when the runtime did not say
    memif: str = ""  # the pod's memif address ("10.1.1.6/32"; VPP only), "" if it has none

    @property
    def id(self) -> str:
        return f"{self.container_id}/{self.ifname}"


def pod_attachment(alloc: Allocation, node: NodeInfo, mtu: int) -> PodAttachment:
    return PodAttachment(alloc.container_id, alloc.ifname, alloc.netns, tuple(alloc.ips),
                         tuple(node.gateways), alloc.mtu or mtu, alloc.pod_ref, alloc.memif)
