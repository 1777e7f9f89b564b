"""Checks on many sessions at once: listing and revoking by user and tenant, expiry, a thousand sessions."""

from __future__ import annotations

import uuid

from ..stores.base import SessionRecord
from ._check import StoreFactory, store_check
from ._expect import expect_equal, expect_record, expect_records, expect_sorted_handles
from ._records import DAY, T0, handle_of, make_record


def _tenancy_layout() -> dict[int, SessionRecord]:
    """Sessions of user-1 in tenants A, B and public, and of lookalike users, by number in creation order."""
    records = [
        make_record(4, tenant_id="tenant-a", created_at=T0 + 5),  # ties with 2 and 3: the handle decides
        make_record(1, tenant_id="tenant-a", created_at=T0 + 10),
        make_record(6, tenant_id="public", created_at=T0 + 20, expires_at=T0 + 30),  # expired, not deleted
        make_record(3, tenant_id="tenant-b", created_at=T0 + 5),
        make_record(2, tenant_id="tenant-a", created_at=T0 + 5),
        make_record(5, user_id="user-2", tenant_id="tenant-a", created_at=T0),
        make_record(7, user_id="user-10", tenant_id="tenant-a", created_at=T0),  # a prefix match is no match
        make_record(8, user_id="USER-1", tenant_id="tenant-b", created_at=T0),  # nor a case-insensitive one
    ]
    return {uuid.UUID(record.handle).int: record for record in records}


@store_check("list_for_user")
async def list_for_user(factory: StoreFactory) -> None:
    """Listing is per user, per tenant or across tenants, ordered by created_at then handle, expired included."""
    records = _tenancy_layout()
    async with factory() as store:
        expect_records(await store.list_for_user("user-1"), [], "list_for_user on an empty store")
        for record in records.values():
            await store.create(record)
        expected = {
            None: [2, 3, 4, 1, 6],
            "tenant-a": [2, 4, 1],
            "tenant-b": [3],
            "public": [6],
            "tenant-c": [],
        }
        for tenant, numbers in expected.items():
            expect_records(
                await store.list_for_user("user-1", tenant),
                [records[n] for n in numbers],
                f"list_for_user('user-1', {tenant!r})",
            )
        expect_records(await store.list_for_user("user-2"), [records[5]], "list_for_user('user-2')")
        expect_records(await store.list_for_user("user-2", "tenant-b"), [], "list_for_user of another tenant")
        expect_records(await store.list_for_user("nobody"), [], "list_for_user of an unknown user")


@store_check("delete_for_user")
async def delete_for_user(factory: StoreFactory) -> None:
    """Tenant-scoped revocation spares other tenants and users; unscoped revocation takes every tenant."""
    records = _tenancy_layout()
    async with factory() as store:
        for record in records.values():
            await store.create(record)
        deleted = await store.delete_for_user("user-1", "tenant-a")
        expect_sorted_handles(deleted, [handle_of(n) for n in (1, 2, 4)], "delete_for_user('user-1', 'tenant-a')")
        expect_records(
            await store.list_for_user("user-1"), [records[3], records[6]], "user-1 after the tenant-a delete"
        )
        for n in (5, 7, 8):
            expect_record(await store.get(handle_of(n)), records[n], "another user's session")
        expect_equal(await store.delete_for_user("user-1", "tenant-a"), [], "repeating the tenant-a delete")
        expect_equal(await store.delete_for_user("user-1", "tenant-c"), [], "delete_for_user of an empty tenant")
        deleted = await store.delete_for_user("user-1")
        expect_sorted_handles(deleted, [handle_of(3), handle_of(6)], "delete_for_user('user-1') across tenants")
        expect_records(await store.list_for_user("user-1"), [], "user-1 after deleting every tenant")
        for n in (5, 7, 8):
            expect_record(await store.get(handle_of(n)), records[n], "another user's session")
        expect_equal(await store.delete_for_user("nobody"), [], "delete_for_user of an unknown user")


@store_check("delete_expired")
async def delete_expired(factory: StoreFactory) -> None:
    """``delete_expired(now)`` deletes exactly the sessions with ``expires_at <= now`` and counts them."""
    now = T0 + 1000
    gone = [
        make_record(1, expires_at=now - 60),
        make_record(2, expires_at=now, tenant_id="tenant-a"),  # the boundary is expired
    ]
    kept = [
        make_record(3, expires_at=now + 0.125),
        make_record(4, expires_at=now + DAY, user_id="user-2", last_seen=T0 - DAY),
    ]
    async with factory() as store:
        expect_equal(await store.delete_expired(now), 0, "delete_expired on an empty store")
        for record in gone + kept:
            await store.create(record)
        expect_equal(await store.delete_expired(now), 2, f"delete_expired({now}) count")
        for record in gone:
            expect_equal(await store.get(record.handle), None, f"get of a session that expired at {record.expires_at}")
        for record in kept:
            expect_record(await store.get(record.handle), record, "a session not yet expired")
        expect_equal(await store.delete_expired(now), 0, "repeating delete_expired")
        expect_equal(await store.delete_expired(now + 0.125), 1, "delete_expired one tick later")
        expect_record(await store.get(kept[1].handle), kept[1], "a session not yet expired")


@store_check("many_sessions")
async def many_sessions(factory: StoreFactory) -> None:
    """1,000 sessions of 50 users in 3 tenants are listed and revoked exactly."""
    tenants = ("public", "tenant-a", "tenant-b")
    users = [f"user-{u:02d}" for u in range(50)]
    records = [
        make_record(
            i + 1,
            user_id=users[i % 50],
            tenant_id=tenants[(i // 50) % 3],
            created_at=T0 + ((i * 7) % 13) * 0.125,
        )
        for i in range(1000)
    ]
    ordered = sorted(records, key=lambda record: (record.created_at, record.handle))
    by_tenant = {tenant: {record.handle for record in records if record.tenant_id == tenant} for tenant in tenants}
    async with factory() as store:
        for record in records:
            await store.create(record)
        for u, user in enumerate(users):
            mine = [record for record in ordered if record.user_id == user]
            expect_records(await store.list_for_user(user), mine, f"list_for_user({user!r})")
            tenant = tenants[u % 3]
            scoped = [record for record in mine if record.tenant_id == tenant]
            expect_records(await store.list_for_user(user, tenant), scoped, f"list_for_user({user!r}, {tenant!r})")
        for u, user in enumerate(users):
            remaining = [record.handle for record in records if record.user_id == user]
            if u % 2:
                tenant = tenants[u % 3]
                in_tenant = [handle for handle in remaining if handle in by_tenant[tenant]]
                deleted = await store.delete_for_user(user, tenant)
                expect_sorted_handles(deleted, in_tenant, f"delete_for_user({user!r}, {tenant!r})")
                remaining = [handle for handle in remaining if handle not in in_tenant]
            expect_sorted_handles(await store.delete_for_user(user), remaining, f"delete_for_user({user!r})")
            if u + 1 < len(users):
                left = await store.list_for_user(users[u + 1])
                expect_equal(len(left), 20, f"number of sessions of {users[u + 1]!r}, not yet revoked")
        expect_equal(await store.delete_expired(T0 + 1000 * DAY), 0, "sessions left after revoking every user")
