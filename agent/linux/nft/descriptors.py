"""Descriptors of the ``ip contiv`` table's objects, executed in batches.

Consecutive operations on nft objects share one batch group
(:class:`NftBatch`) and reach the kernel as few transactions as possible:

* regular chains with their rules, and elements of plain sets and maps, go
  over raw nf_tables netlink (:mod:`agent.linux.nft.wire`): no ruleset cache
  to re-read, no rule text to parse -- one Service change costs the same next
  to 100 Services or 10,000;
* the table, sets, base chains and interval elements go through libnftables.

A run of operations that fails is retried one operation at a time through
libnftables, to apply the good ones and name the bad ones.

Idempotence: deletions are preceded by an ``add`` of the same object (so they
never fail because it is gone already), chain creation flushes the chain.
"""
from __future__ import annotations

import re

from agent.errors import InvalidInput
from agent.linux.nft import wire
from agent.linux.nft.batch import T, NftBatch
from agent.linux.nft.lib import Nftables
from agent.linux.nft.rules import compile_rule
from agent.linux.nft.values import (FAMILY, TABLE, TABLE_KEY, NftChain, NftChainState,
                                    NftElement, NftElements, NftSet, NftTable, chain_key,
                                    element_key, elements_key, quote, set_key)
from agent.reconciler import Dependency, Descriptor, Retrieved
from agent.reconciler.plan import OpKind

_NAME = re.compile(r"^[A-Za-z0-9_./:\-]{1,200}$")


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

    def wire_capable(self, op, batch: "NftBatch") -> bool:
        return False

    def wire_ops(self, op, b: wire.Batch, batch: "NftBatch") -> bool:
        """Append ``op`` to the netlink batch ``b``; False if it cannot go that way."""
        return False

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
        # the shared listing of our table (empty when it does not exist): a
        # separate "list tables" would make nftables read the whole ruleset again
        tables = [o["table"] for o in self.batch_group.listing(ctx) if "table" in o]
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
        self.batch_group.learn_set(v)
        return [add]

    def wire_capable(self, op, batch) -> bool:
        return wire.plain_set_fields(op.value.spec) is not None if isinstance(op.value, NftSet) else False

    def wire_ops(self, op, b, batch) -> bool:
        """Plain sets (``type a . b;``) over netlink: policies create many of them,
        and libnftables re-reads the whole table before each transaction."""
        v = op.value
        fields = wire.plain_set_fields(v.spec) if isinstance(v, NftSet) else None
        if fields is None:
            return False
        b.add_set(v.name, fields)
        if op.kind is OpKind.DELETE:
            b.del_set(v.name)
        else:
            batch.learn_set(v)
        return True

    def retrieve(self, correlate, ctx):
        for v in correlate.values():
            self.batch_group.learn_set(v)
        out = []
        for o in self.batch_group.listing(ctx):
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
        body = f"{v.hook} comment {quote(v.comment)};" if v.comment else v.hook
        # create and update alike: (re)declare, flush, refill -- one transaction,
        # so packets never see a half-written chain
        return [f"add chain {name} {{ {body} }}", f"flush chain {name}"] + \
            [f"add rule {name} {r}" for r in v.rendered_rules()]

    def wire_capable(self, op, batch) -> bool:
        # a DELETE planned after a resync carries the retrieved NftChainState,
        # which has no hook (only our non-base chains are ever deleted)
        return not getattr(op.value, "hook", "")

    def wire_ops(self, op, b, batch) -> bool:
        v: NftChain = op.value
        if getattr(v, "hook", ""):
            return False
        if op.kind is OpKind.DELETE:
            b.add_chain(v.name, "")
            b.flush_chain(v.name)
            b.del_chain(v.name)
            return True
        try:
            rules = [compile_rule(r) for r in v.rendered_rules()]
        except (wire.Unsupported, KeyError, ValueError):
            return False
        b.add_chain(v.name, v.comment)
        b.flush_chain(v.name)
        for exprs, comment in rules:
            b.add_rule(v.name, exprs, comment)
        return True

    def retrieve(self, correlate, ctx):
        names: list[str] = []
        digest: dict[str, str] = {}
        counts: dict[str, int] = {}
        for o in self.batch_group.listing(ctx):
            c = o.get("chain")
            if c and c.get("table") == TABLE:
                names.append(c["name"])
            r = o.get("rule")
            if r and r.get("table") == TABLE:
                n = counts.get(r["chain"], 0)
                if n == 0:  # the first rule carries the chain's digest
                    comment = r.get("comment", "")
                    digest[r["chain"]] = comment.rsplit("#", 1)[1] if "#" in comment else ""
                counts[r["chain"]] = n + 1
        out = []
        for n in names:
            want = correlate.get(chain_key(n))
            out.append(Retrieved(chain_key(n), NftChainState(
                n, digest.get(n, ""), counts.get(n, 0), want.comment if want is not None else "",
                want.refs if want is not None else ())))
        return out

    def equivalent(self, key, desired: NftChain, actual) -> bool:
        if isinstance(actual, NftChainState):
            if not desired.rules:
                return actual.nrules == 0
            return actual.digest == desired.digest and actual.nrules == len(desired.rules)
        return desired == actual


