"""Element changes: the netlink path and the libnftables path do the same thing.

An element operation goes to the kernel either as an nf_tables batch or as
``nft`` command text (when the batch cannot take it, or to name a bad
operation after a failed commit). Both must leave the set holding the same
elements, and both must be safe to replay: every delete is preceded by an add
of the element as it is, and an add never meets the key holding other data
(the kernel refuses that with EBUSY). Checked here without a kernel: the text
is parsed, the netlink calls recorded, and both replayed on a model of a set.
"""
from __future__ import annotations

import re

import pytest

from agent.linux.nft import wire
from agent.linux.nft.batch import NftBatch
from agent.linux.nft.descriptors import ElementDescriptor, ElementsDescriptor
from agent.linux.nft.values import NftElement, NftElements, NftSet
from agent.reconciler.plan import Operation, OpKind

SETS = {  # one set of each layout the renderers use: map to verdict, map to data, plain set
    "ingress-pods": "type ipv4_addr : verdict;",
    "svc-be": "typeof meta mark . numgen random mod 2 : ip daddr . th dport;",
    "svc-noep": "type ipv4_addr . inet_proto . inet_service;",
}
OLD = {
    "ingress-pods": [("10.1.1.2", "goto grp-i-1", "x/a ingress"), ("10.1.1.3", "goto grp-i-1", "x/b ingress"),
                     ("10.1.1.4", "goto grp-i-2", "x/c ingress")],
    "svc-be": [("1025 . 0", "10.1.1.2 . 8080", ""), ("1025 . 1", "10.1.2.2 . 8080", ""),
               ("1025 . 2", "10.1.3.2 . 8080", "")],
    "svc-noep": [("10.96.0.1 . tcp . 80", "", "default/a:http"), ("10.96.0.2 . udp . 53", "", "default/b:53")],
}
NEW = {  # a value changed, an element removed, one added, one unchanged
    "ingress-pods": [("10.1.1.2", "goto grp-i-2", "x/a ingress"), ("10.1.1.4", "goto grp-i-2", "x/c ingress"),
                     ("10.1.1.5", "goto grp-i-1", "x/d ingress")],
    "svc-be": [("1025 . 0", "10.1.1.2 . 8080", ""), ("1025 . 1", "10.1.2.9 . 8080", ""),
               ("1025 . 3", "10.1.4.2 . 8080", "")],
    "svc-noep": [("10.96.0.2 . udp . 53", "", "default/b:53"), ("10.96.0.3 . sctp . 9", "", "default/c:9")],
}
_TEXT = re.compile(r'^(add|delete) element ip contiv (\S+) \{ (.*?)( comment "[^"]*")?( : (.*))? \}$')


class Recorder:
    """Stands in for :class:`wire.Batch`: records element calls in order."""

    def __init__(self):
        self.calls = []

    def add_elem(self, set_name, key, data=None, comment=""):
        self.calls.append(("add", set_name, key, data))

    def del_elem(self, set_name, key):
        self.calls.append(("delete", set_name, key, None))


def group() -> NftBatch:
    g = NftBatch(None)
    for name, spec in SETS.items():
        g.learn_set(NftSet(name, spec))
    return g


def encode(g: NftBatch, set_name: str, key: str, value: str) -> tuple:
    return wire.element_encoder(g.layouts[set_name])(key, value)


def from_text(g: NftBatch, commands: list[str]) -> list[tuple]:
    """The element calls that ``nft`` command text stands for."""
    out = []
    added = {}  # key text -> its bytes; a delete of a key not added first fails here
    for cmd in commands:
        verb, set_name, key, _, _, value = _TEXT.fullmatch(cmd).groups()
        if verb == "add":
            kb, db = encode(g, set_name, key, value or "")
            added[key] = kb
            out.append((verb, set_name, kb, db))
        else:
            out.append((verb, set_name, added[key], None))
    return out


def replay(start: dict, calls: list[tuple]) -> dict:
    """A set as the kernel keeps it, changed by ``calls`` in one transaction."""
    state = dict(start)
    for verb, set_name, key, data in calls:
        if verb == "add":
            assert state.get(key, data) == data, "an add meets the key holding other data: EBUSY"
            state[key] = data
        else:
            assert key in state, "a delete of a missing element: ENOENT"
            del state[key]
    return state


CASES = [(kind, s) for kind in (OpKind.CREATE, OpKind.UPDATE, OpKind.DELETE) for s in SETS]


