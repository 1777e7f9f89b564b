"""Claims and validators, unit by unit: every validator against every reason, max_age_in_seconds and re-fetching.

The payloads here are what an access token carries: ``{key: {"v": value, "t": ms}}``, as SuperTokens writes it.
"""

from __future__ import annotations

from typing import Any

import pytest

from asgi_session import ConfigurationError
from asgi_session.claims import (
    BooleanClaim,
    ClaimValidationResult,
    PrimitiveArrayClaim,
    PrimitiveClaim,
    SessionClaim,
    SessionClaimValidator,
    no_claim_validators,
    resolve_claim_validators,
    validate_claims,
)

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000_000  # ms


def never(user_id: str, tenant_id: str, payload: dict[str, Any]) -> None:
    raise AssertionError("fetch_value must not be called here")


Role = PrimitiveArrayClaim[str]("st-role", never)
Plan = PrimitiveClaim[str]("plan", never)
Verified = BooleanClaim("st-ev", never)


def at(value: Any, ms: int = NOW) -> dict[str, Any]:
    return {"v": value, "t": ms}


def check(validator: SessionClaimValidator, payload: dict[str, Any]) -> ClaimValidationResult:
    result = validator.validate(payload, NOW)
    assert isinstance(result, ClaimValidationResult)
    return result


def test_the_payload_shape_is_supertokens() -> None:
    assert Role.add_to_payload({"x": 1}, ["admin"], NOW) == {"x": 1, "st-role": {"v": ["admin"], "t": NOW}}
    assert Plan.add_to_payload({}, "pro", NOW) == {"plan": {"v": "pro", "t": NOW}}
    assert Role.get_value_from_payload({"st-role": at(["a"])}) == ["a"]
    assert Role.get_last_refetch_time({"st-role": at(["a"], 5)}) == 5
    assert Role.get_value_from_payload({}) is None
    assert Role.get_value_from_payload({"st-role": "not an entry"}) is None
    assert Role.get_last_refetch_time({"st-role": {"v": ["a"], "t": True}}) is None
    assert Role.remove_from_payload_by_merge({}) == {"st-role": None}
    assert Role.remove_from_payload({"st-role": at([]), "x": 1}) == {"x": 1}


# -- has_value / is_true / is_false ------------------------------------------------------------------------------


def test_has_value_passes_on_the_value() -> None:
    assert check(Plan.validators.has_value("pro"), {"plan": at("pro")}) == ClaimValidationResult(True)


def test_has_value_reasons() -> None:
    validator = Plan.validators.has_value("pro")
    assert check(validator, {}).reason == {
        "message": "value does not exist",
        "expectedValue": "pro",
        "actualValue": None,
    }
    assert check(validator, {"plan": at("free")}).reason == {
        "message": "wrong value",
        "expectedValue": "pro",
        "actualValue": "free",
    }


def test_has_value_with_max_age_reports_expired_with_the_age() -> None:
    validator = Plan.validators.has_value("pro", max_age_in_seconds=60)
    assert check(validator, {"plan": at("pro", NOW - 60_000)}).is_valid  # exactly max age: still fresh
    result = check(validator, {"plan": at("pro", NOW - 90_500)})
    assert result == ClaimValidationResult(False, {"message": "expired", "ageInSeconds": 90.5, "maxAgeInSeconds": 60})


def test_without_max_age_a_value_never_expires() -> None:
    validator = Plan.validators.has_value("pro")
    assert check(validator, {"plan": at("pro", 0)}).is_valid
    assert not validator.should_refetch({"plan": at("pro", 0)}, NOW)


def test_the_claims_default_max_age_applies_unless_the_validator_names_one() -> None:
    claim = PrimitiveClaim[str]("plan", never, default_max_age_in_seconds=10)
    stale = {"plan": at("pro", NOW - 20_000)}
    assert check(claim.validators.has_value("pro"), stale).reason["message"] == "expired"
    assert check(claim.validators.has_value("pro", max_age_in_seconds=30), stale).is_valid


def test_should_refetch_when_missing_or_stale() -> None:
    validator = Plan.validators.has_value("pro", max_age_in_seconds=5)
    assert validator.should_refetch({}, NOW)
    assert validator.should_refetch({"plan": at("pro", NOW - 5_001)}, NOW)
    assert not validator.should_refetch({"plan": at("pro", NOW - 5_000)}, NOW)
    assert validator.should_refetch({"plan": {"v": "pro"}}, NOW)  # no fetch time: as old as can be


