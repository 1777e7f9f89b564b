"""A backend job that manages sessions with no HTTP request at all (the "offline mode").

Run it with ``python examples/offline_revoke.py``. It uses the embedded SQLite default (a file
``offline_demo.db`` in a temporary folder unless ``ASGI_SESSION_STORE_URL`` is set): it signs a user in on a few
"devices" in two tenants, verifies and refreshes one of them, then revokes one session by handle, lists the user's
sessions, and revokes the rest one tenant at a time and across every tenant.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anyio

from asgi_session import SessionConfig, SessionManager, UnauthorisedError
from asgi_session.stores import store_from_url


def _store_url(folder: str) -> str:
    return os.environ.get("ASGI_SESSION_STORE_URL") or f"sqlite:///{Path(folder) / 'offline_demo.db'}"


async def main(store_url: str) -> dict[str, list[str]]:
    """Run the demo against ``store_url`` and return what each step revoked (for the tests)."""
    config = SessionConfig(access_token_blacklisting=True)  # revoked tokens are refused on their next use
    async with SessionManager(store=store_from_url(store_url), config=config) as manager:
        laptop = await manager.create_new_session_without_request_response("alice", user_agent="laptop")
        phone = await manager.create_new_session_without_request_response("alice", user_agent="phone")
        await manager.create_new_session_without_request_response("alice", "acme", user_agent="work laptop")
        await manager.create_new_session_without_request_response("alice", "acme", user_agent="work phone")
        print(f"alice has {len(await manager.get_all_session_handles_for_user('alice'))} sessions")

        tokens = phone.get_all_session_tokens_dangerously()
        verified = await manager.get_session_without_request_response(tokens["accessToken"])
        if verified is None:
            raise SystemExit("the phone's fresh access token did not verify")
        print(f"verified the phone's access token: user={verified.user_id} tenant={verified.tenant_id}")
        refreshed = await manager.refresh_session_without_request_response(tokens["refreshToken"])
        print(f"refreshed the phone's session {refreshed.handle}: new tokens issued")

        revoked_one = await manager.revoke_session(laptop.handle)
        print(f"revoked the laptop's session by handle: {revoked_one}")
        try:
            await manager.get_session_without_request_response(laptop.access_token)
        except UnauthorisedError:
            print("the laptop's access token is refused on its very next use")

        for info in await manager.get_sessions_for_user("alice"):
            print(
                f"  still signed in: tenant={info.tenant_id:<7} device={info.user_agent} handle={info.session_handle}"
            )

        in_acme = await manager.revoke_all_sessions_for_user("alice", tenant_id="acme")
        print(f"revoked alice's {len(in_acme)} sessions in tenant 'acme'")
        everywhere = await manager.revoke_all_sessions_for_user("alice")
        print(f"revoked alice's remaining {len(everywhere)} sessions across every tenant")
        print(f"alice now has {len(await manager.get_all_session_handles_for_user('alice'))} sessions")
        return {"one": [laptop.handle] if revoked_one else [], "acme": in_acme, "all": everywhere}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(main, _store_url(folder))
