"""Session claims and their validators, with the SuperTokens names and wire format.

A claim is a value the server fetches for a user (roles, "email verified", "second factor done") and carries in the
access-token payload as ``{key: {"v": value, "t": <ms when fetched>}}``, exactly as SuperTokens writes it, so the
SuperTokens frontend SDK's validators read our tokens unchanged. A validator checks a claim on the backend; one
whose value is missing or older than its ``max_age_in_seconds`` first re-fetches it (``should_refetch``), and the
access token is re-issued in the same response. A failure becomes the protocol's 403
``{"message": "invalid claim", "claimValidationErrors": [...]}``.

::

    RoleClaim = PrimitiveArrayClaim("st-role", fetch_roles)
    manager = SessionManager(store, config, claims=[RoleClaim])
    await session.assert_claims([RoleClaim.validators.includes("admin")])
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, Union

from .exceptions import ConfigurationError
from .tokens import PROTECTED_CLAIMS

__all__ = [
    "BooleanClaim",
    "ClaimValidationResult",
    "OverrideGlobalClaimValidators",
    "PrimitiveArrayClaim",
    "PrimitiveClaim",
    "SessionClaim",
    "SessionClaimValidator",
    "no_claim_validators",
    "resolve_claim_validators",
    "validate_claims",
]

T = TypeVar("T")
_R = TypeVar("_R")
MaybeAwaitable = Union[_R, Awaitable[_R]]  # noqa: UP007 - a runtime alias; ``|`` cannot combine a TypeVar here

FetchValue = Callable[[str, str, dict[str, Any]], MaybeAwaitable[Any]]
"""``fetch_value(user_id, tenant_id, current_payload)``, sync or async, returning the value or ``None``."""

OverrideGlobalClaimValidators = Callable[[list["SessionClaimValidator"], Any], MaybeAwaitable[Sequence[Any]]]
"""``override(global_validators, session)``, sync or async, returning the validators a route runs instead."""


async def _resolve(value: MaybeAwaitable[_R]) -> _R:
    if inspect.isawaitable(value):
        return await value
    return value


def _same(actual: Any, expected: Any) -> bool:
    # JSON-wise equality: True is not 1 (Python says it is), 1 is 1.0.
    return isinstance(actual, bool) is isinstance(expected, bool) and actual == expected


def _contains(values: Sequence[Any], item: Any) -> bool:
    return any(_same(value, item) for value in values)


@dataclass(frozen=True, slots=True)
class ClaimValidationResult:
    """What a validator found.

    Attributes:
        is_valid: whether the claim passed.
        reason: why it failed, sent to the client as ``claimValidationErrors[i].reason`` (JSON).
    """

    is_valid: bool
    reason: Any = None


class SessionClaim(Generic[T]):
    """The base of every claim: a key in the access-token payload and how to fetch its value.

    Subclass it (or, usually, :class:`PrimitiveClaim`) for a claim of your own; a subclass implements
    :meth:`add_to_payload`, :meth:`get_value_from_payload` and :meth:`get_last_refetch_time`.

    Args:
        key: the payload key (e.g. ``"st-role"``); not a protected claim name (``sub``, ``exp``, ...).
        fetch_value: ``fetch_value(user_id, tenant_id, current_payload)``, sync or async, returning the value or
            ``None`` (nothing to add).
        default_max_age_in_seconds: the validators' ``max_age_in_seconds`` when they are not given one (``None``:
            a value never goes stale).

    Raises:
        ConfigurationError: the key is empty, not a string, or a protected claim.
    """

    def __init__(
        self,
        key: str,
        fetch_value: Callable[[str, str, dict[str, Any]], MaybeAwaitable[T | None]],
        default_max_age_in_seconds: float | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError("a claim key must be a non-empty string, e.g. 'st-role'")
        if key in PROTECTED_CLAIMS:
            raise ConfigurationError(f"{key!r} is a protected access-token claim: choose another claim key")
        if not callable(fetch_value):
            raise ConfigurationError("fetch_value must be a callable (user_id, tenant_id, current_payload)")
        self.key = key
        self.fetch_value = fetch_value
        self.default_max_age_in_seconds = default_max_age_in_seconds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    async def fetch(self, user_id: str, tenant_id: str, current_payload: Mapping[str, Any]) -> T | None:
        """Call ``fetch_value`` (sync or async) and return its value, or ``None``."""
        return await _resolve(self.fetch_value(user_id, tenant_id, dict(current_payload)))

    async def build(
        self, user_id: str, tenant_id: str, current_payload: Mapping[str, Any], now_ms: int
    ) -> dict[str, Any]:
        """Fetch the value and return the payload patch that sets it (``{}`` when the value is ``None``)."""
        value = await self.fetch(user_id, tenant_id, current_payload)
        return {} if value is None else self.add_to_payload({}, value, now_ms)

    def add_to_payload(self, payload: Mapping[str, Any], value: T, now_ms: int) -> dict[str, Any]:
        """Return a copy of ``payload`` carrying ``value`` (fetched at ``now_ms``)."""
        raise NotImplementedError

    def remove_from_payload_by_merge(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of ``payload`` whose key is ``None``: merged, it deletes the claim."""
        return {**payload, self.key: None}

    def remove_from_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Return a copy of ``payload`` without the claim."""
        return {name: value for name, value in payload.items() if name != self.key}

    def get_value_from_payload(self, payload: Mapping[str, Any]) -> T | None:
        """Return the claim's value in ``payload``, or ``None`` when it is absent."""
        raise NotImplementedError

    def get_last_refetch_time(self, payload: Mapping[str, Any]) -> int | None:
        """Return when the value in ``payload`` was fetched (ms since the epoch), or ``None``."""
        raise NotImplementedError


