"""``contivctl install cni | node``: what a node needs, planned and diffed
first, written atomically, recorded so that ``--uninstall`` removes exactly
that (:mod:`contivctl.install.plan`; docs/cli.md, "install")."""
from __future__ import annotations

import os

import typer

from contivctl.commands.install_manifests import manifests_cmd
from contivctl.context import OUTPUT, check_output, ctx, new_app
from contivctl.output import line, message, render

app = new_app(no_args_is_help=True, help="Install the CNI plugin and configuration, or a whole node.")
app.command("manifests")(manifests_cmd)  # a cluster's manifests: contivctl/install/manifests.py

ROOT = typer.Option("/", "--root", help="Install under this directory instead of / (it must exist).")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan with diffs; change nothing.")
FORCE = typer.Option(False, "--force", help="Replace files changed by hand (their diff is shown first).")
UNINSTALL = typer.Option(False, "--uninstall", help="Remove what install wrote (files changed since stay).")
CHAIN = typer.Option(None, "--chain", help="Comma-separated plugins to chain after contiv-cni: portmap, "
                                            "bandwidth, tuning (default: those installed; '' for none).")
CNI_VERSION = typer.Option(None, "--cni-version",
                           help="cniVersion of the conflist (default 1.0.0: what podman 4.3 and "
                                "containerd 1.6/1.7 accept).")


@app.command("cni")
def cni(
    bin_dir: str = typer.Option("/opt/cni/bin", "--bin-dir", help="Where CNI plugins live."),
    conf_dir: str = typer.Option("/etc/cni/net.d", "--conf-dir", help="Where network configs live."),
    uninstall: bool = UNINSTALL,
    chain: str = CHAIN,
    plugin_dir: list[str] = typer.Option([], "--plugin-dir",
                                         help="Extra directory to look for chained plugins in."),
    socket: str = typer.Option("", "--agent-socket", help="Agent socket the plugin talks to."),
    cni_version: str = CNI_VERSION,
    interpreter: str = typer.Option(None, "--interpreter", metavar="PATH",
                                    help="The Python the plugin runs with on the node (default: this "
                                         "one); from a container, the host's (/usr/bin/python3)."),
    tuning_sysctl: list[str] = typer.Option([], "--tuning-sysctl", metavar="NAME=VALUE",
                                            help="A sysctl the chained tuning plugin sets in each pod."),
    check: bool = typer.Option(False, "--check", help="Validate the installed conflist instead: JSON, "
                                                      "version, plugin binaries, the agent's socket."),
    dry_run: bool = DRY_RUN, force: bool = FORCE, root: str = ROOT, output: str = OUTPUT,
) -> None:
    """Install contiv-cni and a conflist atomically (idempotent)."""
    from cni import install as ci  # noqa: PLC0415
    from contivctl.install import node as nd  # noqa: PLC0415
    from contivctl.install.plan import under  # noqa: PLC0415
    fmt = check_output(output)
    _check_root(root)
    # --plugin-dir names a directory of this machine, not of the root
    dirs = [str(under(root, bin_dir)), str(under(root, nd.DISTRO_CNI)), *plugin_dir]
    if check:
        results = nd.cni_check(str(under(root, conf_dir)), dirs, socket)
        render({"checks": results}, fmt, rows=[{**r, "ok": "ok" if r["ok"] else "FAIL"} for r in results],
               columns=[("CHECK", "check"), ("OK", "ok"), ("DETAIL", "detail")])
        if not all(r["ok"] for r in results):
            raise typer.Exit(1)
        return
    if interpreter is not None and not interpreter.startswith("/"):
        from agent.errors import InvalidInput  # noqa: PLC0415
        raise InvalidInput(f"--interpreter {interpreter!r}: give an absolute path (it is the plugin's #! line)")
    wants = [] if uninstall else nd.cni_wants(bin_dir, conf_dir, socket or ctx.socket, _chain(chain), dirs,
                                              cni_version or ci.DEFAULT_CNI_VERSION, _sysctls(tuning_sysctl),
                                              interpreter)
    # --uninstall removes only these two, whatever else `install node` wrote
    _run(wants, root, uninstall, dry_run, force, fmt,
         only={f"{bin_dir.rstrip('/')}/{ci.PLUGIN_NAME}", f"{conf_dir.rstrip('/')}/{ci.CONF_NAME}"})


