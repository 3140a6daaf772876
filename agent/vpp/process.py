"""Run a private VPP: for the VPP test tier and the lab.

* :func:`find_vpp` locates an installation (``$VPP_PREFIX``, ``vpp`` on
  PATH, ``/opt/vpp``); :func:`availability` says in one line whether a VPP can
  be run here and, if not, how to get one (tests skip with that line).
* :func:`render_startup_conf` writes the configuration of one instance, so
  that several VPPs run side by side (one per lab node, each optionally in
  its own network namespace): everything it creates lives in its runtime
  directory (API, CLI and stats sockets, pidfile, log), its shared-memory
  prefix is its own, no DPDK, no hugepages (4k pages), no worker threads --
  an idle instance with af_packet interfaces in interrupt mode costs ~3% CPU.
* :class:`VppProcess` starts it (``ip netns exec NAME vpp -c CONF`` as an
  argument list when a namespace is given), waits for its API socket (a
  timeout or an early exit raises VppUnavailable quoting the end of VPP's
  output), stops it (SIGTERM, then SIGKILL) and can kill it (crash tests).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import InvalidInput
from agent.procs import terminate
from agent.vpp.errors import VppUnavailable

HOW_TO_GET_VPP = ("build one with scripts/vpp-build.sh SRC_DIR [PREFIX] from FD.io's VPP source, or install "
                  "FD.io's 'vpp' and 'vpp-plugin-core' packages (VPP 26.10, see docs/vpp.md), and set "
                  "VPP_PREFIX to its prefix unless it is /opt/vpp or on PATH")
_SUN_PATH_MAX = 107   # sockaddr_un.sun_path minus its NUL
_ANSI = re.compile(r"\x1b\[[0-9;]*m")   # VPP colours its backtraces


@dataclass(frozen=True)
class VppInstall:
    """An installed VPP: ``prefix`` holds ``bin/vpp`` and ``share/vpp/api``."""

    prefix: Path
    binary: Path

    @property
    def api_dir(self) -> Path:
        return self.prefix / "share" / "vpp" / "api"

    def library_path(self) -> str:
        """Library directories of a VPP installed outside the loader's path."""
        dirs = [d for d in (self.prefix / "lib", self.prefix / "lib64",
                            self.prefix / "lib" / "x86_64-linux-gnu") if d.is_dir()]
        return ":".join(str(d) for d in dirs)


def find_vpp(prefix: str | os.PathLike | None = None) -> VppInstall | None:
    """The VPP under ``prefix``, ``$VPP_PREFIX``, on PATH, or in /opt/vpp."""
    candidates = [Path(p) for p in (prefix, os.environ.get("VPP_PREFIX")) if p]
    exe = shutil.which("vpp")
    if exe:
        candidates.append(Path(exe).resolve().parent.parent)
    candidates.append(Path("/opt/vpp"))
    for c in candidates:
        binary = c / "bin" / "vpp"
        if binary.is_file() and os.access(binary, os.X_OK):
            return VppInstall(c, binary)
    return None


