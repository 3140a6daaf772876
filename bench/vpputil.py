"""What the benches in bench/ need of a VPP: its process (pid, CPU, memory),
a read-mostly API connection to a lab node's VPP, and the one state reset the
policy bench needs. Used only with ``--dataplane vpp``; nothing here is
imported by a Linux run (vpp_papi stays unloaded there)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from common import cpu_seconds, kib, proc_status
from agent.vpp.values import NONE  # ~0, "no such index" in VPP's API


def resolve_vpp_pid(pid: int) -> int:
    """The VPP process behind ``pid``. Labs and VppProcess start VPP through
    ``ip netns exec``, which execs in place, so this is normally ``pid``
    itself; should it ever fork, the child running ``vpp`` is taken."""
    def is_vpp(p: int) -> bool:
        try:
            return os.path.basename(os.readlink(f"/proc/{p}/exe")) == "vpp"
        except OSError:
            return False
    if not pid or is_vpp(pid):
        return pid
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                if is_vpp(int(child)):
                    return int(child)
    except OSError:
        pass
    return pid


def lab_vpp_pid(lab, node: str) -> int:
    """The pid of a lab node's VPP (0: the node has none)."""
    return resolve_vpp_pid(lab.state().node(node).vpp_pid)


def lab_vpp_api(lab, node: str):
    """A connected :class:`agent.vpp.papi.VppApi` to a lab node's VPP (a second
    client next to the agent's: dumps and the bench's own few changes)."""
    from agent.vpp.papi import VppApi  # noqa: PLC0415 -- vpp_papi only on VPP runs
    return VppApi(str(lab.paths.vpp_dir(node) / "api.sock"), timeout=30.0,
                  client_name="bench").connect()


def proc_figures(pid: int) -> dict:
    """VmRSS / VmHWM (KiB), threads and the CPUs it may run on (one read of
    /proc/<pid>/status; only ``pid`` and ``vmrss_kib`` -- 0 -- if it is gone)."""
    st = proc_status(pid)
    out = {"pid": pid, "vmrss_kib": kib(st.get("VmRSS", ""))}
    if "VmHWM" in st:
        out["vmhwm_kib"] = kib(st["VmHWM"])
    if "Threads" in st:
        out["threads"] = int(st["Threads"])
    if "Cpus_allowed_list" in st:
        out["cpus_allowed"] = st["Cpus_allowed_list"]
    return out


def idle_window(pids: dict[str, int], seconds: float) -> dict[str, dict]:
    """CPU (utime + stime, whole thread group, from /proc/<pid>/stat) of each
    process over one shared window of ``seconds``, in % of one core, and its
    memory at the end. ``pids``: label -> pid."""
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    out = {}
    for k, p in pids.items():
        cpu = cpu_seconds(p) - c0[k]
        out[k] = {**proc_figures(p), "idle_seconds": round(wall, 3), "cpu_seconds": round(cpu, 4),
                  "cpu_percent_of_one_core": round(100.0 * cpu / wall, 3),
                  "clk_tck": os.sysconf("SC_CLK_TCK")}
    return out


def clear_policy_acls(api) -> dict:
    """Remove what the agent's policies put into a VPP -- the ACL lists of its
    interfaces and the ACLs tagged ``contiv:pol...`` -- as
    ``nft delete table ip contiv`` does on a Linux node (pods stay): a cold
    start of the agent must then program every policy again."""
    cleared = deleted = 0
    for d in api.dump("acl_interface_list_dump", sw_if_index=NONE):
        if d.count:
            api.call("acl_interface_set_acl_list",
                     **api.fill("acl_interface_set_acl_list", sw_if_index=d.sw_if_index,
                                n_input=0, acls=[]))
            cleared += 1
    for d in api.dump("acl_dump", acl_index=NONE):
        if (d.tag or "").startswith("contiv:pol"):
            api.call("acl_del", acl_index=d.acl_index)
            deleted += 1
    return {"lists_cleared": cleared, "acls_deleted": deleted}