@app.command("node")
def node(
    dataplane: str = typer.Option(None, "--dataplane", help="linux | vpp (default: --config's, else linux)."),
    config: str = typer.Option(None, "--config", help="YAML agent settings to install (agent run's keys)."),
    node_name: str = typer.Option(None, "--node", help="This node's name (default: --config's, else the "
                                                        "host name)."),
    chain: str = CHAIN, cni_version: str = CNI_VERSION,
    uninstall: bool = UNINSTALL, dry_run: bool = DRY_RUN, force: bool = FORCE, root: str = ROOT,
    output: str = OUTPUT,
) -> None:
    """Everything a node needs: the CNI plugin and conflist, the agent's
    configuration and systemd unit (enabled), kernel settings and modules, and on
    VPP nodes VPP's startup configuration; then (on / with systemd running) reload
    and restart what changed."""
    from cni import install as ci  # noqa: PLC0415
    from contivctl.install import node as nd  # noqa: PLC0415
    fmt = check_output(output)
    _check_root(root)
    wants = []
    if not uninstall:
        from contivctl.install.files import NodeOptions  # noqa: PLC0415
        given = _config(config)
        dataplane = dataplane or str(given.get("dataplane") or "linux")
        o = NodeOptions(dataplane, node_name or str(given.get("node") or _hostname()), nd.contivctl_path(), given)
        wants = nd.node_wants(o, root, _chain(chain), cni_version or ci.DEFAULT_CNI_VERSION)
    actions = _run(wants, root, uninstall, dry_run, force, fmt)
    if actions is None or uninstall:
        return
    cmds = nd.follow_up(actions, root, o.dataplane, run=not dry_run)
    for c in cmds:
        message(f"{'would run' if dry_run else 'ran'}: {' '.join(c)}")
    if os.path.realpath(root) == "/" and not nd.systemd_running():
        message("systemd is not running here: the agent's unit is installed and enabled for the next boot")


def _run(wants, root: str, uninstall: bool, dry_run: bool, force: bool, fmt: str, only=None):
    """Plan, show, and (unless ``dry_run``) apply; the install's actions
    (None for an uninstall)."""
    from agent.errors import InvalidInput  # noqa: PLC0415
    from contivctl.install import plan as pl  # noqa: PLC0415
    manifest = pl.Manifest(root)
    if uninstall:
        actions = (pl.plan_uninstall if dry_run else pl.uninstall)(root, manifest, only)
        _show(actions, fmt, dry_run)
        return None
    actions = pl.plan(wants, root, manifest, force)
    bad = pl.conflicts(actions)
    if bad or dry_run:
        _show(actions, fmt, dry_run, diffs=True)
    if bad:
        raise InvalidInput(f"{len(bad)} file(s) changed by hand or not written by install: "
                           + ", ".join(a.path for a in bad), hint="review the diff; --force replaces them")
    if dry_run:
        return actions
    pl.apply(actions, root, manifest)
    _show(actions, fmt, False)
    return actions


def _show(actions, fmt: str, dry_run: bool, diffs: bool = False) -> None:
    rows = [a.to_dict() for a in actions]
    if fmt in ("json", "yaml"):
        render({"dry_run": dry_run, "actions": rows}, fmt)
        return
    render(None, fmt, rows=[{**r, "action": ("would " if dry_run else "") + r["action"]} for r in rows],
           columns=[("FILE", "file"), ("WHAT", "what"), ("ACTION", "action"), ("NOTE", "note")])
    for a in actions if diffs else ():
        if a.diff and a.action in ("update", "conflict", "kept"):
            line("")
            for ln in a.diff.splitlines():
                line((ln, "green" if ln.startswith("+") else "red" if ln.startswith("-") else ""))


def _check_root(root: str) -> None:
    from agent.errors import InvalidInput  # noqa: PLC0415
    if not os.path.isdir(root):
        raise InvalidInput(f"--root {root}: no such directory")


def _chain(chain: str | None) -> list[str] | None:
    return None if chain is None else [c.strip() for c in chain.split(",") if c.strip()]


def _sysctls(items: list[str]) -> dict[str, str]:
    from agent.errors import InvalidInput  # noqa: PLC0415
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip() or any(c.isspace() for c in k):
            raise InvalidInput(f"--tuning-sysctl {it!r}: give it as NAME=VALUE")
        out[k.strip()] = v.strip()
    return out


def _hostname() -> str:
    import socket  # noqa: PLC0415
    return socket.gethostname().split(".")[0]


def _config(path: str | None) -> dict:
    """The agent settings of ``--config``, checked by the agent's own loader."""
    if not path:
        return {}
    import dataclasses  # noqa: PLC0415

    from agent.config import AgentConfig, load_config  # noqa: PLC0415
    import yaml  # noqa: PLC0415
    # every key and value checked, or InvalidInput naming it (the node may
    # come from --node or the host name: checked when the file is rendered)
    load_config(path, node="node-checked-later")
    given = yaml.safe_load(open(path).read()) or {}
    known = {f.name for f in dataclasses.fields(AgentConfig)}
    return {k: v for k, v in given.items() if k in known}
