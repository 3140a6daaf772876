"""The output sink (contivctl/output.py): plain text that scripts read, and
what a terminal adds on top (colour, tree guides, progress bars) -- only on a
terminal, never with NO_COLOR."""
from __future__ import annotations

import io
import json
import sys

import pytest
import yaml

from contivctl import output
from contivctl.output import Node

ESC = "\x1b["


class TTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def colour_env(monkeypatch):
    """A terminal that rich colours (whatever the environment running the tests)."""
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLORTERM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "100")


def _old_table(headers, cells) -> str:
    """The hand-written table this project printed before tabulate (the
    reference: scripts parse this layout)."""
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n"
    for r in cells:
        out += "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
    return out


def table_text(headers, cells) -> str:
    buf = io.StringIO()
    output.table(headers, cells, stream=buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- tables
def test_table_is_left_aligned_two_spaces_apart_without_trailing_spaces():
    got = table_text(["NODE", "IP", "PODS"], [["node1", "192.168.56.11", "10"],
                                              ["node10", "192.168.56.20", "2"]])
    assert got == ("NODE    IP             PODS\n"
                   "node1   192.168.56.11  10\n"
                   "node10  192.168.56.20  2\n")


@pytest.mark.parametrize("headers,cells", [
    (["A"], []),                                               # header only
    (["KEY", "STATE"], [["linux/veth/cv1", "configured"], ["x", ""]]),  # empty last cell
    (["N", "V", "W"], [["1", "1.50", "-"], ["0010", "2e3", "1,2"]]),  # numbers stay text
    (["LONGHEADER", "B"], [["a", "  padded  "], ["", "b"]]),  # whitespace kept, empty first cell
    (["POD", "IP"], [["shop/web-1", "10.1.1.2/32,fd00::2/128"]]),
])
def test_table_layout_is_what_it_was(headers, cells):
    assert table_text(headers, cells) == _old_table(headers, cells)


def test_numbers_are_not_parsed_or_right_aligned():
    got = table_text(["MS", "X"], [["1.000", "a"], ["25", "b"], ["3e2", "c"]])
    assert got.splitlines()[1:] == ["1.000  a", "25     b", "3e2    c"]


def test_cells_absent_booleans_lists_floats():
    assert [output.cell(v) for v in (None, True, False, [], ["a", "b"], ("x",), 1.5, 2.0, 0.12345, 7, "s")] == \
        ["-", "yes", "no", "-", "a,b", "x", "1.5", "2", "0.123", "7", "s"]


ROWS = [{"name": "node1", "ip": "1.2.3.4", "extra": None}, {"name": "n2", "ip": "5.6.7.8", "extra": True}]
DATA = {"nodes": ROWS, "count": 2, "ips": ("a", "b")}


@pytest.mark.parametrize("fmt,want", [
    ("table", "NAME   IP\nnode1  1.2.3.4\nn2     5.6.7.8\n"),
    ("wide", "NAME   IP       EXTRA\nnode1  1.2.3.4  -\nn2     5.6.7.8  yes\n"),
])
def test_render_table_and_wide(fmt, want):
    buf = io.StringIO()
    output.render(DATA, fmt, rows=ROWS, columns=[("NAME", "name"), ("IP", "ip")],
                  wide=[("EXTRA", "extra")], stream=buf)
    assert buf.getvalue() == want


def test_render_json_is_the_data_indented_by_two():
    buf = io.StringIO()
    output.render(DATA, "json", rows=ROWS, columns=[("NAME", "name")], stream=buf)
    assert buf.getvalue() == json.dumps(DATA, indent=2) + "\n"


def test_render_yaml_keeps_key_order():
    buf = io.StringIO()
    output.render({"z": 1, "a": [1, 2], "t": ("x",)}, "yaml", stream=buf)
    assert buf.getvalue() == "z: 1\na:\n- 1\n- 2\nt:\n- x\n"
    assert yaml.safe_load(buf.getvalue()) == {"z": 1, "a": [1, 2], "t": ["x"]}


def test_render_pairs_is_a_kv_block_in_table_mode_and_data_in_json():
    pairs = [("node", "node1"), ("ready", True), ("pod subnet", ["10.1.1.0/24"])]
    buf = io.StringIO()
    output.render({"a": 1}, "table", pairs=pairs, stream=buf)
    assert buf.getvalue() == "node:       node1\nready:      yes\npod subnet: 10.1.1.0/24\n"
    buf = io.StringIO()
    output.render({"a": 1}, "json", pairs=pairs, stream=buf)
    assert json.loads(buf.getvalue()) == {"a": 1}


# --------------------------------------------------------------------------- colour
def test_colour_only_on_a_terminal_and_never_with_no_color(colour_env, monkeypatch):
    assert output.color_enabled(TTY())
    assert not output.color_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "")  # any value, even empty
    assert not output.color_enabled(TTY())