class SessionClaimValidator(Protocol):
    """The protocol of a claim validator; the built-in ones implement it, and so can yours.

    Attributes:
        id: the ``id`` of a failure in ``claimValidationErrors`` (by default the claim's key).
        claim: the claim to re-fetch when :meth:`should_refetch` says so, or ``None`` (never re-fetched).
    """

    id: str
    claim: SessionClaim[Any] | None

    def should_refetch(self, payload: Mapping[str, Any], now_ms: int) -> bool:
        """Whether the claim's value in ``payload`` is missing or too old and must be fetched again."""
        ...

    def validate(self, payload: Mapping[str, Any], now_ms: int) -> MaybeAwaitable[ClaimValidationResult]:
        """Check ``payload`` (the whole access-token payload) at ``now_ms``; sync or async."""
        ...


class _ClaimValidator(SessionClaimValidator):
    """A built-in validator: re-fetch when missing or older than ``max_age_in_seconds``, then check the value."""

    expected_key = "expectedValue"
    id: str
    claim: PrimitiveClaim[Any]

    def __init__(self, claim: PrimitiveClaim[Any], expected: Any, max_age_in_seconds: float | None, id: str | None):
        self.claim = claim
        self.id = claim.key if id is None else id
        self.expected = expected
        self.max_age_in_seconds = claim.default_max_age_in_seconds if max_age_in_seconds is None else max_age_in_seconds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.claim.key!r}, {self.expected!r}, max_age={self.max_age_in_seconds!r})"

    def _age_ms(self, payload: Mapping[str, Any], now_ms: int) -> float:
        fetched = self.claim.get_last_refetch_time(payload)
        return now_ms - (fetched if fetched is not None else 0)

    def should_refetch(self, payload: Mapping[str, Any], now_ms: int) -> bool:
        """Whether the value is missing, or older than ``max_age_in_seconds``."""
        if self.claim.get_value_from_payload(payload) is None:
            return True
        return self.max_age_in_seconds is not None and self._age_ms(payload, now_ms) > self.max_age_in_seconds * 1000

    def validate(self, payload: Mapping[str, Any], now_ms: int) -> ClaimValidationResult:
        """Check the value: it must exist, be no older than ``max_age_in_seconds``, and match."""
        value = self.claim.get_value_from_payload(payload)
        if value is None:
            reason = {"message": "value does not exist", self.expected_key: self.expected, "actualValue": None}
            return ClaimValidationResult(False, reason)
        if self.max_age_in_seconds is not None:
            age = self._age_ms(payload, now_ms) / 1000
            if age > self.max_age_in_seconds:
                reason = {"message": "expired", "ageInSeconds": age, "maxAgeInSeconds": self.max_age_in_seconds}
                return ClaimValidationResult(False, reason)
        if self.matches(value):
            return ClaimValidationResult(True)
        reason = {"message": "wrong value", self.expected_key: self.expected, "actualValue": value}
        return ClaimValidationResult(False, reason)

    def matches(self, value: Any) -> bool:
        """Whether a present, fresh value passes."""
        return _same(value, self.expected)


