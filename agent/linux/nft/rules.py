"""nf_tables rule expressions, and the rule grammar our renderers write.

:func:`compile_rule` turns the rule text of ``svcrender``/``polrender`` (the
same text libnftables would be given) into the NFTA_RULE_EXPRESSIONS payload
that :class:`agent.linux.nft.wire.Batch` sends: one grammar, two paths to the
kernel. A rule outside the grammar raises :class:`~agent.linux.nft.wire.Unsupported`
and goes through libnftables instead.

The grammar is exactly what the renderers write into regular chains, less a
few fixed Service rules left to libnftables on purpose;
``tests/unit/test_nft_rules.py`` renders all of it and keeps the two in step.
"""
from __future__ import annotations

import struct

from agent.linux.nft.values import RULE_COMMENT
from agent.linux.nft.wire import (CMP_EQ, CMP_GTE, CMP_LTE, META, NF_ACCEPT, NF_NAT_RANGE_MAP_IPS,
                                  NF_NAT_RANGE_PROTO_SPECIFIED, NFPROTO_IPV4, NFT_GOTO, NFT_JUMP, PROTO,
                                  REG1, REG_VERDICT, Unsupported, _be32, _nest, _nla, _str,
                                  _verdict_data)


# ---------------------------------------------------------------- expressions
def _expr(name: str, *attrs: bytes) -> bytes:
    return _nest(1, _str(1, name), _nest(2, *attrs))  # NFTA_LIST_ELEM{NAME, DATA}


def e_meta_load(key: str, dreg: int) -> bytes:
    return _expr("meta", _be32(2, META[key]), _be32(1, dreg))


def e_payload(base: int, offset: int, length: int, dreg: int) -> bytes:
    return _expr("payload", _be32(1, dreg), _be32(2, base), _be32(3, offset), _be32(4, length))


def e_cmp(sreg: int, op: int, data: bytes) -> bytes:
    return _expr("cmp", _be32(1, sreg), _be32(2, op), _nest(3, _nla(1, data)))


def e_verdict(code: int, chain: str | None = None) -> bytes:
    # NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { CODE, CHAIN } }
    return _expr("immediate", _be32(1, REG_VERDICT), _nest(2, _verdict_data(code, chain)))


def e_numgen(dreg: int, modulus: int) -> bytes:
    return _expr("numgen", _be32(1, dreg), _be32(2, modulus), _be32(3, 1))  # NFT_NG_RANDOM


def e_dnat(reg_addr: int, reg_proto: int) -> bytes:
    return _expr("nat", _be32(1, 1), _be32(2, NFPROTO_IPV4), _be32(3, reg_addr), _be32(5, reg_proto),
                 _be32(7, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED))


def e_lookup(set_name: str, sreg: int) -> bytes:
    return _expr("lookup", _str(1, set_name), _be32(2, sreg))


def e_and(reg: int, mask: int) -> bytes:
    return _expr("bitwise", _be32(1, reg), _be32(2, reg), _be32(3, 4), _nest(4, _nla(1, struct.pack("=I", mask))),
                 _nest(5, _nla(1, struct.pack("=I", 0))))


def e_reject(kind: int, code: int) -> bytes:
    return _expr("reject", _be32(1, kind), _nla(2, struct.pack("B", code)))


# ---------------------------------------------------------------- rule grammar
_FIELDS = {  # what `@set` lookups in our rules load, and where
    "ip saddr": ("payload", 1, 12, 4), "ip daddr": ("payload", 1, 16, 4),
    "meta l4proto": ("meta", "l4proto"), "th dport": ("payload", 2, 2, 2),
}


def _load(field: str, dreg: int) -> bytes:
    spec = _FIELDS[field]
    if spec[0] == "meta":
        return e_meta_load(spec[1], dreg)
    return e_payload(spec[1], spec[2], spec[3], dreg)


