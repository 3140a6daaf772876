"""Install the CNI plugin and its network configuration on a node, atomically.

Each file is written to a temporary file in the target directory, flushed to
disk and renamed over the target: a runtime reading the directory sees the
old file or the new one, never half of one. Running it again with the same
inputs changes nothing (and says so); ``uninstall`` removes only files that
are ours.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

PLUGIN_NAME = "contiv-cni"
CONF_NAME = "10-contiv.conflist"
NETWORK_NAME = "contiv"
MARKER = "contiv-cni: the CNI plugin executable"
#: Plugins chained after ours when present in the bin dir (and their capabilities).
CHAINABLE = {"portmap": {"portMappings": True}, "bandwidth": {"bandwidth": True}, "tuning": None}
#: conflist versions the plugin speaks (cni/plugin.py)
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
#: What install writes unless told otherwise: the newest version every
#: runtime we support speaks. podman 4.3 (Debian 12) and containerd 1.6/1.7
#: bundle libcni 1.1, which speaks up to 1.0.0 and refuses every container of
#: a 1.1.0 conflist ("unsupported CNI result version"); only CRI-O 1.28+ and
#: containerd 2 (libcni 1.2) read 1.1.0.
DEFAULT_CNI_VERSION = "1.0.0"


def plugin_source(interpreter: str | None = None) -> str:
    """The installed plugin: an interpreter line that skips site initialisation,
    then the plugin module *precompiled* (marshalled code of this interpreter's
    version, so no compile step on the pod start path) with its source as the
    fallback for any other version. One self-contained file: atomic to install."""
    import marshal  # noqa: PLC0415
    python = interpreter or os.path.realpath(sys.executable)
    src = (Path(__file__).parent / "plugin.py").read_text()
    code = marshal.dumps(compile(src, PLUGIN_NAME, "exec"))
    return "\n".join([
        f"#!{python} -IS",
        f"# {MARKER} (installed by contivctl install cni; source: cni/plugin.py)",
        "import sys",
        f"if sys.version_info[:2] == {tuple(sys.version_info[:2])!r}:",
        "    import marshal",
        f"    exec(marshal.loads({code!r}))",
        "else:",
        f"    exec(compile({src!r}, __file__, 'exec'))",
        ""])


def conflist(socket: str, chain: list[str], cni_version: str = DEFAULT_CNI_VERSION,
             tuning_sysctl: dict[str, str] | None = None) -> dict:
    """The network list: contiv-cni, then ``chain``; ``tuning_sysctl``: the
    sysctls the ``tuning`` plugin sets in each pod."""
    plugins = [{"type": PLUGIN_NAME, "agentSocket": socket}]
    for name in chain:
        entry: dict = {"type": name}
        caps = CHAINABLE.get(name)
        if caps:
            entry["capabilities"] = caps
        if name == "tuning" and tuning_sysctl:
            entry["sysctl"] = dict(tuning_sysctl)
        plugins.append(entry)
    return {"cniVersion": cni_version, "name": NETWORK_NAME, "plugins": plugins}


def resolve_chain(chain: list[str] | None, dirs: list[str]) -> list[str]:
    """The plugins to chain: ``chain`` checked (each known and present in one
    of ``dirs``), or, for None, every one of :data:`CHAINABLE` present.
    Raises ValueError / FileNotFoundError before anything is written."""
    search = [Path(d) for d in dirs]
    if chain is None:
        return [n for n in CHAINABLE if any((d / n).exists() for d in search)]
    unknown = [n for n in chain if n not in CHAINABLE]
    if unknown:
        raise ValueError(f"cannot chain {', '.join(map(repr, unknown))}; supported: {', '.join(CHAINABLE)}")
    missing = [n for n in chain if not any((d / n).exists() for d in search)]
    if missing:
        raise FileNotFoundError(f"chained plugin(s) not found in {', '.join(map(str, search))}: "
                                f"{', '.join(missing)}")
    return list(chain)


def conflist_bytes(socket: str, chain: list[str], cni_version: str = DEFAULT_CNI_VERSION,
                   tuning_sysctl: dict[str, str] | None = None) -> bytes:
    """The conflist file as install writes it."""
    if cni_version not in CNI_VERSIONS:
        raise ValueError(f"CNI version {cni_version!r} is not one of {', '.join(CNI_VERSIONS)}")
    if tuning_sysctl and "tuning" not in chain:
        raise ValueError("sysctls for the tuning plugin need tuning in the chain")
    return (json.dumps(conflist(socket, chain, cni_version, tuning_sysctl), indent=2) + "\n").encode()


def _atomic_write(path: Path, data: bytes, mode: int) -> str:
    """Write ``data`` to ``path`` atomically; returns installed/updated/unchanged."""
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return "unchanged"
        existed = True
    except FileNotFoundError:
        existed = False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dfd)  # make the rename itself durable
    finally:
        os.close(dfd)
    return "updated" if existed else "installed"


def install(bin_dir: str, conf_dir: str, socket: str, chain: list[str] | None = None,
            plugin_dirs: list[str] | None = None, interpreter: str | None = None,
            cni_version: str = DEFAULT_CNI_VERSION) -> list[dict]:
    """Install the plugin into ``bin_dir`` and the conflist into ``conf_dir``.

    ``chain``: plugins to chain after ours; None means every plugin of
    :data:`CHAINABLE` found in ``bin_dir`` (or ``plugin_dirs``).
    """
    chain = resolve_chain(chain, [bin_dir] + list(plugin_dirs or []))
    bin_path = Path(bin_dir) / PLUGIN_NAME
    actions = [{"file": str(bin_path),
                "action": _atomic_write(bin_path, plugin_source(interpreter).encode(), 0o755)}]
    conf_path = Path(conf_dir) / CONF_NAME
    body = conflist_bytes(socket, chain, cni_version)
    actions.append({"file": str(conf_path), "action": _atomic_write(conf_path, body, 0o644),
                    "chain": chain})
    return actions


def uninstall(bin_dir: str, conf_dir: str) -> list[dict]:
    """Remove our plugin and conflist (only if they are ours)."""
    actions = []
    for path, ours in ((Path(bin_dir) / PLUGIN_NAME, lambda t: MARKER in t),
                       (Path(conf_dir) / CONF_NAME, lambda t: f'"name": "{NETWORK_NAME}"' in t)):
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            actions.append({"file": str(path), "action": "absent"})
            continue
        if not ours(text):
            actions.append({"file": str(path), "action": "kept (not ours)"})
            continue
        path.unlink()
        actions.append({"file": str(path), "action": "removed"})
    return actions