class _HasValue(_ClaimValidator):
    pass


class _ArrayValidator(_ClaimValidator):
    def matches(self, value: Any) -> bool:
        return isinstance(value, list) and self.check(value)

    def check(self, value: list[Any]) -> bool:
        raise NotImplementedError


class _Includes(_ArrayValidator):
    expected_key = "expectedToInclude"

    def check(self, value: list[Any]) -> bool:
        return _contains(value, self.expected)


class _Excludes(_ArrayValidator):
    expected_key = "expectedToNotInclude"

    def check(self, value: list[Any]) -> bool:
        return not _contains(value, self.expected)


class _IncludesAll(_ArrayValidator):
    expected_key = "expectedToInclude"

    def check(self, value: list[Any]) -> bool:
        return all(_contains(value, item) for item in self.expected)


class _IncludesAny(_ArrayValidator):
    expected_key = "expectedToIncludeAtLeastOneOf"

    def check(self, value: list[Any]) -> bool:
        return any(_contains(value, item) for item in self.expected)


class _ExcludesAll(_ArrayValidator):
    expected_key = "expectedToNotInclude"

    def check(self, value: list[Any]) -> bool:
        return not any(_contains(value, item) for item in self.expected)


class PrimitiveClaimValidators(Generic[T]):
    """The validators of a :class:`PrimitiveClaim`, as ``claim.validators``."""

    def __init__(self, claim: PrimitiveClaim[T]) -> None:
        self.claim = claim

    def has_value(
        self,
        value: T,
        max_age_in_seconds: float | None = None,
        id: str | None = None,
    ) -> SessionClaimValidator:
        """The claim must equal ``value`` (reason field ``expectedValue``)."""
        return _HasValue(self.claim, value, max_age_in_seconds, id)


class BooleanClaimValidators(PrimitiveClaimValidators[bool]):
    """The validators of a :class:`BooleanClaim`, as ``claim.validators``."""

    def is_true(self, max_age_in_seconds: float | None = None, id: str | None = None) -> SessionClaimValidator:
        """The claim must be ``true``."""
        return self.has_value(True, max_age_in_seconds, id)

    def is_false(self, max_age_in_seconds: float | None = None, id: str | None = None) -> SessionClaimValidator:
        """The claim must be ``false``."""
        return self.has_value(False, max_age_in_seconds, id)


class PrimitiveArrayClaimValidators(Generic[T]):
    """The validators of a :class:`PrimitiveArrayClaim`, as ``claim.validators``."""

    def __init__(self, claim: PrimitiveArrayClaim[T]) -> None:
        self.claim = claim

    def includes(
        self, value: T, max_age_in_seconds: float | None = None, id: str | None = None
    ) -> SessionClaimValidator:
        """The array must contain ``value`` (reason field ``expectedToInclude``)."""
        return _Includes(self.claim, value, max_age_in_seconds, id)

    def excludes(
        self, value: T, max_age_in_seconds: float | None = None, id: str | None = None
    ) -> SessionClaimValidator:
        """The array must not contain ``value`` (reason field ``expectedToNotInclude``)."""
        return _Excludes(self.claim, value, max_age_in_seconds, id)

    def includes_all(
        self,
        values: Sequence[T],
        max_age_in_seconds: float | None = None,
        id: str | None = None,
    ) -> SessionClaimValidator:
        """The array must contain every one of ``values`` (reason field ``expectedToInclude``)."""
        return _IncludesAll(self.claim, list(values), max_age_in_seconds, id)

    def includes_any(
        self,
        values: Sequence[T],
        max_age_in_seconds: float | None = None,
        id: str | None = None,
    ) -> SessionClaimValidator:
        """The array must contain at least one of ``values`` (reason field ``expectedToIncludeAtLeastOneOf``)."""
        return _IncludesAny(self.claim, list(values), max_age_in_seconds, id)

    def excludes_all(
        self,
        values: Sequence[T],
        max_age_in_seconds: float | None = None,
        id: str | None = None,
    ) -> SessionClaimValidator:
        """The array must contain none of ``values`` (reason field ``expectedToNotInclude``)."""
        return _ExcludesAll(self.claim, list(values), max_age_in_seconds, id)


