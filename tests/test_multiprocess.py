"""Several uvicorn processes on one store behave as one system (SQLite file, Redis, PostgreSQL).

Three worker processes serve ``tests/_multiprocess_app.py`` on 127.0.0.1, all on one store, with access-token
blacklisting on. A session made by one worker verifies and refreshes on the others; the signing key the first worker
made is the one every worker loads; ``revoke_all_sessions_for_user``, called by one worker or by another process, is
honoured by every worker on its very next request; a key rotated by one worker verifies everywhere.

The rotation test runs on the real clock (the workers are separate processes): a 3 s rotation interval with 1 s of
publish-ahead, so it takes about 4 s per store. Every process is stopped in ``finally``; waits are bounded.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asgi_session import SessionManager
from asgi_session.stores import KeyRecord, store_from_url
from tests._helpers import b64u_json, cookieless_jar
from tests._multiprocess_app import config_from_environment
from tests._servers import ServerProcess, spawn_server, start_server, stop_servers
from tests._store_urls import STORE_KINDS, shared_store_url

ROOT = Path(__file__).resolve().parent.parent
REFRESH = "/auth/session/refresh"
UNAUTHORISED = {"message": "unauthorised"}
ROTATION_SECONDS = 3.0
PUBLISH_AHEAD_SECONDS = 1.0
ROTATION_TIMEOUT = 10.0


# -- worker processes ---------------------------------------------------------------------------------------------

WORKER_ARGUMENTS = [
    "-m",
    "uvicorn",
    "--factory",
    "tests._multiprocess_app:app_from_environment",
    "--host",
    "127.0.0.1",
    "--lifespan",
    "on",
    "--ws",
    "none",
    "--log-level",
    "warning",
    "--no-access-log",
]


@contextlib.contextmanager
def running_workers(
    store_url: str, folder: Path, env: dict[str, str] | None = None, *, together: bool = False
) -> Iterator[list[ServerProcess]]:
    """Start worker ``a`` and wait for it (it creates the keys), then ``b``, then ``c``; always stop them.

    ``together``: start all three at once instead, racing to create the schema and the keys. A worker is ready when
    ``GET /health`` answers 200: its lifespan opened the store and loaded the keys. Stopping is SIGTERM (uvicorn
    closes the store on lifespan shutdown), then SIGKILL for what is left.
    """
    workers: list[ServerProcess] = []

    def worker_env(name: str) -> dict[str, str]:
        return {**(env or {}), "STORE_URL": store_url, "WORKER": name}

    try:
        if together:
            for name in ("a", "b", "c"):
                workers.append(spawn_server(name, WORKER_ARGUMENTS, folder=folder, cwd=ROOT, env=worker_env(name)))
            for worker in workers:
                worker.wait_until_ready("/health", 200)
        else:
            for name in ("a", "b", "c"):
                start_server(
                    name,
                    WORKER_ARGUMENTS,
                    folder=folder,
                    cwd=ROOT,
                    env=worker_env(name),
                    path="/health",
                    status=200,
                    started=workers,
                )
        yield workers
    finally:
        stop_servers(workers)


# -- HTTP helpers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    access: str
    refresh: str

    @property
    def kid(self) -> str:
        kid: str = b64u_json(self.access.split(".")[0])["kid"]
        return kid

    @property
    def iat(self) -> int:
        iat: int = b64u_json(self.access.split(".")[1])["iat"]
        return iat


@dataclass
class Cluster:
    kind: str
    store_url: str
    workers: list[ServerProcess]
    client: httpx.Client

    def worker(self, name: str) -> ServerProcess:
        return next(worker for worker in self.workers if worker.name == name)

    def login(self, name: str, user: str) -> tuple[dict[str, Any], Tokens]:
        response = self.client.post(self.worker(name).url + "/login", params={"user": user})
        assert response.status_code == 200, response.text
        assert response.json()["worker"] == name
        return response.json(), _tokens(response)

    def me(self, name: str, tokens: Tokens) -> httpx.Response:
        return self.client.get(self.worker(name).url + "/me", headers={"cookie": f"sAccessToken={tokens.access}"})

    def signout(self, name: str, tokens: Tokens) -> httpx.Response:
        return self.client.post(
            self.worker(name).url + "/auth/signout", headers={"cookie": f"sAccessToken={tokens.access}"}
        )

    def refresh(self, name: str, refresh_token: str) -> httpx.Response:
        return self.client.post(self.worker(name).url + REFRESH, headers={"cookie": f"sRefreshToken={refresh_token}"})


def _tokens(response: httpx.Response) -> Tokens:
    return Tokens(access=response.cookies["sAccessToken"], refresh=response.cookies["sRefreshToken"])


@contextlib.contextmanager
def cluster_on(
    kind: str, store_url: str, folder: Path, env: dict[str, str] | None = None, *, together: bool = False
) -> Iterator[Cluster]:
    with (
        running_workers(store_url, folder, env, together=together) as workers,
        # The tests send each token by hand, to the worker they choose: the client's jar keeps nothing.
        httpx.Client(timeout=10.0, cookies=cookieless_jar()) as client,
    ):
        yield Cluster(kind, store_url, workers, client)


# -- the store, read from this process ----------------------------------------------------------------------------


def offline_revoke_all(store_url: str, user: str) -> list[str]:
    async def revoke() -> list[str]:
        async with SessionManager(store=store_from_url(store_url), config=config_from_environment({})) as manager:
            return await manager.revoke_all_sessions_for_user(user)

    return anyio.run(revoke)


def stored_keys(store_url: str) -> list[KeyRecord]:
    async def read() -> list[KeyRecord]:
        async with store_from_url(store_url) as store:
            return await store.get_keys()

    return anyio.run(read)


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=STORE_KINDS)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three workers on one store of each kind, shared by the tests of this module that do not rotate keys."""
    kind: str = request.param
    folder = tmp_path_factory.mktemp(f"multiprocess-{kind}")
    with shared_store_url(kind, request, folder) as store_url, cluster_on(kind, store_url, folder) as running:
        yield running


