"""What every benchmark in bench/ does the same way: run as root, turn Ctrl-C
and SIGTERM into one clean-up path, keep a second Ctrl-C from cutting the
clean-up short, show progress through long phases, and write the figures as
JSON."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def require_root(name: str, why: str = "network namespaces, netlink, nftables") -> bool:
    if os.geteuid() != 0:
        print(f"{name}: needs root ({why})", file=sys.stderr)
        return False
    return True


def require_vpp(name: str, what: str = "--dataplane vpp") -> bool:
    """VPP can be run here (agent.vpp.process.availability); else say why.
    ``what``: what needs it, in the message (empty: nothing named)."""
    from agent.vpp.process import availability  # noqa: PLC0415 -- only VPP runs ask
    ok, why = availability()
    if not ok:
        print(f"{name}: {what + ': ' if what else ''}{why}", file=sys.stderr)
    return ok


def say(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as field -> value (stripped, e.g. ``"12345 kB"``); {} if gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def kib(v: str) -> int:
    """A ``/proc/<pid>/status`` size (``"12345 kB"``) in KiB; 0 if empty."""
    return int(v.split()[0]) if v else 0


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB; 0 if gone."""
    return kib(proc_status(pid).get("VmRSS", ""))


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


@contextmanager
def progress(what: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Progress through a long phase that prints nothing by itself; yields
    ``advance(n=1)``. On a terminal (stderr): a ``rich`` bar (a spinner with the
    elapsed time when ``total`` is None), gone once the phase ends. Otherwise
    (a log file, CI): plain lines -- one at the start, one per tenth of
    ``total`` done. Both end with one line giving the phase's wall time.

    With a ``total`` the bar is redrawn only when ``advance`` is called (no
    drawing thread competes with what a step measures); without one, a
    thread redraws the elapsed time once a second."""
    t0 = time.monotonic()
    if sys.stderr.isatty():
        from rich.console import Console  # noqa: PLC0415 -- only benches that show progress pay for it
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,  # noqa: PLC0415
                                   TextColumn, TimeElapsedColumn)
        cols = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            cols += [BarColumn(), MofNCompleteColumn()]
        with Progress(*cols, TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                      auto_refresh=total is None, refresh_per_second=1) as bar:
            task = bar.add_task(what, total=total)

            def advance(n: int = 1) -> None:
                bar.advance(task, n)
                bar.refresh()
            bar.refresh()
            yield advance
    else:
        print(f"  {what}" + (f": 0/{total}" if total is not None else " ..."), file=sys.stderr, flush=True)
        state = {"done": 0, "tenth": 0}

        def advance(n: int = 1) -> None:
            state["done"] += n
            if total:
                tenth = min(10, state["done"] * 10 // total)
                if tenth > state["tenth"]:
                    state["tenth"] = tenth
                    print(f"  {what}: {state['done']}/{total}, {time.monotonic() - t0:.0f}s",
                          file=sys.stderr, flush=True)
        yield advance
    print(f"  {what}: done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)


def stop_workers(procs: list[subprocess.Popen]) -> None:
    """Stop worker processes (traffic servers) and reap them: SIGTERM, then
    SIGKILL after 5 s (lab.cluster.stop_processes); none is left a zombie."""
    from lab.cluster import stop_processes  # noqa: PLC0415 -- bench/ runs with the repo on sys.path
    stop_processes([p.pid for p in procs], timeout=5)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def machine(repo: Path) -> dict:
    """What a bench's figures were measured on: CPUs, kernel, Python, commit, load."""
    import os  # noqa: PLC0415
    import platform  # noqa: PLC0415
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "commit": git_revision(repo), "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}
