"""What ``install cni`` and ``install node`` install (as :class:`~contivctl.install.plan.Want`),
``install cni --check``, and what is run on the node after the files land.

The files themselves are rendered by :mod:`cni.install` (the plugin and the
conflist) and :mod:`contivctl.install.files` (the agent's configuration, its
systemd unit, kernel settings, VPP's startup.conf); this module only says
which go where. Commands are argument lists, run only on the real root
(``--root /``) of a node where systemd runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from agent.errors import InvalidInput
from contivctl.install.plan import Action, Want, under

CNI_BIN, CNI_CONF = "/opt/cni/bin", "/etc/cni/net.d"
#: where distributions put the reference plugins (Debian's containernetworking-plugins)
DISTRO_CNI = "/usr/lib/cni"
UNIT_DIR = "/etc/systemd/system"


def cni_wants(bin_dir: str, conf_dir: str, socket: str, chain: list[str] | None, search: list[str],
              cni_version: str, tuning_sysctl: dict[str, str] | None = None,
              interpreter: str | None = None) -> list[Want]:
    """The plugin and the conflist; ``chain`` checked against ``search``
    (None: whichever of portmap, bandwidth, tuning is there)."""
    from cni import install as ci  # noqa: PLC0415
    try:
        chain = ci.resolve_chain(chain, search)
        conf = ci.conflist_bytes(socket, chain, cni_version, tuning_sysctl)
    except (ValueError, FileNotFoundError) as e:
        raise InvalidInput(str(e)) from None
    return [Want(f"{bin_dir.rstrip('/')}/{ci.PLUGIN_NAME}", "CNI plugin", ci.plugin_source(interpreter).encode(),
                 0o755),
            Want(f"{conf_dir.rstrip('/')}/{ci.CONF_NAME}", "CNI network configuration", conf)]


def node_wants(o, root: str, chain: list[str] | None, cni_version: str) -> list[Want]:
    """Everything a node of ``o.dataplane`` needs (``o``: files.NodeOptions)."""
    from contivctl.install import files  # noqa: PLC0415
    socket = str(o.config.get("socket") or "/run/contiv/agent.sock")
    search = [str(under(root, d)) for d in (CNI_BIN, DISTRO_CNI)]
    unit = f"{UNIT_DIR}/{files.UNIT_NAME}"
    out = cni_wants(CNI_BIN, CNI_CONF, socket, chain, search, cni_version) + [
        Want(o.config_path, "agent configuration", files.agent_yaml(o).encode(), 0o600, user=True),
        Want(unit, "agent systemd unit", files.agent_unit(o).encode()),
        # what `systemctl enable` makes for WantedBy=multi-user.target
        Want(f"{UNIT_DIR}/multi-user.target.wants/{files.UNIT_NAME}", "unit enabled at boot", link=unit),
        Want("/etc/sysctl.d/90-contiv.conf", "kernel settings", files.sysctl_conf(o).encode()),
        Want("/etc/modules-load.d/contiv.conf", "kernel modules at boot", files.modules_conf(o).encode()),
    ]
    if o.dataplane == "vpp":
        out += [Want(o.vpp_startup_path, "VPP startup configuration", files.vpp_startup(o).encode(), user=True),
                Want(f"{UNIT_DIR}/vpp.service.d/contiv.conf", "vpp.service drop-in", files.vpp_dropin(o).encode())]
        if o.config.get("vpp_stn"):
            stn = f"{UNIT_DIR}/{files.STN_UNIT_NAME}"
            out += [Want(stn, "STN watchdog unit", files.stn_watch_unit(o).encode()),
                    Want(f"{UNIT_DIR}/multi-user.target.wants/{files.STN_UNIT_NAME}", "STN watchdog enabled at boot",
                         link=stn)]
    return out


def contivctl_path() -> str:
    """The contivctl executable the unit runs: this installation's."""
    import sys  # noqa: PLC0415
    beside = Path(sys.executable).parent / "contivctl"
    found = str(beside) if beside.exists() else shutil.which("contivctl")
    if not found:
        raise InvalidInput("cannot find the contivctl executable to run the agent with",
                           hint="install the package (pip install .) so that `contivctl` is on PATH")
    return os.path.abspath(found)


