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

    def client(self, socket: str | None = None, timeout: float = 30.0):
        """The agent at ``socket`` (default: the global ``--socket``): an
        :class:`agent.api.client.AgentClient`, the typed ``NodeAPI``."""
        from agent.api.client import AgentClient  # noqa: PLC0415
        return AgentClient(socket or self.socket, timeout=timeout)

    def target(self, lab: str | None, node: str | None):
        """The agent a command asks: of ``node`` in lab ``lab`` (``--lab``, or
        ``CONTIVCTL_LAB``), else the one at ``--socket``."""
        from agent.errors import InvalidInput  # noqa: PLC0415
        lab = lab_name(lab)
        if lab is None:
            if node:
                raise InvalidInput("--node names a node of a lab: give --lab NAME too",
                                   hint="on a node, the agent at --socket answers")
            return self.client()
        from lab.cluster import Lab  # noqa: PLC0415 -- resolves the node's socket
        st = Lab(lab).state()
        return self.client(st.node(node or st.nodes[0].name).socket)

    def targets(self, lab: str | None, node: str | None, timeout: float = 30.0) -> list:
        """(node name, client) of every node of lab ``lab`` (only ``node``'s
        with ``--node``); off a lab, the local agent's (its name ""; the
        agent's records name it)."""
        lab = lab_name(lab)
        if lab is None:
            self.target(None, node)  # --node without a lab: its error
            return [("", self.client(timeout=timeout))]
        from lab.cluster import Lab  # noqa: PLC0415
        st = Lab(lab).state()
        nodes = [st.node(node)] if node else st.nodes
        return [(n.name, self.client(n.socket, timeout)) for n in nodes]

    def target_pod(self, lab: str | None, node: str | None, pod: str):
        """The agent of the node pod ``pod`` (``ns/name``) runs on: ``--node``'s
        when given; in a lab, the node the cluster places it on (asked of the
        lab's first node; an unknown pod is left to that agent to name the
        closest); off a lab, the local agent."""
        if node or lab_name(lab) is None:
            return self.target(lab, node)
        first = self.target(lab, None)
        ns, _, name = pod.partition("/")
        found = [p.node for p in first.policies(namespace=ns, pod=name).pods if p.pod == pod and p.node]
        return self.target(lab, found[0]) if found else first


def lab_name(lab: str | None) -> str | None:
    """The lab a command targets: ``--lab``, else ``$CONTIVCTL_LAB``; None: the local agent."""
    import os  # noqa: PLC0415
    return lab or os.environ.get("CONTIVCTL_LAB") or None


ctx = _Ctx()

#: Targeting a lab's node instead of the local agent.
LAB = typer.Option(None, "--lab", help="A lab's node instead of the local agent (or CONTIVCTL_LAB).")
NODE = typer.Option(None, "--node", help="With --lab: which node (default: the first).")

#: A pod argument (``ns/name``, or a name with ``-n``).
NAMESPACE = typer.Option(None, "--namespace", "-n", help="The pod's namespace (or give POD as ns/name).")


def pod_ref(pod: str | None, namespace: str | None) -> str | None:
    """``ns/name`` of a POD argument given as ``ns/name`` or as a name with
    ``-n``; None when neither is given."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    if not pod:
        if namespace:
            raise InvalidInput("-n NAMESPACE names a pod's namespace: give the POD too")
        return None
    if "/" in pod:
        ns, _, name = pod.partition("/")
        if namespace and namespace != ns:
            raise InvalidInput(f"pod {pod!r} and -n {namespace!r} disagree on the namespace")
    else:
        ns, name = namespace or "default", pod
    if not ns or not name or "/" in name:
        raise InvalidInput(f"pod {pod!r}: give it as NAMESPACE/NAME, or NAME with -n NAMESPACE")
    return f"{ns}/{name}"


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