class ElementDescriptor(_NftBase):
    name = "nft-element"
    key_prefix = "nft/element/"
    supports_update = True

    _set_deps: dict[str, tuple] = {}

    def dependencies(self, key, v: NftElement):
        # elements are the bulk of a large table: their dependency is built once per set
        base = self._set_deps.get(v.set)
        if base is None:
            base = self._set_deps[v.set] = (Dependency("set-exists", set_key(v.set)),)
        return base + tuple(Dependency("verdict-target", r) for r in v.refs) if v.refs else base

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

    def _encode(self, v: NftElement, batch) -> tuple | None:
        """(key bytes, data) for the wire, or None to go through libnftables."""
        layout = batch.layouts.get(v.set)
        if layout is None:
            return None
        fields, data = layout
        try:
            key = wire.encode_key(fields, v.key)
            if data == "verdict":
                value = wire.encode_verdict(v.value)
            elif data:
                value = wire.encode_key(data, v.value)
            else:
                value = None
        except (wire.Unsupported, KeyError, ValueError):
            return None
        if bool(v.value) != bool(data):
            return None
        return key, value

    def wire_capable(self, op, batch) -> bool:
        return op.value.set in batch.layouts

    def wire_ops(self, op, b, batch) -> bool:
        v: NftElement = op.value
        enc = self._encode(v, batch)
        if enc is None:
            return False
        key, verdict = enc
        if op.kind is OpKind.DELETE:
            b.add_elem(v.set, key, verdict, v.comment)
            b.del_elem(v.set, key)
            return True
        if op.kind is OpKind.UPDATE:
            # a map element's value cannot be replaced in place: delete + add,
            # atomically; the delete is made safe by re-adding the OLD element first
            prev = self._encode(op.old, batch) if isinstance(op.old, NftElement) else None
            if prev is None:
                return False
            b.add_elem(v.set, prev[0], prev[1], op.old.comment)
            b.del_elem(v.set, key)
        b.add_elem(v.set, key, verdict, v.comment)
        return True

    def retrieve(self, correlate, ctx):
        statics = {v.set for v in correlate.values()}
        out = []
        for set_name, key_text, val_text, comment in self.batch_group.elements(ctx, statics):
            ek = element_key(set_name, key_text)
            want = correlate.get(ek)
            refs = want.refs if want is not None and want.value == val_text else ()
            out.append(Retrieved(ek, NftElement(set_name, key_text, val_text,
                                                want.comment if want is not None else comment, refs)))
        return out

    def equivalent(self, key, desired: NftElement, actual: NftElement) -> bool:
        return (desired.set, desired.key, desired.value) == (actual.set, actual.key, actual.value)


