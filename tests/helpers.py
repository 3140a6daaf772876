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


def dataplanes():
    """``pytest.param`` per data plane, for suites parametrized over them: the
    VPP one is skipped -- saying how to get a VPP -- where there is none."""
    import pytest  # noqa: PLC0415
    from agent.vpp.process import availability  # noqa: PLC0415
    have, why = availability()
    return [pytest.param("linux", id="linux"),
            pytest.param("vpp", id="vpp", marks=[pytest.mark.vpp, pytest.mark.skipif(
                not have, reason=f"needs a VPP: {why}")])]


#: how a data plane refuses a port without endpoints: the Linux data plane
#: answers TCP RST / ICMP port unreachable (refused), VPP ICMP host unreachable
#: (docs/vpp.md: no TCP reset without VPP's host stack)
REJECTED = {"linux": "refused", "vpp": "unreachable (ICMP host unreachable or admin-prohibited)"}
