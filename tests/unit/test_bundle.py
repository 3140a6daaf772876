"""contivctl/bundle.py: secrets never enter the bundle, a failing part is
indexed and the others are still collected, and a bundle is written whole
or not at all."""
from __future__ import annotations

import json
import os
import tarfile

import pytest

from contivctl.bundle import REDACTED, Bundle, redact, run_tool
from agent.errors import Unavailable


def test_values_of_secret_keys_and_url_passwords_are_redacted():
    cfg = {"etcd": "https://root:hunter2@10.0.0.1:2379", "etcd_password": "hunter2", "api_token": "t0k",
           "node": "node1", "nested": [{"clientSecret": "s", "tls_private_key": "k", "empty_password": ""}],
           "note": "see http://user:pw@host/x and https://host/y"}
    out = redact(cfg)
    assert out["etcd"] == f"https://root:{REDACTED}@10.0.0.1:2379"
    assert out["etcd_password"] == out["api_token"] == REDACTED
    assert out["nested"][0] == {"clientSecret": REDACTED, "tls_private_key": REDACTED, "empty_password": ""}
    assert out["note"] == f"see http://user:{REDACTED}@host/x and https://host/y"
    assert out["node"] == "node1"
    assert "hunter2" not in json.dumps(out) and "pw@" not in json.dumps(out)


class Rec:
    def to_dict(self):
        return {"config": {"password": "x"}, "n": 1}


def test_a_failing_part_is_indexed_and_the_rest_collected(tmp_path):
    b = Bundle()
    b.collect("a.json", Rec)
    b.collect("b.json", lambda: (_ for _ in ()).throw(Unavailable("the agent is not running")))
    b.collect("c.txt", lambda: "log line with postgres://u:secret@db\n")
    b.collect("d.txt", lambda: 1 / 0)
    assert [i["part"] for i in b.index] == ["a.json", "b.json", "c.txt", "d.txt"]
    assert [f["error"] for f in b.failed] == ["the agent is not running", "ZeroDivisionError: division by zero"]
    assert json.loads(b.parts["a.json"]) == {"config": {"password": REDACTED}, "n": 1}
    assert b"secret" not in b.parts["c.txt"]
    path = tmp_path / "r.tar.gz"
    b.write(str(path), {"lab": None})
    with tarfile.open(path) as tar:
        assert tar.getnames()[0] == "r/index.json"
        assert sorted(tar.getnames()[1:]) == ["r/a.json", "r/c.txt"]
        index = json.load(tar.extractfile("r/index.json"))
    assert index["lab"] is None and [p["ok"] for p in index["parts"]] == [True, False, True, False]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_bundle_that_cannot_be_written_leaves_nothing(tmp_path):
    b = Bundle()
    b.collect("a.txt", lambda: "x")
    (tmp_path / "sub").mkdir()
    target = tmp_path / "sub" / "r.tar.gz"
    target.mkdir()  # a directory where the file should go: the rename fails
    with pytest.raises(OSError):
        b.write(str(target), {})
    assert os.listdir(tmp_path / "sub") == ["r.tar.gz"]  # no temporary file left behind


def test_a_missing_tool_and_a_failing_tool_say_so():
    with pytest.raises(RuntimeError, match="is not installed"):
        run_tool(["contiv-no-such-tool"])
    with pytest.raises(RuntimeError, match="exited 1"):
        run_tool(["false"])
