"""The ``asgi-session`` command line (``python -m asgi_session``): ``demo``, ``sessions ...`` and ``keys ...``.

A subcommand is a function ``(args) -> exit status`` registered in :func:`build_parser` with
``set_defaults(handler=...)``; :func:`main` parses and dispatches. Optional dependencies (uvicorn for the demo) are
imported inside the subcommand that needs them, so ``--help`` always works. The admin commands live in
``_cli_sessions`` and ``_cli_keys`` (shared parts in ``_cli_common``).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Callable

from . import __version__
from ._cli_keys import add_keys_commands
from ._cli_sessions import add_sessions_commands
from .exceptions import ConfigurationError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - recognised, not bound


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {port}")
    return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in _ANY_ADDRESS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _store_label(url: str) -> str:
    """The store URL as shown to the user: a SQLite or memory URL whole, any other only by scheme (no password)."""
    scheme = url.partition("://")[0].lower()
    return url if scheme in ("sqlite", "memory") else f"{scheme}://..."


def _demo(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("asgi-session demo needs uvicorn: pip install 'asgi-session[demo]'", file=sys.stderr)
        return 2
    from .demo import create_app, demo_manager, demo_store_url

    try:
        manager = demo_manager(args.store)
    except ConfigurationError as exc:
        print(f"asgi-session demo: {exc}", file=sys.stderr)
        return 2
    app = create_app(manager)
    url = f"http://{_url_host(args.host)}:{args.port}/"
    print(f"asgi-session demo: open {url} (store: {_store_label(demo_store_url(args.store))}); Ctrl+C stops it")
    if not _is_loopback(args.host):
        print(
            "warning: the demo sets its cookies without Secure and trusts any user name; "
            "serve it on 127.0.0.1 only, never on a public interface",
            file=sys.stderr,
        )
    sys.stdout.flush()
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand.

    Returns:
        The parser; each subcommand stores its handler as ``handler`` in the parsed namespace.
    """
    parser = argparse.ArgumentParser(
        prog="asgi-session",
        description="Revocable server-side sessions for any ASGI app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the demo app in a local web server",
        description=(
            "Serve the demo app with uvicorn: sign in, refresh, sign out, and sign out everywhere in a browser. "
            "Needs the demo extra: pip install 'asgi-session[demo]'."
        ),
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    demo.add_argument("--port", type=_port, default=8000, help="port to listen on (default: %(default)s)")
    demo.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="session store URL, e.g. sqlite:///demo.db or memory:// "
        "(default: $ASGI_SESSION_STORE_URL, else sqlite:///asgi_session_demo.db in the current directory)",
    )
    demo.set_defaults(handler=_demo)
    add_sessions_commands(commands)
    add_keys_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``asgi-session`` command.

    Args:
        argv: the arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 when an admin command matched nothing, 2 on a usage or set-up error
        (argparse itself exits with 2 on bad arguments and with 0 after ``--help``), 3 when the store is
        unreachable.
    """
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)
