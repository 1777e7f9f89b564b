"""``asgi-session keys ...``: list the signing keys in a store (never their material) and rotate them now.

``keys list`` reads the stored records only. ``keys rotate`` builds the same key ring the servers use and publishes
a new signing key through :meth:`KeyRing.rotate_now <asgi_session.keys.KeyRing.rotate_now>`: the algorithm is the
one the newest stored signing key uses (``--algorithm`` to choose), and when the stored keys are encrypted the new
one is too, under ``$ASGI_SESSION_KEY_ENCRYPTION_SECRET``. A store without a live signing key is refused unless
``--algorithm`` names one: its servers sign with HS256 (the key is their ``signing_secret``, never stored), or none
has opened it yet, and a key published there would sign nothing.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, cast

from ._cli_common import OK, USAGE, add_common_options, epilog, fail, print_json, print_table, run_with_store, timestamp
from ._clock import SystemClock
from ._key_seal import is_sealed
from .config import SessionConfig, SigningAlgorithm
from .keys import REFRESH_MAC_KID, KeyRing
from .stores.base import KeyRecord, SessionStore

__all__ = ["add_keys_commands"]

_SIGNING = ("ES256", "RS256", "EdDSA")
_SECRET_VARIABLE = "ASGI_SESSION_KEY_ENCRYPTION_SECRET"
_HS256_HAS_NO_KEY = (
    "HS256 signs with the servers' signing_secret: there is no key in the store to rotate; change signing_secret "
    "on every server instead (tokens signed with the old secret stop verifying)"
)
_HEADERS = ("kid", "algorithm", "state", "created", "signs from", "signs until", "verifies until", "encrypted")


def _describe(records: list[KeyRecord], now: float) -> list[dict[str, Any]]:
    """One entry per key: times and state, never the key material."""
    described = []
    for record in records:  # ordered by signs_from then kid
        if record.kid == REFRESH_MAC_KID:
            state, signs_until = "refresh-token MAC", None
        else:
            later = [r for r in records if r.algorithm == record.algorithm and r.signs_from > record.signs_from]
            signs_until = later[0].signs_from if later else None
            if record.signs_from > now:
                state = "published"
            elif signs_until is None or signs_until > now:
                state = "signing"
            else:
                state = "verifying"
        described.append(
            {
                "kid": record.kid,
                "algorithm": record.algorithm,
                "state": state,
                "created": timestamp(record.created_at),
                "signs_from": None if record.kid == REFRESH_MAC_KID else timestamp(record.signs_from),
                "signs_until": timestamp(signs_until),
                "verifies_until": timestamp(record.expires_at),
                "encrypted": is_sealed(record.private_key),
            }
        )
    return described


def _list(args: argparse.Namespace) -> int:
    async def job(store: SessionStore) -> int:
        keys = _describe(await store.get_keys(), SystemClock().now())
        if args.json:
            print_json({"keys": keys})
        elif keys:
            rows = [[key[name.replace(" ", "_")] for name in _HEADERS] for key in keys]
            for row in rows:
                row[-1] = "yes" if row[-1] else "no"
            print_table(_HEADERS, rows)
        else:
            print("no keys in this store (a server creates them when it first starts)")
        return OK

    return run_with_store(args, job)


def _rotate(args: argparse.Namespace) -> int:
    if args.algorithm == "HS256":
        return fail(USAGE, _HS256_HAS_NO_KEY, args)

    async def job(store: SessionStore) -> int:
        records = await store.get_keys()
        now = SystemClock().now()
        signing = [r for r in records if r.algorithm in _SIGNING and (r.expires_at is None or r.expires_at > now)]
        if args.algorithm is None and not signing:
            # Servers keep a live signing key in the store unless they sign with HS256: publishing one now would
            # be used by nobody (or would silently choose the algorithm of a store no server has opened yet).
            message = (
                "this store holds no signing key to rotate: its servers sign with HS256 (there is no key in the "
                "store: change signing_secret instead), or no server has opened it yet; pass --algorithm "
                f"{', '.join(_SIGNING)} to publish a key anyway"
            )
            return fail(USAGE, message, args)
        algorithm = cast(SigningAlgorithm, args.algorithm or signing[-1].algorithm)
        secret = os.environ.get(_SECRET_VARIABLE) or None
        if secret is None and any(is_sealed(r.private_key) for r in records):
            message = f"the stored keys are encrypted: set {_SECRET_VARIABLE} to the key_encryption_secret"
            return fail(USAGE, message, args)
        config = SessionConfig(signing_algorithm=algorithm, key_encryption_secret=secret)
        record = await KeyRing(store, config, SystemClock()).rotate_now()
        published = _describe([*records, record], SystemClock().now())[-1]
        if args.json:
            print_json({"published": published})
        else:
            print(
                f"published signing key {record.kid} ({record.algorithm}); it signs from {published['signs_from']}, "
                "older keys keep verifying until they expire"
            )
        return OK

    return run_with_store(args, job)


def add_keys_commands(commands: Any) -> None:
    """Register ``keys`` and its subcommands on the top-level subparsers object."""
    group = commands.add_parser(
        "keys",
        help="list and rotate the signing keys in a store",
        description="Look at and rotate the signing keys that every server sharing the store uses.",
    )
    sub = group.add_subparsers(title="commands", dest="keys_command", metavar="COMMAND", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    listing = sub.add_parser(
        "list",
        help="every stored key: kid, algorithm, created, signs until, verifies until (never key material)",
        description="List the stored keys with their times and state; key material is never shown.",
        epilog=epilog("asgi-session keys list --store sqlite:///sessions.db"),
        formatter_class=formatter,
    )
    add_common_options(listing)
    listing.set_defaults(handler=_list)

    rotate = sub.add_parser(
        "rotate",
        help="publish a new signing key now; older keys keep verifying",
        description=(
            "Publish a new signing key now. It signs from key_publish_ahead (60 s) from now, once every server "
            "has read it; older keys keep verifying the tokens they signed until they expire. Encrypted key "
            f"rings need ${_SECRET_VARIABLE}. HS256 has no stored key to rotate: change signing_secret instead."
        ),
        epilog=epilog("asgi-session keys rotate --store redis://127.0.0.1:6379/0"),
        formatter_class=formatter,
    )
    rotate.add_argument(
        "--algorithm",
        choices=(*_SIGNING, "HS256"),
        default=None,
        help="the new key's algorithm (default: the algorithm of the newest stored signing key; a store without "
        "one, as under HS256, is refused unless this names one). HS256 is refused: it has no stored key",
    )
    add_common_options(rotate)
    rotate.set_defaults(handler=_rotate)
