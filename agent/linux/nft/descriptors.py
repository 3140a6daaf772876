"""Descriptors of the ``ip contiv`` table's objects, executed in batches.

Every operation is turned into nftables command text; consecutive operations
on nft objects run as ONE nftables transaction (they share the batch group
:class:`NftBatch`), so a full sync of thousands of Services is one kernel
commit. If a batch fails, its operations are retried one by one to find and
report the failing one(s); the others are applied.

Idempotence: deletions are preceded by an ``add`` of the same object (so they
never fail because it is gone already), chain creation flushes the chain.
"""
from __future__ import annotations

import logging
import re

from agent.errors import DataplaneError, InvalidInput
from agent.linux.nft.lib import Nftables
from agent.linux.nft.values import (FAMILY, TABLE, TABLE_KEY, NftChain, NftChainState,
                                    NftElement, NftSet, NftTable, chain_key, element_key,
                                    quote, set_key)
from agent.reconciler import Dependency, Descriptor, Retrieved
from agent.reconciler.plan import OpKind

log = logging.getLogger(__name__)
T = f"{FAMILY} {TABLE}"
_NAME = re.compile(r"^[A-Za-z0-9_./:\-]{1,200}$")


class NftBatch:
    """The batch group shared by the nft descriptors."""

    def __init__(self, nft: Nftables) -> None:
        self.nft = nft

    def apply(self, ops, descs, ctx) -> list:
        text = [ln for op, d in zip(ops, descs) for ln in d.commands(op)]
        try:
            self.nft.run("\n".join(text) + "\n")
            return [None] * len(ops)
        except DataplaneError:
            if len(ops) == 1:
                return [self._one(ops[0], descs[0])]
        return [self._one(op, d) for op, d in zip(ops, descs)]

    def _one(self, op, d):
        try:
            self.nft.run("\n".join(d.commands(op)) + "\n")
            return None
        except DataplaneError as e:
            return e


class _NftBase(Descriptor):
    def __init__(self, nft: Nftables, batch: NftBatch) -> None:
        self.nft = nft
        self.batch_group = batch

    def create(self, key, value, ctx):
        self.nft.run("\n".join(self.commands_for(OpKind.CREATE, value, None)) + "\n")

    def update(self, key, old, new, metadata, ctx):
        self.nft.run("\n".join(self.commands_for(OpKind.UPDATE, new, old)) + "\n")

    def delete(self, key, value, metadata, ctx):
        self.nft.run("\n".join(self.commands_for(OpKind.DELETE, value, None)) + "\n")

    def commands(self, op) -> list[str]:
        return self.commands_for(op.kind, op.value, op.old)

    def commands_for(self, kind, value, old) -> list[str]:
        raise NotImplementedError


class TableDescriptor(_NftBase):
    name = "nft-table"
    key_prefix = "nft/table/"

    def commands_for(self, kind, v: NftTable, old):
        if kind is OpKind.DELETE:
            return [f"add table {FAMILY} {v.name}", f"delete table {FAMILY} {v.name}"]
        return [f"add table {FAMILY} {v.name}"]

    def retrieve(self, correlate, ctx):
        tables = [o["table"] for o in self.nft.list_json(f"tables {FAMILY}") if "table" in o]
        return [Retrieved(f"nft/table/{t['name']}", NftTable(t["name"])) for t in tables
                if t["name"] == TABLE]


class SetDescriptor(_NftBase):
    name = "nft-set"
    key_prefix = "nft/set/"

    def validate(self, key, v: NftSet) -> None:
        if not _NAME.fullmatch(v.name):
            raise InvalidInput(f"nft set name {v.name!r} is invalid")

    def dependencies(self, key, v):
        return (Dependency("table-exists", TABLE_KEY),)

    def commands_for(self, kind, v: NftSet, old):
        kw = "map" if ":" in v.spec.split(";")[0] else "set"
        add = f"add {kw} {T} {v.name} {{ {v.spec} }}"
        if kind is OpKind.DELETE:
            return [add, f"delete {kw} {T} {v.name}"]
        return [add]

    def retrieve(self, correlate, ctx):
        out = []
        for o in self.nft.list_json(f"table {T}"):
            for kw in ("set", "map"):
                s = o.get(kw)
                if s and s.get("table") == TABLE:
                    want = correlate.get(set_key(s["name"]))
                    # The spec text is ours; nft prints it differently. A set
                    # of the same name and kind is taken as the same set.
                    spec = want.spec if want is not None and (":" in want.spec.split(";")[0]) == (kw == "map") \
                        else f"<{kw} {s.get('type')}>"
                    out.append(Retrieved(set_key(s["name"]), NftSet(s["name"], spec,
                                                                     want.static if want else True)))
        return out


