"""Access-token verification against the bad-input catalogue (SECURITY.md: JWT structure, algorithm and signature,
header parameters, claims), driven through the offline API of a real SessionManager.

The oracle for every hostile token: ``TryRefreshTokenError`` (or its ``UnknownKeyError`` subclass) and nothing else,
no session returned, the token never in the exception chain or the log, and no store write. Structure and claim
cases are validly signed with the manager's own key, so each fails for the reason it names; positive controls show
that the same forging helpers produce tokens that verify, so the negative cases cannot pass vacuously.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import inspect
import json
import logging
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import anyio.from_thread
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

import asgi_session.tokens as tokens_module
from asgi_session import (
    SessionConfig,
    SessionManager,
    TryRefreshTokenError,
    UnauthorisedError,
)
from asgi_session.keys import SigningKey, VerificationKey, public_jwk
from asgi_session.stores.memory import MemoryStore
from asgi_session.testing import FakeClock
from asgi_session.tokens import UnknownKeyError, sign_access_token
from tests._helpers import P256_ORDER, CountingStore, assert_not_leaked, b64u, b64u_decode, examples, low_s

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
ACCESS_VALIDITY = 3600
ALGORITHMS = ("ES256", "RS256", "EdDSA", "HS256")
ASYMMETRIC = ("ES256", "RS256", "EdDSA")
HS256_SECRET = "x" * 32
REQUIRED_CLAIMS = (
    "sub",
    "exp",
    "iat",
    "iss",
    "tId",
    "rsub",
    "sessionHandle",
    "refreshTokenHash1",
    "parentRefreshTokenHash1",
    "antiCsrfToken",
)
# The order n of the P-256 group: r = s = n is the "psychic signature" of CVE-2022-21449.
_PYJWT = get_default_algorithms()


# -- helpers ----------------------------------------------------------------------------------------------------


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def as_bytes(value: Any) -> bytes:
    """Dicts and other JSON values are serialised compactly; ``bytes`` are used as is; ``str`` is raw JSON text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return compact(value)


@dataclass
class Ctx:
    """A live manager with one genuine session, and helpers to forge tokens signed with its real key."""

    manager: SessionManager
    store: CountingStore
    clock: FakeClock
    caplog: pytest.LogCaptureFixture
    algorithm: str
    access_token: str
    refresh_token: str
    header: dict[str, Any]
    claims: dict[str, Any]
    key: SigningKey
    vkey: VerificationKey
    _other_key: SigningKey | None = field(default=None, repr=False)

    @property
    def h(self) -> str:
        return self.access_token.split(".")[0]

    @property
    def p(self) -> str:
        return self.access_token.split(".")[1]

    @property
    def s(self) -> str:
        return self.access_token.split(".")[2]

    @property
    def kid(self) -> str:
        return self.key.kid

    def sign(self, header: Any, payload: Any, key: SigningKey | None = None) -> str:
        key = key or self.key
        signing_input = b64u(as_bytes(header)) + "." + b64u(as_bytes(payload))
        signature = _PYJWT[key.algorithm].sign(signing_input.encode("ascii"), key.private_key)
        if key.algorithm == "ES256":
            signature = low_s(signature)  # the one spelling verification accepts (high-S has its own tests)
        return signing_input + "." + b64u(signature)

    def with_claims(self, **changes: Any) -> str:
        return self.sign(self.header, {**self.claims, **changes})

    def without_claim(self, name: str) -> str:
        return self.sign(self.header, {k: v for k, v in self.claims.items() if k != name})

    def with_raw_claim(self, name: str, raw: str) -> str:
        """Sign the claims with ``name`` set to raw JSON text (for values ``json.dumps`` cannot produce)."""
        sentinel = "__RAW_VALUE__"
        text = json.dumps({**self.claims, name: sentinel}, separators=(",", ":"))
        return self.sign(self.header, text.replace(json.dumps(sentinel), raw))

    def with_header(self, **changes: Any) -> str:
        return self.sign({**self.header, **changes}, self.claims)

    def without_header(self, name: str) -> str:
        return self.sign({k: v for k, v in self.header.items() if k != name}, self.claims)

    def unsigned(self, header: Any, signature: str | None = None) -> str:
        """A token with this header, the genuine payload and the genuine (or the given) signature segment."""
        return b64u(as_bytes(header)) + "." + self.p + "." + (self.s if signature is None else signature)

    async def other_key(self) -> SigningKey:
        """The signing key of a second, unrelated manager of the same algorithm."""
        if self._other_key is None:
            config = _config(self.algorithm, secret="y" * 32)
            async with SessionManager(store=MemoryStore(), config=config, clock=FakeClock()) as other:
                self._other_key = await other.keys.signing_key()
        return self._other_key

    async def assert_rejected(self, token: object, **kwargs: Any) -> TryRefreshTokenError:
        """The oracle: TryRefreshTokenError (or UnknownKeyError) only, no leak, no store write."""
        self.store.reset()
        with pytest.raises(TryRefreshTokenError) as info:
            await self.manager.get_session_without_request_response(token, **kwargs)  # type: ignore[arg-type]
        assert type(info.value) in (TryRefreshTokenError, UnknownKeyError)
        assert_not_leaked([token], info.value, self.caplog)
        assert self.store.writes() == {}
        return info.value

    async def assert_accepted(self, token: str, **kwargs: Any) -> None:
        self.store.reset()
        session = await self.manager.get_session_without_request_response(token, **kwargs)
        assert session is not None
        assert session.user_id == "alice"
        assert session.handle == self.claims["sessionHandle"]
        assert self.store.writes() == {}


