"""nftables over raw netlink, for the hot path: chains, rules and elements.

libnftables re-reads the ruleset cache on every command (tens of ms once a
table holds ~10,000 chains) and parses rule text at ~50 µs a rule. This
module speaks the kernel's nf_tables netlink protocol directly for the objects
the reconciler changes all the time -- regular chains with their rules, and
elements of sets whose key layout it knows -- so that one Service change is
one small kernel transaction whatever the table's size, and a full sync of
tens of thousands of rules is a few batched sendmsg calls.

Rules are compiled from the same text the renderers produce (one grammar,
:func:`agent.linux.nft.rules.compile_rule`); a rule outside that grammar
raises :class:`Unsupported` and the caller falls back to libnftables. Base chains,
sets and interval elements always go through libnftables.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Callable

from agent.errors import DataplaneError
from agent.linux.nlmsg import HDR as _HDR, message as _message, nla as _nla, nla_str as _str

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_APPEND, NLM_F_EXCL = 1, 4, 0x400, 0x800, 0x200
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NFPROTO_IPV4 = 2

MSG = {"NEWCHAIN": 3, "DELCHAIN": 5, "NEWRULE": 6, "DELRULE": 8, "NEWSET": 9, "DELSET": 11,
       "NEWSETELEM": 12, "DELSETELEM": 14}
#: nftables' datatype ids (what `nft list` shows a set's key as)
TYPE_ID = {"ipv4_addr": 7, "inet_proto": 12, "inet_service": 13, "mark": 19}
NFT_SET_CONCAT = 0x80
NF_DROP, NF_ACCEPT, NFT_JUMP, NFT_GOTO, NFT_RETURN = 0, 1, -3, -4, -5
META = {"l4proto": 16, "mark": 3}
PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}
REG_VERDICT, REG1 = 0, 1
CMP_EQ, CMP_LTE, CMP_GTE = 0, 3, 5
NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED = 1, 2


class Unsupported(Exception):
    """Outside the grammar this module compiles: use libnftables instead."""


# ---------------------------------------------------------------- encoding
# _nla and _str: agent.linux.nlmsg's, shared with agent.linux.rtnl
def _nest(t: int, *parts: bytes) -> bytes:
    return _nla(t | NLA_F_NESTED, b"".join(parts))


def _be32(t: int, v: int) -> bytes:
    return _nla(t, struct.pack(">i" if v < 0 else ">I", v))


def _udata_comment(text: str) -> bytes:
    raw = text.encode()[:250] + b"\0"
    return struct.pack("BB", 0, len(raw)) + raw  # NFTNL_UDATA_*_COMMENT = 0


def _verdict_data(code: int, chain: str | None) -> bytes:
    inner = _be32(1, code) + (_str(2, chain) if chain else b"")
    return _nest(2, inner)  # NFTA_DATA_VERDICT


# ---------------------------------------------------------------- messages
#: typeof expressions -> field types
_TYPEOF = {"meta mark": "mark", "ip saddr": "ipv4_addr", "ip daddr": "ipv4_addr",
           "th dport": "inet_service", "meta l4proto": "inet_proto"}
FIELD_LEN = {"ipv4_addr": 4, "inet_proto": 1, "inet_service": 2, "mark": 4, "integer": 4}


def plain_set_fields(spec: str) -> list[str] | None:
    """``type a . b;`` (nothing else) -> its field types, else None."""
    parts = [p.strip() for p in spec.split(";") if p.strip()]
    if len(parts) != 1 or not parts[0].startswith("type ") or ":" in parts[0]:
        return None
    fields = [f.strip() for f in parts[0][5:].split(" . ")]
    # host-endian types (mark) would need nft's byte-order user data to be
    # listed right: those few sets stay with libnftables
    return fields if all(f in TYPE_ID and f != "mark" for f in fields) else None


def _fields(text: str, typeof: bool) -> list[str]:
    out = []
    for f in (x.strip() for x in text.split(" . ")):
        if typeof:
            f = "integer" if f.startswith("numgen ") else _TYPEOF.get(f, "")
        if f not in FIELD_LEN:
            raise Unsupported(text)
        out.append(f)
    return out


def set_key_layout(spec: str) -> tuple[list[str], str | list[str]]:
    """``type a . b : verdict;`` / ``typeof expr . expr : expr . expr;`` ->
    (key field types, data: "" for a set, "verdict", or data field types).
    Only plain (non-interval) sets of known field types."""
    first = spec.split(";")[0].strip()
    if "interval" in spec:
        raise Unsupported(spec)
    if first.startswith("type "):
        typeof, body = False, first[5:]
    elif first.startswith("typeof "):
        typeof, body = True, first[7:]
    else:
        raise Unsupported(spec)
    key, _, data = body.partition(":")
    data = data.strip()
    if data == "verdict":
        return _fields(key, typeof), "verdict"
    return _fields(key, typeof), (_fields(data, typeof) if data else "")


def _ipv4(p: str) -> bytes:
    try:
        return socket.inet_aton(p) if p.count(".") == 3 else ipaddress.IPv4Address(p).packed
    except OSError:
        raise Unsupported(p) from None


_PACK_H, _PACK_I = struct.Struct(">H").pack, struct.Struct("=I").pack
#: field type -> (text -> bytes); the padded variants fill a whole 32-bit register
_FIELD = {
    "ipv4_addr": _ipv4,
    "inet_proto": lambda p: bytes([PROTO[p]]) if p in PROTO else bytes([int(p)]),
    "inet_service": lambda p: _PACK_H(int(p)),
    "mark": lambda p: _PACK_I(int(p, 0)),  # host byte order, as the registers hold them
    "integer": lambda p: _PACK_I(int(p, 0)),
}
_PADDED = {
    "ipv4_addr": _ipv4,
    "inet_proto": lambda p: (bytes([PROTO[p]]) if p in PROTO else bytes([int(p)])) + b"\0\0\0",
    "inet_service": lambda p: _PACK_H(int(p)) + b"\0\0",
    "mark": _FIELD["mark"],
    "integer": _FIELD["integer"],
}
#: field types -> text encoder; (key fields, data) -> element encoder
_ENCODERS: dict[tuple[str, ...], Callable] = {}
_ELEMENT_ENCODERS: dict[tuple, Callable] = {}


def _text_encoder(fields: tuple[str, ...]) -> Callable[[str], bytes]:
    """Element text (``10.96.0.1 . tcp . 80``) of ``fields`` -> the key or data
    bytes; in a concatenation every field takes whole 32-bit registers."""
    enc = _ENCODERS.get(fields)
    if enc is not None:
        return enc
    try:
        fns = tuple((_PADDED if len(fields) > 1 else _FIELD)[f] for f in fields)
    except KeyError:
        raise Unsupported(" . ".join(fields)) from None
    n = len(fns)

    def enc(text: str) -> bytes:
        parts = text.split(" . ")
        if len(parts) != n:
            raise Unsupported(text)
        try:
            if n == 1:
                return fns[0](parts[0].strip())
            if n == 2:
                return fns[0](parts[0].strip()) + fns[1](parts[1].strip())
            return b"".join(f(p.strip()) for f, p in zip(fns, parts))
        except (KeyError, ValueError, struct.error):
            raise Unsupported(text) from None
    _ENCODERS[fields] = enc
    return enc


def encode_verdict(text: str) -> tuple[int, str | None]:
    word, _, chain = text.partition(" ")
    codes = {"goto": NFT_GOTO, "jump": NFT_JUMP, "drop": NF_DROP, "accept": NF_ACCEPT,
             "return": NFT_RETURN}
    if word not in codes:
        raise Unsupported(text)
    return codes[word], chain or None


def element_encoder(layout: tuple) -> Callable[[str, str], tuple[bytes, bytes | tuple | None]]:
    """The encoder of the elements of a set of ``layout`` (:func:`set_key_layout`):
    (key text, value text, as the renderers write them) -> (key bytes, data:
    a verdict ``(code, chain)``, the value's bytes, or None for a plain set),
    what :meth:`Batch.add_elem` takes. It raises :class:`Unsupported` for an
    element the layout cannot carry -- a value for a plain set or none for a
    map included: libnftables then says what is wrong with it. Made once per
    layout: a large sync encodes tens of thousands of elements of a few sets."""
    fields, data = layout
    ident = (tuple(fields), data if isinstance(data, str) else tuple(data))
    enc = _ELEMENT_ENCODERS.get(ident)
    if enc is not None:
        return enc
    key = _text_encoder(ident[0])
    value = encode_verdict if data == "verdict" else _text_encoder(ident[1]) if data else None

    def enc(k: str, v: str) -> tuple[bytes, bytes | tuple | None]:
        if not v:
            if value is not None:
                raise Unsupported(f"{k}: a map element needs a value")
            return key(k), None
        if value is None:
            raise Unsupported(f"{k} : {v}: a set element has no value")
        return key(k), value(v)
    _ELEMENT_ENCODERS[ident] = enc
    return enc


#: a list element's three nested headers (element, key, key value) / data's two
_ELEM_K = struct.Struct("=HHHHHH").pack
_ELEM_D = struct.Struct("=HHHH").pack
_ELEM_LIST_MAX = 48 << 10  # bytes of elements per message (kernel messages stay small)
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id
_I32 = struct.Struct("=i")


class Batch:
    """Messages of one nf_tables transaction (built in order, sent at once).

    Consecutive element operations on the same set share one message (an
    element list), as nft does: a full sync of 60,000 elements is a few
    hundred messages, not 60,000."""

    def __init__(self, table: str, family: int = NFPROTO_IPV4) -> None:
        self.table, self.family = table, family
        self.msgs: list = []  # (type, flags, payload bytes) or an open element list
        self._open: list | None = None  # [type, flags, set name, [elem bytes], size]
        self._tbl = _str(1, table)
        self._set_id = 0

    def _add(self, msg: str, flags: int, attrs: bytes) -> None:
        self._open = None
        self.msgs.append(((NFNL_SUBSYS_NFTABLES << 8) | MSG[msg], flags, attrs))

    def add_chain(self, name: str, comment: str) -> None:
        self._add("NEWCHAIN", NLM_F_CREATE, self._tbl + _str(3, name) +
                  (_nla(12, _udata_comment(comment)) if comment else b""))

    def flush_chain(self, name: str) -> None:
        self._add("DELRULE", 0, self._tbl + _str(2, name))

    def del_chain(self, name: str) -> None:
        self._add("DELCHAIN", 0, self._tbl + _str(3, name))

    def add_rule(self, chain: str, exprs: bytes, comment: str) -> None:
        self._add("NEWRULE", NLM_F_CREATE | NLM_F_APPEND,
                  self._tbl + _str(2, chain) + _nest(4, exprs) +
                  (_nla(7, _udata_comment(comment)) if comment else b""))

    def _elem(self, msg: str, flags: int, set_name: str, key: bytes, data=None, comment="") -> None:
        """``data``: a (code, chain) verdict, raw value bytes, or None (a set)."""
        # NFTA_LIST_ELEM{ KEY{VALUE}, [DATA{VALUE|VERDICT}], [USERDATA] }
        if not comment and not isinstance(data, tuple) and not len(key) % 4 and \
                (data is None or not len(data) % 4):
            # the common case, with no padding anywhere: the headers in one pack
            kl = len(key)
            if data is None:
                elem = _ELEM_K(12 + kl, 1 | NLA_F_NESTED, 8 + kl, 1 | NLA_F_NESTED, 4 + kl, 1) + key
            else:
                dl = len(data)
                elem = _ELEM_K(20 + kl + dl, 1 | NLA_F_NESTED, 8 + kl, 1 | NLA_F_NESTED, 4 + kl, 1) + \
                    key + _ELEM_D(8 + dl, 2 | NLA_F_NESTED, 4 + dl, 1) + data
            return self._append_elem(msg, flags, set_name, elem)
        elem = _nla(1 | NLA_F_NESTED, _nla(1, key))
        if isinstance(data, tuple):
            elem += _nest(2, _verdict_data(*data))
        elif data is not None:
            elem += _nla(2 | NLA_F_NESTED, _nla(1, data))
        if comment:
            elem += _nla(6, _udata_comment(comment))
        self._append_elem(msg, flags, set_name, _nla(1 | NLA_F_NESTED, elem))

    def _append_elem(self, msg: str, flags: int, set_name: str, elem: bytes) -> None:
        mtype = (NFNL_SUBSYS_NFTABLES << 8) | MSG[msg]
        o = self._open
        if o is not None and o[0] == mtype and o[1] == flags and o[2] == set_name \
                and o[4] + len(elem) < _ELEM_LIST_MAX:
            o[3].append(elem)
            o[4] += len(elem)
            return
        self._open = [mtype, flags, set_name, [elem], len(elem)]
        self.msgs.append(self._open)

    def add_set(self, name: str, fields: list[str]) -> None:
        """A plain set (no data, no flags) of ``fields`` (``type a . b ...``)."""
        ktype = 0
        for f in fields:
            ktype = (ktype << 6) | TYPE_ID[f]
        klen = sum(-(-FIELD_LEN[f] // 4) * 4 for f in fields) if len(fields) > 1 else FIELD_LEN[fields[0]]
        self._set_id += 1
        attrs = self._tbl + _str(2, name) + _be32(3, NFT_SET_CONCAT if len(fields) > 1 else 0) + \
            _be32(4, ktype) + _be32(5, klen) + _be32(10, self._set_id)
        if len(fields) > 1:  # NFTA_SET_DESC { NFTA_SET_DESC_CONCAT { field lengths } }
            attrs += _nest(9, _nest(2, *[_nest(1, _be32(1, FIELD_LEN[f])) for f in fields]))
        self._add("NEWSET", NLM_F_CREATE, attrs)

    def del_set(self, name: str) -> None:
        self._add("DELSET", 0, self._tbl + _str(2, name))

    def add_elem(self, set_name, key, verdict=None, comment=""):
        self._elem("NEWSETELEM", NLM_F_CREATE, set_name, key, verdict, comment)

    def del_elem(self, set_name, key):
        self._elem("DELSETELEM", 0, set_name, key)

    def mark(self) -> tuple:
        """Where the batch stands now, for :meth:`rewind`."""
        o = self._open
        return len(self.msgs), o, (len(o[3]), o[4]) if o is not None else None

    def rewind(self, mark: tuple) -> None:
        """Drop everything appended since ``mark`` -- what an operation that
        could not be encoded after all had already added -- including the
        elements it appended to an element list that was open before it."""
        n, o, open_state = mark
        del self.msgs[n:]
        if o is not None:
            del o[3][open_state[0]:]
            o[4] = open_state[1]
        self._open = o

    def messages(self) -> list[tuple[int, int, bytes]]:
        out = []
        for m in self.msgs:
            if isinstance(m, list):
                out.append((m[0], m[1], self._tbl + _str(2, m[2]) +
                            _nla(3 | NLA_F_NESTED, b"".join(m[3]))))
            else:
                out.append(m)
        return out


class Wire:
    """A NETLINK_NETFILTER socket that commits :class:`Batch` es."""

    CHUNK = 4000  # messages per kernel transaction for very large syncs

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        for opt, force in ((socket.SO_SNDBUF, 32), (socket.SO_RCVBUF, 33)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, force, 64 << 20)  # *BUFFORCE (root)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
        self.sock.bind((0, 0))
        self.seq = int.from_bytes(os.urandom(2), "little") << 8

    def commit(self, batch: Batch) -> None:
        msgs = batch.messages()
        for start in range(0, len(msgs), self.CHUNK):
            self._commit(batch.family, msgs[start:start + self.CHUNK])

    def _commit(self, family: int, msgs) -> None:
        parts = []
        self.seq += 1
        first = self.seq
        parts.append(self._msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, b"", res_id=NFNL_SUBSYS_NFTABLES))
        for mtype, flags, attrs in msgs:
            self.seq += 1
            parts.append(self._msg(mtype, NLM_F_REQUEST | NLM_F_ACK | flags, family, attrs))
        self.seq += 1
        last = self.seq
        parts.append(self._msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, b"", res_id=NFNL_SUBSYS_NFTABLES))
        self.sock.sendall(b"".join(parts))
        pending = set(range(first + 1, last))
        errors = []
        while pending:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                # the header and the error code only: no payload is copied
                ln, typ, _, seq, _ = _HDR.unpack_from(data, off)
                if typ == NLMSG_ERROR:
                    code = _I32.unpack_from(data, off + 16)[0]
                    if code:
                        errors.append((seq - first - 1, -code))
                    pending.discard(seq)
                off += (ln + 3) & ~3
            if errors:
                # after an error the kernel aborts the batch: no more acks come
                break
        if errors:
            idx, code = errors[0]
            raise DataplaneError(f"nftables (netlink): message {idx} of {len(msgs)}: {os.strerror(code)}",
                                 op="nft-netlink", args={"errno": code, "index": idx})

    def _msg(self, mtype: int, flags: int, family: int, attrs: bytes, res_id: int = 0) -> bytes:
        return _message(mtype, flags, self.seq, _NFGEN.pack(family, 0, socket.htons(res_id)) + attrs)

    def close(self) -> None:
        self.sock.close()
