"""``asgi-session sessions ...``: list, show, revoke and clean up sessions in a store from a shell.

The commands work on the store directly (no key ring is loaded, so they need neither the signing keys nor their
encryption secret), with the same records the offline API reads: a session whose expiry has passed counts as gone,
as it does for ``get_session_information``. Revoking goes through the store's ``delete``, which logs the revocation,
so servers sharing the store refuse the session's tokens exactly as after ``revoke_session``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._cli_common import (
    NOTHING_MATCHED,
    OK,
    Progress,
    add_common_options,
    epilog,
    fail,
    print_json,
    print_table,
    printable,
    run_with_store,
    timestamp,
)
from ._clock import SystemClock
from ._validate import is_possible_id
from .stores.base import SessionRecord, SessionStore

__all__ = ["add_sessions_commands"]

_HEADERS = ("handle", "tenant", "created", "last seen", "expires", "user agent", "ip")
_WIDTHS = (None, 20, None, None, None, 40, None)
# cleanup deletes in windows, oldest first, so the bar moves with real work: expired over 30 days ago, ..., up to now
_CLEANUP_WINDOWS = (30 * 86400.0, 7 * 86400.0, 86400.0, 6 * 3600.0, 3600.0, 0.0)


def _summary(record: SessionRecord) -> dict[str, Any]:
    return {
        "handle": record.handle,
        "user_id": record.user_id,
        "tenant_id": record.tenant_id,
        "created": timestamp(record.created_at),
        "last_seen": timestamp(record.last_seen),
        "expires": timestamp(record.expires_at),
        "absolute_expiry": timestamp(record.absolute_expires_at),
        "user_agent": record.user_agent,
        "ip": record.ip,
        "remember": record.remember,
        "idle_timeout": record.idle_timeout,
    }


def _row(record: SessionRecord) -> list[object]:
    summary = _summary(record)
    return [summary[name] for name in ("handle", "tenant_id", "created", "last_seen", "expires", "user_agent", "ip")]


async def _live(store: SessionStore, handle: str) -> SessionRecord | None:
    if not is_possible_id(handle):
        return None
    record = await store.get(handle)
    return record if record is not None and record.expires_at > SystemClock().now() else None


def _list(args: argparse.Namespace) -> int:
    async def job(store: SessionStore) -> int:
        now = SystemClock().now()
        if not is_possible_id(args.user) or (args.tenant is not None and not is_possible_id(args.tenant)):
            records: list[SessionRecord] = []
        else:
            records = [r for r in await store.list_for_user(args.user, args.tenant) if r.expires_at > now]
        document = {"user_id": args.user, "tenant_id": args.tenant, "sessions": [_summary(r) for r in records]}
        where = "" if args.tenant is None else f" in tenant {args.tenant!r}"
        if args.json:
            if not records:
                return fail(NOTHING_MATCHED, f"no sessions for user {args.user!r}{where}", args, document)
            print_json(document)
        elif records:
            print_table(_HEADERS, [_row(r) for r in records], _WIDTHS)
        else:
            print(f"no sessions for user {args.user!r}{where}")
        return OK if records else NOTHING_MATCHED

    return run_with_store(args, job)


def _show(args: argparse.Namespace) -> int:
    async def job(store: SessionStore) -> int:
        record = await _live(store, args.handle)
        if record is None:
            message = f"no session with handle {args.handle!r} (revoked, expired or unknown)"
            return fail(NOTHING_MATCHED, message, args, {"session": None})
        details = {
            **_summary(record),
            "session_data": dict(record.session_data),
            "access_token_payload": dict(record.access_token_payload),
        }
        if args.json:
            print_json({"session": details})
        else:
            width = max(len(name) for name in details)
            for name, value in details.items():
                print(f"{name.replace('_', ' ').ljust(width)}  {printable('-' if value is None else str(value))}")
        return OK

    return run_with_store(args, job)


def _revoke(args: argparse.Namespace) -> int:
    async def job(store: SessionStore) -> int:
        wanted = list(dict.fromkeys(args.handles))
        revoked = await store.delete([handle for handle in wanted if is_possible_id(handle)])
        missing = [handle for handle in wanted if handle not in revoked]
        document = {"revoked": revoked, "not_found": missing}
        if not args.json:
            for handle in revoked:
                print(f"revoked {handle}")
        if missing:
            names = ", ".join(repr(handle) for handle in missing)
            return fail(
                NOTHING_MATCHED, f"no session with handle{'s' if len(missing) > 1 else ''} {names}", args, document
            )
        if args.json:
            print_json(document)
        return OK

    return run_with_store(args, job)


def _revoke_user(args: argparse.Namespace) -> int:
    async def job(store: SessionStore) -> int:
        valid = is_possible_id(args.user) and (args.tenant is None or is_possible_id(args.tenant))
        revoked = await store.delete_for_user(args.user, args.tenant) if valid else []
        document = {"user_id": args.user, "tenant_id": args.tenant, "revoked": revoked}
        if not revoked:
            where = "" if args.tenant is None else f" in tenant {args.tenant!r}"
            return fail(NOTHING_MATCHED, f"no sessions for user {args.user!r}{where}", args, document)
        if args.json:
            print_json(document)
        else:
            for handle in revoked:
                print(f"revoked {handle}")
        return OK

    return run_with_store(args, job)


def _cleanup(args: argparse.Namespace) -> int:
    async def job(store: SessionStore) -> int:
        now = SystemClock().now()
        progress = Progress(len(_CLEANUP_WINDOWS), "deleting expired sessions")
        progress.enabled = progress.enabled and not args.json
        deleted = 0
        try:
            for age in _CLEANUP_WINDOWS:
                deleted += await store.delete_expired(now - age)
                progress.step(f"{deleted} deleted")
        finally:  # also on a store failure or Ctrl+C: end the line, and give back the cursor rich hid
            progress.finish()
        if args.json:
            print_json({"deleted": deleted})
        else:
            print(f"deleted {deleted} expired session{'' if deleted == 1 else 's'}")
        return OK

    return run_with_store(args, job)


def add_sessions_commands(commands: Any) -> None:
    """Register ``sessions`` and its subcommands on the top-level subparsers object."""
    group = commands.add_parser(
        "sessions",
        help="list, show, revoke and clean up sessions in a store",
        description="Look at and revoke sessions in a session store, from a shell.",
    )
    sub = group.add_subparsers(title="commands", dest="sessions_command", metavar="COMMAND", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    listing = sub.add_parser(
        "list",
        help="a user's live sessions (handle, tenant, created, last seen, expires, user agent, IP)",
        description="List a user's live sessions, in every tenant unless --tenant names one.",
        epilog=epilog("asgi-session sessions list --user alice --store sqlite:///sessions.db"),
        formatter_class=formatter,
    )
    listing.add_argument("--user", required=True, help="the user id")
    listing.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    add_common_options(listing)
    listing.set_defaults(handler=_list)

    show = sub.add_parser(
        "show",
        help="one session's information",
        description="Show one live session, with its server-side data and custom access-token claims.",
        epilog=epilog("asgi-session sessions show 3f2c...e9 --json"),
        formatter_class=formatter,
    )
    show.add_argument("handle", help="the session handle")
    add_common_options(show)
    show.set_defaults(handler=_show)

    revoke = sub.add_parser(
        "revoke",
        help="revoke sessions by handle",
        description="Revoke sessions by handle and print each one revoked; an unknown handle gives exit status 1.",
        epilog=epilog("asgi-session sessions revoke 3f2c...e9 7a1b...04 --store redis://127.0.0.1:6379/0"),
        formatter_class=formatter,
    )
    revoke.add_argument("handles", nargs="+", metavar="HANDLE", help="a session handle")
    add_common_options(revoke)
    revoke.set_defaults(handler=_revoke)

    revoke_user = sub.add_parser(
        "revoke-user",
        help="revoke every session of a user",
        description="Revoke a user's sessions, in every tenant unless --tenant names one, and print each handle.",
        epilog=epilog("asgi-session sessions revoke-user alice --tenant public"),
        formatter_class=formatter,
    )
    revoke_user.add_argument("user", help="the user id")
    revoke_user.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    add_common_options(revoke_user)
    revoke_user.set_defaults(handler=_revoke_user)

    cleanup = sub.add_parser(
        "cleanup",
        help="delete expired sessions",
        description=(
            "Delete every expired session and print how many were deleted; a progress bar is drawn on stderr "
            "when it is a terminal."
        ),
        epilog=epilog("asgi-session sessions cleanup --store postgresql://app@127.0.0.1/app"),
        formatter_class=formatter,
    )
    add_common_options(cleanup)
    cleanup.set_defaults(handler=_cleanup)
