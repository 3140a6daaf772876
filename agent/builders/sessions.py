"""A data plane's sessions named in Kubernetes terms: which pod is the client,
which Service and port it asked for, which pod answers.

Pure; unit-tested without root. The data plane reports connections by
address (:class:`agent.model.diag.Session`: conntrack on Linux, cnat's
sessions on VPP); this joins them with what the agent renders -- the
Services' frontends (a cluster IP, external IP or node port, and the
protocol) and the cluster's pods by IP -- and counts them per Service for
``contivctl nat sessions --summary``.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from agent.model.api import NamedSession, ServiceInfo, ServiceSessions
from agent.model.diag import Session

NODE_ADDRESS = "*node*"  # a node port's frontend address (ServiceInfo)


def frontend_index(services: Iterable[ServiceInfo]) -> dict[tuple, tuple[str, str]]:
    """(address, port, PROTOCOL) -> (Service ``ns/name``, its port's name or
    ``PROTOCOL/port``); node ports under :data:`NODE_ADDRESS`."""
    out: dict[tuple, tuple[str, str]] = {}
    for s in services:
        for p in s.ports:
            for f in p.frontends:
                out[(f.address, f.port, p.protocol.upper())] = (s.service, p.name or f"{p.protocol}/{f.port}")
    return out


def name_sessions(sessions: Iterable[Session], services: Iterable[ServiceInfo],
                  pods: Mapping[str, str], node_ips: Iterable[str] = ()) -> list[NamedSession]:
    """Each session with its client pod, Service (and port) and backend pod
    where they are known (empty where not: a client outside the cluster, a
    connection to no Service). ``pods``: IP -> pod ref, cluster-wide;
    ``node_ips``: this node's addresses (where node ports answer)."""
    fronts = frontend_index(services)
    mine = set(node_ips)
    out = []
    for s in sessions:
        proto = s.protocol.upper()
        svc = fronts.get((s.dst, s.dport, proto))
        if svc is None and s.dst in mine:
            svc = fronts.get((NODE_ADDRESS, s.dport, proto))
        # the backend: who answers -- the translated address, or the
        # destination itself when nothing was translated
        backend = pods.get(s.reply_src if s.translated else s.dst, "")
        out.append(NamedSession(
            s.protocol, s.src, s.sport, s.dst, s.dport, s.reply_src, s.reply_sport, s.state,
            s.timeout, s.packets, s.bytes, client=pods.get(s.src, ""),
            service=svc[0] if svc else "", service_port=svc[1] if svc else "", backend=backend))
    return out


def select(named: Iterable[NamedSession], service: str | None = None,
           pod: str | None = None) -> list[NamedSession]:
    """The sessions of one Service (``ns/name``) and/or touching one pod (as
    client or backend)."""
    return [n for n in named if (not service or n.service == service)
            and (not pod or pod in (n.client, n.backend))]


def summary(named: Iterable[NamedSession]) -> list[ServiceSessions]:
    """Sessions per Service (translated ones only: what the Services cost the
    session table), most first; backends counted per pod."""
    per: dict[str, Counter] = {}
    for n in named:
        if n.service:
            per.setdefault(n.service, Counter())[n.backend or n.reply_src] += 1
    return sorted((ServiceSessions(svc, sum(c.values()), dict(sorted(c.items())))
                   for svc, c in per.items()), key=lambda x: (-x.sessions, x.service))