def availability(prefix: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(True, what will be used) or (False, why not and how to get a VPP)."""
    inst = find_vpp(prefix)
    if inst is None:
        return False, f"no VPP found ($VPP_PREFIX, PATH, /opt/vpp): {HOW_TO_GET_VPP}"
    if not inst.api_dir.is_dir():
        return False, (f"VPP {inst.binary} has no API definitions in {inst.api_dir}: "
                       f"{HOW_TO_GET_VPP}")
    if os.geteuid() != 0:
        return False, f"VPP {inst.binary} found, but running it needs root"
    return True, f"VPP {inst.binary}"


@dataclass(frozen=True)
class VppConfig:
    """One instance: its runtime directory and shared-memory prefix.

    ``main_core`` pins the main thread (default: the CPU it starts on);
    ``extra`` is appended verbatim to the startup configuration.
    """

    runtime_dir: Path
    prefix: str
    main_core: int | None = None
    extra: str = ""

    @property
    def api_socket(self) -> Path:
        return self.runtime_dir / "api.sock"

    @property
    def cli_socket(self) -> Path:
        return self.runtime_dir / "cli.sock"

    @property
    def stats_socket(self) -> Path:
        return self.runtime_dir / "stats.sock"

    @property
    def pidfile(self) -> Path:
        return self.runtime_dir / "vpp.pid"   # VPP wants it inside runtime-dir

    @property
    def log_file(self) -> Path:
        return self.runtime_dir / "vpp.log"

    @property
    def output_file(self) -> Path:
        return self.runtime_dir / "vpp.out"   # VPP's stdout and stderr

    @property
    def conf_file(self) -> Path:
        return self.runtime_dir / "startup.conf"


def render_startup_conf(cfg: VppConfig) -> str:
    """The startup.conf of one instance (see the module docstring)."""
    rd = cfg.runtime_dir
    for p in (cfg.api_socket, cfg.cli_socket, cfg.stats_socket):
        if len(str(p)) > _SUN_PATH_MAX:
            raise InvalidInput(f"VPP runtime directory {rd} is too long for a unix "
                               f"socket path ({len(str(p))} > {_SUN_PATH_MAX} bytes)")
    cpu = f"cpu {{ main-core {cfg.main_core} }}\n" if cfg.main_core is not None else ""
    return (
        "unix {\n"
        "  nodaemon\n"
        "  nosyslog\n"      # a test VPP must not write to the host's syslog
        f"  runtime-dir {rd}\n"
        f"  pidfile {cfg.pidfile}\n"
        f"  cli-listen {cfg.cli_socket}\n"
        f"  log {cfg.log_file}\n"
        "}\n"
        f"api-segment {{ prefix {cfg.prefix} }}\n"
        f"socksvr {{ socket-name {cfg.api_socket} }}\n"
        f"statseg {{ socket-name {cfg.stats_socket} page-size 4k }}\n"
        "memory { main-heap-page-size 4k }\n"
        "buffers { page-size 4k }\n"
        "plugins { plugin dpdk_plugin.so { disable } }\n"
        + cpu + cfg.extra)


class VppProcess:
    """A private VPP process.

    ``runtime_dir``: where its sockets, config and logs go (default: a new
    temporary directory, removed by :meth:`close`). ``name``: its
    shared-memory prefix (default: derived from the directory). ``netns``: a
    network namespace (``ip netns add``) to run it in. Use as a context
    manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, runtime_dir: str | os.PathLike | None = None, *,
                 name: str | None = None, netns: str | None = None,
                 prefix: str | os.PathLike | None = None, main_core: int | None = None,
                 extra_config: str = "") -> None:
        inst = find_vpp(prefix)
        if inst is None:
            raise VppUnavailable(f"no VPP found: {HOW_TO_GET_VPP}")
        self.install = inst
        self._own_dir = runtime_dir is None
        rd = Path(tempfile.mkdtemp(prefix="contiv-vpp-")) if runtime_dir is None \
            else Path(runtime_dir)
        self.config = VppConfig(rd.resolve() if rd.exists() else rd,
                                name or rd.name, main_core, extra_config)
        self.netns = netns
        self._proc: subprocess.Popen | None = None
        self._out = None

    @property
    def api_socket(self) -> Path:
        return self.config.api_socket

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def argv(self) -> list[str]:
        cmd = [str(self.install.binary), "-c", str(self.config.conf_file)]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def start(self, timeout: float = 15.0) -> "VppProcess":
        """Start VPP and wait until its API socket accepts connections."""
        if self.running:
            return self
        cfg = self.config
        cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
        for stale in (cfg.api_socket, cfg.cli_socket, cfg.stats_socket, cfg.pidfile):
            stale.unlink(missing_ok=True)   # left behind by a killed VPP
        cfg.conf_file.write_text(render_startup_conf(cfg))
        env = dict(os.environ)
        libs = self.install.library_path()
        if libs:
            env["LD_LIBRARY_PATH"] = ":".join(x for x in (libs, env.get("LD_LIBRARY_PATH")) if x)
        self._out = open(cfg.output_file, "ab")
        self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._out,
                                      stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        path = str(self.config.api_socket)
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise VppUnavailable(f"VPP exited with status {rc} before opening its API "
                                     f"socket {path}; end of its output:\n{self.log_tail()}")
            if os.path.exists(path):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() >= deadline:
                raise VppUnavailable(f"VPP did not open its API socket {path} within "
                                     f"{timeout:g} s; end of its output:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of VPP's output and of its log file."""
        out = []
        for f in (self.config.output_file, self.config.log_file):
            try:
                text = f.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out += [f"  {f.name}: {_ANSI.sub('', line)}" for line in text[-lines:]]
        return "\n".join(out) or "  (no output)"

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit status."""
        p = self._proc
        if p is None:
            return None
        status = terminate(p, timeout)
        if self._out is not None:
            self._out.close()
            self._out = None
        return status

    def kill(self) -> None:
        """SIGKILL, as a crash would (the API socket file stays behind)."""
        if self.running:
            self._proc.kill()
        self.stop()

    def restart(self, timeout: float = 15.0) -> "VppProcess":
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop VPP; remove the runtime directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.config.runtime_dir, ignore_errors=True)

    def __enter__(self) -> "VppProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