def _config(algorithm: str, secret: str = HS256_SECRET, **kwargs: Any) -> SessionConfig:
    if algorithm == "HS256":
        return SessionConfig(signing_algorithm="HS256", signing_secret=secret, **kwargs)
    return SessionConfig(signing_algorithm=algorithm, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def open_ctx(
    caplog: pytest.LogCaptureFixture, algorithm: str = "ES256", store: CountingStore | None = None, **config: Any
) -> AsyncIterator[Ctx]:
    caplog.set_level(logging.DEBUG, logger="asgi_session")
    store = store or CountingStore()
    clock = FakeClock()
    async with SessionManager(store=store, config=_config(algorithm, **config), clock=clock) as manager:
        session = await manager.create_new_session_without_request_response("alice")
        tokens = session.get_all_session_tokens_dangerously()
        access_token = tokens["accessToken"]
        header = json.loads(b64u_decode(access_token.split(".")[0]))
        claims = json.loads(b64u_decode(access_token.split(".")[1]))
        key = await manager.keys.signing_key()
        vkey = manager.keys.verification_key(key.kid)
        assert vkey is not None
        assert header["kid"] == key.kid
        assert header["alg"] == key.algorithm == algorithm
        store.reset()
        yield Ctx(
            manager=manager,
            store=store,
            clock=clock,
            caplog=caplog,
            algorithm=algorithm,
            access_token=access_token,
            refresh_token=tokens["refreshToken"],
            header=header,
            claims=claims,
            key=key,
            vkey=vkey,
        )


@pytest.fixture
async def ctx(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Ctx]:
    async with open_ctx(caplog) as context:
        yield context


Builder = Callable[[Ctx], "str | Awaitable[str]"]


async def build(builder: Builder, context: Ctx) -> str:
    token = builder(context)
    if inspect.isawaitable(token):
        token = await token
    assert isinstance(token, str)
    return token


async def check_catalogue_case(builder: Builder, context: Ctx) -> None:
    token = await build(builder, context)
    assert token != context.access_token
    await context.assert_rejected(token)
    await context.assert_rejected(token, check_database=True)
    # The genuine token still works afterwards: the hostile input changed nothing.
    await context.assert_accepted(context.access_token, check_database=True)


# -- positive controls ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_genuine_token_verifies(caplog: pytest.LogCaptureFixture, algorithm: str) -> None:
    async with open_ctx(caplog, algorithm) as c:
        await c.assert_accepted(c.access_token)
        await c.assert_accepted(c.access_token, check_database=True)
        await c.assert_accepted(c.access_token, tenant_id="public")
        assert set(REQUIRED_CLAIMS) <= set(c.claims)
        assert c.claims["exp"] == int(T0) + ACCESS_VALIDITY


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_forging_helper_produces_tokens_that_verify(caplog: pytest.LogCaptureFixture, algorithm: str) -> None:
    """The helpers that build the negative cases sign correctly: the same claims, re-signed, are accepted."""
    async with open_ctx(caplog, algorithm) as c:
        resigned = c.sign(c.header, c.claims)
        if algorithm != "ES256":  # deterministic signatures reproduce the genuine token byte for byte
            assert resigned == c.access_token
        await c.assert_accepted(resigned)
        await c.assert_accepted(c.with_claims(custom="claim"))
        await c.assert_accepted(c.with_raw_claim("exp", str(int(T0) + 10)))


async def test_oracle_helpers_can_fail(ctx: Ctx) -> None:
    """Controls for the oracle itself: the store counter sees writes, and the leak check sees a leaked token."""
    await ctx.manager.create_new_session_without_request_response("carol")
    assert ctx.store.writes() == {"create": 1}
    ctx.store.reset()
    assert await ctx.manager.revoke_session(ctx.claims["sessionHandle"])
    assert ctx.store.writes() == {"delete": 1}
    leaked = ValueError(f"bad token {ctx.access_token}")
    wrapped = TryRefreshTokenError("invalid access token")
    wrapped.__cause__ = leaked
    with pytest.raises(AssertionError):
        assert_not_leaked([ctx.access_token], wrapped, None)  # found in the cause
    logging.getLogger("asgi_session").info("token %s", ctx.access_token)
    with pytest.raises(AssertionError):
        assert_not_leaked([ctx.access_token], TryRefreshTokenError("clean"), ctx.caplog)


# -- JWT structure ----------------------------------------------------------------------------------------------


def _resign_until(c: Ctx, predicate: Callable[[str], bool]) -> str:
    """Re-sign the genuine claims until the signature segment satisfies ``predicate`` (ES256 is randomised)."""
    for _ in range(200):
        token = c.sign(c.header, c.claims)
        if predicate(token.split(".")[2]):
            return token
    raise AssertionError("no suitable signature found")


def _standard_alphabet_signature(c: Ctx, char: str) -> str:
    token = _resign_until(c, lambda sig: char in sig)
    h, p, s = token.split(".")
    standard = s.replace("-", "+").replace("_", "/")
    assert b64u_decode(s) == base64.b64decode(standard + "=" * (-len(standard) % 4))  # same signature bytes
    return f"{h}.{p}.{standard}"


def _nested(depth: int, opener: str, closer: str, leaf: str = "1") -> str:
    return opener * depth + leaf + closer * depth


NESTED_OBJECTS = _nested(1100, '{"a":', "}")
NESTED_ARRAYS = '{"alg":' + _nested(1100, "[", "]") + "}"

STRUCTURE_CASES: list[Any] = [
    pytest.param(lambda c: c.h, id="one-segment"),
    pytest.param(lambda c: f"{c.h}.{c.p}", id="two-segments"),
    pytest.param(lambda c: f"{c.access_token}.{c.s}", id="four-segments"),
    pytest.param(lambda c: f"{c.access_token}.", id="four-segments-trailing-dot"),
    pytest.param(lambda c: f"{c.access_token}.AAAA.BBBB", id="five-segments"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s}.{c.s}.{c.s}", id="five-segments-repeated-signature"),
    pytest.param(lambda c: f".{c.p}.{c.s}", id="empty-header-segment"),
    pytest.param(lambda c: f"{c.h}..{c.s}", id="empty-payload-segment"),
    pytest.param(lambda c: f"{c.h}.{c.p}.", id="empty-signature-segment"),
    pytest.param(lambda c: "..", id="all-segments-empty"),
    pytest.param(lambda c: "....", id="only-dots"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s}==", id="padding-on-signature"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s}=", id="single-padding-char-on-signature"),
    pytest.param(lambda c: f"{c.h}=.{c.p}.{c.s}", id="padding-on-header"),
    pytest.param(lambda c: f"{c.h}.{c.p}==.{c.s}", id="padding-on-payload"),
    pytest.param(lambda c: _standard_alphabet_signature(c, "-"), id="plus-in-signature-base64"),
    pytest.param(lambda c: _standard_alphabet_signature(c, "_"), id="slash-in-signature-base64"),
    pytest.param(
        lambda c: base64.b64encode(as_bytes(c.header)).decode() + f".{c.p}.{c.s}", id="standard-base64-padded-header"
    ),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s[:-1]}\u00e9", id="non-ascii-latin1-in-signature"),
    pytest.param(lambda c: f"{c.h}.{c.p[:10]}\uff21{c.p[10:]}.{c.s}", id="non-ascii-fullwidth-in-payload"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s[:10]}\u0663{c.s[11:]}", id="non-ascii-arabic-digit-in-signature"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s[:10]}\u200b{c.s[10:]}", id="zero-width-space-in-signature"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s[:10]}\n{c.s[10:]}", id="newline-inside-signature"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s[:10]} {c.s[10:]}", id="space-inside-signature"),
    pytest.param(lambda c: f"{c.access_token}\n", id="trailing-newline"),
    pytest.param(lambda c: f" {c.access_token}", id="leading-space"),
    pytest.param(lambda c: f"{c.access_token}\x00", id="trailing-nul"),
    pytest.param(lambda c: f"Bearer {c.access_token}", id="bearer-prefix"),
    pytest.param(lambda c: c.unsigned("[]"), id="header-json-empty-array"),
    pytest.param(lambda c: c.unsigned("1"), id="header-json-number"),
    pytest.param(lambda c: c.unsigned("null"), id="header-json-null"),
    pytest.param(lambda c: c.unsigned('"x"'), id="header-json-string"),
    pytest.param(lambda c: c.unsigned("{}"), id="header-json-empty-object"),
    pytest.param(lambda c: c.unsigned(b"\xff\xfe\xfd"), id="header-bad-utf8"),
    pytest.param(lambda c: c.unsigned(b'{"alg":"ES256","kid":"\xc3\x28"}'), id="header-bad-utf8-inside-string"),
    pytest.param(lambda c: c.unsigned(b"\xef\xbb\xbf" + compact(c.header)), id="header-utf8-bom"),
    pytest.param(lambda c: c.unsigned(compact(c.header)[:-1]), id="header-truncated-json"),
    pytest.param(lambda c: c.unsigned(b"\x00" * 16), id="header-nul-bytes"),
    pytest.param(lambda c: c.unsigned(NESTED_OBJECTS), id="header-nested-1100-objects"),
    pytest.param(lambda c: c.unsigned(NESTED_ARRAYS), id="header-nested-1100-arrays"),
    pytest.param(
        lambda c: c.sign(compact(c.header)[:-1] + b',"alg":"ES256"}', c.claims), id="header-duplicate-alg-signed"
    ),
    pytest.param(
        lambda c: c.sign(b'{"kid":"evil",' + compact(c.header)[1:], c.claims), id="header-duplicate-kid-signed"
    ),
    pytest.param(
        lambda c: c.sign(c.header, compact(c.claims)[:-1] + b',"sub":"mallory"}'), id="payload-duplicate-sub-signed"
    ),
    pytest.param(lambda c: c.sign(c.header, {**c.claims, "pad": "x" * 2**20}), id="signed-1-mib-payload"),
    pytest.param(lambda c: c.sign(c.header, {**c.claims, "pad": "x" * 15_000}), id="signed-20-kb-token"),
    pytest.param(lambda c: f"{c.h}.{'A' * 10 * 2**20}.{c.s}", id="10-mb-token"),
    pytest.param(lambda c: "a" * 10 * 2**20, id="10-mb-of-a"),
    pytest.param(lambda c: "a", id="one-char"),
    pytest.param(lambda c: ".", id="one-dot"),
    pytest.param(lambda c: c.refresh_token, id="refresh-token-as-access-token"),
]


