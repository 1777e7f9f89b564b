"""asgi_session.testing: FakeClock, the public surface, and what importing it pulls in."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

import asgi_session.testing
from asgi_session import Clock
from asgi_session.testing import CONFORMANCE_CHECKS, FakeClock

START = 1_700_000_000.0


def test_fake_clock_starts_at_a_fixed_time_and_stands_still() -> None:
    clock = FakeClock()
    assert clock.now() == START
    assert clock.now() == START
    assert FakeClock(12).now() == 12.0
    assert isinstance(FakeClock(12).now(), float)
    assert isinstance(clock, Clock)
    assert repr(FakeClock(1.5)) == "FakeClock(1.5)"


def test_advance_by_seconds_returns_the_new_time() -> None:
    clock = FakeClock()
    assert clock.advance(1.25) == START + 1.25
    assert clock.advance(10) == START + 11.25
    assert clock.advance(0) == START + 11.25
    assert clock.now() == START + 11.25


def test_advance_by_timedelta_returns_the_new_time() -> None:
    clock = FakeClock()
    assert clock.advance(timedelta(days=1, milliseconds=500)) == START + 86_400.5
    assert clock.now() == START + 86_400.5


@pytest.mark.parametrize("step", [-0.001, -1, timedelta(seconds=-1)])
def test_advance_refuses_to_go_back(step: float | timedelta) -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match=r"use set\(\)"):
        clock.advance(step)
    assert clock.now() == START


def test_set_to_seconds_moves_either_way() -> None:
    clock = FakeClock()
    clock.set(START + 100)
    assert clock.now() == START + 100
    clock.set(5)
    assert clock.now() == 5.0
    assert isinstance(clock.now(), float)


def test_set_to_an_aware_datetime() -> None:
    clock = FakeClock()
    clock.set(datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert clock.now() == 1_704_067_200.0
    clock.set(datetime(2024, 1, 1, 2, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == 1_704_067_200.25


def test_set_refuses_a_naive_datetime() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2024, 1, 1))  # naive on purpose
    assert clock.now() == START


def test_all_is_sorted_and_is_the_whole_public_surface() -> None:
    public = {name for name in vars(asgi_session.testing) if not name.startswith("_")} - {"annotations"}
    assert asgi_session.testing.__all__ == sorted(asgi_session.testing.__all__)
    assert set(asgi_session.testing.__all__) == public


def test_check_names_and_running_order() -> None:
    assert list(CONFORMANCE_CHECKS) == [
        "lifecycle",
        "create_get_round_trip",
        "create_get_large_data",
        "get_unknown_handle",
        "create_duplicate_handle",
        "non_json_data_refused",
        "records_not_aliased",
        "rotate_success",
        "rotate_stale_hash",
        "rotate_missing_handle",
        "rotate_concurrent",
        "rotate_sliding_success",
        "rotate_sliding_refusals",
        "rotate_sliding_concurrent",
        "update_session_data",
        "update_access_token_payload",
        "touch",
        "delete",
        "list_for_user",
        "delete_for_user",
        "delete_expired",
        "revocation_log",
        "lease",
        "keys_add_get",
        "keys_delete",
        "many_sessions",
        "no_raw_refresh_token",
    ]
    for name, check in CONFORMANCE_CHECKS.items():
        assert check.__name__ == name  # type: ignore[attr-defined]
        assert check.__doc__


def test_importing_the_testing_package_imports_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import json, sys, asgi_session.testing; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'pytest', '_pytest', 'hypothesis'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert json.loads(result.stdout) == []
