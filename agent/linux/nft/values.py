"""nftables objects as values. Everything lives in table ``ip contiv``.

Keys::

    nft/table/contiv                  NftTable
    nft/set/<name>                    NftSet   (sets and maps)
    nft/chain/<name>                  NftChain (base or regular chain with its rules)
    nft/element/<set>/<key text>      NftElement   (one element)
    nft/elements/<set>/<owner>        NftElements  (the elements one owner -- a Service -- has in a set)

A chain's rules are nftables rule text. The comment of a chain's first rule
carries a digest of its hook and rules, so ``retrieve`` can tell whether a
chain in the kernel is the one we want without parsing nft's canonical rule
output.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: a rule's trailing ``comment "..."`` (also what the netlink rule compiler strips)
RULE_COMMENT = re.compile(r'\s+comment\s+"([^"]*)"\s*$')

FAMILY = "ip"
#: longest comment we write (nftables allows 128 bytes)
COMMENT_MAX = 120
TABLE = "contiv"
TABLE_KEY = f"nft/table/{TABLE}"


def chain_key(name: str) -> str:
    return f"nft/chain/{name}"


def set_key(name: str) -> str:
    return f"nft/set/{name}"


def element_key(set_name: str, key: str) -> str:
    return f"nft/element/{set_name}/{key}"


def elements_key(set_name: str, owner: str) -> str:
    return f"nft/elements/{set_name}/{owner}"


@dataclass(frozen=True, slots=True)
class NftTable:
    name: str = TABLE


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named set or map. ``spec`` is the body between braces, e.g.
    ``type ipv4_addr . inet_proto . inet_service : verdict;``. ``static``:
    its elements are values of ours (retrieved and reconciled); dynamic sets
    (filled by rules, e.g. session affinity) are not. ``grouped``: its
    elements are held as :class:`NftElements` groups (one value per owner),
    not one :class:`NftElement` value each."""

    name: str
    spec: str
    static: bool = True
    grouped: bool = False


@dataclass(frozen=True, slots=True)
class NftChain:
    """A chain and its rules. ``hook`` (``type nat hook prerouting priority
    dstnat; policy accept;``) makes it a base chain. ``refs`` are the keys of
    the chains and sets its rules use (its dependencies)."""

    name: str
    rules: tuple[str, ...]
    hook: str = ""
    comment: str = ""
    refs: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        h = hashlib.sha1(self.hook.encode())
        for r in self.rules:
            h.update(b"\n" + r.encode())
        return h.hexdigest()[:12]

    def rendered_rules(self) -> tuple[str, ...]:
        """The rules as installed: the first carries the digest in its comment
        (the kernel never updates a chain's own comment once the chain exists,
        but rules are rewritten on every update). The digest survives the
        comment length limit, or retrieve could never recognise the chain."""
        if not self.rules:
            return ()
        first = self.rules[0]
        tag = f"#{self.digest}"
        m = RULE_COMMENT.search(first)
        text = m.group(1) if m else ""
        body = first[:m.start()] if m else first
        comment = f"{text[:COMMENT_MAX - len(tag) - 1]} {tag}".strip()
        return (f'{body} comment "{comment}"',) + self.rules[1:]


@dataclass(frozen=True, slots=True)
class NftChainState:
    """What retrieve can say about a chain: its digest tag and rule count."""

    name: str
    digest: str
    nrules: int
    comment: str = ""
    refs: tuple[str, ...] = ()  # from the desired chain of that name (kernels do not keep them)


@dataclass(frozen=True, slots=True)
class NftElement:
    """An element of a set (``value`` empty) or map (``value`` the verdict or
    data, e.g. ``goto svc-x`` or ``drop``)."""

    set: str
    key: str
    value: str = ""
    comment: str = ""
    refs: tuple[str, ...] = ()


def quote(comment: str) -> str:
    """nftables string literal for comments (no quotes or newlines inside)."""
    return '"' + comment.replace('"', "'").replace("\n", " ")[:COMMENT_MAX] + '"'


@dataclass(frozen=True, slots=True)
class NftElements:
    """All the elements one owner (a Service) has in one set, as ONE value:
    a Service is a handful of values instead of one per endpoint, which keeps
    the reconciler's per-value work out of large syncs. ``items`` are
    (key, value, comment) sorted by key; an update touches only the elements
    that differ. A set is managed either by NftElement values or by
    NftElements values, never both."""

    set: str
    items: tuple[tuple[str, str, str], ...]
    refs: tuple[str, ...] = ()

    def mapping(self) -> dict[str, tuple[str, str]]:
        return {k: (v, c) for k, v, c in self.items}
