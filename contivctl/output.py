"""The one output sink: every byte ``contivctl`` prints goes through here.

* Data goes to **stdout**: :func:`render` (``table | wide | json | yaml``),
  :func:`kv` (a ``key: value`` block), :func:`line` (one line of text),
  :func:`text` (a block as it is), :func:`tree` (an indented tree, e.g. the
  policies of a pod).
* Messages go to **stderr**: :func:`message`, :func:`error`, and
  :func:`progress` (bars for long operations).

Plain text is the contract: ``table``/``wide`` are aligned by ``tabulate``
(left-aligned, no number parsing, two spaces between columns, no trailing
spaces), and that is what scripts and tests read. ``rich`` renders only what a
terminal adds on top: colour, the tree guides of :func:`tree`, progress bars.
Colour appears only when the stream is a terminal and ``NO_COLOR`` is not set
(to any value, even empty); progress bars likewise, on stderr. Otherwise every
function writes exactly the plain text, without importing ``rich`` at all.

Nothing heavy is imported at module level (``json``, ``yaml``, ``tabulate``,
``rich.*`` are imported where they are used): ``contivctl --help`` imports
this module.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

FORMATS = ("table", "wide", "json", "yaml")

#: A piece of a line: plain text, or (text, rich style) coloured on a terminal.
Part = Union[str, tuple[str, str]]


# ------------------------------------------------------------------ terminals
def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default stdout) is a terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def color_enabled(stream=None) -> bool:
    """Colour on ``stream`` (default stderr): only a terminal, never with NO_COLOR."""
    stream = sys.stderr if stream is None else stream
    return is_terminal(stream) and "NO_COLOR" not in os.environ


def unicode_ok(stream=None) -> bool:
    """Whether ``stream`` (default stdout) encodes text as UTF-8 (✓ and ✗)."""
    enc = getattr(sys.stdout if stream is None else stream, "encoding", None) or ""
    return "utf" in enc.lower()


def _console(stream, *, color: bool):
    """A rich Console writing to ``stream`` as a terminal. No markup, emoji
    codes or highlighting: the text we print is data, printed as it is."""
    from rich.console import Console  # noqa: PLC0415 -- terminals only
    return Console(file=stream, force_terminal=True, no_color=not color, highlight=False,
                   markup=False, emoji=False)


def _text(parts: Sequence[Part], color: bool = True):
    """rich Text of ``parts``; without ``color`` no style at all (not even
    bold or dim: NO_COLOR means plain text)."""
    from rich.text import Text  # noqa: PLC0415 -- terminals only
    t = Text()
    for p in parts:
        if isinstance(p, tuple):
            t.append(p[0], style=(p[1] or None) if color else None)
        else:
            t.append(p)
    return t


def _plain(parts: Sequence[Part]) -> str:
    return "".join(p[0] if isinstance(p, tuple) else p for p in parts)


# ------------------------------------------------------------------ data (stdout)
def cell(v: Any) -> str:
    """One table cell: ``-`` for an absent value, ``yes``/``no`` for booleans,
    lists joined with commas, floats with at most 3 decimals."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ",".join(cell(x) for x in v) or "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def render(data: Any, fmt: str, *, rows: Iterable[dict] | None = None,
           columns: Sequence[tuple[str, str]] = (), wide: Sequence[tuple[str, str]] = (),
           pairs: Sequence[tuple[str, Any]] | None = None, stream=None) -> None:
    """Print ``data`` as JSON/YAML; in ``table``/``wide`` mode, ``rows`` as a
    table of ``columns`` (``wide`` adds ``wide`` columns; each column is
    (header, dict key)), or ``pairs`` as a :func:`kv` block."""
    out = stream or sys.stdout
    if fmt == "json":
        import orjson  # noqa: PLC0415 -- 10,000 sessions: ~10x json's indented encoder
        out.write(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
                  .decode() + "\n")
        return
    if fmt == "yaml":
        import json  # noqa: PLC0415
        import yaml  # noqa: PLC0415 -- only for -o yaml
        yaml.safe_dump(json.loads(json.dumps(data, default=str)), out, sort_keys=False)
        return
    if pairs is not None:
        kv(pairs, stream=out)
        return
    cols = list(columns) + (list(wide) if fmt == "wide" else [])
    table([h for h, _ in cols], [[cell(r.get(k)) for _, k in cols] for r in rows or ()], stream=out)


def table(headers: Sequence[str], cells: Iterable[Sequence[str]], stream=None) -> None:
    """Aligned columns: left-aligned, two spaces apart, no trailing spaces.

    The headers go in as the first row (not as tabulate's ``headers``), so
    that a column is exactly as wide as its widest cell or header: tabulate
    pads headed columns by two more."""
    from tabulate import tabulate  # noqa: PLC0415
    out = stream or sys.stdout
    text = tabulate([list(headers)] + [list(r) for r in cells], tablefmt="plain",
                    disable_numparse=True, stralign="left", preserve_whitespace=True)
    out.write("".join(ln.rstrip() + "\n" for ln in text.split("\n")))


def kv(pairs: Sequence[tuple[str, Any]], stream=None) -> None:
    """A ``key: value`` block (for single objects in table mode)."""
    out = stream or sys.stdout
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        out.write(f"{k + ':':<{width + 1}} {cell(v)}\n")


