"""The admin commands (``asgi-session sessions ...`` and ``keys ...``) run as the real console script.

Each store kind (a SQLite file, Redis, PostgreSQL) gets the same walk through every command in a subprocess, with
the sessions made beforehand by a ``SessionManager`` on the same store, and checked through it afterwards. Usage
errors, unreachable stores (the password never printed), the help examples and the progress bar are checked once.
"""

from __future__ import annotations

import io
import json
import os
import pty
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from asgi_session import SessionConfig, SessionManager, UnauthorisedError, cli
from asgi_session._cli_common import Progress, _RichBar, redact_url
from asgi_session.stores import store_from_url
from asgi_session.testing import FakeClock
from tests._store_urls import STORE_KINDS, shared_store_url

SCRIPT = Path(sys.executable).with_name("asgi-session")
DAY = 86400.0


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(*args: str, store: str | None = None, env: dict[str, str] | None = None) -> Result:
    command = [str(SCRIPT), *args]
    if store is not None:
        command += ["--store", store]
    environment = {k: v for k, v in os.environ.items() if k != "ASGI_SESSION_STORE_URL"}
    environment.update(env or {})
    done = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        command, capture_output=True, text=True, timeout=60, check=False, env=environment
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass
class Population:
    alice_public: str
    alice_other: str
    bob: str
    carol_expired: str


async def populate(url: str) -> Population:
    """Alice: one session in ``public``, one in ``other``; Bob: one; Carol: one that expired a day ago."""
    past = FakeClock(time.time() - 101 * DAY)  # refresh_token_validity is 100 days
    async with SessionManager(store=store_from_url(url), clock=past) as old:
        carol = await old.create_new_session_without_request_response("carol")
    async with SessionManager(store=store_from_url(url)) as manager:
        first = await manager.create_new_session_without_request_response(
            "alice", session_data_in_database={"cart": 3}, user_agent="Firefox/130", ip="127.0.0.1"
        )
        other = await manager.create_new_session_without_request_response("alice", "other", {"role": "admin"})
        bob = await manager.create_new_session_without_request_response("bob")
    return Population(first.handle, other.handle, bob.handle, carol.handle)


async def live_handles(url: str, user: str) -> list[str]:
    async with SessionManager(store=store_from_url(url)) as manager:
        return await manager.get_all_session_handles_for_user(user)


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with shared_store_url(request.param, request, tmp_path) as url:
        yield url


def test_every_command_on_a_store(store_url: str) -> None:
    people = anyio.run(populate, store_url)

    listed = run("sessions", "list", "--user", "alice", store=store_url)
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split() == ["HANDLE", "TENANT", "CREATED", "LAST", "SEEN", "EXPIRES", "USER", "AGENT", "IP"]
    assert [row.split()[0] for row in rows] == [people.alice_public, people.alice_other]
    assert "Firefox/130" in rows[0]
    assert "127.0.0.1" in rows[0]

    one_tenant = run("sessions", "list", "--user", "alice", "--tenant", "other", "--json", store=store_url)
    assert one_tenant.code == 0
    sessions = one_tenant.json()["sessions"]
    assert [(s["handle"], s["tenant_id"], s["user_id"]) for s in sessions] == [(people.alice_other, "other", "alice")]
    assert sessions[0]["created"].endswith("Z")

    assert run("sessions", "list", "--user", "carol", store=store_url).code == 1  # expired: not listed

    shown = run("sessions", "show", people.alice_public, "--json", store=store_url)
    assert shown.code == 0
    assert shown.json()["session"]["session_data"] == {"cart": 3}
    assert "refresh" not in shown.out  # no refresh hash
    text = run("sessions", "show", people.alice_other, store=store_url)
    assert text.code == 0
    assert "admin" in text.out
    assert people.alice_other in text.out
    unknown = run("sessions", "show", "no-such-handle", store=store_url)
    assert unknown.code == 1
    assert "no-such-handle" in unknown.err

    revoked = run("sessions", "revoke", people.alice_other, "no-such-handle", store=store_url)
    assert revoked.code == 1  # one handle matched nothing
    assert revoked.out == f"revoked {people.alice_other}\n"
    assert "no-such-handle" in revoked.err
    assert anyio.run(live_handles, store_url, "alice") == [people.alice_public]

    by_user = run("sessions", "revoke-user", "bob", "--json", store=store_url)
    assert by_user.code == 0
    assert by_user.json()["revoked"] == [people.bob]
    assert run("sessions", "revoke-user", "bob", store=store_url).code == 1

    cleaned = run("sessions", "cleanup", store=store_url)
    assert cleaned.code == 0
    assert cleaned.out == "deleted 1 expired session\n"
    assert "\r" not in cleaned.err
    assert "[#" not in cleaned.err
    assert run("sessions", "cleanup", "--json", store=store_url).json() == {"deleted": 0}
    assert anyio.run(live_handles, store_url, "alice") == [people.alice_public]  # live sessions untouched


