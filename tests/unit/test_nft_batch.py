"""NftBatch.apply: runs, pieces, fallbacks -- against a recording fake kernel.

The fake wire records each committed netlink batch (its messages) and can be
told to refuse one; the fake libnftables records command text. No root."""
import pytest

from agent.errors import DataplaneError
from agent.linux.nft.batch import NftBatch


class FakeWire:
    def __init__(self, refuse=lambda msgs: False):
        self.commits: list[list] = []
        self.refuse = refuse

    def commit(self, b):
        msgs = [m[2] for m in b.messages()]
        if self.refuse(msgs):
            raise DataplaneError("refused", op="nft-netlink", args={})
        self.commits.append(msgs)


class FakeNft:
    def __init__(self, bad=()):
        self.runs: list[str] = []
        self.bad = set(bad)

    def run(self, text, json_output=False):
        if any(b in text for b in self.bad):
            raise DataplaneError(f"nftables: bad {text.strip()}", op="nft", args={})
        self.runs.append(text.strip())
        return ""


class Desc:
    """``wire``: encodes over netlink (a chain message named after the op) or,
    with ``empty``, encodes to nothing (an element list with no change)."""

    def __init__(self, wire=True, empty=False):
        self.wire, self.empty = wire, empty

    def wire_ops(self, op, b, batch):
        if not self.wire:
            return False
        if not self.empty:
            b.add_chain(op, "")
        return True

    def wire_capable(self, op, batch):
        return self.wire

    def commands(self, op):
        return [f"cmd {op}"]


def group(wire=None, nft=None) -> NftBatch:
    g = NftBatch(nft or FakeNft())
    g.wire = wire or FakeWire()
    return g


def test_a_run_that_encodes_to_no_message_is_a_success():
    g = group()
    assert g.apply(["a", "b"], [Desc(empty=True)] * 2, None) == [None, None]
    assert g.wire.commits == [[]] and g.nft.runs == []


def test_wire_and_text_runs_alternate_in_order():
    g = group()
    ops = ["w1", "w2", "t1", "t2", "w3"]
    descs = [Desc(), Desc(), Desc(wire=False), Desc(wire=False), Desc()]
    assert g.apply(ops, descs, None) == [None] * 5
    assert len(g.wire.commits) == 2 and g.nft.runs == ["cmd t1\ncmd t2"]


@pytest.mark.parametrize("n", [NftBatch.PIECE, NftBatch.PIECE + 1, 3 * NftBatch.PIECE + 7])
def test_long_runs_go_in_pieces_in_order(n):
    g = group()
    ops = [f"op{i}" for i in range(n)]
    assert g.apply(ops, [Desc()] * n, None) == [None] * n
    assert [len(c) for c in g.wire.commits] == [min(NftBatch.PIECE, n - k)
                                                for k in range(0, n, NftBatch.PIECE)]
    sent = [m for c in g.wire.commits for m in c]
    assert len(sent) == n and all(f"op{i}".encode() in m for i, m in enumerate(sent))


def test_a_refused_piece_is_retried_one_by_one_and_only_its_bad_op_fails():
    n = 2 * NftBatch.PIECE + 10
    bad = f"op{NftBatch.PIECE + 3}"
    wire = FakeWire(refuse=lambda msgs: any(bad.encode() + b"\x00" in m for m in msgs))
    g = group(wire, FakeNft(bad=[f"cmd {bad}\n"]))
    ops = [f"op{i}" for i in range(n)]
    res = g.apply(ops, [Desc()] * n, None)
    failed = [i for i, r in enumerate(res) if r is not None]
    assert failed == [NftBatch.PIECE + 3] and isinstance(res[failed[0]], DataplaneError)
    # pieces 1 and 3 over netlink; piece 2 one operation at a time, in order
    assert [len(c) for c in wire.commits] == [NftBatch.PIECE, 10]
    assert g.nft.runs == [f"cmd op{i}" for i in range(NftBatch.PIECE, 2 * NftBatch.PIECE)
                          if i != NftBatch.PIECE + 3]


class Ctx:  # a retrieve pass, as the scheduler makes one
    pass


def test_one_listing_per_retrieve_pass_dropped_with_the_pass():
    nft = FakeNft()
    listed = []
    nft.list_json = lambda what: listed.append(what) or [{"table": {"name": "contiv"}}]
    g = group(nft=nft)
    ctx = Ctx()
    assert g.listing(ctx) is g.listing(ctx) and len(listed) == 1  # shared by the descriptors
    del ctx  # the pass is over: the (large) listing must not outlive it
    assert g._listing is None
    g.listing(Ctx())
    assert len(listed) == 2  # a new pass reads the table again


class ElemDesc(Desc):
    """Appends one element of set ``s`` per op; with ``fail_after``, appends
    that many of its elements and then finds it cannot encode the rest."""

    def __init__(self, fail_after=None):
        super().__init__()
        self.fail_after = fail_after

    def wire_ops(self, op, b, batch):
        if self.fail_after is None:
            b.add_elem("s", op.encode().ljust(8, b"\0"))
            return True
        for k in range(self.fail_after):
            b.add_elem("s", f"{op}-{k}".encode().ljust(8, b"\0"))
        return False


def test_an_op_that_gives_up_midway_leaves_nothing_of_itself_in_the_run():
    g = group()
    res = g.apply(["e1", "e2", "bad"], [ElemDesc(), ElemDesc(), ElemDesc(fail_after=2)], None)
    assert res == [None, None, None]
    (commit,) = g.wire.commits
    (msg,) = commit  # one element list, still open when "bad" appended to it
    assert b"e1" in msg and b"e2" in msg and b"bad" not in msg
    assert g.nft.runs == ["cmd bad"]  # the whole op went as text


class SetTextDesc(Desc):
    """A set that goes as command text; making its text teaches the layout."""

    def __init__(self, group_):
        super().__init__(wire=False)
        self.group = group_

    def commands(self, op):
        self.group.layouts["s"] = (["ipv4_addr"], False)
        return [f"cmd {op}"]


class NeedsLayout(ElemDesc):
    def wire_ops(self, op, b, batch):
        return "s" in batch.layouts and super().wire_ops(op, b, batch)

    def wire_capable(self, op, batch):
        return "s" in batch.layouts


def test_a_set_made_by_text_is_known_to_the_encoding_of_later_pieces():
    """In a pipelined apply the text runs on the worker thread; the set's key
    layout must be learned when the text is made (the caller's thread), or the
    elements after it would go as text or not, depending on timing."""
    g = group()
    n = 3 * NftBatch.PIECE
    ops = ["set"] + [f"e{i}" for i in range(n)]
    descs = [SetTextDesc(g)] + [NeedsLayout()] * n
    assert g.apply(ops, descs, None) == [None] * (n + 1)
    assert g.nft.runs == ["cmd set"]  # every element went over netlink, in 3 pieces
    sent = b"".join(m for c in g.wire.commits for m in c)
    assert len(g.wire.commits) == 3 and all(f"e{i}\0".encode() in sent for i in range(n))