class ChainDescriptor(_NftBase):
    name = "nft-chain"
    key_prefix = "nft/chain/"
    supports_update = True

    def validate(self, key, v: NftChain) -> None:
        if not _NAME.fullmatch(v.name):
            raise InvalidInput(f"nft chain name {v.name!r} is invalid")

    def dependencies(self, key, v: NftChain):
        return (Dependency("table-exists", TABLE_KEY),) + tuple(
            Dependency("referenced-by-rule", r) for r in v.refs)

    def needs_recreate(self, key, old, new) -> bool:
        # a base chain's hook cannot change in place
        return isinstance(old, NftChain) and old.hook != new.hook

    def commands_for(self, kind, v: NftChain, old):
        name = f"{T} {v.name}"
        if kind is OpKind.DELETE:
            return [f"add chain {name}", f"flush chain {name}", f"delete chain {name}"]
        body = f"{v.hook} comment {quote(v.full_comment)};"
        # create and update alike: (re)declare, flush, refill -- one transaction,
        # so packets never see a half-written chain
        return [f"add chain {name} {{ {body} }}", f"flush chain {name}"] + \
            [f"add rule {name} {r}" for r in v.rules]

    def retrieve(self, correlate, ctx):
        chains: dict[str, NftChainState] = {}
        counts: dict[str, int] = {}
        for o in self.nft.list_json(f"table {T}"):
            c = o.get("chain")
            if c and c.get("table") == TABLE:
                comment = c.get("comment", "")
                digest = comment.rsplit("#", 1)[1] if "#" in comment else ""
                chains[c["name"]] = NftChainState(c["name"], digest, 0, comment)
            r = o.get("rule")
            if r and r.get("table") == TABLE:
                counts[r["chain"]] = counts.get(r["chain"], 0) + 1
        out = []
        for n, st in chains.items():
            want = correlate.get(chain_key(n))
            out.append(Retrieved(chain_key(n), NftChainState(n, st.digest, counts.get(n, 0), st.comment,
                                                             want.refs if want is not None else ())))
        return out

    def equivalent(self, key, desired: NftChain, actual) -> bool:
        if isinstance(actual, NftChainState):
            return actual.digest == desired.digest and actual.nrules == len(desired.rules)
        return desired == actual


def _elem_text(e) -> str:
    """JSON element key/value -> our text form (``10.96.0.1 . tcp . 80``)."""
    if isinstance(e, dict):
        if "concat" in e:
            return " . ".join(_elem_text(x) for x in e["concat"])
        if "prefix" in e:
            return f"{e['prefix']['addr']}/{e['prefix']['len']}"
        if "range" in e:
            return f"{_elem_text(e['range'][0])}-{_elem_text(e['range'][1])}"
        for verdict in ("goto", "jump"):
            if verdict in e:
                return f"{verdict} {e[verdict]['target']}"
        for verdict in ("drop", "accept", "return", "continue"):
            if verdict in e:
                return verdict
    return str(e)


class ElementDescriptor(_NftBase):
    name = "nft-element"
    key_prefix = "nft/element/"
    supports_update = True

    def dependencies(self, key, v: NftElement):
        return (Dependency("set-exists", set_key(v.set)),) + tuple(
            Dependency("verdict-target", r) for r in v.refs)

    def needs_recreate(self, key, old, new) -> bool:
        return False

    def _elem(self, v: NftElement) -> str:
        c = f" comment {quote(v.comment)}" if v.comment else ""
        return f"{v.key}{c}" + (f" : {v.value}" if v.value else "")

    def commands_for(self, kind, v: NftElement, old):
        s = f"{T} {v.set}"
        if kind is OpKind.DELETE:
            return [f"add element {s} {{ {self._elem(v)} }}", f"delete element {s} {{ {v.key} }}"]
        if kind is OpKind.UPDATE:
            # a map element's value cannot be replaced in place: delete + add, atomically
            return [f"add element {s} {{ {self._elem(v)} }}" if not isinstance(old, NftElement)
                    else f"add element {s} {{ {self._elem(old)} }}",
                    f"delete element {s} {{ {v.key} }}", f"add element {s} {{ {self._elem(v)} }}"]
        return [f"add element {s} {{ {self._elem(v)} }}"]

    def retrieve(self, correlate, ctx):
        statics = {k.split("/", 3)[2] for k in correlate}
        out = []
        for o in self.nft.list_json(f"table {T}"):
            for kw in ("set", "map"):
                s = o.get(kw)
                if not s or s.get("table") != TABLE or s["name"] not in statics:
                    continue
                for e in s.get("elem", []):
                    comment = ""
                    if isinstance(e, dict) and "elem" in e:
                        comment = e["elem"].get("comment", "")
                        e = e["elem"]["val"]
                    if kw == "map":
                        k, val = e
                        if isinstance(k, dict) and "elem" in k:
                            comment = k["elem"].get("comment", "")
                            k = k["elem"]["val"]
                        key_text, val_text = _elem_text(k), _elem_text(val)
                    else:
                        key_text, val_text = _elem_text(e), ""
                    ek = element_key(s["name"], key_text)
                    want = correlate.get(ek)
                    refs = want.refs if want is not None and want.value == val_text else ()
                    out.append(Retrieved(ek, NftElement(s["name"], key_text, val_text,
                                                        want.comment if want is not None else comment,
                                                        refs)))
        return out

    def equivalent(self, key, desired: NftElement, actual: NftElement) -> bool:
        return (desired.set, desired.key, desired.value) == (actual.set, actual.key, actual.value)


def descriptors(nft: Nftables) -> list[Descriptor]:
    batch = NftBatch(nft)
    return [TableDescriptor(nft, batch), SetDescriptor(nft, batch), ChainDescriptor(nft, batch),
            ElementDescriptor(nft, batch)]
