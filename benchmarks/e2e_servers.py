"""The servers of the end-to-end benchmark: uvicorn processes on 127.0.0.1, checked before any timing, always stopped.

A server is an app of ``e2e_apps.py`` with its environment; the benchmark starts one process per distinct server
and stops each through its own process handle (never by name), whatever ends the run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
BENCHMARKS = Path(__file__).resolve().parent
STARTUP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Server:
    """An app of ``e2e_apps.py`` (a factory unless ``factory`` is false) and the environment it runs with."""

    app: str
    factory: bool = True
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Running:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def uvicorn_options() -> tuple[list[str], str]:
    """uvicorn's options (httptools and uvloop when installed), and how the report describes the server."""
    options = ["--host", HOST, "--workers", "1", "--no-access-log", "--log-level", "warning", "--lifespan", "on"]
    if importlib.util.find_spec("httptools") and importlib.util.find_spec("uvloop"):
        return [*options, "--http", "httptools", "--loop", "uvloop"], "uvicorn --http httptools --loop uvloop, 1 worker"
    return options, "uvicorn (h11, asyncio: httptools/uvloop not installed), 1 worker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _start(server: Server, folder: Path, index: int) -> Running:
    port = _free_port()
    log = folder / f"server-{index}.log"
    factory = ["--factory"] if server.factory else []
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCHMARKS), *factory, server.app, "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - uvicorn, with our own interpreter and apps
            [*command, *uvicorn_options()[0]],
            env={**os.environ, **dict(server.env)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Running(f"http://{HOST}:{port}/", process, log)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (again after 2 s: uvicorn then stops waiting for open connections), SIGKILL what is left after 5 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    started, again = time.monotonic(), True
    while any(process.poll() is None for process in processes) and time.monotonic() - started < 5:
        if again and time.monotonic() - started > 2:
            again = False
            for process in processes:
                if process.poll() is None:
                    process.terminate()
        time.sleep(0.1)
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


@contextlib.contextmanager
def running(servers: Iterable[Server], folder: Path) -> Iterator[dict[Server, Running]]:
    """A process for each distinct server (output in ``folder``), started at once and always stopped."""
    started: dict[Server, Running] = {}
    try:
        for server in servers:
            if server not in started:
                started[server] = _start(server, folder, len(started))
        yield started
    finally:
        _stop([server.process for server in started.values()])


# -- the check before timing ----------------------------------------------------------------------------------------


class CheckFailed(Exception):
    """A server did not answer as its case expects."""


def _wait_until_answers(server: Running) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise CheckFailed("the server exited while starting")
        try:
            httpx.get(server.url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise CheckFailed(f"no answer at {server.url} within {STARTUP_TIMEOUT} s") from None
            time.sleep(0.1)  # polling a starting server


def _log_in(login: str | None, url: str) -> tuple[str, str]:
    """Log in as the case's client does; return the request header (name, value) that carries the token."""
    if login is None:
        return "X-Bench", "bare"
    response = httpx.post(url + "login", headers={"st-auth-mode": "header" if login == "bearer" else "cookie"})
    if response.status_code != 200:
        raise CheckFailed(f"login answered {response.status_code}")
    if login == "starlette":
        return "Cookie", f"session={response.cookies['session']}"
    if login == "bearer":
        return "Authorization", f"Bearer {response.headers['st-access-token']}"
    return "Cookie", f"sAccessToken={response.cookies['sAccessToken']}"


def check(server: Running, login: str | None, *, revocable: bool) -> str:
    """Wait for the server and check it answers as its case expects; return the header line to load it with.

    ``login``: how a client gets its token: ``None`` (nothing to check: 200 always), ``starlette`` (Starlette's
    session cookie), ``cookie`` or ``bearer`` (the access token). Expected: 200 with the token, 401 without; and,
    when ``revocable``, 401 with the token of a second session once ``POST /revoke`` revoked it.
    """
    _wait_until_answers(server)
    url = server.url
    name, value = _log_in(login, url)
    statuses = {"with the token": httpx.get(url, headers={name: value}).status_code}
    expected = {"with the token": 200}
    if login is not None:
        statuses["without a token"] = httpx.get(url).status_code
        expected["without a token"] = 401
    if revocable:
        doomed = dict([_log_in(login, url)])
        statuses["revoke"] = httpx.post(url + "revoke", headers=doomed).status_code
        statuses["after revoking"] = httpx.get(url, headers=doomed).status_code
        expected |= {"revoke": 200, "after revoking": 401}
    if statuses != expected:
        raise CheckFailed(f"expected {expected}, got {statuses}")
    return f"{name}: {value}"
