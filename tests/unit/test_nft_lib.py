"""Nftables.list_json's decoding (libnftables itself is not called here)."""
import pytest

from agent.errors import DataplaneError
from agent.linux.nft.lib import Nftables


def _nft_answering(out: bytes = b"", error: str = "") -> Nftables:
    nft = Nftables.__new__(Nftables)  # no libnftables context: _run is replaced

    def run(text, json_output):
        assert json_output and text.startswith("list ")
        if error:
            raise DataplaneError("nftables: " + error, op="nft", args={"error": error})
        return out
    nft._run = run
    return nft


def test_a_listing_is_decoded():
    out = b'{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "contiv"}}]}'
    assert _nft_answering(out).list_json("table ip contiv")[1] == {
        "table": {"family": "ip", "name": "contiv"}}


def test_a_comment_that_is_not_utf8_does_not_break_the_listing():
    out = b'{"nftables": [{"set": {"name": "x", "comment": "caf\xe9"}}]}'
    (obj,) = _nft_answering(out).list_json("table ip contiv")
    assert obj["set"]["name"] == "x" and obj["set"]["comment"] == "caf\ufffd"


def test_a_missing_table_is_an_empty_listing_and_other_errors_raise():
    assert _nft_answering(b"").list_json("table ip contiv") == []
    assert _nft_answering(error="Error: No such file or directory").list_json("table ip x") == []
    with pytest.raises(DataplaneError, match="Operation not permitted"):
        _nft_answering(error="Error: Operation not permitted").list_json("table ip contiv")
