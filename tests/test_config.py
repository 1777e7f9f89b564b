"""SessionConfig validation: every invalid value is refused at construction with a fix-it message."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from asgi_session import ConfigurationError, SessionConfig


def test_defaults_match_the_design() -> None:
    c = SessionConfig()
    assert c.api_base_path == "/auth"
    assert c.access_token_validity == timedelta(hours=1)
    assert c.refresh_token_validity == timedelta(days=100)
    assert c.session_max_lifetime is None
    assert c.refresh_token_grace_period == timedelta(seconds=30)
    assert c.signing_algorithm == "ES256"
    assert c.key_rotation_interval == timedelta(days=7)
    assert c.issuer == "asgi-session"
    assert c.cookie_secure is True
    assert c.cookie_same_site == "lax"
    assert c.token_transfer_method == "any"
    assert c.anti_csrf == "NONE"
    assert c.access_token_blacklisting is False
    assert (c.session_expired_status_code, c.invalid_claim_status_code) == (401, 403)
    assert c.verified_token_cache_size == 10_000


def test_frozen_and_keyword_only() -> None:
    c = SessionConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.issuer = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SessionConfig("/auth")  # type: ignore[call-arg]


def test_anti_csrf_default_is_derived_from_same_site() -> None:
    assert SessionConfig(cookie_same_site="none").anti_csrf == "VIA_CUSTOM_HEADER"
    assert SessionConfig(cookie_same_site="strict").anti_csrf == "NONE"
    assert SessionConfig(cookie_same_site="none", anti_csrf="VIA_TOKEN").anti_csrf == "VIA_TOKEN"


def test_secret_is_hidden_from_repr() -> None:
    c = SessionConfig(signing_algorithm="HS256", signing_secret="super-secret-value-" * 3)
    assert "super-secret" not in repr(c)


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"signing_algorithm": "HS256"}, "signing_secret"),
        ({"signing_algorithm": "HS256", "signing_secret": "short"}, "at least 32"),
        ({"signing_secret": "x" * 40}, "only used with"),
        ({"signing_algorithm": "none"}, "signing_algorithm"),
        ({"signing_algorithm": "HS512"}, "signing_algorithm"),
        ({"cookie_same_site": "none", "cookie_secure": False}, "cookie_secure=True"),
        ({"cookie_same_site": "sometimes"}, "cookie_same_site"),
        ({"token_transfer_method": "query"}, "token_transfer_method"),
        ({"anti_csrf": "MAYBE"}, "anti_csrf"),
        ({"api_base_path": "auth"}, "start with '/'"),
        ({"api_base_path": "/auth/"}, "not end with '/'"),
        ({"access_token_validity": timedelta(0)}, "positive"),
        ({"access_token_validity": 3600}, "timedelta"),
        ({"refresh_token_validity": timedelta(minutes=30)}, "longer than access_token_validity"),
        ({"session_max_lifetime": timedelta(seconds=-1)}, "session_max_lifetime"),
        ({"refresh_token_grace_period": timedelta(seconds=-1)}, "refresh_token_grace_period"),
        ({"key_publish_ahead": timedelta(days=8)}, "key_publish_ahead"),
        ({"issuer": ""}, "issuer"),
        ({"session_expired_status_code": 200}, "4xx"),
        ({"session_expired_status_code": 403}, "must differ"),
        ({"verified_token_cache_size": -1}, "verified_token_cache_size"),
        ({"max_token_length": 10}, "max_token_length"),
        ({"cookie_domain": "a.com; evil"}, "cookie_domain"),
    ],
)
def test_invalid_values_are_refused_with_a_hint(kwargs: dict[str, Any], hint: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**kwargs)
    assert hint in str(info.value)


def test_hs256_with_bytes_secret() -> None:
    c = SessionConfig(signing_algorithm="HS256", signing_secret=b"\x01" * 32)
    assert c.signing_secret_bytes == b"\x01" * 32
