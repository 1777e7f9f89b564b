"""Real servers for the end-to-end tests: uvicorn in a thread of this process, or a server in a process of its own.

Either way the server listens on a free port of 127.0.0.1, a start waits (bounded) until it answers, and a stop
always happens and is bounded. A process is stopped through its own handle (a signal, then SIGKILL for what is
left), never by name, so nothing else on the machine is touched. A process's output goes to files, so a server that
fails to start can say why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
PORT_ATTEMPTS = 3


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (another process may take it before the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_answers(
    url: str,
    *,
    alive: Callable[[], bool] = lambda: True,
    started: Callable[[], bool] = lambda: True,
    ready: Callable[[httpx.Response], bool] = lambda response: True,
    describe: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``GET url`` until ``ready`` accepts the answer, for at most ``STARTUP_TIMEOUT`` seconds.

    Args:
        url: what to poll.
        alive: false once the server is gone: fail at once (``RuntimeError``) instead of waiting out the timeout.
        started: false while polling is pointless (uvicorn has not bound its socket yet).
        ready: whether an answer means the server is up (any answer, by default).
        describe: text to add to an error (the server's output).
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if not alive():
            raise RuntimeError(f"the server for {url} stopped while starting{describe()}")
        if started():
            try:
                if ready(httpx.get(url, timeout=1.0)):
                    return
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {STARTUP_TIMEOUT} s{describe()}")
        time.sleep(0.02)  # polling a starting server; no test time is simulated by this


# -- uvicorn in a thread -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, *, lifespan: Literal["on", "off"] = "on") -> Iterator[str]:
    """Run ``app`` on uvicorn in a thread (lifespan on, or ``"off"`` for an app without one, such as Django's);
    yield its base URL; always stop it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no other process can take the port meanwhile
    port = sock.getsockname()[1]
    # ws="none": the apps have no websockets, and the websockets package may warn (warnings are errors here).
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_answers(base_url, alive=thread.is_alive, started=lambda: server.started)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        sock.close()
    assert not thread.is_alive(), "the server did not shut down"


# -- a server in a process of its own ----------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server running ``python ARGUMENTS --port PORT``, its output in two files."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """The end of what the server printed, for an error message."""
        out = self.stdout.read_text(errors="replace")[-2000:]
        err = self.stderr.read_text(errors="replace")[-2000:]
        return f"{out}\n{err}"

    def describe(self) -> str:
        return f" (server {self.name}):\n{self.output()}"

    def wait_until_ready(self, path: str = "/", status: int | None = None) -> None:
        """Wait until ``GET path`` answers (with ``status``, when given); fail at once if the process exits."""
        wait_until_answers(
            self.url + path,
            alive=lambda: self.process.poll() is None,
            ready=lambda response: status is None or response.status_code == status,
            describe=self.describe,
        )


Environment = Mapping[str, "str | None"]
"""Changes to this process's environment for a server: a value to set, or ``None`` to remove the variable."""


def spawn_server(
    name: str, arguments: Sequence[str], *, folder: Path, cwd: Path, env: Environment | None = None
) -> ServerProcess:
    """Start ``python ARGUMENTS --port PORT`` on a free port, without waiting for it; its output goes to ``folder``."""
    port = free_port()
    stdout, stderr = folder / f"{name}-{port}.out", folder / f"{name}-{port}.err"
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for variable, value in (env or {}).items():
        if value is None:
            environ.pop(variable, None)
        else:
            environ[variable] = value
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603 - our own code, with our own interpreter
            [sys.executable, *arguments, "--port", str(port)],
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return ServerProcess(name, f"http://127.0.0.1:{port}", process, stdout, stderr)


def start_server(
    name: str,
    arguments: Sequence[str],
    *,
    folder: Path,
    cwd: Path,
    env: Environment | None = None,
    path: str = "/",
    status: int | None = None,
    started: list[ServerProcess],
) -> ServerProcess:
    """Spawn a server and wait until it is ready; a port taken between choosing it and binding it is chosen again.

    Every process spawned is appended to ``started`` at once, so the caller's ``finally`` stops it whatever happens.
    """
    for _ in range(PORT_ATTEMPTS):
        server = spawn_server(name, arguments, folder=folder, cwd=cwd, env=env)
        started.append(server)
        try:
            server.wait_until_ready(path, status)
            return server
        except RuntimeError:
            if "address already in use" not in server.output().lower():
                raise
            started.remove(server)  # it has exited: nothing to stop
    raise RuntimeError(f"server {name}: no free port after {PORT_ATTEMPTS} attempts")


def stop_servers(servers: Sequence[ServerProcess], how: signal.Signals = signal.SIGTERM) -> None:
    """Send ``how`` to each server still running, wait for all (bounded), then SIGKILL what is left."""
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(how)
    deadline = time.monotonic() + STOP_TIMEOUT
    for server in servers:
        try:
            server.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=STOP_TIMEOUT)