class PrimitiveClaim(SessionClaim[T]):
    """A claim whose value is one JSON primitive (string, number, boolean), stored as ``{"v": value, "t": ms}``.

    ``claim.validators.has_value(value, max_age_in_seconds=None, id=None)`` checks it.
    """

    def __init__(
        self,
        key: str,
        fetch_value: Callable[[str, str, dict[str, Any]], MaybeAwaitable[T | None]],
        default_max_age_in_seconds: float | None = None,
    ) -> None:
        super().__init__(key, fetch_value, default_max_age_in_seconds)
        self.validators = PrimitiveClaimValidators(self)

    def add_to_payload(self, payload: Mapping[str, Any], value: T, now_ms: int) -> dict[str, Any]:
        """Return a copy of ``payload`` with ``{key: {"v": value, "t": now_ms}}``."""
        return {**payload, self.key: {"v": value, "t": int(now_ms)}}

    def get_value_from_payload(self, payload: Mapping[str, Any]) -> T | None:
        """Return ``payload[key]["v"]``, or ``None``."""
        entry = payload.get(self.key)
        return entry.get("v") if isinstance(entry, Mapping) else None

    def get_last_refetch_time(self, payload: Mapping[str, Any]) -> int | None:
        """Return ``payload[key]["t"]`` (ms), or ``None``."""
        entry = payload.get(self.key)
        fetched = entry.get("t") if isinstance(entry, Mapping) else None
        return int(fetched) if isinstance(fetched, (int, float)) and not isinstance(fetched, bool) else None


class BooleanClaim(PrimitiveClaim[bool]):
    """A true/false claim ("email verified"); ``claim.validators.is_true()`` / ``is_false()`` check it."""

    def __init__(
        self,
        key: str,
        fetch_value: Callable[[str, str, dict[str, Any]], MaybeAwaitable[bool | None]],
        default_max_age_in_seconds: float | None = None,
    ) -> None:
        super().__init__(key, fetch_value, default_max_age_in_seconds)
        self.validators: BooleanClaimValidators = BooleanClaimValidators(self)


class PrimitiveArrayClaim(PrimitiveClaim[list[T]]):
    """A claim whose value is a list of JSON primitives (roles, permissions), stored as ``{"v": [...], "t": ms}``.

    ``claim.validators.includes / excludes / includes_all / includes_any / excludes_all`` check it.
    """

    def __init__(
        self,
        key: str,
        fetch_value: Callable[[str, str, dict[str, Any]], MaybeAwaitable[list[T] | None]],
        default_max_age_in_seconds: float | None = None,
    ) -> None:
        super().__init__(key, fetch_value, default_max_age_in_seconds)
        self.validators: PrimitiveArrayClaimValidators[T] = PrimitiveArrayClaimValidators(self)  # type: ignore[assignment]


# -- running validators ------------------------------------------------------------------------------------------


def no_claim_validators(global_validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
    """An ``override_global_claim_validators`` that runs no validator (SuperTokens' ``lambda *_: []``)."""
    return []


async def resolve_claim_validators(
    global_validators: Iterable[SessionClaimValidator],
    override: OverrideGlobalClaimValidators | None,
    session: Any,
) -> list[SessionClaimValidator]:
    """The validators to run: the global ones, or what ``override(global_validators, session)`` returns."""
    validators = list(global_validators)
    if override is None:
        return validators
    return list(await _resolve(override(validators, session)))


async def validate_claims(
    validators: Sequence[SessionClaimValidator],
    *,
    user_id: str,
    tenant_id: str,
    payload: Mapping[str, Any],
    now_ms: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Re-fetch what the validators find missing or stale, then run every validator on the updated payload.

    Returns:
        ``(errors, update)``: the ``{"id", "reason"}`` of each failure, in order, and the payload patch holding the
        re-fetched values (``{}`` when nothing was re-fetched), which the caller stores and re-issues.
    """
    current = dict(payload)
    update: dict[str, Any] = {}
    for validator in validators:
        claim = getattr(validator, "claim", None)
        if claim is not None and validator.should_refetch(current, now_ms):
            patch = await claim.build(user_id, tenant_id, current, now_ms)
            current.update(patch)
            update.update(patch)
    errors = []
    for validator in validators:
        result = await _resolve(validator.validate(current, now_ms))
        if not result.is_valid:
            errors.append({"id": validator.id, "reason": result.reason})
    return errors, update