# ---------------------------------------------------------------- after the files
def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def follow_up(actions: list[Action], root: str, dataplane: str, run: bool) -> list[list[str]]:
    """The commands that make the node use what changed: reload systemd,
    apply the kernel settings and modules, (re)start the agent. Returned
    (and with ``run``, run) only for the real root of a node where systemd
    runs; each is an argument list."""
    if os.path.realpath(root) != "/":
        return []
    changed = {a.what for a in actions if a.action in ("create", "update")}
    cmds: list[list[str]] = []
    if "kernel settings" in changed:
        cmds.append(["sysctl", "-q", "-p", "/etc/sysctl.d/90-contiv.conf"])
    if "kernel modules at boot" in changed:
        text = next(a.want.content for a in actions if a.what == "kernel modules at boot").decode()
        cmds.append(["modprobe", "-a", *[ln.strip() for ln in text.splitlines()
                                          if ln.strip() and not ln.lstrip().startswith(("#", ";"))]])
    if systemd_running():
        units = {"agent systemd unit", "vpp.service drop-in", "unit enabled at boot", "STN watchdog unit",
                 "STN watchdog enabled at boot"}
        if changed & units:
            cmds.append(["systemctl", "daemon-reload"])
        if dataplane == "vpp" and changed & {"vpp.service drop-in", "VPP startup configuration"}:
            cmds.append(["systemctl", "restart", "vpp.service"])
        if changed:  # a new plugin, unit or configuration: the agent runs the new ones
            cmds.append(["systemctl", "restart", "contiv-agent.service"])
        if changed & {"STN watchdog unit", "STN watchdog enabled at boot"}:
            cmds.append(["systemctl", "restart", "contiv-stn-watch.service"])
    if run:
        for c in cmds:
            p = subprocess.run(c, capture_output=True, text=True)
            if p.returncode != 0:
                raise InvalidInput(f"`{' '.join(c)}` failed ({p.returncode}): {p.stderr.strip()[-300:]}",
                                   hint="the files are installed; fix the cause and run install again")
    return cmds


# ---------------------------------------------------------------- install cni --check
def cni_check(conf_dir: str, bin_dirs: list[str], socket_override: str = "") -> list[dict]:
    """Checks of an installed conflist: ``{"check", "ok", "detail"}`` each."""
    import json  # noqa: PLC0415

    from cni import install as ci  # noqa: PLC0415
    out: list[dict] = []

    def check(name: str, ok: bool, detail: str) -> bool:
        out.append({"check": name, "ok": ok, "detail": detail})
        return ok
    path = Path(conf_dir) / ci.CONF_NAME
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        check("conflist", False, f"{path} does not exist (contivctl install cni writes it)")
        return out
    except (ValueError, OSError) as e:
        check("conflist", False, f"{path} is not valid JSON: {e}")
        return out
    if not check("conflist", isinstance(doc, dict) and isinstance(doc.get("plugins"), list) and doc["plugins"],
                 f"{path}: a network list with plugins" if isinstance(doc, dict) else f"{path}: not an object"):
        return out
    first = sorted(p.name for p in Path(conf_dir).iterdir() if p.suffix in (".conf", ".conflist", ".json"))
    check("first network", first[:1] == [ci.CONF_NAME],
          f"runtimes use the first file by name: {first[0]}" if first else "no configuration files")
    v = doc.get("cniVersion")
    check("cniVersion", v in ci.CNI_VERSIONS and v != "1.1.0",
          f"{v}" + (": podman 4.3 and containerd 1.6/1.7 (libcni 1.1) refuse it; reinstall with "
                    "--cni-version 1.0.0" if v == "1.1.0" else "" if v in ci.CNI_VERSIONS
                    else f": not one of {', '.join(ci.CNI_VERSIONS)}"))
    for p in doc["plugins"]:
        t = str(p.get("type", "")) if isinstance(p, dict) else ""
        where = next((Path(d) / t for d in bin_dirs if t and (Path(d) / t).is_file()), None)
        check(f"plugin {t or '?'}", where is not None and os.access(where, os.X_OK),
              f"{where}" + ("" if where is None or os.access(where, os.X_OK) else " is not executable")
              if where else f"not found in {', '.join(bin_dirs)}")
    ours = next((p for p in doc["plugins"] if isinstance(p, dict) and p.get("type") == ci.PLUGIN_NAME), None)
    if check("contiv-cni", ours is not None, "in the list" if ours else "the list has no contiv-cni plugin"):
        sock = socket_override or ours.get("agentSocket") or "/run/contiv/agent.sock"
        check("agent", *_agent(sock))
    return out


def _agent(sock: str) -> tuple[bool, str]:
    from agent.api.client import AgentClient  # noqa: PLC0415
    from agent.errors import ContivError  # noqa: PLC0415
    try:
        h = AgentClient(sock, timeout=3).health()
    except ContivError as e:
        return False, f"{sock}: {e.message}"
    return True, f"{sock}: node {h.node}, " + ("ready" if h.ready else f"not ready ({h.message})")
