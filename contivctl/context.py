"""Process-wide CLI settings set by the root callback (debug, socket), and the
pieces every command group shares."""
from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass
class _Ctx:
    debug: bool = False
    socket: str = "/run/contiv/agent.sock"
    socket_given: bool = False  # --socket or CONTIV_SOCKET was set explicitly

    def client(self, socket: str | None = None):
        """The agent at ``socket`` (default: the global ``--socket``): an
        :class:`agent.api.client.AgentClient`, the typed ``NodeAPI``."""
        from agent.api.client import AgentClient  # noqa: PLC0415
        return AgentClient(socket or self.socket)

    def target(self, lab: str | None, node: str | None):
        """The agent a command asks: of ``node`` in lab ``lab`` (``--lab``, or
        ``CONTIVCTL_LAB``), else the one at ``--socket``."""
        import os  # noqa: PLC0415
        from agent.errors import InvalidInput  # noqa: PLC0415
        lab = lab or os.environ.get("CONTIVCTL_LAB") or None
        if lab is None:
            if node:
                raise InvalidInput("--node names a node of a lab: give --lab NAME too",
                                   hint="on a node, the agent at --socket answers")
            return self.client()
        from lab.cluster import Lab  # noqa: PLC0415 -- resolves the node's socket
        st = Lab(lab).state()
        return self.client(st.node(node or st.nodes[0].name).socket)


ctx = _Ctx()

#: Targeting a lab's node instead of the local agent.
LAB = typer.Option(None, "--lab", help="A lab's node instead of the local agent (or CONTIVCTL_LAB).")
NODE = typer.Option(None, "--node", help="With --lab: which node (default: the first).")

#: The ``-o/--output`` option every data command takes.
OUTPUT = typer.Option("table", "--output", "-o", help="table | wide | json | yaml",
                      case_sensitive=False)


def new_app(**kw) -> typer.Typer:
    """A command group. Help is click's plain text, not typer's rich panels:
    those import ``typer.rich_utils`` (rich.markdown, markdown-it, pygments),
    which alone took ~45 ms of every ``--help`` (docs/performance.md)."""
    return typer.Typer(rich_markup_mode=None, **kw)


def check_output(fmt: str) -> str:
    from agent.errors import InvalidInput  # noqa: PLC0415
    from contivctl.output import FORMATS  # noqa: PLC0415
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt
