"""Checks of the key ring's storage: ``add_key``, ``get_keys`` and ``delete_keys``."""

from __future__ import annotations

import dataclasses

from ._check import StoreFactory, store_check
from ._expect import expect_equal, expect_keys
from ._records import DAY, T0, make_key


@store_check("keys_add_get")
async def keys_add_get(factory: StoreFactory) -> None:
    """``add_key`` inserts once (the first key wins); ``get_keys`` orders by signs_from then kid."""
    b = make_key("kid-b", T0 + 10)
    a = make_key("kid-a", T0 + 10, expires_at=T0 + 90 * DAY, algorithm="RS256")  # ties with b: kid decides
    c = make_key("kid-c", T0, algorithm="refresh-mac", private_key="c2VjcmV0LW1hYy1rZXk=")
    d = make_key("kid-0", T0 + 20, algorithm="EdDSA", created_at=T0 + 5)
    async with factory() as store:
        expect_keys(await store.get_keys(), [], "get_keys on an empty store")
        for key in (b, d, a, c):
            expect_equal(await store.add_key(key), True, f"add_key({key.kid!r})")
        usurper = dataclasses.replace(b, private_key="other", algorithm="HS256", signs_from=T0 - 1)
        expect_equal(await store.add_key(usurper), False, "add_key with an existing kid")
        expect_keys(await store.get_keys(), [c, a, b, d], "get_keys")


@store_check("keys_delete")
async def keys_delete(factory: StoreFactory) -> None:
    """``delete_keys`` counts only the keys that existed, once each."""
    keys = [make_key("kid-a", T0), make_key("kid-b", T0 + 1), make_key("kid-c", T0 + 2)]
    async with factory() as store:
        for key in keys:
            await store.add_key(key)
        expect_equal(await store.delete_keys([]), 0, "delete_keys of no kids")
        expect_equal(await store.delete_keys(["kid-b", "kid-x", "kid-b"]), 1, "delete_keys with extras")
        expect_keys(await store.get_keys(), [keys[0], keys[2]], "get_keys after delete_keys")
        expect_equal(await store.delete_keys(["kid-b"]), 0, "delete_keys of a deleted kid")
        expect_equal(await store.delete_keys(["kid-a", "kid-c"]), 2, "delete_keys of the rest")
        expect_keys(await store.get_keys(), [], "get_keys after deleting every key")
        expect_equal(await store.add_key(keys[1]), True, "add_key of a deleted kid")