@pytest.fixture(params=STORE_KINDS)
def rotating_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Three workers on a fresh store, rotating the signing key every 3 s (published 1 s ahead)."""
    kind: str = request.param
    env = {"KEY_ROTATION_SECONDS": str(ROTATION_SECONDS), "KEY_PUBLISH_AHEAD_SECONDS": str(PUBLISH_AHEAD_SECONDS)}
    with shared_store_url(kind, request, tmp_path) as store_url, cluster_on(kind, store_url, tmp_path, env) as running:
        yield running


@pytest.fixture(params=STORE_KINDS)
def racing_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Three workers started at the same moment on a fresh store."""
    kind: str = request.param
    with (
        shared_store_url(kind, request, tmp_path) as store_url,
        cluster_on(kind, store_url, tmp_path, together=True) as running,
    ):
        yield running


# -- the tests ----------------------------------------------------------------------------------------------------


def test_the_workers_are_separate_processes_on_one_store(cluster: Cluster) -> None:
    pids = {cluster.client.get(worker.url + "/health").json()["pid"] for worker in cluster.workers}
    assert len(pids) == 3
    assert os.getpid() not in pids


def test_a_session_made_by_one_worker_verifies_and_refreshes_on_the_others(cluster: Cluster) -> None:
    created, first = cluster.login("a", "alice")
    for name in ("a", "b", "c"):
        response = cluster.me(name, first)
        assert response.status_code == 200, (name, response.text)
        assert response.json() == {**created, "worker": name, "pid": response.json()["pid"]}

    refreshed = cluster.refresh("b", first.refresh)
    assert refreshed.status_code == 200, refreshed.text
    second = _tokens(refreshed)
    assert second.access != first.access
    assert second.refresh != first.refresh
    for name in ("a", "c"):
        response = cluster.me(name, second)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["handle"] == created["handle"]

    # The parent presented again on another worker within the grace window (a response lost on the way to the
    # client): worker c derives the very child worker b issued, with the refresh MAC key they share.
    again = cluster.refresh("c", first.refresh)
    assert again.status_code == 200, again.text
    assert _tokens(again).refresh == second.refresh

    # And the chain goes on from a third worker.
    third = cluster.refresh("a", second.refresh)
    assert third.status_code == 200, third.text
    response = cluster.me("b", _tokens(third))
    assert response.status_code == 200
    assert response.json()["handle"] == created["handle"]


def test_the_first_workers_signing_key_is_the_one_every_worker_loads(cluster: Cluster) -> None:
    rings = {name: cluster.client.get(cluster.worker(name).url + "/keys").json()["kids"] for name in ("a", "b", "c")}
    assert len(rings["a"]) == 1, rings
    assert rings["b"] == rings["a"]
    assert rings["c"] == rings["a"]
    (kid,) = rings["a"]
    # Only worker a created a key: b and c loaded it from the store rather than making their own.
    signing = [key for key in stored_keys(cluster.store_url) if key.algorithm != "refresh-mac"]
    assert [key.kid for key in signing] == [kid]
    for maker in ("a", "b", "c"):
        _, tokens = cluster.login(maker, f"key-user-{maker}")
        assert tokens.kid == kid
        for verifier in ("a", "b", "c"):
            assert cluster.me(verifier, tokens).status_code == 200, (maker, verifier)


