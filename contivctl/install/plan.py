"""Installing files on a node: plan (with diffs), apply atomically, uninstall
exactly what was installed.

Every file ``install`` writes is recorded in a manifest
(``/var/lib/contiv/install.json`` under the root) with the digest of what
was written. That is how a later run tells apart

* a file still as we wrote it (replaced by a newer version: ``update``),
* a file changed by hand since (``conflict``: its diff is shown and only
  ``--force`` replaces it; ``uninstall`` leaves it, with a notice),
* a file we never wrote (``conflict`` too: it is somebody else's),
* the user's own configuration (``Want.user``): written when absent, then
  theirs -- kept as it is unless they give new content and ``--force``.

Each file is written to a temporary file beside it and renamed over it
(:func:`cni.install._atomic_write`): a reader sees the old file or the new
one, and a failure (an unwritable directory, a full disk) leaves the old
one. Everything that can be checked is checked before the first write, so
bad input changes nothing.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import InvalidInput, TemporaryError

MANIFEST = "/var/lib/contiv/install.json"


@dataclass(frozen=True)
class Want:
    """A file (or, with ``link``, a symbolic link to ``link``) install wants
    at ``path`` (absolute, as on the node; the root is added when writing)."""

    path: str
    what: str
    content: bytes = b""
    mode: int = 0o644
    user: bool = False  # the user's configuration: created once, never replaced unasked
    link: str = ""


@dataclass
class Action:
    """What happens (or would happen) to one path: ``create``, ``update``,
    ``unchanged``, ``kept`` (the user's, or not ours), ``conflict``,
    ``remove``, ``absent``; ``diff``: unified diff, old -> new."""

    path: str
    what: str
    action: str
    note: str = ""
    diff: str = ""
    want: Want | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = {"file": self.path, "what": self.what, "action": self.action}
        if self.note:
            d["note"] = self.note
        if self.diff:
            d["diff"] = self.diff
        return d


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Manifest:
    """path -> {"sha256", "what"} of everything install wrote under ``root``."""

    def __init__(self, root: str, path: str = MANIFEST) -> None:
        self.file = under(root, path)
        try:
            doc = json.loads(self.file.read_text())
            self.files: dict[str, dict] = dict(doc.get("files", {}))
        except FileNotFoundError:
            self.files = {}
        except (ValueError, AttributeError, OSError) as e:
            raise InvalidInput(f"install manifest {self.file} is unreadable ({e})",
                               hint="move it away to treat every installed file as not ours") from None

    def save(self) -> None:
        from cni.install import _atomic_write  # noqa: PLC0415
        body = json.dumps({"version": 1, "files": dict(sorted(self.files.items()))}, indent=1) + "\n"
        _atomic_write(self.file, body.encode(), 0o600)


def under(root: str, path: str) -> Path:
    """``path`` (absolute, as on the node) inside ``root``."""
    return Path(root) / path.lstrip("/")


def _current(p: Path) -> bytes | None:
    """What is at ``p`` now: a file's bytes, a link's target (encoded), None."""
    if p.is_symlink():
        return os.readlink(p).encode()
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InvalidInput(f"{p} is a directory, not a file") from None
    except NotADirectoryError:
        raise InvalidInput(f"{p}: a part of the path is not a directory") from None


def _diff(path: str, old: bytes, new: bytes) -> str:
    try:
        a, b = old.decode().splitlines(keepends=True), new.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"binary file {path} differs\n"
    return "".join(difflib.unified_diff(a, b, f"{path} (on disk)", f"{path} (install)"))


def plan(wants: list[Want], root: str, manifest: Manifest, force: bool = False) -> list[Action]:
    """What installing ``wants`` under ``root`` does; changes nothing."""
    out = []
    for w in wants:
        body = w.link.encode() if w.link else w.content
        now = _current(under(root, w.path))
        rec = manifest.files.get(w.path)
        if now is None:
            out.append(Action(w.path, w.what, "create", want=w))
        elif now == body:
            out.append(Action(w.path, w.what, "unchanged", want=w))
        elif w.user and not force:
            out.append(Action(w.path, w.what, "kept", "your configuration: left as it is "
                              "(--force replaces it with what install writes)", _diff(w.path, now, body)))
        elif rec is not None and rec.get("sha256") == digest(now):
            out.append(Action(w.path, w.what, "update", diff=_diff(w.path, now, body), want=w))
        elif force:
            out.append(Action(w.path, w.what, "update", "replaces a file changed by hand (--force)",
                              _diff(w.path, now, body), want=w))
        else:
            why = "changed by hand since install wrote it" if rec else "not written by install"
            out.append(Action(w.path, w.what, "conflict", why, _diff(w.path, now, body)))
    return out


def conflicts(actions: list[Action]) -> list[Action]:
    return [a for a in actions if a.action == "conflict"]


def apply(actions: list[Action], root: str, manifest: Manifest) -> None:
    """Write what ``actions`` create or update; the manifest records each
    file as it lands (a failure part-way leaves the manifest true)."""
    from cni.install import _atomic_write  # noqa: PLC0415
    if conflicts(actions):
        raise InvalidInput("refusing to write: " + ", ".join(a.path for a in conflicts(actions)))
    try:
        for a in actions:
            w = a.want
            if w is None:
                continue
            if a.action in ("create", "update"):
                target = under(root, w.path)
                try:
                    if w.link:
                        _atomic_link(target, w.link)
                    else:
                        _atomic_write(target, w.content, w.mode)
                except OSError as e:  # a full disk, a read-only file system...
                    raise TemporaryError(f"cannot write {w.path}: {e.strerror or e}",
                                         hint="nothing is half-written: the old file is in place; "
                                              "fix the cause and run install again") from None
            if a.action in ("create", "update", "unchanged"):
                manifest.files[w.path] = {"sha256": digest(w.link.encode() if w.link else w.content),
                                          "what": w.what}
    finally:
        manifest.save()


def _atomic_link(target: Path, to: str) -> None:
    """A symbolic link made beside ``target`` and renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.contiv-tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(to, tmp)
    os.rename(tmp, target)


def uninstall(root: str, manifest: Manifest, only: set[str] | None = None) -> list[Action]:
    """Remove every file the manifest lists (of ``only``, when given) that is
    still as install wrote it; one changed since is left, with a notice."""
    actions = plan_uninstall(root, manifest, only)
    try:
        for a in actions:
            if a.action == "remove":
                under(root, a.path).unlink()
            if a.action in ("remove", "absent"):
                manifest.files.pop(a.path, None)
    finally:
        if manifest.files:
            manifest.save()
        else:
            try:
                manifest.file.unlink()
            except FileNotFoundError:
                pass
    return actions


def plan_uninstall(root: str, manifest: Manifest, only: set[str] | None = None) -> list[Action]:
    out = []
    for path, rec in sorted(manifest.files.items()):
        if only is not None and path not in only:
            continue
        now = _current(under(root, path))
        what = rec.get("what", "")
        if now is None:
            out.append(Action(path, what, "absent"))
        elif digest(now) == rec.get("sha256"):
            out.append(Action(path, what, "remove"))
        else:
            out.append(Action(path, what, "kept", "changed by hand since install wrote it: left in place"))
    return out
