"""The one output sink: ``table | wide | json | yaml``.

Data goes to stdout, messages to stderr. Colour only on a TTY and never with
``NO_COLOR`` set.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

FORMATS = ("table", "wide", "json", "yaml")


def color_enabled(stream=sys.stderr) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ",".join(_cell(x) for x in v) or "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def render(data: Any, fmt: str, *, rows: Iterable[dict] | None = None,
           columns: Sequence[tuple[str, str]] = (), wide: Sequence[tuple[str, str]] = (),
           stream=None) -> None:
    """Print ``data`` as JSON/YAML, or ``rows`` as a table of ``columns``
    (``wide`` adds ``wide`` columns). Each column is (header, dict key)."""
    out = stream or sys.stdout
    if fmt == "json":
        json.dump(data, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
        return
    if fmt == "yaml":
        import yaml  # noqa: PLC0415 -- only for -o yaml
        yaml.safe_dump(json.loads(json.dumps(data, default=str)), out, sort_keys=False)
        return
    cols = list(columns) + (list(wide) if fmt == "wide" else [])
    table = [[_cell(r.get(k)) for _, k in cols] for r in (rows if rows is not None else [])]
    headers = [h for h, _ in cols]
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()
    out.write(line + "\n")
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def kv(pairs: Sequence[tuple[str, Any]], stream=None) -> None:
    """A 'key: value' block (for single objects in table mode)."""
    out = stream or sys.stdout
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        out.write(f"{k + ':':<{width + 1}} {_cell(v)}\n")


def message(text: str) -> None:
    """A human message: stderr, never mixed with data."""
    sys.stderr.write(text + "\n")
