"""``contivctl install``: put the CNI plugin and its configuration on a node."""
from __future__ import annotations

import typer

from contivctl.context import OUTPUT, check_output, ctx, new_app
from contivctl.output import render

app = new_app(no_args_is_help=True, help="Install the CNI plugin and configuration.")


@app.command("cni")
def cni(
    bin_dir: str = typer.Option("/opt/cni/bin", "--bin-dir", help="Where CNI plugins live."),
    conf_dir: str = typer.Option("/etc/cni/net.d", "--conf-dir", help="Where network configs live."),
    uninstall: bool = typer.Option(False, "--uninstall", help="Remove what install put there."),
    chain: str = typer.Option(None, "--chain",
                              help="Comma-separated plugins to chain after contiv-cni "
                                   "(default: those of portmap, bandwidth, tuning that are installed)."),
    plugin_dir: list[str] = typer.Option([], "--plugin-dir",
                                         help="Extra directory to look for chained plugins in."),
    socket: str = typer.Option("", "--agent-socket", help="Agent socket the plugin talks to."),
    output: str = OUTPUT,
) -> None:
    """Install contiv-cni and a conflist atomically (idempotent)."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    from cni import install as inst  # noqa: PLC0415
    fmt = check_output(output)
    try:
        if uninstall:
            actions = inst.uninstall(bin_dir, conf_dir)
        else:
            names = None if chain is None else [c.strip() for c in chain.split(",") if c.strip()]
            for n in names or []:
                if n not in inst.CHAINABLE:
                    raise InvalidInput(f"cannot chain {n!r}; supported: {', '.join(inst.CHAINABLE)}")
            actions = inst.install(bin_dir, conf_dir, socket or ctx.socket, names, plugin_dir)
    except (FileNotFoundError, PermissionError) as e:
        raise InvalidInput(str(e)) from None
    render({"actions": actions}, fmt, rows=actions, columns=[("FILE", "file"), ("ACTION", "action")])