@pytest.mark.parametrize("builder", STRUCTURE_CASES)
async def test_structure_catalogue(ctx: Ctx, builder: Builder) -> None:
    await check_catalogue_case(builder, ctx)


async def test_signed_duplicate_keys_helpers_are_otherwise_valid(ctx: Ctx) -> None:
    """Control for the duplicate-key cases: the same bytes without the duplicate verify."""
    await ctx.assert_accepted(ctx.sign(compact(ctx.header), compact(ctx.claims)))


@pytest.mark.parametrize("text", [NESTED_OBJECTS, NESTED_ARRAYS], ids=["objects", "arrays"])
async def test_deeply_nested_header_reaches_the_parser_and_is_rejected(
    caplog: pytest.LogCaptureFixture, text: str
) -> None:
    """With a raised length cap the nested header reaches the parser and is still 401.

    (Python 3.11 and older raise RecursionError inside json at this depth; 3.12+ parse it, and the header is refused
    for not being an object of the allowed parameters. Either way: "try refresh token".)
    """
    async with open_ctx(caplog, max_token_length=1_000_000) as c:
        await c.assert_rejected(c.unsigned(text))
        await c.assert_rejected(c.sign(text, c.claims))  # validly signed nested header
        # A validly signed token with a deeply nested custom claim: 3.11 and older hit RecursionError (a 401);
        # 3.12+ parse it and, being signed by us, it is a valid token. Either way nothing but those two outcomes.
        for deep in (_nested(1100, "[", "]"), _nested(1100, '{"a":', "}")):
            token = c.with_raw_claim("deep", deep)
            with suppress(TryRefreshTokenError):
                await c.manager.get_session_without_request_response(token)


async def test_signed_1_mib_payload_is_refused_by_the_length_cap_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Control: a big signed payload is refused by the length cap, not by anything else."""
    async with open_ctx(caplog, max_token_length=4 * 2**20) as c:
        big = c.sign(c.header, {**c.claims, "pad": "x" * 2**20})
        await c.assert_accepted(big)
    async with open_ctx(caplog) as c:
        await c.assert_rejected(c.sign(c.header, {**c.claims, "pad": "x" * 2**20}))


async def test_length_cap_boundary(caplog: pytest.LogCaptureFixture) -> None:
    """A token of exactly ``max_token_length`` characters is accepted; a cap one character shorter refuses it."""
    store = CountingStore()
    async with open_ctx(caplog, store=store) as c:
        length = len(c.access_token)
        for cap, accepted in ((length, True), (length - 1, False), (length + 1, True)):
            config = SessionConfig(max_token_length=cap)
            async with SessionManager(store=store, config=config, clock=c.clock) as other:  # same store: same keys
                if accepted:
                    session = await other.get_session_without_request_response(c.access_token)
                    assert session is not None
                    assert session.user_id == "alice"
                else:
                    with pytest.raises(TryRefreshTokenError) as info:
                        await other.get_session_without_request_response(c.access_token)
                    assert type(info.value) is TryRefreshTokenError


async def test_over_cap_token_is_refused_before_any_decoding(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()
    real_b64, real_json = tokens_module._b64url_decode, tokens_module._json_object

    def counting_b64(segment: str) -> bytes:
        calls["b64"] += 1
        return real_b64(segment)

    def counting_json(data: bytes) -> dict[str, Any]:
        calls["json"] += 1
        return real_json(data)

    monkeypatch.setattr(tokens_module, "_b64url_decode", counting_b64)
    monkeypatch.setattr(tokens_module, "_json_object", counting_json)
    for token in (
        ctx.sign(ctx.header, {**ctx.claims, "pad": "x" * 15_000}),
        f"{ctx.h}.{'A' * 10 * 2**20}.{ctx.s}",
        "." * 9000,
    ):
        await ctx.assert_rejected(token)
    assert calls == Counter()
    # Control: the counters do see a token under the cap being decoded (signature and payload at least; the
    # header of a known key may come from the verified-header cache).
    await ctx.assert_rejected(ctx.with_claims(iss="evil"))
    assert calls["b64"] >= 2


async def test_empty_and_missing_token_mean_no_session(ctx: Ctx) -> None:
    """``None`` and ``""`` are "no token" (documented on get_session_without_request_response)."""
    for token in (None, ""):
        ctx.store.reset()
        with pytest.raises(UnauthorisedError) as info:
            await ctx.manager.get_session_without_request_response(token)
        assert type(info.value) is UnauthorisedError
        assert info.value.clear_tokens is False
        assert await ctx.manager.get_session_without_request_response(token, session_required=False) is None
        assert ctx.store.writes() == {}


NON_STR_TOKENS: list[Any] = [
    pytest.param(lambda c: c.access_token.encode("ascii"), id="bytes"),
    pytest.param(lambda c: bytearray(c.access_token.encode("ascii")), id="bytearray"),
    pytest.param(lambda c: 12345, id="int"),
    pytest.param(lambda c: 1.5, id="float"),
    pytest.param(lambda c: True, id="true"),
    pytest.param(lambda c: (c.access_token,), id="tuple"),
    pytest.param(lambda c: [c.access_token], id="list"),
    pytest.param(lambda c: {"token": c.access_token}, id="dict"),
    pytest.param(lambda c: object(), id="object"),
]


@pytest.mark.parametrize("builder", NON_STR_TOKENS)
async def test_non_string_token(ctx: Ctx, builder: Callable[[Ctx], object]) -> None:
    token = builder(ctx)
    await ctx.assert_rejected(token)
    await ctx.assert_rejected(token, session_required=False)


# -- algorithm and signature ------------------------------------------------------------------------------------


def _hs256_with(c: Ctx, secret: bytes, **header: Any) -> str:
    header = {**c.header, "alg": "HS256", **header}
    signing_input = b64u(compact(header)) + "." + c.p
    tag = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64u(tag)


def _public_key_forms(public: Any) -> dict[str, bytes]:
    spki_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forms = {
        "pem-spki": spki_pem,
        "pem-spki-no-trailing-newline": spki_pem.rstrip(b"\n"),
        "der-spki": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "openssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
    }
    if isinstance(public, rsa.RSAPublicKey):
        forms["pem-pkcs1"] = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        forms["der-pkcs1"] = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(public, ec.EllipticCurvePublicKey):
        forms["x962-point"] = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    if isinstance(public, ed25519.Ed25519PublicKey):
        forms["raw"] = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return forms


def _jwk_forms(vkey: VerificationKey) -> dict[str, bytes]:
    jwk = public_jwk(vkey)
    pyjwt_jwk = _PYJWT[vkey.algorithm].to_jwk(vkey.public_key)
    return {
        "jwk-compact": compact(jwk),
        "jwk-spaced": json.dumps(jwk).encode(),
        "jwk-pyjwt": pyjwt_jwk.encode() if isinstance(pyjwt_jwk, str) else compact(pyjwt_jwk),
        "jwks-document": compact({"keys": [jwk]}),
    }


def _hs256_public_key_forms(algorithm: str) -> list[str]:
    forms = ["pem-spki", "pem-spki-no-trailing-newline", "der-spki", "openssh", "jwk-compact", "jwk-spaced"]
    forms += ["jwk-pyjwt", "jwks-document"]
    forms += {"RS256": ["pem-pkcs1", "der-pkcs1"], "ES256": ["x962-point"], "EdDSA": ["raw"]}[algorithm]
    return forms


HS256_PUBLIC_KEY_CASES = [
    pytest.param(algorithm, form, id=f"{algorithm}-{form}")
    for algorithm in ASYMMETRIC
    for form in _hs256_public_key_forms(algorithm)
]


@pytest.mark.parametrize(("algorithm", "form"), HS256_PUBLIC_KEY_CASES)
async def test_hs256_signed_with_the_public_key(caplog: pytest.LogCaptureFixture, algorithm: str, form: str) -> None:
    async with open_ctx(caplog, algorithm) as c:
        secret = {**_public_key_forms(c.vkey.public_key), **_jwk_forms(c.vkey)}[form]
        await c.assert_rejected(_hs256_with(c, secret))
        await c.assert_rejected(_hs256_with(c, secret, kid="attacker"))
        await c.assert_rejected(_hs256_with(c, secret, kid=None))
        await c.assert_accepted(c.access_token)


def _der_signature(c: Ctx) -> str:
    assert isinstance(c.key.private_key, ec.EllipticCurvePrivateKey)
    signing_input = f"{c.h}.{c.p}".encode("ascii")
    return f"{c.h}.{c.p}.{b64u(c.key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))}"


def _flip_signature_bit(c: Ctx, index: int, bit: int = 0) -> str:
    signature = bytearray(b64u_decode(c.s))
    signature[index] ^= 1 << bit
    return f"{c.h}.{c.p}.{b64u(bytes(signature))}"


def _flip_payload_bit(c: Ctx) -> str:
    payload = bytearray(b64u_decode(c.p))
    index = payload.index(b'"alice"') + 5  # 'e' -> 'd': still valid JSON, still the same shape
    payload[index] ^= 1
    assert json.loads(payload)["sub"] == "alicd"
    return f"{c.h}.{b64u(bytes(payload))}.{c.s}"


def _flip_header_bit(c: Ctx) -> str:
    header = bytearray(b64u_decode(c.h))
    index = header.index(b'"version":"5"') + len(b'"version":"')
    header[index] ^= 1  # "5" -> "4"
    assert json.loads(header)["version"] == "4"
    return f"{b64u(bytes(header))}.{c.p}.{c.s}"


def _reencoded_whitespace(c: Ctx) -> str:
    payload = json.dumps(c.claims).encode()  # same JSON value, different bytes
    assert json.loads(payload) == c.claims
    return f"{c.h}.{b64u(payload)}.{c.s}"


def _reencoded_standard_padded(c: Ctx) -> str:
    """The same payload bytes in the standard alphabet with padding (signed over the base64url form)."""
    for pad in range(3):
        h, p, s = c.with_claims(pad="p" * pad).split(".")
        standard = base64.b64encode(b64u_decode(p)).decode()
        if standard != p:
            return f"{h}.{standard}.{s}"
    raise AssertionError("unreachable: some padding length needs '=' padding")


def _noncanonical_payload(c: Ctx) -> str:
    """The same payload bytes with the unused low bits of the last base64 character set (a different string)."""
    for pad in range(3):
        token = c.with_claims(pad="p" * pad)
        h, p, s = token.split(".")
        if len(b64u_decode(p)) % 3:
            break
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    mutated = p[:-1] + alphabet[alphabet.index(p[-1]) | 1]
    assert mutated != p
    assert b64u_decode(mutated) == b64u_decode(p)
    return f"{h}.{mutated}.{s}"


async def _foreign_signature_same_kid(c: Ctx) -> str:
    other = await c.other_key()
    assert other.kid != c.kid
    return c.sign(c.header, c.claims, key=SigningKey(c.kid, other.algorithm, other.private_key))


async def _foreign_signature_foreign_kid_relabelled(c: Ctx) -> str:
    other = await c.other_key()
    return c.sign({**c.header, "kid": c.kid}, c.claims, key=other)


ALG_CASES: list[Any] = []
for _alg in ("none", "None", "NONE", "nOnE"):
    ALG_CASES += [
        pytest.param(lambda c, a=_alg: c.unsigned({**c.header, "alg": a}, ""), id=f"alg-{_alg}-empty-signature"),
        pytest.param(lambda c, a=_alg: c.unsigned({**c.header, "alg": a}), id=f"alg-{_alg}-with-signature"),
        pytest.param(lambda c, a=_alg: c.unsigned({"alg": a, "typ": "JWT"}, ""), id=f"alg-{_alg}-no-kid"),
    ]
ALG_CASES += [
    pytest.param(lambda c: c.without_header("alg"), id="alg-missing-signed"),
    pytest.param(lambda c: c.with_header(alg=["ES256"]), id="alg-list-signed"),
    pytest.param(lambda c: c.with_header(alg=256), id="alg-int-signed"),
    pytest.param(lambda c: c.with_header(alg=None), id="alg-null-signed"),
    pytest.param(lambda c: c.with_header(alg=""), id="alg-empty-string-signed"),
    pytest.param(lambda c: c.with_header(alg="es256"), id="alg-lowercase-signed"),
    pytest.param(lambda c: c.with_header(alg="ES256 "), id="alg-trailing-space-signed"),
    pytest.param(lambda c: c.with_header(alg={"name": "ES256"}), id="alg-object-signed"),
]
for _alg in ("RS256", "EdDSA", "HS256", "ES384", "ES512", "PS256", "ES256K", "HS512", "Ed25519"):
    ALG_CASES.append(
        pytest.param(lambda c, a=_alg: c.unsigned({**c.header, "alg": a}), id=f"alg-substituted-{_alg}-same-signature")
    )
ALG_CASES += [
    pytest.param(lambda c: f"{c.h}.{c.p}.{b64u(bytes(64))}", id="zero-es256-signature-64-bytes"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{b64u(bytes(1))}", id="zero-signature-1-byte"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{b64u(bytes(32))}", id="zero-signature-32-bytes"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{b64u(P256_ORDER.to_bytes(32, 'big') * 2)}", id="psychic-signature-r-s-n"),
    pytest.param(lambda c: f"{c.h}.{c.p}." + b64u(b"\xff" * 64), id="all-ones-signature"),
    pytest.param(lambda c: _flip_signature_bit(c, 0), id="signature-first-bit-flipped"),
    pytest.param(lambda c: _flip_signature_bit(c, 63, 7), id="signature-last-byte-flipped"),
    pytest.param(lambda c: _flip_signature_bit(c, 32), id="signature-s-bit-flipped"),
    pytest.param(_flip_payload_bit, id="payload-bit-flipped"),
    pytest.param(_flip_header_bit, id="header-bit-flipped"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{b64u(b64u_decode(c.s)[:-1])}", id="signature-truncated-1-byte"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{b64u(b64u_decode(c.s)[:32])}", id="signature-truncated-half"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s[:-2]}", id="signature-truncated-2-chars"),
    pytest.param(lambda c: f"{c.h}.{c.p}." + b64u(b64u_decode(c.s) + b"\x00"), id="signature-extra-byte"),
    pytest.param(lambda c: f"{c.h}.{c.p}.{c.s}{c.s}", id="signature-doubled"),
    pytest.param(_der_signature, id="signature-der-encoded"),
    pytest.param(_foreign_signature_same_kid, id="foreign-key-signature-same-kid"),
    pytest.param(_foreign_signature_foreign_kid_relabelled, id="foreign-key-signature-relabelled-kid"),
    pytest.param(_reencoded_whitespace, id="reencoded-payload-json-whitespace"),
    pytest.param(_reencoded_standard_padded, id="reencoded-payload-standard-base64"),
    pytest.param(_noncanonical_payload, id="reencoded-payload-noncanonical-base64"),
    pytest.param(lambda c: c.unsigned(json.dumps(c.header).encode()), id="reencoded-header-json-whitespace"),
    pytest.param(
        lambda c: c.with_header(alg="HS256")[: -len(c.s)] + b64u(c.manager.keys.refresh_mac_key),
        id="signature-is-the-refresh-mac-key",
    ),
]


@pytest.mark.parametrize("builder", ALG_CASES)
async def test_algorithm_and_signature_catalogue(ctx: Ctx, builder: Builder) -> None:
    await check_catalogue_case(builder, ctx)


async def test_reencoded_revoked_token_is_refused(ctx: Ctx) -> None:
    """A revoked session's token, re-encoded, gets past no check: blacklisting is by handle, the base64 differs."""
    assert await ctx.manager.revoke_session(ctx.claims["sessionHandle"])
    for token in (_reencoded_whitespace(ctx), _noncanonical_payload(ctx)):
        await ctx.assert_rejected(token, check_database=True)
    ctx.store.reset()
    with pytest.raises(UnauthorisedError):
        await ctx.manager.get_session_without_request_response(ctx.access_token, check_database=True)
    assert ctx.store.writes() == {}