def test_cleanup_leaves_the_revocation_log_to_the_servers(tmp_path: Path) -> None:
    """The log holds no times: the command cannot tell an old entry from one a server has not read yet, so it
    trims nothing, and a server that has not caught up still refuses the revoked session (docs/decisions.md)."""
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    past = time.time() - 2 * DAY  # revoked two days ago: well past any access token's lifetime

    async def revoke_long_ago() -> tuple[str, str]:
        async with SessionManager(store=store_from_url(url), clock=FakeClock(past)) as manager:
            session = await manager.create_new_session_without_request_response("alice")
            await manager.revoke_session(session.handle)
            return session.handle, session.access_token

    handle, token = anyio.run(revoke_long_ago)
    cleaned = run("sessions", "cleanup", "--json", store=url)
    assert cleaned.code == 0, cleaned.err

    async def log_and_verdict() -> tuple[list[str], bool]:
        store = store_from_url(url)
        async with store:
            entries = [h for _, h in await store.revocations_since(0)]  # type: ignore[attr-defined]
        config = SessionConfig(access_token_blacklisting=True)  # checked from the revocation view
        async with SessionManager(store=store_from_url(url), config=config, clock=FakeClock(past + 60)) as late:
            try:
                await late.get_session_without_request_response(token)
            except UnauthorisedError:
                return entries, True
            return entries, False

    entries, refused = anyio.run(log_and_verdict)
    assert entries == [handle]
    assert refused


def test_keys_list_and_rotate(store_url: str) -> None:
    anyio.run(populate, store_url)
    before = run("keys", "list", "--json", store=store_url)
    assert before.code == 0
    keys = before.json()["keys"]
    assert {key["state"] for key in keys} == {"refresh-token MAC", "signing"}
    assert "PRIVATE" not in before.out
    assert "private" not in before.out
    assert all(set(key) >= {"kid", "algorithm", "created", "signs_until", "verifies_until"} for key in keys)

    rotated = run("keys", "rotate", "--json", store=store_url)
    assert rotated.code == 0, rotated.err
    published = rotated.json()["published"]
    assert published["state"] == "published"
    assert published["algorithm"] == "ES256"
    assert "PRIVATE" not in rotated.out

    after = run("keys", "list", store=store_url)
    assert after.code == 0
    assert "PRIVATE" not in after.out
    assert published["kid"] in after.out
    old = next(key for key in keys if key["state"] == "signing")
    old_row = next(line for line in after.out.splitlines() if line.startswith(old["kid"]))
    assert published["signs_from"] in old_row  # the old key signs until the new one takes over

    async def check_ring() -> None:
        async with SessionManager(store=store_from_url(store_url)) as manager:
            kids = {key["kid"] for key in manager.keys.describe()["keys"]}
            assert {old["kid"], published["kid"]} <= kids  # every server sees the new key; the old one verifies

    anyio.run(check_ring)


