"""Session: the verified session a request (or an offline call) works with, and SessionInformation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._clock import Clock
from .claims import SessionClaim, SessionClaimValidator, validate_claims
from .exceptions import InvalidClaimsError, UnauthorisedError
from .hooks import hook_context
from .tokens import REMEMBER_CLAIM, RESERVED_CLAIMS, front_token, json_copy

if TYPE_CHECKING:
    from ._asgi import Scope

T = TypeVar("T")

__all__ = ["Session", "SessionBackend", "SessionInformation"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInformation:
    """What the server knows about one session (what an "active devices" page shows).

    Times are integers in milliseconds since the epoch, as in supertokens-python.

    Attributes:
        session_handle: the session handle.
        user_id: the session's user.
        tenant_id: the session's tenant.
        session_data_in_database: the server-side session data.
        custom_claims_in_access_token_payload: the custom claims the next access token will carry.
        time_created: creation time (ms).
        expiry: when the session expires unless refreshed (ms); already capped by the absolute lifetime.
        last_seen: the last refresh (or the creation) time (ms).
        user_agent: the creating request's ``User-Agent``, when known.
        ip: the creating request's client address, when known.
    """

    session_handle: str
    user_id: str
    tenant_id: str
    session_data_in_database: dict[str, Any]
    custom_claims_in_access_token_payload: dict[str, Any]
    time_created: int
    expiry: int
    last_seen: int
    user_agent: str | None = None
    ip: str | None = None


class SessionBackend(Protocol):
    """The narrow part of :class:`~asgi_session.SessionManager` a :class:`Session` calls.

    It keeps this module below the manager: ``session`` imports nothing from ``_admin`` or ``manager``.
    """

    clock: Clock

    async def revoke_session(self, session_handle: str) -> bool:
        """Revoke one session by handle; return whether it existed."""
        ...

    async def get_session_information(self, session_handle: str) -> SessionInformation | None:
        """Return what the store knows of a session, or ``None`` once it is revoked or expired."""
        ...

    async def update_session_data_in_database(self, session_handle: str, data: Mapping[str, Any]) -> bool:
        """Replace a session's server-side data; return whether the session exists."""
        ...

    async def _merge_and_reissue(self, session: Session, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the stored payload and put a re-signed access token on ``session``."""
        ...


class Session:
    """A verified session.

    Request-bound sessions come from :func:`asgi_session.get_session` or :func:`asgi_session.create_new_session`;
    offline ones from the ``*_without_request_response`` methods of :class:`~asgi_session.SessionManager`.
    Changes made through a request-bound session (revoke, payload merge) reach the client in the same response.

    Attributes:
        handle: the session handle.
        user_id: the session's user (the ``sub`` claim).
        tenant_id: the session's tenant (the ``tId`` claim).
        access_token: the current access token (a new one after a merge or a refresh).
        refresh_token: the refresh token, only when this object just created or refreshed the session.
        anti_csrf_token: the anti-CSRF token issued with new tokens (``VIA_TOKEN`` mode), else ``None``.
        access_and_front_token_updated: whether new tokens were issued and must be sent to the client.
        revoked: whether :meth:`revoke` was called on this object.
    """

    # ``SessionManager.verify_now`` builds the per-request Session without ``__init__`` and sets every slot but
    # ``_scope`` itself: a new slot must be set there too.
    __slots__ = (
        "_claims",
        "_manager",
        "_scope",
        "access_and_front_token_updated",
        "access_token",
        "anti_csrf_token",
        "handle",
        "refresh_token",
        "refresh_token_expiry",
        "revoked",
        "tenant_id",
        "transfer_method",
        "user_id",
    )

    _scope: Scope | None  # set only where lifecycle hooks need the request (never on the per-request path)

    def __init__(
        self,
        manager: SessionBackend,
        *,
        access_token: str,
        claims: dict[str, Any],
        refresh_token: str | None = None,
        refresh_token_expiry: float | None = None,
        anti_csrf_token: str | None = None,
        updated: bool = False,
    ) -> None:
        self._manager = manager
        self._claims = claims
        self.access_token = access_token
        self.handle: str = claims["sessionHandle"]
        self.user_id: str = claims["sub"]
        self.tenant_id: str = claims["tId"]
        self.refresh_token = refresh_token
        self.refresh_token_expiry = refresh_token_expiry
        self.anti_csrf_token = anti_csrf_token
        self.access_and_front_token_updated = updated
        self.revoked = False
        self.transfer_method: str | None = None
        # ``_scope`` (the request's scope, for lifecycle hooks) is set only where hooks need it: never on the hot path.

    def __repr__(self) -> str:
        return f"Session(handle={self.handle!r}, user_id={self.user_id!r}, tenant_id={self.tenant_id!r})"

    # -- the token's contents --------------------------------------------------------------------------------

    @property
    def access_token_payload(self) -> dict[str, Any]:
        """The custom claims of the current access token (a deep copy; protected claims left out)."""
        return {k: json_copy(v) for k, v in self._claims.items() if k not in RESERVED_CLAIMS}

    @property
    def remember(self) -> bool:
        """``False`` when the session was created with ``remember=False``: its cookies end with the browser session."""
        return self._claims.get(REMEMBER_CLAIM) is not False

    @property
    def access_token_expiry(self) -> int:
        """The current access token's ``exp`` (seconds since the epoch)."""
        return int(self._claims["exp"])

    def get_access_token_payload(self) -> dict[str, Any]:
        """Return the whole access-token payload, protected claims included (a deep copy)."""
        return json_copy(self._claims)  # type: ignore[no-any-return]

    def get_user_id(self) -> str:
        """Return the user id."""
        return self.user_id

    def get_tenant_id(self) -> str:
        """Return the tenant id."""
        return self.tenant_id

    def get_handle(self) -> str:
        """Return the session handle."""
        return self.handle

    def get_access_token(self) -> str:
        """Return the current access token."""
        return self.access_token

    def get_front_token(self) -> str:
        """Return the ``front-token`` value describing the current access token."""
        return front_token(self.user_id, self.access_token_expiry * 1000, self._claims)

    def get_all_session_tokens_dangerously(self) -> dict[str, Any]:
        """Return every token, with the SuperTokens keys. Never log the result.

        Returns:
            ``{"accessToken", "refreshToken", "frontToken", "antiCsrfToken", "accessAndFrontTokenUpdated"}``;
            ``refreshToken`` is ``None`` unless this object just created or refreshed the session.
        """
        return {
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "frontToken": self.get_front_token(),
            "antiCsrfToken": self.anti_csrf_token,
            "accessAndFrontTokenUpdated": self.access_and_front_token_updated,
        }

    # -- server-side operations ------------------------------------------------------------------------------

    async def revoke(self) -> None:
        """Delete the session from the store; in a request, the response also clears the client's tokens.

        Raises:
            StoreError: the store failed; the session may still exist and the tokens are not cleared.
        """
        with hook_context(getattr(self, "_scope", None)):  # the request's scope, for an on_revoked hook
            await self._manager.revoke_session(self.handle)
        self.revoked = True

    async def get_session_data_from_database(self) -> dict[str, Any]:
        """Return the server-side session data.

        Raises:
            UnauthorisedError: the session no longer exists.
        """
        info = await self._manager.get_session_information(self.handle)
        if info is None:
            raise UnauthorisedError("session does not exist anymore", handle=self.handle)
        return info.session_data_in_database

    async def update_session_data_in_database(self, data: Mapping[str, Any]) -> None:
        """Replace the server-side session data.

        Raises:
            UnauthorisedError: the session no longer exists.
        """
        if not await self._manager.update_session_data_in_database(self.handle, data):
            raise UnauthorisedError("session does not exist anymore", handle=self.handle)

    async def merge_into_access_token_payload(self, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the custom claims (``None`` deletes a key) and re-issue the access token now.

        Raises:
            UnauthorisedError: the session no longer exists.
            InvalidPayloadError: the patch sets a protected claim.
        """
        await self._manager._merge_and_reissue(self, patch)

    async def get_time_created(self) -> int:
        """Return the creation time in milliseconds since the epoch.

        Raises:
            UnauthorisedError: the session no longer exists.
        """
        return (await self._information()).time_created

    async def get_expiry(self) -> int:
        """Return the session's expiry (the refresh token's, not the access token's) in milliseconds.

        Raises:
            UnauthorisedError: the session no longer exists.
        """
        return (await self._information()).expiry

    async def _information(self) -> SessionInformation:
        info = await self._manager.get_session_information(self.handle)
        if info is None:
            raise UnauthorisedError("session does not exist anymore", handle=self.handle)
        return info

    # -- claims ----------------------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._manager.clock.now() * 1000)

    async def fetch_and_set_claim(self, claim: SessionClaim[Any]) -> None:
        """Fetch the claim's value now and put it in the access token, re-issued in this response.

        A ``None`` value leaves the payload as it was (the token is still re-issued).

        Raises:
            UnauthorisedError: the session no longer exists.
        """
        patch = await claim.build(self.user_id, self.tenant_id, self._claims, self._now_ms())
        await self.merge_into_access_token_payload(patch)

    async def set_claim_value(self, claim: SessionClaim[T], value: T) -> None:
        """Set the claim's value (fetched "now") in the access token, re-issued in this response.

        Raises:
            UnauthorisedError: the session no longer exists.
            InvalidPayloadError: the value is not JSON, or makes the access token too large.
        """
        await self.merge_into_access_token_payload(claim.add_to_payload({}, value, self._now_ms()))

    async def get_claim_value(self, claim: SessionClaim[T]) -> T | None:
        """Return the claim's value in the current access token, or ``None`` when it has none."""
        return claim.get_value_from_payload(json_copy(self._claims))

    async def remove_claim(self, claim: SessionClaim[Any]) -> None:
        """Remove the claim from the access token, re-issued in this response.

        Raises:
            UnauthorisedError: the session no longer exists.
        """
        await self.merge_into_access_token_payload(claim.remove_from_payload_by_merge({}))

    async def assert_claims(self, validators: Sequence[SessionClaimValidator]) -> None:
        """Run claim validators; re-fetch missing or stale values first (re-issuing the access token).

        Raises:
            InvalidClaimsError: a validator failed; ``errors`` holds each ``{"id", "reason"}``. The re-fetched values
                are stored and the new access token is sent with the 403 too.
            UnauthorisedError: a value was re-fetched but the session no longer exists.
        """
        errors, update = await validate_claims(
            validators, user_id=self.user_id, tenant_id=self.tenant_id, payload=self._claims, now_ms=self._now_ms()
        )
        if update:
            await self.merge_into_access_token_payload(update)
        if errors:
            raise InvalidClaimsError(errors)

    def _replace_access_token(self, access_token: str, claims: dict[str, Any]) -> None:
        self.access_token = access_token
        self._claims = claims
        self.access_and_front_token_updated = True
