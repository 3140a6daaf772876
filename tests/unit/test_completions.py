"""The checked-in completion scripts match the command tree (no drift)."""
from pathlib import Path

import pytest

from contivctl.completion import SHELLS, tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_checked_in_script_matches_generated(shell):
    path = ROOT / "completions" / f"contivctl.{shell}"
    assert path.read_text() == SHELLS[shell](), (
        f"{path} is stale: regenerate with `contivctl completion {shell} > {path}`")


def test_tree_covers_nested_commands_and_options():
    t = {" ".join(p): (subs, opts) for p, subs, opts in tree()}
    assert "probe" in t["lab"][0]
    assert "--matrix" in t["lab probe"][1]
    assert "-o" in t["services"][1] and "--help" in t[""][1]