class ElementsDescriptor(ElementDescriptor):
    """NftElements: an owner's elements of one set as one value."""

    name = "nft-elements"
    key_prefix = "nft/elements/"
    ORPHANS = "~unowned"

    def dependencies(self, key, v: NftElements):
        return ElementDescriptor.dependencies(self, key, v)

    @staticmethod
    def _one(v: NftElements, k: str, val: str, c: str) -> NftElement:
        return NftElement(v.set, k, val, c)

    def commands_for(self, kind, v: NftElements, old):
        out = []
        olds = old.mapping() if isinstance(old, NftElements) else {}
        news = v.mapping()
        if kind is OpKind.DELETE:
            for k, (val, c) in news.items():
                out += ElementDescriptor.commands_for(self, OpKind.DELETE, self._one(v, k, val, c), None)
            return out
        for k, (val, c) in olds.items():
            if k not in news:
                out += ElementDescriptor.commands_for(self, OpKind.DELETE, self._one(v, k, val, c), None)
        for k, (val, c) in news.items():
            if k not in olds:
                out += ElementDescriptor.commands_for(self, OpKind.CREATE, self._one(v, k, val, c), None)
            elif olds[k][0] != val:
                out += ElementDescriptor.commands_for(self, OpKind.UPDATE, self._one(v, k, val, c),
                                                      self._one(v, k, *olds[k]))
        return out

    def wire_capable(self, op, batch) -> bool:
        return op.value.set in batch.layouts

    def wire_ops(self, op, b, batch) -> bool:
        v: NftElements = op.value
        layout = batch.layouts.get(v.set)
        if layout is None:
            return False
        fields, data = layout

        def enc(key, val):
            k = wire.encode_key(fields, key)
            if data == "verdict":
                return k, wire.encode_verdict(val)
            return k, (wire.encode_key(data, val) if data else None)
        try:
            news = v.mapping()
            olds = op.old.mapping() if op.kind is OpKind.UPDATE and isinstance(op.old, NftElements) else {}
            if op.kind is OpKind.DELETE:
                for key, (val, c) in news.items():
                    kb, db = enc(key, val)
                    b.add_elem(v.set, kb, db, c)
                    b.del_elem(v.set, kb)
                return True
            for key, (val, c) in olds.items():
                if key not in news:
                    kb, db = enc(key, val)
                    b.add_elem(v.set, kb, db, c)
                    b.del_elem(v.set, kb)
            for key, (val, c) in news.items():
                prev = olds.get(key)
                if prev is not None and prev[0] == val:
                    continue
                kb, db = enc(key, val)
                if prev is not None:  # replace: re-add the old one first, so the delete cannot fail
                    b.add_elem(v.set, kb, enc(key, prev[0])[1], prev[1])
                    b.del_elem(v.set, kb)
                b.add_elem(v.set, kb, db, c)
            return True
        except (wire.Unsupported, KeyError, ValueError):
            return False

    def retrieve(self, correlate, ctx):
        sets = {v.set for v in correlate.values()}
        owner: dict[tuple[str, str], str] = {}
        for vk, v in correlate.items():
            for k, _, _ in v.items:
                owner[(v.set, k)] = vk
        found: dict[str, list] = {}
        listing = self.batch_group.listing(ctx)
        for set_name, k, val, c in self.batch_group.elements(ctx, sets):
            vk = owner.get((set_name, k)) or elements_key(set_name, self.ORPHANS)
            found.setdefault(vk, []).append((k, val, c))
        # an owner with nothing in an existing set holds the empty group there
        # (so an empty claim is not "missing", and a missing group is an update)
        present = {o.get(kw, {}).get("name") for o in listing for kw in ("set", "map")}
        for vk, v in correlate.items():
            if vk not in found and v.set in present:
                found[vk] = []
        out = []
        for vk, items in found.items():
            want = correlate.get(vk)
            set_name = vk.split("/", 3)[2]
            out.append(Retrieved(vk, NftElements(set_name, tuple(sorted(items)),
                                                 want.refs if want is not None else ())))
        return out

    def equivalent(self, key, desired: NftElements, actual: NftElements) -> bool:
        if desired.set != actual.set:
            return False
        # the common case, comments included, at C speed (both sorted by key)
        return desired.items == actual.items or \
            {k: v for k, v, _ in desired.items} == {k: v for k, v, _ in actual.items}


def descriptors(nft: Nftables) -> list[Descriptor]:
    batch = NftBatch(nft)
    return [TableDescriptor(nft, batch), SetDescriptor(nft, batch), ChainDescriptor(nft, batch),
            ElementDescriptor(nft, batch), ElementsDescriptor(nft, batch)]
