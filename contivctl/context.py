"""Process-wide CLI settings set by the root callback (debug, socket)."""
from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass
class _Ctx:
    debug: bool = False
    socket: str = "/run/contiv/agent.sock"
    socket_given: bool = False  # --socket or CONTIV_SOCKET was set explicitly

    def client(self, socket: str | None = None):
        from agent.api.client import AgentClient  # noqa: PLC0415
        return AgentClient(socket or self.socket)


ctx = _Ctx()

#: The ``-o/--output`` option every data command takes.
OUTPUT = typer.Option("table", "--output", "-o", help="table | wide | json | yaml",
                      case_sensitive=False)


def check_output(fmt: str) -> str:
    from agent.errors import InvalidInput  # noqa: PLC0415
    from contivctl.output import FORMATS  # noqa: PLC0415
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt
