"""The framework integrations, each driven through its own test client; shared wire constants."""

from __future__ import annotations

EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
CLEAR_ACCESS = f"sAccessToken=; Path=/; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
CLEAR_REFRESH = (
    f"sRefreshToken=; Path=/auth/session/refresh; Expires={EPOCH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
)
CLEARING = sorted([CLEAR_ACCESS, CLEAR_REFRESH])
UNAUTHORISED = {"message": "unauthorised"}
TRY_REFRESH = {"message": "try refresh token"}
TWO_HOURS = 2 * 3600
