"""The agent's side of the local API: :class:`~agent.api.contract.NodeAPI`
over a running :class:`agent.daemon.Agent`.

The router (:mod:`agent.api.routes`) calls only this; this is the one place
that knows which part of the agent answers what. Every method returns a
record of :mod:`agent.model.api`.
"""
from __future__ import annotations

from agent.model import api as rec
from agent.reconciler.plan import plain


class AgentFacade:
    """See the module docstring. The agent serves its API only once started,
    so every part of it exists here."""

    def __init__(self, agent) -> None:
        self._a = agent

    # ------------------------------------------------------------ agent
    def health(self) -> rec.Health:
        a = self._a
        code, why = a.cni_status()
        return rec.Health(a.cfg.node, a.ready and code == 0, code, why, a.applied_revision)

    def status(self) -> rec.NodeStatus:
        a = self._a
        facts = a.facts
        return rec.NodeStatus(a.status(), a.node_info, facts.mtu if facts else 0,
                              facts.underlay if facts else "", a.scheduler.counts(),
                              dict(a.last_resync), a.snapshot.counts(), a.cfg.to_dict())

    def nodes(self) -> rec.NodeList:
        snap = self._a.snapshot
        with snap.lock:
            return rec.NodeList(tuple(sorted(snap.nodes.values(), key=lambda n: n.name)))

    # ------------------------------------------------------------ IPAM and pods
    def ipam(self) -> rec.IpamInfo:
        a = self._a
        st = a.ipam.stats()
        return rec.IpamInfo(a.cfg.node, a.cfg.pod_cidr, st["subnet"], st["total"], st["used"],
                            st["free"], tuple(a.node_info.gateways), tuple(a.ipam.list()))

    def ipam_gc(self, valid: list[dict] | None = None) -> rec.GcResult:
        a = self._a
        if valid is not None:
            from agent.ipam.pods import check_valid_attachments  # noqa: PLC0415
            valid = check_valid_attachments(valid)
        return rec.GcResult(tuple(a.podnet.gc(valid)))

    def pods(self) -> rec.PodList:
        a = self._a
        return rec.PodList(a.cfg.node, tuple(a.podnet.pods()))

    # ------------------------------------------------------------ reconciler
    def state(self, prefix: str = "") -> rec.StateList:
        return rec.StateList(tuple(rec.ValueState.from_dict(v)
                                   for v in self._a.scheduler.state(prefix)))

    def desired(self, prefix: str = "") -> rec.DesiredValues:
        return rec.DesiredValues({k: plain(v) for k, v in sorted(self._a.desired.merged().items())
                                  if k.startswith(prefix)})

    def plan(self) -> rec.PlanRecord:
        return rec.PlanRecord.from_dict(self._a.scheduler.dry_run(resync=True).to_dict())

    def resync(self) -> rec.TxnRecord:
        return self._a.request_resync("resync requested through the API").record

    def history(self, limit: int = 50, since: int = 0) -> rec.History:
        return rec.History(tuple(self._a.scheduler.history.list(limit, since=since)))

    # ------------------------------------------------------------ cluster
    def services(self, namespace: str | None = None, name: str | None = None) -> rec.ServiceList:
        return rec.ServiceList(tuple(self._a.services.describe(namespace, name)))

    def policies(self, namespace: str | None = None, pod: str | None = None) -> rec.PolicyList:
        return rec.PolicyList(tuple(self._a.policies.describe(namespace, pod)))

    def explain(self, src: str, dst: str, port: int, protocol: str = "TCP") -> rec.Explanation:
        return self._a.policies.explain(src, dst, port, protocol)

    # ------------------------------------------------------------ the data plane's own view
    def dataplane_cli(self, command: str) -> rec.CliOutput:
        a = self._a
        return rec.CliOutput(a.cfg.node, a.plane.name, command, a.plane.cli(command))

    def dataplane_dump(self, what: str) -> rec.DumpResult:
        a = self._a
        return rec.DumpResult(a.cfg.node, a.plane.name, what, tuple(a.plane.dump(what)))

    # ------------------------------------------------------------ CNI
    def cni(self, env: dict[str, str], body: bytes) -> rec.CNIReply:
        res = self._a.cni.handle(env, body)
        return rec.CNIReply(res.exit_code, res.body)