def compile_rule(text: str) -> tuple[bytes, str]:
    """Rule text of our renderers -> (NFTA_RULE_EXPRESSIONS payload, comment)."""
    comment = ""
    m = RULE_COMMENT.search(text)
    if m:
        comment, text = m.group(1), text[:m.start()]
    toks = text.split()
    exprs: list[bytes] = []
    i = 0

    def take(n: int) -> list[str]:
        nonlocal i
        if i + n > len(toks):
            raise Unsupported(text)
        out = toks[i:i + n]
        i += n
        return out

    while i < len(toks):
        t = toks[i]
        if t == "meta" and toks[i + 1:i + 2] == ["l4proto"] and toks[i + 2:i + 3] != ["."]:
            _, _, proto = take(3)
            exprs += [e_meta_load("l4proto", REG1), e_cmp(REG1, CMP_EQ, bytes([PROTO[proto]]))]
        elif t == "th" and toks[i + 1:i + 2] == ["dport"]:
            _, _, ports = take(3)
            exprs.append(e_payload(2, 2, 2, REG1))
            lo, _, hi = ports.partition("-")
            if hi:
                exprs += [e_cmp(REG1, CMP_GTE, struct.pack(">H", int(lo))),
                          e_cmp(REG1, CMP_LTE, struct.pack(">H", int(hi)))]
            else:
                exprs.append(e_cmp(REG1, CMP_EQ, struct.pack(">H", int(lo))))
        elif t == "ip" and toks[i + 1:i + 2] in (["saddr"], ["daddr"]):
            # ip saddr @set | ip daddr . meta l4proto . th dport @set
            fields = [" ".join(take(2))]
            while toks[i:i + 1] == ["."]:
                take(1)
                fields.append(" ".join(take(2)))
            operand = take(1)[0]
            if not operand.startswith("@") or any(f not in _FIELDS for f in fields):
                raise Unsupported(text)
            exprs += [_load(f, REG1 if k == 0 else 8 + k) for k, f in enumerate(fields)]
            exprs.append(e_lookup(operand[1:], REG1))
        elif t == "dnat" and toks[i + 1:i + 5] == ["ip", "addr", ".", "port"]:
            # dnat ip addr . port to <key> map @set -- the endpoint comes from a map:
            # key "meta mark . numgen random mod N" or "ip saddr . meta mark"
            take(6)  # dnat ip addr . port to
            rest = toks[i:]
            if len(rest) < 4 or rest[-2] != "map" or not rest[-1].startswith("@"):
                raise Unsupported(text)
            sname, key = rest[-1][1:], " ".join(rest[:-2])
            if key.startswith("meta mark . numgen random mod "):
                exprs += [e_meta_load("mark", REG1), e_numgen(9, int(key.rsplit(" ", 1)[1]))]
            elif key == "ip saddr . meta mark":
                exprs += [_load("ip saddr", REG1), e_meta_load("mark", 9)]
            else:
                raise Unsupported(text)
            # the map's data (address . port) lands in 32-bit registers 8 and 9
            exprs += [_expr("lookup", _str(1, sname), _be32(2, REG1), _be32(3, REG1)), e_dnat(REG1, 9)]
            i = len(toks)
        elif t == "meta" and toks[i + 1:i + 3] == ["mark", "&"] and toks[i + 4:i + 5] == ["vmap"]:
            _, _, _, mask, _, sname = take(6)  # meta mark & MASK vmap @set
            if not sname.startswith("@"):
                raise Unsupported(text)
            exprs += [e_meta_load("mark", REG1), e_and(REG1, int(mask, 0)),
                      _expr("lookup", _str(1, sname[1:]), _be32(2, REG1), _be32(3, REG_VERDICT))]
        elif t in ("goto", "jump"):
            _, chain = take(2)
            exprs.append(e_verdict(NFT_GOTO if t == "goto" else NFT_JUMP, chain))
        elif t == "accept":
            take(1)
            exprs.append(e_verdict(NF_ACCEPT))
        elif t == "reject":
            rest = toks[i:]
            if rest == ["reject"]:
                exprs.append(e_reject(0, 3))  # ICMP port unreachable
            elif rest == ["reject", "with", "tcp", "reset"]:
                exprs.append(e_reject(1, 0))
            elif rest == ["reject", "with", "icmp", "type", "admin-prohibited"]:
                exprs.append(e_reject(0, 13))
            else:
                raise Unsupported(text)
            i = len(toks)
        else:
            raise Unsupported(text)
    return b"".join(exprs), comment