def test_a_revoked_session_is_refused_by_a_running_manager(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"

    async def scenario() -> None:
        async with SessionManager(store=store_from_url(url)) as manager:
            session = await manager.create_new_session_without_request_response("alice")
            token = session.access_token
            assert await manager.get_session_without_request_response(token, check_database=True)
            result = await anyio.to_thread.run_sync(lambda: run("sessions", "revoke", session.handle, store=url))
            assert result.code == 0
            with pytest.raises(UnauthorisedError):
                await manager.get_session_without_request_response(token, check_database=True)

    anyio.run(scenario)


def test_the_store_comes_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    people = anyio.run(populate, url)
    result = run("sessions", "list", "--user", "bob", "--json", env={"ASGI_SESSION_STORE_URL": url})
    assert result.code == 0
    assert [s["handle"] for s in result.json()["sessions"]] == [people.bob]


def test_default_store_is_the_file_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = run("sessions", "cleanup")
    assert missing.code == 3
    assert "asgi_session.db" in missing.err
    assert not (tmp_path / "asgi_session.db").exists()  # an admin command never creates a database
    anyio.run(populate, "sqlite:///asgi_session.db")
    assert run("sessions", "list", "--user", "bob").code == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_an_unreachable_store_exits_3_without_the_password(scheme: str) -> None:
    url = f"{scheme}://admin:sekr3t-pw@127.0.0.1:{_closed_port()}/0"
    for command in (("sessions", "list", "--user", "alice"), ("sessions", "cleanup"), ("keys", "list")):
        result = run(*command, store=url)
        assert result.code == 3, result.err
        assert "store unreachable" in result.err
        assert "connect" in result.err.lower()
        assert "sekr3t-pw" not in result.err + result.out
        assert "admin:***@127.0.0.1" in result.err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("sessions", "list").code == 2  # --user is required
    assert run("sessions", "frobnicate").code == 2
    bad = run("sessions", "cleanup", store="ftp://127.0.0.1/x")
    assert bad.code == 2
    assert "unsupported store URL scheme" in bad.err
    assert run("keys", "rotate", "--algorithm", "HS256").code == 2


def test_rotating_an_encrypted_ring_needs_the_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    secret = "x" * 40

    async def create() -> None:
        async with SessionManager(store=store_from_url(url), config=SessionConfig(key_encryption_secret=secret)):
            pass

    anyio.run(create)
    refused = run("keys", "rotate", store=url)
    assert refused.code == 2
    assert "ASGI_SESSION_KEY_ENCRYPTION_SECRET" in refused.err
    wrong = run("keys", "rotate", store=url, env={"ASGI_SESSION_KEY_ENCRYPTION_SECRET": "y" * 40})
    assert wrong.code == 2
    done = run("keys", "rotate", "--json", store=url, env={"ASGI_SESSION_KEY_ENCRYPTION_SECRET": secret})
    assert done.code == 0, done.err
    assert done.json()["published"]["encrypted"] is True


def test_rotating_refuses_hs256(tmp_path: Path) -> None:
    """An HS256 deployment keeps no signing key in the store (its key is signing_secret): a key published there
    would sign nothing, so the command refuses instead of reporting a rotation."""
    url = f"sqlite:///{tmp_path / 'hs256.db'}"

    async def create() -> None:
        config = SessionConfig(signing_algorithm="HS256", signing_secret="s" * 32)
        async with SessionManager(store=store_from_url(url), config=config) as manager:
            await manager.create_new_session_without_request_response("alice")

    anyio.run(create)
    refused = run("keys", "rotate", store=url)
    assert refused.code == 2
    assert refused.out == ""
    assert "no signing key to rotate" in refused.err
    assert "HS256" in refused.err
    assert "signing_secret" in refused.err
    as_json = run("keys", "rotate", "--json", store=url)
    assert as_json.code == 2
    assert as_json.json()["exit_code"] == 2
    assert "HS256" in as_json.json()["error"]
    named = run("keys", "rotate", "--algorithm", "HS256", store=url)
    assert named.code == 2
    assert "HS256 signs with the servers' signing_secret" in named.err
    keys = run("keys", "list", "--json", store=url).json()["keys"]
    assert [key["state"] for key in keys] == ["refresh-token MAC"]  # nothing was published
    chosen = run("keys", "rotate", "--algorithm", "EdDSA", "--json", store=url)  # an explicit choice is obeyed
    assert chosen.code == 0, chosen.err
    assert chosen.json()["published"]["algorithm"] == "EdDSA"


def test_show_prints_no_control_characters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"

    async def create() -> str:
        async with SessionManager(store=store_from_url(url)) as manager:
            session = await manager.create_new_session_without_request_response(
                "alice", session_data_in_database={"note": "a\x1b]0;pwned\x07b"}, user_agent="Evil\x1b[31mUA\x07"
            )
            return session.handle

    handle = anyio.run(create)
    for command in (("sessions", "show", handle), ("sessions", "list", "--user", "alice")):
        result = run(*command, store=url)
        assert result.code == 0, result.err
        assert "\x1b" not in result.out
        assert "\x07" not in result.out
        assert "Evil?[31mUA?" in result.out
    shown = run("sessions", "show", handle, "--json", store=url)
    assert shown.json()["session"]["user_agent"] == "Evil\x1b[31mUA\x07"  # JSON escapes; the value is intact
    assert "\x1b" not in shown.out


def test_json_failures_print_a_document(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    anyio.run(populate, url)

    def failed(expected: int, *args: str, store: str | None = url) -> dict[str, Any]:
        result = run(*args, "--json", store=store)
        assert result.code == expected, result.err
        document: dict[str, Any] = result.json()  # one document on stdout
        assert document["exit_code"] == expected
        assert document["error"] in result.err  # and the message on stderr
        return document

    assert failed(1, "sessions", "show", "no-such-handle")["session"] is None
    assert failed(1, "sessions", "list", "--user", "nobody")["sessions"] == []
    both = failed(1, "sessions", "revoke", "no-such-handle", "another")
    assert both["not_found"] == ["no-such-handle", "another"]
    assert both["revoked"] == []
    assert "'no-such-handle', 'another'" in both["error"]
    assert failed(1, "sessions", "revoke-user", "nobody")["revoked"] == []
    assert "no SQLite database" in failed(3, "sessions", "cleanup", store=f"sqlite:///{tmp_path / 'none.db'}")["error"]
    unreachable = run("keys", "list", "--json", store=f"redis://admin:sekr3t-pw@127.0.0.1:{_closed_port()}/0")
    assert unreachable.code == 3
    assert unreachable.json()["exit_code"] == 3
    assert "store unreachable" in unreachable.json()["error"]
    assert "sekr3t-pw" not in unreachable.out + unreachable.err
    assert "unsupported store URL scheme" in failed(2, "sessions", "cleanup", store="ftp://127.0.0.1/x")["error"]
    # argparse's own usage errors stay a usage message on stderr (documented in docs/cli.md)
    usage = run("sessions", "list", "--json")
    assert (usage.code, usage.out) == (2, "")
    assert "--user" in usage.err


COMMANDS = [
    ["sessions", "list"],
    ["sessions", "show"],
    ["sessions", "revoke"],
    ["sessions", "revoke-user"],
    ["sessions", "cleanup"],
    ["keys", "list"],
    ["keys", "rotate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"example:\n  asgi-session {' '.join(command)}" in out
    assert "--store URL" in out
    assert "--json" in out
    assert "3 store unreachable" in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_RichBar, "start", classmethod(lambda cls, *args: None))  # as without rich
    terminal = Terminal()
    bar = Progress(2, "deleting", terminal)
    bar.step("1 deleted")
    bar.step("5 deleted")
    bar.finish()
    assert terminal.getvalue().startswith("\rdeleting [###############---------------]  50% 1 deleted")
    assert "[##############################] 100% 5 deleted" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")
    pipe = io.StringIO()
    quiet = Progress(2, "deleting", pipe)
    quiet.step("1 deleted")
    quiet.finish()
    assert pipe.getvalue() == ""


def test_redact_url() -> None:
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("postgresql://user:p%40ss@127.0.0.1/db") == "postgresql://user:***@127.0.0.1/db"
    assert redact_url("sqlite:///a.db") == "sqlite:///a.db"


def run_on_a_terminal(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the console script with stderr on a pseudo-terminal (stdout a pipe); return code, stdout, terminal."""
    controller, terminal = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "ASGI_SESSION_STORE_URL"}
    environment.update({"COLUMNS": "100", "TERM": "xterm", **(env or {})})
    try:
        with subprocess.Popen(  # noqa: S603 - our own console script, fixed arguments
            [str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=terminal, text=True, env=environment
        ) as process:
            os.close(terminal)
            out, _ = process.communicate(timeout=60)
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
    return process.returncode, out, drawn.decode("utf-8", "replace")


@pytest.mark.parametrize("with_rich", [True, False], ids=["rich", "own-bar"])
def test_cleanup_draws_the_bar_on_a_terminal_and_not_into_a_pipe(with_rich: bool, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    anyio.run(populate, url)  # one expired session
    env: dict[str, str] = {}
    if with_rich:
        pytest.importorskip("rich")
    else:  # a rich that cannot be imported, first on the path
        (tmp_path / "rich").mkdir()
        (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    code, out, drawn = run_on_a_terminal("sessions", "cleanup", "--store", url, env=env)
    assert code == 0, drawn
    assert out == "deleted 1 expired session\n"  # stdout carries only the result
    assert "deleting expired sessions" in drawn
    assert "100%" in drawn
    assert "1 deleted" in drawn
    if with_rich:
        assert "\u2501" in drawn  # rich's bar
    else:
        assert "[##############################] 100% 1 deleted" in drawn
    piped = run("sessions", "cleanup", store=url, env=env)
    assert piped.code == 0
    assert piped.err == ""
    quiet = run_on_a_terminal("sessions", "cleanup", "--json", "--store", url, env=env)
    assert quiet[:2] == (0, '{\n  "deleted": 0\n}\n')
    assert "deleting" not in quiet[2]  # --json: no bar even on a terminal
