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


def lab_modes():
    """:func:`dataplanes`, and the Linux data plane once more with the lab's
    Kubernetes API (``lab up --kube-api``): objects then go API server ->
    reflector -> etcd -> agents. :func:`split_mode` reads a mode."""
    import pytest  # noqa: PLC0415
    return dataplanes() + [pytest.param("linux+kube-api", id="linux-kube-api")]


def split_mode(mode: str) -> tuple[str, bool]:
    """(data plane, whether the lab has a Kubernetes API) of a :func:`lab_modes` mode."""
    plane, _, api = mode.partition("+")
    return plane, bool(api)


#: how a data plane refuses a port without endpoints: the Linux data plane
#: answers TCP RST / ICMP port unreachable (refused), VPP ICMP host unreachable
#: (docs/vpp.md: no TCP reset without VPP's host stack)
REJECTED = {"linux": "refused", "vpp": "unreachable (ICMP host unreachable or admin-prohibited)"}


class AnsweringAPI:
    """A stand-in agent for CLI tests: each ``NodeAPI`` method named in
    ``answers`` returns its record (or raises ``raise_``) and is remembered in
    ``calls`` as (method, keyword arguments)."""

    def __init__(self, answers: dict) -> None:
        self.base = dict(answers)
        self.reset()

    def reset(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.answers = dict(self.base)
        self.raise_: Exception | None = None

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self.__dict__.get("base", {}):
            raise AttributeError(name)

        def call(**args):
            self.calls.append((name, args))
            if self.raise_ is not None:
                raise self.raise_
            return self.answers[name]
        return call


def serve_api(api, prefix: str = "api-"):
    """Serve ``api`` (a NodeAPI) on the real API server over a temporary unix
    socket; a generator for a pytest fixture: yields the socket path."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from agent.api.routes import build_router  # noqa: PLC0415
    from agent.api.server import APIServer  # noqa: PLC0415
    tmp = tempfile.mkdtemp(prefix=prefix)  # short: a unix socket path has at most 107 bytes
    server = APIServer(str(Path(tmp) / "agent.sock"), build_router(api)).start()
    try:
        yield server.path
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def cli_runner(sock: str, fake: AnsweringAPI, capsys):
    """``run(*args) -> (status, stdout, stderr)``: contivctl in this process
    against the agent served at ``sock`` (``run.fake`` is that agent, reset)."""
    from contivctl.main import main  # noqa: PLC0415
    fake.reset()

    def run(*args: str) -> tuple[int, str, str]:
        status = main(["--socket", sock, *args])
        out, err = capsys.readouterr()
        return status, out, err
    run.fake = fake
    return run


def eventually(pred, timeout: float = 10.0, interval: float = 0.05):
    """``pred()``'s first truthy value within ``timeout`` seconds (polled),
    else its last value: for things that happen on other threads or processes."""
    import time  # noqa: PLC0415
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    return pred()

