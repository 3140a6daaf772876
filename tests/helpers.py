"""Small helpers shared by the test modules (not collected)."""
from __future__ import annotations

import subprocess


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.0.0"`` -> ``(1, 0, 0)`` (CNI versions compare as numbers)."""
    return tuple(int(x) for x in version.split("."))


def sh(*argv: str) -> str:
    """Run a command (argument list), assert it succeeded, return its stdout."""
    p = subprocess.run(list(argv), capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr.strip()}"
    return p.stdout
