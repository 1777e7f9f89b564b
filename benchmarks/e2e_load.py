"""The load of the end-to-end benchmark: wrk (how to call it, how to read it), or a bounded Python generator.

The Python generator is for machines without wrk: ``connections`` keep-alive HTTP/1.1 connections sending ``GET``
requests back to back for ``duration`` seconds, counting 2xx/3xx answers apart from the others. On a small machine
it may saturate before uvicorn does, so its ratios can understate the differences between the cases: they are not
comparable with wrk's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    """One load run: its rate (None when the loader printed none), whether any request failed, what it printed."""

    requests_per_second: float | None
    errors: bool
    output: str

    @classmethod
    def from_wrk(cls, output: str) -> LoadResult:
        rates = [line.split()[1] for line in output.splitlines() if line.startswith("Requests/sec:")]
        errors = "Non-2xx" in output or "Socket errors" in output
        return cls(float(rates[0]) if rates else None, errors, output)


def wrk_available() -> bool:
    """Whether wrk is on PATH, after installing it with apt-get when it is not and that is possible (as root)."""
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=False)  # noqa: S607
    return shutil.which("wrk") is not None


def wrk_command(url: str, header: str, connections: int, seconds: int) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", header, url]


def run_wrk(url: str, header: str, connections: int, seconds: int) -> LoadResult:
    """Run wrk in a child process; an interrupt (Ctrl-C) stops it at once."""
    loader = subprocess.Popen(  # noqa: S603 - wrk, with our own arguments
        wrk_command(url, header, connections, seconds), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output = loader.communicate()[0].decode(errors="replace")
    finally:
        if loader.poll() is None:
            loader.kill()
            loader.wait()
    return LoadResult.from_wrk(output)


async def python_load(url: str, header: str, connections: int, duration: float) -> LoadResult:
    """The bounded Python load generator; its output is written in wrk's words."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    request = f"GET {parsed.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{header}\r\n\r\n".encode("latin-1")
    counts = {"ok": 0, "other": 0}
    deadline = time.perf_counter() + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                counts["ok" if 200 <= status < 400 else "other"] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    rate = (counts["ok"] + counts["other"]) / (time.perf_counter() - start)
    output = f"Requests/sec: {rate:.2f}"
    if counts["other"]:
        output = f"  Non-2xx or 3xx responses: {counts['other']}\n{output}"
    return LoadResult(rate, counts["other"] > 0, output)
