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
from typing import Iterable, Iterator

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
#: what text the netlink writer cannot encode raises: it goes through libnftables
_UNENCODABLE = (wire.Unsupported, KeyError, ValueError)


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
        if v.spec.startswith("<"):
            # found in the kernel and not desired (retrieve's placeholder
            # spec, "<set TYPE>"): it exists, so a plain delete does
            return [f"delete {v.spec[1:].split()[0]} {T} {v.name}"]
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
                    out.append(Retrieved(set_key(s["name"]), NftSet(
                        s["name"], spec, want.static if want else True,
                        want.grouped if want else False)))
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
        except _UNENCODABLE:
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
        rules: dict[str, list] = {}  # chain -> rule expressions, of chains not desired only
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
                if chain_key(r["chain"]) not in correlate:
                    rules.setdefault(r["chain"], []).append(r.get("expr"))
        out = []
        for n in names:
            want = correlate.get(chain_key(n))
            # kernels do not keep our refs: a chain we no longer want takes them
            # from its rules, so that its removal is ordered after what jumps to
            # it and before the sets it reads (else EBUSY)
            refs = want.refs if want is not None else _listed_refs(rules.get(n, ()))
            out.append(Retrieved(chain_key(n), NftChainState(
                n, digest.get(n, ""), counts.get(n, 0), want.comment if want is not None else "",
                refs)))
        return out

    def equivalent(self, key, desired: NftChain, actual) -> bool:
        if isinstance(actual, NftChainState):
            if not desired.rules:
                return actual.nrules == 0
            return actual.digest == desired.digest and actual.nrules == len(desired.rules)
        return desired == actual


def _verdict_refs(value: str) -> tuple[str, ...]:
    """The chain a map element's verdict (``goto X`` / ``jump X``) needs."""
    verb, _, target = value.partition(" ")
    return (chain_key(target),) if verb in ("goto", "jump") and target else ()


def _listed_refs(exprs) -> tuple[str, ...]:
    """Chains jumped to and sets read by rules as libnftables lists them (JSON
    expressions): ``{"jump": {"target": X}}``, ``"@set"`` operands."""
    out: dict[str, None] = {}
    stack = list(exprs)
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("jump", "goto") and isinstance(v, dict) and isinstance(v.get("target"), str):
                    out[chain_key(v["target"])] = None
                else:
                    stack.append(v)
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str) and x.startswith("@") and len(x) > 1:
            out[set_key(x[1:])] = None
    return tuple(out)


# ---------------------------------------------------------------- element changes
#: One element change, the unit both paths to the kernel take: (kind, key,
#: value, comment, prev), ``prev`` the (key, value, comment) an UPDATE replaces.
_Change = tuple[OpKind, str, str, str, tuple[str, str, str] | None]


def _element_diff(kind: OpKind, v: NftElements, old) -> Iterator[_Change]:
    """The element changes that turn ``old`` (the NftElements in place, if
    any) into ``v``, or remove ``v`` for a DELETE: removed elements first,
    then new and changed ones. A generator over the items, making no value
    per element: a start-up sync runs it over 10,000 Services' elements. Only
    an update indexes the old items (by key) and the new keys."""
    if kind is OpKind.DELETE:
        for k, val, c in v.items:
            yield kind, k, val, c, None
        return
    olds = {item[0]: item for item in old.items} if isinstance(old, NftElements) else {}
    if olds:
        news = {k for k, _, _ in v.items}
        for k, val, c in old.items:
            if k not in news:
                yield OpKind.DELETE, k, val, c, None
    for k, val, c in v.items:
        prev = olds.get(k)
        if prev is None:
            yield OpKind.CREATE, k, val, c, None
        elif prev[1] != val:
            yield OpKind.UPDATE, k, val, c, prev


def _element_text(key: str, value: str, comment: str) -> str:
    c = f" comment {quote(comment)}" if comment else ""
    return f"{key}{c} : {value}" if value else f"{key}{c}"