def _high_s_signature(c: Ctx) -> str:
    """The other valid ECDSA signature of the same message: (r, n - s)."""
    raw = b64u_decode(c.s)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{c.h}.{c.p}." + b64u(r + (P256_ORDER - s).to_bytes(32, "big"))


def _noncanonical_signature(c: Ctx) -> str:
    """The same signature bytes with the unused low bits of the last base64 character set (a different string)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    s = c.s[:-1] + alphabet[alphabet.index(c.s[-1]) ^ 1]
    assert b64u_decode(s) == b64u_decode(c.s)
    return f"{c.h}.{c.p}.{s}"


async def test_our_es256_signatures_are_low_s(ctx: Ctx) -> None:
    for _ in range(64):  # a random-nonce signature is high-S half of the time unless normalised
        token = sign_access_token(ctx.claims, ctx.key)
        assert int.from_bytes(b64u_decode(token.split(".")[2])[32:], "big") <= P256_ORDER // 2


@pytest.mark.parametrize("respell", [_noncanonical_signature, _high_s_signature], ids=["base64-bits", "high-s"])
async def test_a_respelled_signature_is_refused_even_while_the_session_lives(
    ctx: Ctx, respell: Callable[[Ctx], str]
) -> None:
    """Security finding 10: one token has one spelling (canonical base64url, low-S ECDSA), never two."""
    variant = respell(ctx)
    assert variant != ctx.access_token
    with pytest.raises(TryRefreshTokenError) as info:
        await ctx.manager.get_session_without_request_response(variant)
    assert_not_leaked([variant], info.value, ctx.caplog)
    assert await ctx.manager.get_session_without_request_response(ctx.access_token) is not None


async def test_revoked_session_is_refused_in_every_encoding_of_its_token(ctx: Ctx) -> None:
    """Blacklisting is keyed on the handle: other strings carrying the same signed claims are refused too."""
    variants = [ctx.access_token, _noncanonical_signature(ctx), _high_s_signature(ctx)]
    session = await ctx.manager.get_session_without_request_response(ctx.access_token)  # verified and cached
    assert session is not None
    assert session.handle == ctx.claims["sessionHandle"]
    assert await ctx.manager.revoke_session(ctx.claims["sessionHandle"])
    for token in variants:
        ctx.store.reset()
        with pytest.raises((TryRefreshTokenError, UnauthorisedError)) as info:
            await ctx.manager.get_session_without_request_response(token, check_database=True)
        assert_not_leaked([token], info.value, ctx.caplog)
        assert ctx.store.writes() == {}


CROSS_ALGORITHM_ATTACKS: dict[str, Builder] = {
    "alg-none-empty-signature": lambda c: c.unsigned({**c.header, "alg": "none"}, ""),
    "alg-none-with-signature": lambda c: c.unsigned({**c.header, "alg": "none"}),
    "zero-signature-same-length": lambda c: f"{c.h}.{c.p}.{b64u(bytes(len(b64u_decode(c.s))))}",
    "signature-bit-flipped": lambda c: _flip_signature_bit(c, 0),
    "payload-bit-flipped": _flip_payload_bit,
    "signature-truncated": lambda c: f"{c.h}.{c.p}.{b64u(b64u_decode(c.s)[:-1])}",
    "foreign-key-same-kid": _foreign_signature_same_kid,
    "reencoded-payload": _reencoded_whitespace,
    "missing-claim-sub": lambda c: c.without_claim("sub"),
    "expired-by-one-second": lambda c: c.with_claims(exp=int(T0)),
}
CROSS_ALGORITHM_CASES = [
    pytest.param(algorithm, attack, id=f"{algorithm}-{attack}")
    for algorithm in ALGORITHMS
    for attack in CROSS_ALGORITHM_ATTACKS
] + [
    pytest.param(algorithm, f"substituted-{other}", id=f"{algorithm}-substituted-{other}")
    for algorithm in ALGORITHMS
    for other in ALGORITHMS
    if other != algorithm
]


@pytest.mark.parametrize(("algorithm", "attack"), CROSS_ALGORITHM_CASES)
async def test_algorithm_attacks_for_every_configured_algorithm(
    caplog: pytest.LogCaptureFixture, algorithm: str, attack: str
) -> None:
    async with open_ctx(caplog, algorithm) as c:
        if attack.startswith("substituted-"):
            other = attack.removeprefix("substituted-")
            token = c.unsigned({**c.header, "alg": other})
        else:
            token = await build(CROSS_ALGORITHM_ATTACKS[attack], c)
        await c.assert_rejected(token)
        await c.assert_rejected(token, check_database=True)
        await c.assert_accepted(c.access_token)


async def test_hs256_token_signed_with_another_secret(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, "HS256") as c:
        for secret in (b"y" * 32, HS256_SECRET[:-1].encode(), HS256_SECRET.encode() * 2, b""):
            await c.assert_rejected(_hs256_with(c, secret))
        await c.assert_accepted(_hs256_with(c, HS256_SECRET.encode()))  # control: the right secret verifies


# -- header parameters ------------------------------------------------------------------------------------------


@dataclass
class Attacker:
    key: ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]
    certificate: str


def _attacker() -> Attacker:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    jwk = json.loads(_PYJWT["ES256"].to_jwk(key.public_key()))
    der = certificate.public_bytes(serialization.Encoding.DER)
    return Attacker(key=key, jwk=jwk, certificate=base64.b64encode(der).decode())


def _attacker_signed(c: Ctx, **header: Any) -> str:
    """Signed with the attacker's own key, which the header tries to make us trust."""
    attacker = _attacker()
    key = SigningKey(c.kid, "ES256", attacker.key)
    values = {"jwk": attacker.jwk, "x5c": [attacker.certificate]}
    return c.sign({**c.header, **{k: values.get(k, v) for k, v in header.items()}}, c.claims, key=key)


async def _unknown_kid_other_ring(c: Ctx) -> str:
    other = await c.other_key()
    return c.sign({**c.header, "kid": other.kid}, c.claims, key=other)


HEADER_CASES: list[Any] = [
    pytest.param(lambda c: c.without_header("kid"), id="kid-missing-signed"),
    pytest.param(lambda c: c.with_header(kid="../../etc/passwd"), id="kid-path-traversal"),
    pytest.param(lambda c: c.with_header(kid="' OR 1=1 --"), id="kid-sql-injection"),
    pytest.param(lambda c: c.with_header(kid="k" * 5000), id="kid-5000-chars"),
    pytest.param(lambda c: c.with_header(kid=1), id="kid-int"),
    pytest.param(lambda c: c.with_header(kid=None), id="kid-null"),
    pytest.param(lambda c: c.with_header(kid=[c.kid]), id="kid-list-of-real-kid"),
    pytest.param(lambda c: c.with_header(kid={"kid": c.kid}), id="kid-object"),
    pytest.param(lambda c: c.with_header(kid=""), id="kid-empty"),
    pytest.param(lambda c: c.with_header(kid=c.kid + "\x00"), id="kid-real-plus-nul"),
    pytest.param(lambda c: c.with_header(kid=c.kid.upper()), id="kid-real-uppercased"),
    pytest.param(lambda c: c.with_header(kid="refresh-mac"), id="kid-refresh-mac"),
    pytest.param(
        lambda c: c.sign(
            {**c.header, "alg": "HS256", "kid": "refresh-mac"},
            c.claims,
            key=SigningKey("refresh-mac", "HS256", c.manager.keys.refresh_mac_key),
        ),
        id="kid-refresh-mac-hs256-signed-with-the-mac-key",
    ),
    pytest.param(_unknown_kid_other_ring, id="kid-unknown-other-ring-signed-by-it"),
    pytest.param(lambda c: c.with_header(jku="http://127.0.0.1:9/jwks.json"), id="jku-signed-with-real-key"),
    pytest.param(lambda c: c.with_header(x5u="https://127.0.0.1:9/cert.pem"), id="x5u-signed-with-real-key"),
    pytest.param(lambda c: _attacker_signed(c, jku="http://127.0.0.1:9/jwks.json"), id="jku-attacker-signed"),
    pytest.param(lambda c: _attacker_signed(c, x5u="http://127.0.0.1:9/cert.pem"), id="x5u-attacker-signed"),
    pytest.param(lambda c: _attacker_signed(c, jwk=None), id="jwk-embedded-attacker-key"),
    pytest.param(lambda c: _attacker_signed(c, x5c=None), id="x5c-attacker-certificate"),
    pytest.param(lambda c: c.with_header(jwk=public_jwk(c.vkey)), id="jwk-embedded-real-key"),
    pytest.param(lambda c: c.with_header(x5t="AAAA"), id="x5t-signed"),
    pytest.param(lambda c: c.with_header(crit=["exp"], exp=int(T0) + 10), id="crit-exp"),
    pytest.param(lambda c: c.with_header(crit=[]), id="crit-empty-list"),
    pytest.param(lambda c: c.with_header(crit=["b64"], b64=False), id="crit-b64-false"),
    pytest.param(lambda c: c.with_header(b64=False), id="b64-false"),
    pytest.param(lambda c: c.with_header(cty="JWT"), id="cty-nested-jwt"),
    pytest.param(lambda c: c.with_header(zip="DEF"), id="zip-deflate"),
    pytest.param(lambda c: c.with_header(enc="A256GCM"), id="enc-jwe"),
    pytest.param(lambda c: c.with_header(foo="bar"), id="unknown-parameter"),
    pytest.param(lambda c: c.with_header(typ="JWE"), id="typ-not-jwt"),
    pytest.param(lambda c: c.with_header(version=5), id="version-not-a-string"),
]


