"""Entry point of ``contivctl``: the command tree and the error boundary.

Importing this module must stay cheap (``contivctl --help``): only typer and
the command modules, whose own imports happen inside the commands.
tests/unit/test_cli_imports.py checks which modules stay out.
"""
from __future__ import annotations

import sys

import typer

from contivctl import __version__
from contivctl.commands import agent, diag, install, ksr, lab, observe, stn, trace, vpp
from contivctl.context import ctx, new_app

app = new_app(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
              help="Kubernetes node networking: agent, CNI, lab and diagnostics.")


def _version(value: bool) -> None:
    if value:
        from contivctl.output import line  # noqa: PLC0415
        line(f"contivctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    socket: str = typer.Option("/run/contiv/agent.sock", "--socket", envvar="CONTIV_SOCKET",
                               help="The agent API socket to talk to."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    import os  # noqa: PLC0415
    ctx.debug = debug
    ctx.socket = socket
    ctx.socket_given = "--socket" in sys.argv or "CONTIV_SOCKET" in os.environ


app.add_typer(agent.app, name="agent")
app.add_typer(install.app, name="install")
app.add_typer(lab.app, name="lab")
app.add_typer(vpp.app, name="vpp")
app.add_typer(stn.app, name="stn")
diag.register(app)
observe.register(app)
trace.register(app)
ksr.register(app)

#: per command, options whose value may be left out (``netstat --watch``
#: alone) and the default put in
OPTIONAL_VALUES = {"netstat": {"--watch": "2", "-w": "2"}}


def optional_values(argv: list[str]) -> list[str]:
    """``argv`` with the default value inserted after an option of
    :data:`OPTIONAL_VALUES` given without one (click has no optional option
    values): when it is last, or the next word is not a number."""
    opts = next((OPTIONAL_VALUES[a] for a in argv if a in OPTIONAL_VALUES), None)
    if opts is None:
        return argv
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        if a in opts:
            try:
                float(argv[i + 1] if i + 1 < len(argv) else "")
            except ValueError:
                out.append(opts[a])
    return out


@app.command("completion")
def completion(shell: str = typer.Argument(..., help="bash | zsh | fish")) -> None:
    """Print the shell completion script (also in completions/)."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    from contivctl.completion import SHELLS  # noqa: PLC0415
    from contivctl.output import text  # noqa: PLC0415
    if shell not in SHELLS:
        raise InvalidInput(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}")
    text(SHELLS[shell]())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see contivctl.errors)."""
    try:
        # Standalone mode: typer prints usage errors itself and exits with 2.
        app(args=optional_values(sys.argv[1:] if argv is None else list(argv)), prog_name="contivctl")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # noqa: BLE001 -- the one place errors become exit statuses
        from contivctl.errors import report  # noqa: PLC0415
        return report(e, debug=ctx.debug)


if __name__ == "__main__":
    sys.exit(main())
