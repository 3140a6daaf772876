"""The STN directory: one snapshot and one state file per stolen NIC.

``stn`` writes it; the agent reads it (``status``, and on a VPP node the
uplink it takes). It sits low in the agent's layers for that reason.

Writes are atomic (a temporary file in the same directory, fsync, rename,
fsync of the directory): a crash leaves the old file or the new one, never
half of either -- the snapshot is the one thing that gives a node its
network back. The directory is root's alone (0700): it holds the node's
addressing, and a file planted there would be restored onto a NIC.
"""
from __future__ import annotations

import os
import re

from agent.errors import InvalidInput, NotFound
from agent.model.stn import Snapshot, StnEntry, StnState, StnStatus

DEFAULT_DIR = "/var/lib/contiv/stn"
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def check_ifname(name: str) -> str:
    """``name`` if it can be a Linux interface name (1-15 bytes, no '/', no
    space), else InvalidInput: checked before it reaches a path or netlink."""
    if not isinstance(name, str) or not _IFNAME.match(name) or name in (".", ".."):
        raise InvalidInput(f"{name!r} is not an interface name (1-15 characters: letters, digits, _ . : @ -)")
    return name


class StnDir:
    """The files of the STN directory ``path``."""

    def __init__(self, path: str = DEFAULT_DIR) -> None:
        self.path = path

    def snapshot_path(self, iface: str) -> str:
        return os.path.join(self.path, f"{check_ifname(iface)}.snapshot.json")

    def state_path(self, iface: str) -> str:
        return os.path.join(self.path, f"{check_ifname(iface)}.state.json")

    # --------------------------------------------------------------- write
    def check(self) -> None:
        """Make the directory (0700) if needed, and refuse one that others
        could write to: what is planted there is put onto a NIC."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        st = os.stat(self.path)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise InvalidInput(f"STN directory {self.path} must be owned by this user and writable by it "
                               f"alone (owner uid {st.st_uid}, mode {st.st_mode & 0o777:o})",
                               hint=f"chown root: {self.path}; chmod 700 {self.path}")

    def _write(self, path: str, data: str) -> None:
        self.check()
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            os.unlink(tmp)  # one this process left when it was killed: its pid came round again
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def save_snapshot(self, snap: Snapshot) -> str:
        path = self.snapshot_path(snap.iface)
        self._write(path, snap.to_json() + "\n")
        return path

    def save_state(self, st: StnState) -> None:
        self._write(self.state_path(st.iface), st.to_json() + "\n")

    # ---------------------------------------------------------------- read
    def snapshot(self, iface: str) -> Snapshot:
        """The saved snapshot of ``iface``: NotFound without one, InvalidInput
        when it is corrupt or of another version."""
        path = self.snapshot_path(iface)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise NotFound(f"no STN snapshot of {iface} in {self.path}: {iface} is not stolen") from None
        return Snapshot.parse(raw, path, iface)

    def state(self, iface: str) -> StnState | None:
        """The state of ``iface``'s steal, None when none is on record."""
        path = self.state_path(iface)
        try:
            with open(path, "rb") as f:
                return StnState.parse(f.read(), path, iface)
        except FileNotFoundError:
            return None

    def ifaces(self) -> list[str]:
        """NICs with a snapshot on record, sorted."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(n[:-len(".snapshot.json")] for n in names if n.endswith(".snapshot.json"))

    def status(self) -> StnStatus:
        """Every NIC on record, with the files that could not be read named in
        ``errors`` (a diagnostic: partial results plus what went wrong)."""
        entries, errors = [], []
        for iface in self.ifaces():
            try:
                snap = self.snapshot(iface)
                st = self.state(iface) or StnState(iface, "unknown", "restoring", snap.taken_at, "",
                                                   error="no state file: a steal or restore was interrupted")
            except (InvalidInput, NotFound) as e:
                errors.append(e.message)
                continue
            entries.append(StnEntry(st, tuple(snap.ipv4()), snap.gateway(), self.snapshot_path(iface)))
        return StnStatus(self.path, tuple(entries), tuple(errors))

    def holder(self, iface: str, dataplane: str) -> str:
        """The link that holds ``iface``'s addresses while ``dataplane`` has
        it stolen; "" when it is not (or its record cannot be read: the
        caller then uses the NIC itself)."""
        try:
            st = self.state(iface)
        except InvalidInput:
            return ""
        return st.holder if st is not None and st.carried and st.dataplane == dataplane else ""

    def nic_of(self, link: str) -> str:
        """The NIC on record whose holder is ``link``, or ``link`` itself."""
        for iface in self.ifaces():
            try:
                st = self.state(iface)
            except InvalidInput:
                continue
            if st is not None and st.holder == link:
                return iface
        return link

    # -------------------------------------------------------------- forget
    def forget(self, iface: str) -> None:
        """Drop ``iface``'s state, and keep its snapshot as
        ``<iface>.restored.json`` (what the last restore restored from)."""
        try:
            os.unlink(self.state_path(iface))
        except FileNotFoundError:
            pass
        try:
            os.replace(self.snapshot_path(iface), os.path.join(self.path, f"{iface}.restored.json"))
        except FileNotFoundError:
            pass