def test_a_zero_max_age_always_refetches() -> None:
    validator = Plan.validators.has_value("pro", max_age_in_seconds=0)
    assert validator.should_refetch({"plan": at("pro", NOW - 1)}, NOW)
    assert check(validator, {"plan": at("pro", NOW)}).is_valid


def test_the_id_defaults_to_the_key_and_can_be_set() -> None:
    assert Plan.validators.has_value("pro").id == "plan"
    assert Plan.validators.has_value("pro", id="paid-plan").id == "paid-plan"
    assert Role.validators.includes("a", id="role-a").id == "role-a"


def test_booleans() -> None:
    assert check(Verified.validators.is_true(), {"st-ev": at(True)}).is_valid
    assert check(Verified.validators.is_false(), {"st-ev": at(False)}).is_valid
    assert check(Verified.validators.is_true(), {"st-ev": at(False)}).reason == {
        "message": "wrong value",
        "expectedValue": True,
        "actualValue": False,
    }
    assert check(Verified.validators.is_true(), {}).reason == {
        "message": "value does not exist",
        "expectedValue": True,
        "actualValue": None,
    }
    expired = check(Verified.validators.is_true(max_age_in_seconds=1), {"st-ev": at(True, NOW - 3000)})
    assert expired.reason == {"message": "expired", "ageInSeconds": 3.0, "maxAgeInSeconds": 1}
    # JSON equality, not Python's: 1 is not true.
    assert not check(Verified.validators.is_true(), {"st-ev": at(1)}).is_valid
    assert not check(Plan.validators.has_value(1), {"plan": at(True)}).is_valid  # type: ignore[arg-type]
    assert check(Plan.validators.has_value(1), {"plan": at(1.0)}).is_valid  # type: ignore[arg-type]


# -- arrays ------------------------------------------------------------------------------------------------------

ARRAYS = [
    # name, validator, passing value, failing value, the reason's expectation key, the expectation
    ("includes", Role.validators.includes("admin"), ["admin", "user"], ["user"], "expectedToInclude", "admin"),
    ("excludes", Role.validators.excludes("banned"), ["user"], ["user", "banned"], "expectedToNotInclude", "banned"),
    (
        "includes_all",
        Role.validators.includes_all(["a", "b"]),
        ["a", "b", "c"],
        ["a", "c"],
        "expectedToInclude",
        ["a", "b"],
    ),
    (
        "includes_any",
        Role.validators.includes_any(["a", "b"]),
        ["b"],
        ["c"],
        "expectedToIncludeAtLeastOneOf",
        ["a", "b"],
    ),
    ("excludes_all", Role.validators.excludes_all(["a", "b"]), ["c"], ["c", "b"], "expectedToNotInclude", ["a", "b"]),
]


@pytest.mark.parametrize(("name", "validator", "good", "bad", "key", "expected"), ARRAYS, ids=[a[0] for a in ARRAYS])
def test_array_validators_every_reason(
    name: str, validator: SessionClaimValidator, good: list[str], bad: list[str], key: str, expected: Any
) -> None:
    assert check(validator, {"st-role": at(good)}) == ClaimValidationResult(True)
    assert check(validator, {"st-role": at(bad)}).reason == {
        "message": "wrong value",
        key: expected,
        "actualValue": bad,
    }
    assert check(validator, {}).reason == {"message": "value does not exist", key: expected, "actualValue": None}
    assert not check(validator, {"st-role": at("admin")}).is_valid  # not an array: never valid


@pytest.mark.parametrize("make", ["includes", "excludes", "includes_all", "includes_any", "excludes_all"])
def test_array_validators_max_age(make: str) -> None:
    argument: Any = "x" if make in ("includes", "excludes") else ["x"]
    good = ["x"] if make.startswith("includes") else ["y"]
    validator = getattr(Role.validators, make)(argument, max_age_in_seconds=120)
    fresh = {"st-role": at(good, NOW - 120_000)}
    stale = {"st-role": at(good, NOW - 121_000)}
    assert check(validator, fresh).is_valid
    assert not validator.should_refetch(fresh, NOW)
    assert validator.should_refetch(stale, NOW)
    assert check(validator, stale).reason == {"message": "expired", "ageInSeconds": 121.0, "maxAgeInSeconds": 120}
    # The id and the claim's default max age, as for has_value.
    assert getattr(Role.validators, make)(argument, id="mine").id == "mine"
    claim = PrimitiveArrayClaim[str]("st-role", never, default_max_age_in_seconds=120)
    assert getattr(claim.validators, make)(argument).should_refetch(stale, NOW)


