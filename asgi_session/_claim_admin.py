"""The claims layer of SessionManager: read, set, re-fetch, remove and validate claims of a session by handle.

:class:`ClaimAdmin` is a base class of :class:`~asgi_session.SessionManager`, not used on its own. A change made
here is stored with the session; the client's access token carries it from its next refresh (a request-bound
:class:`~asgi_session.Session` re-issues its token at once instead).
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._admin import session_information
from ._refresh import SessionRefresh
from .claims import (
    OverrideGlobalClaimValidators,
    SessionClaim,
    SessionClaimValidator,
    resolve_claim_validators,
    validate_claims,
)

__all__ = ["ClaimAdmin"]

T = TypeVar("T")


class ClaimAdmin(SessionRefresh):
    """Claims by session handle; every method works without a request.

    Attributes:
        claims: the claims fetched into the payload of every new session.
        global_claim_validators: the validators every session-reading helper runs (unless a route overrides them).
    """

    claims: tuple[SessionClaim[Any], ...] = ()
    global_claim_validators: tuple[SessionClaimValidator, ...] = ()

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def fetch_and_set_claim(self, session_handle: str, claim: SessionClaim[Any]) -> bool:
        """Fetch the claim's value for the session's user now and store it; return whether the session exists.

        A ``None`` value leaves the payload as it was.
        """
        await self.open()
        record = await self._live(session_handle)
        if record is None:
            return False
        patch = await claim.build(record.user_id, record.tenant_id, record.access_token_payload, self._now_ms())
        return await self.merge_into_access_token_payload(session_handle, patch)

    async def set_claim_value(self, session_handle: str, claim: SessionClaim[T], value: T) -> bool:
        """Store the claim's value (fetched "now"); return whether the session exists.

        Raises:
            InvalidPayloadError: the value is not JSON, or would make the access token too large.
        """
        return await self.merge_into_access_token_payload(
            session_handle, claim.add_to_payload({}, value, self._now_ms())
        )

    async def get_claim_value(self, session_handle: str, claim: SessionClaim[T]) -> T | None:
        """Return the claim's stored value, or ``None`` when the session or the claim is absent."""
        await self.open()
        record = await self._live(session_handle)
        if record is None:
            return None
        return claim.get_value_from_payload(record.access_token_payload)

    async def remove_claim(self, session_handle: str, claim: SessionClaim[Any]) -> bool:
        """Remove the claim from the stored payload; return whether the session exists."""
        return await self.merge_into_access_token_payload(session_handle, claim.remove_from_payload_by_merge({}))

    async def validate_claims_for_session_handle(
        self,
        session_handle: str,
        override_global_claim_validators: OverrideGlobalClaimValidators | None = None,
    ) -> list[dict[str, Any]] | None:
        """Run the global claim validators on a session's stored payload, re-fetching (and storing) stale values.

        Args:
            session_handle: the session.
            override_global_claim_validators: ``override(global_validators, session_information)``, sync or async,
                returning the validators to run instead (it receives the :class:`~asgi_session.SessionInformation`,
                as offline there is no :class:`~asgi_session.Session`).

        Returns:
            The ``{"id", "reason"}`` of each failed validator (empty: every claim is valid), or ``None`` when the
            session does not exist.
        """
        await self.open()
        record = await self._live(session_handle)
        if record is None:
            return None
        validators = await resolve_claim_validators(
            self.global_claim_validators, override_global_claim_validators, session_information(record)
        )
        errors, update = await validate_claims(
            validators,
            user_id=record.user_id,
            tenant_id=record.tenant_id,
            payload=record.access_token_payload,
            now_ms=self._now_ms(),
        )
        if update and not await self.merge_into_access_token_payload(session_handle, update):
            return None
        return errors
