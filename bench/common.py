"""What every benchmark in bench/ does the same way: run as root, turn Ctrl-C
and SIGTERM into one clean-up path, keep a second Ctrl-C from cutting the
clean-up short, and write the figures as JSON."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def require_root(name: str, why: str = "network namespaces, netlink, nftables") -> bool:
    if os.geteuid() != 0:
        print(f"{name}: needs root ({why})", file=sys.stderr)
        return False
    return True


def stop_signals_interrupt() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt (also when started in the
    background, where SIGINT may have been inherited as ignored)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def uninterruptible():
    """A block (the clean-up) that a second Ctrl-C does not cut short."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def write_json(path: str | None, data, name: str = "bench") -> None:
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"{name}: wrote {path}", file=sys.stderr)


def run_bench(make, report, json_path: str | None, name: str) -> int:
    """Run a lab benchmark: ``make()`` builds it (after the signals are set up),
    ``run()`` measures, ``close()`` always tears the labs down; then the
    report is printed and the figures written."""
    stop_signals_interrupt()
    b = make()
    try:
        out = b.run()
    finally:
        b.close()
    out["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    print(report(out))
    write_json(json_path, out, name)
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its whole thread group), in seconds; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state); utime/stime are fields 14/15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def git_revision(repo: Path) -> str:
    """The commit measured (``+dirty`` with uncommitted changes), or ``unknown``."""
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")
