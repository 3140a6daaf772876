"""``contivctl stn``: steal the node's NIC for the data plane, confirm, give it
back, watch over it (docs/stn.md). Each command is one call of the STN API
(:mod:`stn.api`)."""
from __future__ import annotations

import typer

from contivctl.context import OUTPUT, check_output, ctx, new_app
from contivctl.output import message, render

app = new_app(no_args_is_help=True,
              help="Steal the node's NIC for the data plane, keeping the node's address; give it back.")

DIR = typer.Option("", "--dir", help="STN's directory (default $CONTIV_STN_DIR or /var/lib/contiv/stn).")
VPP_SOCKET = typer.Option("", "--vpp-api-socket",
                          help="VPP's API socket, watched on the VPP data plane (default /run/vpp/api.sock).")
COLUMNS = [("INTERFACE", "iface"), ("DATAPLANE", "dataplane"), ("PHASE", "phase"), ("SINCE", "since"),
           ("HOLDER", "holder"), ("ADDRESSES", "addresses")]
WIDE = [("GATEWAY", "gateway"), ("CHECK", "check"), ("DEADLINE", "deadline"), ("NOTE", "error")]


def _stn(dir: str, vpp_socket: str = ""):  # noqa: A002
    from stn.api import open_stn  # noqa: PLC0415
    return open_stn(dir, ctx.socket, vpp_socket, log=message)


def _rows(entries) -> list[dict]:
    import time  # noqa: PLC0415

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
    return [{**e.state.to_dict(), "since": when(e.state.since),
             "deadline": when(e.state.deadline) if e.state.phase == "pending" else "",
             "addresses": ",".join(e.addresses), "gateway": e.gateway} for e in entries]


def _show(entries, fmt: str, data) -> None:
    render(data, fmt, rows=_rows(entries), columns=COLUMNS, wide=WIDE)


@app.command("steal")
def steal(iface: str = typer.Argument(..., help="The NIC that carries the node's address, e.g. eth0."),
          dataplane: str = typer.Option("linux", "--dataplane", help="linux | vpp"),
          confirm_timeout: float = typer.Option(60.0, "--confirm-timeout",
                                                help="Seconds until an unconfirmed steal rolls back."),
          check: str = typer.Option("gateway", "--check",
                                    help="Confirms by itself when this answers: gateway (the default route's "
                                         "next hop), ADDRESS (ping), ADDRESS:PORT (TCP), or none."),
          dir: str = DIR, vpp_socket: str = VPP_SOCKET, output: str = OUTPUT) -> None:  # noqa: A002
    """Snapshot IFACE, hand it to the data plane with the node's address, then
    confirm (automatically when --check answers) or roll back at the deadline."""
    fmt = check_output(output)
    e = _stn(dir, vpp_socket).steal(iface, dataplane.lower(), confirm_timeout, check)
    if e.state.phase == "pending":
        message(f"pending: confirm within {confirm_timeout:g} s with 'contivctl stn confirm {iface}', "
                "or it is restored")
    _show([e], fmt, e.to_dict())


@app.command("confirm")
def confirm(iface: str = typer.Argument(None, help="The stolen NIC (default: the only one)."),
            dir: str = DIR, output: str = OUTPUT) -> None:  # noqa: A002
    """Keep a pending steal."""
    fmt = check_output(output)
    e = _stn(dir).confirm(iface)
    _show([e], fmt, e.to_dict())


@app.command("restore")
def restore(iface: str = typer.Argument(None, help="The stolen NIC (default: the only one)."),
            dir: str = DIR, vpp_socket: str = VPP_SOCKET, output: str = OUTPUT) -> None:  # noqa: A002
    """Give the NIC back to the node exactly as its snapshot has it."""
    fmt = check_output(output)
    snap = _stn(dir, vpp_socket).restore(iface)
    render({"restored": snap.iface, "addresses": snap.ipv4(), "gateway": snap.gateway()}, fmt,
           pairs=[("restored", snap.iface), ("addresses", ", ".join(snap.ipv4())),
                  ("gateway", snap.gateway() or "-")])


@app.command("status")
def status(dir: str = DIR, output: str = OUTPUT) -> None:  # noqa: A002
    """What is stolen, by which data plane, since when, confirmed or pending."""
    fmt = check_output(output)
    st = _stn(dir).status()
    _show(st.entries, fmt, st.to_dict())
    for err in st.errors:
        message(f"error: {err}")
    if st.errors:
        raise typer.Exit(1)


@app.command("watch")
def watch(interval: float = typer.Option(1.0, "--interval", min=0.1, max=60.0,
                                         help="Seconds between two looks."),
          once: bool = typer.Option(False, "--once", help="Look once and exit."),
          dir: str = DIR, vpp_socket: str = VPP_SOCKET) -> None:  # noqa: A002
    """The watchdog: restores the node's configuration when the data plane
    holding its NIC dies, steals again when it is back, rolls back expired
    and interrupted steals."""
    s = _stn(dir, vpp_socket)
    if once:
        s.watch_once()
        return
    try:
        s.watch(interval)
    except KeyboardInterrupt:
        pass
