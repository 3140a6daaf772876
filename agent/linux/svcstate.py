"""The nftables Service renderer: :mod:`agent.linux.svcrender` plus the state
it needs between changes (a :class:`agent.dataplane.ServiceRenderer`).

What only nftables needs lives here, not in the data-plane-neutral
:class:`agent.services.ServiceSync`:

* endpoint-group ids, which the rules mark packets with: stable for a
  Service port while it exists, derived from its name so that a restarted
  agent finds the same ones, bounded by the mark layout (``MAX_GID``);
* the shared load-balancing partition ``svc-lb``: one chain per group size
  and one set per affinity timeout in use, counted incrementally;
* ``svc-hairpin/<ns>/<pod>``: a local pod that may reach itself through a
  Service (SNAT to the gateway).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import Mapping, Sequence

from agent.builders.services import ServicePort
from agent.linux import svcrender as R

LB = "svc-lb"


def _count(total: Counter, part: Counter, sign: int) -> None:
    """``total += part`` (sign 1) or ``total -= part`` (sign -1), dropping
    counts that reach zero -- what Counter's operators do, without building a
    new Counter each time (this runs once per Service in a full sync)."""
    for k, v in part.items():
        n = total.get(k, 0) + sign * v
        if n > 0:
            total[k] = n
        else:
            total.pop(k, None)


class NftServiceRenderer:
    """See the module docstring."""

    endpoint_limit = R.MAX_ENDPOINTS

    def __init__(self) -> None:
        self._gids: dict[tuple, int] = {}
        self._gid_owner: dict[int, tuple] = {}
        # the group idents of each Service: freeing them must not scan every
        # Service's (that made a full sync O(Services^2): ~20 s at 10,000)
        self._gids_of: dict[tuple[str, str], set[tuple]] = {}
        self._sizes: Counter = Counter()
        self._timeouts: Counter = Counter()
        self._lb_in: dict[tuple[str, str], tuple[Counter, Counter]] = {}
        self._lb_last: tuple | None = None
        self._hairpin: dict[str, str] = {}  # local pod ref -> IP

    def reset(self) -> None:
        self._gids.clear()
        self._gid_owner.clear()
        self._gids_of.clear()
        self._lb_in.clear()
        self._sizes.clear()
        self._timeouts.clear()
        self._lb_last = None
        self._hairpin.clear()

    def nodes(self, t) -> bool:
        return False  # node ports match "any local address" (fib daddr type local)

    def service(self, key: tuple[str, str], ports: Sequence[ServicePort]) -> dict[str, object]:
        values: dict = {}
        sizes, timeouts = Counter(), Counter()
        wanted = set()
        for sp in ports:
            groups = R.groups_needed(sp)
            gids = {g: self._gid(key, sp.id, g) for g in groups}
            wanted |= {(key, sp.id, g) for g in groups}
            values.update(R.render_service_port(sp, gids, groups))
            s_in, t_in = R.lb_inputs(sp, groups)
            sizes.update(s_in)
            timeouts.update(t_in)
        self._free_gids(key, keep=wanted)
        self._set_lb_inputs(key, sizes, timeouts)
        return values

    def local_pods(self, changes: Mapping[str, str | None]) -> dict[str, dict]:
        out = {}
        for ref, ip in changes.items():
            if ip:
                self._hairpin[ref] = ip
                out[f"svc-hairpin/{ref}"] = R.render_hairpin(ip)
            elif self._hairpin.pop(ref, None) is not None:
                out[f"svc-hairpin/{ref}"] = {}
        return out

    def shared(self, force: bool = False) -> dict[str, dict]:
        now = (tuple(sorted(self._sizes)), tuple(sorted(self._timeouts)))
        if not force and now == self._lb_last:
            return {}
        self._lb_last = now
        return {LB: R.render_lb(set(self._sizes), set(self._timeouts))}

    def describe(self, values: Mapping[str, object]) -> list[str]:
        """``key -> value`` of every element a Service's values hold (single or grouped)."""
        out = []
        for v in values.values():
            items = getattr(v, "items", None)
            if isinstance(items, tuple):
                out += [f"{k} -> {val}" if val else k for k, val, _ in items]
            elif hasattr(v, "key") and hasattr(v, "set"):
                out.append(f"{v.key} -> {v.value}" if v.value else v.key)
        return out

    # ------------------------------------------------------------ group ids
    def _gid(self, key: tuple[str, str], port_id: str, group: str) -> int:
        ident = (key, port_id, group)
        gid = self._gids.get(ident)
        if gid is None:
            h = int(hashlib.sha1(f"{port_id}/{group}".encode()).hexdigest()[:8], 16)
            gid = h % R.MAX_GID + 1
            while gid in self._gid_owner:  # linear probing; ids are never 0
                gid = gid % R.MAX_GID + 1
            self._gids[ident] = gid
            self._gid_owner[gid] = ident
            self._gids_of.setdefault(key, set()).add(ident)
        return gid

    def _free_gids(self, key: tuple[str, str], keep: set = frozenset()) -> None:
        mine = self._gids_of.get(key)
        if not mine:
            return
        for ident in [i for i in mine if i not in keep]:
            self._gid_owner.pop(self._gids.pop(ident), None)
            mine.discard(ident)
        if not mine:
            del self._gids_of[key]

    # ------------------------------------------------------------ shared chains
    def _set_lb_inputs(self, key, sizes: Counter, timeouts: Counter) -> None:
        old = self._lb_in.pop(key, None)
        if old:
            _count(self._sizes, old[0], -1)
            _count(self._timeouts, old[1], -1)
        if sizes or timeouts:
            self._lb_in[key] = (sizes, timeouts)
            _count(self._sizes, sizes, 1)
            _count(self._timeouts, timeouts, 1)
