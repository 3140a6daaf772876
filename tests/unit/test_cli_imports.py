"""``contivctl --help`` stays fast: importing the command tree, and printing
help, import nothing heavy (DESIGN.md, layer 1). Checked on ``sys.modules``
of a fresh interpreter, not on timings; docs/performance.md has the numbers.

What must stay lazy, and why it is heavy or unneeded before a command runs:
the project's own packages (agent, lab, cni, stn: etcd, netlink, HTTP...),
the output formats (json, yaml, tabulate), the HTTP client, and every rich
module: typer's rich help (typer.rich_utils imports rich.markdown,
markdown-it and pygments) is switched off, and our own rich output
(console, tree, progress) is imported only to draw on a terminal.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

LAZY = ("agent", "lab", "cni", "stn", "json", "yaml", "tabulate", "http", "rich", "typer.rich_utils",
        "markdown_it", "pygments", "pyroute2", "etcd3", "grpc", "vpp_papi", "orjson")

HELP = """
import io, contextlib
from contivctl.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    for argv in (["--help"], ["lab", "up", "--help"], ["policies", "--help"], ["ipam", "--help"]):
        assert main(argv) == 0, argv
assert "Usage: contivctl" in out.getvalue()
"""


def modules_after(code: str) -> set[str]:
    p = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                       capture_output=True, text=True, check=True)
    return set(p.stdout.split())


def loaded(mods: set[str], top: str) -> list[str]:
    return sorted(m for m in mods if m == top or m.startswith(top + "."))


@pytest.mark.parametrize("what,code", [("import contivctl.main", "import contivctl.main"),
                                       ("--help of the root, a group and commands", HELP)])
def test_nothing_heavy_is_imported(what, code):
    mods = modules_after(code)
    assert "contivctl.commands.lab" in mods  # the whole command tree is there...
    bad = {top: loaded(mods, top) for top in LAZY if loaded(mods, top)}
    assert not bad, f"{what} imported {bad}"  # ...without these


def test_the_check_can_fail():
    mods = modules_after("import contivctl.main\nfrom contivctl import output\n"
                         "output.render({'a': 1}, 'json', stream=open('/dev/null', 'w'))")
    assert loaded(mods, "json")
