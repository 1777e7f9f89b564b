"""What the admin subcommands share: the store URL, exit codes, and printing tables, JSON and a progress bar.

Every admin command opens the store named by ``--store`` (default ``$ASGI_SESSION_STORE_URL``, else
``sqlite:///asgi_session.db``, as ``SessionManager()`` resolves it), does one job, closes the store and returns an
exit status: :data:`OK` done, :data:`NOTHING_MATCHED`, :data:`USAGE` (bad arguments or set-up), :data:`UNREACHABLE`
(the store failed). Messages never carry the URL's password.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import anyio

from ._core import DEFAULT_STORE_URL
from .exceptions import ConfigurationError, SessionError, StoreError
from .stores.base import SessionStore

__all__ = [
    "NOTHING_MATCHED",
    "OK",
    "UNREACHABLE",
    "USAGE",
    "Progress",
    "add_common_options",
    "fail",
    "print_json",
    "print_table",
    "printable",
    "redact_url",
    "run_with_store",
    "timestamp",
]

OK, NOTHING_MATCHED, USAGE, UNREACHABLE = 0, 1, 2, 3

_EXIT_CODES = "exit status: 0 done, 1 nothing matched, 2 usage error, 3 store unreachable"


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--store`` and ``--json`` to one admin subcommand."""
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="session store URL, e.g. sqlite:///sessions.db, redis://127.0.0.1:6379/0 or postgresql://... "
        f"(default: $ASGI_SESSION_STORE_URL, else {DEFAULT_STORE_URL})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of text")


def epilog(*examples: str) -> str:
    """The ``--help`` epilogue of a subcommand: its examples and the exit statuses."""
    lines = "\n".join(f"  {example}" for example in examples)
    return f"example:\n{lines}\n\n{_EXIT_CODES}"


def store_url(args: argparse.Namespace) -> str:
    """The URL of the store a command works on: ``--store``, else the environment, else the default file."""
    given: str | None = args.store
    return given or os.environ.get("ASGI_SESSION_STORE_URL") or DEFAULT_STORE_URL


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``redis://:***@host:6379/0``)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.partition("://")[0] + "://..."
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _scrub(message: str, url: str) -> str:
    """Remove the URL's password from a message, in case a driver quoted it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        message = message.replace(str(secret), "***")
    return message


def fail(
    status: int, message: str, args: argparse.Namespace | None = None, document: dict[str, Any] | None = None
) -> int:
    """Print ``message`` on stderr after the program name and return ``status``.

    With ``--json`` (``args.json``) also print the one JSON document on stdout: ``document`` (what the command
    found, if anything) with ``"error"`` (the message) and ``"exit_code"`` (``status``), so a script reading
    stdout always gets a document.
    """
    print(f"asgi-session: {message}", file=sys.stderr)
    if args is not None and getattr(args, "json", False):
        print_json({**(document or {}), "error": message, "exit_code": status})
    return status


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite URL's database file when it does not exist (an admin command never creates one)."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "sqlite":
        return None
    location = rest.partition("?")[0]
    if location in (":memory:", "/:memory:") or not location.startswith("/"):
        return None
    path = unquote(location[1:])
    return None if Path(path).exists() else path


def run_with_store(args: argparse.Namespace, job: Callable[[SessionStore], Awaitable[int]]) -> int:
    """Open the command's store, run ``job`` on it, close it; map failures to exit statuses.

    Returns:
        ``job``'s status; :data:`USAGE` for a malformed URL or set-up error; :data:`UNREACHABLE` when the store
        cannot be opened or fails (the message is the store's own, without the URL's password).
    """
    from .stores.url import store_from_url

    url = store_url(args)
    missing = _missing_sqlite_file(url)
    if missing is not None:
        return fail(UNREACHABLE, f"store unreachable: no SQLite database at {missing!r} (check --store)", args)
    try:
        store = store_from_url(url)
    except ConfigurationError as exc:
        return fail(USAGE, _scrub(str(exc), url), args)

    async def main() -> int:
        async with store:
            return await job(store)

    try:
        return anyio.run(main)
    except StoreError as exc:
        return fail(UNREACHABLE, f"store unreachable ({redact_url(url)}): {_scrub(str(exc), url)}", args)
    except ConfigurationError as exc:
        return fail(USAGE, _scrub(str(exc), url), args)
    except SessionError as exc:  # pragma: no cover - no admin job raises another kind
        return fail(USAGE, _scrub(str(exc), url), args)


def timestamp(seconds: float | None) -> str | None:
    """A store time as ISO 8601 UTC with a ``Z`` (to the second), or ``None``."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def print_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    print(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))


def printable(text: str) -> str:
    """``text`` with every control or other non-printable character replaced by ``?``.

    Every stored string printed as text goes through here: a user agent or a session-data value written by a
    client must not move the cursor, recolour the terminal or set its title. (``--json`` escapes them instead.)
    """
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _cell(value: object, width: int | None) -> str:
    text = printable("-" if value is None or value == "" else str(value))
    if width is not None and len(text) > width:
        text = text[: width - 3] + "..."
    return text


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], widths: Sequence[int | None] = ()) -> None:
    """Print rows as aligned columns under upper-case headers; ``widths`` caps columns (``None``: no cap)."""
    caps = list(widths) + [None] * (len(headers) - len(widths))
    cells = [[_cell(value, caps[i]) for i, value in enumerate(row)] for row in rows]
    sizes = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    for row in [[h.upper() for h in headers], *cells]:
        print("  ".join(value.ljust(size) for value, size in zip(row, sizes, strict=True)).rstrip())


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal (never into a pipe or a log).

    Drawn by `rich <https://rich.readthedocs.io>`_ when it is installed (``pip install 'asgi-session[cli]'``),
    else by a small bar of our own: the command needs no dependency for one bar.

    Args:
        total: how many steps make 100 %.
        label: what is being done, shown before the bar.
        stream: where to draw (default ``sys.stderr``).
    """

    _WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label, self.done = max(total, 1), label, 0
        self._stream = stream or sys.stderr
        self.enabled = self._stream.isatty()
        self._rich: _RichBar | None = None
        self._rich_tried = False

    def step(self, note: str) -> None:
        """Count one step done and redraw with ``note`` (e.g. what the step found)."""
        self.done = min(self.done + 1, self.total)
        if not self.enabled:
            return
        if not self._rich_tried:
            self._rich_tried = True
            self._rich = _RichBar.start(self._stream, self.label, self.total)
        if self._rich is not None:
            self._rich.update(self.done, note)
            return
        filled = self._WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (self._WIDTH - filled)
        percent = 100 * self.done // self.total
        self._stream.write(f"\r{self.label} [{bar}] {percent:3d}% {note}\x1b[K")
        self._stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if not self.enabled or not self._rich_tried:
            return
        if self._rich is not None:
            self._rich.stop()
            return
        self._stream.write("\n")
        self._stream.flush()


class _RichBar:
    """The bar drawn by rich: refreshed on each step only (no refresh thread)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    @classmethod
    def start(cls, stream: TextIO, label: str, total: int) -> _RichBar | None:
        """Start a bar on ``stream``; ``None`` when rich is not installed."""
        try:
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn
            from rich.progress import Progress as RichProgress
        except ImportError:
            return None
        progress = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(file=stream),
            auto_refresh=False,
        )
        task = progress.add_task(label, total=total, note="")
        progress.start()
        return cls(progress, task)

    def update(self, done: int, note: str) -> None:
        self._progress.update(self._task, completed=done, note=note)
        self._progress.refresh()

    def stop(self) -> None:
        self._progress.stop()