def test_line_is_coloured_on_a_terminal(colour_env):
    tty = TTY()
    output.line("a ", ("ok", "green"), " b", stream=tty)
    assert ESC in tty.getvalue()
    assert _strip(tty.getvalue()) == "a ok b\n"


@pytest.mark.parametrize("no_color,tty", [(True, True), (False, False)], ids=["NO_COLOR", "pipe"])
def test_line_is_plain_without_a_terminal_or_with_no_color(colour_env, monkeypatch, no_color, tty):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    out = TTY() if tty else io.StringIO()
    output.line("a ", ("ok", "green"), " b", stream=out)
    assert out.getvalue() == "a ok b\n"


def test_line_prints_brackets_as_they_are(colour_env):
    tty = TTY()  # rich markup must not eat "[shop/db ingress[0]]"
    output.line(("allow", "green"), " 80/TCP   [shop/db ingress[0]]", stream=tty)
    assert _strip(tty.getvalue()) == "allow 80/TCP   [shop/db ingress[0]]\n"


def test_error_prefix_is_red_on_a_terminal(colour_env, monkeypatch):
    monkeypatch.setattr(sys, "stderr", TTY())
    output.error("it broke", "try again")
    err = sys.stderr.getvalue()
    assert ESC + "31m" in err
    assert _strip(err) == "error: it broke\nhint: try again\n"


@pytest.mark.parametrize("no_color", [True, False])
def test_error_is_plain_on_a_pipe_or_with_no_color(colour_env, monkeypatch, no_color):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", TTY() if no_color else io.StringIO())
    output.error("it broke")
    assert sys.stderr.getvalue() == "error: it broke\n"


def test_messages_go_to_stderr_data_to_stdout(capsys):
    output.message("hello")
    output.line("data")
    out, err = capsys.readouterr()
    assert (out, err) == ("data\n", "hello\n")


# --------------------------------------------------------------------------- tree
def _tree() -> list[Node]:
    root = Node("shop/db (10.1.2.3 on node2)")
    root.add("egress: ", ("open", "green"), " (no policy selects it)")
    ing = root.add("ingress: ", ("isolated", "yellow"), " by shop/db-allow-web")
    ing.add(("allow", "green"), " 5432/TCP from pods {app=web}   [shop/db-allow-web ingress[0]]")
    return [root, Node("other")]


def test_tree_is_indented_text_off_a_terminal(colour_env):
    buf = io.StringIO()
    output.tree(_tree(), stream=buf)
    assert buf.getvalue() == ("shop/db (10.1.2.3 on node2)\n"
                              "  egress: open (no policy selects it)\n"
                              "  ingress: isolated by shop/db-allow-web\n"
                              "    allow 5432/TCP from pods {app=web}   [shop/db-allow-web ingress[0]]\n"
                              "other\n")


def test_tree_has_guides_and_colour_on_a_terminal(colour_env):
    tty = TTY()
    output.tree(_tree(), stream=tty)
    text = _strip(tty.getvalue())
    assert ESC in tty.getvalue()
    assert "├── egress: open (no policy selects it)" in text
    assert "└── ingress: isolated by shop/db-allow-web" in text
    assert "    └── allow 5432/TCP from pods {app=web}   [shop/db-allow-web ingress[0]]" in text


def test_tree_on_a_terminal_with_no_color_has_guides_but_no_colour(colour_env, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    tty = TTY()
    output.tree(_tree(), stream=tty)
    assert "└── ingress" in tty.getvalue()
    assert ESC not in tty.getvalue()  # no colour, no bold or dim either


# --------------------------------------------------------------------------- progress
def _drive(pr: output.Progress) -> None:
    pr.prefixed("lab x: ")("etcd")
    for i in range(4):
        pr.step("nodes ready", i, 3)
    pr.message("lab x: agent node1 ready")


def test_progress_off_a_terminal_is_the_plain_messages(colour_env, capsys):
    with output.progress() as pr:
        _drive(pr)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "lab x: etcd\nlab x: agent node1 ready\n"


def test_progress_with_no_color_is_the_plain_messages(colour_env, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", TTY())
    with output.progress() as pr:
        _drive(pr)
    assert sys.stderr.getvalue() == "lab x: etcd\nlab x: agent node1 ready\n"


def test_progress_on_a_terminal_draws_bars_on_stderr_only(colour_env, monkeypatch, capsys):
    tty = TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    with output.progress() as pr:
        _drive(pr)
        output.line("data")  # stdout is never redirected into the live display
    text = _strip(tty.getvalue())
    assert "lab x: etcd" in text and "lab x: agent node1 ready" in text
    assert "nodes ready" in text and "3/3" in text  # the bar, at least in its last frame
    assert capsys.readouterr().out == "data\n"


def _strip(s: str) -> str:
    """``s`` without ANSI escapes (and rich's cursor control)."""
    import re
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", s)