@pytest.mark.parametrize("revoker", ["worker c", "another process"])
def test_revoke_all_in_one_process_is_honoured_by_every_worker_on_the_next_request(
    cluster: Cluster, revoker: str
) -> None:
    user = f"carol-{revoker.replace(' ', '-')}"
    created_a, on_a = cluster.login("a", user)
    created_b, on_b = cluster.login("b", user)
    bystander_info, bystander = cluster.login("c", f"dave-{revoker.replace(' ', '-')}")
    # Every worker verifies every token first, so each holds them in its verified-token cache.
    for tokens in (on_a, on_b, bystander):
        for name in ("a", "b", "c"):
            assert cluster.me(name, tokens).status_code == 200

    if revoker == "worker c":
        response = cluster.client.post(cluster.worker("c").url + "/revoke-all", params={"user": user})
        assert response.status_code == 200, response.text
        revoked = response.json()["revoked"]
    else:
        revoked = offline_revoke_all(cluster.store_url, user)
    assert sorted(revoked) == sorted([created_a["handle"], created_b["handle"]])

    for tokens in (on_a, on_b):
        for name in ("a", "b", "c"):
            response = cluster.me(name, tokens)
            assert response.status_code == 401, (name, response.text)
            assert response.json() == UNAUTHORISED
            assert cluster.refresh(name, tokens.refresh).status_code == 401
    for name in ("a", "b", "c"):
        response = cluster.me(name, bystander)
        assert response.status_code == 200
        assert response.json()["handle"] == bystander_info["handle"]


def test_a_sign_out_on_one_worker_is_honoured_by_the_others_on_the_next_request(cluster: Cluster) -> None:
    _, tokens = cluster.login("a", "frank")
    for name in ("a", "b", "c"):  # each worker caches the verified token first
        assert cluster.me(name, tokens).status_code == 200
    assert cluster.signout("b", tokens).status_code == 200
    for name in ("a", "b", "c"):
        response = cluster.me(name, tokens)
        assert response.status_code == 401, (name, response.text)
        assert response.json() == UNAUTHORISED


def test_a_key_rotated_by_one_worker_verifies_everywhere(rotating_cluster: Cluster) -> None:
    cluster = rotating_cluster
    _, old = cluster.login("a", "erin")
    first_kid = old.kid
    # Log in on the workers in turn until one signs with a newer key (the real clock: about 3 s).
    deadline = time.monotonic() + ROTATION_TIMEOUT
    attempt = 0
    while True:
        maker = "abc"[attempt % 3]
        _, new = cluster.login(maker, f"erin-{attempt}")
        if new.kid != first_kid:
            break
        attempt += 1
        assert time.monotonic() < deadline, f"no worker signed with a new key within {ROTATION_TIMEOUT} s"
        time.sleep(0.05)  # polling the servers while the real clock reaches the rotation

    # The new key was published (written to the store) before it signed anything, and one rotation made one key.
    keys = {key.kid: key for key in stored_keys(cluster.store_url) if key.algorithm != "refresh-mac"}
    rotated = keys[new.kid]
    assert rotated.signs_from - rotated.created_at >= PUBLISH_AHEAD_SECONDS - 0.01
    assert new.iat >= math.floor(rotated.signs_from)
    starts = sorted(key.signs_from for key in keys.values())
    assert all(later - earlier >= ROTATION_SECONDS - 1e-6 for earlier, later in itertools.pairwise(starts)), starts

    # Every worker accepts the token signed with the new key, and still the one signed with the old key.
    for name in ("a", "b", "c"):
        assert cluster.me(name, new).status_code == 200, (maker, name)
        assert cluster.me(name, old).status_code == 200, name
    # And every worker moves on to a newer key by itself (it re-reads the ring at least once a second), and what
    # it signs verifies everywhere.
    for name in ("a", "b", "c"):
        _, tokens = cluster.login(name, f"erin-{name}")
        while tokens.kid == first_kid:
            assert time.monotonic() < deadline + ROTATION_TIMEOUT, f"worker {name} never signed with a newer key"
            time.sleep(0.05)  # polling the servers
            _, tokens = cluster.login(name, f"erin-{name}")
        for verifier in ("a", "b", "c"):
            assert cluster.me(verifier, tokens).status_code == 200, (name, verifier)


def test_workers_started_together_on_a_fresh_store_agree(racing_cluster: Cluster) -> None:
    cluster = racing_cluster
    # They raced to create the schema, the refresh MAC key and a signing key: whatever each made, a session made by
    # any worker verifies on every worker, and they share one MAC key (a parent replayed on another worker within
    # the grace window gets the very child the first worker issued).
    for maker, replayer in (("a", "b"), ("b", "c"), ("c", "a")):
        _, tokens = cluster.login(maker, f"frank-{maker}")
        for verifier in ("a", "b", "c"):
            assert cluster.me(verifier, tokens).status_code == 200, (maker, verifier)
        first = cluster.refresh(maker, tokens.refresh)
        again = cluster.refresh(replayer, tokens.refresh)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert _tokens(again).refresh == _tokens(first).refresh
    macs = [key for key in stored_keys(cluster.store_url) if key.algorithm == "refresh-mac"]
    assert len(macs) == 1
