"""Every example file runs, and does what it says."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from asgi_session import SessionManager
from asgi_session.stores import store_from_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.anyio


async def test_offline_revoke_example(tmp_path: Path) -> None:
    namespace = runpy.run_path(str(EXAMPLES / "offline_revoke.py"))
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    revoked = await namespace["main"](url)
    assert len(revoked["one"]) == 1
    assert len(revoked["acme"]) == 2
    assert len(revoked["all"]) == 1
    async with SessionManager(store=store_from_url(url)) as manager:
        assert await manager.get_all_session_handles_for_user("alice") == []


def test_offline_revoke_example_runs_as_a_script(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - our own example, with our own interpreter
        [sys.executable, str(EXAMPLES / "offline_revoke.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "alice now has 0 sessions" in result.stdout
    assert "refused on its very next use" in result.stdout


def _readme_blocks() -> list[str]:
    text = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


async def test_readme_asgi_quickstart_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    monkeypatch.setenv("ASGI_SESSION_STORE_URL", "memory://")
    namespace: dict[str, object] = {}
    exec(_readme_blocks()[0], namespace)  # noqa: S102 - our own README's example
    app = namespace["app"]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        assert (await client.get("/me")).status_code == 401
        response = await client.post("/signin", json={"user": "alice"})
        assert response.json() == {"user": "alice"}
        me = await client.get("/me")
        assert me.status_code == 200
        assert me.json() == {"user": "alice", "tenant": "public"}


def test_readme_offline_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = subprocess.run(  # noqa: S603 - our own README's example, with our own interpreter
        [sys.executable, "-c", _readme_blocks()[1]], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "alice {'role': 'admin'}",
        "True",
        "True",
        "session does not exist or has expired",
    ]