@pytest.fixture
def network_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) any outbound connection or DNS lookup attempted while the test runs."""
    calls: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise OSError(f"network access attempted: {name}")

        return method

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    return calls


@pytest.mark.parametrize("builder", HEADER_CASES)
async def test_header_parameter_catalogue(ctx: Ctx, builder: Builder, network_calls: list[str]) -> None:
    await check_catalogue_case(builder, ctx)
    assert network_calls == []


async def test_network_guard_detects_connections(network_calls: list[str]) -> None:
    """Control for the guard above: a real connection attempt is caught and recorded."""
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9))
    with socket.socket() as sock, pytest.raises(OSError, match="network access attempted"):
        sock.connect(("127.0.0.1", 9))
    assert network_calls == ["socket.create_connection", "socket.connect"]


async def test_unknown_kid_raises_unknown_key_error(ctx: Ctx) -> None:
    token = await _unknown_kid_other_ring(ctx)
    exc = await ctx.assert_rejected(token)
    assert type(exc) is UnknownKeyError
    exc = await ctx.assert_rejected(ctx.with_header(kid="../../etc/passwd"))
    assert type(exc) is UnknownKeyError


async def test_unknown_kids_reload_the_ring_at_most_once_per_second(ctx: Ctx) -> None:
    """Hostile kids cannot hammer the store: well-formed unknown kids re-read the ring rate-limited, odd kids never."""
    ctx.store.reset()
    for i in range(50):
        await ctx.assert_rejected(ctx.with_header(kid=f"d-{i}-deadbeef"))
    for kid in ("../../etc/passwd", "' OR 1=1 --", "k" * 5000):
        await ctx.assert_rejected(ctx.with_header(kid=kid))
    first_window = ctx.store.calls["get_keys"]
    assert first_window <= 1
    ctx.clock.advance(1.5)
    for i in range(50):
        await ctx.assert_rejected(ctx.with_header(kid=f"e-{i}-deadbeef"))
    assert ctx.store.calls["get_keys"] - first_window <= 1
    assert ctx.store.writes() == {}


# -- claims (validly signed) ------------------------------------------------------------------------------------

NOW = int(T0)
CLAIM_CASES: list[Any] = [
    pytest.param(lambda c, n=name: c.without_claim(n), id=f"missing-{name}") for name in REQUIRED_CLAIMS
]
CLAIM_CASES += [
    pytest.param(lambda c: c.with_claims(exp=str(NOW + 3600)), id="exp-string"),
    pytest.param(lambda c: c.with_claims(exp=1e308), id="exp-1e308"),
    pytest.param(lambda c: c.with_claims(exp=NOW + 3600.5), id="exp-float"),
    pytest.param(lambda c: c.with_claims(exp=float(NOW + 3600)), id="exp-integral-float"),
    pytest.param(lambda c: c.with_raw_claim("exp", "Infinity"), id="exp-infinity"),
    pytest.param(lambda c: c.with_raw_claim("exp", "-Infinity"), id="exp-minus-infinity"),
    pytest.param(lambda c: c.with_raw_claim("exp", "NaN"), id="exp-nan"),
    pytest.param(lambda c: c.with_raw_claim("exp", "1e999"), id="exp-1e999-overflows-to-inf"),
    pytest.param(lambda c: c.with_claims(exp=None), id="exp-null"),
    pytest.param(lambda c: c.with_claims(exp=[NOW + 3600]), id="exp-list"),
    pytest.param(lambda c: c.with_claims(exp={"v": NOW + 3600}), id="exp-object"),
    pytest.param(lambda c: c.with_claims(exp=True), id="exp-true"),
    pytest.param(lambda c: c.with_raw_claim("exp", "9" * 5000), id="exp-5000-digit-integer"),
    pytest.param(lambda c: c.with_claims(exp=NOW), id="exp-equal-to-now"),
    pytest.param(lambda c: c.with_claims(exp=NOW - 1), id="exp-in-the-past"),
    pytest.param(lambda c: c.with_claims(exp=0), id="exp-zero"),
    pytest.param(lambda c: c.with_claims(exp=-(2**63)), id="exp-huge-negative"),
    pytest.param(lambda c: c.with_claims(iat="now"), id="iat-string"),
    pytest.param(lambda c: c.with_claims(iat=None), id="iat-null"),
    pytest.param(lambda c: c.with_claims(iat=NOW + 0.5), id="iat-float"),
    pytest.param(lambda c: c.with_raw_claim("iat", "NaN"), id="iat-nan"),
    pytest.param(lambda c: c.with_claims(iss="evil"), id="iss-wrong"),
    pytest.param(lambda c: c.with_claims(iss="asgi-sessio"), id="iss-prefix"),
    pytest.param(lambda c: c.with_claims(iss="asgi-session2"), id="iss-with-suffix"),
    pytest.param(lambda c: c.with_claims(iss="asgi-session "), id="iss-trailing-space"),
    pytest.param(lambda c: c.with_claims(iss="asgi-session\x00"), id="iss-trailing-nul"),
    pytest.param(lambda c: c.with_claims(iss="ASGI-SESSION"), id="iss-uppercase"),
    pytest.param(lambda c: c.with_claims(iss=""), id="iss-empty"),
    pytest.param(lambda c: c.with_claims(iss=None), id="iss-null"),
    pytest.param(lambda c: c.with_claims(iss=["asgi-session"]), id="iss-list"),
    pytest.param(lambda c: c.with_claims(sub=1), id="sub-int"),
    pytest.param(lambda c: c.with_claims(sub=None, rsub=None), id="sub-null"),
    pytest.param(lambda c: c.with_claims(sub=["alice"], rsub=["alice"]), id="sub-list"),
    pytest.param(lambda c: c.with_claims(sub={"id": "alice"}), id="sub-object"),
    pytest.param(lambda c: c.with_claims(sub="", rsub=""), id="sub-empty"),
    pytest.param(lambda c: c.with_claims(rsub="mallory"), id="rsub-differs-from-sub"),
    pytest.param(lambda c: c.with_claims(sub="mallory"), id="sub-differs-from-rsub"),
    pytest.param(lambda c: c.with_claims(tId=1), id="tid-int"),
    pytest.param(lambda c: c.with_claims(tId=""), id="tid-empty"),
    pytest.param(lambda c: c.with_claims(sessionHandle=1), id="session-handle-int"),
    pytest.param(lambda c: c.with_claims(sessionHandle=""), id="session-handle-empty"),
    pytest.param(lambda c: c.with_claims(refreshTokenHash1=None), id="refresh-token-hash-null"),
    pytest.param(lambda c: c.with_claims(parentRefreshTokenHash1=1), id="parent-refresh-token-hash-int"),
    pytest.param(lambda c: c.with_claims(parentRefreshTokenHash1=["x"]), id="parent-refresh-token-hash-list"),
    pytest.param(lambda c: c.with_claims(antiCsrfToken=1), id="anti-csrf-token-int"),
    pytest.param(lambda c: c.with_claims(antiCsrfToken={"t": "x"}), id="anti-csrf-token-object"),
    pytest.param(lambda c: c.with_raw_claim("custom", "NaN"), id="custom-claim-nan"),
    pytest.param(lambda c: c.sign(c.header, "[]"), id="payload-json-array"),
    pytest.param(lambda c: c.sign(c.header, "null"), id="payload-json-null"),
    pytest.param(lambda c: c.sign(c.header, '"x"'), id="payload-json-string"),
    pytest.param(lambda c: c.sign(c.header, "1"), id="payload-json-number"),
    pytest.param(lambda c: c.sign(c.header, "{}"), id="payload-json-empty-object"),
    pytest.param(lambda c: c.sign(c.header, b"\xff\xfe"), id="payload-bad-utf8"),
    pytest.param(lambda c: c.sign(c.header, b""), id="payload-empty"),
]


@pytest.mark.parametrize("builder", CLAIM_CASES)
async def test_claims_catalogue(ctx: Ctx, builder: Builder) -> None:
    await check_catalogue_case(builder, ctx)


async def test_exp_boundary(ctx: Ctx) -> None:
    """Valid while ``now < exp``: ``exp == now`` is refused, ``exp == now + 1`` accepted (positive control)."""
    at_now, one_later = ctx.with_claims(exp=NOW), ctx.with_claims(exp=NOW + 1)
    await ctx.assert_rejected(at_now)
    await ctx.assert_accepted(one_later)
    ctx.clock.set(T0 + 0.999)
    await ctx.assert_accepted(ctx.with_claims(exp=NOW + 1))  # a fresh (uncached) token just before exp
    await ctx.assert_accepted(one_later)  # the cached one too
    ctx.clock.set(T0 + 1)
    await ctx.assert_rejected(one_later)  # cached, but now expired
    await ctx.assert_rejected(ctx.with_claims(exp=NOW + 1))  # uncached


async def test_cached_token_is_refused_after_exp(ctx: Ctx) -> None:
    await ctx.assert_accepted(ctx.access_token)  # verified once: now in the cache
    assert len(ctx.manager._cache) == 1  # the case really exercises the cache
    exp = ctx.claims["exp"]
    ctx.clock.set(exp - 1)
    await ctx.assert_accepted(ctx.access_token)
    ctx.clock.set(exp)
    await ctx.assert_rejected(ctx.access_token)
    ctx.clock.set(exp + 3600)
    await ctx.assert_rejected(ctx.access_token)


async def test_issuer_positive_control(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, issuer="https://auth.example") as c:
        await c.assert_accepted(c.with_claims(iss="https://auth.example"))
        await c.assert_rejected(c.with_claims(iss="asgi-session"))
        await c.assert_rejected(c.with_claims(iss="https://auth.example/"))


async def _assert_unauthorised(c: Ctx, token: str, **kwargs: Any) -> None:
    c.store.reset()
    with pytest.raises(UnauthorisedError) as info:
        await c.manager.get_session_without_request_response(token, **kwargs)
    assert type(info.value) is UnauthorisedError
    assert_not_leaked([token], info.value, c.caplog)
    assert c.store.writes() == {}


async def test_revoked_session_with_check_database(ctx: Ctx) -> None:
    await ctx.assert_accepted(ctx.access_token, check_database=True)  # control, and now cached
    assert await ctx.manager.revoke_session(ctx.claims["sessionHandle"])
    await _assert_unauthorised(ctx, ctx.access_token, check_database=True)
    # Without the database check a revoked session's token lives until its exp (documented).
    await ctx.assert_accepted(ctx.access_token, check_database=False)
    await _assert_unauthorised(ctx, ctx.access_token, check_database=True)


async def test_revoked_session_with_blacklisting_config(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog, access_token_blacklisting=True) as c:
        await c.assert_accepted(c.access_token)
        assert await c.manager.revoke_session(c.claims["sessionHandle"])
        await _assert_unauthorised(c, c.access_token)


async def test_signed_token_for_a_handle_that_never_existed(ctx: Ctx) -> None:
    token = ctx.with_claims(sessionHandle="00000000-0000-4000-8000-000000000000")
    session = await ctx.manager.get_session_without_request_response(token)
    assert session is not None  # signature and claims are fine; only the store knows
    await _assert_unauthorised(ctx, token, check_database=True)


async def test_other_tenant(ctx: Ctx) -> None:
    await _assert_unauthorised(ctx, ctx.access_token, tenant_id="other")
    await ctx.assert_accepted(ctx.access_token, tenant_id="public")
    forged = ctx.with_claims(tId="other")  # validly signed, claims another tenant than the stored session's
    await _assert_unauthorised(ctx, forged, tenant_id="public")
    await _assert_unauthorised(ctx, forged, check_database=True)


async def test_other_tenants_session(caplog: pytest.LogCaptureFixture) -> None:
    async with open_ctx(caplog) as c:
        session = await c.manager.create_new_session_without_request_response("bob", tenant_id="other")
        token = session.get_all_session_tokens_dangerously()["accessToken"]
        c.store.reset()
        await _assert_unauthorised(c, token, tenant_id="public")
        verified = await c.manager.get_session_without_request_response(token, tenant_id="other", check_database=True)
        assert verified is not None
        assert verified.tenant_id == "other"


# -- property tests ---------------------------------------------------------------------------------------------


@dataclass
class PropertyState:
    manager: SessionManager
    store: CountingStore
    token: str


async def _open_property_state() -> PropertyState:
    store = CountingStore()
    manager = SessionManager(store=store, config=SessionConfig(), clock=FakeClock())
    await manager.open()
    session = await manager.create_new_session_without_request_response("alice")
    store.reset()
    return PropertyState(
        manager=manager, store=store, token=session.get_all_session_tokens_dangerously()["accessToken"]
    )


@pytest.fixture(scope="module")
def property_state() -> Iterator[tuple[anyio.from_thread.BlockingPortal, PropertyState]]:
    """One manager on an event loop in a background thread, shared by every Hypothesis example."""
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        state = portal.call(_open_property_state)
        try:
            yield portal, state
        finally:
            portal.call(state.manager.close)


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _equivalent(mutated: str, original: str) -> bool:
    """Whether ``mutated`` is the same token: identical, or a signature segment that decodes to the same bytes."""
    if mutated == original:
        return True
    parts, reference = mutated.split("."), original.split(".")
    if len(parts) != 3 or parts[:2] != reference[:2] or not _SEGMENT.fullmatch(parts[2]):
        return False
    try:
        return b64u_decode(parts[2]) == b64u_decode(reference[2])
    except ValueError:
        return False


def _verify(portal: anyio.from_thread.BlockingPortal, state: PropertyState, token: str) -> str:
    """Return "accepted" or "rejected", enforcing the oracle on the way."""
    state.store.reset()
    error: Exception | None = None
    session = None
    try:
        session = portal.call(state.manager.get_session_without_request_response, token)
    except (TryRefreshTokenError, UnauthorisedError) as exc:
        error = exc
    assert state.store.writes() == {}
    if isinstance(error, UnauthorisedError):
        assert token == ""  # "no token" is the only way to get here
        return "rejected"
    if error is not None:
        assert type(error) in (TryRefreshTokenError, UnknownKeyError)
        if len(token) >= 21:  # longer than any fixed message, so a match would be a leak
            assert_not_leaked([token], error, None)
        return "rejected"
    assert session is not None
    assert session.user_id == "alice"
    return "accepted"


@settings(max_examples=examples(2000), deadline=None, database=None)
@given(token=st.text(max_size=400))
def test_property_arbitrary_text_is_rejected(
    property_state: tuple[anyio.from_thread.BlockingPortal, PropertyState], token: str
) -> None:
    portal, state = property_state
    assert _verify(portal, state, token) == "rejected"


@settings(max_examples=examples(2000), deadline=None, database=None)
@given(data=st.binary(max_size=400))
def test_property_arbitrary_latin1_bytes_are_rejected(
    property_state: tuple[anyio.from_thread.BlockingPortal, PropertyState], data: bytes
) -> None:
    portal, state = property_state
    assert _verify(portal, state, data.decode("latin-1")) == "rejected"


_MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(1, 255)),
        st.tuples(st.just("insert"), st.integers(0, 2**16), st.characters()),
        st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 8)),
    ),
    min_size=1,
    max_size=4,
)


def _mutate(token: str, mutations: list[tuple[str, int, Any]]) -> str:
    chars = list(token)
    for kind, position, argument in mutations:
        if kind == "insert":
            chars.insert(position % (len(chars) + 1), argument)
        elif chars and kind == "flip":
            index = position % len(chars)
            chars[index] = chr(ord(chars[index]) ^ argument)
        elif chars:
            index = position % len(chars)
            del chars[index : index + argument]
    return "".join(chars)


@settings(max_examples=examples(2000), deadline=None, database=None)
@given(mutations=_MUTATIONS)
def test_property_mutated_genuine_token(
    property_state: tuple[anyio.from_thread.BlockingPortal, PropertyState], mutations: list[tuple[str, int, Any]]
) -> None:
    portal, state = property_state
    mutated = _mutate(state.token, mutations)
    outcome = _verify(portal, state, mutated)
    if mutated == state.token:
        assert outcome == "accepted"
    elif not _equivalent(mutated, state.token):
        assert outcome == "rejected"


def test_property_genuine_token_is_accepted(
    property_state: tuple[anyio.from_thread.BlockingPortal, PropertyState],
) -> None:
    """Control for the properties: the shared manager accepts its genuine token."""
    portal, state = property_state
    assert _verify(portal, state, state.token) == "accepted"
    assert _mutate(state.token, [("flip", 0, 0)]) == state.token


@settings(max_examples=examples(2000), deadline=None, database=None)
@given(segment=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=100))
def test_property_canonical_check_agrees_with_re_encoding(segment: str) -> None:
    """The canonical-base64url shortcut answers exactly as decoding, re-encoding and comparing would."""
    if len(segment) % 4 == 1:  # no byte string encodes to this length
        assert not tokens_module._canonical_b64url(segment)
        return
    assert tokens_module._canonical_b64url(segment) == (
        tokens_module._b64url(tokens_module._b64url_decode(segment)) == segment
    )