# -- the claim objects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "sub", "exp", "sessionHandle", "antiCsrfToken", "tId"])
def test_a_claim_key_must_be_a_free_payload_name(key: str) -> None:
    with pytest.raises(ConfigurationError):
        PrimitiveClaim(key, never)


def test_fetch_value_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="fetch_value"):
        PrimitiveClaim("plan", "pro")  # type: ignore[arg-type]


async def test_fetch_value_may_be_sync_or_async() -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def sync_fetch(user_id: str, tenant_id: str, payload: dict[str, Any]) -> list[str]:
        seen.append((user_id, tenant_id, payload))
        return ["admin"]

    async def async_fetch(user_id: str, tenant_id: str, payload: dict[str, Any]) -> bool:
        return True

    assert await PrimitiveArrayClaim("st-role", sync_fetch).build("alice", "t1", {"a": 1}, NOW) == {
        "st-role": {"v": ["admin"], "t": NOW}
    }
    assert seen == [("alice", "t1", {"a": 1})]
    assert await BooleanClaim("st-ev", async_fetch).build("alice", "t1", {}, NOW) == {"st-ev": {"v": True, "t": NOW}}
    assert await PrimitiveClaim("plan", lambda *_: None).build("alice", "t1", {}, NOW) == {}


# -- validate_claims: re-fetch, then validate ---------------------------------------------------------------------


async def test_validate_claims_refetches_missing_and_stale_values_only() -> None:
    calls: list[str] = []

    async def roles(user_id: str, tenant_id: str, payload: dict[str, Any]) -> list[str]:
        calls.append(user_id)
        return ["admin"]

    role = PrimitiveArrayClaim("st-role", roles)
    validators = [role.validators.includes("admin", max_age_in_seconds=60)]
    errors, update = await validate_claims(validators, user_id="alice", tenant_id="public", payload={}, now_ms=NOW)
    assert (errors, update, calls) == ([], {"st-role": {"v": ["admin"], "t": NOW}}, ["alice"])

    fresh = {"st-role": at(["user"], NOW - 1_000)}
    errors, update = await validate_claims(validators, user_id="alice", tenant_id="public", payload=fresh, now_ms=NOW)
    assert update == {}
    assert calls == ["alice"]  # fresh: not fetched again
    assert errors == [
        {"id": "st-role", "reason": {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}}
    ]

    stale = {"st-role": at(["user"], NOW - 61_000)}
    errors, update = await validate_claims(validators, user_id="alice", tenant_id="public", payload=stale, now_ms=NOW)
    assert (errors, update, calls) == ([], {"st-role": {"v": ["admin"], "t": NOW}}, ["alice", "alice"])


async def test_a_refetch_that_finds_nothing_leaves_the_value_missing() -> None:
    role = PrimitiveArrayClaim[str]("st-role", lambda *_: None)
    errors, update = await validate_claims(
        [role.validators.includes("admin")], user_id="u", tenant_id="public", payload={}, now_ms=NOW
    )
    assert update == {}
    assert errors == [
        {
            "id": "st-role",
            "reason": {"message": "value does not exist", "expectedToInclude": "admin", "actualValue": None},
        }
    ]


async def test_a_custom_validator_without_a_claim_and_with_an_async_validate() -> None:
    class BusinessHours:
        id = "business-hours"
        claim: SessionClaim[Any] | None = None

        def should_refetch(self, payload: Any, now_ms: int) -> bool:
            raise AssertionError("never asked: no claim to re-fetch")

        async def validate(self, payload: Any, now_ms: int) -> ClaimValidationResult:
            return ClaimValidationResult(payload.get("sub") == "alice", {"message": "closed"})

    validator: SessionClaimValidator = BusinessHours()
    errors, _ = await validate_claims(
        [validator], user_id="bob", tenant_id="public", payload={"sub": "bob"}, now_ms=NOW
    )
    assert errors == [{"id": "business-hours", "reason": {"message": "closed"}}]


async def test_resolving_the_override() -> None:
    base = [Plan.validators.has_value("pro")]
    extra = Role.validators.includes("admin")
    assert await resolve_claim_validators(base, None, object()) == base
    assert await resolve_claim_validators(base, no_claim_validators, object()) == []

    async def add(global_validators: list[SessionClaimValidator], session: Any) -> list[SessionClaimValidator]:
        return [*global_validators, extra]

    assert await resolve_claim_validators(base, add, object()) == [*base, extra]
    assert await resolve_claim_validators(base, lambda g, s: (extra,), object()) == [extra]
