"""The built-in stores as factories for the conformance suite, and what each writes to disk."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from asgi_session.stores.base import SessionStore
from asgi_session.stores.memory import MemoryStore
from asgi_session.testing import PersistedReader, StoreFactory


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def sqlite_files() -> list[tuple[SessionStore, Path]]:
    """Each SQLite store the factory built, with its database path."""
    return []


@pytest.fixture
def store_factory(store_kind: str, tmp_path: Path, sqlite_files: list[tuple[SessionStore, Path]]) -> StoreFactory:
    if store_kind == "memory":
        return MemoryStore
    from asgi_session.stores.sqlite import SQLiteStore  # imported here so the memory half runs without it

    numbers = itertools.count()

    def new_sqlite_store() -> SessionStore:
        path = tmp_path / f"s{next(numbers)}.db"
        store = SQLiteStore(path)
        sqlite_files.append((store, path))
        return store

    return new_sqlite_store


@pytest.fixture
def persisted(store_kind: str, sqlite_files: list[tuple[SessionStore, Path]]) -> PersistedReader | None:
    if store_kind == "memory":
        return None

    async def read_database_and_wal(store: SessionStore) -> bytes:
        path = next(path for built, path in sqlite_files if built is store)
        chunks = []
        for candidate in (anyio.Path(path), anyio.Path(f"{path}-wal")):
            if await candidate.exists():
                chunks.append(await candidate.read_bytes())
        return b"".join(chunks)

    return read_database_and_wal
