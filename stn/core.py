"""Steal a NIC, confirm or roll back, restore, watch: the STN API.

:class:`Stn` is what ``contivctl stn`` calls (and the tests, and the
watchdog). Every operation that changes the node takes the STN directory's
lock, so a guard rolling back, a watchdog restoring and an operator
confirming never interleave.

A steal is a list of named steps (see ``docs/stn.md``). The snapshot is saved
before the first change; any failure after it restores from the snapshot
before the error goes up, so a failed steal leaves the node as it was. A
restore runs its steps from the start again when one fails (each step can
be repeated); the snapshot is dropped only when every step succeeded.

A steal ends *pending*: a detached guard process (:mod:`stn.guard`)
restores the NIC at the deadline unless ``confirm`` came first -- or the
automatic check (the gateway answers, by default) confirmed it.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

from agent.errors import Conflict, ContivError, InvalidInput, NotFound
from agent.model.stn import Snapshot, StnEntry, StnState, StnStatus
from agent.stndir import DEFAULT_DIR, StnDir, check_ifname
from stn import check as probe
from stn import faults, netcfg
from stn.sides import LinuxSide, VppSide, side_for


class StnFailed(ContivError):
    """A steal or a restore that did not complete (the message says what the
    node was left with)."""


#: a steal the watchdog makes again: unconfirmed before, it waits this long
#: for its confirmation; failed, the next attempt waits RESTEAL_BACKOFF
RESTEAL_CONFIRM, RESTEAL_BACKOFF = 60.0, 30.0
#: what waits while the lock is held (only the main thread can block them)
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _ipr():
    from pyroute2 import IPRoute  # noqa: PLC0415 -- netlink only when acting
    return IPRoute()


class Stn:
    """STN on this node: files under ``dir``; ``agent`` (a NodeAPI client) for
    the VPP data plane; ``log`` receives one line per thing done."""

    def __init__(self, dir: str = DEFAULT_DIR, agent=None, vpp_socket: str = "",  # noqa: A002
                 agent_socket: str = "", log=None) -> None:
        self.files = StnDir(dir)
        self.agent = agent
        self.agent_socket = agent_socket
        self.vpp_socket = vpp_socket
        self.log = log or (lambda _msg: None)

    def _side(self, dataplane: str):
        return side_for(dataplane, self.agent, self.vpp_socket)

    @contextmanager
    def _locked(self, wait: bool = True):
        """The directory's lock, held while a steal, restore or confirm runs:
        ``wait`` False yields False at once when someone holds it (a steal or
        restore under way; a holder that died has let go of it). Ctrl-C,
        SIGTERM and SIGHUP (a terminal whose connection the steal cut) wait
        until the steps are done; a kill that cannot wait is the guard's and
        the watchdog's to roll back."""
        self.files.check()
        fd = os.open(os.path.join(self.files.path, ".lock"), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _one(self, iface: str | None) -> str:
        """``iface``, or the only NIC on record when none is named."""
        if iface:
            return check_ifname(iface)
        on_record = self.files.ifaces()
        if len(on_record) != 1:
            raise InvalidInput("name the interface" if on_record else "no interface is stolen",
                               hint=f"stolen: {', '.join(on_record)}" if on_record else "contivctl stn status")
        return on_record[0]

    # ------------------------------------------------------------------ steal
    def steal(self, iface: str, dataplane: str = "linux", confirm_timeout: float = 60.0,
              check: str = "gateway", guard: bool = True) -> StnEntry:
        """Steal ``iface`` for ``dataplane`` and return its entry, pending or
        (once ``check`` answered) confirmed. ``check``: ``gateway`` (the
        default route's next hop), an address or ``address:port``, or
        ``none`` (only :meth:`confirm`). If the check never answers within
        ``confirm_timeout`` the NIC is restored and :class:`StnFailed` raised."""
        check_ifname(iface)
        if not 1 <= confirm_timeout <= 3600:
            raise InvalidInput(f"--confirm-timeout {confirm_timeout:g} is out of range 1..3600 seconds")
        if check not in ("gateway", "none", ""):
            probe.parse_target(check)
        side = self._side(dataplane)
        with self._locked():
            st = self.files.state(iface)
            if st is not None or iface in self.files.ifaces():
                what = f"{st.phase} on {st.dataplane} since {time.ctime(st.since)}" if st else "a snapshot is on record"
                raise Conflict(f"{iface} is stolen already ({what})",
                               hint="contivctl stn status; contivctl stn restore " + iface)
            with _ipr() as ipr:
                snap = netcfg.capture(ipr, iface)  # refusals leave everything as it was
                target = snap.gateway() if check == "gateway" else ("" if check == "none" else check)
                holder = side.holder(iface)
                if side.taken(ipr, holder):
                    raise Conflict(f"{holder} is in use already: it is not STN's to take",
                                   hint=f"remove it, or restore a steal left behind: contivctl stn restore {iface}")
                deadline = time.time() + confirm_timeout
                self._steal_steps(ipr, side, snap, holder, StnState(
                    iface, side.name, "stealing", time.time(), holder, deadline, target, pid=os.getpid()),
                    guard=guard)
        self.log(f"{iface} stolen by {side.name} ({holder} holds {', '.join(snap.ipv4())}); "
                 f"pending until {time.strftime('%H:%M:%S', time.localtime(deadline))}")
        if target:
            left = deadline - time.time()
            if probe.answers(target, left):
                return self.confirm(iface, by=f"{target} answered")
            try:
                if self.restore(iface, reason=f"{target} did not answer within {confirm_timeout:g} s",
                                only_if=lambda st: st is not None and st.phase == "pending") is None:
                    return self.entry(iface)  # confirmed by hand meanwhile: it stays
            except NotFound:
                pass  # the guard's deadline came first: restored already
            raise StnFailed(f"{target} did not answer within {confirm_timeout:g} s through {side.name}: "
                            f"{iface} restored from its snapshot",
                            hint="check the data plane (contivctl status), or steal with --check none and confirm by hand")
        return self.entry(iface)

    def _steal_steps(self, ipr, side, snap: Snapshot, holder: str, state: StnState,
                     save: bool = True, guard: bool = False) -> None:
        nic = netcfg.ifindex(ipr, snap.iface)
        rename = (snap.iface, holder)

        def relabel(a: dict) -> str | None:
            lab = a.get("label")
            return holder + lab[len(snap.iface):] if lab and lab.startswith(snap.iface) else None

        def save_files():
            if save:
                self.files.save_snapshot(snap)
            self.files.save_state(state)
            if guard:  # from here on something outside this process can roll back
                self._spawn_guard(snap.iface)

        def addresses():
            h = netcfg.ifindex(ipr, holder)
            for a in snap.addresses:
                netcfg.put_address(ipr, h, a, label=relabel(a))
            for a in snap.addresses:
                netcfg.drop_address(ipr, nic, a)

        def routes():
            _routes_onto(ipr, holder, snap)
            for r in snap.routes:  # IPv4's went with the addresses; static IPv6 ones stay otherwise
                netcfg.drop_route(ipr, nic, r)

        def rules():
            _move_rules(ipr, snap, put=rename, drop=None)

        def neighbours():
            if side.moves_neighbours:
                h = netcfg.ifindex(ipr, holder)
                for n in snap.neighbours:
                    netcfg.put_neighbour(ipr, h, n)
                    netcfg.drop_neighbour(ipr, nic, n)

        def dataplane():
            nonlocal state
            state = _with(state, moved=True)  # the data plane may answer for the addresses now
            self.files.save_state(state)
            side.take(snap, state)

        steps = [("snapshot", save_files),
                 ("holder", lambda: side.create_holder(ipr, snap, holder)),
                 ("attach", lambda: side.attach(ipr, snap, holder)),
                 ("addresses", addresses), ("routes", routes), ("rules", rules),
                 ("neighbours", neighbours), ("dataplane", dataplane),
                 ("pending", lambda: self.files.save_state(_with(state, phase="pending", pid=0)))]
        done = None
        try:
            for name, fn in steps:
                fn()
                done = name
                if name != steps[-1][0]:
                    faults.point("steal", name)
        except BaseException as e:
            if done is None:  # not even the snapshot: nothing was changed
                raise
            failed = next(n for i, (n, _) in enumerate(steps) if i and steps[i - 1][0] == done)
            self.log(f"steal of {snap.iface} failed at step {failed}: {e}; restoring from the snapshot")
            self._restore_steps(ipr, snap, side, holder, reason=f"steal failed at step {failed}",
                                keep=not save, state=state)
            msg = e.message if isinstance(e, ContivError) else f"{type(e).__name__}: {e}"
            raise StnFailed(f"steal of {snap.iface} failed at step {failed} ({msg}); "
                            f"{snap.iface} was restored from its snapshot") from e

    def _spawn_guard(self, iface: str) -> None:
        # detached (own session, no terminal): it must outlive this command,
        # whose terminal may be the very connection the steal cuts
        args = [sys.executable, "-m", "stn.guard", "--dir", self.files.path, iface]
        if self.agent_socket:
            args += ["--socket", self.agent_socket]
        if self.vpp_socket:
            args += ["--vpp-api-socket", self.vpp_socket]
        subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)

    # ---------------------------------------------------------------- confirm
    def confirm(self, iface: str | None = None, by: str = "contivctl stn confirm") -> StnEntry:
        """Keep a pending steal (idempotent on a confirmed one)."""
        with self._locked():
            iface = self._one(iface)
            st = self.files.state(iface)
            if st is None:
                raise NotFound(f"{iface} is not stolen")
            if st.phase == "pending":
                self.files.save_state(_with(st, phase="confirmed", confirmed_at=time.time(), error=""))
                self.log(f"{iface}: steal confirmed ({by})")
            elif st.phase != "confirmed":
                raise InvalidInput(f"{iface} is {st.phase}: there is no pending steal to confirm")
        return self.entry(iface)

    # ---------------------------------------------------------------- restore
    def restore(self, iface: str | None = None, reason: str = "contivctl stn restore",
                keep: bool = False, only_if=None) -> Snapshot | None:
        """Give ``iface`` back exactly as its snapshot has it. ``keep``: the
        watchdog's restore -- the steal stays on record as ``suspended`` and
        is redone when the data plane is back. ``only_if(state)``: decided
        again under the lock (the guard and the watchdog looked without it:
        a confirm may have come between); None when it said no."""
        with self._locked():
            iface = self._one(iface)
            snap = self.files.snapshot(iface)  # corrupt or unknown: refused, nothing touched
            try:
                st = self.files.state(iface)
            except InvalidInput as e:  # the snapshot is what restores: do without the state
                self.log(f"{iface}: {e.message}; restoring from the snapshot alone")
                st = None
            if only_if is not None and not only_if(st):
                return None
            with _ipr() as ipr:
                side = self._side(st.dataplane) if st else self._guess_side(ipr, iface)
                self._restore_steps(ipr, snap, side, side.holder(iface), reason, keep=keep, state=st)
        return snap

    def _guess_side(self, ipr, iface: str):
        """The side of a steal whose state file was lost: whose holder exists."""
        lin = LinuxSide(self.agent)
        if ipr.link_lookup(ifname=lin.holder(iface)) or self.agent is None:
            return lin
        return self._side("vpp")

    def _restore_steps(self, ipr, snap: Snapshot, side, holder: str, reason: str,
                       keep: bool = False, state: StnState | None = None) -> None:
        rename = (snap.iface, holder)
        if state is not None:  # first: a VPP agent lets go of the NIC when it reads this
            self.files.save_state(_with(state, phase="restoring", pid=os.getpid(), error=reason))

        def link():
            nic = netcfg.ifindex(ipr, snap.iface)
            netcfg.write_sysctls(snap.iface, snap.link.get("sysctl", {}))
            netcfg.set_link(ipr, nic, address=snap.link["mac"], mtu=snap.link["mtu"])
            netcfg.set_link(ipr, nic, state="up" if snap.link["up"] else "down")

        def addresses():
            nic = netcfg.ifindex(ipr, snap.iface)
            for a in snap.addresses:
                netcfg.put_address(ipr, nic, a)

        def routes():
            _routes_onto(ipr, snap.iface, snap)

        def rules():
            _move_rules(ipr, snap, put=None, drop=rename)

        def neighbours():
            nic = netcfg.ifindex(ipr, snap.iface)
            for n in snap.neighbours:
                netcfg.put_neighbour(ipr, nic, n)

        def settle():
            if keep and state is not None:
                # deadline, while suspended: the first time to steal again
                self.files.save_state(_with(state, phase="suspended", pid=0, error=reason, moved=False,
                                            deadline=time.time()))
            else:
                self.files.forget(snap.iface)

        steps = [("release", lambda: side.release(ipr, snap, holder)),
                 ("teardown", lambda: side.teardown(ipr, snap, holder)),
                 ("link", link), ("addresses", addresses), ("routes", routes), ("rules", rules),
                 ("neighbours", neighbours), ("settle", settle)]
        errors = []
        for _attempt in range(3):
            try:
                for name, fn in steps:
                    step = name
                    fn()
                    if name != steps[-1][0]:
                        faults.point("restore", name)
                self.log(f"{snap.iface} restored ({reason})")
                return
            except Exception as e:  # noqa: BLE001 -- every step can be redone: start over
                msg = e.message if isinstance(e, ContivError) else f"{type(e).__name__}: {e}"
                errors.append(f"at step {step}: {msg}")
                self.log(f"restore of {snap.iface} failed at step {step}: {msg}; starting over")
                time.sleep(0.2)
        raise StnFailed(f"restore of {snap.iface} failed ({'; '.join(errors)}); the snapshot is kept at "
                        f"{self.files.snapshot_path(snap.iface)}",
                        hint="rerun contivctl stn restore, or recover by hand: docs/stn.md")

    # ----------------------------------------------------------------- status
    def status(self) -> StnStatus:
        return self.files.status()

    def entry(self, iface: str) -> StnEntry:
        for e in self.files.status().entries:
            if e.state.iface == iface:
                return e
        raise NotFound(f"{iface} is not stolen")

    # ------------------------------------------------------------------ watch
    def expire(self, iface: str) -> str:
        """The guard's job: restore ``iface`` if its steal is still pending
        past its deadline; what was done ("" when nothing)."""
        def due(st: StnState | None) -> bool:
            return st is not None and st.phase == "pending" and time.time() >= st.deadline
        if not due(self.files.state(iface)):
            return ""
        if self.restore(iface, reason="not confirmed before the deadline", only_if=due) is None:
            return ""  # confirmed meanwhile
        return f"{iface}: not confirmed in time, restored"

    def guard_once(self, iface: str) -> bool:
        """The guard's look at ``iface`` (:mod:`stn.guard`): rolls back a
        pending steal past its deadline, or a steal whose process died; True
        when nothing is left to guard (confirmed, restored, the watchdog's)."""
        try:
            st = self.files.state(iface)
        except InvalidInput:
            st = None
        if st is None and iface not in self.files.ifaces():
            return True
        if st is None or st.phase in ("stealing", "restoring"):
            self._watch(iface)  # under way (the lock is held): nothing; its owner died: rolled back
            return False
        if st.phase == "pending":
            self.expire(iface)
            return False
        return True

    def watch_once(self) -> list[str]:
        """One look at every steal on record: roll back expired and
        interrupted ones, give the NIC back when its data plane died, steal it
        again when the data plane is back. What was done, one line each."""
        done = []
        for iface in self.files.ifaces():
            try:
                line = self._watch(iface)
            except ContivError as e:
                line = f"{iface}: {e.message}"
            except Exception as e:  # noqa: BLE001 -- a link gone mid-look, netlink: next look
                line = f"{iface}: {type(e).__name__}: {e}"
            if line:
                self.log(line)
                done.append(line)
        return done

    def _watch(self, iface: str) -> str:
        st = self.files.state(iface)
        if st is None or st.phase in ("stealing", "restoring"):
            with self._locked(wait=False) as free:
                if not free:
                    return ""  # under way: the lock is held by a living process
            same = (lambda now: now is None) if st is None else \
                (lambda now: now is not None and (now.phase, now.since) == (st.phase, st.since))
            if self.restore(iface, reason="a steal or restore was interrupted", only_if=same) is None:
                return ""
            return f"{iface}: interrupted {st.phase if st else 'steal'} rolled back"
        if st.phase == "pending" and time.time() >= st.deadline:
            return self.expire(iface)
        if st.phase not in ("pending", "confirmed", "suspended"):
            return ""
        side = self._side(st.dataplane)
        if st.phase == "suspended":
            # after a failed attempt, the next one waits (deadline: not before)
            return self._resteal(iface, side) if time.time() >= st.deadline and side.up() else ""
        with _ipr() as ipr:
            held = side.holds(ipr, st, self.files.snapshot(iface))
        if held:
            return ""
        # a Linux bridge that is gone does not come back: give the NIC back
        # for good; a VPP that died is restarted by its supervisor
        keep = isinstance(side, VppSide)
        same = lambda now: now is not None and (now.phase, now.since) == (st.phase, st.since)  # noqa: E731
        if self.restore(iface, reason=f"{st.dataplane} data plane died", keep=keep, only_if=same) is None:
            return ""
        return f"{iface}: {st.dataplane} data plane died, node configuration restored"

    def _resteal(self, iface: str, side) -> str:
        with self._locked():
            snap = self.files.snapshot(iface)
            st = self.files.state(iface)
            if st is None or st.phase != "suspended":
                return ""
            phase = "confirmed" if st.confirmed_at else "pending"
            again = _with(st, phase="stealing", since=time.time(), pid=os.getpid(), error="", moved=False,
                          deadline=time.time() + RESTEAL_CONFIRM)
            with _ipr() as ipr:
                try:
                    self._steal_steps(ipr, side, snap, side.holder(iface), again, save=False)
                except StnFailed as e:  # given back again (suspended): not before RESTEAL_BACKOFF
                    self.files.save_state(_with(self.files.state(iface), deadline=time.time() + RESTEAL_BACKOFF,
                                                error=e.message))
                    raise
                self.files.save_state(_with(again, phase=phase, pid=0, moved=True))
        return f"{iface}: {st.dataplane} data plane is back, NIC stolen again ({phase})"

    def watch(self, interval: float = 1.0, stop=None) -> None:
        """Watch until ``stop()`` says so (forever by default)."""
        while not (stop and stop()):
            self.watch_once()
            time.sleep(interval)


def _routes_onto(ipr, link: str, snap: Snapshot) -> None:
    """Every saved route, through ``link``."""
    idx = netcfg.ifindex(ipr, link)
    for r in snap.routes:
        netcfg.put_route(ipr, idx, r)


def _move_rules(ipr, snap: Snapshot, put, drop) -> None:
    """Every saved rule added naming the link ``put`` renames it to (None: as
    saved), then removed as ``drop`` names it."""
    for r in snap.rules:
        netcfg.put_rule(ipr, r, put)
        netcfg.drop_rule(ipr, r, drop)


def _with(st: StnState, **changes) -> StnState:
    from dataclasses import replace  # noqa: PLC0415
    return replace(st, **changes)
