"""``contivctl vpp``: VPP's own view of a node -- its debug CLI and its API
dumps -- through the node's agent (the one internal API layer)."""
from __future__ import annotations

import typer

from contivctl.context import LAB, NODE, OUTPUT, check_output, ctx, new_app
from contivctl.output import render, text

app = new_app(no_args_is_help=True, help="VPP's own view of a node: its CLI and its dumps.")

#: what each dump (agent.api.contract.DUMPS) shows in table mode: (header, key)
#: columns, then wide ones
COLUMNS = {
    "interfaces": ([("IDX", "sw_if_index"), ("NAME", "name"), ("TAG", "tag"), ("UP", "admin_up")],
                   [("LINK", "link_up"), ("MAC", "mac"), ("MTU", "mtu")]),
    "routes": ([("PREFIX", "prefix"), ("VIA", "via"), ("INTERFACE", "interface")],
               [("TYPE", "type"), ("SOURCE", "source")]),
    "nat": ([("VIP", "vip"), ("PROTO", "protocol"), ("ENDPOINTS", "paths")], [("ID", "id")]),
    "acl": ([("IDX", "acl_index"), ("TAG", "tag"), ("RULES", "nrules"), ("ON", "on")], []),
    "vxlan": ([("INTERFACE", "interface"), ("SRC", "src"), ("DST", "dst"), ("VNI", "vni")],
              [("INSTANCE", "instance"), ("PORT", "port")]),
    "sessions": ([("PROTO", "protocol"), ("SRC", "src"), ("SPORT", "sport"), ("DST", "dst"),
                  ("DPORT", "dport"), ("REPLY-SRC", "reply_src"), ("REPLY-SPORT", "reply_sport")], []),
}


@app.command("cli")
def cli(command: list[str] = typer.Argument(..., help="A VPP CLI command, e.g. show interface."),
        lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """Run a command of VPP's debug CLI on the node and print its output."""
    fmt = check_output(output)
    res = ctx.target(lab, node).dataplane_cli(" ".join(command))
    if fmt in ("json", "yaml"):
        return render(res.to_dict(), fmt)
    text(res.output)


@app.command("dump")
def dump(what: str = typer.Argument(..., help="interfaces | routes | nat | acl | vxlan | sessions"),
         lab: str = LAB, node: str = NODE, output: str = OUTPUT) -> None:
    """VPP's objects of one kind as its API dumps them (tags say which are ours)."""
    from agent.api.contract import DUMPS  # noqa: PLC0415
    from agent.errors import InvalidInput  # noqa: PLC0415
    fmt = check_output(output)
    if what not in DUMPS:
        raise InvalidInput(f"unknown dump {what!r}; use one of {', '.join(DUMPS)}")
    data = ctx.target(lab, node).dataplane_dump(what).to_dict()
    rows = data["items"]
    if what == "routes":  # one row per path
        rows = [{**r, **p} for r in rows for p in (r["paths"] or [{}])]
    elif what == "acl":
        rows = [{**r, "nrules": len(r["rules"])} for r in rows]
    columns, wide = COLUMNS[what]
    render(data, fmt, rows=rows, columns=columns, wide=wide)
