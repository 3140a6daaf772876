"""Child processes the agent and its tests own (an embedded etcd, a private VPP)."""
from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; reaped either way.
    Returns the exit status (a process already gone is just reaped)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