def _element_commands(set_name: str, changes: Iterable[_Change]) -> list[str]:
    """libnftables commands for ``changes``. A delete is preceded by an add of
    the element as it is (so it cannot fail for being gone already); a map
    element's value cannot be replaced in place, so an update is that
    delete -- of the element it replaces -- plus an add, atomically."""
    s = f"{T} {set_name}"
    out: list[str] = []
    for kind, k, val, c, prev in changes:
        add = f"add element {s} {{ {_element_text(k, val, c)} }}"
        if kind is not OpKind.CREATE:
            out.append(add if prev is None else f"add element {s} {{ {_element_text(*prev)} }}")
            out.append(f"delete element {s} {{ {k} }}")
        if kind is not OpKind.DELETE:
            out.append(add)
    return out


def _element_wire(b: wire.Batch, set_name: str, layout: tuple, changes: Iterable[_Change]) -> bool:
    """Append ``changes`` to the netlink batch ``b``, as :func:`_element_commands`
    would write them; False if one cannot go that way (what was appended is
    then dropped by the caller, and the whole operation goes as text)."""
    try:
        enc = wire.element_encoder(layout)
        for kind, k, val, c, prev in changes:
            kb, db = enc(k, val)
            if kind is not OpKind.CREATE:
                if prev is not None:
                    b.add_elem(set_name, kb, enc(k, prev[1])[1], prev[2])
                elif kind is OpKind.DELETE:
                    b.add_elem(set_name, kb, db, c)
                else:  # an update of an element whose old value is unknown: as text
                    return False
                b.del_elem(set_name, kb)
            if kind is not OpKind.DELETE:
                b.add_elem(set_name, kb, db, c)
    except _UNENCODABLE:
        return False
    return True


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

    @staticmethod
    def _changes(kind: OpKind, v: NftElement, old) -> tuple[_Change, ...]:
        """The element changes an operation on ``v`` makes (see :func:`_element_diff`)."""
        prev = (old.key, old.value, old.comment) \
            if kind is OpKind.UPDATE and isinstance(old, NftElement) else None
        return ((kind, v.key, v.value, v.comment, prev),)

    def commands_for(self, kind, v, old):
        return _element_commands(v.set, self._changes(kind, v, old))

    def wire_capable(self, op, batch) -> bool:
        return op.value.set in batch.layouts

    def wire_ops(self, op, b, batch) -> bool:
        v = op.value
        layout = batch.layouts.get(v.set)
        return layout is not None and _element_wire(b, v.set, layout, self._changes(op.kind, v, op.old))

    def retrieve(self, correlate, ctx):
        # every set of single elements, also one with no element desired now
        # or a leftover nobody desires (its elements may point at chains that
        # are to go: they must go first); not dynamic or grouped sets (learnt
        # by the set descriptor's retrieve, which runs before this one)
        skip = self.batch_group.not_single
        sets = {v.set for v in correlate.values()} | {
            n for n in self.batch_group.set_names(ctx) if n not in skip}
        out = []
        for set_name, key_text, val_text, comment in self.batch_group.elements(ctx, sets):
            ek = element_key(set_name, key_text)
            want = correlate.get(ek)
            refs = want.refs if want is not None and want.value == val_text else _verdict_refs(val_text)
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
    def _changes(kind: OpKind, v: NftElements, old) -> Iterator[_Change]:
        return _element_diff(kind, v, old)

    def retrieve(self, correlate, ctx):
        sets = {v.set for v in correlate.values()}
        owner: dict[tuple[str, str], str] = {}
        for vk, v in correlate.items():
            for k, _, _ in v.items:
                owner[(v.set, k)] = vk
        found: dict[str, list] = {}
        for set_name, k, val, c in self.batch_group.elements(ctx, sets):
            vk = owner.get((set_name, k)) or elements_key(set_name, self.ORPHANS)
            found.setdefault(vk, []).append((k, val, c))
        # an owner with nothing in an existing set holds the empty group there
        # (so an empty claim is not "missing", and a missing group is an update)
        present = self.batch_group.set_names(ctx)
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