@pytest.mark.parametrize("kind,set_name", CASES, ids=[f"{k.value}-{s}" for k, s in CASES])
def test_netlink_and_text_make_the_same_element_set(kind, set_name):
    g = group()
    old = NftElements(set_name, tuple(OLD[set_name]))
    new = NftElements(set_name, tuple(NEW[set_name]))
    value, prev = {OpKind.CREATE: (new, None), OpKind.UPDATE: (new, old), OpKind.DELETE: (old, None)}[kind]
    start = {OpKind.CREATE: [], OpKind.UPDATE: OLD[set_name], OpKind.DELETE: OLD[set_name]}[kind]
    want = {OpKind.CREATE: NEW[set_name], OpKind.UPDATE: NEW[set_name], OpKind.DELETE: []}[kind]
    start_state = dict(encode(g, set_name, k, v) for k, v, _ in start)

    desc = ElementsDescriptor(None, g)
    op = Operation(kind, f"nft/elements/{set_name}/o", value, "test", prev)
    rec = Recorder()
    assert desc.wire_ops(op, rec, g)
    text = from_text(g, desc.commands(op))
    assert rec.calls == text  # the same steps, in the same order
    assert replay(start_state, rec.calls) == dict(encode(g, set_name, k, v) for k, v, _ in want)


@pytest.mark.parametrize("kind", [OpKind.CREATE, OpKind.UPDATE, OpKind.DELETE])
def test_one_element_takes_the_same_steps_either_way(kind):
    g = group()
    old = NftElement("ingress-pods", "10.1.1.2", "goto grp-i-1", "x/a ingress")
    new = NftElement("ingress-pods", "10.1.1.2", "goto grp-i-2", "x/a ingress")
    op = Operation(kind, "nft/element/ingress-pods/10.1.1.2", old if kind is OpKind.DELETE else new, "test",
                   old if kind is OpKind.UPDATE else None)
    desc = ElementDescriptor(None, g)
    rec = Recorder()
    assert desc.wire_ops(op, rec, g)
    assert rec.calls == from_text(g, desc.commands(op))
    start = {} if kind is OpKind.CREATE else dict([encode(g, old.set, old.key, old.value)])
    want = {} if kind is OpKind.DELETE else dict([encode(g, new.set, new.key, new.value)])
    assert replay(start, rec.calls) == want


def test_an_element_the_set_layout_cannot_carry_goes_as_text():
    g = group()
    desc = ElementsDescriptor(None, g)
    bad = NftElements("svc-noep", (("10.96.0.1 . tcp . 80", "goto x", ""),))  # data in a plain set
    assert not desc.wire_ops(Operation(OpKind.CREATE, "nft/elements/svc-noep/o", bad, "test"), Recorder(), g)


class Listing:
    """libnftables as retrieve meets it: a JSON listing of the table."""

    def __init__(self, listing):
        self.listing = listing

    def list_json(self, what):
        return self.listing


class Ctx:  # a retrieve pass
    pass


def test_retrieve_gives_each_owner_its_elements_and_an_empty_group_only_in_an_existing_set():
    def elems(*keys):
        return tuple((k, "", "") for k in keys)
    listing = [{"table": {"family": "ip", "name": "contiv"}},
               {"set": {"family": "ip", "table": "contiv", "name": "svc-noep",
                        "elem": [{"concat": ["10.96.0.1", "tcp", 80]}, {"concat": ["10.96.0.2", "udp", 53]}]}},
               {"map": {"family": "ip", "table": "contiv", "name": "svc-be"}}]  # exists, empty
    correlate = {"nft/elements/svc-noep/a": NftElements("svc-noep", elems("10.96.0.1 . tcp . 80")),
                 "nft/elements/svc-noep/b": NftElements("svc-noep", elems("10.96.0.9 . tcp . 80")),
                 "nft/elements/svc-be/c": NftElements("svc-be", (("1025 . 0", "10.1.1.2 . 8080", ""),)),
                 "nft/elements/svc-gone/d": NftElements("svc-gone", elems("10.96.0.3 . tcp . 80"))}
    desc = ElementsDescriptor(None, NftBatch(Listing(listing)))
    got = {r.key: r.value.items for r in desc.retrieve(correlate, Ctx())}
    assert got == {"nft/elements/svc-noep/a": elems("10.96.0.1 . tcp . 80"),
                   "nft/elements/svc-noep/b": (),  # its set exists: an update will add the element
                   "nft/elements/svc-be/c": (),
                   "nft/elements/svc-noep/~unowned": elems("10.96.0.2 . udp . 53")}  # ours, nobody's: removed