def text(block: str, stream=None) -> None:
    """A block of text as it is (e.g. a completion script, a log)."""
    (stream or sys.stdout).write(block)


def line(*parts: Part, stream=None) -> None:
    """One line of data; (text, style) parts are coloured on a terminal."""
    out = stream or sys.stdout
    if any(isinstance(p, tuple) for p in parts) and color_enabled(out):
        _console(out, color=True).print(_text(parts), soft_wrap=True)
    else:
        out.write(_plain(parts) + "\n")


class Node:
    """A node of :func:`tree`: a label (parts, as for :func:`line`) and children."""

    __slots__ = ("label", "children")

    def __init__(self, *label: Part, children: Sequence["Node"] = ()) -> None:
        self.label = label
        self.children = list(children)

    def add(self, *label: Part) -> "Node":
        child = Node(*label)
        self.children.append(child)
        return child


def tree(roots: Sequence[Node], stream=None) -> None:
    """Print trees: with rich's guides when ``stream`` (stdout) is a terminal
    (coloured unless NO_COLOR), else indented by two spaces per level."""
    out = stream or sys.stdout
    if not is_terminal(out):
        def walk(n: Node, depth: int) -> None:
            out.write("  " * depth + _plain(n.label) + "\n")
            for c in n.children:
                walk(c, depth + 1)
        for r in roots:
            walk(r, 0)
        return
    from rich.tree import Tree  # noqa: PLC0415 -- terminals only

    color = color_enabled(out)

    def build(n: Node, t) -> None:
        for c in n.children:
            build(c, t.add(_text(c.label, color)))
    console = _console(out, color=color)
    for r in roots:
        t = Tree(_text(r.label, color))
        build(r, t)
        console.print(t)


@contextmanager
def live(stream=None) -> Iterator[Callable[[str], None]]:
    """A view redrawn in place (``--watch``): yields ``show(frame)``. On a
    terminal rich's Live redraws the frame cleanly and leaves the last one on
    the screen; otherwise every frame is printed after the one before,
    separated by an empty line (a log of the samples)."""
    out = stream or sys.stdout
    if not is_terminal(out):
        shown = []

        def append(frame: str) -> None:
            out.write(("\n" if shown else "") + frame)
            out.flush()
            shown.append(True)
        yield append
        return
    from rich.live import Live  # noqa: PLC0415 -- terminals only
    from rich.text import Text  # noqa: PLC0415
    with Live(console=_console(out, color=color_enabled(out)), auto_refresh=False) as view:
        yield lambda frame: view.update(Text(frame), refresh=True)


def table_text(headers: Sequence[str], cells: Iterable[Sequence[str]]) -> str:
    """:func:`table` as a string (a frame of :func:`live`)."""
    import io  # noqa: PLC0415
    buf = io.StringIO()
    table(headers, cells, stream=buf)
    return buf.getvalue()


# ------------------------------------------------------------------ messages (stderr)
def message(*parts: Part) -> None:
    """A human message on stderr, never mixed with data."""
    line(*parts, stream=sys.stderr)


def error(msg: str, hint: str | None = None) -> None:
    """``error: MSG`` (the prefix red on a terminal) and an optional ``hint:`` line."""
    message(("error:", "red"), " " + msg)
    if hint:
        message("hint: " + hint)


def traceback(e: BaseException) -> None:
    """The traceback of ``e`` on stderr (``--debug``)."""
    import traceback as tb  # noqa: PLC0415
    sys.stderr.write("".join(tb.format_exception(e)))


class Progress:
    """What :func:`progress` yields: pass :meth:`message` and :meth:`step` to
    the lab library as its ``progress`` and ``step`` callbacks.

    Plain (not a terminal, or NO_COLOR): messages are printed as one line
    each and steps are not shown: exactly the text of a non-interactive run."""

    def __init__(self, bars=None) -> None:
        self._bars = bars
        self._tasks: dict[str, Any] = {}

    def message(self, msg: str) -> None:
        if self._bars is None:
            message(msg)
        else:
            self._bars.console.print(msg, soft_wrap=True)

    def step(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` of ``what`` (e.g. "nodes ready", 2, 3)."""
        if self._bars is None:
            return
        task = self._tasks.get(what)
        if task is None:
            task = self._tasks[what] = self._bars.add_task(what, total=total)
        self._bars.update(task, completed=done, total=total)

    def prefixed(self, prefix: str) -> Callable[[str], None]:
        """A ``message`` callback that puts ``prefix`` before each message."""
        return lambda msg: self.message(prefix + msg)


@contextmanager
def progress() -> Iterator[Progress]:
    """Progress of a long operation on stderr: rich bars (removed when done)
    when stderr is a terminal and NO_COLOR is not set, else plain messages."""
    if not color_enabled(sys.stderr):
        yield Progress()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, SpinnerColumn,  # noqa: PLC0415
                               TextColumn, TimeElapsedColumn)
    from rich.progress import Progress as Bars  # noqa: PLC0415
    # stdout is never redirected: data must not end up on stderr
    bars = Bars(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn(), console=_console(sys.stderr, color=True),
                transient=True, redirect_stdout=False, redirect_stderr=True)
    with bars:
        yield Progress(bars)
